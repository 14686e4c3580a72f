"""The teacher cache: keyed by the teacher's files, not their place; the teacher's outputs kept on disk;
`python -m distill_core cache` lists and clears it. Offline, CPU, tiny models."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from distill_core import SessionConfig
from distill_core.__main__ import main
from distill_core.batching import encode
from distill_core.cache import cache_entries, cache_size_bytes, clear_cache, entry_lock, teachers_dir
from distill_core.modality.text.data import load_splits
from distill_core.errors import ConfigError
from distill_core.models import load_classifier, load_tokenizer
from distill_core.teacher import (PreparedTeacher, cached_teacher_outputs, outputs_dir, prepare_teacher,
                                  teacher_cache_key)

from conftest import tiny_config_dict

PAIRS = [1, 3]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("ADS_CACHE_DIR", str(root))
    return root


@pytest.fixture
def setup(tiny_teacher, tiny_csv):
    """(config, splits, tokenizer, training ids) for the tiny teacher."""
    cfg = SessionConfig.from_dict(tiny_config_dict(tiny_teacher, tiny_csv))
    splits = load_splits(cfg.data)
    tokenizer = load_tokenizer(cfg.teacher.source)
    ids, _ = encode(tokenizer, splits.train_texts, cfg.data.max_length)
    return cfg, splits, tokenizer, ids


@pytest.fixture
def prepared(tiny_teacher, setup) -> PreparedTeacher:
    model, head_new = load_classifier(str(tiny_teacher), 2)
    assert not head_new
    return PreparedTeacher(model.eval(), setup[2], str(tiny_teacher), False, False)


def outputs(prepared, ids, pairs=PAIRS, head_rule="group", need_hidden=True, max_length=16, progress=None,
            need_attention=True, need_scores=False):
    return cached_teacher_outputs(prepared, ids, 0, torch.device("cpu"), pairs, head_rule, 2, need_attention,
                                  need_hidden, {"data": "fp:train", "max_length": max_length}, batch_size=32,
                                  mixed_precision=True, progress=progress, need_scores=need_scores)


def assert_same(a, b) -> None:
    assert torch.equal(a.logits, b.logits)
    for x, y in ((a.attention, b.attention), (a.hidden, b.hidden), (a.scores, b.scores)):
        assert (x is None) == (y is None)
        if x is not None:
            assert len(x) == len(y) and all(torch.equal(p, q) for p, q in zip(x, y))


def output_files() -> list[str]:
    return sorted(p.name for p in outputs_dir().glob("*.safetensors")) if outputs_dir().is_dir() else []


# ---- the fine-tuned teacher's key ----------------------------------------------------------------------------
def test_cache_key_follows_the_files_not_the_folder(tmp_path, tiny_teacher, setup, cache):
    cfg, splits, _, _ = setup
    copy = shutil.copytree(tiny_teacher, tmp_path / "elsewhere" / "teacher")
    key = teacher_cache_key(cfg.teacher, splits, 16)
    moved = dataclasses.replace(cfg.teacher, source=str(copy))
    assert teacher_cache_key(moved, splits, 16) == key
    assert teacher_cache_key(cfg.teacher, splits, 32) != key
    assert teacher_cache_key(dataclasses.replace(cfg.teacher, seed=1), splits, 16) != key

    weights = load_file(str(copy / "model.safetensors"))
    name = next(k for k in weights if k.endswith("classifier.weight"))
    weights[name][0, 0] += 1.0
    save_file(weights, str(copy / "model.safetensors"), metadata={"format": "pt"})
    assert teacher_cache_key(moved, splits, 16) != key
    assert teacher_cache_key(cfg.teacher, splits, 16) == key       # the original is unchanged


def test_a_second_copy_of_the_teacher_reuses_the_cached_fine_tune(tmp_path, tiny_teacher, setup, cache):
    cfg, splits, tokenizer, ids = setup
    first = prepare_teacher(cfg, splits, ids, torch.device("cpu"), tokenizer=tokenizer)
    assert first.finetuned and not first.cached
    copy = shutil.copytree(tiny_teacher, tmp_path / "clone" / "teacher")
    cfg2 = SessionConfig.from_dict(tiny_config_dict(copy, Path(cfg.data.source)))
    again = prepare_teacher(cfg2, splits, ids, torch.device("cpu"), tokenizer=tokenizer)
    assert again.cached and again.path == first.path
    [entry] = cache_entries()
    assert entry.kind == "teacher" and entry.source == str(tiny_teacher) and entry.data == splits.fingerprint


# ---- the teacher's outputs -------------------------------------------------------------------------------------
def test_outputs_miss_then_hit_with_identical_tensors(prepared, setup, cache):
    ids = setup[3]
    first, hit = outputs(prepared, ids)
    assert not hit and len(output_files()) == 1
    assert first.attention[0].shape == (2, 2, len(ids[0]), len(ids[0]))   # (P, H', t_0, t_0)
    assert first.hidden[0].shape == (2, len(ids[0]), 32)                   # (P, t_0, D)
    calls = []
    again, hit = outputs(prepared, ids, progress=lambda *a: calls.append(a))
    assert hit and calls == [("teacher outputs", 1, 1)]
    assert_same(first, again)


@pytest.mark.parametrize("change", [{"pairs": [0, 3]}, {"head_rule": "mean"}, {"max_length": 32},
                                    {"need_hidden": False}])
def test_outputs_miss_when_a_key_part_changes(change, prepared, setup, cache):
    ids = setup[3]
    outputs(prepared, ids)
    changed, hit = outputs(prepared, ids, **change)
    assert not hit and len(output_files()) == 2
    assert outputs(prepared, ids, **change)[1]
    assert (changed.hidden is None) == (change.get("need_hidden") is False)


def test_scores_are_computed_and_cached_only_when_asked_for(prepared, setup, cache, caplog):
    """The scores have their own key: outputs cached without them are never read as having them, and a session
    that does not ask for them keeps finding the outputs it cached before (their key is unchanged)."""
    ids = setup[3]
    plain, _ = outputs(prepared, ids, head_rule="direct")
    assert plain.scores is None
    [old] = output_files()
    both, hit = outputs(prepared, ids, head_rule="direct", need_scores=True)
    assert not hit and len(output_files()) == 2
    [new] = set(output_files()) - {old}
    t = len(ids[0])
    assert both.scores[0].shape == both.attention[0].shape == (2, 4, t, t)     # (P, H', t_0, t_0), direct: 4 heads
    assert both.scores[0].dtype == torch.float16 and all(torch.isfinite(x).all() for x in both.scores)
    probs = torch.softmax(both.scores[0].float(), -1)       # no padding inside an example: every key is real
    assert torch.allclose(probs, both.attention[0].float(), atol=2e-3)
    assert outputs(prepared, ids, head_rule="direct")[1] and outputs(prepared, ids, head_rule="direct",
                                                                     need_scores=True)[1]
    only, hit = outputs(prepared, ids, head_rule="direct", need_attention=False, need_scores=True)
    assert not hit and only.attention is None and all(torch.equal(a, b) for a, b in zip(only.scores, both.scores))
    # a file under the scores' key that holds no scores is not misread: it is computed again
    tensors = load_file(str(outputs_dir() / old))
    save_file(tensors, str(outputs_dir() / new), metadata={"key": new.removesuffix(".safetensors")})
    with caplog.at_level(logging.WARNING, logger="distill_core.teacher"):
        again, hit = outputs(prepared, ids, head_rule="direct", need_scores=True)
    assert not hit and "no attention scores" in caplog.text
    assert_same(again, both)


def test_outputs_miss_for_other_ids_and_another_teacher(tmp_path, prepared, setup, cache):
    ids = setup[3]
    outputs(prepared, ids)
    assert not outputs(prepared, ids[:-1] + [ids[-1][:-2] + ids[-1][-1:]])[1]    # one token fewer
    copy = shutil.copytree(prepared.path, tmp_path / "copy")
    assert outputs(dataclasses.replace(prepared, path=str(copy)), ids)[1]       # same files: same outputs
    weights = load_file(str(copy / "model.safetensors"))
    name = next(k for k in weights if k.endswith("classifier.weight"))
    weights[name][0, 0] += 1.0
    save_file(weights, str(copy / "model.safetensors"), metadata={"format": "pt"})
    assert not outputs(dataclasses.replace(prepared, path=str(copy)), ids)[1]


def test_a_random_head_is_never_cached(prepared, setup, cache):
    ids = setup[3]
    fresh = dataclasses.replace(prepared, head_new=True)
    assert not outputs(fresh, ids)[1] and not outputs(fresh, ids)[1]
    assert output_files() == []


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_damaged_outputs_file_is_recomputed(damage, prepared, setup, cache, caplog):
    ids = setup[3]
    first, _ = outputs(prepared, ids)
    [name] = output_files()
    path = outputs_dir() / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a safetensors file")
    with caplog.at_level(logging.WARNING, logger="distill_core.teacher"):
        again, hit = outputs(prepared, ids)
    assert not hit and "damaged" in caplog.text
    assert_same(first, again)
    assert outputs(prepared, ids)[1]                                  # rewritten whole


def test_an_unwritable_cache_only_costs_the_compute(tmp_path, prepared, setup, monkeypatch, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("ADS_CACHE_DIR", str(blocker / "cache"))      # cannot be created under a file
    with caplog.at_level(logging.WARNING, logger="distill_core.teacher"):
        out, hit = outputs(prepared, setup[3])
    assert not hit and out.logits.shape == (len(setup[3]), 2)
    assert "ADS_CACHE_DIR" in caplog.text


# ---- listing and clearing --------------------------------------------------------------------------------------
def fake_cached_teacher(tiny_teacher, key="abc123teacherkey") -> Path:
    folder = shutil.copytree(tiny_teacher, teachers_dir() / key)
    (folder / "distill_meta.json").write_text(json.dumps({"source": "default", "key": key, "data": "fp0123"}))
    return folder


def test_cli_lists_and_clears_the_cache(tiny_teacher, prepared, setup, cache, capsys):
    assert main(["cache"]) == 0
    assert "is empty" in capsys.readouterr().out
    fake_cached_teacher(tiny_teacher)
    outputs(prepared, setup[3])
    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    assert str(cache) in out and "abc123teacherkey" in out and "default" in out and "fp0123" in out
    assert "outputs" in out and "fp:train" in out and "total" in out
    assert len(cache_entries()) == 2 and cache_size_bytes() > 0
    assert f"{cache_size_bytes() / 1e6:.1f} MB in 2 entries" in out

    assert main(["cache", "--clear", "abc123"]) == 0                  # a key's start is enough
    assert [e.kind for e in cache_entries()] == ["outputs"]
    assert main(["cache", "--clear", "nosuchkey"]) == 2
    assert "no entry 'nosuchkey'" in capsys.readouterr().err
    assert main(["cache", "--clear"]) == 0
    assert "freed" in capsys.readouterr().out
    assert cache_entries() == [] and cache_size_bytes() == 0
    main(["cache"])
    assert "is empty" in capsys.readouterr().out


def test_clear_keeps_an_entry_being_written(tiny_teacher, cache, caplog):
    fake_cached_teacher(tiny_teacher, "busykey")
    unfinished = fake_cached_teacher(tiny_teacher, "otherkey")
    os.replace(unfinished, unfinished.with_name("otherkey.tmp"))     # a fine-tune's save cut off
    assert {(e.kind, e.key) for e in cache_entries()} == {("teacher", "busykey"), ("unfinished", "otherkey")}
    with entry_lock(teachers_dir() / "busykey.lock"), caplog.at_level(logging.WARNING, logger="distill_core.cache"):
        assert clear_cache() > 0
    assert [e.key for e in cache_entries()] == ["busykey"] and "running session" in caplog.text
    with pytest.raises(ConfigError, match="lists the keys"):
        clear_cache("zzz")
    assert clear_cache("busykey") > 0 and cache_entries() == []
