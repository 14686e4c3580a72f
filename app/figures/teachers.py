"""Several teachers on the pages: the table rows of each further teacher and of their ensemble, and a run's summary
completed with its twin comparisons. Pure functions of a run's summary.json (no Streamlit). What the page says about
them (ensemble_reading, teacher_label) is in distill_core.verdicts."""
from __future__ import annotations

from distill_core.config import SessionConfig
from distill_core.ensemble import twin_comparisons
from distill_core.errors import DistillError
from distill_core.verdicts import teacher_label
from distill_core.vocab import ENSEMBLE


def further_rows(summary: dict) -> list[dict]:
    """Table rows after the first teacher's: each further teacher, then the ensemble (accuracy, params, size)."""
    teachers = summary.get("teachers") or []
    if len(teachers) < 2:
        return []
    rows = [{"name": t["name"], "label": teacher_label(t, teachers[0]), "accuracy": t.get("accuracy"),
             "params": t.get("params"), "size_bytes": t.get("size_bytes")} for t in teachers[1:]]
    ens = summary.get("ensemble") or {}
    rows.append({"name": ENSEMBLE, "label": f"ensemble of {len(teachers)} teachers ({ens.get('combine')} of "
                                              f"{ens.get('average', 'logits')})",
                 "accuracy": ens.get("accuracy"),
                 "params": sum(t.get("params") or 0 for t in teachers) or None,
                 "size_bytes": sum(t.get("size_bytes") or 0 for t in teachers) or None})
    return rows


def with_twins(summary: dict, config: dict, predictions: dict | None) -> dict:
    """The summary of a run with several teachers, with "twins" computed from its config and test answers when the
    run was written before the engine recorded them."""
    if not summary.get("teachers") or "twins" in summary or not predictions:
        return summary
    try:
        cfg = SessionConfig.from_dict(config)
    except DistillError:
        return summary
    return {**summary, "twins": twin_comparisons(cfg, predictions["labels"], predictions["predictions"]),
            "learns_from": summary.get("learns_from") or {v.name: v.teacher for v in cfg.variants}}
