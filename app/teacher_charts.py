"""Several teachers on the pages: how each further teacher differs from the first, their ensemble's rows, and whether
learning from the ensemble helped. Pure functions of a run's summary.json (no Streamlit)."""
from __future__ import annotations

from distill_core.vocab import ENSEMBLE, TEACHER

COMBINE_WORDS = {"mean": "the mean of their logits",
                 "confidence": "their logits weighted per example by each one's confidence",
                 "most_confident": "per example, the logits of the most confident teacher"}


def teacher_label(row: dict, first: dict) -> str:
    """"teacher_2 (seed 1)": a further teacher's name and what sets it apart from the first."""
    if row["name"] == TEACHER:
        return TEACHER
    diff = []
    if row.get("source") != first.get("source"):
        diff.append(str(row.get("source")))
    if row.get("seed") != first.get("seed"):
        diff.append(f"seed {row.get('seed')}")
    if row.get("finetune_part") != first.get("finetune_part"):
        diff.append(f"part {row.get('finetune_part') or 'all'} of the data")
    return f"{row['name']} ({', '.join(diff)})" if diff else row["name"]


def further_rows(summary: dict) -> list[dict]:
    """Table rows after the first teacher's: each further teacher, then the ensemble (accuracy, params, size)."""
    teachers = summary.get("teachers") or []
    if len(teachers) < 2:
        return []
    rows = [{"name": t["name"], "label": teacher_label(t, teachers[0]), "accuracy": t.get("accuracy"),
             "params": t.get("params"), "size_bytes": t.get("size_bytes")} for t in teachers[1:]]
    ens = summary.get("ensemble") or {}
    rows.append({"name": ENSEMBLE, "label": f"ensemble of {len(teachers)} teachers ({ens.get('combine')})",
                 "accuracy": ens.get("accuracy"),
                 "params": sum(t.get("params") or 0 for t in teachers) or None,
                 "size_bytes": sum(t.get("size_bytes") or 0 for t in teachers) or None})
    return rows


def with_twins(summary: dict, config: dict, predictions: dict | None) -> dict:
    """The summary of a run with several teachers, with "twins" computed from its config and test answers when the
    run was written before the engine recorded them."""
    if not summary.get("teachers") or "twins" in summary or not predictions:
        return summary
    from distill_core import SessionConfig
    from distill_core.ensemble import twin_comparisons
    from distill_core.errors import DistillError
    try:
        cfg = SessionConfig.from_dict(config)
    except DistillError:
        return summary
    return {**summary, "twins": twin_comparisons(cfg, predictions["labels"], predictions["predictions"]),
            "learns_from": summary.get("learns_from") or {v.name: v.teacher for v in cfg.variants}}


def ensemble_reading(summary: dict, label=lambda name: name) -> str:
    """What the page says about the teachers: the ensemble against the best single teacher, and each variant that
    learns from another teacher against its twin (the same recipe from the first teacher), paired on the test set."""
    teachers = summary.get("teachers") or []
    ens = summary.get("ensemble") or {}
    if len(teachers) < 2 or ens.get("accuracy") is None:
        return ""
    best = max(teachers, key=lambda t: t.get("accuracy") or 0)
    gap = 100 * (ens["accuracy"] - (best.get("accuracy") or 0))
    lines = [f"The **ensemble** of the {len(teachers)} teachers ({COMBINE_WORDS.get(ens.get('combine'), '')}) scores "
             f"**{ens['accuracy']:.1%}**, {gap:+.1f} points against the best single teacher "
             f"({teacher_label(best, teachers[0])}, {best.get('accuracy', 0):.1%})."]
    attention = ("the first teacher's attention" if ens.get("attention") == "teacher" else
                 "the mean of every teacher's attention")
    for name, t in (summary.get("twins") or {}).items():
        source = (summary.get("learns_from") or {}).get(name, ENSEMBLE)
        what = f"the ensemble (and {attention})" if source == ENSEMBLE else source
        verdict = {"better": "better", "worse": "worse"}.get(t.get("verdict"), "no clear difference")
        lines.append(f"**{label(name)}** learns from {what}: {t['accuracy']:.1%} against {t['ref_accuracy']:.1%} for "
                     f"**{label(t['twin'])}**, the same recipe from the first teacher ({100 * t['diff']:+.1f} points, "
                     f"paired 95% interval {100 * t['lo']:+.1f} to {100 * t['hi']:+.1f}, McNemar p = {t['p']:.3f}: "
                     f"{verdict}).")
    if not summary.get("twins") and ens.get("used_by"):
        lines.append(f"{', '.join(label(v) for v in ens['used_by'])} learn{'s' if len(ens['used_by']) == 1 else ''} "
                     f"from the ensemble; no variant has the same recipe from the first teacher to compare it with.")
    return "\n\n".join(lines)
