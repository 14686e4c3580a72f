"""What a run's numbers say, in words: each variant against the reference (better / worse / no clear difference),
how its attention moved towards the teacher and what that can be credited to, robustness, attributions, sweeps
across seeds, pruning and several teachers. Pure functions of a run's records and summaries (no Streamlit, no
plotly): the app's pages, the HTML report and the command line word their verdicts with them.

Also the small readers these verdicts share with the figures: the variants of a run's records (record_variants),
one variant's divergence per epoch (divergence_series), which side of a difference is closer (closer_sides).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .stats import difference_interval, p_text, test_label
from .vocab import (ATTENTION_LOSSES, ENSEMBLE, LABEL_LOSS, LOSS_SOURCES, LOWER_IS_CLOSER, METRIC_LABELS, TEACHER,
                    model_label, run_variants)


def record_variants(records: Sequence[dict], variants: Sequence[str] | None) -> list[str]:
    """The variants given, or when None those the records name, in run order."""
    return list(variants) if variants is not None else run_variants({}, list(records))


def divergence_series(records: Sequence[dict], student: str, metric: str) -> tuple[list[int], np.ndarray]:
    """Epochs and the metric per epoch, mapped pair and compared head: (epochs, (E, P, H))."""
    recs = sorted((r for r in records if r.get("student") == student and metric in r.get("attention", {})),
                  key=lambda r: r["epoch"])
    if not recs:
        return [], np.zeros((0, 0, 0))
    return [r["epoch"] for r in recs], np.asarray([r["attention"][metric] for r in recs], dtype=np.float64)


def the(name: str, reference: str | None = None) -> str:
    """A model named in a sentence: "the baseline student", "the teacher", "variant kd_att_kl"."""
    label = model_label(name, reference)
    return f"the {label}" if name == TEACHER or label.endswith(" student") else f"variant {label}"


def cap(text: str) -> str:
    """The text with its first letter upper-case (a sentence that starts with a model's name)."""
    return text[:1].upper() + text[1:]


def and_list(items: Sequence[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    items = list(items)
    return "" if not items else items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _moved(first: float, last: float) -> str:
    if math.isclose(first, last, rel_tol=1e-3, abs_tol=1e-12):
        return f"stayed at {last:.3g}"
    return f"{'fell' if last < first else 'rose'} from {first:.3g} to {last:.3g}"


def _decimals(d: float) -> int:
    """Decimals that show a difference d between two similarities: 2, more for a smaller one."""
    return 2 if d == 0 or not math.isfinite(d) else max(2, min(6, -math.floor(math.log10(abs(d)))))


def _similarity_gap(a: float, b: float) -> str:
    """Two similarities and their difference, with enough decimals to show it: "0.94 vs 0.75, +0.19"."""
    dec = _decimals(a - b)
    return f"{a:.{dec}f} vs {b:.{dec}f}, {a - b:+.{dec}f}"


def _closeness_sentences(verdicts: list[tuple], ref: str, epoch: int, name, metric: str = "js") -> list[str]:
    """Sentences saying which variants attend more like the teacher than the reference at `epoch`.

    ref: the reference as named in a sentence ("the baseline student"); name(v): a variant as named in one.
    Divergences (lower = closer) compare as ratios ("4× closer"); similarities, where a ratio means nothing, as
    differences ("cosine similarity 0.94 vs 0.75, +0.19")."""
    ratio_ok = LOWER_IS_CLOSER.get(metric, True)
    label = METRIC_LABELS.get(metric, metric)
    if len(verdicts) == 1:
        v, kind, ratio, a, b = verdicts[0][:5]
        if ratio_ok:
            closer, further = f"{ratio:.3g}× closer to the teacher's than {ref}'s", \
                f"not closer to the teacher's than {ref}'s ({ref}'s is {ratio:.3g}× closer)"
        else:
            closer, further = f"closer to the teacher's than {ref}'s ({label} {_similarity_gap(a, b)})", \
                f"not closer to the teacher's than {ref}'s ({label} {_similarity_gap(a, b)})"
        return [{"closer": f"At epoch {epoch} {name(v)}'s attention is {closer}: its teacher losses pulled it "
                           f"towards the teacher.",
                 "further": f"At epoch {epoch} {name(v)}'s attention is {further}: its teacher losses have not "
                            f"pulled it towards the teacher.",
                 "level": f"At epoch {epoch} {name(v)} and {ref} are about equally close to the teacher."}[kind]]
    out = []
    short = {x[0]: model_label(x[0]) for x in verdicts}
    if ratio_ok:
        closer = [f"{short[v]} ({r:.3g}× closer)" for v, k, r, *_ in verdicts if k == "closer"]
        further = [f"{short[v]} ({ref}'s is {r:.3g}× closer)" for v, k, r, *_ in verdicts if k == "further"]
        scale = ""
    else:
        closer = [f"{short[v]} ({_similarity_gap(a, b)})" for v, k, _, a, b, *_ in verdicts if k == "closer"]
        further = [f"{short[v]} ({_similarity_gap(a, b)})" for v, k, _, a, b, *_ in verdicts if k == "further"]
        scale = f" (mean {label}, the variant's vs {ref}'s; higher = closer)"
    level = [short[v] for v, k, *_ in verdicts if k == "level"]
    if closer:
        out.append(f"At epoch {epoch}, {len(closer)} of {len(verdicts)} variants attend more like the teacher than "
                   f"{ref}{scale}: {', '.join(closer)}.")
    if further:
        out.append(f"Not closer to the teacher than {ref}{scale if not closer else ''}: {', '.join(further)}; "
                   f"{'their teacher losses have' if len(further) > 1 else 'its teacher losses have'} not pulled "
                   f"{'their' if len(further) > 1 else 'its'} attention towards the teacher's.")
    if level:
        out.append(f"About as close to the teacher as {ref}: {', '.join(level)}.")
    return out


ABOUT_AS_CLOSE = 0.05       # distances to the teacher within 5% of each other read as "about equally close"


def _verdicts_against(series: dict, ref: str, others: list[str], last: dict, distance) -> list[tuple]:
    """(variant, "closer" | "further" | "level", ratio, its mean, the reference's mean, epoch) of each variant
    against the reference, at their last common epoch; series: variant -> (epochs, mean per epoch, (E, P, H)
    values). The ratio is of the distances to the teacher (larger over smaller); the means are the metric's."""
    verdicts = []
    for v in others:
        e_common = min(last[v], last[ref])
        if e_common not in series[v][0] or e_common not in series[ref][0]:
            continue
        mv = float(series[v][1][series[v][0].index(e_common)])
        mr = float(series[ref][1][series[ref][0].index(e_common)])
        dv, dr = distance(mv), distance(mr)
        if (dv <= 1e-12 and dr <= 1e-12) or math.isclose(dv, dr, rel_tol=ABOUT_AS_CLOSE):
            verdicts.append((v, "level", 1.0, mv, mr, e_common))
        elif dv < dr:
            verdicts.append((v, "closer", dr / max(dv, 1e-300), mv, mr, e_common))
        else:
            verdicts.append((v, "further", dv / max(dr, 1e-300), mv, mr, e_common))
    return verdicts


def _largest_move(series: dict, candidates: list[str], distance, lower: bool = True) -> tuple | None:
    """(change, variant, pair index, first epoch, first value, last value) of the mapped pair that moved most
    towards the teacher among `candidates`, or None. change: end / start distance for a divergence (below 1: it
    moved closer), the gain in similarity for a similarity (above 0: it moved closer)."""
    best = None
    for v in candidates:
        e, _, vals = series[v]
        first, end = vals[0].mean(-1), vals[-1].mean(-1)
        if len(first) < 2 or len(e) < 2:
            continue
        if lower:
            start = np.array([distance(x) for x in first])
            if not np.all(start > 1e-12):
                continue
            change = np.array([distance(x) for x in end]) / start
            k = int(np.argmin(change))
            better = best is None or change[k] < best[0]
        else:
            change = end - first
            k = int(np.argmax(change))
            better = best is None or change[k] > best[0]
        if better:
            best = (float(change[k]), v, k, e[0], float(first[k]), float(end[k]))
    return best


def _split_losses(weights: dict) -> tuple[list[str], list[str]]:
    """A variant's active attention losses, and its other teacher losses (everything but the labels' loss)."""
    active = [k for k, w in (weights or {}).items() if w and w > 0]
    att = [k for k in active if k in ATTENTION_LOSSES or k.startswith("attention")]
    return att, [k for k in active if k != LABEL_LOSS and k not in att]


def _attribution_sentences(series: dict, verdicts: list[tuple], losses: dict, ref: str | None, last: dict,
                           distance, metric: str, the_) -> list[str]:
    """What the run can and cannot credit each variant's closer attention to, from its weighted losses.

    A variant with an attention loss and another teacher loss is compared with a variant that has the same other
    teacher losses and no attention loss when the run has one; without one, its closer attention cannot be
    credited to the attention loss alone. A variant closer than the reference with no attention loss got there
    from its other teacher losses alone."""
    kinds = {x[0]: x[1] for x in verdicts}
    label = METRIC_LABELS.get(metric, metric)
    out = []
    for v in series:
        if v == ref or v not in losses:
            continue
        att, other = _split_losses(losses[v])
        who, from_ = cap(the_(v)), and_list([LOSS_SOURCES.get(k, f"the teacher through {k}") for k in other])
        if att and other:
            twins = [w for w in series if w != v and w in losses and not _split_losses(losses[w])[0]
                     and set(_split_losses(losses[w])[1]) == set(other)]
            twins.sort(key=lambda w: any(losses[w].get(k) != losses[v].get(k) for k in other))   # same weights first
            pair = _verdicts_against(series, twins[0], [v], last, distance) if twins else []
            if pair:
                w, (_, kind, ratio, a, b, e) = twins[0], pair[0]
                if LOWER_IS_CLOSER.get(metric, True):
                    c_note, f_note = f"{ratio:.3g}× closer", f"{w}'s is {ratio:.3g}× closer"
                else:
                    c_note = f_note = f"{label} {_similarity_gap(a, b)}"
                shared = f"{who} and {the_(w)} both learn from {and_list(other)}; only {v} adds {and_list(att)}"
                out.append({
                    "closer": f"{shared}, and at epoch {e} its attention is closer to the teacher's than {w}'s "
                              f"({c_note}): that difference is what the attention loss added.",
                    "further": f"{shared}, yet at epoch {e} its attention is not closer to the teacher's than "
                               f"{w}'s ({f_note}): in this run the attention loss added nothing that "
                               f"{and_list(other)} had not done.",
                    "level": f"{shared}, and at epoch {e} their attention is about equally close to the "
                             f"teacher's: the attention loss added nothing measurable on top of {and_list(other)}."
                }[kind])
            elif kinds.get(v) == "closer":
                out.append(f"{who} learns from {and_list(other)} as well as {and_list(att)}, so this run cannot "
                           f"credit its closer attention to the attention loss alone: learning from {from_} can move "
                           f"attention too. A variant with {and_list(other)} and no attention loss would tell the two "
                           f"apart.")
        elif att and kinds.get(v) == "closer":
            out.append(f"{who}'s only teacher loss is {and_list(att)}, so its closer attention can be credited to "
                       f"that loss.")
        elif other and kinds.get(v) == "closer":
            than = f" than {the_(ref)}'s" if ref else ""
            out.append(f"{who} has no attention loss: learning from {from_} alone ({and_list(other)}) brought its "
                       f"attention closer to the teacher's{than}.")
    return out


def _largest_move_sentence(best: tuple, labels: Sequence[str] | None, metric: str, reference: str | None) -> str:
    """The sentence on the mapped pair that moved most towards the teacher (best: what _largest_move returns)."""
    change, v, k, e0, first, end = best
    lab = labels[k] if labels is not None and k < len(labels) else f"pair {k}"
    lower = LOWER_IS_CLOSER.get(metric, True)
    if lower and change < 1:
        return (f"The largest move towards the teacher was in {lab} of {the(v, reference)}: its distance to "
                f"the teacher shrank to {change:.0%} of its epoch-{e0} value.")
    if not lower and change > 0:
        dec = _decimals(change)
        return (f"The largest move towards the teacher was in {lab} of {the(v, reference)}: its "
                f"{METRIC_LABELS.get(metric, metric)} rose from {first:.{dec}f} at epoch {e0} to {end:.{dec}f} "
                f"({change:+.{dec}f}).")
    return "No mapped layer of any variant moved closer to the teacher."


def divergence_reading(records: Sequence[dict], metric: str, labels: Sequence[str] | None = None,
                       variants: Sequence[str] | None = None, reference: str | None = None,
                       losses: dict[str, dict[str, float]] | None = None) -> str:
    """A plain-language reading of how the metric moved, every variant against the reference, from the records.

    losses: each variant's weighted losses ({variant: {loss: weight}}, from the run's config); with them the
    reading ends with what the run can and cannot credit each variant's closer attention to."""
    name = METRIC_LABELS.get(metric, metric)
    lower = LOWER_IS_CLOSER.get(metric, True)
    variants = record_variants(records, variants)
    series = {v: divergence_series(records, v, metric) for v in variants}
    series = {v: (e, vals.mean(axis=(1, 2)), vals) for v, (e, vals) in series.items() if e}
    if not series:
        return f"No {name} has been recorded yet."

    def distance(x: float) -> float:    # how far from the teacher: the metric, or 1 - cosine
        return x if lower else 1.0 - x

    def lbl(v: str) -> str:
        return model_label(v, reference)

    last = {v: e[-1] for v, (e, _, _) in series.items()}
    if all(len(e) == 1 for e, _, _ in series.values()):
        e0 = min(last.values())
        values = ", ".join(f"{lbl(v)} {m[0]:.3g}" for v, (_, m, _) in series.items())
        return f"Only epoch {e0} has been recorded so far. Mean {name} to the teacher: {values}."
    parts = []
    ref = reference if reference in series else None
    others = [v for v in series if v != ref]
    verdicts = []
    if ref is not None and others:
        en = min(last.values())
        verdicts = _verdicts_against(series, ref, others, last, distance)
        parts += _closeness_sentences(verdicts, the(ref, reference), en, lambda x: the(x, reference), metric)
    elif len(series) > 1:
        en = min(last.values())
        at = {v: distance(m[e.index(en)]) for v, (e, m, _) in series.items() if en in e}
        best, worst = min(at, key=at.get), max(at, key=at.get)
        parts.append(f"This run has no labels-only reference variant to measure the teacher's effect against. At "
                     f"epoch {en} the attention closest to the teacher's is {the(best, reference)}'s, the furthest "
                     f"{the(worst, reference)}'s.")
    e_first, e_last = min(e[0] for e, _, _ in series.values()), max(last.values())
    moves = "; ".join(f"{lbl(v)} {_moved(m[0], m[-1])}"
                      + ("" if (e[0], e[-1]) == (e_first, e_last) else f" (epochs {e[0]}–{e[-1]})")
                      for v, (e, m, _) in series.items())
    parts.append(f"Mean {name} from epoch {e_first} to epoch {e_last}: {moves}.")
    best = _largest_move(series, others if ref is not None else list(series), distance, lower)
    if best is not None:
        parts.append(_largest_move_sentence(best, labels, metric, reference))
    if losses:
        parts += _attribution_sentences(series, verdicts, losses, ref, last, distance, metric,
                                        lambda x: the(x, reference))
    return " ".join(parts)


SWEEP_HINT = "a sweep across seeds (`python -m distill_core sweep --seeds 0-4`) tells more"


TEACHER_PROBLEM = ("**The teacher is the problem**: distilling from it cannot help. Fine-tune it longer "
                   "(teacher.finetune_epochs; a built-in image teacher: image.teacher_epochs) or give it more data.")


def accuracy_verdicts(accuracy: dict, n: int, variants: Sequence[str], reference: str | None) -> list[dict]:
    """Each variant against the reference: accuracy, difference, its 95% interval and the verdict.

    verdict: "better" / "worse" when the interval excludes zero, "unclear" when it includes it; the reference's
    own row has verdict "reference"; a variant without test accuracy is left out.
    """
    ref = accuracy.get(reference) if reference else None
    rows = []
    for v in variants:
        a = accuracy.get(v)
        if a is None:
            continue
        row = {"variant": v, "accuracy": float(a), "diff": None, "lo": None, "hi": None, "verdict": "reference"}
        if v != reference:
            if ref is None or not n:
                row["verdict"] = "no reference"
            else:
                d, lo, hi = difference_interval(float(a), float(ref), n)
                row.update(diff=d, lo=lo, hi=hi, verdict="better" if lo > 0 else "worse" if hi < 0 else "unclear")
        rows.append(row)
    return rows


def paired_verdicts(paired: dict, accuracy: dict, variants: Sequence[str], reference: str | None) -> list[dict]:
    """accuracy_verdicts' rows, from summary.json's "paired" (stats.paired_comparison of each variant against the
    reference on the same test examples).

    diff, lo, hi are the paired bootstrap interval; each row keeps the comparison's other keys (n, ref_accuracy,
    p, ref_only, variant_only). verdict is the engine's ("better" / "worse" only when McNemar's p < 0.05), with
    "no clear difference" written "unclear" as in accuracy_verdicts; the reference's row has verdict "reference".
    """
    rows = []
    for v in variants:
        c = paired.get(v)
        if v == reference:
            a = accuracy.get(v)
            a = a if a is not None else next((x["ref_accuracy"] for x in paired.values()), None)
            if a is not None:
                rows.append({"variant": v, "accuracy": float(a), "diff": None, "lo": None, "hi": None,
                             "verdict": "reference"})
        elif c is not None:
            rows.append({**c, "variant": v, "accuracy": float(c["accuracy"]),
                         "verdict": c["verdict"] if c["verdict"] in ("better", "worse") else "unclear"})
    return rows


def paired_sentence(c: dict, variant: str, reference: str) -> str:
    """One variant against the reference in words (markdown), from a paired comparison (stats.paired_comparison:
    n, ref_accuracy, accuracy, diff, lo, hi, ref_only, variant_only, p, verdict)."""
    v, rl = model_label(variant, reference), model_label(reference, reference)
    pts = (f"{100 * c['diff']:+.1f} points (paired 95% interval {100 * c['lo']:+.1f} to {100 * c['hi']:+.1f}; "
           f"{test_label(c)} {p_text(c['p'])})")
    pair = f"{c['accuracy']:.1%} vs {c['ref_accuracy']:.1%}"
    b, k = int(c["ref_only"]), int(c["variant_only"])
    disc = (f"the {rl} scored higher on {b} example{'' if b == 1 else 's'}, {v} on {k}" if c.get("statistic") else
            f"the {rl} alone was right on {b} example{'' if b == 1 else 's'}, {v} alone on {k}")
    if c["verdict"] == "better":
        return f"**{v} beat the {rl}**: {pair}, a difference of {pts}; {disc}."
    if c["verdict"] == "worse":
        return f"**The {rl} beat {v}**: {pair}; {v} minus the {rl} is {pts}; {disc}."
    return (f"**No clear difference** between {v} and the {rl} on {c['n']} examples: {pair}, a difference of "
            f"{pts}; {disc}. This test set cannot tell them apart: {SWEEP_HINT}.")


def verdict_lines(rows: Sequence[dict], reference: str | None) -> list[str]:
    """One sentence per variant compared with the reference (markdown); rows from paired_verdicts are
    read with paired_sentence."""
    ref = next((r for r in rows if r["verdict"] == "reference"), None)
    out = []
    for r in rows:
        if r["diff"] is None or ref is None:
            continue
        v, rl = model_label(r["variant"], reference), model_label(reference, reference)
        if "p" in r:
            out.append(paired_sentence(r, r["variant"], reference))
            continue
        pts = (f"{r['diff'] * 100:+.1f} points (95% interval {r['lo'] * 100:+.1f} to {r['hi'] * 100:+.1f})")
        pair = f"{r['accuracy']:.1%} vs {ref['accuracy']:.1%}"
        if r["verdict"] == "better":
            out.append(f"**{v} beat the {rl}**: {pair}, a difference of {pts}.")
        elif r["verdict"] == "worse":
            out.append(f"**The {rl} beat {v}**: {pair}; {v} minus the {rl} is {pts}.")
        else:
            side = f"{v} is ahead, " if r["diff"] > 0 else f"{v} is behind, " if r["diff"] < 0 else ""
            out.append(f"**No clear winner** between {v} and the {rl}: {side}{pair}, a difference of {pts}; the "
                       f"interval includes zero, so this test set cannot tell them apart.")
    return out


def health_lines(warnings: Sequence[dict]) -> list[str]:
    """What a run's warnings (summary.json "warnings": {"model", "kind", "message"}) tell a reader, most important
    first: a line saying so when the teacher itself is among them, then each warning's message."""
    out = [TEACHER_PROBLEM] if any(w.get("model") == TEACHER for w in warnings) else []
    return out + [str(w["message"]) for w in warnings if w.get("message")]


def best_epoch_text(best_epoch: dict, variants: Sequence[str], reference: str | None = None,
                    live_input: str = "a typed sentence", metric: str = "accuracy") -> str | None:
    """The variants whose best validation epoch was not their last, with the test score of those weights (kept
    beside the final ones); None when every variant peaked at its last epoch. `live_input` is what the explorer
    reads with either weights: "a typed sentence", or for pictures "an uploaded picture"; `metric` the task's score
    (accuracy, entity F1, chrF)."""
    earlier = [(v, b) for v in variants if (b := best_epoch.get(v)) and b.get("epoch") != b.get("final_epoch")]
    if not earlier:
        return None
    parts = [f"{model_label(v, reference)} at epoch {b['epoch']} of {b['final_epoch']}"
             + (f" (test {b['test_accuracy']:.1%} with those weights)" if b.get("test_accuracy") is not None else "")
             for v, b in earlier]
    return (f"Best validation {metric} before the last epoch: " + "; ".join(parts) + ". The table reports the final "
            "weights, the ones every variant is compared with; the run keeps both, and the explorer reads "
            f"{live_input} with either.")


def robustness_reading(record: dict, reference: str | None = None) -> str:
    """How to read the robustness figure, in one sentence, naming the model whose accuracy drops least from
    epsilon 0 (clean) to the largest epsilon."""
    eps = [float(e) for e in record.get("epsilons") or []]
    acc = {m: a for m, a in (record.get("accuracy") or {}).items() if len(a or []) == len(eps)}
    if str(record.get("attack", "")).startswith("PGD on pixels"):
        text = ("Each point is a model's test accuracy when every pixel of the picture may change by up to ε of the "
                "pixel range (ε = 0.1: 25 grey levels of 255), in the direction an attack (PGD) finds most harmful to "
                "that model")
    else:
        text = ("Each point is a model's test accuracy when every word embedding of the input is pushed by up to ε "
                "times its own size (ε = 0.05: 5%), in the direction an attack (PGD) finds most harmful to that model")
    if len(eps) < 2 or not acc:
        return text + "."
    first, last = eps.index(min(eps)), eps.index(max(eps))
    best = min(acc, key=lambda m: acc[m][first] - acc[m][last])
    a0, a1 = acc[best][first], acc[best][last]
    return (text + f"; {the(best, reference)} keeps its accuracy best, {a0:.1%} at ε = {eps[first]:g} and "
            f"{a1:.1%} at ε = {eps[last]:g}.")


def attribution_reading(student: str, stats: dict, reference: str | None = None) -> str:
    """A plain-language comparison of attribution and attention closeness, from the numbers.

    stats: variant name -> (attribution rank correlation with the teacher, [CLS] attention agreement with it).
    The chosen variant is compared with the reference; the reference itself with every other variant.
    """
    def fmt(x: float) -> str:
        return "undefined" if math.isnan(x) else f"{x:.2f}"

    def closer(d: float, b: float) -> bool | None:     # None: about as close, or unknown
        if math.isnan(d) or math.isnan(b) or abs(d - b) < 0.005:
            return None
        return d > b

    rho, agree = stats[student]
    text = (f"On this text {the(student, reference)}'s attributions rank the tokens with ρ = {fmt(rho)} against "
            f"the teacher's, and its [CLS] attention agrees {fmt(agree)} with the teacher's.")
    if reference in stats and student != reference:
        (r_d, a_d), (r_b, a_b) = stats[student], stats[reference]
        pick = {True: student, False: reference}
        att, attr = pick.get(closer(a_d, a_b)), pick.get(closer(r_d, r_b))
        numbers = (f"(attention agreement: {student} {fmt(a_d)}, {reference} {fmt(a_b)}; "
                   f"attribution ρ: {student} {fmt(r_d)}, {reference} {fmt(r_b)})")
        if att is None and attr is None:
            text += f" It and {the(reference, reference)} are about as close to the teacher on both counts {numbers}."
        elif att is None:
            text += (f" Its attention and {the(reference, reference)}'s are about as close to the teacher's, but "
                     f"{the(attr, reference)} has the closer attributions {numbers}.")
        elif attr is None:
            text += (f" {cap(the(att, reference))} has the closer attention, but their attributions are about "
                     f"as close "
                     f"to the teacher's {numbers}.")
        elif att == attr:
            text += (f" {cap(the(att, reference))} is closer on both counts {numbers}: here closer attention "
                     f"goes with "
                     f"closer reasoning.")
        else:
            text += (f" {cap(the(att, reference))} has the closer attention but {the(attr, reference)} the closer "
                     f"attributions {numbers}: here attention that looks like the teacher's does not mean the same "
                     f"tokens drive the decision.")
    elif student == reference and len(stats) > 1:
        others = [v for v in stats if v != reference]
        att = [v for v in others if closer(stats[v][1], agree)]
        attr = [v for v in others if closer(stats[v][0], rho)]
        if not att and not attr:
            text += " No other variant is clearly closer to the teacher on either count."
        else:
            text += (f" Variants with closer attention than {the(reference, reference)}: {', '.join(att) or 'none'}; "
                     f"with closer attributions: {', '.join(attr) or 'none'}.")
    return text + " One text is an anecdote; compare a few probe examples before drawing a conclusion."


POOLED_NOTE = ("What the seeds pool: every seed answers the same test examples, so they are pooled per example, not "
               "counted as more examples. Each example's difference (variant right minus reference right) is averaged "
               "over the seeds; the paired 95% interval resamples test examples, each with its answers from every "
               "seed, and the p-value is an exact sign-flip test of those per-example differences. Copies of one "
               "seed would say exactly what that seed says. The interval across seeds (Student's t on the per-seed "
               "differences) says how much the result moves with the students' seed.")


def sweep_verdict_lines(summary: dict) -> list[str]:
    """Each variant against the reference over a sweep's seeds, in words (markdown): the test pooled per test
    example decides (stats.pooled_comparison's sign-flip test; p < 0.05: better or worse, else no clear
    difference), always naming n and the number of seeds."""
    ref, seeds = summary.get("reference"), len(summary.get("seeds_done") or [])
    out = []
    for v, c in (summary.get("paired") or {}).items():
        name, rl = the(v, ref), the(ref, ref)
        mean = c.get("diff_mean")
        spread = ("" if c.get("diff_lo") is None else
                  f", 95% interval across seeds {100 * c['diff_lo']:+.1f} to {100 * c['diff_hi']:+.1f}")
        across = ("no finished seeds" if mean is None else
                  f"mean difference {100 * mean:+.1f} points over {seeds} seed{'s' if seeds != 1 else ''}{spread}")
        if "p" not in c:
            out.append(f"**{cap(name)} against {rl}**: {across}; the seeds' test answers could not be pooled, so "
                       f"there is no paired test.")
            continue
        head = {"better": f"**{cap(name)} beat {rl}**", "worse": f"**{cap(rl)} beat {name}**"}.get(
            c["verdict"], f"**No clear difference** between {name} and {rl}")
        test = (f"on n = {c['n']} test examples, each answered by {seeds} seed{'s' if seeds != 1 else ''} "
                f"(sign-flip test on each example's mean difference, {p_text(c['p'])}; over all seeds "
                f"{c['variant_only']} answers right only for {name}, {c['ref_only']} only for {rl})")
        gap = ("" if c.get("gap_closed") is None else
               f" It closed {c['gap_closed']:.0%} of the gap between {rl} and the teacher.")
        js = (" Its attention was closer to the teacher's than the reference's on every seed."
              if c.get("js_below_reference_every_seed") else "")
        out.append(f"{head} {test}: {across}.{gap}{js}")
    return out


def closer_sides(diff: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Where side A is closer to the teacher and where side B is, from A's metric minus B's (ties: neither)."""
    d = np.asarray(diff, dtype=np.float64)
    level = np.abs(d) <= 1e-12
    a_closer = (d < 0) if LOWER_IS_CLOSER.get(metric, True) else (d > 0)
    return a_closer & ~level, ~a_closer & ~level


def divergence_difference_reading(diff: np.ndarray, row_labels: Sequence[str], metric: str = "js",
                                  col_labels: Sequence[str] | None = None,
                                  sides: Sequence[str] = ("A", "B")) -> str:
    """One line on A's divergence minus B's: on how many compared heads each side is closer to the teacher, and
    where the gap is largest."""
    d = np.asarray(diff, dtype=np.float64)
    a, b = sides
    n = d.size
    if n == 0:
        return "There are no compared heads to read."
    cols = list(col_labels) if col_labels is not None else [f"head {h}" for h in range(d.shape[1])]
    a_closer, b_closer = closer_sides(d, metric)
    na, nb = int(a_closer.sum()), int(b_closer.sum())
    heads = f"head{'s' if n != 1 else ''}"
    if na == nb == 0:
        return f"{a} and {b} are exactly as close to the teacher on all {n} compared {heads}."
    level = n - na - nb
    text = f"{a} is closer to the teacher on {na} of {n} compared {heads}, {b} on {nb}"
    text += f", {level} level" if level else ""
    r, c = np.unravel_index(int(np.nanargmax(np.abs(d))), d.shape)
    winner = a if a_closer[r, c] else b
    text += (f"; the largest gap is {row_labels[r]}, {cols[c]}, where {winner} is closer by "
             f"{abs(d[r, c]):.3g} ({METRIC_LABELS.get(metric, metric)}).")
    return text


COMBINE_WORDS = {"mean": "the mean of their {what}",
                 "confidence": "their {what} weighted per example by each one's confidence",
                 "most_confident": "per example, the {what} of the most confident teacher"}


def combine_words(ens: dict) -> str:
    """How an ensemble record's teachers were combined, in words: the rule and what it averages."""
    what = ("logits" if ens.get("average", "logits") == "logits" else
            f"probabilities at T = {ens.get('temperature', 1.0):g}")
    return COMBINE_WORDS.get(ens.get("combine"), "").format(what=what)


def teacher_label(row: dict, first: dict) -> str:
    """"teacher_2 (seed 1)": a further teacher's name and what sets it apart from the first."""
    if row["name"] == TEACHER:
        return TEACHER
    diff = []
    if row.get("source") != first.get("source"):
        diff.append(str(row.get("source")))
    if row.get("seed") != first.get("seed"):
        diff.append(f"seed {row.get('seed')}")
    if row.get("finetune_part") != first.get("finetune_part"):
        diff.append(f"part {row.get('finetune_part') or 'all'} of the data")
    return f"{row['name']} ({', '.join(diff)})" if diff else row["name"]


def ensemble_reading(summary: dict, label=lambda name: name) -> str:
    """What the page says about the teachers: the ensemble against the best single teacher, and each variant that
    learns from another teacher against its twin (the same recipe from the first teacher), paired on the test set."""
    teachers = summary.get("teachers") or []
    ens = summary.get("ensemble") or {}
    if len(teachers) < 2 or ens.get("accuracy") is None:
        return ""
    best = max(teachers, key=lambda t: t.get("accuracy") or 0)
    gap = 100 * (ens["accuracy"] - (best.get("accuracy") or 0))
    lines = [f"The **ensemble** of the {len(teachers)} teachers ({combine_words(ens)}) scores "
             f"**{ens['accuracy']:.1%}**, {gap:+.1f} points against the best single teacher "
             f"({teacher_label(best, teachers[0])}, {best.get('accuracy', 0):.1%})."]
    attention = ("the first teacher's attention" if ens.get("attention") == "teacher" else
                 "the mean of every teacher's attention")
    for name, t in (summary.get("twins") or {}).items():
        source = (summary.get("learns_from") or {}).get(name, ENSEMBLE)
        what = f"the ensemble (and {attention})" if source == ENSEMBLE else source
        verdict = {"better": "better", "worse": "worse"}.get(t.get("verdict"), "no clear difference")
        lines.append(f"**{label(name)}** learns from {what}: {t['accuracy']:.1%} against {t['ref_accuracy']:.1%} for "
                     f"**{label(t['twin'])}**, the same recipe from the first teacher ({100 * t['diff']:+.1f} points, "
                     f"paired 95% interval {100 * t['lo']:+.1f} to {100 * t['hi']:+.1f}, McNemar p = {t['p']:.3f}: "
                     f"{verdict}).")
    if not summary.get("twins") and ens.get("used_by"):
        lines.append(f"{', '.join(label(v) for v in ens['used_by'])} learn{'s' if len(ens['used_by']) == 1 else ''} "
                     f"from the ensemble; no variant has the same recipe from the first teacher to compare it with.")
    return "\n\n".join(lines)


SAME_POINTS = 1.0        # accuracy drops closer than this (percentage points) read as "about the same"


COMPARED_FRACTION = 0.5  # the share of heads removed at which the sentence compares the variants


def compressed_variants(record: dict, variants: Sequence[str] | None) -> list[str]:
    held = record.get("variants") or {}
    names = [v for v in (variants or []) if v in held]
    return names + [v for v in held if v not in names]


def _point(curve: list[dict], fraction: float) -> dict | None:
    return next((p for p in curve if abs(p["fraction"] - fraction) < 1e-9), None)


def compared_fractions(record: dict, names: Sequence[str]) -> list[float]:
    """The shares of heads removed at which the variants are compared: 50% when every curve has it, and the largest
    share they all have when it is larger (or the only one above 0 they share)."""
    curves = [record["variants"][n]["pruning_curve"] for n in names]
    common = set.intersection(*[{round(p["fraction"], 6) for p in c} for c in curves]) - {0.0} if curves else set()
    if not common:
        return []
    out = [COMPARED_FRACTION] if COMPARED_FRACTION in common else []
    return out + ([max(common)] if max(common) not in out and (not out or max(common) > out[0]) else [])


def _reading_at(record: dict, names: Sequence[str], fraction: float, reference: str | None,
                first: bool) -> str | None:
    """The variants' accuracy with `fraction` of the heads removed and how much each loses, read against the
    reference (within SAME_POINTS points: about the same)."""
    drops, parts = {}, []
    for name in names:
        curve = record["variants"][name]["pruning_curve"]
        start, at = _point(curve, 0.0), _point(curve, fraction)
        if start is None or at is None:
            continue
        drops[name] = d = 100 * (start["test_accuracy"] - at["test_accuracy"])
        change = (f"{d:.1f} points below" if d >= 0.05 else f"{-d:.1f} points above" if d <= -0.05 else "the same as")
        heads = f" with all {int(np.size(at['head_mask']))} heads" if first else ""
        parts.append(f"{the(name, reference)} {100 * at['test_accuracy']:.1f}% ({change} its "
                     f"{100 * start['test_accuracy']:.1f}%{heads}; {at['heads_removed']} removed)")
    if len(drops) < 2:
        return None
    text = (f"With {fraction:.0%} of the heads removed{', least important first' if first else ''}: "
            + "; ".join(parts) + ".")
    ref = reference if reference in drops else None
    if ref is None:
        best = min(drops, key=drops.get)
        return text + f" {cap(the(best, reference))} loses least accuracy without its heads."
    lines = []
    for name in [n for n in drops if n != ref]:
        gap = drops[ref] - drops[name]
        if abs(gap) < SAME_POINTS:
            lines.append(f"{the(name, reference)} loses about as much as {the(ref, reference)} (within "
                         f"{SAME_POINTS:g} point): no sign that it depends on fewer heads")
        elif gap > 0:
            lines.append(f"{the(name, reference)} loses {gap:.1f} points less than {the(ref, reference)}: it "
                         f"depends on fewer of its heads")
        else:
            lines.append(f"{the(name, reference)} loses {-gap:.1f} points more than {the(ref, reference)}: it "
                         f"depends on more of its heads, not fewer")
    return text + " " + cap("; ".join(lines)) + "."


def heads_reading(record: dict, variants: Sequence[str] | None = None, reference: str | None = None) -> str | None:
    """Does a distilled student depend on fewer heads? From the curves, at 50% of the heads removed and at the
    largest share when it is larger: each variant's test accuracy and its drop from its own unpruned accuracy, read
    against the reference's drop (a difference under SAME_POINTS points reads as about the same). Paragraphs
    separated by blank lines; None without two curves to compare."""
    names = [n for n in compressed_variants(record, variants) if record["variants"][n].get("pruning_curve")]
    if len(names) < 2:
        return None
    paragraphs = [t for k, f in enumerate(compared_fractions(record, names))
                  if (t := _reading_at(record, names, f, reference, k == 0))]
    if not paragraphs:
        return None
    n = record.get("test_size")
    if n and reference in names:
        paragraphs.append(f"One run and {n:,} test examples: a gap of a point or two may not hold on another seed.")
    return "\n\n".join(paragraphs)
