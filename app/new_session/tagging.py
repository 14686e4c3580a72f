"""The token-tagging task's widgets (keys new.tag.*, variant blocks new.tv<i>.*): a transformer teacher and student
as for text, the tagged sentences (the bundled tweets, a CoNLL-style or JSONL file, a hub dataset) with what the
engine finds in a file, the objectives, and how they are laid out on the page. One teacher: several teachers,
adversarial steps and generated data are built for classification and are not offered."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import streamlit as st

from distill_core import SessionConfig
from distill_core.errors import DataError
from distill_core.sources import file_label

from .keys import TAG, TAGGING_VARIANTS
from .labels import TAGGING_DATA_KINDS, TAGGING_FILE_TYPES, TAGGING_LAYER_MAPS
from .sections import (data_file_input, data_kind_input, split_sizes_text, task_sections, training_section,
                       variants_section)
from .text import objectives_section, student_section, teacher_section, teacher_source
from .uploads import counts_text, tagged_file_info
from .values import own_max_length, own_sizes

FINETUNE_HELP = ("auto: only when its tagging head is new for these tags (true of the bundled sentence encoder). It "
                 "learns the tags from the training sentences and those no split takes, keeps its best epoch by "
                 "validation entity F1, and is cached and reused by later sessions with the same teacher and data.")


def data_section(runs_root: Path, base: SessionConfig) -> None:
    """The tagged sentences, what the engine finds in a file (or why it refuses it), the split sizes."""
    kind = data_kind_input(TAG, "Tagged sentences", TAGGING_DATA_KINDS)
    max_mb = base.data.max_file_mb
    if kind == "default":
        st.caption("2,394 tweets with their named entities in BIO tags (10 types: person, geo-loc, company, "
                   "product, ...), shipped with the app: works offline. A tweet posted more than once is kept once.")
    elif kind == "hub":
        c1, c2 = st.columns([3, 1])
        c1.text_input("Hub dataset name", key=TAG + "data_hub", placeholder="e.g. conll2003, wnut_17",
                      help="A token-classification dataset with tokens and ner_tags columns (BIO tags).")
        c2.text_input("Split", key=TAG + "hub_split")
    path = data_file_input(kind, TAG, runs_root, max_mb, "A CoNLL-style file (a token and its tag per line, a blank "
                           "line between sentences) or a JSONL file ({\"tokens\": [...], \"tags\": [...]} per line)",
                           TAGGING_FILE_TYPES, "Path to a .txt, .conll, .tsv or .jsonl file of tagged sentences")
    if path:
        file_lines(path, max_mb)
    with st.expander("Split sizes and sentence length"):
        c = st.columns(4)
        c[0].number_input("Train sentences", min_value=1, step=100, key=TAG + "train_size")
        c[1].number_input("Validation sentences", min_value=1, step=50, key=TAG + "val_size")
        rest = own_sizes(base.data)
        c[2].number_input("Test sentences" + (" (0 = the rest)" if rest else ""), min_value=0 if rest else 1,
                          step=100, key=TAG + "test_size")
        c[3].number_input("Max sub-tokens per sentence", min_value=8, step=8, key=TAG + "max_length",
                          help="Longer sentences are cut; a word's tag is read at its first sub-token.")
        st.caption(sizes_text(rest) + " Splits are seeded and keep sentences with and without entities in the same "
                   "proportion; when the data hold fewer sentences than asked, they are split by fractions and the "
                   "run says so.")
    if not own_max_length(base.data):
        st.caption("The sub-token limit is data.max_length here (the defaults set it).")


def sizes_text(rest: bool) -> str:
    """The split sizes in words; a test size of 0 (tagging's own sizes only) is every sentence left over."""
    state = st.session_state
    if rest and int(state.get(TAG + "test_size") or 0) == 0:
        train, val = (int(state.get(f"{TAG}{k}_size") or 0) for k in ("train", "val"))
        return (f"{train:,} sentences for training, {val:,} for validation, and every sentence they leave for "
                f"testing.")
    return split_sizes_text(state, TAG, "sentences")


def file_lines(path: str, max_mb: float) -> None:
    """What the engine reads in a file of tagged sentences: sentences and entities per type and a preview, or why
    Start would refuse it."""
    try:
        info = tagged_file_info(path, max_mb)
    except DataError as e:
        st.error(str(e), icon=":material/block:")       # the engine's words: Start says the same
        return
    if info is None:
        st.caption("The file is checked when the session starts.")
        return
    counts = info["entities"]
    what = (f"{info['sentences']:,} sentences and {info['tokens']:,} tokens in {file_label(path)}, "
            f"{sum(counts.values()):,} entities")
    st.caption(counts_text(counts, what).replace("examples per class", "entities per type") if counts else
               f"{what}: no B- tag, so there is nothing to find; tag the entities in BIO")
    st.dataframe(info["preview"].head(5), hide_index=True, key=TAG + "preview")


def draw(runs_root: Path, defaults: SessionConfig, base: SessionConfig,
         ensemble_problem: Callable[[], str | None]) -> None:
    """The tagging task's sections, in the page's order (base: the tagging task's, whose data settings the
    dataset section reads)."""
    task_sections(lambda: teacher_section(TAG, FINETUNE_HELP), lambda: student_section(TAG),
                  lambda: data_section(runs_root, base), lambda: variants_section(TAGGING_VARIANTS),
                  lambda: objectives_section(teacher_source(TAG), TAG, TAGGING_LAYER_MAPS, "tags"),
                  lambda: training_section(TAG))
