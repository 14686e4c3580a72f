import json
import os
import zipfile

import numpy as np
import pytest

from distill_core.errors import RunStoreError
from distill_core.store import Run, RunStore, atomic_write_json


def test_round_trip(tmp_path):
    store = RunStore(tmp_path)
    run = store.create({"name": "demo", "data": {"source": "x.csv"}})
    assert run.status()["status"] == "running"
    run.append_metrics({"epoch": 1, "student": "distilled", "js_mean": 0.1})
    run.append_metrics({"epoch": 2, "student": "distilled", "js_mean": 0.05})
    maps = [np.random.rand(2, 3, 4, 4).astype(np.float32), np.random.rand(2, 3, 6, 6).astype(np.float32)]
    run.write_attention("teacher", maps)
    back = store.open(run.id).read_attention("teacher")
    assert [m.shape for m in back] == [(2, 3, 4, 4), (2, 3, 6, 6)]
    assert np.allclose(back[0], maps[0], atol=1e-3)          # float16 on disk
    assert run.epochs_done() == 2
    run.update_status(status="done")
    run.write_json("summary.json", {"accuracy": {"teacher": 0.8}})
    [info] = store.list()
    assert (info.run_id, info.status, info.dataset, info.name) == (run.id, "done", "x.csv", "demo")
    assert info.accuracy == {"teacher": 0.8}


def test_truncated_metrics_line_is_skipped(tmp_path):
    run = RunStore(tmp_path).create({})
    run.append_metrics({"epoch": 1, "student": "distilled"})
    with open(run.path / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "stud')                        # a crash mid-write
    assert [m["epoch"] for m in run.metrics()] == [1]


def test_damaged_folder_listed_as_damaged(tmp_path):
    store = RunStore(tmp_path)
    good = store.create({"name": "good"})
    bad = store.create({"name": "bad"})
    (bad.path / "config.json").write_text("{not json")
    infos = {i.run_id: i for i in store.list()}
    assert infos[good.id].status == "running"
    assert infos[bad.id].status == "damaged"
    assert "damaged" in infos[bad.id].error


def test_missing_attention_file_is_a_clear_error(tmp_path):
    run = RunStore(tmp_path).create({})
    with pytest.raises(RunStoreError, match="no attention maps named teacher"):
        run.read_attention("teacher")
    (run.path / "attention").mkdir()
    (run.path / "attention" / "teacher.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(RunStoreError, match="damaged"):
        run.read_attention("teacher")


def test_dead_process_reads_as_interrupted(tmp_path):
    run = RunStore(tmp_path).create({})
    run.update_status(pid=2 ** 22 + 12345)                     # no such process
    st = run.status()
    assert st["status"] == "interrupted"
    assert "stopped before it finished" in st["error"]


@pytest.mark.parametrize("bad", ["../x", "..", "a/b", "/etc", "", ".hidden", "a\x00b", "x" * 200])
def test_run_ids_cannot_escape(tmp_path, bad):
    store = RunStore(tmp_path / "runs")
    with pytest.raises(RunStoreError):
        store.open(bad)
    with pytest.raises(RunStoreError):
        store.create({}, run_id=bad)
    assert not (tmp_path / "x").exists()


def test_ids_unique_and_exclusive(tmp_path):
    store = RunStore(tmp_path)
    ids = {store.create({}).id for _ in range(20)}
    assert len(ids) == 20
    with pytest.raises(RunStoreError, match="already exists"):
        store.create({}, run_id=next(iter(ids)))


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    p = tmp_path / "a.json"
    atomic_write_json(p, {"ok": 1})
    with pytest.raises(TypeError):
        atomic_write_json(p, {"bad": object()})
    assert json.loads(p.read_text()) == {"ok": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["a.json"]


def test_delete_and_zip(tmp_path):
    store = RunStore(tmp_path)
    run = store.create({"name": "z"})
    with pytest.raises(RunStoreError, match="still running"):
        store.delete(run.id)
    run.update_status(status="done")
    run.write_json("compression.json", {"variants": {}})
    (run.path / "compressed" / "v" / "fp32").mkdir(parents=True)
    (run.path / "compressed" / "v" / "fp32" / "model.safetensors").write_bytes(b"0" * 10)
    data = store.zip_bytes(run.id)
    import io
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert f"{run.id}/config.json" in names and f"{run.id}/compression.json" in names
    assert not any("/compressed/" in n for n in names)          # remade by compress from models/
    store.delete(run.id)
    assert not run.path.exists()


def test_cancel_flag(tmp_path):
    run = RunStore(tmp_path).create({})
    assert not run.cancel_requested()
    run.request_cancel()
    assert Run(run.path).cancel_requested()


def test_run_with_damaged_status_can_be_deleted(tmp_path):
    store = RunStore(tmp_path)
    run = store.create({})
    (run.path / "status.json").write_text("{trunc")
    store.delete(run.id)
    assert not run.path.exists()


def test_links_never_leave_the_store(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    store = RunStore(tmp_path / "runs")
    run = store.create({})
    run.update_status(status="done")
    (run.path / "link.txt").symlink_to(outside / "secret.txt")
    (store.root / "20990101-linked").symlink_to(outside, target_is_directory=True)
    assert [i.run_id for i in store.list()] == [run.id]
    with pytest.raises(RunStoreError):
        store.open("20990101-linked")
    import io
    names = zipfile.ZipFile(io.BytesIO(store.zip_bytes(run.id))).namelist()
    assert not any("link.txt" in n for n in names)


def test_attention_epochs_of_variants_whose_names_share_a_start(tmp_path):
    run = RunStore(tmp_path).create({"name": "x"})
    maps = [np.full((1, 1, 2, 2), 0.5, dtype=np.float32)]
    for name in ("kd_e0", "kd_e1", "kd_extra_e0", "kd_extra_e1", "kd_extra_e2", "kd_e1x"):
        run.write_attention(name, maps)
    assert run.attention_epochs("kd") == [0, 1]
    assert run.attention_epochs("kd_extra") == [0, 1, 2]
    assert run.attention_epochs("k") == []


def test_reader_dir_and_teacher_dir(tmp_path):
    run = RunStore(tmp_path).create({"name": "paths"})
    assert run.reader_dir("tokenizer") == run.path / "models" / "tokenizer"
    assert run.reader_dir("preprocess") == run.path / "models" / "preprocess"
    for bad in ("", "..", "a/b"):
        with pytest.raises(ValueError):
            run.reader_dir(bad)
    with pytest.raises(RunStoreError, match="does not say where its teacher is"):
        run.teacher_dir()
    run.write_json("probe.json", {"teacher_path": "teacher"})
    assert run.teacher_dir() == run.path / "teacher"                    # relative: read from the run's folder
    assert run.teacher_dir(str(tmp_path / "elsewhere")) == tmp_path / "elsewhere"
