"""Config ⇄ widget values, both ways, per task: `text_values(cfg)` / `image_values(cfg)` give each widget key its
starting value; `text_config(v, base)` / `image_config(v, base)` build the SessionConfig back from the values (v:
the keys without 'new.'; settings the form does not show come from `base`). Pure functions: no widget is drawn.

The parts both tasks have (the objectives, the training settings, the split sizes, the further teachers) are
converted once, under the task's key prefix (new. or new.img.)."""
from __future__ import annotations

import dataclasses
import importlib
import math
import os
from pathlib import Path
from typing import Callable

from distill_core import SessionConfig
from distill_core.config import (DEFAULT_DATASET, DEFAULT_TEACHER, IMAGE_DATASETS, IMAGE_TEACHERS, LAYER_MAPS,
                                 DataConfig, LanguageModelConfig, TranslationConfig, image_teacher_family)
from distill_core.errors import ConfigError
from distill_core.modality.splits import SIZE_KEYS, uses_task_sizes
from distill_core.preflight import model_family
from distill_core.sources import source_kind
from distill_core.vocab import teacher_name

from .keys import (DEVICE, IMAGE_VARIANTS, IMG, LANGUAGE_MODEL_TASK, LANGUAGE_MODEL_VARIANTS, LM, MT, NAME, NEW,
                   SCHEDULE, SEED, SEEDS, TAG, TAGGING_TASK, TAGGING_VARIANTS, TEXT_VARIANTS, TIME_BUDGET,
                   TRANSLATION_TASK, TRANSLATION_VARIANTS, value_key)
from .labels import (BIBLE, BIBLE_PAIR, FILE_TYPES, FURTHER, IMAGE_FORM_DEFAULTS, IMAGE_LAYER_MAPS,
                     LANGUAGE_MODEL_BIBLE, LANGUAGE_MODEL_FORM_DEFAULTS, LANGUAGE_MODEL_LAYER_MAPS, TAGGING_DATASET,
                     TAGGING_FORM_DEFAULTS, TAGGING_LAYER_MAPS, TEXT_LAYER_MAPS, TRANSLATION_FORM_DEFAULTS,
                     TRANSLATION_LAYER_MAPS)
from .variants import further_count, image_losses, teacher_sources, variants_config, variants_values

FORM_DEFAULTS_ENV = "ADS_FORM_DEFAULTS"
IMAGE_SHAPE_FIELDS = ("student_blocks", "student_layers", "student_heads", "student_hidden", "teacher_blocks",
                      "teacher_layers", "teacher_heads", "teacher_hidden", "teacher_epochs", "teacher_batch_size",
                      "teacher_input_size")


# ---- defaults ----------------------------------------------------------------------------------------
def load_defaults() -> tuple[SessionConfig, str | None]:
    """The form's defaults and, when ADS_FORM_DEFAULTS names a bad file, a warning saying why it was ignored."""
    path = os.environ.get(FORM_DEFAULTS_ENV, "").strip()
    if not path:
        return SessionConfig(), None
    try:
        return SessionConfig.load(path), None
    except ConfigError as e:
        return SessionConfig(), f"{FORM_DEFAULTS_ENV} ignored: {e}"


def form_kind(source: str, role: str) -> str:
    """The form's choice for a source: 'default' (built in), 'local' or 'hub'; role is 'model' or 'data'."""
    kind = source_kind(source, role)
    return "default" if kind == "builtin" else kind


def text_fallback(other: SessionConfig) -> SessionConfig:
    """What the text task starts from when the form's defaults are another task's session: SessionConfig()."""
    return SessionConfig()


def task_fallback(other: SessionConfig, form_defaults: dict) -> SessionConfig:
    """What a task starts from when the form's defaults are another task's session: its own defaults
    (form_defaults, a config dict) with the defaults' hidden training and split settings."""
    d = other.to_dict()
    hidden_train = {k: d["train"][k] for k in ("warmup_ratio", "weight_decay", "mixed_precision", "min_steps")}
    hidden_data = {k: d["data"][k] for k in ("probe_size", "split_seed", "max_file_mb")}
    return SessionConfig.from_dict({**form_defaults,
                                    "data": {**form_defaults.get("data", {}), **hidden_data},
                                    "train": {**form_defaults.get("train", {}), **hidden_train}})


def image_fallback(other: SessionConfig) -> SessionConfig:
    """The image task's base when the form's defaults are another task's: IMAGE_FORM_DEFAULTS."""
    return task_fallback(other, IMAGE_FORM_DEFAULTS)


def tagging_fallback(other: SessionConfig) -> SessionConfig:
    """The tagging task's base when the form's defaults are another task's: SessionConfig(task="tagging")."""
    return task_fallback(other, TAGGING_FORM_DEFAULTS)


def translation_fallback(other: SessionConfig) -> SessionConfig:
    """The translation task's base when the form's defaults are another task's: SessionConfig(task="translation")."""
    return task_fallback(other, TRANSLATION_FORM_DEFAULTS)


def language_model_fallback(other: SessionConfig) -> SessionConfig:
    """The language-model task's base when the form's defaults are another task's:
    SessionConfig(task="language_model")."""
    return task_fallback(other, LANGUAGE_MODEL_FORM_DEFAULTS)


# ---- what both tasks have, under the task's prefix ---------------------------------------------------------
def shared_values(cfg: SessionConfig) -> dict:
    """The settings both tasks share (the run's name, schedule, time budget, seed, device), from the defaults
    whichever their modality."""
    tr = cfg.train
    return {NAME: cfg.name, SCHEDULE: tr.schedule, TIME_BUDGET: int(math.ceil(tr.time_budget_s or 0)), SEED: tr.seed,
            SEEDS: "", DEVICE: tr.device}


