"""The pages on a tagging run and a translation run, driven with Streamlit's AppTest: the explorer's entity spans
and cross-attention grid, the Accuracy page's own score and measures, Divergence per kind of attention, and the
pages that say plainly they do not apply. The runs are tiny ones the real engine writes once per module."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from app_helpers import VIEWS, figures, open_page, run_app, texts, values
from distill_core import RunStore, run_session
from distill_core.config import SessionConfig
from test_tagging import make_sentences, save_tiny_tagger, tagging_config, write_conll
from test_translation import tiny_translation_config

TIMEOUT = 90


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(store, tagging run id, translation run id), written by the real engine on tiny models."""
    root = tmp_path_factory.mktemp("sequence_runs")
    old = os.environ.get("ADS_CACHE_DIR")
    os.environ["ADS_CACHE_DIR"] = str(root / "cache")
    torch.set_num_threads(1)
    teacher = save_tiny_tagger(root / "tagger")
    data = root / "people.conll"
    write_conll(data, make_sentences(120))
    store = RunStore(root / "runs")
    try:
        tagging = run_session(tagging_config(teacher, data), store)
        translation = run_session(SessionConfig.from_dict(tiny_translation_config()), store)
    finally:
        if old is None:
            os.environ.pop("ADS_CACHE_DIR", None)
        else:
            os.environ["ADS_CACHE_DIR"] = old
    return store, tagging, translation


@pytest.fixture
def pages(runs, monkeypatch):
    store, tagging, translation = runs
    monkeypatch.setenv("ADS_RUNS_DIR", str(store.root))
    monkeypatch.setenv("ADS_CACHE_DIR", str(store.root.parent / "cache"))
    return store, tagging, translation


def page(name: str, run_id: str):
    return open_page(VIEWS / f"{name}.py", {"run": run_id}, default_timeout=TIMEOUT)


def typed_in_explorer(run_id: str, text: str):
    """The explorer on a run with `text` typed in place of a probe example."""
    at = page("explorer", run_id)
    at.radio(key="explorer.source").set_value("typed")
    run_app(at, TIMEOUT)
    at.text_input(key="explorer.text").set_value(text)
    run_app(at, TIMEOUT)
    return at


# ---- tagging ---------------------------------------------------------------------------------------------------
def test_the_tagging_explorer_shows_gold_teacher_and_student_tags_as_spans_above_the_stored_maps(pages):
    store, run_id, _ = pages
    run = store.open(run_id)
    probe = run.probe()
    at = page("explorer", run_id)
    html = texts(at.markdown)
    for name in ("gold", "teacher", "distilled"):
        assert f">{name}" in html                                    # each line named: gold, teacher, student
    words = probe["words"][0]
    assert all(w in html for w in words)
    assert ">per</span>" in html or ">loc</span>" in html           # an entity's type after its words
    z = [values(d["z"]) for d in figures(at)["explorer.triptych"]["data"]]
    n = len(probe["tokens"][0])
    assert z[0].shape == (n, n)                                      # over sub-tokens, as the session recorded them


def test_a_typed_sentence_is_tagged_word_by_word_by_every_model(pages):
    _, run_id, _ = pages
    at = typed_in_explorer(run_id, "yesterday Anna Smith walked to Paris")
    html = texts(at.markdown)
    assert ">teacher</span>" in html and "Paris" in html and ">gold</span>" not in html
    assert "explorer.triptych" in figures(at)


def test_the_accuracy_page_of_a_tagging_run_names_entity_f1_and_shows_it_per_type(pages):
    store, run_id, _ = pages
    summary = store.open(run_id).summary()
    at = page("accuracy", run_id)
    assert "entity F1" in texts(at.caption)
    table = at.dataframe[0].value
    assert "F1 (%)" in table.columns and "accuracy (%)" not in table.columns
    assert "randomisation p" in table.columns and "McNemar p" not in table.columns
    np.testing.assert_allclose(table["F1 (%)"].iloc[0], 100 * summary["accuracy"]["teacher"])
    details = at.dataframe[1].value
    assert {"precision (%)", "recall (%)", "entity F1 (%)", "token accuracy (%)"} <= set(details.columns)
    per_type = figures(at)["accuracy.per_type"]
    assert {tuple(d["x"]) for d in per_type["data"]} == {tuple(sorted(summary["details"]["teacher"]["per_type"],
                                                                       key=lambda t: (-summary["details"]["teacher"]
                                                                                      ["per_type"][t]["support"],
                                                                                      t)))}
    assert "Robustness under attack" not in [s.value for s in at.subheader]


