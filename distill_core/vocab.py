"""Names shared by the engine and the app: model roles and families, variants and their colours, metrics and their
directions, and how each loss is named and explained.

Pure Python (no torch), so the app's figure code can import it cheaply, and it imports nothing of the project's,
so every module can import it. The objectives themselves (what each computes and reads) live in their registry,
`distill_core.objectives`, which takes each one's explanation from `LOSSES` here.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

TEACHER = "teacher"
BASELINE = "baseline"            # the conventional name of the labels-only variant
MAX_VARIANTS = 12                # a session; the New session page offers up to 6
VARIANT_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
# Names a variant cannot take: they are keys beside variant names in summary.json or folders beside models/<name>.
RESERVED_NAMES = frozenset({TEACHER, "tokenizer", "preprocess", "metric", "epochs", "variants", "reference", "status",
                            "ensemble"})
ENSEMBLE = "ensemble"            # the teachers' combined outputs, as a source a variant learns from


def teacher_name(k: int) -> str:
    """The name of a session's k-th teacher (0-based): teacher, teacher_2, teacher_3, ..."""
    return TEACHER if k == 0 else f"{TEACHER}_{k + 1}"


TEACHER_NAME_RE = re.compile(r"^teacher(_[0-9]+)?$")

# ---- image model families -----------------------------------------------------------------------------
# How the pages and messages write each family of image model; None is a family not known yet (a teacher folder
# whose config.json has not been read).
FAMILY_NAMES = {"cnn": "CNN", "vit": "ViT", None: "model of unknown family"}

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

# ---- losses: how each is named and explained (the objectives themselves live in distill_core.objectives) ----
LABEL_LOSS = "ce"                                       # the only loss that does not read the teacher
# the losses that pull the student's attention directly
ATTENTION_LOSSES = ("attention_kl", "attention_mse", "attention_score_mse",
                    "encoder_attention_kl", "decoder_attention_kl", "cross_attention_kl", "causal_attention_kl")


@dataclass(frozen=True)
class LossWording:
    title: str          # in charts: "short name (what it compares)"
    help: str           # the explanation the New session page and the command line show
    source: str = ""    # what a teacher loss other than an attention loss teaches from, in a sentence


