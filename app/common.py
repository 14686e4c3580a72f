"""What every page shares: the run store, a run picker, cached readers of run files. No training code here."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitAPIException

from app import page_data, tasks
from app.figures import base as fig_base, curves as fig_curves
from app.state import PRESENT, SELECTED_RUN, STARTED_HERE, TYPED_TEXT
from distill_core import RunStore
from distill_core.analysis import suggest_for_run
from distill_core.errors import DistillError

# Every chart's toolbar saves a PNG (drawn in the browser by plotly.js: works offline).
PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}
# Status marks in plain text (they also label the run pickers' options, which draw no icons): characters every
# font has, where emoji draw as empty boxes on machines without an emoji font.
STATUS_ICONS = {"queued": "…", "running": "▶", "done": "✓", "failed": "✗", "cancelled": "■", "interrupted": "!",
                "damaged": "⚠", "unknown": "?"}


def presenting() -> bool:
    """Presentation mode (the sidebar's toggle): larger charts, fewer controls, a "what to notice" note."""
    return bool(st.session_state.get(PRESENT))


def chart_font() -> int:
    """The font size of the charts' labels: readable on a screen, and from the back of a room when presenting."""
    return 16 if presenting() else 12


def sized(fig):
    """A figure with its text enlarged in presentation mode (the explorer's maps size their own labels)."""
    return fig_base.scale_fonts(fig, 1.5) if presenting() else fig


def notice(lines: list[str] | str) -> None:
    """The view's "what to notice" note."""
    if lines:
        text = lines if isinstance(lines, str) else "\n".join(f"- {x}" for x in lines)
        st.info(f"**What to notice**\n{text}" if not isinstance(lines, str) else text, icon=":material/lightbulb:")


def runs_dir() -> Path:
    return page_data.runs_dir()


def get_store() -> RunStore:
    return RunStore(runs_dir())


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def run_version(run_id: str) -> float:
    """Changes whenever the run writes a new epoch or finishes: the cache key beside the run id."""
    p = get_store().open(run_id).path
    return max(_mtime(p / "metrics.jsonl"), _mtime(p / "summary.json"), _mtime(p / "status.json"),
               _mtime(p / "train_steps.jsonl"))


@st.cache_data(show_spinner=False, max_entries=64)
def read_metrics(root: str, run_id: str, version: float) -> list[dict]:
    return RunStore(root).open(run_id).metrics()


@st.cache_resource(show_spinner=False, max_entries=256)
def read_attention(root: str, run_id: str, name: str, version: float):
    """list of (L, H, T, T) float32 arrays, one per probe example: read once and shared by every visitor (read-only,
    so no page can change what another sees; st.cache_data would copy them for each visitor at every redraw)."""
    arrays = RunStore(root).open(run_id).read_attention(name)
    for a in arrays:
        a.flags.writeable = False
    return arrays


@st.cache_resource(show_spinner=False, max_entries=256)
def _shared_figure(name: str, _build, args: tuple, kwargs: dict):
    return _build(*args, **kwargs)                   # keyed by the builder's name and its arguments


def forget_shared_figures() -> None:
    """Build every shared figure anew at its next use (the figures benchmark times the first visitor's builds)."""
    _shared_figure.clear()


def shared_figure(build, *args, **kwargs):
    """build(*args, **kwargs) made once for all the visitors who ask for the same figure (the same function and
    arguments: the same run, view and arrays) and shared: a class opening one link builds it once, not once each.
    Safe because st.plotly_chart reads a figure without changing it; a caller must not change it either."""
    return _shared_figure(f"{build.__module__}.{build.__qualname__}", build, args, kwargs)


@st.cache_data(show_spinner=False, max_entries=16)
def read_train_steps(root: str, run_id: str, version: float) -> list[dict]:
    return RunStore(root).open(run_id).train_steps()


@st.cache_data(show_spinner=False, max_entries=32)
def read_suggestion(root: str, run_id: str, version: float) -> dict | None:
    return suggest_for_run(RunStore(root).open(run_id))


def suggestion(run_id: str) -> dict | None:
    """The layer map suggested from a run's baseline student (analysis.suggest_for_run), or None before its first
    epoch; computed once per run and version."""
    return read_suggestion(str(runs_dir()), run_id, run_version(run_id))


def train_steps(run_id: str) -> list[dict]:
    """The thinned per-step training losses of a run (train_steps.jsonl; none for runs older than the file)."""
    return read_train_steps(str(runs_dir()), run_id, run_version(run_id))


def metrics(run_id: str) -> list[dict]:
    return read_metrics(str(runs_dir()), run_id, run_version(run_id))


def attention(run_id: str, name: str):
    return read_attention(str(runs_dir()), run_id, name, run_version(run_id))


Variants = page_data.Variants


def variants_of(run, probe: dict | None = None) -> Variants:
    """The variants of a run, read from probe.json or summary.json (or, for older runs, the metric records, read
    through this process's cache)."""
    return page_data.variants_of(run, probe, lambda: metrics(run.id))


def objectives_text(run) -> dict[str, str]:
    """Variant name -> its weighted losses in words ("ce 0.5 + logit_kd 0.5"), from the run's config."""
    try:
        return page_data.objectives_text(run.config())
    except DistillError:
        return {}


def pick_run(key: str, need_epochs: bool = True, label: str = "Run", also=None):
    """A run selector shared across pages (the choice follows the user from page to page). With need_epochs, a run
    that has not recorded an epoch is offered only when `also(store, info)` says the page can show something of it.

    Returns the chosen Run, or None after telling the user what to do when there is nothing to show.
    """
    store = get_store()
    try:
        infos = store.list()
    except DistillError as e:
        st.error(str(e))
        return None
    usable = [r for r in infos if r.status != "damaged"
              and (r.epochs_done > 0 or not need_epochs or (also is not None and also(store, r)))]
    if not usable:
        st.info("No runs to show yet. Start one on the **New session** page (the default runs offline in a few "
                f"minutes), or point `ADS_RUNS_DIR` at a run store. Looking in `{store.root}`.")
        return None
    ids = [r.run_id for r in usable]
    labels = {r.run_id: f"{STATUS_ICONS.get(r.status, '')} {r.run_id}" + (f" · {r.name}" if r.name else "")
              for r in usable}
    current = st.session_state.get(SELECTED_RUN)
    if current not in ids:
        if current:
            why = "has not recorded an epoch yet" if store.exists(current) else "is not in this run store"
            st.warning(f"Run **{current}** (from the link or the last visit) {why}: showing **{ids[0]}** instead. "
                       f"Runs are read from `{store.root}`.")
        current = ids[0]
    # The open run is the one source of truth: the selector shows it on every page, and only the user's own pick
    # (this selector, the Runs page, a link) changes it. Opening another page never does.
    st.session_state[key] = current
    choice = st.selectbox(label, ids, format_func=labels.get, key=key, on_change=_open_picked, args=(key,))
    st.session_state[SELECTED_RUN] = choice
    _offer_finished(store, ids, choice)
    return store.open(choice)


def _open_picked(key: str) -> None:
    st.session_state[SELECTED_RUN] = st.session_state[key]


def _offer_finished(store: RunStore, ids: list[str], shown: str) -> None:
    """A session this tab started that has finished since is offered, never imposed, on the analysis pages."""
    mine = st.session_state.get(STARTED_HERE)
    if not mine or mine == shown or mine not in ids or store.open(mine).status().get("status") != "done":
        return
    c1, c2 = st.columns([4, 1], vertical_alignment="center")
    c1.caption(f"The session you started, **{mine}**, has finished; this page still shows **{shown}**.")
    c2.button("Show it", key=f"common.offer.{mine}", icon=":material/open_in_new:", type="tertiary",
              on_click=lambda: st.session_state.update({SELECTED_RUN: mine}))


def pick_run_with_probe(key: str, missing: str, no_probe=None, offers=None):
    """pick_run, then the run's probe.json; stops the page with a message when either is missing or damaged.

    `missing` is shown when the run has no probe set yet ({run} is replaced by the run id), unless
    `no_probe(run)` draws something in its place (and returns True); `offers(store, info)` says which runs without
    an epoch it can show (they join the list)."""
    run = pick_run(key, also=offers)
    if run is None:
        st.stop()
    try:
        probe = run.probe()
    except DistillError as e:
        show_error(e)
        st.stop()
    if not probe:
        if no_probe is None or not no_probe(run):
            st.info(missing.format(run=run.id))
        st.stop()
    return run, probe


def keep_choice(key: str, options, default) -> None:
    """Reset a widget's remembered value when it is not one of its options (another run, other sizes)."""
    if key in st.session_state and st.session_state[key] not in list(options):
        del st.session_state[key]
    st.session_state.setdefault(key, default)


def pick_weights(run, student: str, key: str, reads: str) -> tuple[str, dict, list[str]]:
    """Which of a variant's kept weights read a live input (a typed sentence, an uploaded picture): "final", or
    "best" where an earlier epoch had a better validation accuracy. Returns (weights, kept epochs, options)."""
    kept = run.kept_weights(student)                 # {"final": epoch, "best": epoch}: the weights on disk
    options = ["final"] + (["best"] if kept.get("best") not in (None, kept.get("final")) else [])
    keep_choice(key, options, "final")
    weights = st.radio(f"Weights that read the {reads}", options, key=key, horizontal=True,
                       format_func=lambda w: f"{w} (epoch {kept.get(w)})" if kept.get(w) is not None else w,
                       help="The run keeps each variant's final weights and, when an earlier epoch had a better "
                            "validation accuracy, that epoch's weights too.")
    return weights, kept, options


def pick_text(key_prefix: str, probe: dict, help: str | None = None) -> tuple[str, str, int | None]:
    """A probe example or a typed sentence: returns (source "probe"|"typed", text, probe index or None)."""
    k = key_prefix
    shared = st.session_state.get(TYPED_TEXT)
    source = st.radio("Text", ["probe", "typed"], horizontal=True, key=k + "source",
                      format_func={"probe": "a probe example", "typed": "type a sentence"}.get)
    if source == "typed":
        st.session_state.setdefault(k + "text", shared or (probe["texts"][0] if probe["texts"] else ""))
        text = st.text_input("Sentence", key=k + "text", max_chars=500, help=help)
        st.session_state[TYPED_TEXT] = text
        return source, text, None
    if shared and shared != st.session_state.get(k + "text"):     # typed on another page, not this one's own
        st.button(f"Use the sentence typed on another page: “{shared[:60]}{'…' if len(shared) > 60 else ''}”",
                  key=k + "use_typed", type="tertiary", icon=":material/edit:", on_click=_use_typed, args=(k, shared))
    texts, labels, names = probe["texts"], probe["labels"], probe["label_names"]
    if st.session_state.get(k + "example") not in range(len(texts)):
        st.session_state[k + "example"] = 0          # a remembered choice from a run with more examples
    example = st.selectbox(
        "Probe example", range(len(texts)), key=k + "example",
        format_func=lambda i: f"#{i} " + (f"[{x}] " if (x := tasks.example_label(labels[i], names)) else "")
                              + f"{texts[i][:110]}{'…' if len(texts[i]) > 110 else ''}")
    return source, texts[example], example



def _use_typed(key_prefix: str, text: str) -> None:
    st.session_state[key_prefix + "source"] = "typed"
    st.session_state[key_prefix + "text"] = text


def page_link(page: str, label: str, icon: str | None = None, query: dict | None = None) -> None:
    """A link to another page of the app (with query parameters: the view to open there; {"run": id} opens that run
    there when the link is followed, not when it is drawn).

    A page drawn outside the app's navigation (a test of one page file) has no pages to link to: the label is shown
    as text."""
    try:
        st.page_link(page, label=label, icon=icon, query_params=query)
    except (StreamlitAPIException, KeyError):
        st.markdown(f"{icon or ''} {label}")


def show_error(e: Exception) -> None:
    """An error box that names the problem (DistillError messages already say what to do)."""
    if isinstance(e, DistillError):
        st.error(str(e))
    else:
        st.error(f"{type(e).__name__}: {e}")


def weights_chart(run, key: str, epochs: int | None = None, variants: Variants | None = None) -> None:
    """The loss weights and KD temperature each variant actually trained with (train_steps.jsonl), with a sentence
    on what changes them; nothing for runs whose weights and temperature stayed as configured."""
    if epochs is None:
        try:
            epochs = (run.summary() or {}).get("epochs") or run.config().get("train", {}).get("epochs")
        except DistillError:
            epochs = None
    variants = variants or variants_of(run)
    fig = fig_curves.weights_and_temperature(train_steps(run.id), variants.names, variants.reference, epochs)
    if fig is None:
        return
    st.plotly_chart(sized(fig), width="stretch", config=PLOTLY_CONFIG, key=key)
    st.caption("The weight each loss had at each step, and the temperature of the teacher's softened outputs: loss "
               "schedules, the TinyBERT preset, automatic weighting and a temperature schedule change them. Only "
               "the variants whose weights or temperature changed are drawn.")


# ---- which layers and heads a pair of maps shows --------------------------------------------------------------------
AVERAGE_HEADS = page_data.AVERAGE   # the "all heads, averaged" choice of a head selector


@dataclass(frozen=True)
class MapPick:
    """The student layer and head and the teacher layer and heads a page shows, with their descriptions."""
    s_layer: int
    t_layer: int
    s_head: int                     # AVERAGE_HEADS: all heads averaged
    t_heads: list
    s_desc: str
    t_desc: str


def pick_layers_and_heads(key_prefix: str, teacher_shape, student_shape, pairs, rule: str) -> MapPick:
    """Student layer, teacher layer and student head selectors in a row (keys <prefix>student_layer, teacher_layer,
    head), the mapped teacher layer and the head rule's defaults first; the teacher heads that face the chosen
    student head."""
    k = key_prefix
    (Lt, Ht), (Ls, Hs) = teacher_shape, student_shape
    mapped = {s: t for t, s in pairs}
    c1, c2, c3 = st.columns(3)
    keep_choice(k + "student_layer", range(Ls), pairs[0][1] if pairs else 0)
    s_layer = c1.selectbox("Student layer", range(Ls), key=k + "student_layer",
                           format_func=lambda s: f"layer {s}" + (f" → teacher {mapped[s]}" if s in mapped else ""))
    keep_choice(k + "teacher_layer", range(Lt), mapped.get(s_layer, 0))
    t_layer = c2.selectbox("Teacher layer", range(Lt), key=k + "teacher_layer",
                           format_func=lambda t: f"layer {t}" + (" (mapped)" if mapped.get(s_layer) == t else ""))
    heads = [AVERAGE_HEADS, *range(Hs)]
    keep_choice(k + "head", heads, AVERAGE_HEADS if rule == "mean" else 0)
    s_head = c3.selectbox("Student head", heads, key=k + "head",
                          format_func=lambda h: "all heads, averaged" if h == AVERAGE_HEADS else f"head {h}")
    t_heads = page_data.teacher_heads(s_head, rule, Ht, Hs)
    return MapPick(s_layer, t_layer, s_head, t_heads,
                   "all heads averaged" if s_head == AVERAGE_HEADS else f"head {s_head}",
                   f"head {t_heads[0]}" if len(t_heads) == 1 else f"{len(t_heads)} heads averaged")
