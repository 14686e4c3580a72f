"""The kinds of task a session can run, by the name `SessionConfig.modality` gives: one line each."""
from __future__ import annotations

from ..errors import ConfigError
from .base import Task
from .text.task import TextTask
from .vision.task import ImageTask

TASKS: dict[str, type[Task]] = {
    TextTask.kind: TextTask,
    ImageTask.kind: ImageTask,
}


def task_for(config) -> Task:
    """The task a SessionConfig runs."""
    try:
        return TASKS[config.modality](config)
    except KeyError:
        raise ConfigError(f"unknown kind of task {config.modality!r}; known: {', '.join(TASKS)}") from None
