"""Runs: every session in the run store. Open one for the other pages, compare two, download or delete."""
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import common
from distill_core.errors import DistillError

STUDENTS = ("teacher", "baseline", "distilled")
RUN_COLORS = ("#1f77b4", "#d62728")
DELETE_MSG = "runs.delete_msg"

store = common.get_store()
st.title("Runs")
st.caption(f"Run store: `{store.root}` (set `ADS_RUNS_DIR` to use another folder).")


def pct(x):
    return None if x is None else round(100 * x, 1)


def label(r) -> str:
    return f"{common.STATUS_ICONS.get(r.status, '')} {r.run_id}" + (f" · {r.name}" if r.name else "")


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "losses":
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def delete_run(run_id: str) -> None:
    if not st.session_state.get("runs.delete_confirm"):
        return
    try:
        store.delete(run_id)
    except DistillError as e:
        st.session_state[DELETE_MSG] = ("error", str(e))
    else:
        st.session_state[DELETE_MSG] = ("success", f"Deleted run {run_id}.")
        if st.session_state.get(common.SELECTED_RUN) == run_id:
            del st.session_state[common.SELECTED_RUN]
    st.session_state["runs.delete_confirm"] = False


try:
    infos = store.list()
except DistillError as e:
    common.show_error(e)
    st.stop()
kind, text = st.session_state.pop(DELETE_MSG, (None, None))
if kind:
    getattr(st, kind)(text)
if not infos:
    st.info("No runs yet. Start one on the **New session** page (the default setup runs offline in a few "
            "minutes), or point `ADS_RUNS_DIR` at a folder of runs.")
    st.stop()

rows = [{"status": f"{common.STATUS_ICONS.get(r.status, '')} {r.status}", "run": r.run_id, "name": r.name,
         "started (UTC)": r.started.replace("T", " ")[:16], "dataset": Path(r.dataset).name or r.dataset,
         "epochs": r.epochs_done, **{f"{s} %": pct(r.accuracy.get(s)) for s in STUDENTS},
         "problem": r.error} for r in infos]
table = pd.DataFrame(rows)
if not any(r.error for r in infos):
    table = table.drop(columns="problem")
st.dataframe(table, hide_index=True, key="runs.table", placeholder="–",
             column_config={f"{s} %": st.column_config.NumberColumn(format="%.1f", help=f"{s} test accuracy")
                            for s in STUDENTS})
for r in infos:
    if r.status == "damaged":
        st.warning(f"🧩 Run folder **{r.run_id}** is damaged and cannot be opened: {r.error}. "
                   f"Download it to inspect, or delete it.")

by_id = {r.run_id: r for r in infos}
ids = list(by_id)
st.subheader("One run")
current = st.session_state.get(common.SELECTED_RUN)
choice = st.selectbox("Run", ids, index=ids.index(current) if current in ids else 0, format_func=lambda i: label(by_id[i]),
                      key="runs.choice", on_change=lambda: st.session_state.update({"runs.delete_confirm": False}))
c_open, c_zip, c_del = st.columns(3, border=True)
with c_open:
    usable = by_id[choice].status != "damaged"
    if st.button("Open", key="runs.open", type="primary", disabled=not usable, icon="📂"):
        st.session_state[common.SELECTED_RUN] = choice
    if usable and st.session_state.get(common.SELECTED_RUN) == choice:
        st.success(f"**{choice}** is open: the Attention explorer, Divergence, Accuracy and Attributions "
                   f"pages now show it.")
    else:
        st.caption("Makes this the run the analysis pages show.")
with c_zip:
    st.download_button("Download as .zip", data=lambda: store.zip_bytes(choice), file_name=f"{choice}.zip",
                       mime="application/zip", key="runs.download", icon="⬇️")
    st.caption("Config, metrics, attention maps, trained students and summary.")
with c_del:
    confirm = st.checkbox("Yes, delete this run's folder for good", key="runs.delete_confirm")
    st.button("Delete", key="runs.delete", disabled=not confirm, on_click=delete_run, args=(choice,), icon="🗑️")
if usable:
    with st.expander("Settings and summary of this run"):
        run = store.open(choice)
        try:
            st.json(run.config(), expanded=False)
            summary = run.summary()
            st.json(summary if summary is not None else {"summary": "none yet"}, expanded=False)
        except DistillError as e:
            common.show_error(e)


def summaries(run_ids) -> dict:
    out = {}
    for i in run_ids:
        try:
            s = store.open(i).summary()
        except DistillError:
            continue
        if s and (s.get("divergence") or {}).get("epochs"):
            out[i] = s
    return out


st.subheader("Compare two runs")
done = summaries(ids)
if len(done) < 2:
    st.info("Comparing needs two runs with at least one recorded epoch; there "
            f"{'is' if len(done) == 1 else 'are'} {len(done)}.")
    st.stop()
options = list(done)
c1, c2 = st.columns(2)
a = c1.selectbox("First run", options, index=0, format_func=lambda i: label(by_id[i]), key="runs.compare_a")
b = c2.selectbox("Second run", options, index=1, format_func=lambda i: label(by_id[i]), key="runs.compare_b")
if a == b:
    st.warning("Pick two different runs.")
    st.stop()

div = go.Figure()
acc = go.Figure()
for color, (tag, rid) in zip(RUN_COLORS, (("A", a), ("B", b))):
    d = done[rid]["divergence"]
    for student, dash in (("distilled", "solid"), ("baseline", "dot")):
        if d.get(student):
            div.add_trace(go.Scatter(x=d["epochs"], y=d[student], mode="lines+markers", name=f"{tag} {student}",
                                     line={"color": color, "dash": dash}))
    accs = done[rid].get("accuracy") or {}
    acc.add_trace(go.Bar(x=list(STUDENTS), y=[pct(accs.get(s)) for s in STUDENTS], name=f"{tag}: {rid}",
                         marker_color=color, cliponaxis=False, text=[f"{pct(accs.get(s))}%" if accs.get(s) is not None else "–"
                                                   for s in STUDENTS], textposition="outside"))
div.update_layout(title=f"Attention divergence from the teacher (mean {done[a]['divergence'].get('metric', 'js').upper()})",
                  xaxis_title="epoch", yaxis_title="divergence", xaxis={"dtick": 1}, height=380,
                  margin={"l": 10, "r": 10, "t": 50, "b": 10}, legend={"orientation": "h", "y": -0.2})
acc.update_layout(title="Test accuracy (%)", barmode="group", yaxis_title="%", height=380,
                  yaxis={"range": [0, 112]}, margin={"l": 10, "r": 10, "t": 50, "b": 10},
                  legend={"orientation": "h", "y": -0.2})
c1, c2 = st.columns(2)
c1.plotly_chart(div, width="stretch", config=common.PLOTLY_CONFIG, key="runs.compare_divergence")
c2.plotly_chart(acc, width="stretch", config=common.PLOTLY_CONFIG, key="runs.compare_accuracy")
st.caption(f"A = {a}, B = {b}. Solid lines: distilled students; dotted: baselines. Lower divergence means the "
           "student's attention is closer to the teacher's on the probe sentences.")
try:
    fa, fb = flatten(store.open(a).config()), flatten(store.open(b).config())
except DistillError as e:
    common.show_error(e)
    st.stop()
diff = [{"setting": k, "A": str(fa.get(k, "–")), "B": str(fb.get(k, "–"))}
        for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]
st.markdown("**Settings that differ**")
if diff:
    st.dataframe(pd.DataFrame(diff), hide_index=True, key="runs.compare_diff")
else:
    st.caption("The two runs used the same settings.")
