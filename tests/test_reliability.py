"""Reliability and security: bad input, faults and concurrent use lose nothing and give clear answers.

Every refusal is checked for its message (what is wrong and what to do) and for what it leaves behind: runs already
in the store are byte-for-byte unchanged, and a session that fails or dies keeps the epochs it finished.
"""
from __future__ import annotations

import ast
import csv
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, example, given, settings, strategies as st

from distill_core import RunStore, SessionConfig, run_session, start_session
from distill_core.__main__ import main
from distill_core.config import DataConfig
from distill_core.modality.text.data import load_splits
from distill_core.errors import ConfigError, DataError, ModelError, OfflineError, RunStoreError
from distill_core.objectives import get as get_loss
from distill_core.metrics import JS_MAX, attention_metrics, row_metric
from distill_core.models import check_attention, load_classifier, load_tokenizer
from distill_core.store import now_iso, wait_for_status

from conftest import make_texts, tiny_config_dict

ROOT = Path(__file__).resolve().parent.parent


# ---- helpers -----------------------------------------------------------------------------------------------
def quick_config(teacher, data, **over) -> dict:
    """The conftest config, smaller: 48 training texts (3 steps of 16), no teacher fine-tune, one epoch."""
    d = tiny_config_dict(teacher, data, **over)
    d["data"].update({k: v for k, v in {"train_size": 48, "val_size": 16, "test_size": 16}.items()
                      if f"data__{k}" not in over and "data" not in over})
    if "teacher" not in over and "teacher__finetune" not in over:
        d["teacher"]["finetune"] = "never"
    if "train__epochs" not in over and "train" not in over:
        d["train"]["epochs"] = 1
    return d


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def make_earlier_run(store: RunStore) -> tuple[str, dict]:
    """A finished run as the engine lays it out (config, status, metrics, attention, weights, summary)."""
    from safetensors.torch import save_file
    run = store.create({"name": "earlier", "data": {"source": "earlier.csv"}, "train": {"epochs": 1}})
    rng = np.random.default_rng(0)
    maps = [rng.dirichlet(np.ones(5), size=(2, 2, 5)).astype(np.float32) for _ in range(3)]
    run.write_attention("teacher", maps)
    for epoch in (0, 1):
        for student in ("distilled", "baseline"):
            run.write_attention(f"{student}_e{epoch}", maps)
            run.append_metrics({"epoch": epoch, "student": student, "val_accuracy": 0.5 + epoch / 10,
                                "js_mean": 0.2 - epoch / 20})
    model_dir = run.model_dir("distilled")
    model_dir.mkdir(parents=True)
    save_file({"w": torch.ones(2, 2)}, str(model_dir / "model.safetensors"))
    run.write_json("summary.json", {"status": "done", "accuracy": {"teacher": 0.8, "baseline": 0.6,
                                                                    "distilled": 0.7}})
    run.update_status(status="done", ended=now_iso())
    return run.id, snapshot(run.path)


@pytest.fixture
def store_with_earlier_run(tmp_path):
    store = RunStore(tmp_path / "runs")
    run_id, snap = make_earlier_run(store)
    return store, run_id, snap


def assert_intact(store: RunStore, run_id: str, snap: dict) -> None:
    assert snapshot(store.open(run_id).path) == snap, "an earlier run's files changed"
    info = {i.run_id: i for i in store.list()}[run_id]
    assert info.status == "done" and info.epochs_done == 1


def failed_runs(store: RunStore, earlier: str) -> list:
    return [i for i in store.list() if i.run_id != earlier]


def teacher_cache_entries() -> list[str]:
    folder = Path(os.environ["ADS_CACHE_DIR"]) / "teachers"
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def save_tiny_bert(folder: Path, tokenizer, vocab_size: int | None = None, layers: int = 2, heads: int = 2,
                   hidden: int = 16, positions: int = 64) -> Path:
    from transformers import BertConfig, BertForSequenceClassification
    cfg = BertConfig(vocab_size=vocab_size or len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=heads, intermediate_size=2 * hidden, max_position_embeddings=positions,
                     num_labels=2)
    torch.manual_seed(0)
    BertForSequenceClassification._from_config(cfg, attn_implementation="eager").save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    from distill_core.models import default_teacher_dir
    return AutoTokenizer.from_pretrained(default_teacher_dir(), local_files_only=True)


# ---- models --------------------------------------------------------------------------------------------------
def test_hub_model_while_offline_fails_fast_and_keeps_the_store(store_with_earlier_run, tiny_csv, monkeypatch):
    store, earlier, snap = store_with_earlier_run
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(OfflineError, match=r"model 'some-org/some-model' is not a local folder.*this machine is "
                                           r"offline \(HF_HUB_OFFLINE is set\).*local path"):
        load_tokenizer("some-org/some-model")
    assert time.monotonic() - t0 < 5
    cfg = SessionConfig.from_dict(quick_config("some-org/some-model", tiny_csv))
    t0 = time.monotonic()
    with pytest.raises(OfflineError, match="this machine is offline"):
        run_session(cfg, store)
    assert time.monotonic() - t0 < 15             # reads the data file, then stops: no download timeout
    [failed] = failed_runs(store, earlier)
    assert failed.status == "failed" and "offline" in failed.error
    assert_intact(store, earlier, snap)


