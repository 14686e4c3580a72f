"""Taking a student away (distill_core/export.py): a trained variant written as a Hugging Face model folder that
transformers' pipeline loads as it is and that gives back the run's own test answers, its model card with the run's
numbers and the command that made it, the command line, the app's control, and what is refused (an unknown variant,
a run without weights, a folder already in use, an image run, a push while offline).

Everything is offline and on the CPU: the shared tiny text run, and one tiny tagging, translation and language-model
run written here by the real engine."""
from __future__ import annotations

import io
import json
import os
import shutil
import socket
import zipfile

import numpy as np
import pytest
import torch
import yaml
from streamlit.testing.v1 import AppTest
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

from app_helpers import run_app, texts
from distill_core import RunStore, SessionConfig, run_session
from distill_core.__main__ import main
from distill_core.errors import ConfigError, ModelError, OfflineError, RunStoreError
from distill_core.evaluate import predict_logits
from distill_core.export import (CARD, CONFIG_COPY, export_problem, export_student, export_zip, exportable_variants,
                                 push_to_hub)
from distill_core.reopen import reopen
from distill_core.stats import binomial_halfwidth, p_text, units_interval
from test_language_model import tiny_lm_config
from test_tagging import make_sentences, save_tiny_tagger, tagging_config, write_conll
from test_translation import tiny_translation_config

TWO_VARIANTS = [{"name": "baseline", "losses": {"ce": 1}}, {"name": "distilled", "losses": {"ce": .5, "logit_kd": .5}}]


def text_run(finished_run):
    store, run_id = finished_run
    return store.open(run_id)


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


# ---- text classification -------------------------------------------------------------------------------------------
def test_the_exported_text_student_gives_the_runs_test_predictions_through_the_pipeline(finished_run, tmp_path):
    run = text_run(finished_run)
    out = export_student(run, tmp_path / "student")
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", CARD,
            CONFIG_COPY} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    finished = reopen(run)
    names = finished.label_names
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {str(i): n for i, n in enumerate(names)} and config["architectures"]
    assert (out / "model.safetensors").read_bytes() == (run.model_dir("distilled") / "model.safetensors").read_bytes()

    texts_ = finished.splits().test_texts
    answers = run.predictions()["predictions"]["distilled"]
    classifier = pipeline("text-classification", model=str(out), tokenizer=str(out), device=-1)
    got = classifier(texts_, truncation=True, top_k=None)
    assert [max(g, key=lambda x: x["score"])["label"] for g in got] == [names[a] for a in answers]

    # the same probabilities as the run's own student on the run's own encoding of the test texts
    modality = finished.task()
    logits = predict_logits(finished.student("distilled"), modality.ids["test"], modality.pad_id,
                            torch.device("cpu"), mixed_precision=False)
    expected = torch.softmax(logits, -1).numpy()
    scores = np.array([[next(x["score"] for x in g if x["label"] == n) for n in names] for g in got])
    np.testing.assert_allclose(scores, expected, atol=1e-5)

    tokenizer = AutoTokenizer.from_pretrained(str(out))          # cut where the run cut
    assert len(tokenizer(" ".join(["word"] * 100), truncation=True)["input_ids"]) == finished.max_length


