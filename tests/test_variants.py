"""Variants: shared initial weights and batches, independent random streams, only the inputs that are needed."""
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distill_core import RunStore, SessionConfig, run_session
from distill_core.session import Session

from conftest import tiny_config_dict

ROOT = Path(__file__).resolve().parent.parent


def config(tiny_teacher, tiny_csv, variants, **over):
    return SessionConfig.from_dict(tiny_config_dict(tiny_teacher, tiny_csv, objectives={"temperature": 2.0},
                                                    variants=variants, **over))


def weights(run, name):
    return load_file(str(run.model_dir(name) / "model.safetensors"))


def test_variants_with_the_same_recipe_train_identically_without_dropout(tmp_path, tiny_teacher, tiny_csv):
    """Same initial weights and the same batches: two variants with one recipe end with the same weights."""
    store = RunStore(tmp_path)
    cfg = config(tiny_teacher, tiny_csv, [{"name": "a", "losses": {"ce": 1, "logit_kd": 1}},
                                          {"name": "b", "losses": {"ce": 1, "logit_kd": 1}}],
                 student={"layers": 2, "heads": 2, "hidden": 16, "intermediate": 32, "dropout": 0.0})
    run = store.open(run_session(cfg, store))
    wa, wb = weights(run, "a"), weights(run, "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    lines = run.metrics()
    for epoch in (0, 1, 2):
        a, b = [next(m for m in lines if m["epoch"] == epoch and m["student"] == n) for n in ("a", "b")]
        assert a["val_accuracy"] == b["val_accuracy"] and a["train_loss"] == b["train_loss"]


def test_each_variant_draws_dropout_from_its_own_stream(tmp_path, tiny_teacher, tiny_csv):
    """Adding a variant never changes another variant's numbers (dropout 0.1 on)."""
    store = RunStore(tmp_path)
    two = [{"name": "baseline", "losses": {"ce": 1}}, {"name": "distilled", "losses": {"ce": .5, "logit_kd": .5}}]
    extra = [two[0], {"name": "att", "losses": {"ce": .5, "attention_kl": 1}}, two[1]]
    alone = store.open(run_session(config(tiny_teacher, tiny_csv, two), store))
    crowded = store.open(run_session(config(tiny_teacher, tiny_csv, extra), store))
    for name in ("baseline", "distilled"):
        wa, wb = weights(alone, name), weights(crowded, name)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name
    # and the stream matters: the same recipe under another name draws other dropout masks
    renamed = [{"name": "plain", "losses": {"ce": 1}}, two[1]]
    other = store.open(run_session(config(tiny_teacher, tiny_csv, renamed), store))
    wa, wb = weights(alone, "baseline"), weights(other, "plain")
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)


def test_the_session_computes_only_what_some_variant_needs(tmp_path, tiny_teacher, tiny_csv):
    store = RunStore(tmp_path)
    labels_only = config(tiny_teacher, tiny_csv, [{"name": "baseline", "losses": {"ce": 1}}], train__epochs=1)
    session = Session(labels_only, store.create(labels_only.to_dict()))
    p = session.prepare()
    assert p.needs == frozenset() and p.teacher_outputs is None
    logits_only = config(tiny_teacher, tiny_csv, [{"name": "kd", "losses": {"logit_kd": 1}}], train__epochs=1)
    session = Session(logits_only, store.create(logits_only.to_dict()))
    p = session.prepare()
    assert p.teacher_outputs.logits.shape == (96, 2)
    assert p.teacher_outputs.attention is None and p.teacher_outputs.hidden is None


