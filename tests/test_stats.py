"""Paired statistics and model-health warnings against hand-computed cases."""
import math

import numpy as np
import pytest

from distill_core import stats


def test_mcnemar_exact_matches_the_binomial_by_hand():
    # b=1, c=9: P(X <= 1) for X ~ Bin(10, 1/2) = (1 + 10) / 1024; two-sided doubles it
    assert stats.mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)
    assert stats.mcnemar_exact(9, 1) == stats.mcnemar_exact(1, 9)
    assert stats.mcnemar_exact(0, 5) == pytest.approx(2 / 32)          # 0.0625: five to none is not significant
    assert stats.mcnemar_exact(0, 6) == pytest.approx(2 / 64)          # six to none is
    assert stats.mcnemar_exact(5, 5) == 1.0 and stats.mcnemar_exact(0, 0) == 1.0
    with pytest.raises(ValueError):
        stats.mcnemar_exact(-1, 2)


def test_paired_comparison_counts_only_the_disagreements():
    ref = np.array([1, 1, 1, 0, 0, 0, 1, 0, 1, 1], bool)
    var = np.array([1, 1, 0, 1, 1, 1, 1, 1, 1, 1], bool)
    r = stats.paired_comparison(ref, var)
    assert (r["ref_only"], r["variant_only"], r["n"]) == (1, 4, 10)
    assert r["diff"] == pytest.approx(0.3) and r["accuracy"] == 0.9 and r["ref_accuracy"] == 0.6
    assert r["p"] == pytest.approx(stats.mcnemar_exact(1, 4))
    assert r["verdict"] == "no clear difference"                          # p = 0.375 on ten examples
    assert r["lo"] <= r["diff"] <= r["hi"]


def test_paired_bootstrap_interval_is_tight_when_the_models_agree_and_clear_when_one_is_better():
    rng = np.random.default_rng(0)
    ref = rng.random(2000) < 0.7
    same = stats.paired_bootstrap(ref, ref.copy())
    assert same == (0.0, 0.0, 0.0)                                         # no disagreement: no uncertainty
    better = ref.copy()
    better[np.flatnonzero(~ref)[:200]] = True                              # 200 more right, none fewer
    diff, lo, hi = stats.paired_bootstrap(ref, better)
    assert diff == pytest.approx(0.1) and 0.08 < lo < diff < hi < 0.12
    r = stats.paired_comparison(ref, better)
    assert r["verdict"] == "better" and r["p"] < 1e-10
    assert stats.paired_comparison(better, ref)["verdict"] == "worse"
    # the paired interval is narrower than one that treats the two accuracies as independent
    independent = 1.96 * math.sqrt(0.7 * 0.3 / 2000 + 0.8 * 0.2 / 2000)
    assert (hi - lo) / 2 < independent


def test_pooled_comparison_pools_per_test_example():
    a = (np.array([1, 0, 1, 0], bool), np.array([1, 1, 1, 1], bool))     # 0 vs 2
    b = (np.array([1, 1, 0, 1], bool), np.array([0, 1, 1, 1], bool))     # 1 vs 1
    r = stats.pooled_comparison([a, b])
    # the discordant answers are still counted over both seeds, but n is the 4 test examples, answered twice
    assert (r["ref_only"], r["variant_only"], r["n"], r["answers"], r["runs"]) == (1, 3, 4, 8, 2)
    assert r["diff"] == pytest.approx(2 / 8)
    # per example, the variant's extra right answers over both seeds: 1 - 0 ... = [-1, +1, +1, +1], sum 2;
    # of the 2^4 sign patterns of sizes (1, 1, 1, 1), 10 reach |sum| >= 2
    assert r["p"] == pytest.approx(10 / 16)
    assert "sign-flip" in r["method"]


def _one_seed(n=2500, flips=0.06, seed=1):
    rng = np.random.default_rng(seed)
    ref = rng.random(n) < 0.72
    var = ref.copy()
    flip = rng.random(n) < flips
    var[flip] = ~var[flip]
    return ref, var


