"""Generated distillation data (strategies/generated.py): transfer texts, augmented copies, neighbours, memory.

Offline and tiny: the MiniLM tokenizer shipped with the default teacher, hand-made embeddings and splits."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from distill_core.config import TransferConfig
from distill_core.modality.text.data import Splits
from distill_core.errors import ConfigError, DataError
from distill_core.strategies import generated as gen_mod
from distill_core.strategies.generated import (GeneratedData, augment, build_generated, check_memory, estimate_mb,
                                               examples_record, load_transfer_texts, neighbour_table,
                                               word_candidates)

CLS, SEP, MASK = 101, 102, 103
SPECIAL = {0, 100, CLS, SEP, MASK}
ALL_OPS = ("neighbours", "mask", "delete", "swap")


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from distill_core.models import default_teacher_dir
    return AutoTokenizer.from_pretrained(default_teacher_dir(), local_files_only=True)


def make_splits(extra: list[str] | None = None) -> Splits:
    return Splits(train_texts=["a good film", "a bad film"], train_labels=[0, 1],
                  val_texts=["held out for validation"], val_labels=[0],
                  test_texts=["held out for testing"], test_labels=[1],
                  label_names=["fresh", "rotten"], probe_indices=[0], fingerprint="x",
                  extra_texts=list(extra or []), extra_labels=[i % 2 for i in range(len(extra or []))])


def sequences(n: int, seed: int = 0) -> list[list[int]]:
    """n [CLS] w1 .. wk [SEP] sequences of 15 to 40 random word ids (2000..2099: no neighbour is itself)."""
    rng = np.random.default_rng(seed)
    return [[CLS, *rng.integers(2000, 2100, size=int(rng.integers(15, 41))).tolist(), SEP] for _ in range(n)]


# every word has three neighbours, none of them itself
NEIGHBOURS = {t: [3000 + (t % 50), 3100 + (t % 30), 3200 + (t % 7)] for t in range(2000, 2100)}


def run_augment(ids, copies=3, fraction=0.15, ops=ALL_OPS, seed=0):
    return augment(ids, copies, fraction, ops, seed, SPECIAL, MASK, NEIGHBOURS)


# ---- augmentation ---------------------------------------------------------------------------------------------
def test_augment_is_seeded():
    ids = sequences(20)
    first, again, other = run_augment(ids, seed=1), run_augment(ids, seed=1), run_augment(ids, seed=2)
    assert first == again
    assert [x[0] for x in first] != [x[0] for x in other]
    assert [x[1] for x in first] == [i for i in range(20) for _ in range(3)]     # origins: each example, 3 copies


@pytest.mark.parametrize("fraction", [0.15, 0.3])
@pytest.mark.parametrize("ops", [ALL_OPS, ("neighbours",), ("mask",), ("delete",), ("swap",)])
def test_augment_changes_about_the_fraction(fraction, ops):
    ids = sequences(150)
    shares = []
    for new, i, changed in run_augment(ids, copies=2, fraction=fraction, ops=ops):
        words = len(ids[i]) - 2
        deleted = len(ids[i]) - len(new)
        shares.append((len(changed) + deleted) / words)
        assert len(changed) + deleted >= 1
    assert abs(np.mean(shares) - fraction) <= 0.03, (ops, fraction, np.mean(shares))


def test_changed_positions_are_exactly_the_changed_tokens():
    ids = sequences(60)
    for new, i, changed in run_augment(ids, fraction=0.3, ops=("neighbours", "mask", "swap")):
        assert len(new) == len(ids[i])
        assert changed == [p for p, (a, b) in enumerate(zip(ids[i], new)) if a != b]


def test_each_op_does_what_it_says():
    ids = sequences(30)
    for new, i, changed in run_augment(ids, ops=("mask",)):
        assert all(new[p] == MASK for p in changed)
    for new, i, changed in run_augment(ids, ops=("neighbours",)):
        assert all(new[p] in NEIGHBOURS[ids[i][p]] for p in changed)
    for new, i, changed in run_augment(ids, ops=("swap",)):
        assert sorted(new) == sorted(ids[i]) and len(changed) % 2 == 0
    for new, i, changed in run_augment(ids, ops=("delete",)):
        assert changed == [] and len(new) < len(ids[i])
        it = iter(ids[i])
        assert all(t in it for t in new)                                          # a subsequence of the original


def test_special_tokens_never_change():
    ids = [[CLS, *s[1:-1], SEP, *s[1:-1][:5], SEP] for s in sequences(40)]        # a pair: [SEP] in the middle too
    ids.append([CLS, SEP])                                                        # nothing to change
    for new, i, changed in run_augment(ids, fraction=0.9):
        orig = ids[i]
        assert [t for t in new if t in SPECIAL and t != MASK] == [t for t in orig if t in SPECIAL]
        assert new[0] == CLS and new[-1] == SEP
        assert all(new[p] not in (CLS, SEP) for p in changed)
    assert run_augment([[CLS, SEP]], copies=2) == [([CLS, SEP], 0, []), ([CLS, SEP], 0, [])]


def test_words_without_neighbours_are_left_alone():
    ids = [[CLS, 5000, 5001, 5002, SEP]]                     # no neighbours for these: nothing neighbours-only can do
    assert run_augment(ids, ops=("neighbours",)) == [(ids[0], 0, [])] * 3


# ---- neighbours ---------------------------------------------------------------------------------------------
def test_neighbour_table_finds_the_nearest_by_cosine():
    angles = {0: 0, 1: 10, 2: 25, 3: 90, 4: 175, 5: 185}                            # degrees on the unit circle
    emb = torch.zeros(6, 2)
    for i, a in angles.items():
        r = 1 + i                                            # lengths differ: cosine ignores them
        emb[i] = torch.tensor([r * np.cos(np.radians(a)), r * np.sin(np.radians(a))])
    table = neighbour_table(emb, {0, 4}, candidates=[0, 1, 2, 3, 4, 5], k=3)
    assert table == {0: [1, 2, 3], 4: [5, 3, 2]}
    assert neighbour_table(emb, {0}, candidates=[0, 3, 5], k=8) == {0: [3, 5]}       # fewer candidates than k


def test_neighbour_table_in_chunks_equals_brute_force(monkeypatch):
    emb = torch.randn(300, 16, generator=torch.Generator().manual_seed(0))
    cands = list(range(0, 300, 2))
    needed = {1, 4, 7, 50, 51, 120, 299}
    monkeypatch.setattr(gen_mod, "CHUNK", 2)
    table = neighbour_table(emb, needed, cands, k=5)
    unit = torch.nn.functional.normalize(emb, dim=1)
    for t in needed:
        sims = {c: float(unit[t] @ unit[c]) for c in cands if c != t}
        assert table[t] == sorted(sims, key=sims.get, reverse=True)[:5]


def test_word_candidates_are_whole_alphabetic_words(tokenizer):
    cands = word_candidates(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(cands)
    assert "great" in tokens and "film" in tokens
    assert not any(t.startswith("##") or t.startswith("[") or not t.isalpha() for t in tokens)
    assert not set(cands) & set(tokenizer.all_special_ids)


# ---- transfer texts -----------------------------------------------------------------------------------------
def test_unused_transfer_texts_are_the_extra_texts_without_labels(tokenizer):
    extra = [f"an unused review number {i}" for i in range(7)]
    splits = make_splits(extra)
    cfg = TransferConfig(source="unused")
    assert load_transfer_texts(cfg, splits) == extra
    train_ids = [tokenizer(t)["input_ids"] for t in splits.train_texts]
    emb = torch.randn(tokenizer.vocab_size, 8)
    gen = build_generated(cfg, splits, train_ids, tokenizer, emb, max_length=16)
    assert gen.counts() == {"transfer": 7, "augmented": 0, "total": 7}
    assert gen.source == "unused rows of the dataset"
    assert [tokenizer.decode(x, skip_special_tokens=True) for x in gen.ids] == extra
    assert {f for f in vars(gen)} == {"ids", "kinds", "origin", "changed", "source", "notices", "images"}  # no labels
    assert gen.images is None                                     # text: token ids only
    # the record's labels are the teacher's: here the opposite of the true ones
    probs = torch.tensor([[0.2, 0.8] if y == 0 else [0.9, 0.1] for y in splits.extra_labels])
    record = examples_record(gen, tokenizer, train_ids, probs, splits.label_names)
    assert [e["teacher_label"] for e in record["examples"]] == [1 - y for y in splits.extra_labels]
    assert not any("label" in k and k != "teacher_label" for e in record["examples"] for k in e)
    json.dumps(record)


def test_max_texts_is_a_seeded_choice_in_order():
    extra = [f"text {i}" for i in range(50)]
    cfg = TransferConfig(source="unused", max_texts=10, seed=3)
    chosen = load_transfer_texts(cfg, make_splits(extra))
    assert len(chosen) == 10 and chosen == sorted(chosen, key=extra.index)
    assert chosen == load_transfer_texts(cfg, make_splits(extra))
    assert chosen != load_transfer_texts(TransferConfig(source="unused", max_texts=10, seed=4), make_splits(extra))


def test_transfer_files_csv_jsonl_txt(tmp_path):
    csv = tmp_path / "more.csv"
    csv.write_text("id,sentence\n1,first text\n2,\n3,third text\n")
    jsonl = tmp_path / "more.jsonl"
    jsonl.write_text('{"text": "one"}\n{"text": "  "}\n{"text": "two"}\n')
    txt = tmp_path / "more.txt"
    txt.write_text("line one\n\n   \nline, two\n")
    splits = make_splits()
    assert load_transfer_texts(TransferConfig(source=str(csv), text_column="sentence"), splits) == \
        ["first text", "third text"]
    assert load_transfer_texts(TransferConfig(source=str(jsonl)), splits) == ["one", "two"]
    assert load_transfer_texts(TransferConfig(source=str(txt)), splits) == ["line one", "line, two"]
    assert load_transfer_texts(TransferConfig(source="none"), splits) == []


def test_bad_transfer_sources_say_what_to_do(tmp_path):
    splits = make_splits()
    with pytest.raises(DataError, match=r"does not exist; set transfer.source"):
        load_transfer_texts(TransferConfig(source=str(tmp_path / "missing.csv")), splits)
    csv = tmp_path / "cols.csv"
    csv.write_text("review,stars\ngood,5\n")
    with pytest.raises(DataError, match=r"no text column 'text'; its columns are: review, stars\. "
                                        r"Set transfer.text_column"):
        load_transfer_texts(TransferConfig(source=str(csv)), splits)
    empty = tmp_path / "empty.csv"
    empty.write_text("text,other\n,1\n  ,2\n")
    with pytest.raises(DataError, match="no non-empty texts in column 'text'"):
        load_transfer_texts(TransferConfig(source=str(empty)), splits)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n\n")
    with pytest.raises(DataError, match="no non-empty texts"):
        load_transfer_texts(TransferConfig(source=str(blank)), splits)
    with pytest.raises(DataError, match=r"all of its rows are in the training, validation and test splits\. "
                                        r"Lower data.train_size"):
        load_transfer_texts(TransferConfig(source="unused"), splits)


# ---- the session's generated data -------------------------------------------------------------------------------
def test_build_generated_transfer_then_copies(tokenizer, tmp_path):
    txt = tmp_path / "texts.txt"
    txt.write_text("a brand new sentence\nheld out for testing\nanother unlabelled text\n")
    splits = make_splits()
    train_ids = [tokenizer(t)["input_ids"] for t in ["a really good and moving film", "a dull and boring plot"]]
    emb = torch.randn(tokenizer.vocab_size, 8, generator=torch.Generator().manual_seed(0))
    cfg = TransferConfig(source=str(txt), copies=3, fraction=0.3)
    gen = build_generated(cfg, splits, train_ids, tokenizer, emb, max_length=16)
    assert gen.counts() == {"transfer": 2, "augmented": 6, "total": 8}        # the test text was left out
    assert any("validation or test" in n for n in gen.notices)
    assert gen.kinds == ["transfer"] * 2 + ["augmented"] * 6
    assert gen.origin == [None, None, 0, 0, 0, 1, 1, 1] and gen.changed[:2] == [[], []]
    assert gen.source == "texts.txt"
    for ids, origin in zip(gen.ids[2:], gen.origin[2:]):
        assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert build_generated(cfg, splits, train_ids, tokenizer, emb, 16).ids == gen.ids          # seeded
    assert len(build_generated(TransferConfig(), splits, train_ids, tokenizer, emb, 16)) == 0  # not active

    record = examples_record(gen, tokenizer, train_ids, torch.full((8, 2), 0.5), splits.label_names, limit=2)
    assert record["counts"] == gen.counts() and record["source"] == "texts.txt"
    assert [e["kind"] for e in record["examples"]] == ["transfer"] * 2 + ["augmented"] * 2
    first = record["examples"][2]
    assert first["original"] == tokenizer.convert_ids_to_tokens(train_ids[0])
    assert first["tokens"] == tokenizer.convert_ids_to_tokens(gen.ids[2])
    assert record["examples"][0]["original"] is None and record["examples"][0]["changed"] == []
    json.dumps(record)


def test_an_empty_generated_data_counts_zero():
    assert GeneratedData().counts() == {"transfer": 0, "augmented": 0, "total": 0}


# ---- memory -------------------------------------------------------------------------------------------------
def test_estimate_mb_counts_attention_logits_and_hidden():
    # 1000 examples of 20 tokens, 3 layer pairs, 4 heads: attention 3*4*400*2 bytes, logits 2*4 bytes each
    assert estimate_mb(1000, 20, 3, 4, need_attention=True) == pytest.approx(1000 * (9600 + 8) / 1e6)
    assert estimate_mb(1000, 20, 3, 4, need_attention=False) == pytest.approx(1000 * 8 / 1e6)
    assert estimate_mb(1000, 20, 3, 4, False, hidden=32) == pytest.approx(1000 * (8 + 3 * 20 * 32 * 2) / 1e6)


def test_check_memory_refuses_too_many_copies():
    cfg = TransferConfig(copies=50, max_memory_mb=100)
    n = 3000 * 50                                  # 3,000 training texts, 50 copies each
    with pytest.raises(ConfigError, match=r"above transfer.max_memory_mb \(100 MB\)\. Use fewer transfer.copies "
                                          r"\(now 50\).*raise transfer.max_memory_mb"):
        check_memory(cfg, n, 30, 3, 4, need_attention=True)
    check_memory(TransferConfig(copies=1, max_memory_mb=100), 3000, 30, 3, 4, need_attention=True)