def test_unreachable_hub_fails_fast_even_when_name_lookup_hangs(monkeypatch):
    """Without HF_HUB_OFFLINE, a machine without network must still answer within seconds (DNS can hang)."""
    from distill_core import hub
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    release = threading.Event()

    def hanging_connection(*args, **kwargs):
        release.wait(60)                     # a resolver that never answers
        raise OSError("no network")

    monkeypatch.setattr(hub.socket, "create_connection", hanging_connection)
    try:
        t0 = time.monotonic()
        with pytest.raises(OfflineError, match=r"offline \(cannot reach huggingface.co\).*connect to the internet"):
            load_classifier("some-org/some-model", 2)
        assert time.monotonic() - t0 < 5
    finally:
        release.set()
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(OfflineError, match="dataset 'some-org/some-data'"):
        load_splits(DataConfig(source="some-org/some-data"))


def broken_model_folder(kind: str, base: Path, tokenizer) -> Path:
    folder = base / kind
    if kind == "a file":
        folder.write_text("not a model")
        return folder
    folder.mkdir()
    if kind == "no config.json":
        tokenizer.save_pretrained(folder)
    elif kind == "config without weights":
        save_tiny_bert(folder, tokenizer)
        (folder / "model.safetensors").unlink()
    elif kind == "pickle weights only":
        save_tiny_bert(folder, tokenizer)
        from safetensors.torch import load_file
        torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()
    elif kind == "damaged weights":
        save_tiny_bert(folder, tokenizer)
        (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    elif kind == "no tokenizer":
        save_tiny_bert(folder, None, vocab_size=len(tokenizer))
    return folder


@pytest.mark.parametrize("kind,match", [
    ("a file", "is a file; a model is a folder with config.json and weights"),
    ("no config.json", "is not a model folder: it has no config.json"),
    ("config without weights", r"has a config.json but no weights \(model.safetensors\); save the model"),
    ("pickle weights only", "holds only pytorch_model.bin, a pickle file that can run code.*model.safetensors only"),
    ("damaged weights", "could not load model"),
    ("no tokenizer", r"has no tokenizer files .*tokenizer.save_pretrained"),
])
@pytest.mark.parametrize("role", ["teacher", "student"])
def test_folder_that_is_not_a_usable_model(role, kind, match, tmp_path, tiny_teacher, tiny_csv, minilm_tokenizer,
                                           store_with_earlier_run, monkeypatch):
    monkeypatch.setenv("ADS_CACHE_DIR", str(tmp_path / "cache"))
    store, earlier, snap = store_with_earlier_run
    folder = broken_model_folder(kind, tmp_path, minilm_tokenizer)
    over = {"teacher__source": str(folder)} if role == "teacher" else {"student": {"source": str(folder)}}
    cfg = SessionConfig.from_dict(quick_config(tiny_teacher, tiny_csv, teacher__finetune="always", **over))
    with pytest.raises(ModelError, match=match):
        run_session(cfg, store)
    [failed] = failed_runs(store, earlier)
    assert failed.status == "failed" and failed.epochs_done == 0 and re.search(match, failed.error)
    assert teacher_cache_entries() == []          # refused before the teacher was fine-tuned
    assert_intact(store, earlier, snap)


def test_missing_model_folder(tmp_path):
    with pytest.raises(ModelError, match="model folder ./no/such/model does not exist"):
        load_tokenizer("./no/such/model")


def test_architecture_whose_attention_cannot_be_captured(tmp_path, tiny_csv, minilm_tokenizer, store_with_earlier_run,
                                                          monkeypatch):
    """BLOOM returns attentions, but not from modules the capture knows (transformer.h.<i>.self_attention): refused
    before any fine-tune."""
    from transformers import BloomConfig, BloomForSequenceClassification
    monkeypatch.setenv("ADS_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "bloom"
    conf = BloomConfig(vocab_size=len(minilm_tokenizer), hidden_size=16, n_layer=2, n_head=2, num_labels=2,
                       pad_token_id=0, bos_token_id=None, eos_token_id=None)
    BloomForSequenceClassification._from_config(conf, attn_implementation="eager").save_pretrained(folder)
    minilm_tokenizer.save_pretrained(folder)
    store, earlier, snap = store_with_earlier_run
    cfg = SessionConfig.from_dict(quick_config(folder, tiny_csv, teacher__finetune="always"))
    with pytest.raises(ModelError, match=r"teacher .*bloom: cannot find the attention layers of "
                                         r"BloomForSequenceClassification; supported families"):
        run_session(cfg, store)
    assert teacher_cache_entries() == []
    [failed] = failed_runs(store, earlier)
    assert failed.status == "failed" and "cannot find the attention layers" in failed.error
    assert_intact(store, earlier, snap)


def test_attention_modules_that_return_no_weights(tmp_path, tiny_teacher, tiny_csv, minilm_tokenizer,
                                                  store_with_earlier_run, monkeypatch):
    # loaded with SDPA, a model returns no attention weights at all
    sdpa_model, _ = load_classifier(str(tiny_teacher), 2, eager=False)
    with pytest.raises(ModelError, match=r"did not return one attention map per layer .*eager"):
        check_attention(sdpa_model, minilm_tokenizer, "the sdpa model")
    # a layer whose attention module hands back None where the weights belong
    from transformers.models.bert import modeling_bert
    real = modeling_bert.BertSelfAttention.forward

    def without_weights(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        return (out[0], None, *out[2:])

    monkeypatch.setattr(modeling_bert.BertSelfAttention, "forward", without_weights)
    monkeypatch.setenv("ADS_CACHE_DIR", str(tmp_path / "cache"))
    store, earlier, snap = store_with_earlier_run
    cfg = SessionConfig.from_dict(quick_config(tiny_teacher, tiny_csv, teacher__finetune="always"))
    with pytest.raises(ModelError, match=r"teacher .*(attention map per layer|no attention weights).*eager"):
        run_session(cfg, store)
    assert teacher_cache_entries() == []
    assert failed_runs(store, earlier)[0].status == "failed"
    assert_intact(store, earlier, snap)


def write_small_vocab_student(folder: Path) -> Path:
    from transformers import BertTokenizer
    folder.mkdir()
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"the a film movie is was good bad great dull".split()]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = BertTokenizer(str(folder / "vocab.txt"))
    return save_tiny_bert(folder, tok, vocab_size=len(words))


def test_student_with_another_tokenizer_is_refused(tmp_path, tiny_teacher, tiny_csv, store_with_earlier_run,
                                                   monkeypatch):
    monkeypatch.setenv("ADS_CACHE_DIR", str(tmp_path / "cache"))
    student = write_small_vocab_student(tmp_path / "small-vocab-student")
    store, earlier, snap = store_with_earlier_run
    cfg = SessionConfig.from_dict(quick_config(tiny_teacher, tiny_csv, teacher__finetune="always",
                                               student={"source": str(student)}))
    with pytest.raises(ModelError, match=r"does not share the teacher's tokenizer \(15 tokens.*against the "
                                         r"teacher's \d+.*compared token by token.*teacher's vocabulary"):
        run_session(cfg, store)
    assert teacher_cache_entries() == []          # refused before the teacher was fine-tuned
    [failed] = failed_runs(store, earlier)
    assert failed.status == "failed" and "tokenizer" in failed.error
    assert not (store.open(failed.run_id).path / "metrics.jsonl").exists()
    assert_intact(store, earlier, snap)


@pytest.mark.parametrize("over,match", [
    ({"student": {"layers": 6, "heads": 2, "hidden": 16, "intermediate": 32}},
     "student has 6 layers but the teacher only 4: use at most 4 student layers"),
    ({"objectives__layer_map": [0, 1, 2]}, "layer_map lists 3 teacher layers but the student has 2"),
    ({"objectives__layer_map": [0, 7]}, r"names teacher layer 7, but the teacher's layers are 0..3"),
    ({"objectives__head_rule": "direct"}, "head_rule 'direct' needs equal head counts"),
    ({"student": {"layers": 2, "heads": 4, "hidden": 16, "intermediate": 32, "init": "from_teacher"}},
     r"student.hidden must be the teacher's 32 \(now 16\); use init 'random' or hidden=32"),
    ({"student": {"layers": 2, "heads": 4, "hidden": 64, "intermediate": 32, "init": "teacher_embeddings"}},
     r"projects the teacher's 32 dimensions onto fewer, but student.hidden is 64; use init 'random'"),
    ({"data__max_length": 100}, r"data.max_length is 100 tokens but the teacher .* reads at most 64"),
])
def test_impossible_student_is_refused_before_any_training(over, match, tmp_path, tiny_teacher, tiny_csv,
                                                           store_with_earlier_run, monkeypatch):
    monkeypatch.setenv("ADS_CACHE_DIR", str(tmp_path / "cache"))
    store, earlier, snap = store_with_earlier_run
    cfg = SessionConfig.from_dict(quick_config(tiny_teacher, tiny_csv, teacher__finetune="always", **over))
    with pytest.raises(ConfigError, match=match):
        run_session(cfg, store)
    assert teacher_cache_entries() == []          # not even the teacher was fine-tuned
    [failed] = failed_runs(store, earlier)
    assert failed.status == "failed" and failed.epochs_done == 0
    assert not (store.open(failed.run_id).path / "metrics.jsonl").exists()
    assert_intact(store, earlier, snap)


def test_shape_errors_found_by_the_settings_create_no_run(tiny_teacher, tiny_csv, store_with_earlier_run):
    store, earlier, snap = store_with_earlier_run
    with pytest.raises(ConfigError, match=r"student.hidden \(18\) must be divisible by student.heads \(4\); "
                                          r"try hidden=16"):
        SessionConfig.from_dict(quick_config(tiny_teacher, tiny_csv, student={"layers": 2, "heads": 4,
                                                                              "hidden": 18}))
    assert [i.run_id for i in store.list()] == [earlier]
    assert_intact(store, earlier, snap)


def test_damaged_teacher_cache_is_rebuilt(tmp_path, tiny_teacher, tiny_csv, monkeypatch):
    from distill_core.batching import encode
    from distill_core.teacher import prepare_teacher
    monkeypatch.setenv("ADS_CACHE_DIR", str(tmp_path / "cache"))
    cfg = SessionConfig.from_dict(quick_config(tiny_teacher, tiny_csv, teacher__finetune="always"))
    splits = load_splits(cfg.data)
    ids, _ = encode(load_tokenizer(cfg.teacher.source), splits.train_texts, cfg.data.max_length)
    first = prepare_teacher(cfg, splits, ids, torch.device("cpu"))
    assert not first.cached and teacher_cache_entries() == [Path(first.path).name]
    weights = {k: v.clone() for k, v in first.model.state_dict().items()}
    damaged = Path(first.path) / "damaged.tmp"     # a new file: the loaded weights may map the old one
    damaged.write_bytes(b"half a file")
    os.replace(damaged, Path(first.path) / "model.safetensors")
    again = prepare_teacher(cfg, splits, ids, torch.device("cpu"))
    assert not again.cached and again.path == first.path
    for name, value in again.model.state_dict().items():
        assert torch.equal(value, weights[name]), name    # the same seeded fine-tune, redone
    assert prepare_teacher(cfg, splits, ids, torch.device("cpu")).cached


# ---- uploaded data -------------------------------------------------------------------------------------------
def data_cfg(path: Path, **kw) -> DataConfig:
    base = dict(source=str(path), text_column="text", label_column="label", train_size=6, val_size=2,
                test_size=2, probe_size=2)
    base.update(kw)
    return DataConfig(**base)


def test_long_text_is_truncated_with_a_notice(tmp_path, tiny_teacher, store_with_earlier_run):
    rows = make_texts(60)
    long_text = " ".join(["remarkably"] + ["wonderful"] * 600)
    path = tmp_path / "long.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["review", "sentiment"])
        w.writerows(rows + [(long_text, "fresh")])
    over = {"data__train_size": 40, "data__val_size": 12, "data__test_size": 9, "train__baseline": False}
    seed = next(s for s in range(50)                # a split that puts the long text in the training split
                if long_text in load_splits(SessionConfig.from_dict(
                    quick_config(tiny_teacher, path, data__split_seed=s, **over)).data).train_texts)
    store, earlier, snap = store_with_earlier_run
    cfg = SessionConfig.from_dict(quick_config(tiny_teacher, path, data__split_seed=seed, **over))
    run = store.open(run_session(cfg, store))
    notice = re.compile(r"1 training texts? (was|were) longer than 16 tokens and (was|were) truncated")
    assert [n for n in run.probe()["notices"] if notice.fullmatch(n)]
    assert [n for n in run.summary()["notices"] if notice.fullmatch(n)]
    assert max(len(t) for t in run.probe()["tokens"]) <= 16
    assert run.status()["status"] == "done"
    assert_intact(store, earlier, snap)


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_whole_number_labels_in_any_spelling_are_one_class(tmp_path):
    rows = "text,label\n" + "\n".join(f"t{i},{['1', '1.0', ' 1 ', '0', '0.0', '-0'][i % 6]}" for i in range(24))
    s = load_splits(data_cfg(write(tmp_path, "d.csv", rows)))
    assert s.label_names == ["0", "1"]
    lines = "\n".join(json.dumps({"text": f"t{i}", "label": [1, "1", 1.0, 0, "0", 0.0][i % 6]}) for i in range(24))
    s = load_splits(data_cfg(write(tmp_path, "d.jsonl", lines)))
    assert s.label_names == ["0", "1"]


def test_word_labels_ignore_surrounding_spaces_and_booleans_are_words(tmp_path):
    rows = "text,label\n" + "\n".join(f"t{i},{['pos', ' pos', 'neg ', 'neg'][i % 4]}" for i in range(20))
    assert load_splits(data_cfg(write(tmp_path, "d.csv", rows))).label_names == ["neg", "pos"]
    lines = "\n".join(json.dumps({"text": f"t{i}", "label": i % 2 == 0}) for i in range(20))
    assert load_splits(data_cfg(write(tmp_path, "d.jsonl", lines))).label_names == ["False", "True"]


@pytest.mark.parametrize("name,content,match", [
    ("d.csv", "text,label\na,1\nb,nan\nc,0\nd,1\n", "1 row has no label \\(first at row 2\\); fill or remove it"),
    ("d.csv", "text,label\na,1\nb,   \nc,0\nd,1\n", "1 row has no label"),
    ("d.csv", "text,label\na,1\nb,inf\nc,0\n", "fractional or infinite numbers like 'inf'; .*not regression"),
    ("d.csv", "text,label\na,0.25\nb,0.75\nc,0.5\n", "fractional"),
    ("d.jsonl", '{"text": "a", "label": [1, 0]}\n{"text": "b", "label": 1}\n',
     "labels must be strings or whole numbers, but row 1 holds a list"),
    ("d.jsonl", '{"text": {"title": "a"}, "label": 1}\n{"text": "b", "label": 0}\n',
     "the text column holds lists or objects, not text \\(first at row 1\\)"),
    ("d.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": "one"}\n{"text": "c", "label": 0}\n',
     "labels mix numbers and words"),
    ("d.csv", "text,label\na,pos\nb,pos\n,neg\n ,neg\n", "every example has the label 'pos'; a classifier needs at "
                                                        "least two classes"),
    ("d.csv", "text,label\n" + "\n".join(f"review {i},review {i}" for i in range(60)),
     "the label column has 60 different values in 60 rows.*choose the column that holds the classes"),
    ("d.json", '[{"text": "a", "label": 1}, 3]', "JSON array whose items are not all objects"),
    ("d.json", '[{"text": "a", "label": 1},', "not valid JSON"),
    ("d.csv", 'text,label\n"an unclosed quote,1\nb,0\n', "is not valid CSV: .*EOF inside string starting at row 1"),
])
def test_data_files_that_are_refused(tmp_path, name, content, match):
    with pytest.raises(DataError, match=match):
        load_splits(data_cfg(write(tmp_path, name, content)))


def test_json_array_file_and_awkward_csv_texts(tmp_path):
    records = [{"text": f"review {i}", "label": "fresh" if i % 2 else "rotten"} for i in range(12)]
    s = load_splits(data_cfg(write(tmp_path, "d.json", json.dumps(records, indent=2))))
    assert s.label_names == ["fresh", "rotten"] and len(s.train_texts) == 6
    path = tmp_path / "awkward.csv"
    texts = ['a "quoted", comma', "two\nlines", "emoji \U0001F3AC ünïcödé", "x" * 10_000, "tab\there", "  padded  "]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows((t, i % 2) for i, t in enumerate(texts * 2))
    s = load_splits(data_cfg(path, train_size=8))
    every = s.train_texts + s.val_texts + s.test_texts
    assert len(every) == 12 and set(every) == {t.strip() for t in texts}     # every text read back intact


def check_splits(s, n_rows: int, cfg: DataConfig) -> None:
    parts = [(s.train_texts, s.train_labels), (s.val_texts, s.val_labels), (s.test_texts, s.test_labels)]
    for texts, labels in parts:
        assert len(texts) == len(labels) >= 1
        assert all(isinstance(t, str) and t == t.strip() and t for t in texts)
        assert all(0 <= y < s.num_labels for y in labels)
    assert sum(len(t) for t, _ in parts) <= n_rows
    # the sizes count distinct texts: every copy of a repeated text is kept, all in the same split
    distinct = [len({" ".join(t.split()).casefold() for t in texts}) for texts, _ in parts]
    assert distinct[0] <= cfg.train_size and distinct[1] <= cfg.val_size and distinct[2] <= cfg.test_size
    assert s.num_labels == len(set(s.label_names)) >= 2
    assert len(set(s.probe_indices)) == len(s.probe_indices) <= cfg.probe_size
    assert all(0 <= i < len(s.val_texts) for i in s.probe_indices)


TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
LABEL = st.one_of(st.sampled_from(["pos", "neg", "neutral", "", " ", "1", "0", "2.5", "NaN", "x,y", 'q"uote']),
                  st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True, width=32), TEXT)
