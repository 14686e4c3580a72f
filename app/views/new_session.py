"""New session: pick a teacher, a student, a dataset and objectives, start a session and follow it live.

The task picker at the top picks the form: text classification distils a transformer on labelled sentences, token
tagging a transformer that tags every word (named entities in BIO), translation an encoder-decoder on sentence pairs,
a language model a causal (GPT-style) model on plain text, images a CNN or ViT on pictures (a built-in dataset, or a
.zip of class folders). Each task keeps its own settings, and its variants offer only the losses that apply to it.

Several teachers (under the teacher and student, text and images) adds up to four further teachers, the config's
ensemble section; each variant then picks whom it learns from (its Strategies › Learns from): one of the teachers,
or the ensemble.

The form starts from `SessionConfig()`. If the environment variable `ADS_FORM_DEFAULTS` names a JSON or YAML
config file (the format of `python -m distill_core run --config`), its settings become the form's defaults,
including settings the form does not show (e.g. teacher.finetune_lr, data.probe_size). "Preset" above the form
offers named presets (presets.py): Classroom, a session that finishes in about 40 s on a 2-core laptop.

Training runs in a background thread and reports through the run folder, so a reload or a second tab
reattaches to a running session (the run id is also kept in the URL as ?run=<id>).
"""
import json

import streamlit as st

import distill_core
from app import common, live_view as lv, roles
from app.new_session import presets, tasks
from app.new_session.keys import ACTIVE_RUN, SEEDS
from app.new_session.sections import modality_section
from app.new_session.values import load_defaults
from app.run_list import SWEEP_SELECTED
from distill_core.sweep import start_seeds

CANCEL_MSG = "new.cancel_msg"
SWEEP_STARTED = "new.sweep_started"     # the sweep this tab started last

store = common.get_store()
defaults, defaults_warning = load_defaults()

st.title("New session")


def form() -> None:
    """The session's settings, Start, and the config file they make."""
    with_defaults = presets.form_defaults(defaults)        # a named preset (e.g. Classroom), else the defaults
    tasks.init_state(with_defaults)
    modality = modality_section(tasks.LABELS, tasks.DEFAULT_TASK)
    st.caption(tasks.task_of(modality).intro)
    if defaults_warning:
        st.warning(defaults_warning)

    tasks.draw(modality, store.root, with_defaults)
    c1, c2 = st.columns([1, 4], vertical_alignment="center")
    c2.text_input("Run name (optional)", key="new.name", placeholder="e.g. attention-kl-only")
    tasks.save_state(with_defaults)
    mine = st.session_state.get(ACTIVE_RUN)
    busy = mine is not None and store.exists(mine) and store.open(mine).status().get("status") in lv.ACTIVE_STATUSES
    if busy:
        c2.caption(f"Start is off while this tab's session **{mine}** runs: cancel it below, or open another tab "
                   "to queue a session after it.")
    if c1.button("Start", type="primary", key="new.start", icon=":material/rocket_launch:", width="stretch",
                 disabled=busy) and not roles.refused("start a session"):
        start(with_defaults)
    if sweep_id := st.session_state.get(SWEEP_STARTED):
        c1, c2 = st.columns([4, 1], vertical_alignment="center")
        c1.info(f"Sweep **{sweep_id}** started: one session per seed, run one after another. The Sweep page "
                f"compares them as they finish.")
        if c2.button("Open the sweep", key="new.open_sweep", icon=":material/bar_chart:", width="stretch"):
            st.switch_page("views/sweep.py")

    with st.expander("These settings as a config file (for `python -m distill_core run --config`)"):
        try:
            st.code(json.dumps(tasks.build_config(tasks.collect(st.session_state), with_defaults).to_dict(),
                               indent=2), language="json")
        except distill_core.DistillError as e:
            st.caption(f"Not a valid session yet: {e}")


def start(with_defaults) -> None:
    try:
        config = tasks.build_config(tasks.collect(st.session_state), with_defaults)
        tasks.preflight(config)
        run_id, sweep_id = start_seeds(config, st.session_state.get(SEEDS, ""), store,
                                       start=distill_core.start_session)
        if sweep_id:
            st.session_state[SWEEP_STARTED] = st.session_state[SWEEP_SELECTED] = sweep_id
    except distill_core.DistillError as e:
        st.error(str(e))
    else:
        st.session_state[ACTIVE_RUN] = run_id
        st.query_params["run"] = run_id
        st.rerun()                      # draw the page again: Start off, this run's progress below


