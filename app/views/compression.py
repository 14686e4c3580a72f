"""Compression: int8 and head-pruned versions of a finished run's students, what each keeps and what it costs."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app import common, roles, state, tasks
from app.figures import compression as cc
from distill_core import compress, latency
from distill_core.errors import DistillError
from distill_core.verdicts import heads_reading

K = "compression."
ALL = "__all__"
view = state.View("compression", [state.Field(K + "variant", "variant")])
view.restore()

head_l, head_r = st.columns([3, 1], vertical_alignment="bottom")
head_l.title("Compression")
st.caption("Smaller versions of a finished run's students, each measured like the students themselves: **int8** "
           "weights for the linear layers (and, for text, the word embeddings, most of a small student's size), and "
           "attention heads **pruned** by importance (Michel et al. 2019). Does a distilled student depend on fewer "
           "heads than one trained on the labels alone?")

run = common.pick_run(K + "run")
if run is None:
    st.stop()
try:
    status = run.status().get("status", "unknown")
    record = compress.read_compression(run)
except DistillError as e:
    common.show_error(e)
    st.stop()
kind = tasks.of(run.probe())
if not kind.compresses:
    st.info(f"Run {run.id} is a {kind.label} run. Compression (int8 weights, heads pruned by their importance to a "
            f"classifier's loss) is built for text and image classification: it measures each version by one "
            f"label per input. Its students' sizes and latencies are on the Accuracy page.")
    st.stop()
variants = common.variants_of(run)
options = [ALL, *variants.names]
if st.session_state.get(K + "variant") not in options:
    st.session_state[K + "variant"] = ALL
view.sync()
with head_r:
    state.link_button(view)

if status != "done":
    st.info(f"Run {run.id} is {status}: its students can be compressed once it has finished.")
    st.stop()

c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
choice = c1.selectbox("Variant to compress", options, key=K + "variant",
                      format_func=lambda v: "every variant" if v == ALL else variants.label(v),
                      help="One variant is compressed together with the labels-only reference, so that their "
                           "pruning curves share the axes.")
fractions = ", ".join(f"{f:.0%}" for f in compress.DEFAULT_FRACTIONS)
if not roles.may_change():
    c2.caption("The instructor compresses runs.")
elif c2.button("Compress again" if record else "Compress", key=K + "compress", icon=":material/compress:",
               width="stretch", help=f"On the CPU: about half a minute per variant for the default student (2,500 "
                                     f"test examples, 7 versions each). Heads removed: {fractions}."):
    with st.spinner("Quantizing, ranking the heads and measuring every version on the test set…"):
        try:
            compress.compress_run(run, None if choice == ALL else [choice])
        except DistillError as e:
            common.show_error(e)
        else:
            st.rerun()                 # drawn again from the record just written

if not record:
    what = "press **Compress**" if roles.may_change() else "the instructor can compress it"
    st.info(f"This run has not been compressed yet: {what}. Every new version goes to the run's "
            "`compressed/` folder and the measurements to `compression.json`; nothing the run wrote is changed.")
    st.stop()

ref = variants.reference
names = [v for v in variants.names if v in (record.get("variants") or {})]
if common.presenting():
    common.notice(["int8 weights make a student several times smaller, at almost the same accuracy",
                   "each line: test accuracy as more heads are masked, least important first",
                   "a flatter line depends on fewer of its heads"])

reading = heads_reading(record, names, ref)
if reading:
    st.markdown(reading)
pruning = cc.pruning_figure(record, names, ref)
if pruning.data:
    st.plotly_chart(common.sized(pruning), width="stretch", config=common.PLOTLY_CONFIG, key=K + "pruning")
st.caption("Pruning here masks heads: a masked head's output is multiplied by zero, but its weights stay (a "
           "pruned version's folder holds its head mask and reads the float32 weights), so a pruned version is as "
           "large as the float32 one and no faster. Only int8 makes a student smaller.")

st.dataframe(pd.DataFrame(cc.version_rows(record, names, ref)), hide_index=True, key=K + "table", placeholder="–",
             column_config={
                 "size (MB)": st.column_config.NumberColumn(format="%.1f"),
                 "size vs fp32 (%)": st.column_config.NumberColumn(format="%.0f%%"),
                 "latency (ms)": st.column_config.NumberColumn(
                     format="%.2f", help="median time to classify one probe example (batch of 1) on the CPU, one "
                                         "thread, every version of a variant timed in turn (conditions below)"),
                 "test accuracy (%)": st.column_config.NumberColumn(format="%.1f"),
                 "vs fp32 (points)": st.column_config.NumberColumn(format="%+.1f"),
                 "attention JS to the teacher": st.column_config.NumberColumn(
                     format="%.4f", help="mean Jensen-Shannon divergence on the probe set, as on the Divergence "
                                         "page, over the heads the version keeps; lower is closer"),
             })
timed = {name: record["variants"][name].get("latency_conditions") for name in names}
for name, conditions in timed.items():
    if busy := latency.busy_text(conditions):
        st.warning(f"**{variants.label(name)}**: {busy}", icon=":material/timer:")
lat_l, lat_r = st.columns([4, 1], vertical_alignment="center")
lat_l.caption(" ".join(f"Latency of the {variants.label(name)}'s versions, timed together: "
                       f"{latency.conditions_text(c)}" for name, c in timed.items()) if any(timed.values())
              else latency.NOT_RECORDED)
if roles.may_change() and lat_r.button(
        "Measure again", key=K + "measure_latency", icon=":material/timer:", width="stretch",
        help="Loads every saved version back and times each variant's versions again now, interleaved on one thread, "
             "on the CPU."):
    with st.spinner("Timing every version again…"):
        try:
            compress.measure_again(run)
        except DistillError as e:
            common.show_error(e)
        else:
            st.rerun()
st.plotly_chart(common.sized(cc.versions_figure(record, names, ref)), width="stretch",
                config=common.PLOTLY_CONFIG, key=K + "versions")
importance = cc.importance_figure(record, names, ref)
if importance is not None:
    st.plotly_chart(common.sized(importance), width="stretch", config=common.PLOTLY_CONFIG, key=K + "importance")
st.caption(f"Measured {record.get('created', '')} on the {record.get('device', 'cpu').upper()}, final weights, "
           f"{record.get('test_size')} test examples. Attention JS: the mean over the probe set and over the heads "
           f"a version keeps (a pruned version's removed heads are left out). Each version is a folder under "
           f"`compressed/<variant>/` in the run that loads back with `distill_core.compress.load_compressed`.")
with st.expander("How each version was made"):
    for name in names:
        st.markdown(f"**{variants.label(name)}**\n" + "\n".join(
            f"- {n}" for n in record["variants"][name].get("notes") or []))
