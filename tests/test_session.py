"""Whole sessions on tiny models: events, records, cancellation, reproducibility, faults."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from distill_core import RunStore, SessionCallback, SessionConfig, run_session
from distill_core.errors import ConfigError, NonFiniteLossError

from conftest import poison_logit_kd, tiny_config_dict


class Recorder(SessionCallback):
    def __init__(self, cancel_after_epoch=None, cancel_at_train_step=None):
        self.events = []
        self.cancel_after_epoch = cancel_after_epoch
        self.cancel_at_train_step = cancel_at_train_step

    def on_session_begin(self, state, control):
        self.events.append("begin")

    def on_step(self, state, control):
        if not self.events or self.events[-1] != f"step:{state.phase}":
            self.events.append(f"step:{state.phase}")
        if state.phase == "train" and state.done == self.cancel_at_train_step:
            control.stop("cancelled")

    def on_epoch_end(self, state, control, records):
        self.events.append(f"epoch:{state.epoch}:{','.join(r['student'] for r in records)}")
        if state.epoch == self.cancel_after_epoch:
            control.stop("cancelled")

    def on_session_end(self, state, control, summary):
        self.events.append(f"end:{summary['status']}")


def config(tiny_teacher, tiny_csv, **over):
    return SessionConfig.from_dict(tiny_config_dict(tiny_teacher, tiny_csv, **over))


def test_one_epoch_session_end_to_end(tmp_path, tiny_teacher, tiny_csv, monkeypatch):
    monkeypatch.setenv("ADS_CACHE_DIR", str(tmp_path / "cache"))     # a teacher not yet fine-tuned
    rec = Recorder()
    store = RunStore(tmp_path)
    run_id = run_session(config(tiny_teacher, tiny_csv, train__epochs=1), store, [rec])
    assert rec.events == ["begin", "step:load data", "step:prepare teacher", "step:teacher outputs", "step:epoch 0",
                          "step:train", "epoch:1:baseline,distilled", "step:evaluate", "end:done"]
    run = store.open(run_id)
    assert run.status()["status"] == "done"
    summary = run.summary()
    assert set(summary["accuracy"]) == {"teacher", "baseline", "distilled"}
    assert all(0.0 <= v <= 1.0 for v in summary["accuracy"].values())
    assert summary["divergence"]["epochs"] == [0, 1]
    assert len(summary["divergence"]["distilled"]) == len(summary["divergence"]["baseline"]) == 2
    # both students start from the same weights: equal divergence before training
    assert summary["divergence"]["distilled"][0] == pytest.approx(summary["divergence"]["baseline"][0])
    probe = run.probe()
    assert probe["pairs"] == [[1, 0], [3, 1]] and probe["head_rule"] == "group"
    teacher = run.read_attention("teacher")
    assert len(teacher) == 4 and teacher[0].shape[:2] == (4, 4)          # (L, H, T, T) teacher
    student = run.read_attention("distilled_e1")
    assert student[0].shape[:2] == (2, 2)
    assert len(probe["tokens"][0]) == student[0].shape[-1]
    for m in student:
        assert np.allclose(m.sum(-1), 1.0, atol=1e-2)                     # rows are distributions
    lines = run.metrics()
    assert [(m["epoch"], m["student"]) for m in lines] == [(0, "baseline"), (0, "distilled"),
                                                          (1, "baseline"), (1, "distilled")]
    assert summary["variants"] == ["baseline", "distilled"] and summary["reference"] == "baseline"
    att = lines[-1]["attention"]
    assert set(att) == {"kl", "js", "mse", "cosine"}
    assert np.array(att["js"]).shape == (2, 2)                           # (pairs, compared heads)
    assert set(lines[-1]["train_loss"]) == {"total", "ce", "logit_kd", "attention_kl"}
    assert set(lines[-2]["train_loss"]) == {"total", "ce"}
    assert (run.path / "models" / "distilled" / "model.safetensors").is_file()
    assert summary["params"]["distilled"] < summary["params"]["teacher"]
    assert summary["latency_ms"]["distilled"] > 0


def test_attention_transfer_pulls_student_towards_teacher(tmp_path, tiny_teacher, tiny_csv):
    store = RunStore(tmp_path)
    cfg = config(tiny_teacher, tiny_csv, train__epochs=3,
                 objectives__losses={"ce": 0.1, "attention_kl": 10.0}, train__lr=5e-3)
    summary = store.open(run_session(cfg, store)).summary()
    d, b = summary["divergence"]["distilled"], summary["divergence"]["baseline"]
    assert d[-1] < d[0]
    assert d[-1] < b[-1]


def test_same_seed_same_result(tmp_path, tiny_teacher, tiny_csv):
    store = RunStore(tmp_path)
    a = store.open(run_session(config(tiny_teacher, tiny_csv), store))
    b = store.open(run_session(config(tiny_teacher, tiny_csv), store))
    ma, mb = a.metrics(), b.metrics()
    for x, y in zip(ma, mb):
        assert x["val_accuracy"] == y["val_accuracy"]
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-5)
        assert x["js_mean"] == pytest.approx(y["js_mean"], rel=1e-5)
    c = store.open(run_session(config(tiny_teacher, tiny_csv, train__seed=1), store))
    assert [m["train_loss"] for m in c.metrics()] != [m["train_loss"] for m in ma]


def _saved_weights_give_recorded_maps(run, variant: str, epoch: int) -> bool:
    """Whether the variant's saved weights reproduce the attention recorded on the probe set at `epoch`."""
    from distill_core.analysis import attention_for_text, load_run_models
    rm = load_run_models(run)
    recorded = run.read_attention(f"{variant}_e{epoch}")
    rm.models = {variant: rm.models[variant]}
    for text, maps in zip(run.probe()["texts"], recorded):
        _, live, _ = attention_for_text(rm, text)
        if live[variant].shape != maps.shape or not np.allclose(live[variant], maps, atol=2e-3):
            return False
    return True


