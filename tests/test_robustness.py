"""Accuracy under attack on the word embeddings (distill_core.robustness), on a copy of a run the real engine wrote."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from distill_core import RunStore, attacks, robustness
from distill_core.__main__ import main
from distill_core.analysis import load_run_models
from distill_core.errors import ConfigError
from distill_core.evaluate import evaluate


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A copy of the finished run in a store of its own: the shared run gets no robustness.json."""
    store, run_id = finished_run
    shutil.copytree(store.root / run_id, tmp_path / "runs" / run_id)
    return RunStore(tmp_path / "runs"), run_id


def test_run_robustness_writes_the_record(run_copy):
    store, run_id = run_copy
    run = store.open(run_id)
    record = robustness.run_robustness(run, epsilons=(0.0, 1.0), steps=2)
    assert run.read_json("robustness.json") == record
    rm = load_run_models(run)
    assert list(record["accuracy"]) == list(rm.models)
    assert record["epsilons"] == [0.0, 1.0] and record["steps"] == 2 and record["split"] == "test"
    assert record["attack"] == attacks.ATTACK and record["seconds"] >= 0
    ids, labels = robustness.rebuild_test_split(run, rm.tokenizer)
    assert record["n"] == len(ids) == len(run.predictions()["labels"])
    for name, model in rm.models.items():
        plain, _ = evaluate(model, ids, labels, rm.tokenizer.pad_token_id, torch.device("cpu"))
        assert record["accuracy"][name][0] == pytest.approx(plain)
        assert len(record["accuracy"][name]) == 2
    assert record["accuracy"]["teacher"][1] <= record["accuracy"]["teacher"][0]


def test_limit_takes_the_first_examples(run_copy):
    store, run_id = run_copy
    run = store.open(run_id)
    rm = load_run_models(run)
    ids, labels = robustness.rebuild_test_split(run, rm.tokenizer)
    teacher = rm.models["teacher"]
    acc = attacks.robust_accuracy(teacher, ids, labels, rm.tokenizer.pad_token_id, "cpu", epsilons=(0.0,),
                                     limit=5)
    plain, _ = evaluate(teacher, ids[:5], labels[:5], rm.tokenizer.pad_token_id, torch.device("cpu"))
    assert acc == [pytest.approx(plain)] and not teacher.training


@pytest.mark.parametrize("epsilons, steps, limit", [((-0.1,), 3, 10), ((float("nan"),), 3, 10), ((0.1,), 0, 10),
                                                    ((0.1,), 3, 0), ((), 3, 10)])
def test_bad_settings_name_the_fix(epsilons, steps, limit):
    with pytest.raises(ConfigError, match=r"e\.g\."):
        attacks.check_settings(epsilons, steps, limit)


def test_cli_prints_a_table(run_copy, capsys):
    store, run_id = run_copy
    rc = main(["robustness", run_id, "--runs-dir", str(store.root), "--epsilons", "0,0.05", "--steps", "1",
               "--limit", "8"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "teacher" in out and "0.05" in out and "robustness.json" in out
    assert store.open(run_id).read_json("robustness.json")["n"] == 8


@pytest.mark.parametrize("flags, message", [(["--epsilons", "0,-0.1"], "epsilon must be a finite number"),
                                            (["--epsilons", "0,nan"], "epsilon must be a finite number"),
                                            (["--epsilons", "small"], "--epsilons takes numbers"),
                                            (["--steps", "0"], "steps must be a whole number"),
                                            (["--limit", "0"], "limit must be a whole number")])
def test_cli_bad_input_is_one_line(tmp_path, capsys, flags, message):
    rc = main(["robustness", "no-such-run", "--runs-dir", str(tmp_path), *flags])   # checked before the run is read
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1


def test_attention_under_attack(tiny_teacher):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_teacher, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_teacher, attn_implementation="eager",
                                                               local_files_only=True).eval()
    input_ids = tok(["a dull and tedious film"], return_tensors="pt")["input_ids"]     # (1, T)
    t = input_ids.shape[1]
    out = attacks.attention_under_attack(model, input_ids, epsilon=0.5, steps=2)
    for key in ("clean", "attacked"):
        assert out[key].shape == (4, 4, t, t) and out[key].dtype == np.float32
        np.testing.assert_allclose(out[key].sum(-1), 1.0, atol=1e-5)
    assert not np.allclose(out["clean"], out["attacked"])
    assert out["probs_clean"].shape == out["probs_attacked"].shape == (2,)
    assert out["delta_norm"].shape == (t,) and (out["delta_norm"] <= 0.5 + 1e-5).all() and out["delta_norm"].max() > 0
    assert not model.training and all(p.grad is None for p in model.parameters())
    same = attacks.attention_under_attack(model, input_ids, epsilon=0.0)
    np.testing.assert_array_equal(same["clean"], same["attacked"])
    assert same["delta_norm"].max() == 0