@pytest.mark.parametrize("name", ["attributions", "compression"])
def test_pages_built_for_one_label_per_input_say_so_on_a_tagging_run(pages, name):
    _, run_id, _ = pages
    assert "token tagging" in texts(page(name, run_id).info)


# ---- translation -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, rows, cols", [("cross", "target_tokens", "tokens"), ("encoder", "tokens", "tokens"),
                                              ("decoder", "target_tokens", "decoder_tokens")])
def test_the_translation_explorer_draws_each_kind_over_its_own_axes_from_the_stored_maps(pages, kind, rows, cols):
    store, _, run_id = pages
    run = store.open(run_id)
    probe = run.probe()
    at = page("explorer", run_id)
    at.radio(key="explorer.kind").set_value(kind)
    run_app(at, TIMEOUT)
    fig = figures(at)["explorer.triptych"]
    teacher, student, diff = (values(d["z"]) for d in fig["data"])
    assert teacher.shape == (len(probe[rows][0]), len(probe[cols][0]))
    student_name = at.radio(key="explorer.student").value
    epoch = run.attention_epochs(student_name)[-1]
    name = "teacher" if kind == "cross" else f"teacher.{kind}"
    stored_t = run.read_attention(name)[0]
    s_name = f"{student_name}_e{epoch}" + ("" if kind == "cross" else f".{kind}")
    stored_s = run.read_attention(s_name)[0]
    s_layer, t_layer = at.selectbox(key="explorer.student_layer").value, at.selectbox(key="explorer.teacher_layer").value
    head = at.selectbox(key="explorer.head").value
    expected_s = stored_s[s_layer].mean(0) if head == -1 else stored_s[s_layer][head]
    np.testing.assert_allclose(student, expected_s, rtol=1e-6, atol=1e-7)
    assert teacher.shape == stored_t[t_layer][0].shape
    np.testing.assert_allclose(diff, student - teacher, rtol=1e-5, atol=1e-6)
    if kind == "cross":
        np.testing.assert_allclose(student.sum(-1), 1.0, atol=2e-3)     # each target row is a distribution
    html = texts(at.markdown)
    assert probe["texts"][0] in html and probe["labels"][0] in html


def test_a_typed_sentence_shows_each_models_own_translation_and_attention(pages):
    _, _, run_id = pages
    at = typed_in_explorer(run_id, "And God said, let there be light")
    fig = figures(at)["explorer.own_maps"]
    assert len(fig["data"]) == 2 and "explorer.triptych" not in figures(at)
    for d in fig["data"]:
        z = values(d["z"])
        assert z.shape == (len(d["y"]), len(d["x"]))
        np.testing.assert_allclose(z.sum(-1), 1.0, atol=2e-3)


def test_divergence_of_a_translation_run_is_read_per_kind(pages):
    store, _, run_id = pages
    at = page("divergence", run_id)
    cross = figures(at)["divergence.curves"]
    at.radio(key="divergence.kind").set_value("encoder")
    run_app(at, TIMEOUT)
    encoder = figures(at)["divergence.curves"]
    assert [d["y"] for d in cross["data"]] != [d["y"] for d in encoder["data"]]


def test_the_accuracy_page_of_a_translation_run_names_chrf_and_shows_bleu(pages):
    _, _, run_id = pages
    at = page("accuracy", run_id)
    table = at.dataframe[0].value
    assert "chrF (%)" in table.columns
    details = at.dataframe[1].value
    assert {"BLEU", "chrF"} <= set(details.columns)


@pytest.mark.parametrize("name, words", [("attributions", "translation run"), ("compression", "translation run")])
def test_pages_that_do_not_apply_to_translation_say_so(pages, name, words):
    _, _, run_id = pages
    assert words in texts(page(name, run_id).info)


@pytest.mark.parametrize("name", ["runs", "compare", "generated", "sweep"])
def test_the_other_pages_open_on_both_runs(pages, name):
    _, tagging, translation = pages
    for run_id in (tagging, translation):
        page(name, run_id)


def test_the_engine_refuses_to_compress_a_run_with_an_answer_per_token(pages):
    from distill_core.compress import compress_run
    from distill_core.errors import ConfigError
    store, tagging, translation = pages
    for run_id in (tagging, translation):
        with pytest.raises(ConfigError, match="built for text and image classification"):
            compress_run(store.open(run_id))
