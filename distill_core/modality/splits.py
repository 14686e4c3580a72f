"""Grouped, stratified splits shared by every kind of task: a seeded train / validation / test split that keeps
the class proportions, and the sizes it falls back to when the data is smaller than asked. Examples that must stay
together (copies of one text, one picture) are grouped first (`group_by_key`) and split as groups."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import DataConfig
from ..errors import DataError

SMALL_DATA_FRACTIONS = (0.7, 0.1, 0.2)   # train / validation / test of data smaller than the split sizes
SIZE_KEYS = ("train_size", "val_size", "test_size")
CLASSIFICATION_SIZES = tuple(getattr(DataConfig(), k) for k in SIZE_KEYS)   # 3,000 / 500 / 2,500


def uses_task_sizes(data) -> bool:
    """Whether a task with split sizes of its own (tagging, translation, language models) takes them: data's
    (train, validation, test) sizes are all still the classification defaults; set any of them and all three are
    data's. `data`: a DataConfig or its dict."""
    get = data.get if isinstance(data, dict) else lambda k: getattr(data, k)
    return tuple(get(k) for k in SIZE_KEYS) == CLASSIFICATION_SIZES


def task_sizes(data, own: tuple[int, int, int]) -> tuple[int, int, int]:
    """The (train, validation, test) sizes a task with sizes of its own asks for: `own` while data's are the
    classification defaults (uses_task_sizes), else data's."""
    get = data.get if isinstance(data, dict) else lambda k: getattr(data, k)
    return tuple(own) if uses_task_sizes(data) else tuple(get(k) for k in SIZE_KEYS)


def split_sizes(n: int, sizes: tuple[int, int, int]) -> tuple[int, int, int]:
    """The (train, validation, test) sizes for n distinct texts: the configured ones when they fit, else
    fractions, none of them above its configured size (what is left over goes to the teacher's extra rows)."""
    if sum(sizes) <= n:
        return tuple(sizes)
    if n < 3:
        raise DataError(f"the dataset has only {n} usable examples; at least 3 are needed (train, validation, test)")
    val = min(max(1, sizes[1]), max(1, round(SMALL_DATA_FRACTIONS[1] * n)))
    test = min(max(1, sizes[2]), max(1, round(SMALL_DATA_FRACTIONS[2] * n)))
    return min(max(1, sizes[0]), n - val - test), val, test


@dataclass
class SplitParts:
    """Positions (of the labels split) of each split, and `teacher`: every position outside validation and test in
    the order a teacher that learns from all of them reads them (the training region of the reference size, then
    the rest in order), whatever the training split's size."""
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    extra: np.ndarray
    teacher: np.ndarray


def _take(per_class: dict, classes, frac: dict, size: int, start: dict) -> list:
    """`size` positions from the per-class queues from `start` on, each class its share (rounded), topped up class
    by class when rounding leaves the split short; advances `start`."""
    idx = []
    for c in classes:
        take = int(round(size * frac[c]))
        take = min(take, len(per_class[c]) - start[c], size - len(idx))
        idx.extend(per_class[c][start[c]:start[c] + take])
        start[c] += take
    for c in classes:
        while len(idx) < size and start[c] < len(per_class[c]):
            idx.append(per_class[c][start[c]])
            start[c] += 1
    return idx