LOSSES = {
    "ce": LossWording(
        "cross-entropy (on the true labels)",
        "Cross-entropy with the true labels: what the student would learn on its own."),
    "logit_kd": LossWording(
        "logit KD (KL to the teacher's softened outputs)",
        "Match the teacher's softened output distribution (Hinton et al., 2015), times T². The temperature T "
        "spreads probability over the wrong classes too, the 'dark knowledge'.",
        "the teacher's softened outputs"),
    "hard_kd": LossWording(
        "hard KD (cross-entropy on the teacher's predicted labels)",
        "Cross-entropy with the teacher's predicted label instead of the true one.",
        "the teacher's predicted labels"),
    "attention_kl": LossWording(
        "attention KL (to the teacher's attention rows)",
        "KL divergence from each teacher attention row to the student's (MiniLM, Wang et al., 2020): the student "
        "learns where the teacher looks."),
    "attention_mse": LossWording(
        "attention MSE (squared error to the teacher's attention probabilities)",
        "Squared error between teacher and student attention probabilities (after the softmax) on mapped layers, "
        "averaged over query-key pairs of real tokens, as TextBrewer's att_mse_loss given probabilities. It is "
        "TinyBERT's error (Jiao et al., 2020) on the probabilities, a setting its authors found to converge more "
        "slowly than theirs on the scores (attention_score_mse). Probabilities lie in [0, 1], so its values are "
        "small: it takes a large weight (about 100)."),
    "attention_score_mse": LossWording(
        "attention score MSE (squared error to the teacher's scores before softmax)",
        "TinyBERT (Jiao et al., 2020, eq. 7): squared error between the teacher's and the student's attention "
        "scores before the softmax (Q·Kᵀ/√d) on mapped layers, averaged over query-key pairs of real tokens. "
        "Two rows of scores that differ by a constant give the same probabilities but differ here: the student "
        "is asked for the teacher's scores themselves. With fewer student heads, each group of teacher heads is "
        "compared through its mean score."),
    "hidden_mse": LossWording(
        "hidden-state MSE (to the teacher's hidden states)",
        "Squared error between hidden states of mapped layers, through a learned projection when widths differ "
        "(FitNets, Romero et al., 2015).",
        "the teacher's hidden states"),
    "attention_transfer": LossWording(
        "attention transfer (distance between CNN stages' activation attention maps)",
        "For CNNs: the squared distance between teacher and student activation attention maps (the channel mean "
        "of |A|², flattened and L2-normalised) of mapped stages, halved and summed over the stage pairs "
        "(Zagoruyko & Komodakis, 2017). The paper weights it with β = 1000."),
    "seq_kd": LossWording(
        "sequence-level KD (cross-entropy on the teacher's own outputs)",
        "Translation: cross-entropy of the student on the teacher's own greedy translation of each training "
        "source instead of the reference (Kim & Rush, 2016), computed once and cached with the teacher. The "
        "teacher's translations are simpler and more regular than human ones, which a small student learns "
        "more easily; it costs a second decoder pass per step. Language model: cross-entropy on the teacher's "
        "own continuation of each training block's opening (language_model.prompt_tokens), sampled once with "
        "the teacher's seed and cached.",
        "the teacher's own outputs"),
    "reverse_kl": LossWording(
        "reverse KL (the student's next-token distribution to the teacher's)",
        "Language model: KL(student ‖ teacher) of the next-token distributions at every position of the training "
        "text, times T² (MiniLLM, Gu et al., 2024). Where forward KL asks the student to cover every token the "
        "teacher finds likely, reverse KL lets it pick the teacher's main modes and penalises mass the teacher "
        "gives no weight: it is mode-seeking.",
        "the teacher's next-token distributions"),
    "gkd": LossWording(
        "generalized JSD (GKD, on the training text)",
        "Language model: the generalized Jensen-Shannon divergence of Agarwal et al. (2024) between the teacher's "
        "and the student's next-token distributions, β·KL(T ‖ M) + (1−β)·KL(S ‖ M) with M = β·T + (1−β)·S "
        "(language_model.beta). β = 0 is taken as the forward KL and β = 1 as the reverse KL, as TRL's GKDTrainer "
        "does; in between, it moves from the one to the other.",
        "the teacher's next-token distributions"),
    "on_policy": LossWording(
        "on-policy GKD (the student's own samples, scored by the teacher)",
        "Language model: the generalized JSD (language_model.beta) on text the student wrote itself: on a share "
        "λ of the steps (language_model.on_policy_fraction) the student continues the opening of each training "
        "block (seeded), and the teacher scores every sampled token; on the other steps, on the training text. "
        "It trains the student where it goes at generation time, not only on text it was fed (Agarwal et al., "
        "2024). Sampling costs a pass per new token.",
        "the teacher's judgement of the student's samples"),
    "causal_attention_kl": LossWording(
        "causal attention KL (to the teacher's causal self-attention rows)",
        "Language model: KL divergence from each row of the teacher's causal self-attention (a position over "
        "itself and the earlier positions) to the student's, on mapped layers. Only the allowed lower triangle is "
        "compared: later positions, which a causal model never reads, are left out of both rows."),
    "encoder_attention_kl": LossWording(
        "encoder attention KL (to the teacher's encoder self-attention rows)",
        "Translation: KL divergence from each row of the teacher's encoder self-attention (a source token over "
        "the source) to the student's, on mapped layers (translation.layer_map_encoder)."),
    "decoder_attention_kl": LossWording(
        "decoder attention KL (to the teacher's decoder self-attention rows)",
        "Translation: KL divergence from each row of the teacher's decoder self-attention (a target position over "
        "the earlier target tokens, under teacher forcing on the reference) to the student's, on mapped layers "
        "(translation.layer_map_decoder)."),
    "cross_attention_kl": LossWording(
        "cross-attention KL (to the teacher's cross-attention rows)",
        "Translation: KL divergence from each row of the teacher's cross-attention (a target position over the "
        "source: the soft alignment) to the student's, on mapped decoder layers (translation.layer_map_cross)."),
}
LOSS_TITLES = {name: w.title for name, w in LOSSES.items()}
# What a teacher loss other than an attention loss teaches from, in a sentence.
LOSS_SOURCES = {name: w.source for name, w in LOSSES.items() if w.source}

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


# An encoder-decoder's kinds of attention (translation), as the pages name them: rows look at columns.
# (A language model has one kind, causal self-attention: a position over itself and the earlier positions.)
ATTENTION_KINDS = {"cross": "cross-attention (target word → source words)",
                   "encoder": "encoder self-attention (source → source)",
                   "decoder": "decoder self-attention (target → earlier target)"}


def of_kind(records: list[dict], probe: dict, kind: str | None) -> tuple[list[dict], dict]:
    """A run's metrics.jsonl records and probe.json as if `kind` were its only attention: each record's
    attention_kinds[kind] as its attention (and js_mean), the kind's pairs and head rule as the probe's. Runs with one
    kind of attention, or kind None, are returned as they are."""
    kinds = probe.get("attention_kinds") or {}
    if not kind or kind not in kinds:
        return records, probe
    out = []
    for r in records:
        att = (r.get("attention_kinds") or {}).get(kind)
        js = att.get("js") if att else None
        out.append({**r, "attention": att, "js_mean": float(sum(map(sum, js)) / max(1, sum(map(len, js))))
                    if js else None})
    return out, {**probe, **{k: v for k, v in kinds[kind].items() if k in ("pairs", "head_rule")}}

