"""Sessions take turns on a machine whichever process starts them (machine.py): a second session waits, says
whose session it waits for, and can be cancelled while it waits. Offline, CPU."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from distill_core import RunStore, SessionConfig
from distill_core.errors import ConfigError
from distill_core.machine import WAITING_PHASE, holders, machine_slot, slots
from distill_core.session import run_session

from conftest import tiny_config_dict

ROOT = Path(__file__).resolve().parent.parent
HOLD = """
import sys, time
from distill_core.machine import machine_slot
with machine_slot("cpu", {"run_id": "holder-run", "name": "the other session", "what": "the command line"}):
    print("held", flush=True)
    time.sleep(float(sys.argv[1]))
"""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ADS_MACHINE_SLOTS", raising=False)
    return tmp_path / "cache"


def hold(seconds: float) -> subprocess.Popen:
    """Another process holding the CPU's slot for `seconds`; returns once it holds it."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(seconds)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_session_waits_for_the_first_and_names_it(cache):
    other = hold(2.0)
    try:
        seen = []
        t0 = time.time()
        with machine_slot("cpu", {"run_id": "mine"}, lambda who, waited: seen.append(who), poll_s=0.1) as waited:
            got = time.time() - t0
            assert [h["run_id"] for h in holders("cpu")] == ["mine"]
        assert got >= 1.0 and waited >= 1.0
        assert seen and "session holder-run (the other session), started from the command line" in seen[0]
        assert holders("cpu") == []
    finally:
        other.kill()
        other.wait()


def test_a_slot_is_given_back_when_its_process_dies(cache):
    other = hold(60.0)
    other.kill()
    other.wait()
    with machine_slot("cpu", {"run_id": "mine"}, lambda *a: pytest.fail("waited for a dead process")):
        pass


def test_slots_setting(cache, monkeypatch):
    assert slots() == 1
    monkeypatch.setenv("ADS_MACHINE_SLOTS", "2")
    other = hold(30.0)
    try:
        with machine_slot("cpu", {"run_id": "second"}, lambda *a: pytest.fail("two slots: no wait")):
            assert sorted(h["run_id"] for h in holders("cpu")) == ["holder-run", "second"]
        monkeypatch.setenv("ADS_MACHINE_SLOTS", "0")           # no turns at all
        with machine_slot("cpu", {"run_id": "third"}, lambda *a: pytest.fail("no turns: no wait")):
            pass
    finally:
        other.kill()
        other.wait()
    for bad in ("two", "-1"):
        monkeypatch.setenv("ADS_MACHINE_SLOTS", bad)
        with pytest.raises(ConfigError, match="ADS_MACHINE_SLOTS"):
            slots()


def test_a_waiting_session_shows_whom_it_waits_for_and_can_be_cancelled(cache, tmp_path, tiny_teacher, tiny_csv):
    store = RunStore(tmp_path / "runs")
    cfg = SessionConfig.from_dict(tiny_config_dict(tiny_teacher, tiny_csv))
    run = store.create(cfg.to_dict())
    other = hold(120.0)
    try:
        result = {}
        thread = threading.Thread(target=lambda: result.setdefault("id", run_session(cfg, store, run=run)))
        thread.start()
        deadline = time.time() + 30
        while time.time() < deadline and (run.progress() or {}).get("phase") != WAITING_PHASE:
            time.sleep(0.2)
        progress = run.progress()
        assert progress["phase"] == WAITING_PHASE and "holder-run" in progress["waiting"]
        from app.live_view import progress_lines
        headline, _, detail = progress_lines(progress)
        assert headline == "Waiting for the machine" and "holder-run" in detail and "cancel" in detail
        run.request_cancel()
        thread.join(30)
        assert not thread.is_alive()
        assert run.status()["status"] == "cancelled" and not (run.path / "metrics.jsonl").exists()
    finally:
        other.kill()
        other.wait()


def test_a_free_machine_is_taken_at_once_and_no_wait_is_recorded(cache, tmp_path, tiny_teacher, tiny_csv):
    with machine_slot("cpu", {"run_id": "alone"}, lambda *a: pytest.fail("nobody holds it")) as waited:
        assert waited == 0.0
    store = RunStore(tmp_path / "runs")
    run = store.open(run_session(SessionConfig.from_dict(tiny_config_dict(tiny_teacher, tiny_csv)), store))
    assert "machine_wait_s" not in run.summary()
