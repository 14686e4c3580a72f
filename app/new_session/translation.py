"""The translation task's widgets (keys new.mt.*, variant blocks new.mv<i>.*): the encoder-decoder teacher (built
and trained here, a Marian model folder, or a hub id), the student's shape, the sentence pairs (the bundled bible
verses, a CSV/TSV/JSONL file of pairs with what the engine finds in it, a hub dataset), the translation section's
settings, the objectives, and how they are laid out on the page. One teacher: several teachers, adversarial steps and
generated data are built for classification and are not offered."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import streamlit as st

from distill_core import SessionConfig
from distill_core.config import HEAD_RULES
from distill_core.errors import DataError
from distill_core.sources import file_label

from .keys import MT, MT_FILE_SOURCE_COLUMN, MT_FILE_TARGET_COLUMN, TRANSLATION_VARIANTS
from .labels import (BIBLE_PAIR, BIBLE_VERSIONS, TRANSLATION_DATA_KINDS, TRANSLATION_FILE_TYPES,
                     TRANSLATION_LAYER_MAPS, TRANSLATION_TEACHER_KINDS)
from .sections import (SectionForm, TrainedTeacherForm, comparison_inputs, data_file_input, data_kind_input,
                       engine_file_lines, settings_inputs as section_inputs, sizes_inputs, task_sections, task_sizes_text,
                       trained_teacher_section, training_section, variants_section)
from .text import student_section
from .uploads import guess_pair_columns, pair_file_info, preview_table
from .values import PAIR_COLUMNS, translation_fields, translation_sizes

# the kinds of attention that can pair their own layers and heads (translation.layer_map_<kind>, head_rule_<kind>)
KIND_NAMES = {"encoder": "Encoder", "decoder": "Decoder", "cross": "Cross-attention"}
KINDS = tuple(KIND_NAMES)
# how the form names and explains the translation section's settings; one it does not know is drawn by its kind
SETTING_LABELS = {
    "max_words": "Longest verse (words)", "tokenizer": "Subword tokenizer", "vocab_size": "Vocabulary (subwords)",
    "teacher_layers": "Layers (each side)", "teacher_heads": "Attention heads",
    "teacher_hidden": "Hidden size", "teacher_intermediate": "Feed-forward size", "teacher_dropout": "Dropout",
    "teacher_epochs": "Training epochs (at most)", "teacher_lr": "Learning rate", "teacher_batch_size": "Batch size",
    "beam": "Beam size (test translations)", "poor_bleu": "Warn when the teacher's BLEU is under",
    **{f"layer_map_{k}": f"{n} layer map" for k, n in KIND_NAMES.items()},
    **{f"head_rule_{k}": f"{n} head rule" for k, n in KIND_NAMES.items()}}
SETTING_HELP = {
    "max_words": "The bible pairs keep the verses with at most this many words on both sides: short verses train "
                 "faster and keep the attention maps readable.",
    "tokenizer": "How the subword vocabulary shared by both languages is learnt on the training pairs; the students "
                 "share it.",
    "vocab_size": "Subwords shared by both languages, special tokens included.",
    "teacher_hidden": "Divisible by the heads.",
    "teacher_epochs": "The epoch with the best validation chrF is kept.",
    "beam": "1: greedy translations; more: beam search on the test split (validation stays greedy: it runs every "
            "epoch).",
    "poor_bleu": "A teacher under this BLEU on the test pairs earns a warning: the teacher, not the students, is the "
                 "problem then.",
    **{f"layer_map_{k}": "Empty: the layer map above. uniform, last, or teacher layers like 1,2 (0-based)."
       for k in KIND_NAMES}}
SETTING_CHOICES = {"tokenizer": ("bpe", "unigram"), **{f"head_rule_{k}": ("", *HEAD_RULES) for k in KINDS}}
SETTING_FORMATS = {f"head_rule_{k}": (lambda r: r or "the head rule above") for k in KINDS}
SETTING_FLOATS = {"teacher_lr": "%.1e", "teacher_dropout": "%.2f", "poor_bleu": "%.1f"}
SETTING_MIN = {"vocab_size": 16}        # whole numbers are at least 1 (the engine's rule) unless named here
SETTING_PLACEHOLDERS = {f"layer_map_{k}": "the layer map above (or uniform, last, 1,2)" for k in KINDS}
DATA_SETTINGS = ("max_words",)                          # drawn with the bible pairs
# the task's own training defaults, which the form shows as they apply: the Training section's epochs and learning
# rate, the Objectives' temperature
TRAINING_DEFAULTS = ("student_epochs", "student_lr", "temperature")
BUILT_TEACHER = ("teacher_layers", "teacher_heads", "teacher_hidden", "teacher_intermediate", "teacher_dropout",
                 "teacher_lr", "teacher_batch_size", "tokenizer", "vocab_size")     # a teacher built here
PER_KIND = tuple(f"{x}_{k}" for k in KINDS for x in ("layer_map", "head_rule"))
EVALUATION = ("beam", "poor_bleu")
SETTINGS = SectionForm(MT, translation_fields, SETTING_LABELS, SETTING_HELP, SETTING_CHOICES, SETTING_FORMATS,
                       SETTING_FLOATS, SETTING_MIN, placeholders=SETTING_PLACEHOLDERS)
TEACHER = TrainedTeacherForm(
    SETTINGS, TRANSLATION_TEACHER_KINDS, "/path/to/marian (config.json + model.safetensors)",
    "e.g. Helsinki-NLP/opus-mt-en-fr",
    "A Marian encoder-decoder trained here on the training pairs, with a subword vocabulary shared by both languages "
    "learnt on them too; the epoch with the best validation chrF is kept and cached, so later sessions with the same "
    "pairs and teacher settings reuse it.", BUILT_TEACHER,
    "A Marian encoder-decoder (safetensors weights, no remote code) with its own tokenizer, which the students share.",
    "Fine-tune it on the pairs",
    "always: fine-tuned on the training pairs first (the best epoch by validation chrF kept, cached); auto and never: "
    "used as it is.", "Layers counts the encoder's layers and as many decoder layers.")


def bible_versions() -> dict[str, str]:
    """The bible versions the engine knows (code -> name and language); the default pair's when it is absent."""
    try:
        from distill_core.modality.translation.data import BIBLE_VERSIONS as ENGINE_VERSIONS
    except Exception:  # noqa: BLE001 - the engine absent or half-installed: the form still works
        return dict(BIBLE_VERSIONS)
    return {code: f"{name} ({LANGUAGES.get(lang, lang)})" for code, (name, lang) in ENGINE_VERSIONS.items()}