def test_copies_of_one_seed_say_what_that_seed_says():
    """k identical seeds are one seed's answers k times: the same interval and p-value as that seed alone (the
    old pooling summed McNemar's counts and turned p = 0.18 into 0.00044 with five copies)."""
    ref, var = _one_seed(n=400, flips=0.05, seed=8)          # 11 against 3: p = 0.057
    alone = stats.paired_comparison(ref, var)
    assert 0.05 < alone["p"] < 0.9                                         # a seed that decides nothing
    for k in (1, 2, 5):
        pooled = stats.pooled_comparison([(ref, var)] * k)
        assert pooled["p"] == pytest.approx(alone["p"], rel=1e-9)          # one seed: McNemar's exact test
        assert (pooled["diff"], pooled["lo"], pooled["hi"]) == pytest.approx((alone["diff"], alone["lo"],
                                                                                alone["hi"]))
        assert pooled["verdict"] == alone["verdict"] == "no clear difference"


def test_sign_flip_test_is_mcnemars_with_one_seed():
    for b, c in ((3, 9), (0, 6), (12, 12), (40, 61)):
        totals = np.array([-1] * b + [1] * c + [0] * 30)
        assert stats.sign_flip_p(totals) == pytest.approx(stats.mcnemar_exact(b, c), rel=1e-9)
    # sizes 2 and 1: sum 2 + 2 + 1 = 5; of the 8 patterns only (+,+,+) and (-,-,-) reach |sum| >= 5
    assert stats.sign_flip_p([2, 2, 1]) == pytest.approx(2 / 8)
    with pytest.raises(ValueError):
        stats.sign_flip_p([0.5, 1])


def test_pooling_different_seeds_lies_between_what_the_seeds_say():
    seeds = [_one_seed(seed=s, flips=f) for s, f in ((1, 0.04), (2, 0.06), (4, 0.08))]
    alone = [stats.paired_comparison(r, v) for r, v in seeds]
    pooled = stats.pooled_comparison(seeds)
    assert min(a["diff"] for a in alone) <= pooled["diff"] <= max(a["diff"] for a in alone)
    assert pooled["lo"] <= pooled["diff"] <= pooled["hi"]
    # its interval is no wider than the widest seed's, and no narrower than a sixth of the narrowest: pooling three
    # seeds of the same examples does not shrink it as if there were three times as many
    widths = [a["hi"] - a["lo"] for a in alone]
    assert min(widths) / 6 < pooled["hi"] - pooled["lo"] <= max(widths) + 1e-12


def test_pooled_comparison_refuses_runs_of_different_sizes():
    with pytest.raises(ValueError, match="different numbers"):
        stats.pooled_comparison([(np.ones(4, bool), np.ones(4, bool)), (np.ones(5, bool), np.ones(5, bool))])


def test_mean_interval_is_students_t():
    m, lo, hi = stats.mean_interval([0.70, 0.72, 0.74])
    half = 4.302652729911275 * 0.02 / math.sqrt(3)                         # t(0.975, 2) * sd / sqrt(n)
    assert m == pytest.approx(0.72) and lo == pytest.approx(0.72 - half) and hi == pytest.approx(0.72 + half)
    assert stats.mean_interval([0.5]) == (0.5, None, None)


def test_one_class_warning_fires_on_a_model_that_predicts_one_class_and_not_otherwise():
    labels = [0] * 60 + [1] * 40
    one = stats.prediction_warnings("baseline", [0] * 100, labels, ["neg", "pos"])
    assert [w["kind"] for w in one] == ["one_class"]
    assert "'neg' for 100%" in one[0]["message"] and "train.min_steps" in one[0]["message"]
    good = [0] * 55 + [1] * 5 + [1] * 35 + [0] * 5                         # 90% right, both classes
    assert stats.prediction_warnings("baseline", good, labels) == []


def test_below_majority_warning_and_the_teachers_own_advice():
    labels = [0] * 60 + [1] * 40
    # answers both classes but is right only 61% of the time: barely above the 60% majority rate
    pred = [0] * 45 + [1] * 15 + [1] * 16 + [0] * 24
    w = stats.prediction_warnings("teacher", pred, labels, shown_as="teacher")
    assert [x["kind"] for x in w] == ["below_majority"]
    assert "60.0%" in w[0]["message"] and "teacher.finetune_epochs" in w[0]["message"]
    assert stats.majority_rate(labels) == 0.6
