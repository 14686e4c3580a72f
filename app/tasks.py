"""What the pages draw differently per kind of task, in one place: a page asks a run's task (`of(probe)`) what its
inputs are and how to show them, never compares the task's name. A new kind of task adds one entry here.
No Streamlit here."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskPages:
    kind: str                   # SessionConfig.modality, as probe.json and generated.json record it
    pictures: bool              # the inputs are pictures: maps are drawn over them (explorer, attributions,
                                # generated data, report) instead of over tokens


TASKS = {t.kind: t for t in (
    TaskPages("text", pictures=False),
    TaskPages("image", pictures=True),
)}
DEFAULT = TASKS["text"]         # runs written before probe.json named their task were text runs


def of(record: dict | None) -> TaskPages:
    """The task of a run's probe.json (or another record with a "modality" key, e.g. generated.json)."""
    return TASKS.get((record or {}).get("modality") or DEFAULT.kind, DEFAULT)
