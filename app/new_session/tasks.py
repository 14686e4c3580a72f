"""The kinds of task the form builds, each with its widgets and its value converters: the one place the form and
its page tell a text session from a tagging, translation, language-model or image session (TASKS, keyed by
SessionConfig.modality).

Every task's widgets keep their values side by side (keys new.*, new.tag.*, new.mt.*, new.lm.*, new.img.*), so
switching back and forth loses nothing; `initial_values` gives every key of every task its starting value and
`build_config` builds the config of the task the form shows (values["modality"])."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import streamlit as st

from app.common import get_store
from distill_core import SessionConfig
from distill_core.config import DEFAULT_DATASET
from distill_core.errors import ConfigError
from distill_core.hub import require_online
from distill_core.models import pick_device
from distill_core.preflight import CHECKS as ENGINE_CHECKS, preflight as engine_preflight
from distill_core.sources import source_kind

from . import image, language_model, tagging, text, translation, values
from .keys import (FAMILIES, FILE_LABEL_COLUMN, FILE_TEXT_COLUMN, IMAGE_TASK, IMAGE_UPLOAD_PATH, IMAGE_VARIANTS,
                   LANGUAGE_MODEL_TASK, LANGUAGE_MODEL_VARIANTS, LM_FILE_TEXT_COLUMN, LM_UPLOAD_PATH, MODALITY,
                   MT_FILE_SOURCE_COLUMN, MT_FILE_TARGET_COLUMN, MT_UPLOAD_PATH, SAVED, TAG_UPLOAD_PATH, TAGGING_TASK,
                   TAGGING_VARIANTS, TEXT_TASK, TEXT_VARIANTS, TRANSLATION_TASK, TRANSLATION_VARIANTS, UPLOAD_PATH,
                   VARIANT_KEY_RE, VARIANT_SETS, VariantSet, value_key)
from .labels import TAGGING_DATASET
from .uploads import pair_file_info, passage_file_info, tagged_file_info
from .variants import further_count


@dataclass(frozen=True)
class Task:
    """One kind of session the form builds."""
    kind: str                       # SessionConfig.modality
    label: str                      # its name on the task picker
    intro: str                      # what it does, under the picker
    probes: str                     # what a run's probe set holds, in words
    variants: VariantSet            # its variant blocks (their prefix: its widget keys')
    fallback: Callable[[SessionConfig], SessionConfig]      # its defaults when the form's are another task's
    values: Callable[[SessionConfig], dict]                 # config -> widget values
    build: Callable[[dict, SessionConfig], SessionConfig]   # widget values (without 'new.') + base -> config
    teacher: Callable[[dict, dict], dict]                   # its first teacher's section from the values
    ensemble: Callable[[dict, dict, dict], dict]            # its ensemble section from the values
    draw: Callable[[Path, SessionConfig, SessionConfig, Callable[[], str | None]], None]    # its sections
    check: Callable[[SessionConfig], None] | None = None    # Start's checks where the engine's preflight has none

    def base(self, defaults: SessionConfig) -> SessionConfig:
        """What the task starts from: the form's defaults when they are this task's, else its own."""
        return defaults if defaults.modality == self.kind else self.fallback(defaults)

    def ensemble_problem(self, state, defaults: SessionConfig) -> str | None:
        """What the engine says against the form's teachers (a teacher listed twice, a part that cannot be read,
        ...), or None; None too while the first teacher is not given yet (Start says so)."""
        v = collect(state)
        if not further_count(v, value_key(self.variants.ens_count)):
            return None
        d = self.base(defaults).to_dict()
        try:
            first = self.teacher(v, d["teacher"])
        except (ConfigError, KeyError):
            return None
        try:
            SessionConfig.from_dict({"teacher": first, "ensemble": self.ensemble(v, first, d["ensemble"])})
        except ConfigError as e:
            return str(e)
        return None


def _device_and_teacher(cfg: SessionConfig) -> None:
    """The device, and a teacher on the hub (online) or in a model folder here."""
    pick_device(cfg.train.device)
    t = cfg.teacher.source
    if source_kind(t, "model") == "hub":
        require_online(f"teacher {t!r}")
    elif source_kind(t, "model") == "local" and not (Path(t).expanduser() / "config.json").is_file():
        raise ConfigError(f"{t} is not a model folder (no config.json in it)")


def _source_check(cfg: SessionConfig, builtin: bool, read_file: Callable[[str], object]) -> None:
    """Before Start, the device, the teacher and the data: nothing to read for built-in data (builtin), a hub
    dataset needs the network, and a file is read whole as the session reads it (read_file(source))."""
    _device_and_teacher(cfg)
    src = cfg.data.source.strip()
    if builtin:
        return
    if source_kind(src, "data") == "hub":
        require_online(f"dataset {src!r}")
    else:
        read_file(src)


def _tagging_check(cfg: SessionConfig) -> None:
    """Before Start, a tagging session's device, teacher and data: a file is read whole as the session reads it."""
    _source_check(cfg, cfg.data.source.strip() in (TAGGING_DATASET, DEFAULT_DATASET),
                  lambda src: tagged_file_info(src, cfg.data.max_file_mb))