def test_cancel_keeps_finished_epochs_and_their_weights(tmp_path, tiny_teacher, tiny_csv):
    store = RunStore(tmp_path)
    rec = Recorder(cancel_at_train_step=8)      # 6 steps per epoch: cancelled inside epoch 2
    run = store.open(run_session(config(tiny_teacher, tiny_csv, train__epochs=3), store, [rec]))
    assert run.status()["status"] == "cancelled"
    assert rec.events[-1] == "end:cancelled"
    assert run.epochs_done() == 1
    assert run.attention_epochs("distilled") == [0, 1]
    summary = run.summary()
    assert summary["divergence"]["epochs"] == [0, 1]
    for variant in ("baseline", "distilled"):
        assert _saved_weights_give_recorded_maps(run, variant, 1)


def test_a_stop_inside_an_epoch_saves_the_last_finished_epochs_weights_exactly(tmp_path, tiny_teacher, tiny_csv):
    from safetensors.torch import load_file

    from distill_core.session import Session
    store = RunStore(tmp_path)
    cfg = config(tiny_teacher, tiny_csv, train__epochs=3)
    session = Session(cfg, store.create(cfg.to_dict()))
    p = session.prepare()
    session.record_epoch(p, 0)
    assert session.train_epoch(p, 1)
    session.record_epoch(p, 1)
    after_epoch_1 = {v.name: {k: t.clone() for k, t in v.model.state_dict().items()} for v in p.variants}
    for index in p.modality.batches("train", cfg.train.batch_size, seed=99)[:2]:   # two steps into epoch 2
        session.train_step(p, index)
    moved = p.variants[0].model.state_dict()
    assert any(not torch.equal(moved[k], t) for k, t in after_epoch_1[p.variants[0].name].items())
    session.control.stop("cancelled")
    summary = session.finish(p)
    assert summary["status"] == "cancelled" and summary["epochs_done"] == 1
    for v in p.variants:
        saved = load_file(str(session.run.model_dir(v.name) / "model.safetensors"))
        expected = after_epoch_1[v.name]
        assert set(saved) <= set(expected)
        assert all(torch.equal(saved[k], expected[k]) for k in saved), v.name


def test_cancel_file_from_another_process(tmp_path, tiny_teacher, tiny_csv):
    store = RunStore(tmp_path)

    class CancelViaStore(SessionCallback):
        def on_epoch_end(self, state, control, records):
            store.open(state.run_id).request_cancel()   # as `python -m distill_core cancel` would

    run = store.open(run_session(config(tiny_teacher, tiny_csv, train__epochs=3), store, [CancelViaStore()]))
    assert run.status()["status"] == "cancelled"
    assert run.epochs_done() == 1


def test_nan_loss_fails_with_epoch_and_keeps_finished_epochs(tmp_path, tiny_teacher, tiny_csv, monkeypatch):
    poison_logit_kd(monkeypatch, after_calls=7)           # 6 steps per epoch: NaN in epoch 2
    store = RunStore(tmp_path)
    with pytest.raises(NonFiniteLossError, match="epoch 2"):
        run_session(config(tiny_teacher, tiny_csv, train__epochs=3), store)
    [info] = store.list()
    run = store.open(info.run_id)
    st = run.status()
    assert st["status"] == "failed"
    assert "epoch 2" in st["error"] and "nan" in st["error"].lower() and "learning rate" in st["error"]
    assert run.epochs_done() == 1
    assert run.summary()["divergence"]["epochs"] == [0, 1]


def test_time_budget_stops_after_finished_epochs(tmp_path, tiny_teacher, tiny_csv):
    store = RunStore(tmp_path)
    run = store.open(run_session(config(tiny_teacher, tiny_csv, train__epochs=50, train__time_budget_s=2.0),
                                 store))
    summary = run.summary()
    assert summary["status"] == "done" and summary["stopped_early"] == "time budget"
    assert 1 <= summary["epochs_done"] < 50
    # the budget is counted from the start of training, and checked only when an epoch has finished
    assert summary["train_s"] >= 2.0 and summary["train_s"] <= summary["wall_s"]
    assert summary["accuracy"]["distilled"] is not None


