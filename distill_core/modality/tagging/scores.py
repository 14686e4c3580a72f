"""Entity-level scores of predicted tags against the gold tags, with seqeval (the CoNLL evaluation's rules).

An entity is a span of one type: it starts at a B- tag (or at an I- tag that does not continue an entity of its
type) and runs over the I- tags of its type after it. A predicted entity counts only when its type and both ends are
the gold entity's. Scores are micro averages over every entity of every sentence; per type, seqeval's report.

    details = entity_details(gold, pred)          # {"precision", "recall", "f1", "token_accuracy", "per_type"}
    units = entity_units(gold, pred)              # per sentence [true positives, predicted, gold]
    f1_of_units(units)                            # = details["f1"]: 2 tp / (predicted + gold)

The units let the session compare two models sentence by sentence (a paired bootstrap over sentences): summed over
any set of sentences, they give that set's micro F1.
"""
from __future__ import annotations

import warnings

from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities


def entity_units(gold: list[list[str]], pred: list[list[str]]) -> list[list[int]]:
    """[true positives, predicted entities, gold entities] of each sentence. seqeval reads a corpus as its sentences
    one after another with an O between them, so no entity crosses a sentence and these sum to its micro counts."""
    out = []
    for g, p in zip(gold, pred, strict=True):
        true, found = set(get_entities(list(g))), set(get_entities(list(p)))
        out.append([len(true & found), len(found), len(true)])
    return out


def f1_of_units(units: list[list[int]]) -> float:
    """Micro F1 of summed units: 2 tp / (predicted + gold); 0 when there is no entity on either side."""
    tp = sum(u[0] for u in units)
    total = sum(u[1] + u[2] for u in units)
    return 2 * tp / total if total else 0.0


def entity_details(gold: list[list[str]], pred: list[list[str]], scored: tuple[int, int] | None = None) -> dict:
    """Micro precision, recall and F1 over entities, token accuracy, and each entity type's precision, recall, F1
    and support (its gold entities; a type the models predict but the gold never holds has support 0).

    scored: (tags right, tags scored) counted where the tags were scored (a word's first sub-token); by default
    every word of `gold` against `pred`."""
    if scored is None:
        pairs = [(a, b) for g, p in zip(gold, pred, strict=True) for a, b in zip(g, p, strict=True)]
        scored = (sum(a == b for a, b in pairs), len(pairs))
    with warnings.catch_warnings():          # seqeval warns of types it never saw predicted; they score 0
        warnings.simplefilter("ignore")
        report = classification_report(gold, pred, output_dict=True, zero_division=0) if gold else {}
        micro = {"precision": float(precision_score(gold, pred, zero_division=0)) if gold else 0.0,
                 "recall": float(recall_score(gold, pred, zero_division=0)) if gold else 0.0,
                 "f1": float(f1_score(gold, pred, zero_division=0)) if gold else 0.0}
    per_type = {kind: {"precision": float(r["precision"]), "recall": float(r["recall"]),
                       "f1": float(r["f1-score"]), "support": int(r["support"])}
                for kind, r in sorted(report.items()) if not kind.endswith(" avg")}
    return {**micro, "token_accuracy": scored[0] / scored[1] if scored[1] else 0.0, "per_type": per_type}
