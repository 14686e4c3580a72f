"""What the analysis pages compute from a run before they draw it, shared with the notebook API (app/notebook.py) so
that a page and a notebook show the same thing for the same choice. Pure functions: no Streamlit, no plotly here.

    runs_dir()            where the app's runs are (ADS_RUNS_DIR, else runs/ in the repository)
    variants_of()         a run's student variants in session order, the reference, their colours
    objectives_text()     each variant's weighted losses in words, from a run's config
    teacher_heads()       the teacher heads a student head is compared with, under the run's head rule
    shown_maps()          the explorer's pair of maps for a teacher layer, a student layer and a head
    grid_scale()          one colour scale and panel size for the head grids of both layers
    scores_of()           a run's test scores, the number of test examples and each variant's verdict against the
                          reference, as the Accuracy page's figures take them
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill_core.analysis import teacher_heads_for
from distill_core.config import SessionConfig
from distill_core.errors import DistillError
from distill_core.verdicts import accuracy_verdicts, paired_verdicts
from distill_core.vocab import model_label, run_reference, run_variants, variant_colors

REPO = Path(__file__).resolve().parent.parent
AVERAGE = -1                      # a student head "all heads, averaged", as the head selectors offer it
GRID_COLUMNS = 6                  # head grids wrap into rows of at most this many panels


def runs_dir() -> Path:
    """The app's run store: ADS_RUNS_DIR, else runs/ in the repository (where `make run` keeps them)."""
    return Path(os.environ.get("ADS_RUNS_DIR", REPO / "runs")).resolve()


@dataclass(frozen=True)
class Variants:
    """A run's student variants in session order, the labels-only one the others are compared with, and colours."""
    names: list
    reference: str | None
    colors: dict

    def label(self, name: str) -> str:
        return model_label(name, self.reference)


def variants_of(run, probe: dict | None = None, read_metrics: Callable[[], list] | None = None) -> Variants:
    """The variants of a run, read from probe.json or summary.json (or, for older runs, the metric records:
    `read_metrics()`, default the run's metrics.jsonl); those of its config while it has recorded none."""
    source = probe
    if not (source or {}).get("variants"):
        try:
            source = run.summary() or probe
        except DistillError:
            source = probe
    names = run_variants(source) or run_variants(source, (read_metrics or run.metrics)())
    if not names:                                    # queued, or stopped before its first record
        try:
            cfg = SessionConfig.from_dict(run.config())
        except DistillError:
            return Variants([], None, variant_colors([]))
        return Variants(cfg.variant_names, cfg.reference, variant_colors(cfg.variant_names))
    return Variants(names, run_reference(source, names), variant_colors(names))


def objectives_text(config: dict) -> dict[str, str]:
    """Variant name -> its weighted losses in words ("ce 0.5 + logit_kd 0.5"), from a run's config.json; {} when the
    config no longer loads."""
    try:
        cfg = SessionConfig.from_dict(config)
    except DistillError:
        return {}
    return {v.name: " + ".join(f"{n} {w:g}" for n, w in v.losses.items() if w > 0) for v in cfg.variants}


# ---- the explorer: a pair of maps -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShownMaps:
    """One teacher map and one student map (T, T) as the explorer draws them, with the heads behind each."""
    teacher: np.ndarray
    student: np.ndarray
    teacher_heads: list[int]      # the teacher heads averaged into `teacher`
    teacher_desc: str             # "head 2", "heads 0–1 averaged", "all 4 heads averaged"
    student_desc: str             # "head 1", "all heads averaged"


def heads_text(heads: Sequence[int], total: int) -> str:
    """Teacher heads in words: "head 2", "heads 0–1 averaged", "all 12 heads averaged"."""
    if len(heads) == 1:
        return f"head {heads[0]}"
    if len(heads) == total:
        return f"all {total} heads averaged"
    return f"heads {heads[0]}–{heads[-1]} averaged"


def teacher_heads(student_head: int, head_rule: str, n_teacher: int, n_student: int) -> list[int]:
    """The teacher heads a student head is compared with under the run's head rule: all of them for AVERAGE or the
    mean rule."""
    if student_head == AVERAGE or head_rule == "mean":
        return list(range(n_teacher))
    return list(teacher_heads_for(student_head, head_rule, n_teacher, n_student))


def shown_maps(teacher_layer: np.ndarray, student_layer: np.ndarray, head_rule: str, student_head: int = AVERAGE,
               teacher_head: int | None = None) -> ShownMaps:
    """The maps of one text for a teacher layer (Ht, T, T) and a student layer (Hs, T, T): the student's head (or,
    with AVERAGE, all its heads averaged) and the teacher's side as the run compared them, the teacher heads its
    head rule pairs with that head averaged (all of them for AVERAGE or the mean rule), or one teacher head of the
    reader's choice (`teacher_head`)."""
    n_teacher, n_student = teacher_layer.shape[0], student_layer.shape[0]
    heads = ([int(teacher_head)] if teacher_head is not None
             else teacher_heads(student_head, head_rule, n_teacher, n_student))
    student = student_layer.mean(0) if student_head == AVERAGE else student_layer[student_head]
    return ShownMaps(teacher_layer[heads].mean(0), student, heads, heads_text(heads, n_teacher),
                     "all heads averaged" if student_head == AVERAGE else f"head {student_head}")


def grid_scale(*layers: np.ndarray) -> tuple[float, int]:
    """(the largest weight, panels per row) shared by the head grids of several layers (H, T, T) drawn one under the
    other, so that a colour and a panel mean the same in each."""
    return (float(max(np.max(m) for m in layers)),
            min(GRID_COLUMNS, max(m.shape[0] for m in layers)))


# ---- the Accuracy page: test scores ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scores:
    """A finished run's test scores as the Accuracy page reads summary.json."""
    accuracy: dict                # model -> its test score (accuracy, entity F1, chrF, ...), None where not tested
    n: int                        # test examples
    measure: str                  # the score's name: "accuracy", "entity F1", ...
    short: str                    # its short name, for table columns
    majority: float | None        # what always answering the most common class scores
    paired: dict                  # variant -> its paired comparison with the reference (older runs: {})
    verdicts: dict                # variant -> its row of paired_verdicts (accuracy_verdicts without pairs)

    @property
    def tested(self) -> bool:
        """Whether any model was tested (a run stopped before its test evaluation has no score)."""
        return any(a is not None for a in self.accuracy.values())

    @property
    def interval_n(self) -> int | None:
        """The n of the binomial whiskers of the accuracy bars: an accuracy's, None for another score."""
        return self.n if self.measure == "accuracy" else None


def scores_of(summary: dict, variants: Sequence[str], reference: str | None) -> Scores:
    """The test scores of a run's summary.json, each variant's verdict against the reference: paired on the same
    test examples where the run recorded pairs, else with independent intervals."""
    metric = summary.get("metric") or {"name": "accuracy", "short": "accuracy"}
    acc = summary.get("accuracy") or {}
    n = int(summary.get("test_size") or 0)
    paired = summary.get("paired") or {}
    rows = (paired_verdicts(paired, acc, variants, reference) if paired
            else accuracy_verdicts(acc, n, variants, reference))
    return Scores(acc, n, metric.get("name", "accuracy"), metric.get("short", "accuracy"),
                  summary.get("majority_rate"), paired, {r["variant"]: r for r in rows})

