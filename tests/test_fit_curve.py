"""The first session's wait, shown: the teacher's training curve goes into progress.json as it trains, its attention
before the fine-tune into the run, and the pages draw both before the run has a probe set. Offline, CPU, tiny."""
from __future__ import annotations

import dataclasses
import json

import torch

from distill_core import RunStore, SessionConfig, fit_curve
from distill_core.batching import encode
from distill_core.models import load_classifier, load_tokenizer
from distill_core.modality.text.data import load_splits
from distill_core.session import run_session
from distill_core.session.callbacks import SessionCallback
from distill_core.teacher import finetune

from app_helpers import open_page
from conftest import tiny_config_dict


class Snapshots(SessionCallback):
    """progress.json's teacher curve as the session writes it, while the teacher trains."""

    def __init__(self):
        self.curves = []

    def on_step(self, state, control):
        d = state.as_dict()
        if d.get("teacher_curve"):
            self.curves.append(d["teacher_curve"])


def test_the_teacher_curve_and_its_attention_before_the_fine_tune_are_recorded(tmp_path, tiny_teacher, tiny_csv):
    cfg = SessionConfig.from_dict(tiny_config_dict(tiny_teacher, tiny_csv, teacher__finetune_epochs=2,
                                                   teacher__finetune_batch_size=8))
    store, snaps = RunStore(tmp_path / "runs"), Snapshots()
    run = store.open(run_session(cfg, store, callbacks=[snaps]))
    assert snaps.curves, "no teacher curve while the teacher trained"
    last = snaps.curves[-1]
    # 12 steps an epoch: a validation every 3 steps is shown live, the epochs' own are the fit record's
    assert [p["step"] for p in last] == [3, 6, 9, 12, 15, 18, 21, 24]
    assert all(0 <= p["val_accuracy"] <= 1 and p["train_loss"] > 0 for p in last)
    fit = run.probe()["teacher_fit"]
    assert [p["val_accuracy"] for p in last if p["step"] % 12 == 0] == [c["val_accuracy"] for c in fit["curve"]]
    preview = run.read_json("probe_preview.json")
    maps = run.read_attention("teacher_before_finetune")
    assert preview["tokens"] == run.probe()["tokens"] and len(maps) == len(preview["tokens"])
    assert maps[0].shape[:2] == (4, 4) and preview["teacher_layers"] == 4
    assert not (run.path / "progress.json").read_text().count("teacher_curve")     # dropped once training starts


def test_the_live_validations_do_not_change_the_teacher(tiny_teacher, tiny_csv):
    cfg = SessionConfig.from_dict(tiny_config_dict(tiny_teacher, tiny_csv, teacher__finetune_batch_size=8))
    splits = load_splits(cfg.data)
    tok = load_tokenizer(str(tiny_teacher))
    ids, _ = encode(tok, splits.train_texts, 16)
    val, _ = encode(tok, splits.val_texts, 16)
    weights = []
    for collect in (False, True):
        torch.manual_seed(0)
        model, _ = load_classifier(str(tiny_teacher), 2)
        points = []
        run = (lambda: fit_curve.collecting(points.append)) if collect else None
        tcfg = dataclasses.replace(cfg.teacher, finetune_epochs=2)
        if run:
            with run():
                fit = finetune(model, ids, splits.train_labels, (val, splits.val_labels), tok.pad_token_id, tcfg,
                               torch.device("cpu"), False, None)
        else:
            fit = finetune(model, ids, splits.train_labels, (val, splits.val_labels), tok.pad_token_id, tcfg,
                           torch.device("cpu"), False, None)
        assert bool(points) == collect
        weights.append((fit["curve"], model.state_dict()))
    assert weights[0][0] == weights[1][0]
    assert all(torch.equal(weights[0][1][k], weights[1][1][k]) for k in weights[0][1])


def test_the_pages_show_the_teacher_while_it_trains(tmp_path, monkeypatch, tiny_teacher, tiny_csv):
    from pathlib import Path
    monkeypatch.setenv("ADS_RUNS_DIR", str(tmp_path / "runs"))
    cfg = SessionConfig.from_dict(tiny_config_dict(tiny_teacher, tiny_csv, teacher__finetune_epochs=2,
                                                   teacher__finetune_batch_size=8, teacher__seed=5))   # not cached
    done = RunStore(tmp_path / "done")
    finished = done.open(run_session(cfg, done))
    # a run as it stands while its teacher fine-tunes: status running, no probe set, the preview and the curve
    store = RunStore(tmp_path / "runs")
    run = store.create(cfg.to_dict(), status="running")
    for name in ("probe_preview.json",):
        (run.path / name).write_text((finished.path / name).read_text())
    run.write_attention("teacher_before_finetune", finished.read_attention("teacher_before_finetune"))
    curve = [{"step": 3, "epoch": 0.25, "train_loss": 0.7, "val_accuracy": 0.55},
             {"step": 6, "epoch": 0.5, "train_loss": 0.6, "val_accuracy": 0.6}]
    run.write_json("progress.json", {"phase": "prepare teacher", "done": 6, "total": 24, "teacher_curve": curve})
    repo = Path(__file__).resolve().parent.parent
    at = open_page(repo / "app" / "views" / "explorer.py", {"run": run.id}, default_timeout=60)
    assert not at.exception
    assert any("still preparing its teacher" in i.value for i in at.info)
    assert at.get("plotly_chart")
    from app import live_view
    charts = []
    monkeypatch.setattr(live_view.st, "plotly_chart", lambda fig, **k: charts.append(fig))
    monkeypatch.setattr(live_view.st, "caption", lambda *a, **k: None)
    assert live_view.teacher_curve(run, "t")
    assert [round(y, 6) for y in json.loads(charts[0].to_json())["data"][0]["y"]] == [55.0, 60.0]