# one kind of label per data set, so that many generated files are valid; any label at all, so that many are not
LABEL_POOLS = st.sampled_from([["pos", "neg", "neutral"], [0, 1, 2], ["0", "1.0", 2], ["ja", "nein"], [True, False]])
CSV_ROWS = st.one_of(
    LABEL_POOLS.flatmap(lambda pool: st.lists(st.tuples(TEXT, st.sampled_from(pool)), max_size=40)),
    st.lists(st.tuples(TEXT, LABEL), max_size=40))

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(rows=CSV_ROWS, seed=st.integers(0, 3))
@example(rows=[("0", "pos")] * 5 + [("0", "neg"), ("1", "pos"), ("2", "pos")], seed=0)    # one text, six copies
@example(rows=[(f"t{i}", "ab"[i % 2]) for i in range(29)], seed=1)    # 70/10/20 of 29 asks more than test_size
def test_any_csv_loads_consistently_or_says_why(tmp_path, rows, seed):
    path = tmp_path / "random.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    cfg = data_cfg(path, train_size=20, val_size=5, test_size=5, split_seed=seed)
    try:
        s = load_splits(cfg)
    except DataError as e:
        assert str(e) and "Traceback" not in str(e)
        return
    check_splits(s, len(rows), cfg)
    again = load_splits(cfg)
    assert (again.train_texts, again.val_labels, again.fingerprint) == (s.train_texts, s.val_labels, s.fingerprint)