def objectives_values(cfg: SessionConfig, prefix: str, maps: list[str]) -> dict:
    """The temperature, head rule and layer map of a task (maps: the layer maps its form offers)."""
    o = cfg.objectives
    lm = o.layer_map
    return {prefix + "temperature": float(o.temperature), prefix + "head_rule": o.head_rule,
            prefix + "layer_map_kind": (lm if lm in maps else "uniform") if isinstance(lm, str) else "explicit",
            prefix + "layer_list": "" if isinstance(lm, str) else ",".join(map(str, lm))}


def objectives_settings(v: dict, prefix: str, missing_layers: str) -> dict:
    """The objectives section's shown settings from a task's values; ConfigError (missing_layers) for an explicit
    map without layers."""
    p = value_key(prefix)
    lmk = v[p + "layer_map_kind"]
    out = {"temperature": float(v[p + "temperature"]), "head_rule": v[p + "head_rule"],
           "layer_map": lmk if lmk in LAYER_MAPS else str(v.get(p + "layer_list", "")).strip()}
    if lmk not in LAYER_MAPS and not out["layer_map"]:
        raise ConfigError(missing_layers)
    return out


def training_values(cfg: SessionConfig, prefix: str) -> dict:
    """A task's own training settings (epochs, batch size, learning rate) and split sizes."""
    tr, d = cfg.train, cfg.data
    return {prefix + "epochs": tr.epochs, prefix + "batch_size": tr.batch_size, prefix + "lr": float(tr.lr),
            prefix + "train_size": d.train_size, prefix + "val_size": d.val_size, prefix + "test_size": d.test_size}


def training_settings(v: dict, prefix: str) -> dict:
    """The train section's shown settings: the task's epochs, batch size and learning rate, and the shared ones."""
    p = value_key(prefix)
    budget = float(v["time_budget"])
    return {"epochs": int(v[p + "epochs"]), "batch_size": int(v[p + "batch_size"]), "lr": float(v[p + "lr"]),
            "schedule": v["schedule"], "time_budget_s": budget if budget > 0 else None, "seed": int(v["seed"]),
            "device": v["device"]}


def split_settings(v: dict, prefix: str) -> dict:
    p = value_key(prefix)
    return {k: int(v[f"{p}{k}"]) for k in ("train_size", "val_size", "test_size")}


# ---- a transformer teacher and student (text, tagging), under the task's prefix ------------------------------
def teacher_values(cfg: SessionConfig, prefix: str) -> dict:
    """The teacher transformer's widgets: the bundled one, a model folder or a hub id, and its fine-tuning."""
    t = cfg.teacher
    tk = form_kind(t.source, "model")
    return {prefix + "teacher_kind": tk, prefix + "teacher_path": t.source if tk == "local" else "",
            prefix + "teacher_hub": t.source if tk == "hub" else "",
            prefix + "teacher_finetune": t.finetune, prefix + "teacher_finetune_epochs": t.finetune_epochs}


def teacher_settings(v: dict, base: dict, prefix: str) -> dict:
    """The teacher section from a task's teacher widgets (base: the defaults' one); ConfigError when its folder or
    hub id is missing."""
    p = value_key(prefix)
    kind = v[p + "teacher_kind"]
    source = {"default": DEFAULT_TEACHER, "local": v.get(p + "teacher_path", ""),
              "hub": v.get(p + "teacher_hub", "")}[kind]
    if not str(source).strip():
        raise ConfigError("enter the teacher's model folder" if kind == "local" else "enter the teacher's hub id")
    return {**base, "source": str(source).strip(), "finetune": v[p + "teacher_finetune"],
            "finetune_epochs": int(v[p + "teacher_finetune_epochs"])}


def student_values(cfg: SessionConfig, prefix: str) -> dict:
    s = cfg.student
    return {prefix + "student_layers": s.layers, prefix + "student_heads": s.heads, prefix + "student_hidden": s.hidden,
            prefix + "student_intermediate": s.intermediate, prefix + "student_init": s.init}


def student_settings(v: dict, prefix: str) -> dict:
    """The student section's shown settings: its shape and initialisation."""
    p = value_key(prefix)
    return {"layers": int(v[p + "student_layers"]), "heads": int(v[p + "student_heads"]),
            "hidden": int(v[p + "student_hidden"]), "intermediate": int(v[p + "student_intermediate"]),
            "init": v[p + "student_init"]}


# ---- several teachers --------------------------------------------------------------------------------------
def _as_int(x, default: int) -> int:
    try:
        return int(float(x))
    except (TypeError, ValueError):
        return default


def ensemble_values(cfg: SessionConfig, prefix: str, entry_values) -> dict:
    """The "Several teachers" widget key -> starting value, from cfg.ensemble. Each further teacher's fields show
    its own settings (entry_values(entry, teacher, q): the task's fields of one, and the entry's settings they show);
    the empty slots start as the first teacher with the next seeds. Settings of an entry the form does not show are
    kept under <prefix>ens<k>.extra and written back."""
    t, ens = cfg.teacher, cfg.ensemble
    v = {prefix + "ens_count": len(ens.teachers), prefix + "ens_combine": ens.combine,
         prefix + "ens_average": ens.average, prefix + "ens_attention": ens.attention}
    for k in FURTHER:
        given = k - 2 < len(ens.teachers)
        entry = dict(ens.teachers[k - 2]) if given else {}
        q = f"{prefix}ens{k}."
        v[q + "seed"] = _as_int(entry.get("seed"), t.seed if given else t.seed + k - 1)
        fields, shown = entry_values(entry, t, q)
        v.update(fields)
        v[q + "extra"] = {x: y for x, y in entry.items() if x not in shown}
    return v