def test_time_budget_excludes_the_teacher_and_always_finishes_an_epoch(tmp_path, tiny_teacher, tiny_csv):
    store = RunStore(tmp_path)
    # a budget far shorter than preparing the teacher: the old rule (time since the session began, checked at
    # every step) stopped before the first epoch and reported untrained students' test accuracy as done
    cfg = config(tiny_teacher, tiny_csv, train__epochs=3, train__time_budget_s=1e-3)
    run = store.open(run_session(cfg, store))
    summary = run.summary()
    assert summary["status"] == "done" and summary["epochs_done"] == 1 and summary["stopped_early"] == "time budget"
    assert _saved_weights_give_recorded_maps(run, "distilled", 1)


def test_cancel_before_the_first_epoch_reports_no_test_accuracy(tmp_path, tiny_teacher, tiny_csv):
    store = RunStore(tmp_path)
    rec = Recorder(cancel_at_train_step=2)
    run = store.open(run_session(config(tiny_teacher, tiny_csv, train__epochs=2), store, [rec]))
    summary = run.summary()
    assert run.status()["status"] == "cancelled" and summary["epochs_done"] == 0
    assert all(v is None for v in summary["accuracy"].values())


def test_all_objectives_and_from_teacher_init(tmp_path, tiny_teacher, tiny_csv):
    store = RunStore(tmp_path)
    losses = {"ce": 1, "logit_kd": 1, "hard_kd": 1, "attention_mse": 1, "attention_kl": 1, "hidden_mse": 1}
    cfg = config(tiny_teacher, tiny_csv, train__epochs=1, objectives__losses=losses,
                 student={"layers": 2, "heads": 4, "hidden": 32, "intermediate": 64, "init": "from_teacher"},
                 train__baseline=False)
    run = store.open(run_session(cfg, store))
    assert run.summary()["variants"] == ["distilled"] and run.summary()["reference"] is None
    line = run.metrics()[-1]
    assert set(line["train_loss"]) == {"total", *losses}
    assert run.probe()["head_rule"] == "direct"
    assert all(math.isfinite(v) for v in line["train_loss"].values())
    assert "baseline" not in run.summary()["accuracy"] or run.summary()["accuracy"]["baseline"] is None


def test_hidden_projection_when_widths_differ(tmp_path, tiny_teacher, tiny_csv):
    store = RunStore(tmp_path)
    cfg = config(tiny_teacher, tiny_csv, train__epochs=1, objectives__losses={"ce": 1, "hidden_mse": 1},
                 objectives__head_rule="mean")
    run = store.open(run_session(cfg, store))
    assert run.probe()["head_rule"] == "mean"
    assert np.array(run.metrics()[-1]["attention"]["js"]).shape == (2, 1)


def test_teacher_finetune_is_cached(tmp_path, tiny_teacher, tiny_csv):
    store = RunStore(tmp_path)
    first = store.open(run_session(config(tiny_teacher, tiny_csv, train__epochs=1), store)).summary()
    second = store.open(run_session(config(tiny_teacher, tiny_csv, train__epochs=1), store)).summary()
    assert second["teacher_cached"] is True
    assert first["teacher_path"] == second["teacher_path"]
    assert first["accuracy"]["teacher"] == second["accuracy"]["teacher"]
    other_seed = store.open(run_session(config(tiny_teacher, tiny_csv, train__epochs=1, train__seed=5), store)).summary()
    assert other_seed["teacher_cached"] is True and other_seed["teacher_path"] == first["teacher_path"]
    # the teacher's accuracy on the split is kept with it, not recomputed by every session
    kept = json.loads((Path(first["teacher_path"]) / "distill_eval.json").read_text())
    assert kept["test:cpu"]["accuracy"] == first["accuracy"]["teacher"] == other_seed["accuracy"]["teacher"]
    # besides the evaluations, only the logits a session with several teachers keeps (tests share this cache)
    assert {"val:cpu", "test:cpu"} <= set(kept) and all(k.startswith("logits:") for k in set(kept) - {"val:cpu", "test:cpu"})


def test_bad_settings_fail_before_a_run_starts(tmp_path, tiny_teacher, tiny_csv):
    with pytest.raises(ConfigError, match="divisible"):
        config(tiny_teacher, tiny_csv, student={"layers": 2, "heads": 3, "hidden": 16})
    store = RunStore(tmp_path)
    cfg = config(tiny_teacher, tiny_csv, student={"layers": 6, "heads": 2, "hidden": 16, "intermediate": 32})
    with pytest.raises(ConfigError, match="at most 4 student layers"):
        run_session(cfg, store)
    [info] = store.list()
    assert info.status == "failed" and "at most 4 student layers" in info.error