JSON_VALUE = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False) | TEXT,
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                          max_leaves=5)
JSON_RECORDS = st.one_of(
    LABEL_POOLS.flatmap(lambda pool: st.lists(st.fixed_dictionaries(
        {"text": TEXT, "label": st.sampled_from(pool)}, optional={"other": JSON_VALUE}), max_size=30)),
    st.lists(st.fixed_dictionaries({}, optional={"text": TEXT | JSON_VALUE, "label": LABEL | JSON_VALUE,
                                                 "other": JSON_VALUE}), max_size=30))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(records=JSON_RECORDS)
def test_any_jsonl_loads_consistently_or_says_why(tmp_path, records):
    path = tmp_path / "random.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    cfg = data_cfg(path, train_size=20, val_size=5, test_size=5)
    try:
        s = load_splits(cfg)
    except DataError as e:
        assert str(e)
        return
    check_splits(s, len(records), cfg)


# ---- attention metrics ---------------------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(b=st.integers(1, 3), heads=st.integers(1, 3), t=st.integers(1, 6), seed=st.integers(0, 10_000),
       zero_rows=st.booleans(), data=st.data())
def test_metrics_stay_in_range_and_ignore_padding(b, heads, t, seed, zero_rows, data):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(b, 1, heads, t, t, generator=g) ** 3          # unnormalised, some near zero
    q = torch.rand(b, 1, heads, t, t, generator=g) ** 3
    if zero_rows:
        p[..., 0, :] = 0.0                                       # a row without any probability mass
    real = [data.draw(st.integers(1, t)) for _ in range(b)]
    mask = torch.zeros(b, t)
    for i, n in enumerate(real):
        mask[i, :n] = 1
    m = attention_metrics(p, q, mask)
    for name, v in m.items():
        assert v.shape == (1, heads) and torch.isfinite(v).all(), name
    assert (m["kl"] >= -1e-5).all() and (m["mse"] >= -1e-6).all()
    assert ((m["js"] >= -1e-6) & (m["js"] <= JS_MAX + 1e-6)).all()
    assert ((m["cosine"] >= -1e-6) & (m["cosine"] <= 1 + 1e-5)).all()
    pp, qq = p.clone(), q.clone()                                # whatever sits in padding changes nothing
    for i, n in enumerate(real):
        pp[i, ..., n:, :] = torch.rand(1, generator=g)
        pp[i, ..., :, n:] = torch.rand(1, generator=g)
        qq[i, ..., n:, :] = 0.5
    m2 = attention_metrics(pp, qq, mask)
    for name in m:
        assert torch.allclose(m[name], m2[name], atol=1e-5), name