def ensemble_settings(v: dict, first: dict, base: dict, prefix: str, entry_source) -> dict:
    """The ensemble section from the form's values: each further teacher's entry holds only the settings that
    differ from the first teacher (`first`, the config's teacher section); entry_source(v, q, k, first, entry): its
    source, its other task settings written into entry. No further teachers: `base` (the defaults' section)
    without teachers. Raises ConfigError."""
    p = value_key(prefix)
    count = further_count(v, p + "ens_count")
    if not count:
        return {**base, "teachers": []}
    teachers = []
    for k in FURTHER[:count]:
        q = f"{p}ens{k}."
        entry = dict(v.get(q + "extra") or {})
        source = entry_source(v, q, k, first, entry)
        if source != first["source"]:
            entry["source"] = source
        seed = _as_int(v.get(q + "seed"), 0)
        if seed != _as_int(first.get("seed"), 0):
            entry["seed"] = seed
        teachers.append(entry)
    return {"teachers": teachers, "combine": v.get(p + "ens_combine") or "mean",
            "average": v.get(p + "ens_average") or "logits",
            "attention": v.get(p + "ens_attention") or "teacher"}


def _text_entry_values(entry: dict, t, q: str) -> tuple[dict, tuple[str, ...]]:
    src = str(entry.get("source") or "").strip()
    return ({q + "part": str(entry.get("finetune_part", t.finetune_part) or ""),
             q + "source": "" if src == t.source else src}, ("source", "seed", "finetune_part"))


def _text_entry_source(v: dict, q: str, k: int, first: dict, entry: dict) -> str:
    part = str(v.get(q + "part") or "").strip()
    if part != str(first.get("finetune_part") or "").strip():
        entry["finetune_part"] = part
    return str(v.get(q + "source") or "").strip() or first["source"]


def _image_entry_values(entry: dict, t, q: str) -> tuple[dict, tuple[str, ...]]:
    src = str(entry.get("source") or t.source).strip()
    kind = src if src in IMAGE_TEACHERS else "local"
    return {q + "kind": kind, q + "path": src if kind == "local" else ""}, ("source", "seed")


def _image_entry_source(v: dict, q: str, k: int, first: dict, entry: dict) -> str:
    kind = v.get(q + "kind") or "cnn"
    source = kind if kind in IMAGE_TEACHERS else str(v.get(q + "path") or "").strip()
    if not source:
        raise ConfigError(f"enter the folder of {teacher_name(k - 1)} under Several teachers: an "
                          f"image-classification model (config.json and model.safetensors)")
    return source


def text_ensemble_settings(v: dict, first: dict, base: dict) -> dict:
    return ensemble_settings(v, first, base, NEW, _text_entry_source)


def image_ensemble_settings(v: dict, first: dict, base: dict) -> dict:
    return ensemble_settings(v, first, base, IMG, _image_entry_source)


# ---- the text task ---------------------------------------------------------------------------------------
def text_values(cfg: SessionConfig) -> dict:
    """The text form's widget key -> starting value, from a text SessionConfig."""
    t, d, tf = cfg.teacher, cfg.data, cfg.transfer
    transfer_kind = tf.source if tf.source in ("none", "unused") else "file"
    dk = form_kind(d.source, "data")
    return {
        **teacher_values(cfg, NEW), **student_values(cfg, NEW),
        "new.data_kind": dk,
        "new.data_path": d.source if dk == "local" else "",
        "new.data_hub": d.source if dk == "hub" else "", "new.hub_split": d.hub_split,
        "new.hub_text_column": d.text_column, "new.hub_label_column": d.label_column,
        "new.max_length": d.max_length,
        **training_values(cfg, NEW), **objectives_values(cfg, NEW, TEXT_LAYER_MAPS),
        "new.transfer_kind": transfer_kind, "new.transfer_path": tf.source if transfer_kind == "file" else "",
        "new.transfer_text_column": tf.text_column, "new.transfer_max_texts": tf.max_texts,
        "new.transfer_copies": tf.copies, "new.transfer_fraction": float(tf.fraction),
        "new.transfer_ops": list(tf.ops), "new.transfer_held_out_from_teacher": tf.held_out_from_teacher,
        **ensemble_values(cfg, NEW, _text_entry_values), "new.teacher_part": str(t.finetune_part or ""),
        **variants_values(cfg.variants, TEXT_VARIANTS),
    }


def text_teacher(v: dict, base: dict) -> dict:
    """The text form's teacher section (base: the defaults' one); ConfigError when its folder or id is missing.
    Its part of the data is the form's only with further teachers (where the form shows it)."""
    out = teacher_settings(v, base, NEW)
    if further_count(v, "ens_count"):
        out["finetune_part"] = str(v.get("teacher_part") or "").strip()
    return out


def text_data(v: dict, base: dict) -> dict:
    """The text form's data section (base: the defaults' one); ConfigError when its source is missing."""
    d = dict(base)
    dk = v["data_kind"]
    if dk == "default":
        d.update(source=DEFAULT_DATASET, text_column="text", label_column="label")
    elif dk == "hub":
        d.update(source=v.get("data_hub", "").strip(), hub_split=v.get("hub_split", "train").strip(),
                 text_column=v["hub_text_column"].strip(), label_column=v["hub_label_column"].strip())
        if not d["source"]:
            raise ConfigError("enter the name of a hub dataset")
    else:
        source = v.get("upload_path") if dk == "upload" else v.get("data_path", "").strip()
        if not source:
            raise ConfigError("upload a CSV or JSONL file first" if dk == "upload" else "enter the data file's path")
        d.update(source=str(source), text_column=v.get("file_text_column") or d["text_column"],
                 label_column=v.get("file_label_column") or d["label_column"])
    d.update(**split_settings(v, NEW), max_length=int(v["max_length"]))
    return d


