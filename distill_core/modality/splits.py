"""Grouped, stratified splits shared by every kind of task: a seeded train / validation / test split that keeps
the class proportions, and the sizes it falls back to when the data is smaller than asked. Examples that must stay
together (copies of one text, one picture) are grouped first (`group_by_key`) and split as groups."""
from __future__ import annotations

import numpy as np

from ..errors import DataError

SMALL_DATA_FRACTIONS = (0.7, 0.1, 0.2)   # train / validation / test of data smaller than the split sizes


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


def stratified_split(labels: np.ndarray, sizes: tuple[int, int, int], seed: int) -> list[np.ndarray]:
    """Indices of train / validation / test, each keeping the class proportions, seeded.

    When the data holds fewer examples than asked, the sizes become split_sizes' fractions."""
    n = len(labels)
    want = split_sizes(n, sizes)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = {c: rng.permutation(np.where(labels == c)[0]) for c in classes}
    frac = {c: len(per_class[c]) / n for c in classes}
    out, start = [], {c: 0 for c in classes}
    for k, size in enumerate(want):
        idx = []
        for c in classes:
            take = int(round(size * frac[c]))
            take = min(take, len(per_class[c]) - start[c], size - len(idx))
            idx.extend(per_class[c][start[c]:start[c] + take])
            start[c] += take
        # rounding may leave the split short: top up from what is left, class by class
        for c in classes:
            while len(idx) < size and start[c] < len(per_class[c]):
                idx.append(per_class[c][start[c]])
                start[c] += 1
        out.append(rng.permutation(np.array(idx, dtype=int)))
    if min(len(x) for x in out) == 0:
        raise DataError(f"the dataset has too few examples ({n}) for a train, validation and test split")
    return out


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