def test_the_model_card_states_the_runs_numbers_recipe_and_command(finished_run, tmp_path):
    run = text_run(finished_run)
    out = export_student(run, tmp_path / "student")
    card = (out / CARD).read_text()
    meta = front_matter(card)
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
    assert "knowledge-distillation" in meta["tags"]
    summary = run.summary()
    n, acc = summary["test_size"], summary["accuracy"]
    for model in ("distilled", "teacher", "baseline"):
        assert f"| {100 * acc[model]:.1f} | ± {100 * binomial_halfwidth(acc[model], n):.1f} points" in card
    paired = summary["paired"]["distilled"]
    assert (f"{100 * paired['diff']:+.1f} points (paired bootstrap 95% interval {100 * paired['lo']:+.1f} to "
            f"{100 * paired['hi']:+.1f}), McNemar {p_text(paired['p'])}: {paired['verdict']}") in card
    assert "ce × 0.5" in card and "logit_kd × 0.5" in card and "attention_kl × 1" in card
    assert "KD temperature: 2" in card and "fresh, rotten" in card
    assert "96 training, 32 validation and 32 test examples" in card
    assert f"{summary['params']['distilled']:,} parameters" in card
    assert "python -m distill_core run --config distill_config.yaml" in card
    assert f"python -m distill_core export {run.id} --variant distilled student" in card
    assert 'pipeline("text-classification", model="student")' in card
    assert "Your text here." in card and reopen(run).probe["texts"][0] not in card     # a local file stays private
    assert "answers 'rotten' for 100%" in card or not summary["warnings"]   # the run's warnings travel with it
    again = SessionConfig.load(out / CONFIG_COPY)                          # the command's config reproduces the run's
    assert again.to_dict() == reopen(run).config.to_dict()


def test_best_weights_are_the_best_epochs_and_the_card_says_which(finished_run, tmp_path):
    run = text_run(finished_run)
    kept = run.kept_weights("distilled")
    out = export_student(run, tmp_path / "best", weights="best")
    weights = run.model_dir("distilled", "best") / "model.safetensors"
    assert (out / "model.safetensors").read_bytes() == weights.read_bytes()
    card = (out / CARD).read_text()
    assert f"its best weights by validation score (epoch {kept['best']} of {kept['final']})" in card
    assert "--weights best" in card


def test_the_zip_holds_one_loadable_folder(finished_run, tmp_path):
    run = text_run(finished_run)
    data = export_zip(run, "baseline")
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = z.namelist()
        z.extractall(tmp_path)
    folder = f"{run.id}-baseline"
    assert all(n.startswith(folder + "/") for n in names) and f"{folder}/model.safetensors" in names
    classifier = pipeline("text-classification", model=str(tmp_path / folder), device=-1)
    assert classifier("great fun", truncation=True)[0]["label"] in reopen(run).label_names