def transfer_settings(v: dict) -> dict:
    """The transfer section from the form's "Generated data" values (v: without 'new.'); missing ones stay."""
    out = {}
    if "transfer_kind" in v:
        kind = v["transfer_kind"]
        path = str(v.get("transfer_path") or "").strip()
        if kind == "file" and not path:
            raise ConfigError("enter the path of the file of texts for generated data (a .csv, .jsonl or .txt "
                              "file), or pick another source under Dataset › Generated data")
        out["source"] = path if kind == "file" else kind
    for key, cast in (("text_column", str), ("max_texts", int), ("copies", int), ("fraction", float),
                      ("ops", list), ("held_out_from_teacher", bool)):
        if f"transfer_{key}" in v:
            out[key] = cast(v[f"transfer_{key}"])
    if "text_column" in out:
        out["text_column"] = out["text_column"].strip()
    return out


def text_config(v: dict, base: SessionConfig) -> SessionConfig:
    """A text SessionConfig from the text form's values; settings the form lacks come from `base` (the text task's
    base, tasks.Task.base). Raises ConfigError."""
    d = base.to_dict()
    d["name"] = str(v.get("name", "")).strip()
    d["teacher"] = text_teacher(v, d["teacher"])
    d["ensemble"] = text_ensemble_settings(v, d["teacher"], d["ensemble"])
    d["student"].update(student_settings(v, NEW))
    d["data"] = text_data(v, d["data"])
    d["variants"] = variants_config(v, TEXT_VARIANTS, sources=teacher_sources(further_count(v, "ens_count")))
    d["objectives"].update(objectives_settings(
        v, NEW, "enter the teacher layers for the explicit layer map, e.g. 1,3,5 (0-based)"))
    d["transfer"].update(transfer_settings(v))
    d["train"].update(training_settings(v, NEW))
    return SessionConfig.from_dict(d)


# ---- the image task --------------------------------------------------------------------------------------
def _widths_text(widths) -> str:
    return ", ".join(str(int(w)) for w in widths)


def image_families(state) -> tuple[str | None, str]:
    """(teacher family, student family) the image form names: "cnn" or "vit", the teacher's None when unknown."""
    kind = state.get(IMG + "teacher_kind", "cnn")
    teacher = image_teacher_family(kind) if kind in IMAGE_TEACHERS else model_family(state.get(IMG + "teacher_path", ""))
    return teacher, state.get(IMG + "student_family") or teacher or "cnn"


def image_values(cfg: SessionConfig) -> dict:
    """The image form's widget key -> starting value, from an image SessionConfig."""
    d, im = cfg.data, cfg.image
    src, teacher = d.source.strip(), cfg.teacher.source.strip()
    teacher_kind = teacher if teacher in IMAGE_TEACHERS else "local"
    t_family = image_teacher_family(teacher) or model_family(teacher)
    v = {IMG + "data_kind": "builtin" if src in IMAGE_DATASETS else "local",
         IMG + "dataset": src if src in IMAGE_DATASETS else "mnist",
         IMG + "data_path": "" if src in IMAGE_DATASETS else src,
         IMG + "size": im.size,
         IMG + "teacher_kind": teacher_kind, IMG + "teacher_path": "" if teacher_kind != "local" else teacher,
         IMG + "student_family": im.student_family or t_family or "cnn",
         IMG + "student_widths": _widths_text(im.student_widths),
         IMG + "teacher_widths": _widths_text(im.teacher_widths),
         **objectives_values(cfg, IMG, IMAGE_LAYER_MAPS), **training_values(cfg, IMG),
         **variants_values(cfg.variants, IMAGE_VARIANTS)}
    for name in ("patch", *IMAGE_SHAPE_FIELDS):
        v[IMG + name] = getattr(im, name)
    v[IMG + "teacher_lr"] = float(im.teacher_lr)
    v.update(ensemble_values(cfg, IMG, _image_entry_values))
    return v


def parse_widths(text: str, what: str) -> list[int]:
    """"16, 32, 64" -> [16, 32, 64]; ConfigError saying how to write them."""
    try:
        widths = [int(x) for x in str(text).replace("[", "").replace("]", "").split(",") if x.strip()]
    except ValueError:
        widths = []
    if not widths or min(widths) < 1:
        raise ConfigError(f"{what}: enter each stage's channels as whole numbers separated by commas, e.g. 16, 32, 64")
    return widths


def image_source(v: dict) -> str:
    """data.source of the image form (v: form values without 'new.'); ConfigError when it is missing."""
    kind = v.get("img.data_kind", "builtin")
    if kind == "builtin":
        return str(v.get("img.dataset") or "mnist")
    source = str((v.get("img.upload_path") if kind == "upload" else v.get("img.data_path")) or "").strip()
    if not source:
        raise ConfigError("upload a .zip of class folders first" if kind == "upload" else
                          "enter the path of an image folder (one subfolder per class) or of a .zip of them")
    return source


def image_teacher(v: dict, base: dict) -> dict:
    """The image form's teacher section (base: the defaults' one); ConfigError when its folder is missing."""
    kind = v["img.teacher_kind"]
    source = kind if kind in IMAGE_TEACHERS else str(v.get("img.teacher_path", "")).strip()
    if not source:
        raise ConfigError("enter the folder of the teacher: an image-classification model (config.json and "
                          "model.safetensors)")
    return {**base, "source": source}


