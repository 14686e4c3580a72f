"""The kinds of task a session can run, by the name `SessionConfig.modality` gives: one line each.

Text classification and images are imported with the registry; token tagging, translation and language models on
first use (their packages pull seqeval, sacrebleu and tokenizers, which a classification session never needs)."""
from __future__ import annotations

import importlib

from ..errors import ConfigError
from .base import Task
from .text.task import TextTask
from .vision.task import ImageTask

TASKS: dict[str, type[Task]] = {
    TextTask.kind: TextTask,
    ImageTask.kind: ImageTask,
}
LATER: dict[str, str] = {           # kind -> "module:Task class", imported by task_class
    "tagging": "distill_core.modality.tagging.task:TaggingTask",
    "translation": "distill_core.modality.translation.task:TranslationTask",
    "language_model": "distill_core.modality.language_model.task:LanguageModelTask",
}
KINDS = (*TASKS, *LATER)


def task_class(kind: str) -> type[Task]:
    """The Task class of a kind of task."""
    if kind not in TASKS and kind in LATER:
        module, name = LATER[kind].split(":")
        TASKS[kind] = getattr(importlib.import_module(module), name)
    try:
        return TASKS[kind]
    except KeyError:
        raise ConfigError(f"unknown kind of task {kind!r}; known: {', '.join(KINDS)}") from None


def task_for(config) -> Task:
    """The task a SessionConfig runs."""
    return task_class(config.modality)(config)
