"""Latency measured so that it means something (distill_core/latency.py): interleaved, on one thread, the conditions
recorded and figures taken under load flagged; a session's and a re-measurement's records, read back by one reader.

The timing tests use fake models and an injected clock and load reading: nothing here depends on how fast or busy
the machine is."""
from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

from distill_core import RunStore
from distill_core import latency as L
from distill_core.errors import RunStoreError
from distill_core.vocab import TEACHER

QUIET = (0.2, 0.2, 0.2)


class Fake(nn.Module):
    """A model that records each call (its name, the example it was given, torch's thread count) and tells the
    clock how long it took: `durations` in ms, in turn."""

    def __init__(self, name: str, log: list, clock: "Clock", durations=(1.0,)):
        super().__init__()
        self.name, self.log, self.clock, self.durations, self.calls = name, log, clock, list(durations), 0

    def forward(self, x):
        self.log.append((self.name, int(x), torch.get_num_threads()))
        self.clock.pending = self.durations[self.calls % len(self.durations)] / 1000
        self.calls += 1


class Clock:
    """time.perf_counter as the fake models say: each reading after a call has moved on by that call's duration."""

    def __init__(self):
        self.now, self.pending = 0.0, 0.0

    def __call__(self) -> float:
        self.now += self.pending
        self.pending = 0.0
        return self.now


def fakes(names, durations=None):
    log, clock = [], Clock()
    models = {n: Fake(n, log, clock, (durations or {}).get(n, (1.0,))) for n in names}
    return models, log, clock


def examples(n: int) -> list[dict]:
    return [{"x": torch.tensor(k)} for k in range(n)]


# ---- the measurement ------------------------------------------------------------------------------------------------
def test_models_are_warmed_up_then_timed_interleaved_on_the_same_example():
    models, log, clock = fakes(["teacher", "baseline", "distilled"])
    m = L.measure_latency(models, examples(2), "cpu", repeats=4, warmup=2, loadavg=lambda: QUIET, clock=clock,
                          cpus=4)
    calls = [(name, x) for name, x, _ in log]
    assert calls[:6] == [("teacher", 0), ("teacher", 1), ("baseline", 0), ("baseline", 1), ("distilled", 0),
                         ("distilled", 1)]
    # one round per repeat, every model on the round's example, the order rotated by one each round
    assert calls[6:] == [("teacher", 0), ("baseline", 0), ("distilled", 0),
                         ("baseline", 1), ("distilled", 1), ("teacher", 1),
                         ("distilled", 0), ("teacher", 0), ("baseline", 0),
                         ("teacher", 1), ("baseline", 1), ("distilled", 1)]
    assert m.latency_ms == {"teacher": 1.0, "baseline": 1.0, "distilled": 1.0}
    c = m.conditions
    assert (c["threads"], c["repeats"], c["warmup"], c["order"], c["examples"], c["cpus"]) == (
        1, 4, 2, "interleaved", 2, 4)
    assert c["load_before"] == c["load_after"] == list(QUIET) and c["device"] == "cpu"
    assert c["measured"].endswith("Z") and not c["busy"] and c["reasons"] == []


def test_the_median_is_kept_and_one_slow_round_does_not_move_it():
    models, _, clock = fakes(["a", "b"], {"a": (2.0, 2.0, 2.0, 2.0, 40.0), "b": (1.0,)})
    m = L.measure_latency(models, examples(1), "cpu", repeats=5, warmup=0, loadavg=lambda: QUIET, clock=clock,
                          cpus=2)
    assert m.latency_ms == {"a": 2.0, "b": 1.0}


def test_one_thread_during_the_measurement_and_the_previous_count_after():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        models, log, clock = fakes(["a", "b"])
        L.measure_latency(models, examples(3), "cpu", repeats=3, warmup=1, loadavg=lambda: QUIET, clock=clock)
        assert {threads for _, _, threads in log} == {1}
        assert torch.get_num_threads() == 2

        class Broken(nn.Module):
            def forward(self, x):
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            L.measure_latency({"a": Broken()}, examples(1), "cpu", repeats=1, warmup=0, loadavg=lambda: QUIET)
        assert torch.get_num_threads() == 2                  # put back even when a model fails
    finally:
        torch.set_num_threads(before)


def test_a_load_average_beyond_what_the_measurement_explains_is_flagged():
    models, _, clock = fakes(["teacher", "distilled"])
    m = L.measure_latency(models, examples(2), "cpu", repeats=4, warmup=1, loadavg=lambda: (5.5, 3.0, 2.0),
                          clock=clock, cpus=2)
    assert m.conditions["busy"] and len(m.conditions["reasons"]) == 1
    assert "1-minute load average was 5.5 on 2 cores" in m.conditions["reasons"][0]
    assert "taken under load" in L.busy_text(m.conditions)