def image_settings(v: dict, base: dict, teacher: str | None, student: str) -> dict:
    """The image section from the image form's values (base: the defaults' one)."""
    im = dict(base)
    im.update({k: int(v[f"img.{k}"]) for k in ("size", "patch", *IMAGE_SHAPE_FIELDS)})
    im.update(teacher_lr=float(v["img.teacher_lr"]),
              student_family="" if student == teacher and v["img.teacher_kind"] in IMAGE_TEACHERS else student,
              student_widths=parse_widths(v["img.student_widths"], "the student's stage widths"),
              teacher_widths=parse_widths(v["img.teacher_widths"], "the teacher's stage widths"))
    return im


def image_config(v: dict, base: SessionConfig) -> SessionConfig:
    """An image SessionConfig from the image form's values; settings the form lacks come from `base` (the image
    task's base, tasks.Task.base). Raises ConfigError."""
    d = base.to_dict()
    d["name"] = str(v.get("name", "")).strip()
    d["teacher"] = image_teacher(v, d["teacher"])
    d["student"]["source"] = ""
    d["data"].update(source=image_source(v), **split_settings(v, IMG))
    teacher, student = image_families({NEW + k: x for k, x in v.items()})
    d["image"] = image_settings(v, d["image"], teacher, student)
    d["ensemble"] = image_ensemble_settings(v, d["teacher"], d["ensemble"])
    d["variants"] = variants_config(v, IMAGE_VARIANTS, image_losses(teacher, student),
                                    teacher_sources(further_count(v, "img.ens_count")))
    d["objectives"].update(objectives_settings(
        v, IMG, "enter the teacher stages or layers for the explicit map, e.g. 0,2 (0-based)"))
    d["train"].update(training_settings(v, IMG))
    return SessionConfig.from_dict(d)


# ---- a task with its own split sizes (tagging) -----------------------------------------------------------------
def own_sizes(data) -> bool:
    """Whether a tagging session reads its split sizes from its task's section: data's are still the
    classification defaults (the engine's rule, splits.uses_task_sizes)."""
    return uses_task_sizes(data)


def own_max_length(data) -> bool:
    """Whether a tagging session reads its sub-token limit from its task's section: data.max_length is still the
    classification default."""
    return (data["max_length"] if isinstance(data, dict) else data.max_length) == DataConfig().max_length


def task_size_values(cfg: SessionConfig, prefix: str, section) -> dict:
    """The split sizes and the length limit the session will use: the task section's (`section`) while the data
    section's are the classification defaults, else the data section's."""
    sizes = section if own_sizes(cfg.data) else cfg.data
    length = section if own_max_length(cfg.data) else cfg.data
    return {**{prefix + k: int(getattr(sizes, k)) for k in SIZE_KEYS}, prefix + "max_length": int(length.max_length)}


def task_size_settings(v: dict, prefix: str, data: dict, section: dict) -> tuple[dict, dict]:
    """(data, the task's section) with the form's split sizes and length limit written where the session reads
    them (task_size_values' rule, from the base's data section)."""
    p = value_key(prefix)
    data, section = dict(data), dict(section)
    (section if own_sizes(data) else data).update({k: int(v[p + k]) for k in SIZE_KEYS})
    (section if own_max_length(data) else data)["max_length"] = int(v[p + "max_length"])
    return data, section


# ---- the tagging task ------------------------------------------------------------------------------------------
def tagging_values(cfg: SessionConfig) -> dict:
    """The tagging form's widget key -> starting value, from a tagging SessionConfig."""
    d = cfg.data
    src = d.source.strip()
    dk = "default" if src in (TAGGING_DATASET, DEFAULT_DATASET) else form_kind(src, "data")
    return {
        **teacher_values(cfg, TAG), **student_values(cfg, TAG),
        TAG + "data_kind": dk, TAG + "data_path": src if dk == "local" else "",
        TAG + "data_hub": src if dk == "hub" else "", TAG + "hub_split": d.hub_split,
        **training_values(cfg, TAG), **task_size_values(cfg, TAG, cfg.tagging),
        **objectives_values(cfg, TAG, TAGGING_LAYER_MAPS),
        **variants_values(cfg.variants, TAGGING_VARIANTS),
    }


def tagging_source(v: dict) -> str:
    """data.source of the tagging form (v: form values without 'new.'); ConfigError when it is missing."""
    if v.get("tag.data_kind", "default") == "default":
        return DEFAULT_DATASET      # left at the classification default, as the engine's own tagging config has it
    return file_or_hub_source(v, TAG, "enter the name of a hub dataset of tagged sentences (tokens and ner_tags "
                                      "columns)", "upload a CoNLL-style or JSONL file of tagged sentences first",
                              "enter the path of a CoNLL-style (.txt, .conll, .tsv) or JSONL file of tagged sentences")


def tagging_teacher(v: dict, base: dict) -> dict:
    return teacher_settings(v, base, TAG)


def one_teacher(v: dict, first: dict, base: dict) -> dict:
    """The ensemble section of a task that learns from one teacher: the defaults' without further teachers."""
    return {**base, "teachers": []}