def _translation_check(cfg: SessionConfig) -> None:
    """Before Start, a translation session's device, teacher and pairs: a file is read whole as the session reads
    it, with the section's two columns."""
    tr = values.translation_fields() | dataclasses.asdict(cfg.translation)
    _source_check(cfg, values.is_bible(cfg.data.source),
                  lambda src: pair_file_info(src, tr.get("source_column", "source"), tr.get("target_column", "target"),
                                             cfg.data.max_file_mb))


def _language_model_check(cfg: SessionConfig) -> None:
    """Before Start, a language-model session's device, teacher and passages: a file is read whole as the session
    reads it, with the section's text column."""
    lm = values.language_model_fields() | dataclasses.asdict(cfg.language_model)
    _source_check(cfg, values.is_bible(cfg.data.source),
                  lambda src: passage_file_info(src, lm.get("text_column", "text"), cfg.data.max_file_mb))


TASKS = {
    TEXT_TASK: Task(
        TEXT_TASK, "Text classification",
        "Distil a teacher transformer into smaller students. A session trains several student variants side by side, "
        "each with its own objectives, evaluates them every epoch and records their attention on a few fixed "
        "validation sentences, so you can see which objectives make a student look where the teacher looks.",
        "sentences", TEXT_VARIANTS, values.text_fallback, values.text_values, values.text_config, values.text_teacher,
        values.text_ensemble_settings, text.draw),
    TAGGING_TASK: Task(
        TAGGING_TASK, "Token tagging",
        "Distil a token tagger: the teacher and the students give every word a tag (named entities in BIO: B-PER, "
        "I-PER, O, ...), read at the word's first sub-token, and are scored by entity F1. Variants train side by "
        "side and their attention is recorded on a few fixed validation sentences.",
        "sentences", TAGGING_VARIANTS, values.tagging_fallback, values.tagging_values, values.tagging_config,
        values.tagging_teacher, values.one_teacher, tagging.draw, _tagging_check),
    TRANSLATION_TASK: Task(
        TRANSLATION_TASK, "Translation",
        "Distil an encoder-decoder translator: the students learn to translate from the teacher (its next-token "
        "outputs, its translations, its attention). Each model has three kinds of attention: the encoder's over the "
        "source, the decoder's over the translation so far, and the cross-attention that shows which source words "
        "each target word reads, recorded on a few fixed validation pairs.",
        "sentence pairs", TRANSLATION_VARIANTS, values.translation_fallback, values.translation_values,
        values.translation_config, values.translation_teacher, values.one_teacher, translation.draw,
        _translation_check),
    LANGUAGE_MODEL_TASK: Task(
        LANGUAGE_MODEL_TASK, "Language model",
        "Distil a causal (GPT-style) language model: the students learn to predict the next token from the "
        "teacher, through its next-token distributions (the forward or the reverse KL, GKD's generalized JSD), "
        "its own continuations, their own samples scored by the teacher (on-policy), and its causal attention, "
        "recorded on a few fixed validation passages.",
        "passages", LANGUAGE_MODEL_VARIANTS, values.language_model_fallback, values.language_model_values,
        values.language_model_config, values.language_model_teacher, values.one_teacher, language_model.draw,
        _language_model_check),
    IMAGE_TASK: Task(
        IMAGE_TASK, "Images",
        "Distil an image classifier (a CNN or a ViT) into smaller students. A session trains several student "
        "variants side by side, each with its own objectives, evaluates them every epoch and records their "
        "attention maps on a few fixed validation images, so you can see which objectives make a student look "
        "where the teacher looks.",
        "images", IMAGE_VARIANTS, values.image_fallback, values.image_values, values.image_config, values.image_teacher,
        values.image_ensemble_settings, image.draw),
}
DEFAULT_TASK = TEXT_TASK
LABELS = {kind: task.label for kind, task in TASKS.items()}