def test_unknown_metric_and_loss_names():
    p = torch.full((1, 1, 1, 2, 2), 0.5)
    with pytest.raises(ValueError, match="unknown metric 'bleu'; known metrics: kl, js, mse, cosine"):
        row_metric("bleu", p, p)
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        attention_metrics(p, p, names=("js", "f1"))
    with pytest.raises(ConfigError, match="unknown loss 'focal'; known losses: ce, logit_kd"):
        get_loss("focal")


# ---- settings ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("override,match", [
    ({"train.batch_size": -4}, "batch_size must be at least 1, not -4"),
    ({"train.epochs": 2.5}, "epochs must be a whole number"),
    ({"train.lr": float("nan")}, "train.lr must be a finite number, not nan"),
    ({"objectives.temperature": -1.0}, "temperature must be positive, not -1.0"),
    ({"variants.distilled.losses": {"ce": "lots"}}, "weight of loss ce in variant distilled must be a number, not 'lots'"),
    ({"variants.baseline.losses": {"ce": float("nan")}}, "weight of loss ce in variant baseline must be a number"),
    ({"objectives.layer_map": []}, "layer_map list is empty"),
    ({"teacher.finetune": "sometimes"}, "teacher.finetune must be auto, always or never"),
    ({"teacher.finetune_lr": 0}, "teacher.finetune_lr must be positive"),
    ({"teacher.finetune_batch_size": 0}, "teacher.finetune_batch_size must be positive"),
    ({"teacher.finetune_epochs": -1}, "teacher.finetune_epochs must be 0 or more"),
    ({"teacher.source": " "}, "teacher.source is empty"),
    ({"student.layers": 0}, "student.layers must be at least 1"),
    ({"student.heads": 0}, "student.heads must be at least 1"),
    ({"student.dropout": 1.0}, r"student.dropout must be in \[0, 1\)"),
    ({"data.max_length": 4}, "data.max_length must be at least 8 tokens"),
    ({"data.probe_size": 0}, "data.probe_size must be between 1 and 64"),
    ({"data.probe_size": 65}, "data.probe_size must be between 1 and 64"),
    ({"data.train_size": 0}, "data.train_size must be at least 1"),
    ({"data.max_file_mb": 0}, "data.max_file_mb must be positive"),
    ({"train.warmup_ratio": 1.0}, r"warmup_ratio must be in \[0, 1\)"),
    ({"train.time_budget_s": 0}, "time_budget_s must be positive"),
    ({"train.schedule": "step"}, "schedule must be one of linear, constant, cosine"),
])
def test_more_bad_settings_name_the_problem(override, match):
    with pytest.raises(ConfigError, match=match):
        SessionConfig().with_overrides(override)


