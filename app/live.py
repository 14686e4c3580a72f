"""Live inference on a finished run's models, cached for the pages that run typed text.

The models of a run are loaded once per process (st.cache_resource, keyed by run id, the run's version and which
of the students' weights: "final" or "best"); results for a given text are cached with st.cache_data. Hooks that
capture attention or attributions are installed on the shared model objects, so every live call holds one lock.
"""
from __future__ import annotations

import threading

import streamlit as st

from app import common
from distill_core import RunStore, analysis
from distill_core.attacks import attention_under_attack as _attacked
from distill_core.modality.text.attribution import token_attributions as _attributions
from distill_core.reopen import RunModels, reopen
from distill_core.robustness import run_robustness

_LOCK = threading.Lock()


@st.cache_resource(show_spinner="Loading the run's models…", max_entries=3)
def _run_models(root: str, run_id: str, version: float, weights: str = "final") -> RunModels:
    return reopen(RunStore(root).open(run_id), weights).run_models()


def run_models(run_id: str, weights: str = "final") -> RunModels:
    """Tokenizer, teacher and trained students of a run: the students' final weights, or with weights="best"
    their best epoch's (RunModels.loaded says which epoch each student's weights are from)."""
    return _run_models(str(common.runs_dir()), run_id, common.run_version(run_id), weights)


@st.cache_data(show_spinner="Running the models on your text…", max_entries=64)
def _attention_for_text(root: str, run_id: str, version: float, text: str, weights: str = "final"):
    rm = _run_models(root, run_id, version, weights)
    with _LOCK:
        return analysis.attention_for_text(rm, text)


@st.cache_data(show_spinner="Tagging the sentence with every model…", max_entries=64)
def _tag_sentence(root: str, run_id: str, version: float, words: tuple[str, ...], weights: str = "final"):
    from distill_core.modality.tagging.analysis import tag_sentence     # a tagging run's own reading
    rm = _run_models(root, run_id, version, weights)
    with _LOCK:
        return tag_sentence(rm, list(words))


def tag_sentence(run_id: str, words, weights: str = "final"):
    """A tagging run on one sentence given as words: (sub-tokens, model name -> (L, H, T, T) attention, model name ->
    a tag per word, each word's first sub-token), with the students' final or best weights."""
    return _tag_sentence(str(common.runs_dir()), run_id, common.run_version(run_id), tuple(words), weights)


@st.cache_data(show_spinner="Translating with every model…", max_entries=64)
def _translate(root: str, run_id: str, version: float, text: str, weights: str = "final", beam: int = 1):
    from distill_core.modality.translation.analysis import translate_with_attention    # a translation run's own
    rm = _run_models(root, run_id, version, weights)
    with _LOCK:
        return {name: translate_with_attention(model, rm.tokenizer, text, "cpu", beam=beam, max_length=rm.max_length)
                for name, model in rm.models.items()}


def translate(run_id: str, text: str, weights: str = "final", beam: int = 1) -> dict:
    """A translation run on one sentence: model name -> its own translation, its tokens and the attention it used
    (translation/analysis.translate_with_attention), with the students' final or best weights."""
    return _translate(str(common.runs_dir()), run_id, common.run_version(run_id), text, weights, beam)


@st.cache_data(show_spinner="Continuing the prompt with every model…", max_entries=64)
def _continue_prompt(root: str, run_id: str, version: float, text: str, new_tokens: int, seed: int,
                     temperature: float | None, weights: str = "final"):
    from distill_core.modality.language_model.analysis import continue_with_attention   # a language model's own
    rm = _run_models(root, run_id, version, weights)
    t = 1.0 if temperature is None else temperature
    with _LOCK:
        return {name: continue_with_attention(model, rm.tokenizer, text, new_tokens, seed, t, "cpu",
                                              context=rm.max_length)
                for name, model in rm.models.items()}


def continue_prompt(run_id: str, text: str, new_tokens: int = 20, seed: int = 0, temperature: float | None = None,
                    weights: str = "final") -> dict:
    """A language-model run on one prompt: model name -> its own continuation (seeded; temperature None: the run's
    1, 0: greedy), its tokens and the attention it used, with the students' final or
    best weights."""
    return _continue_prompt(str(common.runs_dir()), run_id, common.run_version(run_id), text, new_tokens, seed,
                            temperature, weights)


def attention_for_text(run_id: str, text: str, weights: str = "final"):
    """(tokens, model name -> (L, H, T, T) attention, model name -> class probabilities) for a typed text, with the
    students' final or best weights."""
    return _attention_for_text(str(common.runs_dir()), run_id, common.run_version(run_id), text, weights)


@st.cache_data(show_spinner=False, max_entries=256)
def _token_attributions(root: str, run_id: str, version: float, text: str, model: str, target: int | None,
                        n_steps: int, weights: str = "final"):
    rm = _run_models(root, run_id, version, weights)
    with _LOCK:
        return _attributions(rm.models[model], rm.tokenizer, text, target=target, n_steps=n_steps,
                                  max_length=rm.max_length)


def token_attributions(run_id: str, text: str, model: str, target: int | None, n_steps: int,
                       weights: str = "final"):
    """Layer Integrated Gradients attributions of one model of the run for `text` (cached per arguments), with the
    students' final or best weights."""
    return _token_attributions(str(common.runs_dir()), run_id, common.run_version(run_id), text, model, target,
                               n_steps, weights)


def measure_robustness(run_id: str) -> dict:
    """Accuracy of a finished run's models under attack on the word embeddings, written to its robustness.json
    (about a minute on a CPU): the Accuracy page's "Measure robustness" button."""
    return run_robustness(common.get_store().open(run_id))


def attention_under_attack(run_id: str, text: str, model: str, epsilon: float, weights: str = "final") -> dict:
    """One model's attention on `text`, clean and under attack at `epsilon` (robustness.attention_under_attack),
    with the tokens under "tokens"."""
    rm = run_models(run_id, weights)
    if model not in rm.models:
        raise ValueError(f"run {run_id} has no trained {model} weights")
    enc = rm.tokenizer([text], truncation=True, max_length=rm.max_length, return_tensors="pt")
    with _LOCK:
        out = _attacked(rm.models[model], enc["input_ids"], epsilon)
    return {**out, "tokens": rm.tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())}