def task_of(kind) -> Task:
    """The task of a modality (the text task for anything else)."""
    return TASKS.get(kind, TASKS[DEFAULT_TASK])


# ---- widget values -------------------------------------------------------------------------------------------
def initial_values(cfg: SessionConfig) -> dict:
    """Widget key -> starting value, from a SessionConfig (the other task's keys from that task's defaults)."""
    v = {MODALITY: cfg.modality, **values.shared_values(cfg)}
    for task in TASKS.values():
        v.update(task.values(task.base(cfg)))
    return v


def build_config(v: dict, base: SessionConfig) -> SessionConfig:
    """A SessionConfig from the form's values (without 'new.'), of the task values["modality"] names; settings the
    form lacks come from `base`. Raises ConfigError."""
    task = task_of(v.get(value_key(MODALITY)))
    return task.build(v, task.base(base))


def form_keys(state, defaults: SessionConfig) -> list[str]:
    """Every key the form keeps: the fixed ones and those of the variant blocks now shown (both tasks')."""
    fixed = [k for k in initial_values(defaults) if not VARIANT_KEY_RE.match(k)]
    return fixed + [k for vs in VARIANT_SETS for i in state.get(vs.ids, []) for k in vs.keys(i)]


def collect(state) -> dict:
    """The form's values from session state (keys without the 'new.' prefix)."""
    keys = form_keys(state, SessionConfig()) + [FILE_TEXT_COLUMN, FILE_LABEL_COLUMN, UPLOAD_PATH, IMAGE_UPLOAD_PATH,
                                                TAG_UPLOAD_PATH, MT_UPLOAD_PATH, MT_FILE_SOURCE_COLUMN,
                                                MT_FILE_TARGET_COLUMN, LM_UPLOAD_PATH, LM_FILE_TEXT_COLUMN]
    return {value_key(k): state[k] for k in keys if k in state}


def init_state(defaults: SessionConfig) -> None:
    """Set every form key once: from what the user typed before visiting another page, else the defaults."""
    saved = st.session_state.get(SAVED, {})
    for key, value in {**initial_values(defaults), **saved}.items():
        if key not in st.session_state:
            st.session_state[key] = value
    # A widget that a run does not draw (the other task's) loses its value at the end of that run, and its key then
    # reads as the value first set above: setting every key to its current value keeps the user's latest one.
    for key in form_keys(st.session_state, defaults):
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]
    if FAMILIES not in st.session_state:
        st.session_state[FAMILIES] = values.image_families(st.session_state)


def save_state(defaults: SessionConfig) -> None:
    """Remember the widget values (Streamlit forgets widget state on pages that are not shown)."""
    st.session_state[SAVED] = {k: st.session_state[k] for k in form_keys(st.session_state, defaults)
                               if k in st.session_state}


# ---- the page ------------------------------------------------------------------------------------------------
def draw(kind: str, runs_root: Path, defaults: SessionConfig) -> None:
    """The sections of the task the form shows."""
    task = task_of(kind)
    task.draw(runs_root, defaults, task.base(defaults), lambda: task.ensemble_problem(st.session_state, defaults))


def preflight(cfg: SessionConfig) -> None:
    """The engine's preflight (distill_core.preflight), with this app's runs folder for `layer_map: suggested`; for
    a kind of task it has no checks for, the task's own."""
    task = task_of(cfg.modality)
    if task.check is None:
        engine_preflight(cfg, get_store())
        return
    try:
        if cfg.modality not in ENGINE_CHECKS:
            raise ImportError(cfg.modality)
        engine_preflight(cfg, get_store())
    except ImportError:                     # the task's engine cannot be loaded: the form's own checks
        task.check(cfg)
