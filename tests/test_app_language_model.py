"""The pages on a language-model run, driven with Streamlit's AppTest: the explorer's causal maps on a probe passage
and its prompt box (each model's continuation, the attention of a token it wrote), the quality measures on the
Accuracy page (perplexity, KL to the teacher, agreement, perplexity paired by passage, samples), and the pages that
say plainly they do not apply. The run is a tiny one the real engine writes once per module."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from app_helpers import VIEWS, figures, open_page, run_app, texts, values
from distill_core import RunStore, run_session
from distill_core.config import SessionConfig
from test_language_model import tiny_lm_config

TIMEOUT = 90


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm_pages")
    old = os.environ.get("ADS_CACHE_DIR")
    os.environ["ADS_CACHE_DIR"] = str(root / "cache")
    torch.set_num_threads(1)
    store = RunStore(root / "runs")
    variants = [{"name": "baseline", "losses": {"ce": 1}}, {"name": "forward_kl", "losses": {"ce": .5, "logit_kd": .5}}]
    try:
        run_id = run_session(SessionConfig.from_dict(tiny_lm_config(variants=variants)), store)
    finally:
        if old is None:
            os.environ.pop("ADS_CACHE_DIR", None)
        else:
            os.environ["ADS_CACHE_DIR"] = old
    return store, run_id


@pytest.fixture
def pages(lm_run, monkeypatch):
    store, run_id = lm_run
    monkeypatch.setenv("ADS_RUNS_DIR", str(store.root))
    monkeypatch.setenv("ADS_CACHE_DIR", str(store.root.parent / "cache"))
    return store, run_id


def page(name: str, run_id: str):
    return open_page(VIEWS / f"{name}.py", {"run": run_id}, default_timeout=TIMEOUT)


def test_the_explorer_draws_the_stored_causal_maps_of_a_probe_passage(pages):
    store, run_id = pages
    run = store.open(run_id)
    probe = run.probe()
    at = page("explorer", run_id)
    fig = figures(at)["explorer.triptych"]
    teacher, student, diff = (values(d["z"]) for d in fig["data"])
    n = len(probe["tokens"][0])
    assert teacher.shape == (n, n)
    name = at.radio(key="explorer.student").value
    epoch = run.attention_epochs(name)[-1]
    stored = run.read_attention(f"{name}_e{epoch}")[0]
    s_layer, head = at.selectbox(key="explorer.student_layer").value, at.selectbox(key="explorer.head").value
    np.testing.assert_allclose(student, stored[s_layer].mean(0) if head == -1 else stored[s_layer][head], rtol=1e-6)
    assert np.allclose(np.triu(teacher, 1), 0) and np.allclose(np.triu(student, 1), 0)
    np.testing.assert_allclose(diff, student - teacher, rtol=1e-5, atol=1e-6)
    assert "lower triangle" in texts(at.caption)


def test_a_typed_prompt_is_continued_by_each_model_and_a_written_token_shows_what_it_read(pages):
    _, run_id = pages
    at = page("explorer", run_id)
    at.radio(key="explorer.source").set_value("typed")
    run_app(at, TIMEOUT)
    at.text_input(key="explorer.text").set_value("In the beginning God")
    at.number_input(key="explorer.new_tokens").set_value(5)
    run_app(at, TIMEOUT)
    html = texts(at.markdown)
    assert ">teacher</span>" in html and "In the beginning God" in html
    own = figures(at)["explorer.own_maps"]
    assert len(own["data"]) == 2 and "explorer.triptych" not in figures(at)
    for d in own["data"]:
        z = values(d["z"])
        assert np.allclose(np.triu(z, 1), 0)
    bars = figures(at)["explorer.attended"]
    first = values(bars["data"][0]["y"])
    # the first written token was predicted at the prompt's last position: it reads every prompt token, no more
    prompt_len = len(bars["data"][0]["x"])
    assert first.shape == (prompt_len,) and first.sum() == pytest.approx(1.0, abs=2e-3)
    at.select_slider(key="explorer.token").set_value(3)
    run_app(at, TIMEOUT)
    third = figures(at)["explorer.attended"]
    assert len(third["data"][0]["x"]) == prompt_len + 2
    seeded = texts(at.markdown)
    run_app(at, TIMEOUT)
    assert texts(at.markdown) == seeded                     # the same seed writes the same continuations


def test_the_accuracy_page_shows_perplexity_kl_agreement_their_pairing_and_the_samples(pages):
    store, run_id = pages
    summary = store.open(run_id).summary()
    at = page("accuracy", run_id)
    assert "next-token accuracy" in texts(at.caption)
    frames = [d.value for d in at.dataframe]
    details = next(f for f in frames if "perplexity" in f.columns and "KL to the teacher" in f.columns)
    assert "top-1 agreement with the teacher (%)" in details.columns
    np.testing.assert_allclose(details["perplexity"].iloc[0], summary["details"]["teacher"]["perplexity"])
    pairs = next(f for f in frames if "ratio" in f.columns)
    assert list(pairs["variant"]) == ["forward_kl"] and {"95% interval", "verdict"} <= set(pairs.columns)
    samples = [f for f in frames if "continuation" in f.columns]
    assert len(samples) == 2 and set(samples[0]["continuation"]) >= {summary["details"]["teacher"]["samples"][0]}
    assert "Robustness under attack" not in [s.value for s in at.subheader]


def test_divergence_of_a_language_model_run_draws_its_curves(pages):
    _, run_id = pages
    at = page("divergence", run_id)
    assert "divergence.curves" in figures(at)


@pytest.mark.parametrize("name", ["attributions", "compression"])
def test_pages_built_for_one_label_per_input_say_so(pages, name):
    _, run_id = pages
    assert "language model" in texts(page(name, run_id).info)


@pytest.mark.parametrize("name", ["runs", "compare", "generated", "sweep"])
def test_the_other_pages_open_on_a_language_model_run(pages, name):
    _, run_id = pages
    page(name, run_id)


def test_the_report_of_a_language_model_run_names_its_score_and_its_measures(pages, tmp_path):
    from app.report import build_report
    store, run_id = pages
    html = build_report(store.open(run_id))
    assert "next-token accuracy" in html and "perplexity" in html and "KL to the teacher" in html