def test_bad_settings_on_the_command_line_leave_the_store_alone(tmp_path, capsys):
    store = RunStore(tmp_path / "runs")
    earlier, snap = make_earlier_run(store)
    for args, expected in [(["--batch-size", "0"], "batch_size must be at least 1"),
                           (["--lr", "-1"], "learning rate must be positive"),
                           (["--set", "objectives.temperature=0"], "temperature must be positive"),
                           (["--set", "variants.distilled.losses={ce: 0}"], "all objective weights of variant distilled are zero"),
                           (["--set", "variants.teacher.losses.ce=1"], "variant name 'teacher' is reserved")]:
        assert main(["run", *args, "--runs-dir", str(store.root), "--quiet"]) == 2
        assert expected in capsys.readouterr().err
    assert [i.run_id for i in store.list()] == [earlier]
    assert_intact(store, earlier, snap)


# ---- faults --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")],
                         ids=["OutOfMemoryError", "RuntimeError"])
def test_out_of_memory_mid_training_fails_the_run_and_keeps_finished_epochs(error, tiny_teacher, tiny_csv,
                                                                           store_with_earlier_run, monkeypatch):
    from transformers.models.bert import modeling_bert
    real = modeling_bert.BertForSequenceClassification.forward
    training_calls = {"n": 0}

    def forward(self, *args, **kwargs):
        if self.training:
            training_calls["n"] += 1
            if training_calls["n"] > 3:                # 3 steps per epoch: out of memory early in epoch 2
                raise error
        return real(self, *args, **kwargs)

    monkeypatch.setattr(modeling_bert.BertForSequenceClassification, "forward", forward)
    store, earlier, snap = store_with_earlier_run
    cfg = SessionConfig.from_dict(quick_config(tiny_teacher, tiny_csv, train__epochs=3, train__baseline=False))
    with pytest.raises(type(error)):
        run_session(cfg, store)
    [info] = failed_runs(store, earlier)
    run = store.open(info.run_id)
    st_ = run.status()
    assert st_["status"] == "failed"
    assert "epoch 2" in st_["error"] and "out of memory" in st_["error"]
    assert "smaller batch size (now 16)" in st_["error"] and "max_length (now 16)" in st_["error"]
    assert run.epochs_done() == 1 and info.epochs_done == 1
    assert run.summary()["divergence"]["epochs"] == [0, 1]
    maps = run.read_attention("distilled_e1")
    assert len(maps) == 4 and maps[0].shape[:2] == (2, 2)
    assert_intact(store, earlier, snap)


def cli_env(cache: Path) -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), ADS_CACHE_DIR=str(cache),
                TOKENIZERS_PARALLELISM="false")


