"""The language-model task's widgets (keys new.lm.*, variant blocks new.lv<i>.*): the causal teacher (built and
trained here, a causal model folder, or a hub id), the student's shape, the passages (the bundled World English
Bible, a .txt file of paragraphs or a CSV/TSV/JSONL file with a column of texts, with what the engine finds in it, a
hub dataset), the language_model section's settings, the objectives, and how they are laid out on the page. One
teacher: several teachers, adversarial steps and generated data are built for classification and are not offered."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import streamlit as st

from distill_core import SessionConfig
from distill_core.errors import DataError

from .keys import LANGUAGE_MODEL_VARIANTS, LM, LM_FILE_TEXT_COLUMN
from .labels import (LANGUAGE_MODEL_BIBLE, LANGUAGE_MODEL_DATA_KINDS, LANGUAGE_MODEL_FILE_TYPES,
                     LANGUAGE_MODEL_LAYER_MAPS, LANGUAGE_MODEL_TEACHER_KINDS)
from .sections import (SectionForm, TrainedTeacherForm, comparison_inputs, data_file_input, data_kind_input,
                       engine_file_lines, settings_inputs as section_inputs, sizes_inputs, task_sections, task_sizes_text,
                       trained_teacher_section, training_section, variants_section)
from .text import student_section
from .translation import bible_versions
from .uploads import guess_columns, passage_file_info, preview_table
from .values import TEXT_COLUMN, is_table, language_model_fields, language_model_sizes

# how the form names and explains the language_model section's settings; one it does not know is drawn by its kind
SETTING_LABELS = {
    "tokenizer": "Subword tokenizer", "vocab_size": "Vocabulary (subwords)", "teacher_layers": "Layers",
    "teacher_heads": "Attention heads", "teacher_hidden": "Hidden size", "teacher_intermediate": "Feed-forward size",
    "teacher_dropout": "Dropout", "teacher_epochs": "Training epochs (at most)", "teacher_lr": "Learning rate",
    "teacher_batch_size": "Batch size", "beta": "GKD β", "on_policy_fraction": "On-policy share λ",
    "prompt_tokens": "Prompt tokens", "sample_tokens": "New tokens per sample", "sample_temperature":
    "Sampling temperature", "samples": "Sample length on the pages (new tokens)"}
SETTING_HELP = {
    "tokenizer": "How the subword vocabulary is learnt on the training passages; the students share it.",
    "vocab_size": "Subwords, special tokens included.",
    "teacher_hidden": "Divisible by the heads.",
    "teacher_epochs": "The epoch with the best validation perplexity is kept.",
    "beta": "The generalized Jensen-Shannon divergence of gkd and on_policy: 0 is the forward KL (the student covers "
            "all the teacher's likely words), 1 the reverse KL (it settles on the teacher's most likely ones).",
    "on_policy_fraction": "GKD's λ: the share of on_policy's steps that learn on the student's own samples, scored "
                          "by the teacher; the other steps learn on the training text.",
    "prompt_tokens": "The opening of a training block that the student (on_policy) or the teacher (seq_kd) "
                     "continues.",
    "sample_tokens": "How many tokens the student (on_policy) or the teacher (seq_kd) writes after the prompt: "
                     "each costs a pass of the model, so longer samples make a step slower.",
    "sample_temperature": "Of those samples: 0 is greedy, 1 samples the model's next-token distribution as it is.",
    "samples": "New tokens each probe passage's opening is continued by, on the pages and in the report."}
SETTING_FLOATS = {"teacher_lr": "%.1e", "teacher_dropout": "%.2f", "beta": "%.2f", "on_policy_fraction": "%.2f",
                  "sample_temperature": "%.2f"}
SETTINGS = SectionForm(LM, language_model_fields, SETTING_LABELS, SETTING_HELP, {"tokenizer": ("bpe", "unigram")},
                       floats=SETTING_FLOATS, minimum={"vocab_size": 16},
                       maximum={"beta": 1.0, "on_policy_fraction": 1.0})
BUILT_TEACHER = ("teacher_layers", "teacher_heads", "teacher_hidden", "teacher_intermediate", "teacher_dropout",
                 "teacher_lr", "teacher_batch_size", "tokenizer", "vocab_size")     # a teacher built here
TEACHER = TrainedTeacherForm(
    SETTINGS, LANGUAGE_MODEL_TEACHER_KINDS, "/path/to/gpt2 (config.json + model.safetensors)",
    "e.g. gpt2 or distilgpt2",
    "A GPT-2 model trained here on the training passages, with a subword vocabulary learnt on them too; the epoch "
    "with the best validation perplexity is kept and cached, so later sessions with the same passages and teacher "
    "settings reuse it.", BUILT_TEACHER,
    "A causal (GPT-style) model (safetensors weights, no remote code) with its own tokenizer, which the students "
    "share; an encoder-only or encoder-decoder model is refused.",
    "Fine-tune it on the passages",
    "always: fine-tuned on the training passages first (the best epoch by validation perplexity kept, cached); auto "
    "and never: used as it is.")
# the objectives' own settings: the generalized JSD (gkd, on_policy) and the samples (on_policy, seq_kd)
OBJECTIVE_SETTINGS = ("beta", "on_policy_fraction", "prompt_tokens", "sample_tokens", "sample_temperature")
# the task's own training defaults, which the form shows as they apply: the Training section's epochs and learning
# rate, the Objectives' temperature
TRAINING_DEFAULTS = ("student_epochs", "student_lr", "temperature")


# ---- teacher and student -------------------------------------------------------------------------------------
def teacher_section() -> None:
    trained_teacher_section(TEACHER)


def student() -> None:
    student_section(LM)
    st.caption("A GPT-2 student that shares the teacher's tokenizer. from_teacher starts it from alternate teacher "
               "layers, as DistilGPT2 was (it needs the teacher's width); teacher_embeddings from the teacher's token "
               "embeddings projected onto its width.")


# ---- the passages --------------------------------------------------------------------------------------------
def data_section(runs_root: Path, base: SessionConfig) -> None:
    kind = data_kind_input(LM, "Text", LANGUAGE_MODEL_DATA_KINDS)
    max_mb = base.data.max_file_mb
    if kind == "default":
        versions = bible_versions()
        if st.session_state.get(LM + "bible_version") not in versions:
            st.session_state[LM + "bible_version"] = LANGUAGE_MODEL_BIBLE
        st.selectbox("Version", list(versions), format_func=versions.get, key=LM + "bible_version")
        st.caption("The bible shipped with the app, one passage per chapter (the World English Bible has 1,189): "
                   "works offline.")
    elif kind == "hub":
        c1, c2, c3 = st.columns([3, 1, 1])
        c1.text_input("Hub dataset name", key=LM + "data_hub", placeholder="e.g. roneneldan/TinyStories")
        c2.text_input("Split", key=LM + "hub_split")
        c3.text_input("Text column", key=LM + "text_column")
    path = data_file_input(kind, LM, runs_root, max_mb, "A .txt file (one passage per paragraph, blank lines "
                           "between them) or a CSV, TSV or JSONL file with a column of texts (one passage per row)",
                           LANGUAGE_MODEL_FILE_TYPES,
                           "Path to a .txt file, or a CSV, TSV or JSONL file with a column of texts")
    if path:
        file_passages(path, max_mb)
    sizes_inputs(LM, "Split sizes and context", "passages", "Context (tokens)",
                 "data.max_length: the models read blocks of this many subword tokens (a teacher from a folder or "
                 "the hub must read at least as many positions).",
                 sizes_text() + " Passages are split whole (no passage in two splits) and seeded; validation and "
                 "test take their sizes first and training at most its own of the rest.")


def sizes_text() -> str:
    return task_sizes_text(LM, language_model_sizes(), "passages")


def file_passages(path: str, max_mb: float) -> None:
    """What the engine reads in a file: for a table, a picker of its text column under its preview; the number of
    passages and words and the first passages, or why Start would refuse the file."""
    column, table = str(st.session_state.get(LM + "text_column") or "text"), None
    if is_table(path):
        try:
            table = preview_table(path, max_mb)
        except DataError as e:
            st.error(str(e), icon=":material/block:")
            return
        cols = list(table.columns)
        column = st.selectbox("Text column (one passage per row)", cols, index=guess_columns(table, column, "")[0],
                              key=LM_FILE_TEXT_COLUMN)
    engine_file_lines(LM, lambda: passage_file_info(path, column, max_mb), "passages", passages_text, table)


def passages_text(info: dict) -> str:
    """The passages the engine read and their words, and what it did to them (its notices)."""
    n, words = info["passages"], info["words"]
    return " ".join([f"{n:,} passages in {info['name']}: {words:,} words, {words / max(1, n):,.0f} a passage on "
                     f"average.", *(f"{notice}." for notice in info["notices"])])


# ---- the language_model section's settings and the objectives -------------------------------------------------
def settings_inputs(names: list[str], per_row: int = 3) -> None:
    """One widget per setting of the language_model section (keys new.lm.set.<name>), by the kind of its default."""
    section_inputs(SETTINGS, names, per_row)


def other_settings() -> list[str]:
    """The language_model section's settings no other part of the form draws (the samples' length, and ones the
    engine adds later)."""
    drawn = (*TEXT_COLUMN, *BUILT_TEACHER, *OBJECTIVE_SETTINGS, *TRAINING_DEFAULTS, "teacher_epochs", "train_size",
             "val_size", "test_size", "max_length")
    return [n for n in language_model_fields() if n not in drawn]


def objectives_section() -> None:
    st.subheader("Objectives")
    st.caption("How teacher and students are compared, shared by every variant: the temperature of the forward and "
               "reverse KL, the generalized JSD of GKD and its on-policy share, the samples that on_policy and seq_kd "
               "learn from, and which teacher layers and heads causal_attention_kl and hidden_mse (and the "
               "divergence charts) pair with each student layer and head.")
    comparison_inputs(LM, LANGUAGE_MODEL_LAYER_MAPS, "Softens both next-token distributions in logit_kd (the forward "
                                                     "KL) and reverse_kl; 1 compares them as they are.",
                      "Which teacher layer each student layer imitates and is compared with (causal_attention_kl, "
                      "hidden_mse).")
    st.markdown("**GKD and samples**")
    settings_inputs(list(OBJECTIVE_SETTINGS))
    if names := other_settings():
        st.markdown("**Language model**")
        settings_inputs(names)


# ---- the page ------------------------------------------------------------------------------------------------
def draw(runs_root: Path, defaults: SessionConfig, base: SessionConfig,
         ensemble_problem: Callable[[], str | None]) -> None:
    """The language-model task's sections, in the page's order (base: the language-model task's)."""
    task_sections(teacher_section, student, lambda: data_section(runs_root, base),
                  lambda: variants_section(LANGUAGE_MODEL_VARIANTS), objectives_section, lambda: training_section(LM))