def test_the_load_rule_leaves_a_core_free_for_the_measurement():
    # 2 cores, this process explains 1: others may use up to one core
    assert L.busy_reasons({}, [2.0, 1, 1], [1.9, 1, 1], own_load=1.0, cpus=2) == []
    assert L.busy_reasons({}, [2.2, 1, 1], [1.0, 1, 1], own_load=1.0, cpus=2)      # the larger reading counts
    assert L.busy_reasons({}, [0.4, 1, 1], [0.4, 1, 1], own_load=0.0, cpus=1) == []
    assert L.busy_reasons({}, [0.6, 1, 1], [0.6, 1, 1], own_load=0.0, cpus=1)
    assert L.busy_reasons({}, None, None, own_load=1.0, cpus=2) == []                 # no load average: no rule


def test_timings_that_spread_too_much_are_flagged():
    uneven = (1.0, 1.0, 3.0, 3.0)                       # quartiles 1 and 3 around a median of 2: spread 100%
    models, _, clock = fakes(["teacher", "distilled"], {"distilled": uneven})
    m = L.measure_latency(models, examples(1), "cpu", repeats=8, warmup=0, loadavg=lambda: QUIET, clock=clock,
                          cpus=2)
    c = m.conditions
    assert c["spread"]["teacher"] == 0.0 and c["spread"]["distilled"] > L.SPREAD_LIMIT
    assert c["busy"] and len(c["reasons"]) == 1 and c["reasons"][0].startswith("distilled's timings spread by")


def test_examples_of_different_lengths_are_not_spread():
    # example 0 always takes 1 ms, example 1 always 5 ms: steady, however different
    models, _, clock = fakes(["a"], {"a": (1.0, 5.0)})
    m = L.measure_latency(models, examples(2), "cpu", repeats=8, warmup=0, loadavg=lambda: QUIET, clock=clock,
                          cpus=2)
    assert m.conditions["spread"] == {"a": 0.0} and not m.conditions["busy"]


def test_conditions_in_words():
    assert L.conditions_text(None) == L.NOT_RECORDED and "not recorded" in L.NOT_RECORDED
    assert L.busy_text(None) is None and L.busy_text({"busy": False}) is None
    models, _, clock = fakes(["a"])
    c = L.measure_latency(models, examples(1), "cpu", repeats=3, warmup=1, loadavg=lambda: QUIET, clock=clock,
                          cpus=2).conditions
    text = L.conditions_text(c)
    assert "on cpu, 1 thread" in text and "median of 3 rounds" in text and "1 warm-up" in text
    assert "0.2 before and 0.2 after" in text and "2 cores" in text


# ---- runs -----------------------------------------------------------------------------------------------------------
def test_a_session_records_its_latency_conditions(finished_run):
    store, run_id = finished_run
    summary = store.open(run_id).summary()
    c = summary["latency_conditions"]
    assert set(summary["latency_ms"]) == {TEACHER, *summary["variants"]}
    assert set(c["spread"]) == set(summary["latency_ms"])          # every model in one interleaved measurement
    assert (c["threads"], c["order"], c["repeats"], c["warmup"]) == (1, "interleaved", L.REPEATS, L.WARMUP)
    assert c["device"] == summary["device"] == "cpu" and c["examples"] == 4
    assert c["busy"] == bool(c["reasons"])


def test_measure_again_writes_a_record_the_reader_prefers(run_copy):
    summary = run_copy.summary()
    first = L.run_latency(run_copy)
    assert not first.remeasured and first.latency_ms == summary["latency_ms"]
    assert first.conditions == summary["latency_conditions"]
    record = L.measure_run(run_copy, repeats=5, warmup=1)
    assert set(record["latency_ms"]) == set(summary["latency_ms"]) and record["weights"] == "final"
    assert record["conditions"]["repeats"] == 5
    assert run_copy.read_json(L.FILE) == record
    again = L.run_latency(run_copy)
    assert again.remeasured and again.latency_ms == record["latency_ms"] and again.conditions == record["conditions"]
    assert run_copy.summary() == summary                          # what the session measured is kept as it was


def test_an_old_run_without_conditions_still_reads(run_copy):
    summary = run_copy.summary()
    del summary["latency_conditions"]
    run_copy.write_json("summary.json", summary)
    old = L.run_latency(run_copy)
    assert old.latency_ms == summary["latency_ms"] and old.conditions is None and not old.busy
    (run_copy.path / L.FILE).write_text("{damaged")
    assert L.run_latency(run_copy).latency_ms == summary["latency_ms"]       # a damaged record is skipped


def test_measure_again_refuses_a_run_without_test_results(finished_run, tmp_path):
    src, run_id = finished_run
    store = RunStore(tmp_path / "runs")
    shutil.copytree(src.root / run_id, store.root / run_id)
    run = store.open(run_id)
    run.write_json("summary.json", {**run.summary(), "status": "cancelled", "latency_ms": {}})
    with pytest.raises(RunStoreError, match="no test results"):
        L.measure_run(run)
    assert not (run.path / L.FILE).exists()