def wait_for_epoch(runs_dir: Path, epoch: int, proc: subprocess.Popen, timeout: float = 120) -> Path:
    """The run folder once its metrics record `epoch` for the distilled student."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        for folder in runs_dir.glob("*-killed-*"):
            metrics = folder / "metrics.jsonl"
            if metrics.exists():
                lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.endswith("}")]
                if any(m["epoch"] >= epoch and m["student"] == "distilled" for m in lines):
                    return folder
        time.sleep(0.1)
    raise AssertionError(f"no epoch {epoch} within {timeout} s")


def test_process_killed_mid_session_reads_as_interrupted_with_its_finished_epochs(tmp_path, tiny_teacher, tiny_csv):
    store = RunStore(tmp_path / "runs")
    earlier, snap = make_earlier_run(store)
    cfg = quick_config(tiny_teacher, tiny_csv, train__epochs=500, train__baseline=False)
    cfg["name"] = "killed"
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "distill_core", "run", "--config", str(path), "--runs-dir",
                             str(store.root), "--quiet"], cwd=ROOT, env=cli_env(tmp_path / "cache"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        folder = wait_for_epoch(store.root, 1, proc)
    finally:
        os.kill(proc.pid, signal.SIGKILL)          # as when the app's process is killed
        proc.communicate(timeout=30)
    run = store.open(folder.name)
    child = run.status()["pid"]                    # the session runs in a child process, which notices and stops
    assert child != proc.pid
    wait_for_status(run, timeout=60)
    infos = {i.run_id: i for i in store.list()}
    killed = infos[folder.name]
    assert killed.status == "interrupted" and killed.epochs_done >= 1
    assert "the process that started it (the app or the command line) ended" in killed.error
    assert [m["epoch"] for m in run.metrics()][:2] == [0, 1]
    maps = run.read_attention("distilled_e1")
    assert len(maps) == 4 and all(np.allclose(m.sum(-1), 1, atol=2e-2) for m in maps)
    assert run.read_attention("teacher")[0].shape[:2] == (4, 4)
    assert run.config()["name"] == "killed"
    assert_intact(store, earlier, snap)
    store.delete(folder.name)                      # an interrupted run can be cleaned up
    assert [i.run_id for i in store.list()] == [earlier]


@pytest.fixture(scope="module")
def concurrent_sessions(tmp_path_factory, tiny_teacher, tiny_csv):
    """Two sessions in threads of this process and one from the command line, on one store, at once.

    All three share teacher, data and seed, so they race for the same cached teacher fine-tune."""
    base = tmp_path_factory.mktemp("concurrent")
    cache = base / "cache"
    old_cache = os.environ.get("ADS_CACHE_DIR")
    os.environ["ADS_CACHE_DIR"] = str(cache)
    store = RunStore(base / "runs")
    earlier, snap = make_earlier_run(store)
    asked = {
        "alpha": quick_config(tiny_teacher, tiny_csv, teacher__finetune="always", train__lr=2e-3,
                              student={"layers": 2, "heads": 2, "hidden": 16, "intermediate": 32}),
        "beta": quick_config(tiny_teacher, tiny_csv, teacher__finetune="always", train__baseline=False,
                             student={"layers": 1, "heads": 1, "hidden": 8, "intermediate": 16}),
        "gamma": quick_config(tiny_teacher, tiny_csv, teacher__finetune="always", train__baseline=False,
                              student={"layers": 4, "heads": 4, "hidden": 16, "intermediate": 32}),
    }
    for name, d in asked.items():
        d["name"] = name
    cli_config = base / "gamma.yaml"
    cli_config.write_text(yaml.safe_dump(asked["gamma"]))
    try:
        proc = subprocess.Popen([sys.executable, "-m", "distill_core", "run", "--config", str(cli_config),
                                 "--runs-dir", str(store.root), "--quiet"], cwd=ROOT, env=cli_env(cache),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ids = {name: start_session(SessionConfig.from_dict(asked[name]), store) for name in ("alpha", "beta")}
        for name, run_id in ids.items():
            wait_for_status(store.open(run_id), timeout=240)
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-2000:]
        ids["gamma"] = out.splitlines()[0]
    finally:
        if old_cache is None:
            os.environ.pop("ADS_CACHE_DIR", None)
        else:
            os.environ["ADS_CACHE_DIR"] = old_cache
    return store, ids, asked, cache, earlier, snap


def test_concurrent_sessions_finish_in_their_own_folders(concurrent_sessions):
    store, ids, asked, cache, earlier, snap = concurrent_sessions
    assert len(set(ids.values())) == 3
    infos = {i.run_id: i for i in store.list()}
    assert set(infos) == {*ids.values(), earlier}
    for name, run_id in ids.items():
        run = store.open(run_id)
        assert infos[run_id].status == "done", infos[run_id].error
        assert name in run_id and infos[run_id].name == name
        assert run.config() == SessionConfig.from_dict(asked[name]).to_dict()     # exactly what was asked
        layers, heads = asked[name]["student"]["layers"], asked[name]["student"]["heads"]
        probe = run.probe()
        assert (probe["student_layers"], probe["student_heads"]) == (layers, heads)
        students = ["baseline", "distilled"] if asked[name]["train"].get("baseline", True) else ["distilled"]
        assert [(m["epoch"], m["student"]) for m in run.metrics()] == [(e, s) for e in (0, 1) for s in students]
        assert run.read_attention("distilled_e1")[0].shape[:2] == (layers, heads)
        assert sorted(p.name for p in (run.path / "models").iterdir()) == sorted([*students, "tokenizer"])
    assert_intact(store, earlier, snap)


def test_concurrent_sessions_share_one_cached_teacher(concurrent_sessions):
    store, ids, asked, cache, earlier, snap = concurrent_sessions
    summaries = [store.open(run_id).summary() for run_id in ids.values()]
    assert len({s["teacher_path"] for s in summaries}) == 1
    assert sorted(s["teacher_cached"] for s in summaries) == [False, True, True]   # fine-tuned exactly once
    assert len({s["accuracy"]["teacher"] for s in summaries}) == 1                 # the same teacher weights
    teachers = cache / "teachers"
    entries = [p for p in teachers.iterdir() if p.is_dir()]
    assert [p.name for p in entries] == [Path(summaries[0]["teacher_path"]).name]   # no half-written .tmp left
    model, _ = load_classifier(str(entries[0]), 2)
    assert model.config.num_hidden_layers == 4


# ---- security ------------------------------------------------------------------------------------------------
def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _is_const(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def unsafe_calls(source: str) -> list[str]:
    """Lines that load code-bearing data: pickle, torch.load without weights_only=True, remote model code."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            if any(n and n.split(".")[0] in ("pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal")
                   for n in names):
                found.append(f"{node.lineno}: imports a pickle module")
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        attr = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
        if _kw(node, "trust_remote_code") is not None and not _is_const(_kw(node, "trust_remote_code"), False):
            found.append(f"{node.lineno}: trust_remote_code is not False")
        if owner == "torch" and attr == "load" and not _is_const(_kw(node, "weights_only"), True):
            found.append(f"{node.lineno}: torch.load without weights_only=True")
        if _kw(node, "allow_pickle") is not None and not _is_const(_kw(node, "allow_pickle"), False):
            found.append(f"{node.lineno}: allow_pickle is not False")
        if owner == "yaml" and attr in ("load", "unsafe_load", "full_load", "load_all"):
            found.append(f"{node.lineno}: yaml.{attr} (use yaml.safe_load)")
        if attr in ("eval", "exec") and isinstance(func, ast.Name):
            found.append(f"{node.lineno}: {attr}()")
        if _is_const(_kw(node, "use_safetensors"), False):
            found.append(f"{node.lineno}: use_safetensors=False")
    return found