def test_a_variant_with_attention_score_mse_trains_end_to_end(tmp_path, tiny_teacher, tiny_csv):
    """TinyBERT's score loss through the whole session: the teacher's scores are computed (its 4 heads averaged in
    the student's 2 groups) only because a variant asks for them, the loss is finite and falls."""
    store = RunStore(tmp_path)
    probs_only = config(tiny_teacher, tiny_csv, [{"name": "kd_att", "losses": {"ce": .5, "attention_mse": 100}}],
                        train__epochs=1)
    p = Session(probs_only, store.create(probs_only.to_dict())).prepare()
    assert p.teacher_outputs.attention is not None and p.teacher_outputs.scores is None
    cfg = config(tiny_teacher, tiny_csv, [{"name": "baseline", "losses": {"ce": 1}},
                                          {"name": "scores", "losses": {"ce": .5, "logit_kd": .5,
                                                                        "attention_score_mse": 1}}],
                 train__epochs=3)
    session = Session(cfg, store.create(cfg.to_dict()))
    p = session.prepare()
    assert p.head_rule == "group" and p.teacher_outputs.attention is None
    assert p.teacher_outputs.scores[0].shape[:2] == (2, 2)            # (P, H', t, t): 2 pairs, 2 compared heads
    run = store.open(run_session(cfg, store))
    losses = [m["train_loss"]["attention_score_mse"] for m in run.metrics()
              if m["student"] == "scores" and m["epoch"] >= 1]
    assert len(losses) == 3 and all(0 < v < float("inf") for v in losses)
    assert losses[-1] < losses[0]
    assert run.summary()["accuracy"]["scores"] is not None


def test_teacher_outputs_are_cached_on_disk_for_the_next_session(tmp_path, tiny_teacher, tiny_csv, monkeypatch):
    monkeypatch.setenv("ADS_CACHE_DIR", str(tmp_path / "cache"))
    store = RunStore(tmp_path / "runs")
    cfg = config(tiny_teacher, tiny_csv, [{"name": "kd", "losses": {"ce": .5, "logit_kd": .5, "attention_kl": 1}}],
                 train__epochs=1)
    first = store.open(run_session(cfg, store)).summary()
    second = store.open(run_session(cfg.with_overrides({"train.seed": 3}), store)).summary()
    assert first["teacher_outputs_cached"] is False and second["teacher_outputs_cached"] is True
    other_map = store.open(run_session(cfg.with_overrides({"objectives.layer_map": [2, 3]}), store)).summary()
    assert other_map["teacher_outputs_cached"] is False


def test_the_ablation_example_runs_with_its_five_variants(tmp_path, tiny_teacher, tiny_csv):
    tiny = tiny_config_dict(tiny_teacher, tiny_csv)
    cfg = SessionConfig.load(ROOT / "examples" / "ablation.yaml").with_overrides({
        **{f"teacher.{k}": v for k, v in tiny["teacher"].items()},
        **{f"student.{k}": v for k, v in tiny["student"].items()},
        **{f"data.{k}": v for k, v in tiny["data"].items()},
        "train.epochs": 1, "train.device": "cpu", "train.min_steps": 0})
    store = RunStore(tmp_path)
    run = store.open(run_session(cfg, store))
    summary = run.summary()
    assert summary["variants"] == ["baseline", "kd", "distilled", "kd_att_mse", "kd_att_scores"]
    assert all(summary["accuracy"][n] is not None for n in ["teacher", *summary["variants"]])
    assert all(len(summary["divergence"][n]) == 2 for n in summary["variants"])
    lines = {m["student"]: m for m in run.metrics() if m["epoch"] == 1}
    assert set(lines["kd_att_mse"]["train_loss"]) == {"total", "ce", "logit_kd", "attention_mse"}
    assert set(lines["kd_att_scores"]["train_loss"]) == {"total", "ce", "logit_kd", "attention_score_mse"}


@pytest.mark.parametrize("name", ["baseline", "kd"])
def test_every_variant_starts_from_the_same_weights(tmp_path, tiny_teacher, tiny_csv, name):
    store = RunStore(tmp_path)
    cfg = config(tiny_teacher, tiny_csv, [{"name": "baseline", "losses": {"ce": 1}},
                                          {"name": "kd", "losses": {"logit_kd": 1}}], train__epochs=1)
    session = Session(cfg, store.create(cfg.to_dict()))
    p = session.prepare()
    first = p.variants[0].model.state_dict()
    mine = next(v for v in p.variants if v.name == name).model.state_dict()
    assert all(torch.equal(first[k], mine[k]) for k in first)
    assert len({id(v.model) for v in p.variants}) == len(p.variants)      # separate copies