def split_parts(labels: np.ndarray, sizes: tuple[int, int, int], seed: int, reference_train: int = 0) -> SplitParts:
    """Train / validation / test positions, each keeping the class proportions, seeded; what no split takes is
    `extra` (a teacher may learn from it).

    Validation and test are drawn after a training region of max(sizes[0], reference_train) examples (fewer when
    the data holds fewer; none when the sizes do not fit and the fractions apply), each class its share, so a
    smaller training split is a stratified subset of that region and validation, test and everything a teacher
    learns from stay the same: with the task's default training size as the reference, asking for fewer
    training examples does not change what a teacher learns from (nor its cache key). At the reference size or
    above the split is what it always was. When the data holds fewer examples than asked, the sizes become
    split_sizes' fractions."""
    n = len(labels)
    want = split_sizes(n, sizes)
    ref = want                         # small data (the sizes do not fit): the fractions, as asked
    if sum(sizes) <= n:                # the training region: up to the reference size, as far as the data allows
        ref = (max(want[0], min(reference_train, n - want[1] - want[2])), want[1], want[2])
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = {c: rng.permutation(np.where(labels == c)[0]) for c in classes}
    frac = {c: len(per_class[c]) / n for c in classes}
    out, start = [], {c: 0 for c in classes}
    for size in ref:
        out.append(rng.permutation(np.array(_take(per_class, classes, frac, size, start), dtype=int)))
    if min(len(x) for x in out) == 0:
        raise DataError(f"the dataset has too few examples ({n}) for a train, validation and test split")
    train, val, test = out
    teacher = np.concatenate([train, _unused(n, out)]).astype(int)
    if want[0] != ref[0]:
        held = set(val.tolist()) | set(test.tolist())
        region = {c: [int(i) for i in per_class[c] if int(i) not in held] for c in classes}
        idx = _take(region, classes, frac, want[0], {c: 0 for c in classes})
        train = np.random.default_rng([seed, want[0]]).permutation(np.array(idx, dtype=int))
        if len(train) == 0:
            raise DataError(f"the dataset has too few examples ({n}) for a train, validation and test split")
    return SplitParts(train, val, test, _unused(n, (train, val, test)), teacher)


def _unused(n: int, parts) -> np.ndarray:
    """The positions of n that none of `parts` holds, in order."""
    used = np.zeros(n, dtype=bool)
    for part in parts:
        used[part] = True
    return np.flatnonzero(~used)


def stratified_split(labels: np.ndarray, sizes: tuple[int, int, int], seed: int,
                     reference_train: int = 0) -> list[np.ndarray]:
    """[train, validation, test] positions of split_parts."""
    p = split_parts(labels, sizes, seed, reference_train)
    return [p.train, p.val, p.test]


def teacher_order(parts: SplitParts, groups: list[list[int]] | None = None) -> list[int] | None:
    """Where each row a teacher learning from every example outside validation and test reads sits in (training
    rows + extra rows), in parts.teacher's order; None when that is already their order. `groups`: the rows of
    each split position (None: one row each)."""
    sizes = (lambda g: len(groups[g])) if groups is not None else (lambda g: 1)
    pos, k = {}, 0
    for g in list(parts.train) + list(parts.extra):
        pos[int(g)] = range(k, k + sizes(g))
        k += sizes(g)
    order = [p for g in parts.teacher for p in pos[int(g)]]
    return None if order == list(range(k)) else order


def in_teacher_order(train: list, extra: list, order: list[int] | None) -> list:
    """train + extra, read in teacher_order."""
    both = list(train) + list(extra)
    return both if order is None else [both[i] for i in order]


def teacher_rows(finetune_on: str, train, extra, order: list[int] | None) -> list:
    """What a teacher learns from, of one kind of row (texts, ids, labels, tags): the training split's, and with
    teacher.finetune_on "all" every other example's outside validation and test too, read in teacher_order."""
    if finetune_on == "all" and len(extra):
        return in_teacher_order(train, extra, order)
    return list(train)


def group_by_key(keys, labels: np.ndarray) -> tuple[list[list[int]], int, int, int]:
    """Row indices grouped by equal key, in order of first appearance; with the number of keys that repeat, the
    extra rows they hold, and how many of them carry different labels on different rows."""
    groups: dict = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    rows = list(groups.values())
    repeated = [g for g in rows if len(g) > 1]
    extra = sum(len(g) - 1 for g in repeated)
    mixed = sum(1 for g in repeated if len(set(labels[g].tolist())) > 1)
    return rows, len(repeated), extra, mixed
