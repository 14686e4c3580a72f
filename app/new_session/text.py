"""The text task's widgets (keys new.*): the teacher transformer, the student, the dataset and its generated data,
the objectives, and how they are laid out on the page."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import streamlit as st

from distill_core import SessionConfig, mapping
from distill_core.config import (AUGMENT_OPS, DEFAULT_TEACHER, HEAD_RULES, LAYER_MAPS, SMALL_TRAIN, STUDENT_INITS,
                                 default_variants)
from distill_core.errors import DataError, DistillError
from distill_core.preflight import model_shape
from distill_core.sources import file_label

from .keys import FILE_LABEL_COLUMN, FILE_TEXT_COLUMN, NEW, TEXT_VARIANTS, UPLOAD_PATH, UPLOAD_SIG
from .labels import DATA_KINDS, FILE_TYPES, OP_LABELS, PART_HELP, TEACHER_KINDS, TEXT_LAYER_MAPS, TRANSFER_KINDS
from .sections import (EnsembleForm, ensemble_section, split_inputs, split_sizes_text, temperature_input,
                       training_section, variants_section)
from .uploads import counts_text, data_check, guess_columns, preview_table, take_upload
from .variants import variant_rows


@st.cache_data(show_spinner=False, max_entries=16)
def teacher_shape(source: str) -> tuple[int, int] | None:
    """(layers, heads) from a local teacher's config.json, or None when it is on the hub or unreadable."""
    return model_shape(source)


FINETUNE_HELP = ("auto: only when its classifier head is new for this dataset (true of the bundled sentence encoder). "
                 "It learns from every labelled example outside validation and test, keeps its best epoch by "
                 "validation accuracy, and is cached and reused: on the bundled data the first session spends about "
                 "9 minutes on it on a 2-core CPU, later sessions none.")


def teacher_section(prefix: str = NEW, finetune_help: str = FINETUNE_HELP) -> None:
    """The teacher transformer: bundled, a model folder or a hub id, and its fine-tuning (keys <prefix>teacher_*)."""
    st.subheader("Teacher")
    kind = st.radio("Teacher model", list(TEACHER_KINDS), format_func=TEACHER_KINDS.get, key=prefix + "teacher_kind")
    if kind == "local":
        st.text_input("Model folder", key=prefix + "teacher_path",
                      placeholder="/path/to/model (config.json + weights)")
    elif kind == "hub":
        st.text_input("Hub id", key=prefix + "teacher_hub", placeholder="e.g. textattack/bert-base-uncased-SST-2"
                      if prefix == NEW else "e.g. dslim/bert-base-NER")
    c1, c2 = st.columns(2)
    c1.selectbox("Fine-tune the teacher first", ["auto", "always", "never"], key=prefix + "teacher_finetune",
                 help=finetune_help)
    c2.number_input("Fine-tuning epochs (at most)", min_value=0, step=1, key=prefix + "teacher_finetune_epochs",
                    help="The epoch with the best validation score is kept; small data gets more epochs so the "
                         "teacher takes at least teacher.finetune_min_steps steps (300).")
    shape = teacher_shape(source) if (source := teacher_source(prefix)) else None
    if shape:
        st.caption(f"This teacher has {shape[0]} layers × {shape[1]} attention heads.")


def teacher_source(prefix: str = NEW) -> str:
    """The teacher the form names when its shape can be read here: the bundled one or a model folder ('' else)."""
    return {"default": DEFAULT_TEACHER, "local": str(st.session_state.get(prefix + "teacher_path", "")).strip()}.get(
        st.session_state.get(prefix + "teacher_kind"), "")


def student_section(prefix: str = NEW) -> None:
    """The student transformer's shape and initialisation (keys <prefix>student_*)."""
    st.subheader("Student")
    c1, c2 = st.columns(2)
    c1.number_input("Layers", min_value=1, step=1, key=prefix + "student_layers")
    c2.number_input("Attention heads", min_value=1, step=1, key=prefix + "student_heads")
    c1.number_input("Hidden size", min_value=1, step=16, key=prefix + "student_hidden",
                    help="Must be divisible by the number of heads (each head gets hidden / heads dimensions).")
    c2.number_input("Intermediate (feed-forward) size", min_value=1, step=64, key=prefix + "student_intermediate")
    st.radio("Initialisation", list(STUDENT_INITS), key=prefix + "student_init", horizontal=True,
             help=f"auto: random when there are {SMALL_TRAIN:,} training examples or more; with fewer, the student "
                  "starts from the teacher's knowledge (from_teacher when the widths allow, else "
                  "teacher_embeddings). from_teacher copies the teacher's embeddings and its mapped layers (needs "
                  "the same widths); teacher_embeddings starts from the teacher's token embeddings projected onto "
                  "the student's width; random starts from scratch. The run's notes say what auto chose.")
    heads, hidden = st.session_state[prefix + "student_heads"], st.session_state[prefix + "student_hidden"]
    if heads and hidden % heads == 0:
        st.caption(f"Each head works in {hidden // heads} dimensions.")


