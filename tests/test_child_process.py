"""Sessions run in a child process: a native crash there ends only that session, and the parent records why.

The crash that made this necessary: torch 2.13's oneDNN backward of a strided 1x1 convolution (a residual block's
shortcut) on a channels-last input, an odd batch and more than one thread corrupts the heap ("free(): invalid next
size", then SIGABRT or SIGSEGV). Colour pictures were channels-last after the (N, H, W, C) -> (N, C, H, W) permute.
Minimal reproduction (2 threads; fine with one thread, an even batch, a contiguous x or oneDNN off):

    conv = torch.nn.Conv2d(8, 16, 1, stride=2, bias=False)
    for _ in range(30):
        x = torch.randn(7, 8, 32, 32).contiguous(memory_format=torch.channels_last).requires_grad_(True)
        conv(x).sum().backward()
"""
from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import torch
from PIL import Image

from conftest import tiny_config_dict, tiny_image_config_dict
from distill_core import RunStore, SessionConfig
from distill_core.__main__ import main
from distill_core.modality.vision.data import to_tensor
from distill_core.modality.vision.models import training_layout
from distill_core.session import run_in_child
from distill_core.session.child import CRASH_FILE, describe_exit, where_it_stopped


def colour_folder(root, per_class=(16, 15, 14), size=32, seed=0):
    """Class folders of colour PNGs: a bright square, circle-ish blob or bar on a noisy background."""
    rng = np.random.default_rng(seed)
    for k, n in enumerate(per_class):
        (root / f"class{k}").mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 120, (size, size, 3)).astype(np.uint8)
            a, b = rng.integers(0, size - 8, 2)
            img[a:a + 8, b:b + 8 if k != 2 else b + 3, k % 3] = 255
            Image.fromarray(img).save(root / f"class{k}" / f"{i}.png")
    return root


def test_pictures_reach_the_models_contiguous_and_cnns_train_so_on_the_cpu():
    x = to_tensor(np.zeros((3, 5, 5, 3), dtype=np.uint8))
    assert x.shape == (3, 3, 5, 5) and x.is_contiguous()
    assert training_layout("cpu", is_vit=False) == torch.contiguous_format
    assert training_layout("cuda", is_vit=False) == torch.channels_last
    assert training_layout("cuda", is_vit=True) == torch.contiguous_format


def test_a_small_colour_folder_of_odd_size_trains_with_the_default_threads(tmp_path):
    """45 colour pictures in batches of 7, a CNN teacher and students whose second stage has a strided 1x1
    shortcut: in a child process with torch's default threads, to the end."""
    folder = colour_folder(tmp_path / "pictures")
    d = tiny_image_config_dict("cnn", data={"source": str(folder)},          # 45 pictures: split by fractions
                               image={"teacher_widths": [8, 16], "student_widths": [8, 16], "teacher_epochs": 2},
                               train__batch_size=7)
    store = RunStore(tmp_path / "runs")
    run = store.create(SessionConfig.from_dict(d).to_dict())
    ended = run_in_child(run)
    assert ended["exit_code"] == 0 and ended["status"] == "done", ended.get("error")
    summary = run.summary()
    assert summary["status"] == "done" and set(summary["accuracy"]) >= {"teacher", "baseline", "at"}
    assert run.probe()["channels"] == 3
    assert not (run.path / CRASH_FILE).exists()


def test_a_session_killed_by_a_signal_ends_alone_and_its_run_says_why(tmp_path, tiny_teacher, tiny_csv, capsys):
    d = tiny_config_dict(tiny_teacher, tiny_csv, train__epochs=400)
    store = RunStore(tmp_path / "runs")
    run = store.create(SessionConfig.from_dict(d).to_dict())
    ended = {}
    waiter = threading.Thread(target=lambda: ended.update(run_in_child(run)))
    waiter.start()
    deadline = time.time() + 120
    while time.time() < deadline and run.progress().get("phase") != "train":
        time.sleep(0.2)
    assert run.progress().get("phase") == "train"
    child = run.read_json("status.json")["pid"]
    assert child != os.getpid()
    os.kill(child, signal.SIGSEGV)                          # as a crash in a native kernel would end it
    waiter.join(60)
    assert not waiter.is_alive()
    assert ended["exit_code"] == -signal.SIGSEGV and ended["status"] == "failed"
    status = run.status()
    assert status["status"] == "failed"
    assert status["error"].startswith("killed by signal 11 (SIGSEGV, segmentation fault) during training, epoch ")
    assert " of 400, after step " in status["error"] and CRASH_FILE in status["error"]
    assert "Fatal Python error: Segmentation fault" in status["traceback"]
    assert (run.path / CRASH_FILE).read_text().strip() == status["traceback"]
    summary = run.summary()                                 # what the recorded epochs say, for the pages
    assert summary["status"] == "failed" and summary["error"] == status["error"]
    assert summary["epochs_done"] == len(summary["divergence"]["epochs"]) - 1 >= 0
    assert main(["runs", "--runs-dir", str(store.root)]) == 0
    listing = capsys.readouterr().out
    assert "failed: killed by signal 11 (SIGSEGV, segmentation fault) during training" in listing


def test_exit_and_progress_in_words():
    assert describe_exit(-9) == "killed by signal 9 (SIGKILL, killed)"
    assert describe_exit(-6).startswith("killed by signal 6 (SIGABRT, abort")
    assert describe_exit(3) == "its process exited with status 3 before recording an end"
    assert where_it_stopped({}) == "before the session started"
    assert where_it_stopped({"phase": "train", "epoch": 0, "epochs": 6, "done": 4, "total": 30}) == \
        "during training, epoch 1 of 6, after step 4 of 30"
    assert where_it_stopped({"phase": "prepare teacher", "done": 3, "total": 40}) == \
        "during prepare teacher, after step 3 of 40"


def test_a_child_that_fails_before_its_session_begins_is_recorded(tmp_path, tiny_teacher, tiny_csv):
    """A run folder whose config cannot be read: the child exits before run_session could record anything."""
    d = tiny_config_dict(tiny_teacher, tiny_csv, train__epochs=1)
    store = RunStore(tmp_path / "runs")
    run = store.create(SessionConfig.from_dict(d).to_dict())
    (run.path / "config.json").write_text("{not json")
    ended = run_in_child(run)
    assert ended["status"] == "failed" and ended["exit_code"] == 2
    assert ended["error"].startswith("the session could not start: run ") and "config.json is damaged" in ended["error"]
