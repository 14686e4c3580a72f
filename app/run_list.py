"""The Runs page's tables (one line per run, one line per variant of a run) and its teacher cache panel."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import streamlit as st

from app import common, report, roles, tasks
from distill_core.cache import cache_entries, cache_root, clear_cache as clear
from distill_core.errors import DistillError
from distill_core.store import RunInfo, RunStore
from distill_core.sweep import SweepStore, summarize_sweep
from distill_core.vocab import TEACHER

CACHE_MSG = "runs.cache_msg"


def pct(x) -> float | None:
    return None if x is None else round(100 * x, 1)


def overview_rows(store: RunStore, infos: list[RunInfo]) -> list[dict]:
    """One row per run: its variants, the teacher's, the reference's and the best variant's test accuracy, and how
    many warnings its models drew (a model that answers one class or does not beat the most common one)."""
    rows = []
    for r in infos:
        names, ref = [], None
        if r.status != "damaged":
            try:
                v = common.variants_of(store.open(r.run_id))
                names, ref = v.names, v.reference
            except DistillError:
                pass
        scored = [(r.accuracy[n], n) for n in names if r.accuracy.get(n) is not None]
        best = max(scored, key=lambda t: t[0], default=(None, None))     # the first of equals
        rows.append({"status": f"{common.STATUS_ICONS.get(r.status, '')} {r.status}", "run": r.run_id,
                     "name": r.name, "started (UTC)": r.started.replace("T", " ")[:16],
                     "dataset": Path(r.dataset).name or r.dataset, "epochs": r.epochs_done, "score": r.score,
                     "teacher %": pct(r.accuracy.get(TEACHER)),
                     "reference %": pct(r.accuracy.get(ref)) if ref else None,
                     "best variant": best[1], "best %": pct(best[0]),
                     "warnings": f"⚠ {r.warnings}" if r.warnings else None, "variants": ", ".join(names),
                     "problem": r.error})
    return rows


def variant_rows(run, variants: common.Variants) -> list[dict]:
    """One row per variant of a run: objectives, test and last validation accuracy, last mean divergence."""
    summary = run.summary() or {}
    acc = summary.get("accuracy") or {}
    losses = common.objectives_text(run)
    last = {}
    for rec in common.metrics(run.id):
        if rec.get("epoch", -1) >= last.get(rec.get("student"), {}).get("epoch", -1):
            last[rec.get("student")] = rec
    ref_acc = acc.get(variants.reference)
    rows = []
    for v in variants.names:
        a, rec = acc.get(v), last.get(v, {})
        rows.append({"variant": v + (" (reference)" if v == variants.reference else ""),
                     "objectives": losses.get(v), "test %": pct(a),
                     f"vs {variants.reference or 'reference'} (points)":
                         round(100 * (a - ref_acc), 1) if a is not None and ref_acc is not None
                         and v != variants.reference else None,
                     "last validation %": pct(rec.get("val_accuracy")), "epoch": rec.get("epoch"),
                     "mean JS to the teacher": rec.get("js_mean")})
    return rows


def cache_overview() -> tuple[str, list[dict]]:
    """A sentence on the teacher cache (size, entries, folder) and one row per entry."""

    entries = cache_entries()
    size = sum(e.size_bytes for e in entries)
    text = (f"Teacher cache: {size / 1e6:.1f} MB in {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} at "
            f"`{cache_root()}`.")
    rows = [{"kind": e.kind, "key": e.key, "source": e.source, "size (MB)": round(e.size_bytes / 1e6, 2),
             "last used": datetime.fromtimestamp(e.used).strftime("%Y-%m-%d %H:%M")} for e in entries]
    return text, rows


def clear_cache() -> None:
    if st.session_state.get("runs.cache_confirm") and roles.may_change():
        freed = clear()
        st.session_state[CACHE_MSG] = f"Freed {freed / 1e6:.1f} MB. Entries a running session is writing are kept."
    st.session_state["runs.cache_confirm"] = False


def cache_section() -> None:
    st.subheader("Teacher cache")
    text, rows = cache_overview()
    if msg := st.session_state.pop(CACHE_MSG, None):
        st.success(msg)
    st.markdown(text + " Fine-tuned teachers and their outputs on a training set are kept here, so the next "
                "session with the same teacher and data skips that work.")
    if rows:
        with st.expander("Entries"):
            st.dataframe(pd.DataFrame(rows), hide_index=True, key="runs.cache_table")
    if not roles.may_change():
        return
    c1, c2 = st.columns([3, 1], vertical_alignment="center")
    confirm = c1.checkbox("Yes, delete the cached teachers (a session prepares its teacher again; until then the "
                          "typed-text and attribution views of earlier runs that used one cannot run)",
                          key="runs.cache_confirm", disabled=not rows)
    c2.button("Clear the cache", key="runs.cache_clear", disabled=not confirm, on_click=clear_cache, icon=":material/cleaning_services:")


# ---- sweeps ------------------------------------------------------------------------------------------
SWEEP_SELECTED = "sweep.selected"        # read by the Sweep page


def sweep_rows(sweeps) -> list[dict]:
    """One row per sweep (newest first): its seeds, status, and the reference's and best variant's mean test
    accuracy over the finished seeds."""
    rows = []
    for s in sweeps.list():
        ref, best, means = None, None, {}
        if s["status"] != "damaged":
            try:
                summary = summarize_sweep(sweeps.runs, sweeps.open(s["id"]), pool=False)
            except DistillError:
                summary = {}
            means = {v: x.get("acc_mean") for v, x in (summary.get("variants_stats") or {}).items()}
            ref = summary.get("reference")
            best = max(((m, v) for v, m in means.items() if m is not None), default=None)
        rows.append({"status": f"{common.STATUS_ICONS.get(s['status'], '')} {s['status']}", "sweep": s["id"],
                     "name": s["name"], "seeds": ", ".join(map(str, s["seeds"])),
                     "reference": ref, "reference %": pct(means.get(ref)) if ref else None,
                     "best variant": best[1] if best else None, "best %": pct(best[0]) if best else None})
    return rows


def sweep_stat_rows(summary: dict) -> list[dict]:
    """The Sweep page's table, one row per model: test accuracy and final attention JS, each a mean across the
    finished seeds with its 95% interval (summary: distill_core.sweep.summarize_sweep)."""
    def points(x):
        return f"{100 * x:.1f}"

    t = summary.get("teacher") or {}
    rows = [{"model": "teacher", "seeds": len(t.get("accuracy") or []), "accuracy %": pct(t.get("mean")),
             "accuracy 95% interval": _interval_text(t.get("lo"), t.get("hi"), points)}]
    for m, t in (summary.get("teachers") or {}).items():        # several teachers: the others and their ensemble
        rows.append({"model": m, "seeds": len(t.get("accuracy") or []), "accuracy %": pct(t.get("mean")),
                     "accuracy 95% interval": _interval_text(t.get("lo"), t.get("hi"), points)})
    for v in summary.get("variants") or []:
        s = summary["variants_stats"].get(v, {})
        rows.append({"model": v + (" (reference)" if v == summary.get("reference") else ""),
                     "seeds": len([a for a in s.get("accuracy") or [] if a is not None]),
                     "accuracy %": pct(s.get("acc_mean")),
                     "accuracy 95% interval": _interval_text(s.get("acc_lo"), s.get("acc_hi"), points),
                     "final JS": s.get("js_mean"),
                     "JS 95% interval": _interval_text(s.get("js_lo"), s.get("js_hi"), lambda x: f"{x:.4f}")})
    return rows


def _interval_text(lo, hi, fmt) -> str:
    return "–" if lo is None else f"{fmt(lo)} to {fmt(hi)}"


def open_sweep(sweep_id: str) -> None:
    st.session_state[SWEEP_SELECTED] = sweep_id
    st.switch_page("views/sweep.py")


def sweeps_section(root) -> None:
    """The sweeps of the run store: a table, and a button that opens one on the Sweep page."""
    st.subheader("Sweeps")
    sweeps = SweepStore(root)
    rows = sweep_rows(sweeps)
    if not rows:
        st.caption("No sweeps yet: write several seeds (e.g. 0-4) in the New session page's **Seeds** field, or run "
                   "`python -m distill_core sweep --seeds 0-4`.")
        return
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="runs.sweeps", placeholder="–", column_config={
        "reference %": st.column_config.NumberColumn(format="%.1f", help="mean test accuracy over finished seeds"),
        "best %": st.column_config.NumberColumn(format="%.1f", help="the best variant's mean test accuracy")})
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    choice = c1.selectbox("Sweep", [r["sweep"] for r in rows], key="runs.sweep_choice")
    if c2.button("Open the sweep", key="runs.sweep_open", icon=":material/bar_chart:", width="stretch"):
        open_sweep(choice)


# ---- one run as an HTML report -----------------------------------------------------------------------
REPORT_EXAMPLES = "runs.report_examples"


def report_section(store: RunStore, run) -> None:
    """A download of the run as one HTML page that opens offline (figures, settings, accuracies, curves and the
    heatmaps of the chosen probe examples); the page is built when the button is pressed."""
    try:
        probe = run.probe() or {}
    except DistillError:
        probe = {}
    texts, labels, names = probe.get("texts") or [], probe.get("labels") or [], probe.get("label_names") or []
    options = list(range(len(texts)))
    if not set(st.session_state.get(REPORT_EXAMPLES) or []) <= set(options):
        del st.session_state[REPORT_EXAMPLES]           # a remembered choice from a run with more examples
    st.markdown("**Report**")
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    examples = c1.multiselect(
        "Heatmaps of the probe examples", options, default=options[:report.DEFAULT_EXAMPLES], key=REPORT_EXAMPLES,
        disabled=not options, placeholder="none" if options else "this run recorded no probe set",
        format_func=lambda i: f"#{i} [{tasks.example_label(labels[i], names) if i < len(labels) else '?'}] "
                              f"{texts[i][:80]}{'…' if len(texts[i]) > 80 else ''}",
        help="Each chosen example gets a teacher | student | difference heatmap per variant (the reference left "
             "out), at the last mapped layer pair, heads averaged, at the last recorded epoch.")
    run_id = run.id
    c2.download_button(
        "Download report (.html)", data=lambda: report.build_report(
            store.open(run_id), report.default_heatmaps(store.open(run_id), examples)).encode("utf-8"),
        file_name=f"{run_id}-report.html", mime="text/html", key="runs.report_download", icon=":material/description:",
        width="stretch")
    st.caption("One HTML file for a handout or a bug report: the settings, warnings, test accuracies with their "
               "uncertainty, sizes, curves, the layer × head grid and the chosen heatmaps. It opens offline.")
