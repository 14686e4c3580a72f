"""What the session core gives tasks with an answer per token (tagging, translation): the task chosen by name,
per-token objectives over the scored positions only, and the paired comparison of a score made of per-example
units (entity F1 from counts, the mean of sentence scores)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distill_core import objectives, stats
from distill_core.config import SessionConfig
from distill_core.errors import ConfigError
from distill_core.objectives import IGNORED, LossInputs


# ---- the task, chosen by name --------------------------------------------------------------------------------------
def test_the_task_is_chosen_by_name_and_brings_its_own_default_students():
    assert SessionConfig().modality == "text"
    for kind in ("tagging", "translation"):
        cfg = SessionConfig().with_overrides({"task": kind})
        assert cfg.modality == kind
        assert cfg.variants[0].name == "baseline" and cfg.variants[0].losses == {"ce": 1.0}
        assert all(kind in objectives.get(n).tasks for v in cfg.variants for n, w in v.losses.items() if w > 0)
        assert SessionConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("kind", ["tagging", "translation"])
def test_a_task_trains_its_own_epochs_and_rate_where_the_train_section_keeps_the_defaults(kind):
    text = SessionConfig()
    cfg = text.with_overrides({"task": kind})
    own = getattr(cfg, kind)
    assert (cfg.train.epochs, cfg.train.lr) == (own.student_epochs, own.student_lr)
    assert (cfg.train.epochs, cfg.train.lr) != (text.train.epochs, text.train.lr)
    # each setting asked for is kept; the other is still the task's
    chosen = text.with_overrides({"task": kind, "train.epochs": 3})
    assert (chosen.train.epochs, chosen.train.lr) == (3, own.student_lr)
    chosen = text.with_overrides({"task": kind, "train.lr": 2e-4})
    assert (chosen.train.epochs, chosen.train.lr) == (own.student_epochs, 2e-4)
    moved = text.with_overrides({"task": kind, f"{kind}.student_epochs": 7, f"{kind}.student_lr": 3e-3})
    assert (moved.train.epochs, moved.train.lr) == (7, 3e-3)
    assert SessionConfig.from_dict(cfg.to_dict()) == cfg
    if kind == "translation":       # word-level KD on the teacher's distributions as they are, unless asked
        assert cfg.objectives.temperature == cfg.translation.temperature == 1.0
        assert text.with_overrides({"task": kind, "objectives.temperature": 4}).objectives.temperature == 4
    with pytest.raises(ConfigError, match=f"{kind}.student_lr"):
        text.with_overrides({"task": kind, f"{kind}.student_lr": 0})


def test_an_unknown_task_is_refused_with_the_known_ones():
    with pytest.raises(ConfigError, match="tagging, translation"):
        SessionConfig().with_overrides({"task": "parsing"})


def test_a_loss_that_does_not_apply_to_the_task_is_refused_with_those_that_do():
    with pytest.raises(ConfigError, match=r"attention_transfer.*tagging students can learn from ce, logit_kd"):
        SessionConfig().with_overrides({"task": "tagging", "variants": [
            {"name": "baseline", "losses": {"ce": 1}}, {"name": "at", "losses": {"attention_transfer": 1}}]})


@pytest.mark.parametrize("kind", ["tagging", "translation"])
@pytest.mark.parametrize("change, words", [
    ({"variants": [{"name": "baseline", "losses": {"ce": 1}},
                   {"name": "adv", "losses": {"ce": 1}, "adversarial": {"method": "pgd"}}]}, "adversarial"),
    ({"ensemble": {"teachers": [{"seed": 1}]}}, "one teacher"),
])
def test_what_is_built_for_one_label_per_input_is_refused_for_sequence_tasks(kind, change, words):
    d = {**SessionConfig().to_dict(), "task": kind}
    if "variants" not in change:
        d.pop("variants")
    with pytest.raises(ConfigError, match=words):
        SessionConfig.from_dict({**d, **change})


# ---- per-token objectives: only the scored positions count ---------------------------------------------------------
def _per_token():
    torch.manual_seed(0)
    student = torch.randn(2, 4, 3)                      # (B, T, C)
    teacher = torch.randn(2, 4, 3)
    labels = torch.tensor([[0, IGNORED, 2, IGNORED], [1, 1, IGNORED, IGNORED]])
    return student, teacher, labels


def test_per_token_cross_entropy_is_the_mean_over_scored_tokens():
    student, _, labels = _per_token()
    got = objectives.ce(LossInputs(student, labels, torch.ones(2, 4)))
    rows = [(0, 0, 0), (0, 2, 2), (1, 0, 1), (1, 1, 1)]
    by_hand = sum(-F.log_softmax(student[b, t], -1)[y] for b, t, y in rows) / len(rows)
    assert math.isclose(float(got), float(by_hand), rel_tol=1e-6)


def test_per_token_logit_kd_is_the_kl_per_scored_token_times_t_squared():
    student, teacher, labels = _per_token()
    t = 2.0
    got = objectives.logit_kd(LossInputs(student, labels, torch.ones(2, 4), t, teacher_logits=teacher))
    kls = []
    for b, tok in [(0, 0), (0, 2), (1, 0), (1, 1)]:
        p = F.softmax(teacher[b, tok] / t, -1)
        q = F.softmax(student[b, tok] / t, -1)
        kls.append(float((p * (p.log() - q.log())).sum()))
    assert math.isclose(float(got), np.mean(kls) * t * t, rel_tol=1e-5)
    # what the ignored positions hold changes nothing
    noisy = student.clone()
    noisy[labels == IGNORED] = 100.0
    again = objectives.logit_kd(LossInputs(noisy, labels, torch.ones(2, 4), t, teacher_logits=teacher))
    assert math.isclose(float(again), float(got), rel_tol=1e-6)


def test_per_token_hard_kd_learns_the_teachers_argmax_on_scored_tokens():
    student, teacher, labels = _per_token()
    got = objectives.hard_kd(LossInputs(student, labels, torch.ones(2, 4), teacher_logits=teacher))
    keep = labels != IGNORED
    assert math.isclose(float(got), float(F.cross_entropy(student[keep], teacher[keep].argmax(-1))), rel_tol=1e-6)


def test_one_label_per_input_is_unchanged():
    torch.manual_seed(1)
    s, t, y = torch.randn(5, 3), torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    assert torch.allclose(objectives.ce(LossInputs(s, y, torch.ones(5, 2))), F.cross_entropy(s, y))


# ---- a score made of per-example units ---------------------------------------------------------------------------
def test_f1_units_sum_to_micro_f1_and_a_model_equal_to_the_reference_is_no_different():
    units = np.array([[1, 2, 1], [0, 1, 2], [2, 2, 2]])
    assert math.isclose(float(stats.unit_score("f1", units)), 2 * 3 / (5 + 5))
    same = stats.paired_units("f1", units, units, n_boot=500)
    assert same["diff"] == 0 and same["p"] == 1.0 and same["verdict"] == "no clear difference"


def test_a_clearly_better_variant_is_better_and_its_interval_holds_the_difference():
    rng = np.random.default_rng(0)
    ref = rng.random(200)
    var = np.clip(ref + 0.1 + rng.normal(0, 0.05, 200), 0, 1)
    out = stats.paired_units("mean", ref, var, n_boot=2000)
    assert out["verdict"] == "better" and out["lo"] <= out["diff"] <= out["hi"] and out["lo"] > 0
    assert out["variant_only"] > out["ref_only"]
    worse = stats.paired_units("mean", var, ref, n_boot=2000)
    assert worse["verdict"] == "worse" and math.isclose(worse["diff"], -out["diff"])


def test_noise_alone_is_seldom_called_a_difference():
    """Two models that are the same but for noise: the approximate randomisation test says "better" or "worse" in
    about 5% of draws, not more."""
    rng = np.random.default_rng(1)
    calls = 0
    for k in range(40):
        base = rng.random(150)
        calls += stats.paired_units("mean", base + rng.normal(0, 0.1, 150), base + rng.normal(0, 0.1, 150),
                                    n_boot=400, seed=k)["verdict"] != "no clear difference"
    assert calls <= 6


def test_units_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match="true positives"):
        stats.paired_units("f1", [0.5, 0.2], [0.1, 0.3])
    with pytest.raises(ValueError, match="different examples"):
        stats.paired_units("mean", [0.5, 0.2], [0.1])


def test_seeds_pooled_per_example_say_no_more_than_one_seed_when_copied():
    """k copies of one seed's units: the pooled comparison keeps that seed's difference (F1 of summed counts)."""
    rng = np.random.default_rng(3)
    gold = rng.integers(0, 3, 120)
    ref = np.stack([np.minimum(gold, rng.integers(0, 3, 120)), gold, gold], 1)
    var = np.stack([gold, gold, gold], 1)
    one = stats.paired_units("f1", ref, var, seed=0)
    three = stats.pooled_units("f1", [(ref, var)] * 3, seed=0)
    assert math.isclose(three["diff"], one["diff"]) and three["runs"] == 3 and three["answers"] == 360
    with pytest.raises(ValueError, match="pooled"):
        stats.pooled_units("mean", [(np.ones(3), np.ones(3)), (np.ones(4), np.ones(3))])


# ---- preflight: each task's data read as its session reads it, before any work -------------------------------------
def test_preflight_reads_a_tagging_file_as_the_session_does(tmp_path):
    from distill_core.errors import DataError
    from distill_core.preflight import preflight
    bad = tmp_path / "tweets.conll"
    bad.write_text("Obama\tPER\nvisited\tO\n\n")
    with pytest.raises(DataError, match="BIO"):
        preflight(SessionConfig().with_overrides({"task": "tagging", "data.source": str(bad)}))


def test_preflight_reads_a_pair_file_as_the_session_does(tmp_path):
    from distill_core.errors import DataError
    from distill_core.preflight import preflight
    bad = tmp_path / "pairs.csv"
    bad.write_text("source\nhello\n")
    with pytest.raises(DataError, match="one column"):
        preflight(SessionConfig().with_overrides({"task": "translation", "data.source": str(bad)}))


@pytest.mark.parametrize("kind, source", [("tagging", "ner_tweets"), ("translation", "bible"),
                                          ("translation", "bible:4-v")])
def test_preflight_takes_the_built_in_data_by_name_offline(kind, source):
    from distill_core.preflight import preflight
    preflight(SessionConfig().with_overrides({"task": kind, "data.source": source}))
