"""Names shared by the engine and the app: model roles, variants and their colours, metrics and their directions.

Pure Python (no torch), so the app's figure code can import it cheaply. Objectives (loss names, what each reads
and its explanation) live in their registry, `distill_core.objectives`.
"""
from __future__ import annotations

import math
import re

TEACHER = "teacher"
BASELINE = "baseline"            # the conventional name of the labels-only variant
MAX_VARIANTS = 12                # a session; the New session page offers up to 6
VARIANT_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
# Names a variant cannot take: they are keys beside variant names in summary.json or folders beside models/<name>.
FAMILY_NAMES = {"cnn": "CNN", "vit": "ViT"}      # image model families as the pages write them
RESERVED_NAMES = frozenset({TEACHER, "tokenizer", "preprocess", "metric", "epochs", "variants", "reference", "status",
                            "ensemble"})
ENSEMBLE = "ensemble"            # the teachers' combined outputs, as a source a variant learns from


def teacher_name(k: int) -> str:
    """The name of a session's k-th teacher (0-based): teacher, teacher_2, teacher_3, ..."""
    return TEACHER if k == 0 else f"{TEACHER}_{k + 1}"


TEACHER_NAME_RE = re.compile(r"^teacher(_[0-9]+)?$")

# ---- metrics ------------------------------------------------------------------------------------------
METRICS = ("kl", "js", "mse", "cosine")
LOWER_IS_CLOSER = {"kl": True, "js": True, "mse": True, "cosine": False}
METRIC_LABELS = {"kl": "KL(teacher || student)", "js": "Jensen-Shannon", "mse": "MSE", "cosine": "cosine similarity"}
JS_MAX = math.log(2.0)
METRIC_HELP = {
    "kl": "KL(teacher ‖ student), in nats: how much information is lost when the student's attention row stands in "
          "for the teacher's. 0 = identical; lower is closer.",
    "js": "Jensen-Shannon divergence: a symmetric, bounded KL (0 to ln 2 ≈ 0.693). 0 = identical; lower is closer.",
    "mse": "Squared difference of the attention weights, averaged over the real keys of a row. 0 = identical; "
           "lower is closer.",
    "cosine": "Cosine similarity of the attention rows. 1 = same direction; higher is closer.",
}

# ---- losses, as named in charts (the objectives themselves live in distill_core.objectives) -----------
LABEL_LOSS = "ce"                                       # the only loss that does not read the teacher
ATTENTION_LOSSES = ("attention_kl", "attention_mse")    # the losses that pull the student's attention directly
LOSS_TITLES = {
    "ce": "cross-entropy (on the true labels)",
    "logit_kd": "logit KD (KL to the teacher's softened outputs)",
    "hard_kd": "hard KD (cross-entropy on the teacher's predicted labels)",
    "attention_kl": "attention KL (to the teacher's attention rows)",
    "attention_mse": "attention MSE (squared error to the teacher's attention)",
    "hidden_mse": "hidden-state MSE (to the teacher's hidden states)",
}
# What a teacher loss other than an attention loss teaches from, in a sentence.
LOSS_SOURCES = {"logit_kd": "the teacher's softened outputs", "hard_kd": "the teacher's predicted labels",
                "hidden_mse": "the teacher's hidden states"}

# ---- colours ------------------------------------------------------------------------------------------
TEACHER_COLOR = "#374151"
# Fixed colours for the default names, then a palette by position for the others (colour-blind friendly).
NAMED_COLORS = {BASELINE: "#f59e0b", "distilled": "#2563eb"}
PALETTE = ("#2563eb", "#16a34a", "#db2777", "#7c3aed", "#0891b2", "#b45309", "#4d7c0f", "#be123c",
           "#0f766e", "#a21caf", "#1d4ed8", "#65a30d")


def variant_colors(names: list[str]) -> dict[str, str]:
    """A colour for the teacher and each variant of a run: stable for a run on every page."""
    out = {TEACHER: TEACHER_COLOR}
    taken = {NAMED_COLORS[n] for n in names if n in NAMED_COLORS}
    free = [c for c in PALETTE if c not in taken]
    k = 0
    for n in names:
        if n in NAMED_COLORS:
            out[n] = NAMED_COLORS[n]
        else:
            out[n] = free[k % len(free)]
            k += 1
    return out


def model_label(name: str, reference: str | None = None) -> str:
    """How a model is named in titles and legends."""
    if name == TEACHER:
        return "teacher"
    if name == reference and name == BASELINE:
        return "baseline student"
    return f"{name} student" if name in ("distilled", BASELINE) else name


def variant_name_key(name: str) -> str:
    """Two variant names are the same when their keys are: case is ignored, since each variant has its own folder
    and some file systems do not tell 'kd' from 'KD'."""
    return str(name).strip().lower()


def check_variant_name(name) -> str | None:
    """None when `name` can name a variant, else what is wrong with it and how to fix it."""
    if not isinstance(name, str) or not VARIANT_NAME_RE.match(name):
        return (f"variant name {name!r} must start with a letter and hold only letters, digits, '-' and '_' "
                f"(at most 32 characters), e.g. kd_attention")
    if name.lower() in RESERVED_NAMES or TEACHER_NAME_RE.match(name.lower()):
        return f"variant name {name!r} is reserved; choose another, e.g. {name}_student"
    return None


# ---- reading a run's variants, also from runs written before variants existed -------------------------
def run_variants(summary_or_probe: dict | None, records: list[dict] | None = None) -> list[str]:
    """The variant names of a run in session order (summary.json or probe.json hold them)."""
    d = summary_or_probe or {}
    if isinstance(d.get("variants"), list) and d["variants"]:
        return [str(v) for v in d["variants"]]
    seen: list[str] = []
    for r in records or []:
        s = r.get("student")
        if s and s not in seen:
            seen.append(s)
    if seen:
        return seen
    return [n for n in (BASELINE, "distilled") if n in (d.get("accuracy") or {}) or n in (d.get("divergence") or {})]


def run_reference(summary_or_probe: dict | None, variants: list[str]) -> str | None:
    """The labels-only variant every other is compared with, when the run has one."""
    d = summary_or_probe or {}
    if "reference" in d:
        return d["reference"] if d["reference"] in variants else None
    return BASELINE if BASELINE in variants else None