if roles.may_change():
    form()
else:
    st.info("You are a viewer: the instructor starts and cancels sessions. Follow the session that runs below, "
            "and explore every run on the other pages. " + roles.how_to_instruct(), icon=":material/visibility:")


def cancel_button(run_id: str) -> None:
    if not roles.may_change():
        return
    if st.button("Cancel", key="new.cancel", icon=":material/stop:") and not roles.refused("cancel a session"):
        st.session_state[CANCEL_MSG] = f"Run {run_id}: {distill_core.cancel_session(store, run_id)}."
        st.session_state[ACTIVE_RUN] = run_id          # keep showing it once it has stopped
        st.rerun()


@st.fragment(run_every=lv.PROGRESS_EVERY_S)
def waiting(run_id: str) -> None:
    if store.open(run_id).status().get("status") != "queued":
        st.rerun()                      # it started (or was cancelled elsewhere): redraw the page
    st.markdown(lv.queue_text(run_id))
    cancel_button(run_id)


@st.fragment(run_every=lv.PROGRESS_EVERY_S)
def live(run_id: str) -> None:
    """The progress line: one small file read every couple of seconds."""
    run = store.open(run_id)
    if run.status().get("status") != "running":
        st.rerun()                      # finished: redraw the page once with the final results
    headline, fraction, detail = lv.progress_lines(run.progress())
    st.markdown(f":material/hourglass_top: **{run_id}** · {headline}")
    st.progress(fraction, text=detail)
    if run.cancel_requested():
        st.info("Cancel requested: the session stops after the current step and keeps its finished epochs.")
    else:
        cancel_button(run_id)


@st.fragment(run_every=lv.CURVES_EVERY_S)
def live_curves(run_id: str) -> None:
    """The curves, redrawn less often than the progress line: drawing them costs the training thread time."""
    lv.curves(store.open(run_id), "new.live")
    st.caption(f"The curves are redrawn every {lv.CURVES_EVERY_S:g} s while the session runs, the progress line "
               f"every {lv.PROGRESS_EVERY_S:g} s, so watching costs the session little time.")


def finished(run) -> None:
    status = run.status()
    state, error = status.get("status"), status.get("error")
    icon = common.STATUS_ICONS.get(state, "")
    if state == "done":
        st.success(f"{icon} Run **{run.id}** finished.")
    elif state == "failed":
        st.error(f"{icon} Run **{run.id}** failed: {error}")
        if status.get("traceback"):
            with st.expander("Traceback"):
                st.code(status["traceback"])
    else:
        kept = " The epochs it finished are kept." if run.epochs_done() > 0 else ""
        st.warning(f"{icon} Run **{run.id}** was {state}" + (f": {error}" if error else "") + f".{kept}")
    lv.accuracy_metrics(run)
    lv.curves(run, "new.final")
    if state in ("done", "cancelled") and run.epochs_done() > 0:
        common.page_link("views/explorer.py", "Open the Attention explorer on this run", ":material/grid_on:",
                         {"run": run.id})
        probes = tasks.task_of((run.probe() or {}).get("modality")).probes
        st.caption(f"It compares the teacher's and the students' attention on the probe {probes}, epoch by epoch.")


@st.fragment(run_every=3.0)
def watch_for_runs() -> None:
    if lv.active_runs(store):
        st.rerun()                      # a session started in another tab: follow it


st.divider()
st.subheader("Progress")
if msg := st.session_state.pop(CANCEL_MSG, None):
    st.info(msg)
active = lv.find_active_run(store, st.session_state.get(ACTIVE_RUN) or st.query_params.get("run"))
state = active.status().get("status") if active is not None else None
if active is None:
    st.caption("No session is running. Press **Start** above; its progress and live curves appear here."
               if roles.may_change() else "No session is running. When the instructor starts one, its progress "
               "and live curves appear here.")
    if (last := lv.last_run(store)) is not None:
        st.markdown(f"**The last session**, {last.id}:")
        finished(last)
    watch_for_runs()
elif state == "queued":
    waiting(active.id)
elif state == "running":
    live(active.id)
    live_curves(active.id)
else:
    finished(active)
