"""Perplexity compared passage by passage: a variant against the reference on the same held-out passages.

    compare_perplexity(details["baseline"], details["forward_kl"])
    # {"ref_perplexity", "perplexity", "ratio" (variant / reference), "lo", "hi" (the ratio's interval), "p",
    #  "verdict": "better" when the variant's perplexity is clearly lower, ...}

The units are each passage's summed negative log-likelihood and its token count (LMModality.predict's details
"passage_units"); the statistic is their ratio, the mean NLL per token, whose exp is the perplexity. The interval and
p-value are stats.paired_units' (a paired bootstrap over passages, an approximate randomisation test); lower is
better, so a variant whose mean NLL is clearly lower is "better".
"""
from __future__ import annotations

import math

import numpy as np

from ... import stats


def nll_units(details: dict) -> np.ndarray:
    """(passages, 2): each held-out passage's summed NLL and its tokens."""
    u = np.asarray(details.get("passage_units") or [], dtype=np.float64)
    if u.ndim != 2 or u.shape[1] < 4:
        raise ValueError("these details hold no per-passage units (a run written before they were recorded)")
    return u[:, [0, 3]]


def compare_perplexity(ref_details: dict, var_details: dict, seed: int = 0) -> dict:
    r = stats.paired_units("ratio", nll_units(ref_details), nll_units(var_details), seed=seed)
    return _as_perplexity(r)


def pooled_perplexity(pairs, seed: int = 0) -> dict:
    """The same over several seeds' (reference details, variant details) on the same test passages."""
    r = stats.pooled_units("ratio", [(nll_units(a), nll_units(b)) for a, b in pairs], seed=seed)
    return {**_as_perplexity(r), "runs": r["runs"]}


def _as_perplexity(r: dict) -> dict:
    """A paired comparison of mean NLL as perplexities: the ratio exp(diff) and its interval; lower is better."""
    return {"n": r["n"], "ref_perplexity": math.exp(r["ref_accuracy"]), "perplexity": math.exp(r["accuracy"]),
            "ratio": math.exp(r["diff"]), "lo": math.exp(r["lo"]), "hi": math.exp(r["hi"]), "p": r["p"],
            "verdict": ("no clear difference" if r["p"] >= 1 - stats.LEVEL else
                        "better" if r["diff"] < 0 else "worse"), "lower_passages": r["ref_only"],
            "higher_passages": r["variant_only"]}
