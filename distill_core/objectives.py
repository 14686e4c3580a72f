"""Distillation objectives, registered by name with the inputs they need. Each reads `LossInputs`, returns a scalar.

    ce             cross-entropy on the hard labels
    logit_kd       Hinton et al.: KL between temperature-softened teacher and student outputs, times T^2
    hard_kd        cross-entropy on the teacher's argmax (its predicted label)
    attention_mse  squared error between teacher and student attention probabilities, averaged over query-key pairs
                   (TinyBERT's error on the probabilities, not on the scores TinyBERT itself fits)
    attention_score_mse  TinyBERT (eq. 7): squared error between teacher and student attention scores before the
                   softmax (Q K^T / sqrt(d)), averaged over query-key pairs of real tokens
    attention_kl   MiniLM: KL(teacher || student) between attention distributions, row by row
    hidden_mse     FitNets/TinyBERT: squared error between hidden states, through a learned projection
    attention_transfer  Zagoruyko & Komodakis: distance between CNN stages' activation attention maps
    seq_kd, encoder_attention_kl, decoder_attention_kl, cross_attention_kl     translation's (below)
    reverse_kl, gkd, on_policy, causal_attention_kl (and seq_kd)             a language model's (below)

A new objective is one function plus one `register(...)` line naming what it reads (its title and explanation go
in `vocab.LOSSES`, beside the others'); the session computes
(and caches) only the inputs that some variant's objectives need. Objectives that read the true labels say so
(`labels=True`): on generated transfer data, whose labels a student never sees, they are left out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from . import metrics
from .activation import attention_transfer_loss
from .errors import ConfigError
from .vocab import LOSSES

# What an objective can ask the session for.
TEACHER_LOGITS = "teacher_logits"           # (B, C), computed once per training example and cached
ATTENTION = "attention"                     # teacher and student attention of the mapped layers
ATTENTION_SCORES = "attention_scores"       # the same layers' attention scores before the softmax (as large again)
HIDDEN = "hidden"                           # teacher and student hidden states of the mapped layers
ACTIVATION = "activation"                   # CNN stages' activations (student) and activation attention (teacher)
INPUTS = (TEACHER_LOGITS, ATTENTION, ATTENTION_SCORES, HIDDEN, ACTIVATION)
TEACHER_INPUTS = frozenset(INPUTS)          # every one of these comes (partly) from the teacher
# what a teacher's maps give: ViT/text attention (probabilities or scores), CNN activations
MAP_INPUTS = frozenset({ATTENTION, ATTENTION_SCORES, ACTIVATION})
ATTENTION_INPUTS = frozenset({ATTENTION, ATTENTION_SCORES})   # read through an AttentionCapture


@dataclass
class LossInputs:
    student_logits: torch.Tensor                    # (B, C); per-token tasks (B, T, C)
    labels: torch.Tensor | None                     # (B,); per-token (B, T), IGNORED where not scored; None on
                                                    # generated data (teacher-labelled only)
    mask: torch.Tensor                              # (B, T) 1 = real token
    temperature: float | torch.Tensor = 2.0         # a tensor when it is learned (temperature_schedule curriculum)
    teacher_logits: torch.Tensor | None = None      # (B, C); per-token tasks (B, T, C)
    student_attention: torch.Tensor | None = None   # (B, P, H', T, T) mapped layers, compared heads
    teacher_attention: torch.Tensor | None = None   # (B, P, H', T, T)
    student_hidden: torch.Tensor | None = None      # (B, P, T, Dt) already projected to the teacher's width
    teacher_hidden: torch.Tensor | None = None      # (B, P, T, Dt)
    student_features: list | None = None            # (B, C_j, h_j, w_j) per mapped CNN stage pair j
    teacher_activation: list | None = None          # (B, h_j*w_j) per pair: the teacher's L2-normalised attention map
    student_scores: torch.Tensor | None = None      # (B, P, H', T, T) scores before the softmax, padded keys unmasked
    teacher_scores: torch.Tensor | None = None      # (B, P, H', T, T)
    head_weights: torch.Tensor | None = None        # (P, H') weight of each mapped pair and head (mean 1); None: equal
    head_losses: dict = field(default_factory=dict)  # out: attention loss name -> (P, H') per-head values, detached
    extra: dict = field(default_factory=dict)       # a task's own inputs: {"student": {...}, "teacher": {...}}


@dataclass(frozen=True)
class Objective:
    name: str
    fn: Callable[[LossInputs], torch.Tensor]
    needs: frozenset                                # subset of INPUTS
    help: str
    labels: bool = False                            # reads the true labels (left out on generated data)
    tasks: frozenset = frozenset({"text", "image", "tagging"})   # the kinds of task it applies to

    @property
    def text(self) -> bool:
        """Applies to text classification (attention_transfer compares CNN stages: images only)."""
        return "text" in self.tasks

    @property
    def uses_teacher(self) -> bool:
        return bool(self.needs & TEACHER_INPUTS)


OBJECTIVES: dict[str, Objective] = {}


ALL_TASKS = frozenset({"text", "image", "tagging", "translation", "language_model"})
OUTPUT_TASKS = ALL_TASKS                                        # losses on the outputs: every kind of task
ENCODER_TASKS = frozenset({"text", "image", "tagging"})         # one stack of self-attention (or CNN stages)


def register(name: str, needs: tuple[str, ...] = (), help: str = "", labels: bool = False,
             tasks: frozenset = ENCODER_TASKS):
    """Decorator: add an objective to the registry under `name`; `tasks`: the kinds of task it applies to."""
    unknown = set(needs) - set(INPUTS)
    if unknown:
        raise ValueError(f"objective {name} needs unknown inputs {sorted(unknown)}; known: {', '.join(INPUTS)}")

    def deco(fn):
        OBJECTIVES[name] = Objective(name, fn, frozenset(needs), help, labels, frozenset(tasks))
        return fn
    return deco


def _need(x, what: str, loss: str):
    if x is None:
        raise ConfigError(f"loss {loss} needs {what}, which this session did not compute")
    return x


IGNORED = -100      # a per-token label that is not scored (padding, a word's later sub-tokens, special tokens)


def scored(inp: LossInputs, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """Per-token tasks (logits (B, T, C), labels (B, T)): each tensor's rows at the scored positions only (labels
    not IGNORED), flattened to (N, ...); one label per input (logits (B, C)): the tensors as they are."""
    if inp.student_logits.dim() == 2:
        return list(tensors)
    if inp.labels is None:
        raise ConfigError("a per-token loss needs the labels to know which tokens are scored")
    keep = inp.labels != IGNORED                                             # (B, T)
    return [x[keep] for x in tensors]


@register("ce", labels=True, help=LOSSES["ce"].help, tasks=OUTPUT_TASKS)
def ce(inp: LossInputs) -> torch.Tensor:
    logits, labels = scored(inp, inp.student_logits, inp.labels)
    return F.cross_entropy(logits.float(), labels)


@register("logit_kd", needs=(TEACHER_LOGITS,), help=LOSSES["logit_kd"].help, tasks=OUTPUT_TASKS)
def logit_kd(inp: LossInputs) -> torch.Tensor:
    """Per example, or per scored token (the KL summed over classes, averaged over tokens), times T^2."""
    t = inp.temperature
    student, teacher = scored(inp, inp.student_logits, _need(inp.teacher_logits, "teacher logits", "logit_kd"))
    log_p_s = F.log_softmax(student.float() / t, dim=-1)
    p_t = F.softmax(teacher.float() / t, dim=-1)
    return F.kl_div(log_p_s, p_t, reduction="batchmean") * (t * t)


@register("hard_kd", needs=(TEACHER_LOGITS,), help=LOSSES["hard_kd"].help, tasks=OUTPUT_TASKS)
def hard_kd(inp: LossInputs) -> torch.Tensor:
    student, teacher = scored(inp, inp.student_logits, _need(inp.teacher_logits, "teacher logits", "hard_kd"))
    return F.cross_entropy(student.float(), teacher.argmax(-1))


def _attention_pair(inp: LossInputs, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    return (_need(inp.teacher_attention, "teacher attention", loss),
            _need(inp.student_attention, "student attention", loss))


@register("attention_mse", needs=(ATTENTION,), help=LOSSES["attention_mse"].help)
def attention_mse(inp: LossInputs) -> torch.Tensor:
    p, q = _attention_pair(inp, "attention_mse")
    values, query = metrics.row_metric("mse", p, q, inp.mask)   # (B, P, H', T): mean over a row's real keys
    keys = inp.mask.float().sum(-1).view(-1, *([1] * (values.dim() - 1)))   # (B, 1, 1, 1) real keys per row
    # each row counts once per real key, so the sum is over (query, key) pairs as in TinyBERT / TextBrewer
    return _over_heads(inp, "attention_mse", values, query * keys)


@register("attention_kl", needs=(ATTENTION,), help=LOSSES["attention_kl"].help)
def attention_kl(inp: LossInputs) -> torch.Tensor:
    p, q = _attention_pair(inp, "attention_kl")
    values, query = metrics.row_metric("kl", p, q, inp.mask)    # (B, P, H', T)
    return _over_heads(inp, "attention_kl", values, query)


@register("attention_score_mse", needs=(ATTENTION_SCORES,), help=LOSSES["attention_score_mse"].help)
def attention_score_mse(inp: LossInputs) -> torch.Tensor:
    """TinyBERT's attention loss: the mean over real (query, key) pairs of (A_T - A_S)^2, A = Q K^T / sqrt(d) before
    the softmax, per mapped pair and compared head, then averaged over them (weighted with inp.head_weights)."""
    t = _need(inp.teacher_scores, "teacher attention scores", "attention_score_mse").float()    # (B, P, H', T, T)
    s = _need(inp.student_scores, "student attention scores", "attention_score_mse").float()
    real = inp.mask.bool()                                                                     # (B, T)
    pairs = (real[:, :, None] & real[:, None, :])[:, None, None]                               # (B, 1, 1, T, T)
    # padded pairs are zeroed on both sides before the difference, so whatever they hold (the additive mask's
    # -inf or finfo.min, or stale scores) gives neither a value nor a gradient
    sq = (t.masked_fill(~pairs, 0.0) - s.masked_fill(~pairs, 0.0)) ** 2                        # (B, P, H', T, T)
    query = real.float()[:, None, None, :]                                                     # (B, 1, 1, T)
    keys = query.sum(-1, keepdim=True)                                                         # (B, 1, 1, 1)
    values = sq.sum(-1) / keys.clamp_min(1.0)                                    # (B, P, H', T) mean over real keys
    return _over_heads(inp, "attention_score_mse", values, (query * keys).expand_as(values))


def _over_heads(inp: LossInputs, loss: str, values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The weighted mean of row values (B, P, H', T) per mapped pair and head, kept (detached) in inp.head_losses,
    then averaged over pairs and heads with inp.head_weights. With equal weights this is the mean over every row,
    since each pair and head has the same rows."""
    per_head = (values * weight).sum((0, -1)) / weight.sum((0, -1)).clamp_min(1.0)    # (P, H')
    inp.head_losses[loss] = per_head.detach()
    if inp.head_weights is None:
        return per_head.mean()
    return (per_head * inp.head_weights).mean()


