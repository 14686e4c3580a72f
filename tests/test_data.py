import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from distill_core.config import DataConfig
from distill_core.modality.splits import stratified_split
from distill_core.modality.text.data import clean, load_builtin, load_splits, read_table
from distill_core.errors import DataError, OfflineError


def write(tmp_path, name, content, mode="w"):
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content)
    return p


def cfg(path, **kw):
    base = dict(source=str(path), text_column="text", label_column="label", train_size=6, val_size=2,
                test_size=2, probe_size=2)
    base.update(kw)
    return DataConfig(**base)


def test_builtin_dataset_is_the_review_snippets():
    df = load_builtin()
    assert len(df) == 12808
    assert set(df["label"]) == {"fresh", "rotten"}


def test_default_splits_are_seeded_and_stratified():
    a = load_splits(DataConfig())
    b = load_splits(DataConfig())
    assert a.train_texts == b.train_texts and a.fingerprint == b.fingerprint
    assert (len(a.train_texts), len(a.val_texts), len(a.test_texts)) == (3000, 500, 2500)
    # no text is in two splits: the corpus's repeated texts are kept once (it holds 56 of them)
    parts = [set(a.train_texts), set(a.val_texts), set(a.test_texts), set(a.extra_texts)]
    assert sum(map(len, parts)) == len(set().union(*parts)) == 12808 - 57
    assert any("56 texts appear more than once (57 extra rows); each was kept once" in n for n in a.notices)
    share = lambda y: np.mean(y)  # noqa: E731
    assert abs(share(a.train_labels) - share(a.test_labels)) < 0.01
    assert len(a.probe_indices) == 8 and len(set(a.probe_indices)) == 8
    assert set(a.val_labels[i] for i in a.probe_indices) == {0, 1}
    c = load_splits(DataConfig(split_seed=1))
    assert c.train_texts != a.train_texts


def test_stratified_split_keeps_rows_apart_and_classes_in_proportion():
    labels = np.array([0] * 600 + [1] * 300 + [2] * 100)
    train, val, test = stratified_split(labels, (500, 100, 200), seed=3)
    assert (len(train), len(val), len(test)) == (500, 100, 200)
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    for part, n in ((train, 500), (val, 100), (test, 200)):
        assert np.bincount(labels[part], minlength=3).tolist() == [0.6 * n, 0.3 * n, 0.1 * n]
    again = stratified_split(labels, (500, 100, 200), seed=3)
    assert all(np.array_equal(x, y) for x, y in zip((train, val, test), again))
    other = stratified_split(labels, (500, 100, 200), seed=4)
    assert not np.array_equal(np.sort(train), np.sort(other[0]))


def test_csv_with_string_labels(tmp_path):
    rows = "text,label\n" + "\n".join(f"t{i},{'pos' if i % 2 else 'neg'}" for i in range(20))
    s = load_splits(cfg(write(tmp_path, "d.csv", rows)))
    assert s.label_names == ["neg", "pos"]
    assert len(s.train_texts) == 6


def test_jsonl_with_int_labels_three_classes(tmp_path):
    lines = "\n".join(json.dumps({"review": f"r{i}", "stars": i % 3}) for i in range(30))
    s = load_splits(cfg(write(tmp_path, "d.jsonl", lines), text_column="review", label_column="stars"))
    assert s.label_names == ["0", "1", "2"] and s.num_labels == 3


@pytest.mark.parametrize("content,match", [
    ("", "is empty"),
    ("text,label\n", "has no rows"),
    ("review,label\na,1\nb,0\n", "no text column 'text'; its columns are: review, label"),
    ("text,sentiment\na,1\nb,0\n", "no label column 'label'"),
    ("text,label\na,x\nb,x\nc,x\n", "a classifier needs at least two classes"),
    ("text,label\na,0.5\nb,1.5\nc,1\n", "fractional"),
    ("text,label\na,1\nb,pos\nc,neg\n", "mix numbers and words"),
    ("text,label\n,1\n ,0\n", "every text is empty"),
    ("text,label\na,\nb,1\nc,0\n", "no label"),
])
def test_bad_csv_messages(tmp_path, content, match):
    with pytest.raises(DataError, match=match):
        load_splits(cfg(write(tmp_path, "d.csv", content)))


def test_not_utf8(tmp_path):
    with pytest.raises(DataError, match="not UTF-8"):
        load_splits(cfg(write(tmp_path, "d.csv", "text,label\ncaf\xe9,1\n".encode("latin-1"))))


def test_jsonl_broken_lines_are_reported_with_numbers(tmp_path):
    content = '{"text": "a", "label": 1}\n{"text": "b", "label": \n[1, 2]\n{"text": "c", "label": 0}\n'
    with pytest.raises(DataError, match=r"line 2, 3 are not a JSON object"):
        load_splits(cfg(write(tmp_path, "d.jsonl", content)))


def test_size_limit(tmp_path):
    p = write(tmp_path, "big.csv", "text,label\n" + "x" * 200_000 + ",1\n")
    with pytest.raises(DataError, match="above the 0.1 MB limit"):
        load_splits(cfg(p, max_file_mb=0.1))


def test_empty_texts_dropped_with_notice(tmp_path):
    rows = "text,label\n" + "\n".join(f"{'' if i < 3 else 't' + str(i)},{i % 2}" for i in range(20))
    s = load_splits(cfg(write(tmp_path, "d.csv", rows)))
    assert s.notices == ["3 rows with an empty text were dropped"]


def test_unknown_extension_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="unknown file type"):
        read_table(write(tmp_path, "d.xlsx", "x"), "text", "label", 10)
    with pytest.raises(DataError, match="does not exist"):
        load_splits(cfg(tmp_path / "nope.csv"))


def test_hub_dataset_offline_fails_fast(monkeypatch):
    import time
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    with pytest.raises(OfflineError, match="this machine is offline"):
        load_splits(DataConfig(source="some-user/some-dataset"))
    assert time.time() - t0 < 5


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 3), min_size=3, max_size=300), st.integers(1, 200), st.integers(1, 50),
       st.integers(1, 50), st.integers(0, 5))
def test_split_properties(labels, ntr, nva, nte, seed):
    y = np.array(labels)
    parts = stratified_split(y, (ntr, nva, nte), seed)
    allidx = np.concatenate(parts)
    assert len(allidx) == len(set(allidx.tolist()))         # no example in two splits
    assert all(len(p) >= 1 for p in parts)
    assert len(allidx) <= len(y)
    again = stratified_split(y, (ntr, nva, nte), seed)
    assert all((a == b).all() for a, b in zip(parts, again))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.integers(-5, 5), st.sampled_from(["a", "b", "c"]),
                          st.floats(allow_nan=False, allow_infinity=False, width=16)), min_size=1, max_size=30))
def test_clean_either_accepts_or_says_why(labels):
    df = pd.DataFrame({"text": [f"t{i}" for i in range(len(labels))], "label": labels})
    try:
        out, names, _ = clean(df, "x")
    except DataError as e:
        assert str(e).startswith("x:")
        return
    assert len(names) >= 2
    assert set(out["label"]) <= set(range(len(names)))
