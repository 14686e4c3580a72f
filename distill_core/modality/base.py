"""The boundary between a session and the kind of task it runs.

A session never asks which kind of task it holds. It asks its `Task` (one class per kind, registered in
`distill_core.modality.TASKS`) to load and split the data, prepare each teacher, build the initial student, map the
student's layers onto the teacher's, serve the teacher's outputs per batch, and say what the pages should know. What
a task builds for the training loop is a `Modality`: the splits encoded once, batched, fed to a model, evaluated,
and shown on the axes of an attention map.

    task = task_for(config)                         # the registry, by config.modality
    data = task.load_data()                         # read and split once
    teachers = [task.prepare_teacher(c, data, device, progress) for c in configs]
    student, init = task.initial_student(data, teachers[0].model, layer_rule)
    plan = task.map_layers(data, teachers[0].model, student, layer_rule)
    modality = task.modality(data, student)
    source, cached = task.teacher_source(teachers[0], modality, device, plan.teacher_layers, head_rule, heads, needs,
                                         progress)
    source(batch)  ->  TeacherBatch                 # every teacher's outputs, on any batch, for any task

Adding a kind of task is one package under `modality/` with a Task and a Modality, and one line in the registry.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch
from torch import nn

INIT_LOCK = threading.Lock()   # global RNG seeding + model construction, for sessions sharing a process


@dataclass
class Batch:
    inputs: dict            # keyword arguments of the model's forward: input_ids (B, T), attention_mask (B, T), or
                            # pixel_values (B, C, H, W)
    mask: torch.Tensor      # (B, T) 1 = real token: which query rows and key columns of attention are real
    labels: torch.Tensor    # (B,); per-token tasks (B, T) with objectives.IGNORED where a token is not scored
    index: list[int]        # positions of the examples in their split

    @property
    def length(self) -> int:
        return int(self.mask.shape[1])


@dataclass
class TeacherBatch:
    """What a teacher says about one batch, as the variants' objectives read it."""
    logits: torch.Tensor | None = None     # (B, C); per-token tasks (B, T, C)
    attention: torch.Tensor | None = None  # (B, P, H', T, T) already reduced to the compared heads
    hidden: torch.Tensor | None = None     # (B, P, T, Dt)
    activation: list | None = None         # CNN: (B, h_j*w_j) L2-normalised activation attention per mapped stage
    scores: torch.Tensor | None = None     # (B, P, H', T, T) attention scores before the softmax, heads reduced alike
    extra: dict = field(default_factory=dict)   # a task's own outputs (LossInputs.extra["teacher"])


@dataclass
class StudentOutputs:
    """What a task's own student forward (Task.student_forward) hands the objectives for one batch."""
    logits: torch.Tensor                   # (B, C); per-token tasks (B, T, C)
    attention: torch.Tensor | None = None  # (B, P, H', T, T) mapped layers, compared heads
    hidden: torch.Tensor | None = None     # (B, P, T, Dt) projected to the teacher's width
    activation: list | None = None
    scores: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)   # a task's own outputs (LossInputs.extra["student"])


# A teacher's outputs, served per batch: the first teacher, a further one, or their ensemble.
TeacherSource = Callable[[Batch], TeacherBatch]


@dataclass
class LayerPlan:
    """How a student's maps are compared with its teacher's."""
    teacher_shape: tuple[int, int]          # (layers or stages, heads)
    student_shape: tuple[int, int]
    teacher_layers: list[int]               # the teacher layer compared with each student layer; [] none
    families: tuple[str, str] | None = None  # the (teacher, student) model families, where a task has several


class Modality(Protocol):
    """The splits of one session encoded once; every variant is fed the same batches."""
    kind: str
    saved_as: str                           # the folder under a run's models/ that save() fills
    splits: object
    labels: dict                            # split -> list of labels
    notices: list[str]

    def size(self, split: str) -> int: ...
    def batches(self, split: str, batch_size: int, seed: int | None, buckets: bool = True) -> list: ...
    def batch(self, split: str, index, device: torch.device) -> Batch: ...
    def probe_maps(self, model, device: torch.device) -> list[np.ndarray]: ...
    def probe_record(self) -> dict: ...
    def evaluate(self, model, split: str, device, mixed_precision: bool = True) -> tuple[float, float]: ...
    def predict(self, model, split: str, device, mixed_precision: bool = True) -> dict: ...
    def logits(self, model, split: str, device, mixed_precision: bool = True) -> torch.Tensor: ...
    def latency_examples(self, device) -> list[dict]: ...     # one probe example per dict, a batch of 1
    def save(self, folder) -> None: ...


