"""The Runs page's tables (one line per run, one line per variant of a run) and its teacher cache panel."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app import common
from distill_core.errors import DistillError
from distill_core.store import RunInfo, RunStore
from distill_core.vocab import TEACHER

CACHE_MSG = "runs.cache_msg"


def pct(x) -> float | None:
    return None if x is None else round(100 * x, 1)


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested settings as dotted keys; a variants list becomes variants.<name>.losses."""
    out = {}
    for k, v in d.items():
        if k == "variants" and isinstance(v, list):
            for item in v:
                if isinstance(item, dict):
                    out[f"{prefix}variants.{item.get('name')}.losses"] = item.get("losses")
        elif isinstance(v, dict) and k != "losses":
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def overview_rows(store: RunStore, infos: list[RunInfo]) -> list[dict]:
    """One row per run: its variants, the teacher's, the reference's and the best variant's test accuracy, and how
    many warnings its models drew (a model that answers one class or does not beat the most common one)."""
    rows = []
    for r in infos:
        names, ref, warned = [], None, None
        if r.status != "damaged":
            try:
                run = store.open(r.run_id)
                v = common.variants_of(run)
                names, ref = v.names, v.reference
                warned = len((run.summary() or {}).get("warnings") or [])
            except DistillError:
                pass
        scored = [(r.accuracy[n], n) for n in names if r.accuracy.get(n) is not None]
        best = max(scored, key=lambda t: t[0], default=(None, None))     # the first of equals
        rows.append({"status": f"{common.STATUS_ICONS.get(r.status, '')} {r.status}", "run": r.run_id,
                     "name": r.name, "started (UTC)": r.started.replace("T", " ")[:16],
                     "dataset": Path(r.dataset).name or r.dataset, "epochs": r.epochs_done,
                     "teacher %": pct(r.accuracy.get(TEACHER)),
                     "reference %": pct(r.accuracy.get(ref)) if ref else None,
                     "best variant": best[1], "best %": pct(best[0]),
                     "warnings": f"⚠️ {warned}" if warned else None, "variants": ", ".join(names),
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
    from datetime import datetime

    from distill_core.cache import cache_entries
    from distill_core.teacher import cache_root
    entries = cache_entries()
    size = sum(e.size_bytes for e in entries)
    text = (f"Teacher cache: {size / 1e6:.1f} MB in {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} at "
            f"`{cache_root()}`.")
    rows = [{"kind": e.kind, "key": e.key, "source": e.source, "size (MB)": round(e.size_bytes / 1e6, 2),
             "last used": datetime.fromtimestamp(e.used).strftime("%Y-%m-%d %H:%M")} for e in entries]
    return text, rows


def clear_cache() -> None:
    from distill_core.cache import clear_cache as clear
    if st.session_state.get("runs.cache_confirm"):
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
    c1, c2 = st.columns([3, 1], vertical_alignment="center")
    confirm = c1.checkbox("Yes, delete the cached teachers (a session prepares its teacher again; until then the "
                          "typed-text and attribution views of earlier runs that used one cannot run)",
                          key="runs.cache_confirm", disabled=not rows)
    c2.button("Clear the cache", key="runs.cache_clear", disabled=not confirm, on_click=clear_cache, icon="🧹")