# ---- several teachers: what makes a further text teacher differ from the first --------------------------------
def _first_part() -> None:
    st.text_input("The first teacher's part of the data", key="new.teacher_part", placeholder="all", help=PART_HELP)


def _further_teacher(q: str) -> None:
    c = st.columns([1, 1, 3])
    c[0].number_input("Seed", min_value=0, step=1, key=q + "seed",
                      help="Its own seed: the order of its fine-tuning examples and its new head.")
    c[1].text_input("Part of the data", key=q + "part", placeholder="all", help=PART_HELP)
    c[2].text_input("Model folder (blank: the first teacher's model)", key=q + "source",
                    placeholder="/path/to/model (config.json + weights)")


def default_text_variants(state) -> bool:
    """Whether the text form's variants are the engine's defaults (baseline and distilled, no strategies)."""
    return variant_rows(state, TEXT_VARIANTS) == [(v.name, v.losses, {}) for v in default_variants()]


def _ensemble_note() -> str | None:
    if default_text_variants(st.session_state):
        return ("The variants are the defaults, so the session also trains **distilled_ensemble**: the "
                "distilled recipe learning from the ensemble.")
    return None


ENSEMBLE = EnsembleForm(TEXT_VARIANTS, "the same model with another seed or on another part of the data, or another "
                                       "model that splits text into the same tokens. ",
                        _further_teacher, lead=_first_part, note=_ensemble_note)


