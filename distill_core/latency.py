"""Latency: how long each model takes to classify one example, measured so that two figures can be compared, with
the conditions they were taken under.

    measured = measure_latency({"teacher": t, "baseline": b, "distilled": d}, examples, device)
    measured.latency_ms        {"teacher": 31.0, "baseline": 4.1, "distilled": 4.0}: median ms for one example
    measured.conditions        what they were taken under (below), "busy" when they should not be trusted
    record = measure_run(run)  a finished run's teacher and students reloaded and measured again now (latency.json)
    run_latency(run)           the latest measurement of a run's models: what every page and the report show

How, and why:
- **one thread** (torch.set_num_threads(1), the previous count put back afterwards): a figure that does not depend
  on how many cores happen to be free, the same footing for every model. It is what one request costs on one core,
  not the fastest a model can answer on an idle machine with every core.
- **warm-up**: every model first classifies `warmup` examples, left out (lazy initialisation, allocator, caches).
- **interleaved**: round r gives every model the same example (examples[r % n]), one model after another, the
  order rotated by one each round; a burst of load then slows every model alike instead of the one being measured
  at the time, and no model always runs first.
- **median of many**: `repeats` rounds; each model's median, and its spread: the interquartile range over the
  median, of its timings each divided by the median of the same example's (a long text is not noise).
- CUDA: synchronised before and after each call, so the time is the model's and not its launch's.
- the examples are the run's probe examples as its modality gives them (`Modality.latency_examples`: the keyword
  arguments of one example, a batch of 1, no padding); no mixed precision.

The conditions, a dict stored beside the figures: threads, device, repeats, warmup, order, examples, cpus
(os.cpu_count()), load_before and load_after (os.getloadavg(): the 1, 5 and 15-minute load averages; None where the
system has none), own_load (this process's CPU seconds per second during the measurement, about 1 with one thread),
spread (model -> interquartile range / median), seconds, measured (ISO time, UTC), busy and reasons (sentences).

The flag: `busy` is True, with a reason for each cause, when
- **load**: the 1-minute load average (the larger of before and after) minus what this process explains (own_load)
  is more than cpus - 1 (0.5 on one core): on average less than one core was free, and a one-thread measurement is
  only undisturbed while a core is free for it. The user's report (a 4 ms student timed at 203 ms) was a machine
  whose load was several times its cores.
- **spread**: a model's interquartile range is more than SPREAD_LIMIT (25%) of its median. On a quiet machine one
  model's rounds vary by a few percent; rounds cut short by other work are several times slower.
What the flag cannot see: the load average is a lagging 1-minute average of every runnable thread (in a container,
often the host's), so a burst shorter than the measurement may not show in it, and this process's own work of the
minute before (a session's test evaluation on every core) counts as others' load, which can flag a quiet machine;
the spread catches a burst during the measurement, but steady contention that slows every round alike widens
nothing; neither sees frequency scaling, thermal throttling or another job on a shared GPU. An unflagged figure is
not proof of a quiet machine: measure again and compare.

Where figures are kept: a session writes "latency_ms" and "latency_conditions" into summary.json (runs written
before conditions were recorded have "latency_ms" only); `measure_run` writes latency.json, {"latency_ms",
"conditions", "weights": "final"}, through the run store, replacing an earlier one and leaving summary.json as the
session wrote it. `run_latency` reads latency.json when there is one, else summary.json. compress.py measures its
versions with measure_latency too and keeps their conditions in compression.json.
"""
from __future__ import annotations

import logging
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .errors import RunStoreError
from .models import set_attention_backend
from .reopen import reopen
from .store import Run, now_iso
from .vocab import TEACHER

log = logging.getLogger(__name__)

FILE = "latency.json"
REPEATS = 50            # interleaved rounds: every model timed once per round
WARMUP = 5              # examples each model classifies first, not timed
SPREAD_LIMIT = 0.25     # interquartile range / median above which a model's timings are flagged
_LOCK = threading.Lock()    # the thread count is the whole process's: one measurement at a time