@register("hidden_mse", needs=(HIDDEN,), help=LOSSES["hidden_mse"].help,
          tasks=ENCODER_TASKS | {"language_model"})
def hidden_mse(inp: LossInputs) -> torch.Tensor:
    s = _need(inp.student_hidden, "student hidden states", "hidden_mse").float()
    t = _need(inp.teacher_hidden, "teacher hidden states", "hidden_mse").float()
    m = inp.mask.float()[:, None, :, None]                        # (B, 1, T, 1)
    return (((s - t) ** 2) * m).sum() / (m.sum() * s.shape[1] * s.shape[-1]).clamp_min(1.0)


@register("attention_transfer", needs=(ACTIVATION,), tasks=frozenset({"image"}), help=LOSSES["attention_transfer"].help)
def attention_transfer(inp: LossInputs) -> torch.Tensor:
    s = _need(inp.student_features, "student stage activations", "attention_transfer")
    t = _need(inp.teacher_activation, "teacher activation attention", "attention_transfer")
    per_pair = torch.stack([attention_transfer_loss([a], [b]) for a, b in zip(s, t)])[:, None]   # (P, 1)
    inp.head_losses["attention_transfer"] = per_pair.detach()
    if inp.head_weights is None:
        return per_pair.sum()
    return (per_pair * inp.head_weights).sum()


