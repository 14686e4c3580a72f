"""New session: pick a teacher, a student, a dataset and objectives, start a session and follow it live.

The form starts from `SessionConfig()`. If the environment variable `ADS_FORM_DEFAULTS` names a JSON or YAML
config file (the format of `python -m distill_core run --config`), its settings become the form's defaults,
including settings the form does not show (e.g. teacher.finetune_lr, data.probe_size).

Training runs in a background thread and reports through the run folder, so a reload or a second tab
reattaches to a running session (the run id is also kept in the URL as ?run=<id>).
"""
import json

import streamlit as st

import distill_core
from app import common
from app import session_form as sf

store = common.get_store()
defaults, defaults_warning = sf.load_defaults()
sf.init_state(defaults)

st.title("New session")
st.caption("Distil a teacher transformer into a smaller student. Every epoch both the distilled student and a "
           "baseline (trained on labels only) are evaluated and their attention is recorded on a few fixed "
           "validation sentences, so you can see whether the student learns to look where the teacher looks.")
if defaults_warning:
    st.warning(defaults_warning)

left, right = st.columns(2, gap="large")
with left, st.container(border=True):
    sf.teacher_section()
with right, st.container(border=True):
    sf.student_section()
with st.container(border=True):
    sf.data_section(store.root, defaults)
with st.container(border=True):
    teacher_source = {"default": distill_core.config.DEFAULT_TEACHER,
                      "local": st.session_state.get("new.teacher_path", "").strip()}.get(
        st.session_state["new.teacher_kind"], "")
    sf.objectives_section(teacher_source)
with st.container(border=True):
    sf.training_section()
c1, c2 = st.columns([1, 4], vertical_alignment="center")
c2.text_input("Run name (optional)", key="new.name", placeholder="e.g. attention-kl-only")
sf.save_state(defaults)
if c1.button("Start", type="primary", key="new.start", icon="🚀", width="stretch"):
    try:
        config = sf.build_config(sf.collect(st.session_state), defaults)
        sf.preflight(config)
        run_id = distill_core.start_session(config, store)
    except distill_core.DistillError as e:
        st.error(str(e))
    else:
        st.session_state[sf.ACTIVE_RUN] = run_id
        st.session_state[common.SELECTED_RUN] = run_id
        st.query_params["run"] = run_id

with st.expander("These settings as a config file (for `python -m distill_core run --config`)"):
    try:
        st.code(json.dumps(sf.build_config(sf.collect(st.session_state), defaults).to_dict(), indent=2),
                language="json")
    except distill_core.DistillError as e:
        st.caption(f"Not a valid session yet: {e}")


def curves(run, key: str) -> None:
    records = common.metrics(run.id)
    if not records:
        st.caption("Curves appear after the first evaluation (epoch 0 = before training).")
        return
    try:
        epochs = run.config().get("train", {}).get("epochs")
    except distill_core.DistillError:
        epochs = None
    for col, (title, value, y_title) in zip(st.columns(len(sf.LIVE_CHARTS)), sf.LIVE_CHARTS):
        fig = sf.metric_figure(records, title, value, y_title, epochs)
        col.plotly_chart(fig, width="stretch", config=common.PLOTLY_CONFIG, key=f"{key}.{title}")


@st.fragment(run_every=1.0)
def live(run_id: str) -> None:
    run = store.open(run_id)
    if run.status().get("status") != "running":
        st.rerun()                      # finished: redraw the page once with the final results
    p = run.progress()
    phase, done, total = p.get("phase", "starting"), p.get("done") or 0, p.get("total") or 0
    st.markdown(f"⏳ **{run_id}** is running · epochs done: {p.get('epoch', 0)} of {p.get('epochs', '?')}")
    eta = f" · about {sf.fmt_seconds(p['eta_s'])} left in this phase" if p.get("eta_s") is not None else ""
    st.progress(min(1.0, done / total) if total else 0.0,
                text=f"{phase}: {done}/{total} steps · {sf.fmt_seconds(p.get('elapsed_s'))} elapsed{eta}")
    curves(run, "new.live")
    if run.cancel_requested():
        st.info("Cancel requested: the session stops after the current step and keeps its finished epochs.")
    elif st.button("Cancel", key="new.cancel", icon="⏹️"):
        run.request_cancel()
        st.info("Cancel requested: the session stops after the current step and keeps its finished epochs.")


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
        st.warning(f"{icon} Run **{run.id}** was {state}" + (f": {error}" if error else "")
                   + ". The epochs it finished are kept.")
    acc = (run.summary() or {}).get("accuracy") or {}
    cols = st.columns(3)
    for col, name in zip(cols, ("teacher", "baseline", "distilled")):
        delta = None
        if name == "distilled" and acc.get("distilled") is not None and acc.get("baseline") is not None:
            gain = 100 * (acc["distilled"] - acc["baseline"])
            delta = f"{gain:+.1f} points vs baseline" if abs(gain) >= 0.05 else "same as baseline"
        col.metric(f"{name} test accuracy", sf.fmt_acc(acc.get(name)), delta=delta,
                   delta_color="off" if delta == "same as baseline" else "normal",
                   delta_arrow="off" if delta == "same as baseline" else "auto")
    curves(run, "new.final")
    if state in ("done", "cancelled") and run.epochs_done() > 0:
        where = ("it is already selected there" if st.session_state.get(common.SELECTED_RUN) == run.id
                 else f"pick {run.id} there")
        st.info("Open the **Attention explorer** page to compare the teacher's and the students' attention on the "
                f"probe sentences, epoch by epoch ({where}).")


@st.fragment(run_every=3.0)
def watch_for_runs() -> None:
    if sf.running_runs(store):
        st.rerun()                      # a session started in another tab: follow it


st.divider()
st.subheader("Progress")
active = sf.find_active_run(store, st.session_state.get(sf.ACTIVE_RUN) or st.query_params.get("run"))
if active is None:
    st.caption("No session is running. Press **Start** above; its progress and live curves appear here.")
    watch_for_runs()
elif active.status().get("status") == "running":
    live(active.id)
else:
    finished(active)