def tagging_config(v: dict, base: SessionConfig) -> SessionConfig:
    """A tagging SessionConfig from the tagging form's values; settings the form lacks come from `base` (the
    tagging task's base, tasks.Task.base). Raises ConfigError."""
    d = base.to_dict()
    d["task"] = TAGGING_TASK
    d["name"] = str(v.get("name", "")).strip()
    d["teacher"] = tagging_teacher(v, d["teacher"])
    d["ensemble"] = one_teacher(v, d["teacher"], d["ensemble"])
    d["student"].update(student_settings(v, TAG))
    d["data"]["source"] = tagging_source(v)
    if v.get("tag.data_kind") == "hub":
        d["data"]["hub_split"] = str(v.get("tag.hub_split") or "train").strip()
    d["data"], d["tagging"] = task_size_settings(v, TAG, d["data"], d["tagging"])
    d["variants"] = variants_config(v, TAGGING_VARIANTS)
    d["objectives"].update(objectives_settings(
        v, TAG, "enter the teacher layers for the explicit layer map, e.g. 1,3,5 (0-based)"))
    d["train"].update(training_settings(v, TAG))
    return SessionConfig.from_dict(d)


# ---- a task with its own section and engine defaults (translation, language model) ------------------------------
# Each setting of the task's section (TranslationConfig, LanguageModelConfig) is a widget new.<prefix>set.<name>,
# drawn by the kind of its default, so a setting the engine adds later is shown and written back without a change
# here. While the student, split sizes and training settings are the classification defaults, the engine uses the
# task's own (modality/<task>/task.py DEFAULT_STUDENT, data.py DEFAULT_SIZES, the section's student_epochs /
# student_lr): the form shows those and leaves them implied.
SET = "set."                # <prefix>set.<name>: a setting of the task's section, drawn by its kind


def section_fields(section_cls) -> dict:
    """A task section's settings and their defaults, as the engine defines them now."""
    return {f.name: getattr(section_cls(), f.name) for f in dataclasses.fields(section_cls)}


def setting_value(value):
    """A section setting as a widget holds it: a list as comma-separated text, None as ''."""
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return "" if value is None else value


def setting_from(value, default, name: str, section: str = TRANSLATION_TASK):
    """A widget's value as the section setting whose default is `default`; ConfigError when it cannot be read."""
    if isinstance(default, bool):
        return bool(value)
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, (list, tuple)):
        parts = [x.strip() for x in str(value).replace("[", "").replace("]", "").split(",") if x.strip()]
        try:
            return [int(x) for x in parts] if all(isinstance(x, int) for x in default) else parts
        except ValueError:
            raise ConfigError(f"{section}.{name}: enter whole numbers separated by commas") from None
    if default is None:
        text = str(value).strip()
        if not text:
            return None
        try:
            return float(text) if "." in text or "e" in text.lower() else int(text)
        except ValueError:
            return text
    return str(value).strip()


def section_values(section: dict, prefix: str, skip: tuple[str, ...]) -> dict:
    """The section's settings as widget values under <prefix>set.<name>; those in `skip` are drawn otherwise."""
    return {prefix + SET + k: setting_value(x) for k, x in section.items() if k not in skip}


def section_settings(v: dict, base: dict, fields: dict, prefix: str, kind: str, skip: tuple[str, ...]) -> dict:
    """The section from the form (base: the defaults' one): every setting the form holds under <prefix>set.<name>
    but those in `skip`, read as the kind of its default."""
    out, p = dict(base), value_key(prefix) + SET
    for name, default in fields.items():
        if name not in skip and p + name in v:
            out[name] = setting_from(v[p + name], default, name, kind)
    return out


def _engine_default(kind: str, module: str, name: str):
    """A default the task's engine defines (modality/<kind>/<module>.py), or None while it cannot be loaded."""
    try:
        return getattr(importlib.import_module(f"distill_core.modality.{kind}.{module}"), name)
    except Exception:  # noqa: BLE001 - the engine absent or half-installed: the form still works
        return None


def task_sizes(kind: str) -> tuple[int, int, int] | None:
    """The split sizes a session of the task takes while data's are the classification defaults (the engine's
    DEFAULT_SIZES); None while the task's engine is absent."""
    sizes = _engine_default(kind, "data", "DEFAULT_SIZES")
    return None if sizes is None else tuple(int(n) for n in sizes)


STUDENT_SHAPE = ("layers", "heads", "hidden", "intermediate")


def task_student(kind: str) -> dict | None:
    """The student shape a session of the task builds while the student section is left at the classification
    defaults (the engine's DEFAULT_STUDENT); None while the task's engine does not say."""
    shape = _engine_default(kind, "task", "DEFAULT_STUDENT")
    get = shape.get if isinstance(shape, dict) else lambda k: getattr(shape, k, None)
    out = {k: get(k) for k in STUDENT_SHAPE}
    return out if all(isinstance(x, int) for x in out.values()) else None


def classification_student(student) -> bool:
    """Whether a student section's shape is the classification default's (the task engine's own then)."""
    default = dataclasses.asdict(SessionConfig().student)
    get = student.get if isinstance(student, dict) else lambda k: getattr(student, k)
    return all(get(k) == default[k] for k in STUDENT_SHAPE)


def is_bible(source: str) -> bool:
    """Whether data.source names the bundled bible (the classification default reads as it too)."""
    src = source.strip().lower()
    return src in (BIBLE, DEFAULT_DATASET) or src.startswith(BIBLE + ":")