LOSS_NAMES = tuple(OBJECTIVES)
TEXT_LOSS_NAMES = tuple(n for n, o in OBJECTIVES.items() if o.text)     # what a text session can train with


def loss_names_for(task: str) -> tuple[str, ...]:
    """The losses a kind of task can train with, in registry order."""
    return tuple(n for n, o in OBJECTIVES.items() if task in o.tasks)
LOSS_HELP = {name: o.help for name, o in OBJECTIVES.items()}


def get(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ConfigError(f"unknown loss {name!r}; known losses: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def needs_of(weights: dict[str, float]) -> frozenset:
    """The inputs the active (positive-weight) objectives of one variant read."""
    out: set = set()
    for name, w in weights.items():
        if w > 0:
            out |= get(name).needs
    return frozenset(out)


def loss_values(names, inp: LossInputs) -> dict[str, torch.Tensor]:
    """Each named objective's value (with its graph); those that read the labels are left out when there are none."""
    return {name: get(name).fn(inp) for name in names if inp.labels is not None or not get(name).labels}


def combined_loss(weights: dict[str, float], inp: LossInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of the active losses, and each component's value (unweighted, detached) for the record."""
    values = loss_values([n for n, w in weights.items() if w > 0], inp)
    if not values:
        raise ConfigError("no loss has a positive weight")
    total = sum(values[n] * weights[n] for n in values)
    return total, {n: v.detach() for n, v in values.items()}


# ---- translation objectives
# Translation's own losses (distill_core/modality/translation/). The task's student forward hands them the
# student's attention of each kind and a second decoder pass on the teacher's translations
# (LossInputs.extra["student"]); its teacher source hands them the teacher's maps, reduced to the compared heads,
# and its translations of the training sources (LossInputs.extra["teacher"]). Batch.mask is the source mask and the
# labels (B, Tt) are IGNORED at target padding, which gives every kind its real rows and keys.
TRANSLATION_TASKS = frozenset({"translation"})
LM_TASKS = frozenset({"language_model"})
TRANSLATION_KINDS = {"encoder_attention_kl": "encoder", "decoder_attention_kl": "decoder",
                     "cross_attention_kl": "cross"}


@register("seq_kd", needs=(TEACHER_LOGITS,), tasks=TRANSLATION_TASKS | LM_TASKS, help=LOSSES["seq_kd"].help)
def seq_kd(inp: LossInputs) -> torch.Tensor:
    """Sequence-level KD (Kim & Rush 2016): cross-entropy per token of the student, teacher-forced on the teacher's
    own output (a translation of the source; a continuation of the block's opening), computed once per training
    example, mean over its real tokens. The task hands the target (a dict of model inputs and "labels") and a student
    pass that reads it."""
    target = _need(inp.extra.get("teacher", {}).get("seq_kd"), "the teacher's own outputs", "seq_kd")
    forward = _need(inp.extra.get("student", {}).get("seq_forward"), "a student pass on the teacher's outputs",
                    "seq_kd")
    logits = forward(target)                                                                # (B, T', V)
    return F.cross_entropy(logits.float().flatten(0, 1), target["labels"].flatten(), ignore_index=IGNORED)


def translation_masks(inp: LossInputs, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(key mask, row mask) of one kind of attention, broadcasting over (B, P, H', Tq, Tk) and (B, P, H', Tq):
    encoder rows and keys are real source tokens; cross-attention rows are real target positions and its keys real
    source tokens; decoder rows are real target positions and their keys the real positions up to their own
    (causal)."""
    source = inp.mask.float()                                                   # (B, Ts)
    if inp.labels is None:
        raise ConfigError("translation's attention losses need the labels to know the target's real positions")
    target = (inp.labels != IGNORED).float()                                    # (B, Tt)
    if kind == "encoder":
        return source[:, None, None, None, :], source[:, None, None, :]
    if kind == "cross":
        return source[:, None, None, None, :], target[:, None, None, :]
    t = target.shape[1]
    causal = torch.tril(torch.ones((t, t), device=target.device))             # (Tt, Tt) query >= key
    return (target[:, None, :] * causal)[:, None, None], target[:, None, None, :]


def translation_attention_kl(inp: LossInputs, loss: str) -> torch.Tensor:
    """KL(teacher || student) per attention row of one kind on its mapped layers and compared heads, padded keys
    given no probability (both rows renormalised over the real keys), rows averaged over real query positions."""
    kind = TRANSLATION_KINDS[loss]
    p = _need(inp.extra.get("teacher", {}).get("attention", {}).get(kind), f"the teacher's {kind} attention", loss)
    q = _need(inp.extra.get("student", {}).get("attention", {}).get(kind), f"the student's {kind} attention", loss)
    keys, rows = translation_masks(inp, kind)
    p = p.float() * keys
    q = q.float() * keys
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-30)
    q = q / q.sum(-1, keepdim=True).clamp_min(1e-30)
    values = metrics.row_kl(p, q)                                               # (B, P, H', Tq)
    return _over_heads(inp, loss, values, rows.expand_as(values))


@register("encoder_attention_kl", needs=(ATTENTION,), tasks=TRANSLATION_TASKS,
          help=LOSSES["encoder_attention_kl"].help)
def encoder_attention_kl(inp: LossInputs) -> torch.Tensor:
    return translation_attention_kl(inp, "encoder_attention_kl")


@register("decoder_attention_kl", needs=(ATTENTION,), tasks=TRANSLATION_TASKS,
          help=LOSSES["decoder_attention_kl"].help)
def decoder_attention_kl(inp: LossInputs) -> torch.Tensor:
    return translation_attention_kl(inp, "decoder_attention_kl")


@register("cross_attention_kl", needs=(ATTENTION,), tasks=TRANSLATION_TASKS,
          help=LOSSES["cross_attention_kl"].help)
def cross_attention_kl(inp: LossInputs) -> torch.Tensor:
    return translation_attention_kl(inp, "cross_attention_kl")


# ---- language-model objectives
# A language model's batches are blocks of text: logits (B, T, V) and labels (B, T), the next token at each position
# with IGNORED at padding, as scored() reads them; ce, logit_kd (the forward KL) and hard_kd apply as they are.
def _token_pair(inp: LossInputs, loss: str, temperature) -> tuple[torch.Tensor, torch.Tensor]:
    """(student, teacher) log-probabilities at the scored positions (N, V), both logits divided by `temperature`."""
    student, teacher = scored(inp, inp.student_logits, _need(inp.teacher_logits, "teacher logits", loss))
    return F.log_softmax(student.float() / temperature, -1), F.log_softmax(teacher.float() / temperature, -1)


def generalized_jsd(student_logp: torch.Tensor, teacher_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """The generalized Jensen-Shannon divergence of GKD (Agarwal et al. 2024) per position, summed over the
    vocabulary: beta * KL(T || M) + (1 - beta) * KL(S || M), M = beta * T + (1 - beta) * S; beta 0 is KL(T || S) (the
    forward KL) and beta 1 KL(S || T) (the reverse KL), as TRL's GKDTrainer takes them. Inputs (N, V) log-probs."""
    if beta <= 0:
        return (teacher_logp.exp() * (teacher_logp - student_logp)).sum(-1)
    if beta >= 1:
        return (student_logp.exp() * (student_logp - teacher_logp)).sum(-1)
    mixture = torch.logaddexp(student_logp + math.log1p(-beta), teacher_logp + math.log(beta))
    return (beta * teacher_logp.exp() * (teacher_logp - mixture)
            + (1 - beta) * student_logp.exp() * (student_logp - mixture)).sum(-1)


@register("reverse_kl", needs=(TEACHER_LOGITS,), tasks=LM_TASKS, help=LOSSES["reverse_kl"].help)
def reverse_kl(inp: LossInputs) -> torch.Tensor:
    """KL(student || teacher) per scored position (MiniLLM's token-level reverse KL), averaged, times T^2."""
    t = inp.temperature
    s, te = _token_pair(inp, "reverse_kl", t)
    return generalized_jsd(s, te, 1.0).mean() * (t * t)


@register("gkd", needs=(TEACHER_LOGITS,), tasks=LM_TASKS, help=LOSSES["gkd"].help)
def gkd(inp: LossInputs) -> torch.Tensor:
    """The generalized JSD with the task's beta (LossInputs.extra["student"]["beta"]) on the training text."""
    beta = float(inp.extra.get("student", {}).get("beta", 0.5))
    s, te = _token_pair(inp, "gkd", inp.temperature)
    return generalized_jsd(s, te, beta).mean()


@register("on_policy", needs=(TEACHER_LOGITS,), tasks=LM_TASKS, help=LOSSES["on_policy"].help)
def on_policy(inp: LossInputs) -> torch.Tensor:
    """The generalized JSD on the student's own samples when the task's sampler draws some this step
    (LossInputs.extra["student"]["sample_on_policy"]() -> the student's logits with their graph, the teacher's, and
    which positions were sampled; None on the steps it leaves to the training text), else on the training text like
    gkd."""
    extra = inp.extra.get("student", {})
    beta = float(extra.get("beta", 0.5))
    sampler = extra.get("sample_on_policy")
    drawn = sampler() if sampler is not None else None
    if drawn is None:
        s, te = _token_pair(inp, "on_policy", inp.temperature)
        return generalized_jsd(s, te, beta).mean()
    keep = drawn["mask"].bool()
    s = F.log_softmax(drawn["student_logits"].float()[keep] / inp.temperature, -1)
    te = F.log_softmax(drawn["teacher_logits"].float()[keep] / inp.temperature, -1)
    return generalized_jsd(s, te, beta).mean()


def causal_masks(mask: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(key mask (B, 1, 1, T, T), row mask (B, 1, 1, T)) of causal self-attention: a row is a real position and its
    keys the real positions up to its own (the lower triangle)."""
    real = mask.float()                                                         # (B, T)
    t = real.shape[1]
    causal = torch.tril(torch.ones((t, t), device=real.device))                 # query >= key
    return (real[:, None, :] * causal)[:, None, None], real[:, None, None, :]


@register("causal_attention_kl", needs=(ATTENTION,), tasks=LM_TASKS, help=LOSSES["causal_attention_kl"].help)
def causal_attention_kl(inp: LossInputs) -> torch.Tensor:
    """KL(teacher || student) per causal attention row on the mapped layers and compared heads, over the allowed
    keys only (the row's own and earlier real positions; both rows renormalised there), averaged over real rows."""
    p, q = _attention_pair(inp, "causal_attention_kl")
    keys, rows = causal_masks(inp.mask, inp.labels)
    p = p.float() * keys
    q = q.float() * keys
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-30)
    q = q / q.sum(-1, keepdim=True).clamp_min(1e-30)
    values = metrics.row_kl(p, q)                                               # (B, P, H', T)
    return _over_heads(inp, "causal_attention_kl", values, rows.expand_as(values))


# the names and explanations again, translation's and the language model's losses
# included (they are registered after the tables above)
LOSS_NAMES = tuple(OBJECTIVES)
TEXT_LOSS_NAMES = tuple(n for n, o in OBJECTIVES.items() if o.text)
LOSS_HELP = {name: o.help for name, o in OBJECTIVES.items()}
