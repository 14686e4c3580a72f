"""Data parallelism (distill_core/distributed.py): a session across two CPU processes (gloo), started by
`accelerate launch` as a user would, writes one run whose numbers mean what a single process's mean; the
collectives are checked on their own in a two-process group."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from distill_core import distributed
from distill_core.__main__ import main

from conftest import tiny_config_dict
from distributed_worker import ROWS, TOKENS, build, collectives, row_losses

ROOT = Path(__file__).resolve().parent.parent
WORLD = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_process(monkeypatch, rank: int, size: int = 2) -> None:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(size))
    monkeypatch.setenv("LOCAL_RANK", str(rank))


# ---- one process: nothing changes ------------------------------------------------------------------------
def test_one_process_is_left_alone(monkeypatch):
    for name in WORLD:
        monkeypatch.delenv(name, raising=False)
    assert distributed.world() == (0, 1, 0) and not distributed.active() and distributed.is_main()
    index = [3, 1, 2]
    assert distributed.shard(index) is index
    assert distributed.init(torch.device("cpu")) == torch.device("cpu")
    assert distributed.average_gradients([nn.Parameter(torch.zeros(2))], 5) == 5
    assert distributed.mean_values({"ce": 0.5}, 5, 5) == {"ce": 0.5}
    assert distributed.notices(16, torch.device("cpu")) == []
    assert not torch.distributed.is_initialized()


def test_shard_splits_the_rows_and_keeps_a_short_batch_whole(monkeypatch):
    as_process(monkeypatch, 1)
    assert distributed.shard(list(range(8))) == [1, 3, 5, 7]
    assert distributed.shard(torch.arange(10, 16).numpy()) == [11, 13, 15]
    assert distributed.shard([5, 6, 7]) == [5, 6, 7]      # too few to give each process 2 rows: every process
    as_process(monkeypatch, 0)
    assert distributed.shard(list(range(8))) == [0, 2, 4, 6]


def test_other_processes_write_a_hidden_throwaway_run(tmp_path, monkeypatch):
    from distill_core import RunStore
    as_process(monkeypatch, 1)
    store = RunStore(tmp_path)
    with distributed.worker_run(store, {"name": "x"}) as run:
        assert run.path.parent == store.root and run.path.name.startswith(".rank1-")
        assert run.config() == {"name": "x"} and run.status()["status"] == "running"
        assert store.list() == []                          # no listing shows it
    assert not run.path.exists()
    monkeypatch.setenv(distributed.KEEP_WORKER_RUNS, "1")
    with distributed.worker_run(store, {}) as run:
        pass
    assert run.path.is_dir()


def test_only_run_starts_across_processes(tmp_path, monkeypatch, capsys):
    as_process(monkeypatch, 0)
    assert main(["runs", "--runs-dir", str(tmp_path)]) == 2
    assert "only `run` runs across several processes" in capsys.readouterr().err


def test_accelerate_cpu_flag_without_mpirun_is_named(monkeypatch):
    for name in WORLD:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    assert "--multi_gpu --num_processes" in distributed.launch_warning()
    monkeypatch.delenv("MASTER_ADDR")
    assert distributed.launch_warning() is None


# ---- the collectives, in a group of two ------------------------------------------------------------------
def test_gradients_and_values_are_the_whole_batchs(tmp_path):
    torch.multiprocessing.spawn(collectives, args=(free_port(), str(tmp_path)), nprocs=2)
    got = [torch.load(tmp_path / f"{r}.pt", weights_only=False) for r in (0, 1)]
    # one process on the whole batch: rows 0-3 go through `extra`, rows 4-5 do not
    modules = build()
    whole = torch.cat([row_losses(modules, ROWS[0], True), row_losses(modules, ROWS[1], False)]).mean()
    whole.backward()
    emb, head, extra, unused = modules
    want_rows = sorted(set(TOKENS.reshape(-1).tolist()))
    for g in got:
        assert g["n_total"] == 6
        assert g["values"]["total"] == pytest.approx(whole.item(), rel=1e-6)
        assert g["values"]["ce"] == pytest.approx((2.0 * 4 + 4.0 * 2) / 6)
        assert g["emb"].is_sparse and g["emb"].is_coalesced()
        assert g["emb"].indices()[0].tolist() == want_rows          # exactly the rows the whole batch used
        torch.testing.assert_close(g["emb"].to_dense(), emb.weight.grad.to_dense(), rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(g["head"], head.weight.grad, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(g["extra"], extra.weight.grad, rtol=1e-5, atol=1e-7)
        assert g["unused"] is None                                   # no gradient anywhere: left for the optimizer
        # BatchNorm: the batch means are 1.5 (rank 0, 4 rows) and 10.5 (rank 1, 2 rows); momentum 0.1 from 0
        torch.testing.assert_close(g["bn"], torch.full((2,), 0.1 * (4 * 1.5 + 2 * 10.5) / 6))
        assert g["running"] == {"ce": pytest.approx((1 * 4 + 2 * 2) / 6)}
        torch.testing.assert_close(g["focus"], torch.full((2, 2), (0 * 4 + 1 * 2) / 6, dtype=torch.float32))
        assert g["stop"] == (True, "cancelled") and g["seen"] == "written"
    for key in ("head", "extra"):
        assert torch.equal(got[0][key], got[1][key])
    assert torch.equal(got[0]["emb"].to_dense(), got[1]["emb"].to_dense())


# ---- a whole session: accelerate launch, two CPU processes ----------------------------------------------
def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_accelerate_launch_two_processes_write_one_run_like_one_process(tmp_path, tiny_teacher, tiny_csv):
    from safetensors.torch import load_file

    from distill_core import RunStore, SessionConfig, run_session
    cfg = tiny_config_dict(tiny_teacher, tiny_csv)
    cfg["student"]["dropout"] = 0.0          # no dropout: the two runs' numbers can be compared closely
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(cfg))
    runs = tmp_path / "runs"
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               HF_HOME=str(tmp_path / "hf"), **{distributed.KEEP_WORKER_RUNS: "1"})   # no user accelerate config
    for name in WORLD:
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "--main_process_port", str(free_port()),
         "-m", "distill_core", "run", "--config", str(config), "--runs-dir", str(runs), "--quiet"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    store = RunStore(runs)
    infos = store.list()
    assert [i.run_id for i in infos] == [proc.stdout.splitlines()[0]]           # only the main process wrote
    assert [p.name for p in runs.iterdir() if not p.name.startswith(".")] == [infos[0].run_id]
    run = store.open(infos[0].run_id)
    assert run.status()["status"] == "done"
    workers = list(runs.glob(".rank1-*"))                                     # kept here by KEEP_WORKER_RUNS
    assert len(workers) == 1 and json.loads((workers[0] / "status.json").read_text())["status"] == "done"

    alone = RunStore(tmp_path / "single")
    single = alone.open(run_session(SessionConfig.from_dict(cfg), alone))
    got, want = run.summary(), single.summary()
    assert got["status"] == "done" and set(got) == set(want)
    for key in ("epochs", "test_size", "variants", "epochs_done"):
        assert got[key] == want[key]
    assert set(got["accuracy"]) == set(want["accuracy"]) and None not in got["accuracy"].values()
    assert got["divergence"]["epochs"] == want["divergence"]["epochs"]
    assert any("data-parallel on 2" in n for n in got["notices"])
    assert len(run.predictions()["labels"]) == got["test_size"]
    steps, steps_1 = run.train_steps(), single.train_steps()
    assert [(s["step"], s["student"], s["steps"]) for s in steps] == [(s["step"], s["student"], s["steps"])
                                                                      for s in steps_1]
    for a, b in zip(steps, steps_1):        # the whole batch's losses, not one process's half
        assert set(a["losses"]) == set(b["losses"])
        assert a["losses"]["ce"] == pytest.approx(b["losses"]["ce"], rel=1e-3)
    metrics, metrics_1 = run.metrics(), single.metrics()
    assert [(m["epoch"], m["student"]) for m in metrics] == [(m["epoch"], m["student"]) for m in metrics_1]
    for a, b in zip(metrics, metrics_1):
        assert set(a) == set(b)
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-3)
    # the processes' weights are the same
    for variant in got["variants"]:
        for folder in (variant, variant + ".best"):
            mine = run.path / "models" / folder / "model.safetensors"
            if not mine.exists():
                continue
            a, b = load_file(mine), load_file(workers[0] / "models" / folder / "model.safetensors")
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), folder