# ---- the data ------------------------------------------------------------------------------------------------
def data_section(runs_root: Path, base: SessionConfig) -> None:
    st.subheader("Dataset")
    kind = st.radio("Data", list(DATA_KINDS), format_func=DATA_KINDS.get, key="new.data_kind", horizontal=True)
    path = None
    if kind == "default":
        st.caption("Short movie-review snippets labelled fresh or rotten, shipped with the app: works offline.")
    elif kind == "upload":
        max_mb = base.data.max_file_mb
        up = st.file_uploader(f"CSV or JSONL file, at most {max_mb:,g} MB. It is stored beside the runs and only "
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
        split_inputs(c, NEW)
        c[3].number_input("Max tokens per text", min_value=8, step=8, key="new.max_length")
        st.caption(split_sizes_text(st.session_state, NEW) + " Splits are stratified by label and seeded, so two runs "
                   "with the same seed see the same examples.")
    transfer_section()


def transfer_section() -> None:
    """Where generated data comes from: used by the variants that tick "Also learn from generated data"."""
    with st.expander("Generated data"):
        st.caption("Extra texts for the variants that tick *Also learn from generated data* in their Strategies. "
                   "The teacher labels these texts with its soft outputs; the students never see their labels, but for "
                   "a variant that ticks the labels-only reference. "
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
        st.checkbox("Hold the unused rows out from the teacher too", key="new.transfer_held_out_from_teacher",
                    disabled=kind != "unused",
                    help="The unused rows are divided in two: the teacher learns from one half with its labels, and "
                         "the texts come from the other, whose labels no model sees. Off: the teacher learned these "
                         "texts' labels, so a student learning its outputs on them learns its memory of the labels; "
                         "compare it with a variant that learns the same texts with their labels.")
        st.multiselect("Operations on the copies", AUGMENT_OPS, format_func=OP_LABELS.get, key="new.transfer_ops")
        st.caption("Augmented copies change about that fraction of each training text's words (TinyBERT's data "
                   "augmentation); the teacher's answers on them show the students how it reacts to small changes.")


def file_columns(path: str, base: SessionConfig) -> None:
    """Preview of a data file, pickers for its text and label columns, its examples per class, and the problems
    a session would have with the whole file (errors: Start refuses; warnings: worth knowing)."""
    try:
        df = preview_table(path, base.data.max_file_mb)
    except DataError as e:
        st.error(str(e), icon=":material/block:")           # what Start would say: the file is read as a session reads it
        return
    cols = list(df.columns)
    text_at, label_at = guess_columns(df, base.data.text_column, base.data.label_column)
    c1, c2 = st.columns(2)
    text = c1.selectbox("Text column", cols, index=text_at, key=FILE_TEXT_COLUMN)
    label = c2.selectbox("Label column", cols, index=label_at, key=FILE_LABEL_COLUMN)
    st.dataframe(df.head(5), hide_index=True, key="new.preview")
    sizes = tuple(int(st.session_state[f"new.{k}_size"]) for k in ("train", "val", "test"))
    check = data_check(path, text, label, sizes, base.data.max_file_mb, base.data.split_seed)
    if check.class_counts:
        st.caption(counts_text(check.class_counts, f"{check.rows:,} rows with a text in {file_label(path)}"))
    for p in check.errors:
        st.error(p.message, icon=":material/block:")
    for p in check.warnings:
        st.warning(p.message)


# ---- objectives ----------------------------------------------------------------------------------------------
LAYER_MAP_HELP = ("Which teacher layer each student layer imitates and is compared with. suggested: the layers where "
                  "the baseline student of the newest finished run like this one resembled the teacher most "
                  "(Divergence page › Suggested layer mapping).")


def objectives_section(teacher_source: str, prefix: str = NEW, maps: list[str] = TEXT_LAYER_MAPS,
                       what: str = "classes") -> None:
    """The temperature, head rule and layer map of a transformer teacher and student (keys <prefix>*)."""
    st.subheader("Objectives")
    st.caption("How teacher and students are compared, shared by every variant: the temperature of logit_kd, and "
               "which teacher layers and heads the attention and hidden-state losses (and the divergence charts) "
               "pair with each student layer and head.")
    c1, c2, c3 = st.columns(3)
    temperature_input(c1, prefix, "Softens both output distributions in logit_kd; higher T shows more of the "
                                  f"teacher's ranking of the wrong {what}.")
    c2.selectbox("Head rule", HEAD_RULES, key=prefix + "head_rule",
                 help="How teacher and student heads are paired: direct (same count), group (average teacher "
                      "heads in groups), mean (average all heads); auto picks the first that fits.")
    kind = c3.radio("Layer map", maps, key=prefix + "layer_map_kind", horizontal=True,
                    help=LAYER_MAP_HELP if "suggested" in maps else LAYER_MAP_HELP.partition(" suggested:")[0])
    if kind == "explicit":
        st.text_input("Teacher layers, one per student layer (0-based)", key=prefix + "layer_list",
                      placeholder="e.g. 1,3,5")
    _mapping_caption(teacher_source, kind, prefix)


def _mapping_caption(teacher_source: str, kind: str, prefix: str = NEW) -> None:
    shape = teacher_shape(teacher_source) if teacher_source else None
    if not shape:
        return
    rule = kind if kind in LAYER_MAPS else st.session_state.get(prefix + "layer_list", "")
    try:
        rule = SessionConfig.from_dict({"objectives": {"layer_map": rule}}).objectives.layer_map if rule else None
        if rule is None:
            return
        if rule == "suggested":
            st.caption("The layers come from the newest finished run with this teacher, data and student shape; "
                       "Start says so if there is none yet.")
            return
        pairs = mapping.layer_map(rule, shape[0], int(st.session_state[prefix + "student_layers"]))
        heads = mapping.resolve_head_rule(st.session_state[prefix + "head_rule"], shape[1],
                                          int(st.session_state[prefix + "student_heads"]))
    except DistillError as e:
        st.warning(str(e))
        return
    st.caption("Student layer ← teacher layer: " + ", ".join(f"{s} ← {t}" for s, t in enumerate(pairs))
               + f" · heads compared by rule **{heads}**")


# ---- the page ------------------------------------------------------------------------------------------------
def draw(runs_root: Path, defaults: SessionConfig, base: SessionConfig,
         ensemble_problem: Callable[[], str | None]) -> None:
    """The text task's sections, in the page's order (defaults: the form's, whichever their task, whose data
    settings the dataset section reads; base: the text task's)."""
    left, right = st.columns(2, gap="large")
    with left, st.container(border=True):
        teacher_section()
    with right, st.container(border=True):
        student_section()
    ensemble_section(ENSEMBLE, ensemble_problem)
    with st.container(border=True):
        data_section(runs_root, defaults)
    with st.container(border=True):
        variants_section(TEXT_VARIANTS)
    with st.container(border=True):
        objectives_section(teacher_source(NEW))
    with st.container(border=True):
        training_section(NEW)