def test_scanner_catches_unsafe_loading():
    bad = ("import pickle\nimport torch, numpy as np, yaml\ntorch.load(p)\ntorch.load(p, weights_only=False)\n"
           "np.load(p, allow_pickle=True)\nM.from_pretrained(p, trust_remote_code=True)\nyaml.load(t)\n")
    assert len(unsafe_calls(bad)) == 6
    good = ("import torch, numpy as np, yaml\ntorch.load(p, weights_only=True)\nnp.load(p, allow_pickle=False)\n"
            "M.from_pretrained(p, trust_remote_code=False)\nyaml.safe_load(t)\nmodel.eval()\n")
    assert unsafe_calls(good) == []


def test_source_tree_never_loads_code_bearing_data():
    files = sorted([*(ROOT / "distill_core").rglob("*.py"), *(ROOT / "app").rglob("*.py")])
    assert len(files) > 10
    problems = {str(f.relative_to(ROOT)): found for f in files if (found := unsafe_calls(f.read_text()))}
    assert problems == {}
    for f in files:
        text = f.read_text()
        assert "trust_remote_code=True" not in text, f
        assert "allow_pickle=True" not in text, f


def test_trained_weights_are_safetensors_only(concurrent_sessions):
    store, ids, asked, cache, earlier, snap = concurrent_sessions
    pickle_like = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".h5", ".msgpack")
    for run_id in ids.values():
        models = store.open(run_id).path / "models"
        for student in [p for p in models.iterdir() if p.name != "tokenizer"]:
            assert (student / "model.safetensors").is_file()
        assert not [p for p in models.rglob("*") if p.suffix in pickle_like]
    teacher = next(p for p in (cache / "teachers").iterdir() if p.is_dir())
    assert (teacher / "model.safetensors").is_file()
    assert not [p for p in teacher.rglob("*") if p.suffix in pickle_like]


@pytest.fixture
def victim(tmp_path):
    """A folder beside the run store that no run id may reach."""
    folder = tmp_path / "victim"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "status.json").write_text('{"status": "done"}')
    (folder / "secret.txt").write_text("keep me")
    return folder


def test_run_ids_from_the_command_line_cannot_leave_the_store(tmp_path, victim, capsys):
    store = RunStore(tmp_path / "runs")
    earlier, snap = make_earlier_run(store)
    before = snapshot(victim)
    for command in ("show", "delete", "cancel"):
        for bad in ("../victim", f"{earlier}/../../victim", str(victim), "..", "."):
            assert main([command, bad, "--runs-dir", str(store.root)]) == 2
            err = capsys.readouterr().err
            assert "is not a valid run id" in err and err.count("\n") == 1, (command, bad, err)
    assert snapshot(victim) == before and not (victim / "cancel").exists()
    assert_intact(store, earlier, snap)


def test_store_delete_and_zip_refuse_ids_and_links_that_leave_the_store(tmp_path, victim):
    store = RunStore(tmp_path / "runs")
    earlier, snap = make_earlier_run(store)
    before = snapshot(victim)
    (store.root / "20990101-000000-link").symlink_to(victim, target_is_directory=True)
    for bad in ("../victim", str(victim), "20990101-000000-link", "..", "", f"{earlier}/.."):
        with pytest.raises(RunStoreError, match="is not a valid run id"):
            store.delete(bad)
        with pytest.raises(RunStoreError, match="is not a valid run id"):
            store.zip_bytes(bad)
    assert snapshot(victim) == before
    assert_intact(store, earlier, snap)
