"""Statistics a reader can trust: paired comparisons of two models on the same test examples, and intervals
across seeds.

Two students that answer the same questions are compared example by example, not as two independent
accuracies: only the examples where exactly one of them is right carry information about which is better.

    paired_comparison(ref_correct, var_correct)   # one run: McNemar's exact test + paired bootstrap interval
    paired_units("f1", ref_units, var_units)      # a score from per-example units (entity F1, sentence chrF):
                                                  # paired bootstrap interval + approximate randomisation test
    pooled_comparison([(ref, var), ...])          # several seeds on the same test set, pooled per test example
    mean_interval([acc_seed0, acc_seed1, ...])    # Student's t interval of a mean across seeds
    binomial_halfwidth(p, n)                      # one accuracy's own 95% half-width
    difference_interval(p1, p2, n)                # two accuracies as independent binomials (runs without pairs)
    units_interval("f1", units)                   # one score made of per-example units: bootstrap interval

Seeds of one sweep answer the *same* test examples, so k seeds are not k times as many independent examples:
pooled_comparison works on each example's mean difference over the seeds. Its interval resamples test examples
(each keeping its answers from every seed: a cluster bootstrap) and its test flips the sign of each example's
difference (an exact sign-flip permutation test). k identical copies of one seed say exactly what that seed says,
and with one seed the test is McNemar's exact test.

Pure numpy/scipy: no torch, so the app can import it.
"""
from __future__ import annotations

import math

import numpy as np

from .vocab import TEACHER

LEVEL = 0.95          # every interval here is a 95% interval
BOOTSTRAP = 10_000    # resamples of the paired bootstrap


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts.

    b: examples only the first model got right; c: only the second. Under "no difference" each discordant
    example is a fair coin, so min(b, c) is Binomial(b + c, 1/2); the p-value doubles its lower tail (capped at 1).
    """
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be 0 or more")
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def p_text(p: float) -> str:
    """A p-value as the app and the command line write it: "p = 0.043", "p < 0.001"."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def binomial_halfwidth(p: float, n: int, z: float = 1.96) -> float:
    """Half-width of the normal-approximation 95% interval of an accuracy p measured on n examples."""
    if n <= 0:
        return float("nan")
    return z * math.sqrt(max(p * (1.0 - p), 0.0) / n)


def difference_interval(p1: float, p2: float, n: int, z: float = 1.96) -> tuple[float, float, float]:
    """p1 - p2 and its approximate 95% interval, treating both accuracies as independent binomials on n examples."""
    d = p1 - p2
    half = z * math.sqrt(max(p1 * (1 - p1), 0.0) / n + max(p2 * (1 - p2), 0.0) / n) if n > 0 else float("nan")
    return d, d - half, d + half


