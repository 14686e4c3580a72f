"""The student side shared by the tasks whose students are transformer encoders built from the teacher's config
(text classification, token tagging): the shape read from a model, student.init resolved, the student built with
the mapped teacher layers to copy, and the layer plan. Each task says how to build its kind of student (its head)
in `new_student`."""
from __future__ import annotations

import torch
from torch import nn

from ... import mapping
from ...models import check_attention, num_layers_heads, student_init
from ..base import INIT_LOCK, LayerPlan


class EncoderStudents:
    """Mixed into a Task whose data object has a `.modality` with a tokenizer, size() and the students' head."""

    def new_student(self, modality, teacher: nn.Module, init_layers: list[int] | None, init: str | None) -> nn.Module:
        """The task's student (its head for the modality's labels) of the student section's shape."""
        raise NotImplementedError

    def shape(self, model: nn.Module) -> tuple[int, int]:
        return num_layers_heads(model)

    def student_init(self, teacher: nn.Module, train_examples: int) -> str:
        """student.init with "auto" resolved: the teacher's knowledge is the starting point when the training split
        is small (under config.SMALL_TRAIN examples)."""
        return student_init(self.config.student, teacher, train_examples)

    def initial_student(self, data, teacher: nn.Module, layer_rule) -> tuple[nn.Module, str]:
        cfg, m = self.config, data.modality
        init = self.student_init(teacher, m.size("train"))
        with INIT_LOCK:
            torch.manual_seed(cfg.train.seed)
            init_layers = cfg.student.init_layers
            if init_layers is None and not cfg.student.source:
                init_layers = mapping.layer_map(layer_rule, num_layers_heads(teacher)[0], cfg.student.layers)
            student = self.new_student(m, teacher, init_layers, None if init == "pretrained" else init)
        check_attention(student, m.tokenizer, "the student")   # its tokenizer was checked in preflight
        return student, init

    def map_layers(self, data, teacher: nn.Module, student: nn.Module, layer_rule) -> LayerPlan:
        t_shape, s_shape = num_layers_heads(teacher), num_layers_heads(student)
        return LayerPlan(t_shape, s_shape, mapping.layer_map(layer_rule, t_shape[0], s_shape[0]))

    def modality(self, data, student: nn.Module):
        return data.modality
