"""Reopening a finished run: its folder back as its checked config, its data rebuilt from that config, its teachers
and its students. Nothing is loaded until it is asked for, and what is loaded once is kept.

    fr = reopen(run)                          # or reopen(run, "best"): the students' best epoch's weights
    fr.config                                 # the run's SessionConfig, checked
    fr.splits()                               # its splits, rebuilt; the test split checked against predictions.json
    fr.task()                                 # a TextModality / ImageModality over them; the probe checked too
    fr.teacher(), fr.student("distilled")     # models in eval mode on the CPU
    fr.run_models()                           # RunModels: the input reader, every teacher and trained student

What differs between the kinds of run (probe.json "modality") is asked of the run's Task (modality/base.py): the
folder under models/ that holds its input reader, how the reader, the splits, the modality and a model folder are
loaded, and how the data are named in messages. Everything else here is the same for every kind.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from torch import nn

from .config import SessionConfig
from .errors import ConfigError, DataError, DistillError, ModelError, RunStoreError
from .modality.base import Task
from .modality.registry import KINDS, task_class
from .modality.text.task import TextTask
from .modality.vision.task import ImageTask
from .store import WEIGHTS, Run
from .vocab import TEACHER, run_variants

TEXT, IMAGE = TextTask, ImageTask      # the kinds of run other modules ask for by task (require(IMAGE))


# ---- what differs between kinds of run: the task's reopening methods (modality/base.py) -----------------------------
def kind_of(probe: dict) -> type[Task]:
    """The task of a run from its probe.json (runs written before images were supported say none: text)."""
    name = probe.get("modality") or TextTask.kind
    if name not in KINDS:
        raise ModelError(f"the run reads {name} inputs, which this version cannot reopen (it reads "
                         f"{', '.join(KINDS)})")
    return task_class(name)


# ---- a finished run ------------------------------------------------------------------------------------------------
@dataclass
class RunModels:
    """Input reader and models of a run, loaded on the CPU in eval mode (text models with eager attention)."""
    tokenizer: object       # the run's input reader: a text run's tokenizer (None for an image run)
    models: dict            # "teacher", each further teacher still on disk and each variant with trained weights
    label_names: list[str]
    max_length: int
    weights: str = "final"  # the students' weights asked for: "final" or "best"
    # variant -> {"weights": "final" | "best", "epoch": int | None}: what was loaded. A run written before best
    # weights were kept has only its final ones, so asking it for "best" loads (and records) "final".
    loaded: dict = field(default_factory=dict)


class FinishedRun:
    """One run reopened (see the module's docstring). Build it with reopen()."""

    def __init__(self, run: Run, weights: str = "final"):
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, not {weights!r}")
        probe = run.probe()
        if probe is None:
            raise RunStoreError(f"run {run.id} has no probe.json: it failed before its models were ready")
        self.run, self.probe, self.weights = run, probe, weights
        self.kind = kind_of(probe)
        self.loaded: dict = {}      # variant -> {"weights", "epoch"} of each student loaded so far
        self._models: dict = {}
        self._cache: dict = {}

    def require(self, task: type[Task]) -> None:
        """ModelError unless the run is of this kind of task."""
        if self.kind is not task:
            raise ModelError(f"run {self.run.id} is not an {task.kind} run" if task.kind[0] in "aeiou" else
                             f"run {self.run.id} is not a {task.kind} run")

    # ---- config and data -------------------------------------------------------------------------------
    @cached_property
    def config(self) -> SessionConfig:
        """The run's config.json as a checked SessionConfig."""
        return SessionConfig.from_dict(self.run.config())

    @property
    def max_length(self) -> int:
        """The token limit of the run's texts, as its task reads config.json (a tagging run's own limit while data's
        is the classification default); as written where today's checks refuse the config: live inspection of a run
        whose config an older version wrote does not need it to pass them."""
        try:
            config = self.config
        except ConfigError:
            return self.run.config()["data"]["max_length"]
        return task_class(config.modality).input_length(config)

    @property
    def label_names(self) -> list[str]:
        return self.probe["label_names"]

    def _rebuilt(self, what: str) -> DataError:
        k = self.kind
        return DataError(f"the {what} of run {self.run.id} cannot be rebuilt: its {k.data_word} ({self.config.data.source})"
                         f" changed since the run; restore {k.data_pronoun} or run a new session")

    def splits(self):
        """The run's splits rebuilt from its config, the test labels checked against predictions.json's."""
        if "splits" not in self._cache:
            splits = self.kind.reopen_splits(self.config)
            recorded = (self.run.predictions() or {}).get("labels")
            if recorded is not None and list(recorded) != list(splits.test_labels):
                raise self._rebuilt("test split")
            self._cache["splits"] = splits
        return self._cache["splits"]

    def task(self):
        """The run's validation, test and probe examples as its modality (TextModality or ImageModality), the
        probe examples checked against probe.json's labels."""
        if "task" not in self._cache:
            modality = self.kind.reopen_modality(self, self.splits())
            if list(self.probe.get("labels") or []) != list(modality.probe_record()["labels"]):
                raise self._rebuilt("probe examples")
            self._cache["task"] = modality
        return self._cache["task"]

    def reader(self):
        """The run's input reader: a text run's tokenizer (models/tokenizer, else the teacher's); None for images."""
        if "reader" not in self._cache:
            self._cache["reader"] = self.kind.reopen_reader(self)
        return self._cache["reader"]

    # ---- models ---------------------------------------------------------------------------------------
    def teacher_path(self, name: str = TEACHER) -> Path:
        """The folder of the teacher (or of a further teacher by its name), a relative path read from the run's
        folder."""
        if name == TEACHER:
            return self.run.teacher_dir()
        for t in (self.probe.get("teachers") or [])[1:]:
            if t.get("name") == name:
                return self.run.teacher_dir(t.get("path"))
        raise RunStoreError(f"run {self.run.id} has no teacher {name!r}")

    def _load(self, name: str, folder: Path) -> nn.Module:
        if name not in self._models:
            try:
                self._models[name] = self.kind.load_model(folder)
            except DistillError:
                raise
            except Exception as e:  # noqa: BLE001 - damaged weights, a config transformers cannot read, ...
                raise ModelError(f"cannot load the {name} model of run {self.run.id} from {folder}: {e}") from None
        return self._models[name]

    def teacher(self, name: str = TEACHER) -> nn.Module:
        """The teacher (or a further teacher), from the folder the run used."""
        folder = self.teacher_path(name)
        if not (folder / "config.json").is_file():
            raise ModelError(f"the teacher of run {self.run.id} is no longer at {folder} (was the cache cleared?); "
                             f"rerun the session to prepare it again")
        return self._load(name, folder)

    def teachers(self) -> dict[str, nn.Module]:
        """The teacher and each further teacher whose folder is still there (several teachers: one per name)."""
        out = {TEACHER: self.teacher()}
        for t in (self.probe.get("teachers") or [])[1:]:
            if (self.teacher_path(t["name"]) / "config.json").is_file():
                out[t["name"]] = self.teacher(t["name"])
        return out

    def variants(self) -> list[str]:
        """The run's variants in session order."""
        return run_variants(self.probe, self.run.metrics())

    def student_dir(self, variant: str) -> tuple[Path, dict]:
        """The folder of a variant's weights (final, or best as asked) and what it holds: {"weights", "epoch"}.
        A run that kept no best weights gives its final ones."""
        kept = self.run.kept_weights(variant)
        which = self.weights if self.weights in kept else "final"
        return self.run.model_dir(variant, which), {"weights": which, "epoch": kept.get(which)}

    def student(self, variant: str) -> nn.Module:
        """A variant's final or best weights; RunStoreError when the run kept none."""
        folder, what = self.student_dir(variant)
        if not (folder / "config.json").is_file():
            raise RunStoreError(f"run {self.run.id} kept no weights for variant {variant} (it stopped before saving "
                                f"them)")
        model = self._load(variant, folder)
        self.loaded[variant] = what
        return model

    def students(self) -> dict[str, nn.Module]:
        """Every variant with trained weights; RunStoreError when there is none."""
        out = {v: self.student(v) for v in self.variants() if (self.student_dir(v)[0] / "config.json").is_file()}
        if not out:
            raise RunStoreError(f"run {self.run.id} has no trained student weights yet (it is running, failed or was "
                                f"cancelled before its first epoch)")
        return out

    def run_models(self) -> RunModels:
        """The input reader, every teacher and every trained student, with what was loaded for each student."""
        reader = self.reader()
        models = {**self.teachers(), **self.students()}
        loaded = {v: self.loaded[v] for v in models if v in self.loaded}
        return RunModels(reader, models, self.label_names, self.max_length, self.weights, loaded)


def reopen(run: Run, weights: str = "final") -> FinishedRun:
    """A finished run's folder, reopened: see FinishedRun. weights: the students' "final" weights (the last finished
    epoch) or their "best" epoch's by validation accuracy."""
    return FinishedRun(run, weights)