def _as_correct(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one value per test example")
    return a.astype(bool)


def bootstrap_mean(values, n_boot: int = BOOTSTRAP, seed: int = 0, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): the mean of per-example `values` and its percentile bootstrap interval, resampling the
    examples with replacement.

    The values take few distinct levels (-1, 0, 1 for one pair of answers; multiples of 1/k for a mean over k
    seeds), so a resample is drawn as how many times each level is picked (a multinomial): the same
    distribution as picking examples one by one, in memory that does not grow with the number of examples."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or len(v) == 0:
        raise ValueError("one value per test example is needed")
    levels, counts = np.unique(v, return_counts=True)
    rng = np.random.default_rng(seed)
    picks = rng.multinomial(len(v), counts / len(v), size=n_boot)       # (n_boot, levels)
    boots = picks @ levels / len(v)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    return float(v.mean()), float(lo), float(hi)


def paired_bootstrap(ref_correct, var_correct, n_boot: int = BOOTSTRAP, seed: int = 0,
                     level: float = LEVEL) -> tuple[float, float, float]:
    """(difference, low, high): var accuracy minus ref accuracy and its percentile bootstrap interval, the
    examples resampled as pairs (both models' answers on one example move together)."""
    ref, var = _as_correct(ref_correct, "ref_correct"), _as_correct(var_correct, "var_correct")
    if len(ref) != len(var):
        raise ValueError(f"the two models answered different numbers of examples ({len(ref)} and {len(var)})")
    if len(ref) == 0:
        raise ValueError("no test examples to compare")
    return bootstrap_mean(var.astype(np.int8) - ref.astype(np.int8), n_boot, seed, level)


def _verdict(p: float, diff: float) -> str:
    return "no clear difference" if p >= 1 - LEVEL else ("better" if diff > 0 else "worse")


def paired_comparison(ref_correct, var_correct, seed: int = 0) -> dict:
    """Everything the pages show for one variant against the reference on the same examples.

    Keys: n, ref_accuracy, accuracy, diff, lo, hi (bootstrap interval of diff), ref_only (b), variant_only (c),
    p (McNemar exact, two-sided), verdict ("better", "worse" or "no clear difference" at the 5% level)."""
    ref, var = _as_correct(ref_correct, "ref_correct"), _as_correct(var_correct, "var_correct")
    diff, lo, hi = paired_bootstrap(ref, var, seed=seed)
    b, c = int(np.sum(ref & ~var)), int(np.sum(~ref & var))
    p = mcnemar_exact(b, c)
    return {"n": int(len(ref)), "ref_accuracy": float(ref.mean()), "accuracy": float(var.mean()),
            "diff": diff, "lo": lo, "hi": hi, "ref_only": b, "variant_only": c, "p": p, "verdict": _verdict(p, c - b)}


STATISTICS = ("mean", "f1", "ratio")    # how per-example units make a task's score (paired_units)
COUNTS = {"f1": 3, "ratio": 2}          # the statistics made of counts summed over examples: their width


def _units(x, statistic: str, name: str) -> np.ndarray:
    """Per-example units as a float array: (N,) scores for "mean", (N, 3) [true positives, predicted, gold] for
    "f1", (N, 2) [numerator, denominator] for "ratio" (tokens right and tokens, per passage)."""
    a = np.asarray(x, dtype=np.float64)
    if statistic == "mean":
        a = a.reshape(len(a), -1)[:, 0] if a.ndim == 2 and a.shape[1] == 1 else a
        if a.ndim != 1:
            raise ValueError(f"{name}: a mean is over one score per example, not units of shape {a.shape}")
    elif statistic == "f1":
        if a.ndim != 2 or a.shape[1] != 3:
            raise ValueError(f"{name}: F1 is made of [true positives, predicted, gold] per example, not {a.shape}")
    elif statistic == "ratio":
        if a.ndim != 2 or a.shape[1] != 2:
            raise ValueError(f"{name}: a ratio is made of [numerator, denominator] per example, not {a.shape}")
    else:
        raise ValueError(f"unknown statistic {statistic!r}; known: {', '.join(STATISTICS)}")
    return a


def unit_score(statistic: str, units: np.ndarray, axis: int = 0) -> np.ndarray | float:
    """The task's score from per-example units summed (or averaged) along `axis`: the mean of the scores, or
    micro F1 = 2 tp / (predicted + gold) (1 when there is nothing to find and nothing was found), or the summed
    numerators over the summed denominators (0 when there is no denominator)."""
    if statistic == "mean":
        return units.mean(axis=axis)
    total = units.sum(axis=axis)
    if statistic == "ratio":
        return np.where(total[..., 1] > 0, total[..., 0] / np.maximum(total[..., 1], 1e-12), 0.0)
    tp, pred, gold = total[..., 0], total[..., 1], total[..., 2]
    return np.where(pred + gold > 0, 2 * tp / np.maximum(pred + gold, 1e-12), 1.0)


def paired_units(statistic: str, ref_units, var_units, n_boot: int = BOOTSTRAP, seed: int = 0,
                 level: float = LEVEL) -> dict:
    """A variant against the reference on the same test examples, for a score made of per-example units: the mean
    of a per-example score (sentence chrF) or F1 from per-example counts (entities).

    The interval is the paired bootstrap (Koehn 2004): examples are resampled, each keeping both models' units, and
    the score difference is recomputed on each resample. The p-value is the paired approximate randomisation test
    (Riezler & Maxwell 2005): under "no difference" the two models' units can be swapped on any example; it is the
    share of random swaps whose difference is at least as far from 0 as the observed one (with the observed
    assignment counted, so never 0). Keys as paired_comparison's: ref_only / variant_only count the examples on
    which the reference / the variant scored higher."""
    ref, var = _units(ref_units, statistic, "ref_units"), _units(var_units, statistic, "var_units")
    if ref.shape != var.shape:
        raise ValueError(f"the two models were scored on different examples ({len(ref)} and {len(var)})")
    n = len(ref)
    if n == 0:
        raise ValueError("no test examples to compare")
    ref_score, var_score = float(unit_score(statistic, ref)), float(unit_score(statistic, var))
    diff = var_score - ref_score
    rng = np.random.default_rng(seed)
    boots, flips = [], []
    chunk = max(1, 2_000_000 // max(1, n * COUNTS.get(statistic, 1)))
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(k, n))
        boots.append(unit_score(statistic, var[idx], axis=1) - unit_score(statistic, ref[idx], axis=1))
        swap = rng.random((k, n)) < 0.5
        if statistic in COUNTS:
            swap = swap[..., None]
        a, b = np.where(swap, var, ref), np.where(swap, ref, var)
        flips.append(unit_score(statistic, b, axis=1) - unit_score(statistic, a, axis=1))
    boots, flips = np.concatenate(boots), np.concatenate(flips)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    p = float((np.sum(np.abs(flips) >= abs(diff) - 1e-12) + 1) / (len(flips) + 1)) if diff != 0 else 1.0
    each_ref = unit_score(statistic, ref[:, None], axis=1) if statistic in COUNTS else ref
    each_var = unit_score(statistic, var[:, None], axis=1) if statistic in COUNTS else var
    return {"n": int(n), "ref_accuracy": ref_score, "accuracy": var_score, "diff": float(diff), "lo": float(lo),
            "hi": float(hi), "ref_only": int(np.sum(each_ref > each_var)),
            "variant_only": int(np.sum(each_var > each_ref)), "p": p, "verdict": _verdict(p, diff),
            "statistic": statistic}


def units_interval(statistic: str, units, n_boot: int = BOOTSTRAP, seed: int = 0,
                   level: float = LEVEL) -> tuple[float, float, float]:
    """(score, low, high): one model's score made of per-example units (entity F1, mean sentence chrF, next-token
    accuracy) and its percentile bootstrap interval, the examples resampled with replacement and the score
    recomputed from their units (a score of units has no binomial interval of its own)."""
    a = _units(units, statistic, "units")
    n = len(a)
    if n == 0:
        raise ValueError("no test examples to score")
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // max(1, n * COUNTS.get(statistic, 1)))
    boots = [unit_score(statistic, a[rng.integers(0, n, size=(min(chunk, n_boot - start), n))], axis=1)
             for start in range(0, n_boot, chunk)]
    alpha = (1 - level) / 2
    lo, hi = np.quantile(np.concatenate(boots), [alpha, 1 - alpha])
    return float(unit_score(statistic, a)), float(lo), float(hi)


def test_label(comparison: dict) -> str:
    """The paired test a comparison's p-value comes from, in a word: "McNemar" (right or wrong per example) or
    "randomisation" (a score made of per-example units: paired_units)."""
    return "randomisation" if comparison.get("statistic") else "McNemar"


def sign_flip_p(totals) -> float:
    """Two-sided exact p-value of the sign-flip permutation test on integer per-example differences `totals`.

    Under "no difference" the two models' labels can be swapped on any example, which flips the sign of its
    difference; the p-value is the share of the 2^N sign patterns whose sum is at least as far from 0 as the
    observed sum. Exact: the examples with difference of size m contribute m * (2 Binomial(n_m, 1/2) - n_m),
    and these few distributions are convolved. With differences in {-1, 0, 1} (one seed) this is McNemar's exact
    test."""
    a = np.asarray(totals)
    if a.ndim != 1 or not np.all(a == np.round(a)):
        raise ValueError("totals must be whole numbers, one per test example")
    a = a.astype(np.int64)
    observed = abs(int(a.sum()))
    if observed == 0:
        return 1.0
    from scipy.signal import fftconvolve   # deferred on purpose, as scipy.stats below
    from scipy.stats import binom
    sizes, counts = np.unique(np.abs(a[a != 0]), return_counts=True)
    reach = int(np.sum(sizes * counts))                       # the sum lies in [-reach, reach]
    pmf = np.ones(1)
    for m, n in zip(sizes.tolist(), counts.tolist()):
        part = np.zeros(2 * m * n + 1)                        # support -m n .. m n, in steps of 2 m
        part[::2 * m] = binom.pmf(np.arange(n + 1), n, 0.5)
        pmf = fftconvolve(pmf, part) if len(pmf) > 1 else part
    pmf = np.clip(pmf, 0.0, None)                             # the FFT leaves tiny negative noise
    values = np.arange(-reach, reach + 1)
    return float(min(1.0, pmf[np.abs(values) >= observed].sum()))


def pooled_comparison(pairs, seed: int = 0) -> dict:
    """A variant against the reference over several seeds' (ref_correct, var_correct) on the same test set.

    Every seed answers the same test examples, so they are pooled per example: d_i, example i's difference
    (variant right minus reference right) averaged over the seeds, is one observation. `diff` is the mean of d,
    lo/hi a cluster bootstrap interval (examples resampled, each with its answers from every seed), `p` the exact
    sign-flip test of d (sign_flip_p). Copies of one seed's answers therefore say no more than that seed alone.
    ref_only/variant_only count the discordant answers over all seeds (a description, not the test); n is the
    number of test examples, answers = n times the runs."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError("no runs to pool")
    refs = [_as_correct(r, "ref_correct") for r, _ in pairs]
    vars_ = [_as_correct(v, "var_correct") for _, v in pairs]
    n = len(refs[0])
    if n == 0:
        raise ValueError("no test examples to compare")
    if any(len(x) != n for x in refs + vars_):
        raise ValueError("the runs answered different numbers of test examples: they cannot be pooled per example")
    ref, var = np.stack(refs), np.stack(vars_)                           # (k, N)
    totals = var.astype(np.int64).sum(0) - ref.astype(np.int64).sum(0)  # (N,) in -k..k
    diff, lo, hi = bootstrap_mean(totals / len(pairs), seed=seed)
    p = sign_flip_p(totals)
    return {"n": n, "answers": int(ref.size), "runs": len(pairs), "ref_accuracy": float(ref.mean()),
            "accuracy": float(var.mean()), "diff": diff, "lo": lo, "hi": hi,
            "ref_only": int(np.sum(ref & ~var)), "variant_only": int(np.sum(~ref & var)), "p": p,
            "verdict": _verdict(p, diff), "method": POOLED_METHOD}


POOLED_METHOD = ("per test example over the seeds: the mean difference of each example, a bootstrap interval "
                 "resampling examples (each with its answers from every seed), an exact sign-flip test")


def pooled_units(statistic: str, pairs, seed: int = 0) -> dict:
    """A variant against the reference over several seeds' (ref_units, var_units) on the same test set, for a score
    made of per-example units (paired_units). The seeds are pooled per example: F1 counts are summed over the seeds
    (micro F1 over every seed's answers), per-example scores averaged; then paired_units resamples examples, each
    with its units from every seed (a cluster bootstrap), and swaps the two models' pooled units per example."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError("no runs to pool")
    refs = [_units(r, statistic, "ref_units") for r, _ in pairs]
    vars_ = [_units(v, statistic, "var_units") for _, v in pairs]
    if any(x.shape != refs[0].shape for x in refs + vars_):
        raise ValueError("the runs scored different numbers of test examples: they cannot be pooled per example")
    refs, vars_ = np.stack(refs), np.stack(vars_)                  # (k, N) or (k, N, 3)
    pool = np.sum if statistic in COUNTS else np.mean
    out = paired_units(statistic, pool(refs, axis=0), pool(vars_, axis=0), seed=seed)
    return {**out, "answers": int(refs.shape[0] * refs.shape[1]), "runs": len(pairs),
            "method": POOLED_UNITS_METHOD}


POOLED_UNITS_METHOD = ("per test example over the seeds: each example's units pooled over the seeds, a bootstrap "
                       "interval resampling examples (each with its units from every seed), an approximate "
                       "randomisation test swapping the two models' units per example")


def mean_interval(values, level: float = LEVEL) -> tuple[float, float | None, float | None]:
    """(mean, low, high): Student's t interval of the mean of per-seed values; no interval from one value."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    if len(x) == 0:
        raise ValueError("no values")
    m = float(x.mean())
    if len(x) < 2:
        return m, None, None
    from scipy.stats import t  # deferred on purpose: scipy.stats is slow to import and only sweeps need it
    half = float(t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return m, m - half, m + half


def majority_rate(labels) -> float:
    """Share of the most common class: what always answering that class scores."""
    y = np.asarray(labels)
    if len(y) == 0:
        raise ValueError("no labels")
    return float(np.bincount(y).max() / len(y))


ONE_CLASS_SHARE = 0.95   # a model giving one class to more than this share of the test set "predicts one class"
MAJORITY_MARGIN = 0.02   # beating the majority-class rate by less than this many points is no real gain


def teacher_below_reference(scores: dict, reference: str | None, shown_as: str, metric: str = "accuracy") -> list[dict]:
    """A warning when the teacher's test score is below the labels-only reference's: it knows less than the data,
    so distilling from it pulls the students towards worse answers. Each warning: {"model", "kind", "message"}."""
    t, r = scores.get(TEACHER), scores.get(reference) if reference else None
    if t is None or r is None or t >= r:
        return []
    return [{"model": TEACHER, "kind": "below_reference", "message": (
        f"The teacher's test {metric} ({t:.1%}) is below the {shown_as}'s ({r:.1%}), which learnt from the data "
        f"alone: the teacher knows less than the data, and distilling from it pulls the students towards its "
        f"answers. Train it longer or on more data (teacher.finetune_epochs; a teacher built here: the task's "
        f"teacher_epochs, e.g. language_model.teacher_epochs), or name a stronger teacher (teacher.source).")}]


def prediction_warnings(model: str, predictions, labels, label_names=None, shown_as: str | None = None) -> list[dict]:
    """What is wrong with a model's test predictions, if anything: it (nearly) always answers one class, or
    it does not beat always answering the most common class. Each warning: {"model", "kind", "message"}."""
    pred, y = np.asarray(predictions, dtype=int), np.asarray(labels, dtype=int)
    if len(pred) != len(y) or len(y) == 0:
        raise ValueError("one prediction per test label is needed")
    names = list(label_names) if label_names is not None else [str(i) for i in range(int(max(y.max(), pred.max())) + 1)]
    counts = np.bincount(pred, minlength=len(names))
    top = int(counts.argmax())
    share = float(counts[top] / len(pred))
    acc, base = float((pred == y).mean()), majority_rate(y)
    who = shown_as or model
    if model == TEACHER:
        fix = ("Fine-tune it longer (teacher.finetune_epochs, teacher.finetune_min_steps; for a built-in image "
               "teacher, image.teacher_epochs) or on more data: until it tells the classes apart, distilling from it "
               "cannot help.")
    else:
        fix = ("Train longer (train.epochs or train.min_steps), try another learning rate, or give it more data; "
               "if the teacher has the same problem, fix the teacher first.")
    out = []
    if share > ONE_CLASS_SHARE and base < ONE_CLASS_SHARE:
        out.append({"model": model, "kind": "one_class", "message": (
            f"The {who} answers {names[top]!r} for {share:.0%} of the test examples ({acc:.1%} right, against "
            f"{base:.1%} for always answering the most common class): it has not learned to tell the classes "
            f"apart. {fix}")})
    if acc < base + MAJORITY_MARGIN and not out:      # one class already says it
        out.append({"model": model, "kind": "below_majority", "message": (
            f"The {who} reaches {acc:.1%}, {'below' if acc < base else 'hardly above'} the {base:.1%} that always "
            f"answering the most common class scores: its accuracy means little yet. {fix}")})
    return out
