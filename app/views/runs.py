"""Runs: every session in the run store. Open one for the other pages, compare two, download or delete."""
from pathlib import Path

import pandas as pd
import streamlit as st

from app import common, export_panel, roles, state
from app import run_list as rl
from distill_core.errors import DistillError

DELETE_MSG = "runs.delete_msg"

store = common.get_store()
view = state.View("runs", [])
linked = view.restore()                  # /runs?run=X opens run X and chooses it below
st.title("Runs")
st.caption(f"Run store: `{store.root}` (set `ADS_RUNS_DIR` to use another folder).")


def label(r) -> str:
    return f"{common.STATUS_ICONS.get(r.status, '')} {r.run_id}" + (f" · {r.name}" if r.name else "")


def delete_run(run_id: str) -> None:
    if not st.session_state.get("runs.delete_confirm"):
        return
    if not roles.may_change():              # a viewer's crafted request: nothing is deleted
        st.session_state[DELETE_MSG] = ("error", f"Only the instructor can delete runs. {roles.how_to_instruct()}")
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
    rl.cache_section()
    st.stop()

table = pd.DataFrame(rl.overview_rows(store, infos))
if not any(r.error for r in infos):
    table = table.drop(columns="problem")
pct_col = st.column_config.NumberColumn
st.dataframe(table, hide_index=True, key="runs.table", placeholder="–", column_config={
    "score": st.column_config.TextColumn(help="what the test percentages measure: accuracy (classification), entity "
                                              "F1 (tagging) or chrF (translation)"),
    "teacher %": pct_col(format="%.1f", help="the teacher's test score (the score column says which)"),
    "reference %": pct_col(format="%.1f", help="test score of the variant trained on the labels only"),
    "best %": pct_col(format="%.1f", help="test score of the best variant"),
    "variants": st.column_config.TextColumn(help="the student variants the session trained, in order")})
for r in infos:
    if r.status == "damaged":
        st.warning(f"Run folder **{r.run_id}** is damaged and cannot be opened: {r.error}. "
                   f"Download it to inspect, or delete it.")

by_id = {r.run_id: r for r in infos}
ids = list(by_id)
st.subheader("One run")
current = st.session_state.get(common.SELECTED_RUN)
if linked and current not in ids:
    st.warning(f"Run **{current}** (from the link) is not in this run store. Runs are read from `{store.root}`.")
if st.session_state.get("runs.choice") not in ids or linked:
    st.session_state["runs.choice"] = current if current in ids else ids[0]
choice = st.selectbox("Run", ids, format_func=lambda i: label(by_id[i]), key="runs.choice",
                      on_change=lambda: st.session_state.update({"runs.delete_confirm": False}))
may_change = roles.may_change()
c_open, c_zip, *c_del = st.columns(3 if may_change else 2, border=True)
with c_open:
    usable = by_id[choice].status != "damaged"
    if st.button("Open", key="runs.open", type="primary", disabled=not usable, icon=":material/folder_open:"):
        st.session_state[common.SELECTED_RUN] = choice
    if usable and st.session_state.get(common.SELECTED_RUN) == choice:
        st.success(f"**{choice}** is open: the Attention explorer, Divergence, Accuracy and Attributions "
                   f"pages now show it.")
    else:
        st.caption("Makes this the run the analysis pages show.")
with c_zip:
    st.download_button("Download as .zip", data=lambda: store.zip_bytes(choice), file_name=f"{choice}.zip",
                       mime="application/zip", key="runs.download", icon=":material/download:")
    st.caption("Config, metrics, attention maps, trained students and summary.")
for c in c_del:                          # the instructor's (or a user's alone) only
    confirm = c.checkbox("Yes, delete this run's folder for good", key="runs.delete_confirm")
    c.button("Delete", key="runs.delete", disabled=not confirm, on_click=delete_run, args=(choice,),
             icon=":material/delete:")
if usable:
    run = store.open(choice)
    ended = by_id[choice]
    if ended.status in ("failed", "interrupted") and ended.error:
        shown = st.error if ended.status == "failed" else st.warning
        shown(f"{common.STATUS_ICONS.get(ended.status, '')} This run {ended.status}: {ended.error}. "
              f"{'The epochs it finished are below.' if ended.epochs_done else 'It finished no epoch.'}")
        stack = run.status().get("traceback")
        if stack:
            with st.expander("Where it stopped (Python's stack)"):
                st.code(stack, language=None)
    try:
        variants = common.variants_of(run)
        if variants.names:
            rows = pd.DataFrame(rl.variant_rows(run, variants))
            st.dataframe(rows, hide_index=True, key="runs.variants", placeholder="–", column_config={
                "mean JS to the teacher": pct_col(format="%.3g"), rows.columns[3]: pct_col(format="%+.1f"),
                "test %": pct_col(format="%.1f"), "last validation %": pct_col(format="%.1f")})
        with st.expander("Settings and summary of this run"):
            st.json(run.config(), expanded=False)
            summary = run.summary()
            st.json(summary if summary is not None else {"summary": "none yet"}, expanded=False)
        rl.report_section(store, run)
        export_panel.draw(choice, may_push=roles.may_change())
    except DistillError as e:
        common.show_error(e)


def compare_section() -> None:
    st.subheader("Compare two runs")
    st.page_link(st.Page(Path(__file__).parent / "compare.py", title="Compare runs", icon=":material/compare_arrows:", url_path="compare"),
                 label="Compare two runs, or two variants of one run: attention map by map, divergence head by "
                       "head, curves, accuracies and the settings that differ", icon=":material/compare_arrows:")


view.sync()
compare_section()
rl.sweeps_section(store.root)
rl.cache_section()