class Task(ABC):
    """One kind of task: everything a session does that depends on the kind of data and models."""
    kind: str = ""
    padded_maps: bool = True        # probe maps of several lengths, padded to the longest (text); False: one size
    suggests_layers: bool = True    # objectives.layer_map: suggested can be resolved from an earlier run

    def __init__(self, config):
        self.config = config        # the SessionConfig

    # ---- data and teachers --------------------------------------------------------------------------------
    @abstractmethod
    def load_data(self):
        """Read and split the data once: what the other methods are handed as `data`."""

    def check_teacher_configs(self, data, configs: list) -> None:
        """Refuse teachers that cannot work with this data, before any teacher is prepared (`configs`: the session's
        config once per teacher)."""

    @abstractmethod
    def prepare_teacher(self, config, data, device, progress):
        """A PreparedTeacher for `config`'s teacher section: loaded, fine-tuned or trained here once and cached."""

    def check_teachers(self, teachers: list, data) -> None:
        """Refuse prepared teachers that cannot be used together (several teachers)."""

    @abstractmethod
    def shape(self, model: nn.Module) -> tuple[int, int]:
        """(layers or stages, heads) of a model's maps."""

    # ---- the student --------------------------------------------------------------------------------------
    @abstractmethod
    def initial_student(self, data, teacher: nn.Module, layer_rule) -> tuple[nn.Module, str]:
        """The weights every variant starts from (seeded by train.seed) and how they were initialised."""

    @abstractmethod
    def map_layers(self, data, teacher: nn.Module, student: nn.Module, layer_rule) -> LayerPlan:
        """Which teacher layer each student layer is compared with; refuses losses the maps cannot feed."""

    @abstractmethod
    def modality(self, data, student: nn.Module) -> Modality:
        """The data as the training loop reads it."""

    # ---- the teacher's outputs ----------------------------------------------------------------------------
    @abstractmethod
    def teacher_source(self, teacher, modality: Modality, device, layers: list[int], head_rule: str,
                       student_heads: int, needs: frozenset, progress) -> tuple[TeacherSource, bool | None]:
        """The teacher's outputs that `needs` asks for, per batch, and whether they came from the disk cache (None:
        computed with each batch)."""

    @abstractmethod
    def further_source(self, teacher, name: str, prepared, needs: frozenset, layer_rule, progress) -> TeacherSource:
        """A further teacher's outputs (`name`: teacher_2, ...), its layers mapped onto the student's like the first
        teacher's."""

    @abstractmethod
    def ensemble_source(self, sources: list, combine, attention: str) -> TeacherSource:
        """Every teacher's outputs combined into one target: logits by `combine` (ensemble.Combine: ensemble.combine,
        ensemble.average, the KD temperature), attention by ensemble.attention."""

    # ---- what else a session does with the task -----------------------------------------------------------
    @abstractmethod
    def generate(self, session, prepared) -> None:
        """Generated distillation data for the variants that use it (prepared.generated and generated_outputs)."""

    def auto_init_reason(self, train_examples: int) -> str:
        """Why student.init auto started the student from the teacher's knowledge, as the opening of a sentence."""
        from ..config import SMALL_TRAIN
        return f"with {train_examples:,} training examples (under {SMALL_TRAIN:,})"

    def teacher_notices(self, prepared) -> list[str]:
        """How the first teacher was prepared, in a sentence."""
        return []

    def pairing_notices(self, prepared) -> list[str]:
        """What the user should know about how the student's maps pair with the teacher's."""
        return []

    def student_forward(self, prepared) -> Callable | None:
        """A task's own student forward for the training step, or None for the variants' usual one (the model on
        batch.inputs, attention captured on the mapped layers). Called once per session; what it returns is called
        as forward(model, batch, needs, ctx, embeds) -> StudentOutputs, under the variant's random stream."""
        return None

    def probe_divergence(self, prepared, teacher_maps, student_maps) -> tuple[dict, dict]:
        """How far a student's probe maps are from the teacher's: the metrics of the primary maps (name -> (P, H')
        nested lists; empty when no layers are mapped) and, for a task whose models have several kinds of attention
        (probe_maps returns {kind: maps}), every kind's metrics {kind: {name: (P, H')}}."""
        from .. import mapping
        p = prepared
        return mapping.probe_metrics(teacher_maps, student_maps, p.pairs, p.head_rule, p.student_shape[1],
                                     padded=self.padded_maps), {}

    def probe_extra(self, prepared) -> dict:
        """What probe.json holds beyond the probe examples, for this kind of task."""
        return {}

    @abstractmethod
    def robustness(self, models: dict, modality: Modality, device, progress) -> dict:
        """Accuracy of each model under an attack at several strengths (robustness.json)."""

    # ---- a finished run, reopened (distill_core/reopen.py asks these; no config needed) -------------------
    saved_as: str = ""              # the folder under a run's models/ that holds its input reader
    data_word: str = "data"         # what its data are called in messages
    data_pronoun: str = "it"        # and the word for them

    @classmethod
    def input_length(cls, config) -> int:
        """The token limit of a run's inputs (the reader of a sentence typed in the explorer cuts there)."""
        return config.data.max_length

    @classmethod
    def reopen_reader(cls, finished):
        """The input reader a finished run kept (a tokenizer), or None."""
        return None

    @classmethod
    @abstractmethod
    def reopen_splits(cls, config):
        """A finished run's splits, rebuilt from its SessionConfig."""

    @classmethod
    @abstractmethod
    def reopen_modality(cls, finished, splits) -> Modality:
        """The validation, test and probe examples of a finished run as its modality."""

    @staticmethod
    @abstractmethod
    def load_model(folder) -> nn.Module:
        """A model folder written by a session (a teacher or a student), on the CPU in eval mode."""

