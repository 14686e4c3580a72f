"""The Generated data page, driven with Streamlit's AppTest on a copy of a run the real engine wrote."""
from __future__ import annotations

import json
import shutil

import pytest

from app_helpers import VIEWS, open_page, run_app, texts
from distill_core import RunStore

PAGE = VIEWS / "generated.py"

RECORD = {
    "source": "unused rows of the dataset",
    "counts": {"transfer": 2, "augmented": 3, "total": 5},
    "label_names": ["fresh", "rotten"],
    "notices": [],
    "examples": [
        {"kind": "transfer", "tokens": ["[CLS]", "a", "<b>", "fun", "##ny", "film", "[SEP]"], "original": None,
         "origin": None, "changed": [], "teacher_label": 0, "confidence": 0.91},
        {"kind": "transfer", "tokens": ["[CLS]", "dull", "plot", "[SEP]"], "original": None, "origin": None,
         "changed": [], "teacher_label": 1, "confidence": 0.8},
        {"kind": "augmented", "tokens": ["[CLS]", "a", "superb", "movie", "[SEP]"],
         "original": ["[CLS]", "a", "great", "movie", "[SEP]"], "origin": 0, "changed": [2],
         "teacher_label": 0, "confidence": 0.77},
        {"kind": "augmented", "tokens": ["[CLS]", "boring", "[SEP]"],
         "original": ["[CLS]", "very", "boring", "[SEP]"], "origin": 1, "changed": [],
         "teacher_label": 1, "confidence": 0.66},
    ],
}


@pytest.fixture
def run_copy(finished_run, tmp_path, monkeypatch):
    """A copy of the finished run in a store of its own (the shared run stays as the engine wrote it)."""
    store, run_id = finished_run
    root = tmp_path / "runs"
    shutil.copytree(store.open(run_id).path, root / run_id)
    monkeypatch.setenv("ADS_RUNS_DIR", str(root))
    return RunStore(root).open(run_id)


def with_generated(run):
    config = run.config()
    config["variants"][-1]["generated"] = True
    config["transfer"] = {**(config.get("transfer") or {}), "source": "unused", "copies": 1, "fraction": 0.15}
    run.write_json("config.json", config)
    run.write_json("generated.json", RECORD)
    return config["variants"][-1]["name"]


def table(at) -> str:
    return next(m.value for m in at.markdown if "<table>" in m.value)


def test_page_shows_counts_and_marked_changes(run_copy):
    user = with_generated(run_copy)
    at = open_page(PAGE)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Transfer texts": "2", "Augmented copies": "3", "Generated examples": "5"}
    assert f"**{user}**" in texts(at.markdown)
    assert "never see a label" in texts(at.caption)
    html = table(at)
    assert "<mark>superb</mark>" in html                           # the changed word, marked
    assert "great" in html and "<mark>great</mark>" not in html     # its original beside it, unmarked
    assert "<s>very</s>" in html                                   # a deleted word, struck through in the original
    assert "funny" in html and "[CLS]" not in html                 # word pieces joined, special tokens hidden
    assert "<b>" not in html and "&lt;b&gt;" in html               # a token is text, never markup
    assert "fresh (77%)" in html and "rotten (80%)" in html         # the teacher's label and confidence

    at.radio(key="generated.kind").set_value("augmented")
    run_app(at)
    html = table(at)
    assert "superb" in html and "dull" not in html
    assert at.query_params["kind"] in ("augmented", ["augmented"])   # the view is in the address


def test_page_without_generated_data_says_how_to_switch_it_on(run_copy):
    at = open_page(PAGE)
    info = texts(at.info)
    assert "trained on no generated data" in info and "generated data" in info and "transfer.source" in info
    assert not at.metric


def test_a_damaged_generated_file_is_an_error(run_copy):
    (run_copy.path / "generated.json").write_text("{not json")
    at = open_page(PAGE)
    assert "generated.json is damaged" in texts(at.error)


def test_record_from_the_engine_renders(run_copy, tiny_teacher):
    """A generated.json written by examples_record (the engine's own format) shows without error."""
    import torch
    from transformers import AutoTokenizer

    from distill_core.config import TransferConfig
    from distill_core.strategies.generated import build_generated, examples_record
    probe = run_copy.probe()
    tok = AutoTokenizer.from_pretrained(tiny_teacher)
    train_ids = [tok(t)["input_ids"] for t in probe["texts"]]
    splits = type("S", (), {"extra_texts": ["an unlabelled text"], "extra_labels": [0], "val_texts": [],
                            "test_texts": []})()
    gen = build_generated(TransferConfig(source="unused", copies=2, ops=("mask", "swap")), splits, train_ids, tok,
                          torch.zeros(tok.vocab_size, 4), max_length=16)
    probs = torch.softmax(torch.randn(len(gen), 2, generator=torch.Generator().manual_seed(0)), dim=1)
    run_copy.write_json("generated.json", json.loads(json.dumps(
        examples_record(gen, tok, train_ids, probs, probe["label_names"]))))
    at = open_page(PAGE)
    assert "<mark>&#91;MASK&#93;</mark>" in table(at)                 # masked words, marked (and escaped)
    assert {m.label: m.value for m in at.metric}["Augmented copies"] == f"{2 * len(train_ids):,}"
