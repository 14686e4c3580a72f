"""Divergence over epochs: how far each variant's attention is from the teacher's, layer by layer and head by head."""
from __future__ import annotations

import numpy as np
import streamlit as st

from app import common, layer_suggestion, state
from app.figures import divergence as fig_divergence, image_attribution as iac
from distill_core import SessionConfig
from distill_core.errors import DistillError
from distill_core.verdicts import divergence_reading, divergence_series
from distill_core.vocab import ATTENTION_KINDS, LOWER_IS_CLOSER, METRIC_HELP, METRIC_LABELS, METRICS, of_kind

K = "divergence."
view = state.View("divergence", state.DIVERGENCE)
view.restore()

head_l, head_r = st.columns([3, 1], vertical_alignment="bottom")
head_l.title("Divergence over epochs")
st.caption("Every epoch each student variant's attention on the probe set is compared with the teacher's, for each "
           "mapped pair of layers, head by head, averaged over the probe examples and their tokens. Epoch 0 is "
           "before training: every variant starts from the same weights.")

run = common.pick_run(K + "run")
if run is None:
    st.stop()
try:
    records = common.metrics(run.id)
    probe = run.probe() or {}
except DistillError as e:
    common.show_error(e)
    st.stop()
if kinds := probe.get("attention_kinds"):        # translation: cross-attention, encoder and decoder self-attention
    if st.session_state.get(K + "kind") not in kinds:
        st.session_state[K + "kind"] = next(iter(kinds))
    kind = st.radio("Attention", list(kinds), key=K + "kind", horizontal=True,
                    format_func=lambda k: ATTENTION_KINDS.get(k, k),
                    help="Each kind has its own pairs of layers and head rule; the divergences are recorded for each.")
    records, probe = of_kind(records, probe, kind)
records = [r for r in records if r.get("attention")]
if not records:
    st.info(iac.no_divergence_reason(probe) or
            f"Run {run.id} has not recorded any divergence yet; it appears here after its first epoch.")
    st.stop()
variants = common.variants_of(run, probe)
try:        # each variant's weighted losses: the reading says what its closer attention can be credited to
    losses = {v.name: dict(v.losses) for v in SessionConfig.from_dict(run.config()).variants}
except DistillError:
    losses = None

labels = fig_divergence.pair_labels(probe.get("pairs", []))
c1, c2 = st.columns([1, 2], gap="large")
with c1:
    if st.session_state.get(K + "metric") not in METRICS:
        st.session_state[K + "metric"] = "js"
    metric = st.selectbox("Metric", METRICS, key=K + "metric", format_func=METRIC_LABELS.get)
    per_head = st.checkbox("One line per head", key=K + "per_head",
                           help="Thin lines: each compared head; thick lines: their mean.")
with c2:
    st.markdown(f"**{METRIC_LABELS[metric]}.** {METRIC_HELP[metric]}")
    if rule := fig_divergence.comparison_rule(probe):
        st.caption(rule)

st.info(divergence_reading(records, metric, labels, variants.names, variants.reference, losses),
        icon=":material/lightbulb:")
curves = fig_divergence.divergence_curves(records, metric, variants.names, variants.reference, per_head=per_head,
                                          labels=labels)
st.plotly_chart(common.sized(curves), width="stretch", config=common.PLOTLY_CONFIG, key=K + "curves")
ref_text = (f"Dashed: the {variants.label(variants.reference)}, trained on the labels only, the reference the others "
            f"are compared with." if variants.reference else "This run has no labels-only reference variant.")
st.caption(f"One colour per variant, the same on every page. {ref_text}")
common.weights_chart(run, K + "weights", variants=variants)

# ---- layer x head at one epoch -----------------------------------------------------------------------
st.subheader("Layer × head at one epoch")
series = {v: divergence_series(records, v, metric) for v in variants.names}
series = {v: s for v, s in series.items() if s[0]}
epochs = sorted(set().union(*(set(e) for e, _ in series.values())))
if st.session_state.get(K + "epoch") not in epochs:
    st.session_state[K + "epoch"] = epochs[-1]
if len(epochs) > 1:
    epoch = st.select_slider("Epoch (0 = before training)", options=epochs, key=K + "epoch")
else:
    epoch = epochs[0]
    st.caption(f"Only epoch {epoch} has been recorded so far.")
grids = {v: vals[np.asarray(e) == epoch][0] for v, (e, vals) in series.items() if epoch in e}
n_rows = next(iter(grids.values())).shape[0]
rows = labels if len(labels) == n_rows else [f"pair {k}" for k in range(n_rows)]
view.sync()
with head_r:
    state.link_button(view)
picked = st.plotly_chart(common.sized(fig_divergence.variant_grids(grids, rows, metric, variants.names,
                                                                  variants.reference,
                                                                  title=f"{METRIC_LABELS[metric]} at epoch {epoch}")),
                         width="stretch", config=common.PLOTLY_CONFIG, key=K + "grid", on_select="rerun",
                         selection_mode="points")
closer = "darker red = further from the teacher" if LOWER_IS_CLOSER[metric] else \
    "darker red = less similar to the teacher"
columns = ("one column: the stage's map" if fig_divergence.cnn_maps(probe) else "columns: compared heads")
st.caption(f"Every variant on one colour scale ({closer}). Rows: mapped layer pairs; {columns}.")


def open_in_explorer(variant: str, pair: int, head: int) -> None:
    """The explorer at this pair of layers and this head, for the variant at this epoch."""
    pairs = probe.get("pairs") or []
    if not 0 <= pair < len(pairs):
        return
    t_layer, s_layer = pairs[pair]
    values = {"explorer.student": variant, "explorer.student_layer": s_layer, "explorer.teacher_layer": t_layer,
              "explorer.epoch": epoch, "explorer.source": "probe", "explorer.teacher_side": "compared"}
    if probe.get("attention_kinds"):
        values["explorer.kind"] = st.session_state.get(K + "kind")
    if probe.get("head_rule") != "mean":
        values["explorer.head"] = head
    state.open_view("explorer", state.EXPLORER, values, run_id=run.id)
    st.switch_page("views/explorer.py")


cell = fig_divergence.selected_cell(picked, [v for v in variants.names if v in grids], rows)
if cell is not None:
    open_in_explorer(*cell)
c1, c2, c3, c4 = st.columns([2, 2, 1, 1], vertical_alignment="bottom")
v_open = c1.selectbox("Variant", list(grids), key=K + "open_variant", format_func=variants.label)
p_open = c2.selectbox("Pair of layers", range(len(rows)), key=K + "open_pair", format_func=rows.__getitem__)
h_open = c3.selectbox("Head", range(grids[v_open].shape[1]), key=K + "open_head", format_func=lambda h: f"head {h}")
if c4.button("Open", key=K + "open", icon=":material/grid_on:", width="stretch", help="Open this head in the Attention explorer"):
    open_in_explorer(v_open, p_open, h_open)
st.caption("Click a cell of a grid, or pick it here, to see that head's maps in the Attention explorer.")

layer_suggestion.section(run, variants, K + "suggest.")