@dataclass(frozen=True)
class Measured:
    latency_ms: dict            # model -> median milliseconds for one example
    conditions: dict            # see the module's docstring


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread inside the block; the previous thread count put back after it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _load(loadavg: Callable[[], Sequence[float]]) -> list[float] | None:
    try:
        return [round(float(x), 2) for x in loadavg()]
    except (OSError, AttributeError):        # a system without load averages
        return None


def spread(times: Sequence[float], example: Sequence[int] | None = None) -> float:
    """Interquartile range of one model's timings over their median. With `example` (which example each timing
    was of), each timing is first divided by the median of that example's timings, so that examples of different
    lengths do not count as spread."""
    t = np.asarray(times, dtype=float)
    if example is not None:
        ex = np.asarray(example)
        medians = {k: np.median(t[ex == k]) for k in set(ex.tolist())}
        t = t / np.asarray([medians[k] if medians[k] > 0 else 1.0 for k in ex.tolist()])
    q1, q3 = np.percentile(t, [25, 75])
    median = float(np.median(t))
    return float((q3 - q1) / median) if median > 0 else 0.0


def busy_reasons(spreads: Mapping[str, float], load_before: Sequence[float] | None,
                 load_after: Sequence[float] | None, own_load: float, cpus: int | None) -> list[str]:
    """Why figures taken under these conditions should not be trusted (none: no sign of it); see the module's
    docstring for the two rules and what they cannot see."""
    reasons = []
    loads = [x[0] for x in (load_before, load_after) if x]
    if loads and cpus:
        load = max(loads)
        others = load - own_load
        if others > max(cpus - 1, 0.5):
            reasons.append(f"the machine's 1-minute load average was {load:.1f} on {cpus} core"
                           f"{'s' if cpus != 1 else ''}, {others:.1f} more than this measurement explains: less than "
                           f"one core was free for it")
    for name, s in spreads.items():
        if s > SPREAD_LIMIT:
            reasons.append(f"{name}'s timings spread by {s:.0%} of their median (interquartile range; above "
                           f"{SPREAD_LIMIT:.0%}, rounds were slowed unevenly)")
    return reasons


@torch.inference_mode()
def measure_latency(models: Mapping[str, nn.Module], examples: Sequence[dict], device,
                    repeats: int = REPEATS, warmup: int = WARMUP, *,
                    loadavg: Callable[[], Sequence[float]] = os.getloadavg,
                    clock: Callable[[], float] = time.perf_counter, cpus: int | None = None) -> Measured:
    """Median milliseconds for one example of every model, warmed up, then timed interleaved on one thread (see the
    module's docstring), and the conditions. `examples`: the keyword arguments of one example each, on `device`
    (Modality.latency_examples). `loadavg`, `clock` and `cpus` are os.getloadavg, time.perf_counter and
    os.cpu_count() unless a test gives its own."""
    if not models or not examples or repeats < 1 or warmup < 0:
        raise ValueError("latency needs at least one model, one example and one repeat")
    device = torch.device(device)
    names = list(models)
    times: dict[str, list[float]] = {n: [] for n in names}
    with _LOCK, one_thread():
        load_before = _load(loadavg)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for name in names:
            model = models[name]
            model.eval()
            set_attention_backend(model, eager=False)      # the fast path the models answer with
            for k in range(warmup):
                model(**examples[k % len(examples)])
        for r in range(repeats):
            x = examples[r % len(examples)]
            for j in range(len(names)):
                name = names[(r + j) % len(names)]
                _sync(device)
                t0 = clock()
                models[name](**x)
                _sync(device)
                times[name].append((clock() - t0) * 1000)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        load_after = _load(loadavg)
    cpus = cpus or os.cpu_count()
    own = cpu / wall if wall > 0 else 0.0
    which = [r % len(examples) for r in range(repeats)]           # the example of each round
    spreads = {n: round(spread(t, which), 3) for n, t in times.items()}
    reasons = busy_reasons(spreads, load_before, load_after, own, cpus)
    conditions = {"threads": 1, "device": str(device), "repeats": repeats, "warmup": warmup, "order": "interleaved",
                  "examples": len(examples), "cpus": cpus, "load_before": load_before, "load_after": load_after,
                  "own_load": round(own, 2), "spread": spreads, "seconds": round(wall, 2), "measured": now_iso(),
                  "busy": bool(reasons), "reasons": reasons}
    return Measured({n: round(statistics.median(t), 4) for n, t in times.items()}, conditions)


