"""Accuracy and efficiency: what distillation bought, with honest error bars, and what the students cost."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app import charts, common
from distill_core.errors import DistillError

K = "accuracy."
MODELS = ("teacher", "baseline", "distilled")

st.title("⚖️ Accuracy and efficiency")
st.caption("Test-set accuracy of the teacher and of two students of the same size that started from the same "
           "weights and saw the same batches: the **distilled** one also learned from the teacher, the "
           "**baseline** one from the labels only.")

run = common.pick_run(K + "run")
if run is None:
    st.stop()
try:
    summary = run.summary()
    status = run.status().get("status", "unknown")
except DistillError as e:
    common.show_error(e)
    st.stop()

if summary is None:
    st.info(f"Run {run.id} is {status}: test accuracy, sizes and latencies appear here when it finishes. "
            "Validation accuracy per epoch is on the **Runs** page meanwhile.")
    st.stop()

acc = summary.get("accuracy") or {}
n = int(summary.get("test_size") or 0)
if all(acc.get(m) is None for m in MODELS):
    why = summary.get("error") or ""
    st.warning(f"Run {run.id} was {summary.get('status', status)} before its test evaluation, so it has no test "
               f"accuracy to compare{': ' + why if why else ''}. Start a new session and let it finish to get one.")
    val = summary.get("val_accuracy") or {}
    epochs = (summary.get("divergence") or {}).get("epochs") or []
    if val and epochs:
        st.markdown("Validation accuracy of the epochs it finished (not a test result):")
        table = pd.DataFrame({charts.MODEL_LABELS.get(s, s): v for s, v in val.items() if len(v) == len(epochs)},
                             index=pd.Index(epochs, name="epoch"))
        st.dataframe(table.style.format("{:.1%}"), key=K + "val_table")
    st.stop()

params, size, latency = summary.get("params") or {}, summary.get("size_bytes") or {}, summary.get("latency_ms") or {}
t_acc, t_lat = acc.get("teacher"), latency.get("teacher")
rows = []
for m in MODELS:
    if m not in params and acc.get(m) is None:
        continue
    a = acc.get(m)
    rows.append({
        "model": charts.MODEL_LABELS[m],
        "accuracy (%)": 100 * a if a is not None else None,
        "± 95% (points)": 100 * charts.binomial_halfwidth(a, n) if a is not None and n else None,
        "% of teacher's accuracy": 100 * a / t_acc if a is not None and t_acc else None,
        "params (M)": params[m] / 1e6 if m in params else None,
        "size (MB)": size[m] / 1e6 if m in size else None,
        "latency (ms)": latency.get(m),
        "speed-up": t_lat / latency[m] if t_lat and latency.get(m) else None,
    })
st.dataframe(pd.DataFrame(rows), hide_index=True, key=K + "table", column_config={
    "accuracy (%)": st.column_config.NumberColumn(format="%.1f"),
    "± 95% (points)": st.column_config.NumberColumn(format="%.1f", help="normal approximation: 1.96·√(p(1−p)/n)"),
    "% of teacher's accuracy": st.column_config.NumberColumn(format="%.0f"),
    "params (M)": st.column_config.NumberColumn(format="%.2f"),
    "size (MB)": st.column_config.NumberColumn(format="%.1f"),
    "latency (ms)": st.column_config.NumberColumn(format="%.1f"),
    "speed-up": st.column_config.NumberColumn(format="%.1f×"),
})
device = summary.get("device") or "unknown device"
st.caption(f"Test set: {n} examples. Latency: median time to classify one example (batch of 1, "
           f"probe texts) on **{device}**; size on disk: the saved weights.")

# ---- the verdict -------------------------------------------------------------------------------------
d_acc, b_acc = acc.get("distilled"), acc.get("baseline")
if d_acc is not None and b_acc is not None and n:
    diff, lo, hi = charts.difference_interval(d_acc, b_acc, n)
    pts = f"{diff * 100:+.1f} points (95% interval {lo * 100:+.1f} to {hi * 100:+.1f})"
    if lo > 0:
        verdict = f"**Distillation beat the baseline**: {d_acc:.1%} vs {b_acc:.1%}, a difference of {pts}."
        show = st.success
    elif hi < 0:
        verdict = f"**The baseline beat distillation**: {b_acc:.1%} vs {d_acc:.1%}; distilled minus baseline is {pts}."
        show = st.warning
    else:
        better = "ahead" if diff > 0 else "behind" if diff < 0 else "level"
        verdict = (f"**No clear winner**: the distilled student is {better} ({d_acc:.1%} vs {b_acc:.1%}, {pts}), "
                   "but the interval includes zero, so this test set cannot tell them apart.")
        show = st.info
    show(verdict + f" Measured on {n} test examples with one seed: another seed or a larger test set may "
                   "change the result. The interval treats the two accuracies as independent; both students "
                   "answered the same examples, so a paired test would be somewhat tighter.")
    if t_acc:
        st.markdown(f"The distilled student keeps **{d_acc / t_acc:.0%}** of the teacher's accuracy "
                    f"(the baseline {b_acc / t_acc:.0%})"
                    + (f" with {params['distilled'] / params['teacher']:.0%} of its parameters"
                       if params.get("distilled") and params.get("teacher") else "")
                    + (f", running {t_lat / latency['distilled']:.1f}× faster on {device}."
                       if t_lat and latency.get("distilled") else "."))
elif d_acc is not None:
    st.info("This run trained no baseline, so there is nothing to compare distillation against.")

c1, c2 = st.columns([1, 2], gap="medium")
with c1:
    st.plotly_chart(charts.accuracy_bars(acc, n), width="stretch", config=common.PLOTLY_CONFIG, key=K + "accuracy_bars")
with c2:
    st.plotly_chart(charts.efficiency_bars(params, size, latency, device), width="stretch", config=common.PLOTLY_CONFIG, key=K + "efficiency_bars")