LANGUAGES = {"en": "English", "fr": "French", "es": "Spanish", "de": "German"}


# ---- teacher and student -------------------------------------------------------------------------------------
def teacher_section() -> None:
    trained_teacher_section(TEACHER)


def student() -> None:
    student_section(MT)
    st.caption("Layers counts the encoder's layers and as many decoder layers; the hidden size is the model's "
               "width.")


# ---- the pairs -----------------------------------------------------------------------------------------------
def data_section(runs_root: Path, base: SessionConfig) -> None:
    kind = data_kind_input(MT, "Sentence pairs", TRANSLATION_DATA_KINDS)
    max_mb = base.data.max_file_mb
    if kind == "default":
        versions = bible_versions()
        for key, code in ((MT + "bible_source", BIBLE_PAIR[0]), (MT + "bible_target", BIBLE_PAIR[1])):
            if st.session_state.get(key) not in versions:
                st.session_state[key] = code
        c1, c2 = st.columns(2)
        c1.selectbox("From", list(versions), format_func=versions.get, key=MT + "bible_source")
        c2.selectbox("Into", list(versions), format_func=versions.get, key=MT + "bible_target")
        st.caption("The bible's verses, aligned verse by verse in the versions shipped with the app: works offline. "
                   "A verse that repeats (a formula) is kept once, so no test sentence is seen in training.")
        if st.session_state[MT + "bible_source"] == st.session_state[MT + "bible_target"]:
            st.error("The pair translates a version into itself: pick two different versions.",
                     icon=":material/block:")
        settings_inputs([n for n in DATA_SETTINGS if n in translation_fields()])
    elif kind == "hub":
        c1, c2 = st.columns([3, 1])
        c1.text_input("Hub dataset name", key=MT + "data_hub", placeholder="e.g. opus_books",
                      help="Two columns of text, or one 'translation' column of {language: text} records (WMT, "
                           "OPUS): name the two languages as the columns.")
        c2.text_input("Split", key=MT + "hub_split")
        c1, c2 = st.columns(2)
        c1.text_input("Source column (or language)", key=MT + "source_column")
        c2.text_input("Target column (or language)", key=MT + "target_column")
    path = data_file_input(kind, MT, runs_root, max_mb, "A CSV, TSV or JSONL file with a column of source sentences "
                           "and a column of their translations", TRANSLATION_FILE_TYPES,
                           "Path to a .csv, .tsv or .jsonl file of sentence pairs")
    if path:
        file_columns(path, max_mb)
    sizes_inputs(MT, "Split sizes and sentence length", "pairs", "Max tokens per sentence",
                 "Subword tokens; a longer source or target is cut (the run says how many were). A translation is at "
                 "most twice its source's tokens plus 5.",
                 sizes_text() + " Pairs are split by their source sentence (no source sentence in two splits) and "
                 "seeded; validation and test take their sizes first and training at most its own of the rest.")