def engine_task_values(cfg: SessionConfig, prefix: str, vs, maps: list[str], skip: tuple[str, ...]) -> dict:
    """What a translation or language-model form shows of a config: the teacher, the student (the engine's own
    shape while the section is left alone), where the data come from, the split sizes and length limit, the
    objectives, the training, the variants, and the task section's settings but those in `skip`."""
    kind, d = cfg.modality, cfg.data
    section = getattr(cfg, kind)
    src = d.source.strip()
    dk = "default" if is_bible(src) else form_kind(src, "data")
    shape = task_student(kind) if classification_student(cfg.student) else None
    v = {**teacher_values(cfg, prefix), **student_values(cfg, prefix),
         **{prefix + "student_" + k: n for k, n in (shape or {}).items()},
         prefix + "data_kind": dk, prefix + "data_path": src if dk == "local" else "",
         prefix + "data_hub": src if dk == "hub" else "", prefix + "hub_split": d.hub_split,
         **training_values(cfg, prefix), **objectives_values(cfg, prefix, maps),
         **variants_values(cfg.variants, vs)}
    fields = dataclasses.asdict(section)
    if {"train_size", "max_length"} & set(fields):     # a section with its own split sizes (as tagging's)
        v.update(task_size_values(cfg, prefix, section))
    else:
        v[prefix + "max_length"] = d.max_length
        if own_sizes(d) and (sizes := task_sizes(kind)):
            v.update({prefix + k: n for k, n in zip(SIZE_KEYS, sizes)})
    v.update(section_values(fields, prefix, (*skip, *SIZE_KEYS, "max_length")))
    return v


def file_or_hub_source(v: dict, prefix: str, hub: str, upload: str, path: str) -> str:
    """data.source of a hub dataset, an uploaded file or a file on this machine as the form names it (v: without
    'new.'); ConfigError saying what to enter (hub, upload, path) when it is missing."""
    p = value_key(prefix)
    kind = v.get(p + "data_kind")
    if kind == "hub":
        source = str(v.get(p + "data_hub") or "").strip()
        if not source:
            raise ConfigError(hub)
        return source
    source = str((v.get(p + "upload_path") if kind == "upload" else v.get(p + "data_path")) or "").strip()
    if not source:
        raise ConfigError(upload if kind == "upload" else path)
    return source


def engine_task_config(v: dict, base: SessionConfig, kind: str, prefix: str, vs, source: str,
                       section: Callable[[dict], dict]) -> SessionConfig:
    """A translation or language-model SessionConfig from its form's values; settings the form lacks come from
    `base` (the task's base, tasks.Task.base). source: data.source; section(base's section): the task's section
    from the form. The engine's own student shape and split sizes stay implied while the form shows them.
    Raises ConfigError."""
    p = value_key(prefix)
    d = base.to_dict()
    d["task"] = kind
    d["name"] = str(v.get("name", "")).strip()
    d["teacher"] = teacher_settings(v, d["teacher"], prefix)
    d["ensemble"] = one_teacher(v, d["teacher"], d["ensemble"])
    student = student_settings(v, prefix)
    if classification_student(d["student"]) and {k: student[k] for k in STUDENT_SHAPE} == task_student(kind):
        student = {k: x for k, x in student.items() if k not in STUDENT_SHAPE}     # the engine's own stays implied
    d["student"].update(student)
    d["data"]["source"] = source
    if v.get(p + "data_kind") == "hub":
        d["data"]["hub_split"] = str(v.get(p + "hub_split") or "train").strip()
    d[kind] = section(d[kind])
    if {"train_size", "max_length"} & set(d[kind]):
        d["data"], d[kind] = task_size_settings(v, prefix, d["data"], d[kind])
    else:
        sizes = split_settings(v, prefix)
        if tuple(sizes[k] for k in SIZE_KEYS) != task_sizes(kind):     # the engine's own sizes stay implied
            d["data"].update(sizes)
        d["data"]["max_length"] = int(v[p + "max_length"])
    d["variants"] = variants_config(v, vs)
    d["objectives"].update(objectives_settings(
        v, prefix, "enter the teacher layers for the explicit layer map, e.g. 1,3,5 (0-based)"))
    d["train"].update(training_settings(v, prefix))
    return SessionConfig.from_dict(d)


# ---- the translation task --------------------------------------------------------------------------------------
MT_SET = MT + SET           # new.mt.set.<name>: a setting of the translation section, drawn by its kind
PAIR_COLUMNS = ("source_column", "target_column")       # the translation section's columns of a file of pairs


def translation_fields() -> dict:
    """The translation section's settings and their defaults, as the engine defines them now."""
    return section_fields(TranslationConfig)


def bible_codes(source: str) -> tuple[str, str]:
    """(source version, target version) of "bible" or "bible:<source>-<target>"; the default pair when unreadable
    (the engine says why at Start)."""
    a, sep, b = source.strip().lower().partition(":")[2].partition("-")
    return (a, b) if sep and a and b else BIBLE_PAIR


def translation_sizes() -> tuple[int, int, int] | None:
    """The split sizes a translation session takes while data's are the classification defaults (every pair
    validation and test leave trains); None while the translation engine is absent."""
    return task_sizes(TRANSLATION_TASK)


def translation_student() -> dict | None:
    """The student shape a translation session builds while the student section is left at the classification
    defaults; None while the translation engine does not say."""
    return task_student(TRANSLATION_TASK)


def translation_values(cfg: SessionConfig) -> dict:
    """The translation form's widget key -> starting value, from a translation SessionConfig."""
    tr = dataclasses.asdict(cfg.translation)
    v = engine_task_values(cfg, MT, TRANSLATION_VARIANTS, TRANSLATION_LAYER_MAPS, PAIR_COLUMNS)
    a, b = bible_codes(cfg.data.source) if v[MT + "data_kind"] == "default" else BIBLE_PAIR
    v.update({MT + "bible_source": a, MT + "bible_target": b,
              MT + "source_column": str(tr.get("source_column", "source")),
              MT + "target_column": str(tr.get("target_column", "target"))})
    return v


