"""The training loss within epochs (train_steps.jsonl) and the progress of the whole session (progress.json)."""
import importlib
import time
from types import SimpleNamespace

import pytest

from distill_core import RunStore, SessionCallback, SessionConfig, run_session
from distill_core.session import SessionState

from conftest import tiny_config_dict

session_module = importlib.import_module("distill_core.session.session")


class Capture(SessionCallback):
    """state.as_dict() at every step and epoch end, as progress.json would hold it."""

    def __init__(self, cancel_at_train_step=None):
        self.seen: list[dict] = []
        self.cancel_at_train_step = cancel_at_train_step

    def on_step(self, state, control):
        self.seen.append(state.as_dict())
        if state.phase == "train" and state.done == self.cancel_at_train_step:
            control.stop("cancelled")

    def on_epoch_end(self, state, control, records):
        self.seen.append({**state.as_dict(), "epoch_end": True})


def fake_clock(monkeypatch) -> None:
    """The session's own measurements (perf_counter) advance one second per reading; wall time stays real."""
    ticks = iter(range(10**9))
    monkeypatch.setattr(session_module, "time",
                        SimpleNamespace(time=time.time, perf_counter=lambda: float(next(ticks))))


@pytest.fixture(scope="module")
def three_epochs(tmp_path_factory, tiny_teacher, tiny_csv):
    """(run, captured progress) of a 3-epoch session (6 steps per epoch) measured on a fake clock."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
        fake_clock(mp)
        store = RunStore(tmp_path_factory.mktemp("progress_runs"))
        cap = Capture()
        cfg = SessionConfig.from_dict(tiny_config_dict(tiny_teacher, tiny_csv, train__epochs=3))
        run = store.open(run_session(cfg, store, [cap]))
    return run, cap.seen


def test_train_steps_hold_one_record_per_step_and_variant_when_epochs_are_short(three_epochs):
    run, _ = three_epochs
    steps = run.train_steps()
    assert len(steps) == 3 * 6 * 2                       # max(1, 6 // 25) = 1: every step, both variants
    for v in ("baseline", "distilled"):
        mine = [r for r in steps if r["student"] == v]
        assert [r["step"] for r in mine] == list(range(1, 19))
        assert [r["epoch"] for r in mine] == [round(s / 6, 4) for s in range(1, 19)]
        assert mine[6]["epoch"] == pytest.approx(1.1667) and mine[5]["epoch"] == 1.0
        assert all(r["steps"] == 1 for r in mine)
        by_epoch = {m["epoch"]: m["train_loss"] for m in run.metrics() if m["student"] == v and m["epoch"]}
        for e, epoch_loss in by_epoch.items():
            inside = [r["losses"] for r in mine if e - 1 < r["epoch"] <= e]
            assert set(inside[0]) == set(epoch_loss)
            for k in epoch_loss:       # the epoch's mean loss is the mean of its steps
                assert sum(x[k] for x in inside) / len(inside) == pytest.approx(epoch_loss[k], rel=1e-6)
    # both variants of one flush are written together, in session order
    assert [r["student"] for r in steps[:4]] == ["baseline", "distilled", "baseline", "distilled"]


def test_progress_counts_steps_in_the_epoch_only_while_training(three_epochs):
    _, seen = three_epochs
    train = [s for s in seen if s["phase"] == "train" and not s.get("epoch_end")]
    assert len(train) == 18
    assert [(s["epoch_step"], s["epoch_steps"]) for s in train] == [(k % 6 + 1, 6) for k in range(18)]
    assert [s["done"] for s in train] == list(range(1, 19))
    others = [s for s in seen if s["phase"] != "train"]
    assert {s["phase"] for s in others} >= {"load data", "evaluate", "teacher outputs"}
    assert all(s["epoch_step"] is None and s["epoch_steps"] is None for s in others)


def test_session_eta_is_unknown_before_training_then_counts_down(three_epochs):
    run, seen = three_epochs
    before = seen[:next(i for i, s in enumerate(seen) if s["phase"] == "train")]
    assert before and all(s["session_eta_s"] is None for s in before)
    assert any(s["eta_s"] is not None for s in before)        # the phase's own ETA is still there
    train = [s for s in seen if s["phase"] == "train" and not s.get("epoch_end")]
    etas = [s["session_eta_s"] for s in train]
    assert all(isinstance(e, float) and e >= 0 for e in etas)
    assert all(b < a for a, b in zip(etas, etas[1:]))          # every step brings the end closer
    # one second per step on this clock: within an epoch each step takes exactly that off
    for k in range(17):
        if (k + 1) % 6:
            assert etas[k] - etas[k + 1] == pytest.approx(1.0, abs=0.051)
    # at the first step: 5 more steps, 3 recordings of 7 s (a start and 3 readings per variant), 2 epochs of 6
    # steps, and the final evaluation: 3 models (the teacher and two variants) scaled by test/val size (1), plus
    # up to two best-epoch evaluations
    assert 5 + 3 * 7 + 2 * 6 + 3 <= etas[0] <= 5 + 3 * 7 + 2 * 6 + 5
    # at the last step: one recording and the final evaluation
    assert 7 + 3 <= etas[-1] <= 7 + 5
    evaluate = [s["session_eta_s"] for s in seen if s["phase"] == "evaluate"]
    assert evaluate and all(e is not None and e >= 0 for e in evaluate)
    final = run.progress()
    assert final["phase"] == "done" and final["session_eta_s"] == 0.0 and final["epoch_step"] is None


def test_thinned_records_average_their_steps_and_a_stop_flushes_the_rest(tmp_path, tiny_teacher, tiny_csv):
    store = RunStore(tmp_path)
    # the 96 training examples one by one: 96 steps per epoch, a record every 96 // 25 = 3 steps; stopped at 8
    cfg = SessionConfig.from_dict(tiny_config_dict(tiny_teacher, tiny_csv, train__epochs=1, train__batch_size=1,
                                                   objectives__losses={"ce": 0.5, "logit_kd": 0.5}))
    run = store.open(run_session(cfg, store, [Capture(cancel_at_train_step=8)]))
    assert run.status()["status"] == "cancelled" and run.epochs_done() == 0
    steps = run.train_steps()
    assert [(r["step"], r["student"], r["steps"]) for r in steps] == [
        (3, "baseline", 3), (3, "distilled", 3), (6, "baseline", 3), (6, "distilled", 3),
        (8, "baseline", 2), (8, "distilled", 2)]
    assert [r["epoch"] for r in steps] == [0.0312, 0.0312, 0.0625, 0.0625, 0.0833, 0.0833]
    assert set(steps[0]["losses"]) == {"total", "ce"} and set(steps[1]["losses"]) == {"total", "ce", "logit_kd"}


def test_a_record_is_the_mean_of_its_steps():
    from distill_core.session.variant import LossWindow
    w = LossWindow()
    w.add({"a": {"total": 1.0, "ce": 2.0}, "b": {"total": 3.0}})
    w.add({"a": {"total": 2.0, "ce": 4.0}, "b": {"total": 5.0}})
    assert w.flush(4, 8) == [{"step": 4, "epoch": 0.5, "student": "a", "steps": 2, "losses": {"total": 1.5, "ce": 3.0}},
                             {"step": 4, "epoch": 0.5, "student": "b", "steps": 2, "losses": {"total": 4.0}}]
    assert w.flush(5, 8) == []                           # nothing added since


def test_train_steps_reader_skips_a_truncated_line(tmp_path):
    run = RunStore(tmp_path).create({})
    assert run.train_steps() == []
    run.append_train_steps([])
    assert not (run.path / "train_steps.jsonl").exists()
    run.append_train_steps([{"step": 1, "epoch": 0.5, "student": "a", "steps": 1, "losses": {"total": 1.0}},
                            {"step": 1, "epoch": 0.5, "student": "b", "steps": 1, "losses": {"total": 2.0}}])
    with open(run.path / "train_steps.jsonl", "a") as f:
        f.write('{"step": 2, "epo')                          # a crash mid-write
    assert [(r["student"], r["losses"]["total"]) for r in run.train_steps()] == [("a", 1.0), ("b", 2.0)]


def training_state(**over) -> SessionState:
    s = SessionState(run_id="x", phase="train", epochs=10, epoch_steps=10, step_s=10.0, steps_timed=10,
                     record_s=2.0, finish_s=5.0, done=5, epoch=0)
    for k, v in over.items():
        setattr(s, k, v)
    return s


def test_session_eta_arithmetic():
    # 5 steps + a recording to finish epoch 1, 9 epochs of 10 steps and a recording, the final evaluation
    assert training_state().session_eta_s == pytest.approx(5 + 2 + 9 * 12 + 5)
    assert training_state(done=10).session_eta_s == pytest.approx(0 + 2 + 9 * 12 + 5)      # epoch 1 not yet recorded
    assert training_state(done=10, epoch=1).session_eta_s == pytest.approx(9 * 12 + 5)
    assert training_state(done=100, epoch=10).session_eta_s == pytest.approx(5)           # all recorded
    assert training_state(steps_timed=0, step_s=0.0).session_eta_s is None              # no step measured yet
    assert training_state(phase="teacher outputs").session_eta_s is None
    assert training_state(phase="done").session_eta_s == 0.0


def test_session_eta_with_a_time_budget_stops_where_the_budget_runs_out():
    # 20 s of training spent, a 40 s budget: epoch 1 ends at 27 s, epoch 2 at 39 s, epoch 3 at 51 s: stop there
    s = training_state(time_budget_s=40.0, train_started=time.time() - 20)
    assert s.session_eta_s == pytest.approx(7 + 12 + 12 + 5, abs=0.5)
    # an epoch recorded after the budget ran out: only the final evaluation is left
    s = training_state(time_budget_s=40.0, train_started=time.time() - 50, done=10, epoch=1)
    assert s.session_eta_s == pytest.approx(5)


# ---- estimates that learn from what is measured -----------------------------------------------------------------
def test_the_training_speed_forgets_the_warm_up_and_follows_the_latest_steps():
    from distill_core.session.callbacks import STEP_WINDOW, WARMUP_STEPS
    s = training_state(step_s=0.0, steps_timed=0, done=0, epoch_steps=40)
    for _ in range(WARMUP_STEPS):
        s.add_step(5.0)                                   # the first steps: allocations, first calls
    assert s.per_step_s == pytest.approx(5.0)             # all there is so far
    etas = []
    for k in range(1, 11):
        s.add_step(1.0)
        s.done = WARMUP_STEPS + k
        etas.append(s.session_eta_s)
    assert s.per_step_s == pytest.approx(1.0)             # the mean of every step would say (15 + 10) / 13 = 1.92
    # one second per step from now on: the estimate is the true time left, not the warm-up's
    left = (40 - s.done) * 1.0 + 2 + 9 * (40 * 1.0 + 2) + 5
    assert etas[-1] == pytest.approx(left)
    # the machine slows down to 2 s a step: within a window of steps the estimate is the new speed's
    for _ in range(STEP_WINDOW):
        s.add_step(2.0)
    assert s.per_step_s == pytest.approx(2.0)


def test_the_session_estimate_converges_on_the_measured_speed():
    """Steps of 1 s after a slow start: each estimate is closer to the true time left than the one before."""
    s = training_state(step_s=0.0, steps_timed=0, done=0, epochs=2, epoch_steps=40, record_s=0.0, finish_s=0.0)
    errors = []
    for k in range(1, 30):
        s.add_step(4.0 if k <= 3 else 1.0)
        s.done = k
        errors.append(abs(s.session_eta_s - (80 - k) * 1.0))
    assert errors[-1] == pytest.approx(0.0)
    assert all(b <= a for a, b in zip(errors, errors[1:]))


def test_the_final_evaluation_estimate_learns_from_the_models_tested():
    s = training_state(phase="evaluate", total=4, done=0, finish_parts=[0.0, 10.0, 10.0, 10.0], finish_s=30.0)
    s.phase_started = time.time() - 3
    assert s.session_eta_s == pytest.approx(27.0, abs=0.2)               # the plan, less the time spent
    s.done, s.phase_started = 1, time.time() - 0.5                      # the teacher's answers were kept: no time
    assert s.session_eta_s == pytest.approx(29.5, abs=0.2)
    s.done, s.phase_started = 2, time.time() - 20                       # the first student took 20 s, not 10
    assert s.session_eta_s == pytest.approx(40.0, abs=0.2) and s.eta_s == pytest.approx(s.session_eta_s, abs=0.1)
    s.done = 4
    assert s.session_eta_s == 0.0


def test_the_estimates_read_from_a_plan_of_items():
    from distill_core.session.callbacks import plan_left_s
    assert plan_left_s([5.0, 5.0], 0, 2.0) == 8.0
    assert plan_left_s([5.0, 5.0], 0, 7.0) == 3.0 and plan_left_s([5.0, 5.0], 0, 12.0) == 0.0
    assert plan_left_s([5.0, 5.0], 1, 2.5) == 2.5                        # twice as fast as planned
    assert plan_left_s([0.2, 5.0], 1, 0.1) == pytest.approx(5.0)         # too little done to scale by


def test_progress_holds_start_times_and_epoch_0_counts_the_models_it_measures(three_epochs):
    run, seen = three_epochs
    measured = [(s["done"], s["total"]) for s in seen if s["phase"] == "epoch 0"]
    assert measured == [(0, 3), (1, 3), (2, 3), (3, 3)]      # the teacher, then each of the two variants
    phases = [s["phase"] for s in seen]
    assert phases.index("teacher outputs") < phases.index("epoch 0") < phases.index("train")
    for s in seen:
        assert s["started"] <= s["phase_started"] <= s["updated"]
    final = run.progress()
    assert final["started"] == seen[0]["started"] and final["phase_started"] >= final["started"]


def test_progress_json_is_written_at_every_phase_start_and_epoch_end_however_close():
    from distill_core.session.callbacks import StoreProgress

    class Recorder:
        def __init__(self):
            self.written = []

        def cancel_requested(self):
            return False

        def write_json(self, name, record):
            self.written.append((record["phase"], record["done"]))

    rec = Recorder()
    cb = StoreProgress(rec, every_s=3600)
    s = SessionState(run_id="x", epoch_steps=3)
    for phase, done, total, step in [("load data", 0, 1, None), ("load data", 1, 1, None),
                                     ("teacher outputs", 1, 4, None), ("teacher outputs", 2, 4, None),
                                     ("train", 1, 6, 1), ("train", 2, 6, 2), ("train", 3, 6, 3), ("train", 4, 6, 1)]:
        s.phase, s.done, s.total, s.epoch_step = phase, done, total, step
        cb.on_step(s, None)
    assert rec.written == [("load data", 0), ("load data", 1), ("teacher outputs", 1), ("train", 1), ("train", 3)]
