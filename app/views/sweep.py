"""Sweep across seeds: the same session once per students' seed, and what the seeds say together."""
import pandas as pd
import streamlit as st

from app import common, run_list as rl
from app.figures import sweep as fig_sweep
from distill_core.errors import DistillError
from distill_core.sweep import SweepStore, summarize_sweep
from distill_core.verdicts import POOLED_NOTE, sweep_verdict_lines

SELECTED = rl.SWEEP_SELECTED     # set by other pages (Runs, New session) to open a sweep here
PICK = "sweep.pick"
ACTIVE = ("queued", "running")


@st.cache_data(show_spinner=False, max_entries=32)
def read_summary(root: str, sweep_id: str, version: float) -> dict:
    sweeps = SweepStore(root)
    return summarize_sweep(sweeps.runs, sweeps.open(sweep_id))


def version(sweeps: SweepStore, record: dict) -> float:
    """Changes whenever the sweep record or one of its runs' status or summary does: the cache key."""
    paths = [sweeps.folder(record["id"]) / "sweep.json"]
    for run_id in record.get("runs", {}).values():
        paths += [sweeps.root / run_id / "status.json", sweeps.root / run_id / "summary.json"]
    return max(p.stat().st_mtime if p.exists() else 0.0 for p in paths)


def show(sweep_id: str) -> str | None:
    """Draw the sweep; returns its status."""
    try:
        record = sweeps.open(sweep_id)
        summary = read_summary(str(sweeps.root), sweep_id, version(sweeps, record))
    except DistillError as e:
        common.show_error(e)
        return None
    done, seeds = summary["seeds_done"], summary["seeds"]
    icon = common.STATUS_ICONS.get(summary["status"], "")
    st.markdown(f"{icon} **{summary['status']}** · seeds done: {len(done)} of {len(seeds)} "
                f"({', '.join(map(str, done)) or 'none yet'}) · test examples per seed: "
                f"{summary.get('test_size') or '–'}")
    with st.expander("Runs of this sweep"):
        st.dataframe(pd.DataFrame([{"seed": s, "run": summary["runs"].get(str(s)),
                                    "status": summary["seed_status"][str(s)]} for s in seeds]),
                     hide_index=True, key="sweep.runs")
    for p in summary.get("problems") or []:
        st.warning(p, icon=":material/broken_image:")
    if not done:
        st.info("No seed has finished yet: the table and the figure appear when the first one does.")
        return summary["status"]
    st.dataframe(pd.DataFrame(rl.sweep_stat_rows(summary)), hide_index=True, key="sweep.table", placeholder="–",
                 column_config={"accuracy %": st.column_config.NumberColumn(format="%.1f"),
                                "final JS": st.column_config.NumberColumn(format="%.4f",
                                                                          help="lower = closer to the teacher")})
    st.subheader(f"Against the {summary.get('reference') or 'reference'}")
    lines = sweep_verdict_lines(summary)
    if not lines:
        st.caption("This sweep has no labels-only reference variant (or no other variant) to compare with.")
    for line in lines:
        st.markdown(line)
    if lines:
        st.caption(POOLED_NOTE)
    st.plotly_chart(common.sized(fig_sweep.sweep_figure(summary)), width="stretch", config=common.PLOTLY_CONFIG,
                    key="sweep.figure")
    if summary.get("warnings"):
        st.warning("\n\n".join(w["message"] for w in summary["warnings"]), icon=":material/warning:")
    return summary["status"]


@st.fragment(run_every=3.0)
def live(sweep_id: str) -> None:
    """A sweep still running: redrawn every few seconds, and the whole page once when it ends."""
    if show(sweep_id) not in ACTIVE:
        st.rerun()


st.title("Sweep across seeds")
st.caption("The same session once per students' seed (train.seed): the teacher and the test set stay the same, so "
           "a difference that holds across seeds is more than the luck of one initialisation.")
sweeps = SweepStore(common.runs_dir())
infos = sweeps.list()
if not infos:
    st.info("No sweeps yet. On the **New session** page, write several seeds (e.g. `0-4`) in the **Seeds** field "
            "and press Start, or run `python -m distill_core sweep --seeds 0-4`.")
    st.stop()
by_id = {s["id"]: s for s in infos}
ids = list(by_id)
for key in (SELECTED, PICK):                   # a sweep opened from another page, else the one shown last
    if st.session_state.get(key) in ids:
        st.session_state[PICK] = st.session_state[key]
        break
else:
    st.session_state[PICK] = ids[0]
choice = st.selectbox("Sweep", ids, key=PICK,
                      on_change=lambda: st.session_state.update({SELECTED: st.session_state[PICK]}),
                      format_func=lambda i: f"{common.STATUS_ICONS.get(by_id[i]['status'], '')} {i}"
                                            + (f" · {by_id[i]['name']}" if by_id[i]["name"] else ""))
st.session_state[SELECTED] = choice
if by_id[choice]["status"] in ACTIVE:
    live(choice)
else:
    show(choice)