def translation_source(v: dict) -> str:
    """data.source of the translation form (v: without 'new.'); ConfigError when it is missing."""
    if v.get("mt.data_kind", "default") == "default":
        a, b = str(v.get("mt.bible_source") or BIBLE_PAIR[0]), str(v.get("mt.bible_target") or BIBLE_PAIR[1])
        if a == b:
            raise ConfigError("the bible pair translates a version into itself: pick two different versions")
        # the default pair: data.source left at the classification default, as the engine's own config has it
        return DEFAULT_DATASET if (a, b) == BIBLE_PAIR else f"{BIBLE}:{a}-{b}"
    return file_or_hub_source(v, MT, "enter the name of a hub dataset of sentence pairs",
                              "upload a CSV, TSV or JSONL file of sentence pairs first",
                              "enter the path of a CSV, TSV or JSONL file of sentence pairs")


def translation_teacher(v: dict, base: dict) -> dict:
    return teacher_settings(v, base, MT)


def translation_section(v: dict, base: dict, file: bool) -> dict:
    """The translation section from the form (base: the defaults' one): its settings as the form shows them, and
    the columns of a file of pairs (file: the pickers under its preview, else the typed names)."""
    fields = translation_fields()
    out = section_settings(v, base, fields, MT, TRANSLATION_TASK, PAIR_COLUMNS)
    for col in PAIR_COLUMNS:
        if col in fields:
            picked = v.get(f"mt.file_{col}") if file else None
            out[col] = str(picked or v.get(f"mt.{col}") or fields[col]).strip()
    return out


def translation_config(v: dict, base: SessionConfig) -> SessionConfig:
    """A translation SessionConfig from the translation form's values; settings the form lacks come from `base`
    (the translation task's base, tasks.Task.base). Raises ConfigError."""
    file = v.get("mt.data_kind") in ("upload", "local")
    return engine_task_config(v, base, TRANSLATION_TASK, MT, TRANSLATION_VARIANTS, translation_source(v),
                              lambda section: translation_section(v, section, file))


# ---- the language-model task -----------------------------------------------------------------------------------
LM_SET = LM + SET           # new.lm.set.<name>: a setting of the language_model section, drawn by its kind
TEXT_COLUMN = ("text_column",)      # the language_model section's column of a table of texts or a hub dataset


def language_model_fields() -> dict:
    """The language_model section's settings and their defaults, as the engine defines them now."""
    return section_fields(LanguageModelConfig)


def language_model_sizes() -> tuple[int, int, int] | None:
    """The split sizes (in passages) a language-model session takes while data's are the classification defaults;
    None while the language-model engine is absent."""
    return task_sizes(LANGUAGE_MODEL_TASK)


def language_model_student() -> dict | None:
    """The student shape a language-model session builds while the student section is left at the classification
    defaults; None while the language-model engine does not say."""
    return task_student(LANGUAGE_MODEL_TASK)


def bible_version(source: str) -> str:
    """The version code of "bible" or "bible:<code>"; the World English Bible's when there is none (the engine says
    why at Start when the code cannot be read)."""
    code = source.strip().lower().partition(":")[2].strip()
    return code if code and "-" not in code else LANGUAGE_MODEL_BIBLE


def is_table(source: str) -> bool:
    """Whether a file is read as a table with a column of texts (CSV, TSV, JSONL), not as plain text."""
    return Path(str(source)).suffix.lower().lstrip(".") in FILE_TYPES


def language_model_values(cfg: SessionConfig) -> dict:
    """The language-model form's widget key -> starting value, from a language-model SessionConfig."""
    lm = dataclasses.asdict(cfg.language_model)
    v = engine_task_values(cfg, LM, LANGUAGE_MODEL_VARIANTS, LANGUAGE_MODEL_LAYER_MAPS, TEXT_COLUMN)
    v.update({LM + "bible_version": bible_version(cfg.data.source) if v[LM + "data_kind"] == "default" else
              LANGUAGE_MODEL_BIBLE, LM + "text_column": str(lm.get("text_column", "text"))})
    return v


def language_model_source(v: dict) -> str:
    """data.source of the language-model form (v: without 'new.'); ConfigError when it is missing."""
    if v.get("lm.data_kind", "default") == "default":
        code = str(v.get("lm.bible_version") or LANGUAGE_MODEL_BIBLE)
        # the World English Bible: data.source left at the classification default, as the engine's own config has it
        return DEFAULT_DATASET if code == LANGUAGE_MODEL_BIBLE else f"{BIBLE}:{code}"
    return file_or_hub_source(v, LM, "enter the name of a hub dataset of texts",
                              "upload a .txt, CSV, TSV or JSONL file of texts first",
                              "enter the path of a .txt file, or of a CSV, TSV or JSONL file with a column of texts")


def language_model_teacher(v: dict, base: dict) -> dict:
    return teacher_settings(v, base, LM)


def language_model_section(v: dict, base: dict, table: bool) -> dict:
    """The language_model section from the form (base: the defaults' one): its settings as the form shows them,
    and the column of texts (table: the picker under a table's preview, else the typed name)."""
    fields = language_model_fields()
    out = section_settings(v, base, fields, LM, LANGUAGE_MODEL_TASK, TEXT_COLUMN)
    if "text_column" in fields:
        picked = v.get("lm.file_text_column") if table else None
        out["text_column"] = str(picked or v.get("lm.text_column") or fields["text_column"]).strip()
    return out


def language_model_config(v: dict, base: SessionConfig) -> SessionConfig:
    """A language-model SessionConfig from the language-model form's values; settings the form lacks come from
    `base` (the language-model task's base, tasks.Task.base). Raises ConfigError."""
    source = language_model_source(v)
    table = v.get("lm.data_kind") in ("upload", "local") and is_table(source)
    return engine_task_config(v, base, LANGUAGE_MODEL_TASK, LM, LANGUAGE_MODEL_VARIANTS, source,
                              lambda section: language_model_section(v, section, table))