# ---- a finished run -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunLatency:
    """The latest latency of a run's teacher and students, and what it was taken under."""
    latency_ms: dict
    conditions: dict | None     # None: measured before conditions were recorded
    device: str
    remeasured: bool            # True: from latency.json ("Measure again"); False: the session's, in summary.json

    @property
    def busy(self) -> bool:
        return bool(self.conditions and self.conditions.get("busy"))


def run_latency(run: Run, summary: dict | None = None) -> RunLatency:
    """A run's latest latency: latency.json when it was measured again (a damaged one is skipped with a warning),
    else what the session wrote into summary.json (`summary`, when the caller has read it already)."""
    try:
        record = run.read_json(FILE)
    except RunStoreError as e:
        log.warning("%s; the session's latency is shown", e)
        record = None
    if isinstance(record, dict) and record.get("latency_ms"):
        conditions = record.get("conditions")
        return RunLatency(record["latency_ms"], conditions, (conditions or {}).get("device", ""), True)
    s = (run.summary() if summary is None else summary) or {}
    return RunLatency(s.get("latency_ms") or {}, s.get("latency_conditions"), s.get("device") or "", False)


def _device_now(name: str | None) -> torch.device:
    """The device a run was measured on when this machine has it, else the CPU."""
    kind = torch.device(name or "cpu").type
    if kind == "cuda" and torch.cuda.is_available():
        return torch.device(name)
    if kind == "mps" and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def measure_run(run: Run, repeats: int = REPEATS, warmup: int = WARMUP) -> dict:
    """Measure a finished run's teacher and its students' final weights again now, interleaved, on the device the
    session used when this machine has it (else the CPU), and write {"latency_ms", "conditions", "weights"} to the
    run's latency.json (replacing an earlier one; summary.json is left as the session wrote it). Returns the record.
    RunStoreError for a run without test results."""
    summary = run.summary() or {}
    if summary.get("status") != "done" or not summary.get("latency_ms"):
        raise RunStoreError(f"run {run.id} has no test results to measure again: its latency is measured once it "
                            f"has finished")
    fr = reopen(run)
    device = _device_now(summary.get("device"))
    models = {TEACHER: fr.teacher(), **fr.students()}
    models = {name: m.to(device) for name, m in models.items()}
    measured = measure_latency(models, fr.task().latency_examples(device), device, repeats, warmup)
    record = {"latency_ms": measured.latency_ms, "conditions": measured.conditions, "weights": fr.weights}
    run.write_json(FILE, record)
    return record


# ---- in words -------------------------------------------------------------------------------------------------------
NOT_RECORDED = ("The conditions of this measurement were not recorded (a run written before they were: one model "
                "after another, on every thread, median of 20): compare its latencies with care, or measure again.")


def conditions_text(conditions: dict | None) -> str:
    """The conditions in one sentence, for a caption."""
    if not conditions:
        return NOT_RECORDED
    threads = conditions.get("threads")
    before, after = conditions.get("load_before"), conditions.get("load_after")
    cpus = conditions.get("cpus")
    load = (f"machine load {before[0]:.1f} before and {after[0]:.1f} after (1-minute average) on {cpus} cores"
            if before and after else "machine load not available")
    widest = max((conditions.get("spread") or {}).values(), default=None)
    return (f"Measured {str(conditions.get('measured', '')).replace('T', ' ').replace('Z', ' UTC')} on "
            f"{conditions.get('device')}, {threads} thread{'s' if threads != 1 else ''}: "
            f"{conditions.get('warmup')} warm-up examples, then the median of {conditions.get('repeats')} rounds "
            f"with the models interleaved; {load}"
            + (f"; spread (interquartile range / median) at most {widest:.0%}" if widest is not None else "") + ".")


def busy_text(conditions: dict | None) -> str | None:
    """What a reader must be told when the figures were taken under load; None when they were not flagged."""
    if not conditions or not conditions.get("busy"):
        return None
    reasons = "; ".join(conditions.get("reasons") or []) or "the machine was busy"
    return (f"These latencies were taken under load ({reasons}). They, and any speed-up computed from them, may "
            f"mislead: measure again when the machine is quiet.")
