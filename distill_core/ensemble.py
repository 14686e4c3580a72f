"""Several teachers: how their outputs become one target for a student that learns from all of them.

Outputs are combined per example (Combine), by a rule:

    mean             every teacher counts the same
    confidence       each teacher weighted by its top class probability on that example (at the KD temperature)
    most_confident   the teacher whose top class probability on that example is highest

and an average: of the logits (TextBrewer's multi-teacher distiller; a geometric mean of the distributions, which the
most confident teacher dominates) or of the probabilities at the KD temperature (the arithmetic mixture, returned as
T * log of it, so that the students' softmax at T reads the mixture back).

Attention comes from the first teacher, or (`mean`) from every teacher's maps, each already reduced to the student's
compared heads by the session's head rule (group means for 12 -> 4 heads), averaged over the teachers. Teachers
fine-tuned from one pretrained model share what their heads do; for unrelated teachers use head_rule mean, which
compares head-averaged maps only.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from . import stats
from .config import COMBINE_RULES, ENSEMBLE_AVERAGES
from .vocab import TEACHER

TINY = 1e-30            # a mixture's probability is never exactly 0 in float32 before the log


def teacher_weights(logits: torch.Tensor, rule: str, temperature: float = 1.0) -> torch.Tensor:
    """How much each teacher counts on each example: (K, N, C) logits -> (K, N) weights summing to 1 over K, the
    confidences read from the distributions at `temperature`."""
    if rule not in COMBINE_RULES:
        raise ValueError(f"combine rule must be one of {', '.join(COMBINE_RULES)}, not {rule!r}")
    k = logits.shape[0]
    if rule == "mean":
        return torch.full(logits.shape[:2], 1.0 / k, dtype=torch.float32, device=logits.device)
    confidence = torch.softmax(logits.float() / temperature, -1).amax(-1)    # (K, N)
    if rule == "confidence":
        return confidence / confidence.sum(0, keepdim=True)
    best = confidence.argmax(0)                                              # (N,): the first wins ties
    return torch.nn.functional.one_hot(best, k).T.float()


def combine_logits(logits: torch.Tensor, rule: str, average: str = "logits", temperature: float = 1.0) -> torch.Tensor:
    """The ensemble's logits: (K, N, C) -> (N, C) float32. average "probabilities": T * log of the weighted mean of
    softmax(logits / T), whose softmax at T is that mixture."""
    if average not in ENSEMBLE_AVERAGES:
        raise ValueError(f"ensemble average must be one of {', '.join(ENSEMBLE_AVERAGES)}, not {average!r}")
    t = float(temperature)
    w = teacher_weights(logits, rule, t)[..., None]                          # (K, N, 1)
    if average == "logits":
        return (w * logits.float()).sum(0)
    mixture = (w * torch.softmax(logits.float() / t, -1)).sum(0)             # (N, C)
    return t * torch.log(mixture.clamp_min(TINY))


@dataclasses.dataclass(frozen=True)
class Combine:
    """How a session combines its teachers' logits: the rule, the average and the KD temperature."""
    rule: str = "mean"
    average: str = "logits"
    temperature: float = 1.0

    @classmethod
    def of(cls, config) -> "Combine":
        """The combination a SessionConfig asks for."""
        return cls(config.ensemble.combine, config.ensemble.average, float(config.objectives.temperature))

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return combine_logits(logits, self.rule, self.average, self.temperature)


def mean_maps(per_teacher: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """Per example, the mean over teachers of maps of one shape: K lists of N tensors (P, H', t, t) -> N tensors."""
    return [torch.stack([maps[i].float() for maps in per_teacher]).mean(0).to(per_teacher[0][i].dtype)
            for i in range(len(per_teacher[0]))]


class EnsembleBatches:
    """An ensemble computed with each batch (images: the teachers run on every batch): calls each teacher's outputs
    and combines their logits; attention and hidden states from the first teacher, or the attention's mean."""

    def __init__(self, teachers: list, combine: Combine, attention: str):
        self.teachers, self.combine, self.attention = teachers, combine, attention

    def __call__(self, batch):
        outs = [t(batch) for t in self.teachers]
        first = outs[0]
        if first.logits is not None:
            first.logits = self.combine(torch.stack([o.logits for o in outs]))
        if self.attention == "mean" and first.attention is not None:
            first.attention = torch.stack([o.attention for o in outs]).mean(0)
        if self.attention == "mean" and first.scores is not None:
            first.scores = torch.stack([o.scores for o in outs]).mean(0)
        if self.attention == "mean" and first.activation is not None:     # CNN maps are unit vectors: so is the mean
            first.activation = [torch.nn.functional.normalize(torch.stack([o.activation[j] for o in outs]).mean(0), dim=-1)
                                for j in range(len(first.activation))]
        return first


def twin_of(variants, name: str) -> str | None:
    """The variant with the same recipe as `name` that learns from the first teacher, when `name` learns from another
    teacher (or the ensemble): only the teacher differs between the two, so their difference answers "did it help?"."""
    v = next((x for x in variants if x.name == name), None)
    if v is None or v.teacher == TEACHER:
        return None
    return next((o.name for o in variants
                 if o.teacher == TEACHER and dataclasses.replace(o, name=v.name, teacher=v.teacher) == v), None)


def twin_comparisons(config, labels, answers: dict) -> dict:
    """Each variant that learns from another teacher against its twin on the same examples (stats.paired_comparison,
    the twin as the reference): variant -> {"twin", "accuracy", "ref_accuracy", "diff", "lo", "hi", "p", ...}.
    `config` a SessionConfig; `answers` variant -> predicted labels, in the order of `labels`."""
    y, out = np.asarray(labels), {}
    for v in config.variants:
        twin = twin_of(config.variants, v.name)
        if twin and v.name in answers and twin in answers:
            out[v.name] = {"twin": twin, **stats.paired_comparison(np.asarray(answers[twin]) == y,
                                                                   np.asarray(answers[v.name]) == y,
                                                                   seed=config.train.seed)}
    return out