# ---- the command line ----------------------------------------------------------------------------------------------
def test_the_export_command_writes_prints_and_refuses(finished_run, tmp_path, capsys):
    store, run_id = finished_run
    out = tmp_path / "cli"
    args = ["export", run_id, "--variant", "baseline", str(out), "--runs-dir", str(store.root)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"written: {out}/" in printed and f'pipeline("text-classification", model="{out}")' in printed

    assert main(args) == 2                               # the folder is in use now
    assert "is not empty" in capsys.readouterr().err
    (out / "notes.txt").write_text("mine")
    assert main(args + ["--overwrite"]) == 0             # a model folder's files replaced, the others kept
    assert (out / "notes.txt").read_text() == "mine" and (out / "model.safetensors").is_file()
    capsys.readouterr()

    assert main(["export", run_id, "--variant", "nope", str(tmp_path / "x"), "--runs-dir", str(store.root)]) == 2
    err = capsys.readouterr().err
    assert "has no variant 'nope'; its variants are baseline, distilled" in err and not (tmp_path / "x").exists()


def test_a_push_while_offline_is_refused_before_anything_is_written(finished_run, tmp_path, capsys, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("the network was tried")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", no_network)
    from huggingface_hub import HfApi
    monkeypatch.setattr(HfApi, "create_repo", no_network)
    monkeypatch.setattr(HfApi, "upload_folder", no_network)
    store, run_id = finished_run
    out = tmp_path / "pushed"
    assert main(["export", run_id, str(out), "--push-to-hub", "someone/student", "--runs-dir", str(store.root)]) == 2
    err = capsys.readouterr().err
    assert "cannot push to the Hub" in err and "HF_HUB_OFFLINE" in err and not out.exists()
    folder = export_student(store.open(run_id), out)
    with pytest.raises(OfflineError, match="HF_HUB_OFFLINE is set"):
        push_to_hub(folder, "someone/student")


# ---- refusals ------------------------------------------------------------------------------------------------------
def test_what_cannot_be_exported_is_refused_with_the_reason(finished_run, tmp_path):
    store, run_id = finished_run
    run = store.open(run_id)
    with pytest.raises(RunStoreError, match="has no variant 'kd'"):
        export_student(run, tmp_path / "a", "kd")
    with pytest.raises(ConfigError, match="weights must be one of final, best"):
        export_student(run, tmp_path / "a", weights="last")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        export_student(run, tmp_path / "file")

    copies = RunStore(tmp_path / "runs")
    shutil.copytree(run.path, copies.root / "cancelled")
    cancelled = copies.open("cancelled")
    shutil.rmtree(cancelled.path / "models")               # cancelled before its first epoch: nothing was saved
    cancelled.update_status(status="cancelled")
    assert "kept no student weights" in export_problem(cancelled) and exportable_variants(cancelled) == {}
    with pytest.raises(RunStoreError, match="kept no weights for variant distilled: it was cancelled before"):
        export_student(cancelled, tmp_path / "b")

    shutil.copytree(run.path, copies.root / "running")
    running = copies.open("running")
    running.update_status(status="running", host=socket.gethostname(), pid=os.getpid())
    assert "is still running" in export_problem(running)
    with pytest.raises(RunStoreError, match="is still running"):
        export_student(running, tmp_path / "c")
    assert not any((tmp_path / x).exists() for x in "abc")


def test_an_image_run_is_refused_naming_what_export_takes(cnn_image_run, tmp_path):
    store, run_id = cnn_image_run
    run = store.open(run_id)
    problem = export_problem(run)
    assert "image classification" in problem and "distill_cnn" in problem
    assert "text classification, token tagging, translation, language model" in problem
    with pytest.raises(ModelError, match="image classification run"):
        export_student(run, tmp_path / "image")


# ---- tagging, translation, language model ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sequence_runs(tmp_path_factory):
    """(store, {"tagging", "translation", "language_model": run id}) of tiny two-variant runs the real engine wrote."""
    root = tmp_path_factory.mktemp("export_runs")
    old = os.environ.get("ADS_CACHE_DIR")
    os.environ["ADS_CACHE_DIR"] = str(root / "cache")
    torch.set_num_threads(1)
    tagger = save_tiny_tagger(root / "tagger")
    conll = root / "people.conll"
    write_conll(conll, make_sentences(120))
    store = RunStore(root / "runs")
    try:
        quick = {"teacher.finetune_min_steps": 0, "train.min_steps": 0, "train.epochs": 2}    # nothing to learn here
        ids = {"tagging": run_session(tagging_config(tagger, conll).with_overrides(quick), store),
               "translation": run_session(SessionConfig.from_dict(tiny_translation_config(variants=TWO_VARIANTS)),
                                          store),
               "language_model": run_session(SessionConfig.from_dict(tiny_lm_config(variants=TWO_VARIANTS)), store)}
    finally:
        if old is None:
            os.environ.pop("ADS_CACHE_DIR", None)
        else:
            os.environ["ADS_CACHE_DIR"] = old
    return store, ids


def test_the_exported_tagger_gives_the_runs_test_tags_through_the_pipeline(sequence_runs, tmp_path):
    store, ids = sequence_runs
    run = store.open(ids["tagging"])
    out = export_student(run, tmp_path / "tagger")
    finished = reopen(run)
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {str(i): t for i, t in enumerate(finished.label_names)}
    assert front_matter((out / CARD).read_text())["pipeline_tag"] == "token-classification"
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    tagger = pipeline("token-classification", model=str(out), device=-1, ignore_labels=[])
    answers = run.predictions()["predictions"]["distilled"]
    for words, expected in zip(finished.splits().test_words, answers):
        split = tokenizer(words, is_split_into_words=True)
        assert tokenizer(" ".join(words))["input_ids"] == split["input_ids"]
        firsts = [split.word_ids().index(w) for w in range(len(words))]
        by_index = {t["index"]: t["entity"] for t in tagger(" ".join(words))}
        assert [by_index[i] for i in firsts] == expected


def test_the_exported_translator_loads_with_auto_classes_and_translates_the_test_set_as_the_run_did(sequence_runs,
                                                                                                     tmp_path):
    store, ids = sequence_runs
    run = store.open(ids["translation"])
    out = export_student(run, tmp_path / "translator")
    finished = reopen(run)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForSeq2SeqLM.from_pretrained(str(out)).eval()
    sources = finished.splits().test_sources
    assert tokenizer(sources)["input_ids"] == finished.reader()(sources)["input_ids"]
    modality = finished.task()
    translated = modality.translations(model, "test", torch.device("cpu"), finished.config.train.mixed_precision)
    assert translated == run.predictions()["predictions"]["distilled"]
    batch = tokenizer(sources[:1], return_tensors="pt", truncation=True)          # the card's code
    assert isinstance(tokenizer.batch_decode(model.generate(**batch, num_beams=1, max_new_tokens=8),
                                             skip_special_tokens=True)[0], str)
    meta = front_matter((out / CARD).read_text())
    assert meta["pipeline_tag"] == "translation" and meta["language"] == ["en", "fr"] and "datasets" not in meta


def test_the_exported_language_model_generates_through_the_pipeline_and_scores_the_test_set_as_the_run_did(
        sequence_runs, tmp_path):
    store, ids = sequence_runs
    run = store.open(ids["language_model"])
    out = export_student(run, tmp_path / "lm")
    finished = reopen(run)
    model = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    result = finished.task().predict(model, "test", torch.device("cpu"), finished.config.train.mixed_precision)
    recorded = run.predictions()
    assert result["predictions"] == recorded["predictions"]["distilled"]
    assert result["units"] == recorded["units"]["distilled"]
    prompt = run.probe()["sample_prompts"][0]
    generated = pipeline("text-generation", model=str(out), device=-1)(prompt, max_new_tokens=5, do_sample=False)
    assert generated[0]["generated_text"].startswith(prompt)
    card = (out / CARD).read_text()
    assert front_matter(card)["pipeline_tag"] == "text-generation" and "next-token accuracy" in card
    score, lo, hi = units_interval("ratio", recorded["units"]["distilled"])     # a score of units: its own interval
    assert score == pytest.approx(run.summary()["accuracy"]["distilled"]) and lo <= score <= hi
    assert f"| {100 * score:.1f} | {100 * lo:.1f} to {100 * hi:.1f} (bootstrap over the 6 test examples) |" in card


# ---- the app's control -----------------------------------------------------------------------------------------
def _panel(run_id: str, may_push: bool) -> None:
    from app import export_panel
    export_panel.draw(run_id, may_push)


def panel(run_id: str, may_push: bool) -> AppTest:
    return run_app(AppTest.from_function(_panel, kwargs={"run_id": run_id, "may_push": may_push}, default_timeout=30))


def test_the_runs_page_control_offers_the_download_and_refuses_a_push_offline(run_copy, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = panel(run_copy.id, True)
    choice = at.selectbox(key="runs.export.variant")
    assert choice.options == ["baseline", "distilled"] and choice.value == "distilled"
    assert at.get("download_button") and "Download student (.zip)" in str(at.get("download_button")[0].proto)
    assert f'pipeline("text-classification", model="{run_copy.id}-distilled")' in texts(at.caption)
    at.text_input(key="runs.export.repo").set_value("someone/student")
    run_app(at)
    at.button(key="runs.export.push").click()
    run_app(at)
    assert "HF_HUB_OFFLINE" in texts(at.error)
    assert not panel(run_copy.id, False).text_input


def test_the_runs_page_control_says_why_an_image_run_cannot_be_taken_away(cnn_image_run, tmp_path, monkeypatch):
    store, run_id = cnn_image_run
    shutil.copytree(store.root / run_id, tmp_path / "runs" / run_id)
    monkeypatch.setenv("ADS_RUNS_DIR", str(tmp_path / "runs"))
    at = panel(run_id, True)
    assert "image classification run" in texts(at.caption)
    assert not at.get("download_button") and not at.text_input