def sizes_text() -> str:
    """The split sizes in words; a training size above what validation and test leave takes all of that."""
    return task_sizes_text(MT, translation_sizes(), "pairs")


def file_columns(path: str, max_mb: float) -> None:
    """Preview of a file of pairs, pickers for its source and target columns, and what the engine finds in the
    pairs (their number) or why Start would refuse them."""
    try:
        df = preview_table(path, max_mb)
    except DataError as e:
        st.error(str(e), icon=":material/block:")
        return
    cols = list(df.columns)
    fields = translation_fields()
    src_at, tgt_at = guess_pair_columns(df, str(fields.get("source_column", "source")),
                                        str(fields.get("target_column", "target")))
    c1, c2 = st.columns(2)
    source = c1.selectbox("Source column", cols, index=src_at, key=MT_FILE_SOURCE_COLUMN)
    target = c2.selectbox("Target column (the translations)", cols, index=tgt_at, key=MT_FILE_TARGET_COLUMN)
    engine_file_lines(MT, lambda: pair_file_info(path, source, target, max_mb), "pairs",
                      lambda info: f"{info['pairs']:,} sentence pairs in {file_label(path)}, "
                                   f"{info['source_words']:.1f} words a source sentence on average.", df)


# ---- the translation section's other settings ------------------------------------------------------------------
def settings_inputs(names: list[str], per_row: int = 3) -> None:
    """One widget per setting of the translation section (keys new.mt.set.<name>), by the kind of its default."""
    section_inputs(SETTINGS, names, per_row)


def other_settings() -> list[str]:
    """The translation section's settings no other part of the form draws (ones the engine adds later)."""
    drawn = (*PAIR_COLUMNS, *DATA_SETTINGS, *BUILT_TEACHER, *PER_KIND, *EVALUATION, *TRAINING_DEFAULTS,
             "teacher_epochs", "train_size", "val_size", "test_size", "max_length")
    return [n for n in translation_fields() if n not in drawn]


def objectives_section() -> None:
    st.subheader("Objectives")
    st.caption("How teacher and students are compared, shared by every variant: the temperature of logit_kd, and "
               "which teacher layers and heads the attention losses (and the divergence charts) pair with each "
               "student layer and head, in the encoder and in the decoder.")
    comparison_inputs(MT, TRANSLATION_LAYER_MAPS, "Softens both next-token distributions in logit_kd; higher T shows "
                                                   "more of the teacher's ranking of the other words.",
                      "Which teacher layer each student layer imitates and is compared with, in the encoder and in "
                      "the decoder alike.")
    with st.expander("Each kind of attention on its own"):
        st.caption("The encoder's self-attention, the decoder's, and the cross-attention can pair their layers and "
                   "heads differently; left empty, a kind follows the layer map and head rule above.")
        settings_inputs(list(PER_KIND), 2)
    if names := other_settings():
        st.markdown("**Translation**")
        settings_inputs(names)


# ---- the page ------------------------------------------------------------------------------------------------
def draw(runs_root: Path, defaults: SessionConfig, base: SessionConfig,
         ensemble_problem: Callable[[], str | None]) -> None:
    """The translation task's sections, in the page's order (base: the translation task's)."""
    task_sections(teacher_section, student, lambda: data_section(runs_root, base),
                  lambda: variants_section(TRANSLATION_VARIANTS), objectives_section, training)


def training() -> None:
    training_section(MT)
    st.markdown("**Translating**")
    settings_inputs(list(EVALUATION))
