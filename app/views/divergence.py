"""Divergence over epochs: how far each student's attention is from the teacher's, layer by layer and head by head."""
from __future__ import annotations

import numpy as np
import streamlit as st

from app import charts, common
from distill_core.errors import DistillError
from distill_core.metrics import LOWER_IS_CLOSER, METRIC_LABELS, METRICS

K = "divergence."
EXPLAIN = {
    "kl": "KL(teacher ‖ student), in nats: how much information is lost when the student's attention row stands in "
          "for the teacher's. 0 = identical; lower is closer.",
    "js": "Jensen-Shannon divergence: a symmetric, bounded KL (0 to ln 2 ≈ 0.693). 0 = identical; lower is closer.",
    "mse": "Squared difference of the attention weights, summed over the keys of a row. 0 = identical; "
           "lower is closer.",
    "cosine": "Cosine similarity of the attention rows. 1 = same direction; higher is closer.",
}

st.title("📉 Divergence over epochs")
st.caption("Every epoch both students' attention on the probe set is compared with the teacher's, for each mapped "
           "pair of layers, head by head, averaged over the probe examples and their tokens. Epoch 0 is before "
           "training: both students start from the same weights.")

run = common.pick_run(K + "run")
if run is None:
    st.stop()
try:
    records = common.metrics(run.id)
    probe = run.probe() or {}
except DistillError as e:
    common.show_error(e)
    st.stop()
records = [r for r in records if "attention" in r]
if not records:
    st.info(f"Run {run.id} has not recorded any divergence yet; it appears here after its first epoch.")
    st.stop()

labels = charts.pair_labels(probe.get("pairs", []))
c1, c2 = st.columns([1, 2], gap="large")
with c1:
    metric = st.selectbox("Metric", METRICS, index=METRICS.index("js"), key=K + "metric",
                          format_func=METRIC_LABELS.get)
    per_head = st.checkbox("One line per head", key=K + "per_head",
                           help="Thin lines: each compared head; thick lines: their mean.")
with c2:
    st.markdown(f"**{METRIC_LABELS[metric]}.** {EXPLAIN[metric]}")
    rule = probe.get("head_rule")
    if rule:
        st.caption({"direct": "Head rule direct: each student head is compared with the same teacher head.",
                    "group": f"Head rule group: each of the student's {probe.get('student_heads')} heads is "
                             f"compared with the average of a group of "
                             f"{probe.get('teacher_heads', 0) // max(1, probe.get('student_heads', 1))} teacher heads.",
                    "mean": "Head rule mean: both sides are averaged over their heads, one comparison per layer pair."
                    }.get(rule, ""))

st.info(charts.divergence_reading(records, metric, labels), icon="🧾")
st.plotly_chart(charts.divergence_curves(records, metric, per_head=per_head, labels=labels),
                width="stretch", config=common.PLOTLY_CONFIG, key=K + "curves")

# ---- layer x head at one epoch -----------------------------------------------------------------------
st.subheader("Layer × head at one epoch")
series = {s: charts.divergence_series(records, s, metric) for s in ("distilled", "baseline")}
series = {s: v for s, v in series.items() if v[0]}
epochs = sorted(set().union(*(set(e) for e, _ in series.values())))
if st.session_state.get(K + "epoch") not in epochs:
    st.session_state[K + "epoch"] = epochs[-1]
if len(epochs) > 1:
    epoch = st.select_slider("Epoch (0 = before training)", options=epochs, key=K + "epoch")
else:
    epoch = epochs[0]
    st.caption(f"Only epoch {epoch} has been recorded so far.")
grids = {s: v[np.asarray(e) == epoch][0] for s, (e, v) in series.items() if epoch in e}
lo = min(float(g.min()) for g in grids.values())
hi = max(float(g.max()) for g in grids.values())
cols = st.columns(len(grids))
for col, (s, grid) in zip(cols, grids.items()):
    rows = labels if len(labels) == grid.shape[0] else [f"pair {k}" for k in range(grid.shape[0])]
    with col:
        st.plotly_chart(charts.layer_head_grid(grid, rows, f"{charts.MODEL_LABELS[s]}, epoch {epoch}", metric,
                                               zmin=lo, zmax=hi), width="stretch", config=common.PLOTLY_CONFIG, key=f"{K}grid.{s}")
closer = "darker red = further from the teacher" if LOWER_IS_CLOSER[metric] else \
    "darker red = less similar to the teacher"
st.caption(f"Both grids share one colour scale ({closer}). Rows: mapped layer pairs; columns: compared heads.")
