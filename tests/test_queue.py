"""Sessions started in the background run one at a time, in order; a queued run can be cancelled."""
import threading

from distill_core import RunStore, SessionCallback, SessionConfig
from distill_core.session import SessionQueue
from distill_core.store import wait_for_status

from conftest import tiny_config_dict


class Gate(SessionCallback):
    """Holds a session at its first step until released; records when sessions begin and end."""

    def __init__(self, log, name, gate=None):
        self.log, self.name, self.gate = log, name, gate

    def on_session_begin(self, state, control):
        self.log.append(f"begin {self.name}")
        if self.gate is not None:
            assert self.gate.wait(60)

    def on_session_end(self, state, control, summary):
        self.log.append(f"end {self.name}")


def test_queued_sessions_run_one_at_a_time_in_order_and_can_be_cancelled(tmp_path, tiny_teacher, tiny_csv):
    cfg = SessionConfig.from_dict(tiny_config_dict(tiny_teacher, tiny_csv, train__epochs=1))
    store, queue, log, gate = RunStore(tmp_path), SessionQueue(workers=1, in_child=False), [], threading.Event()
    first = queue.submit(cfg, store, [Gate(log, "first", gate)])
    second = queue.submit(cfg, store, [Gate(log, "second")])
    third = queue.submit(cfg, store, [Gate(log, "third")])
    wait_for_status(store.open(first), ("running",), timeout=30)
    assert store.open(second).status()["status"] == "queued"
    assert queue.position(second) == 1 and queue.position(third) == 2 and queue.position(first) is None
    assert queue.running() == [first]
    assert queue.cancel(second) is True
    assert store.open(second).status()["status"] == "cancelled"
    assert queue.position(third) == 1
    gate.set()
    for run_id in (first, third):
        assert wait_for_status(store.open(run_id), timeout=300)["status"] == "done"
    assert log == ["begin first", "end first", "begin third", "end third"]      # never two at once
    assert not (store.open(second).path / "metrics.jsonl").exists()             # the cancelled one never ran
    assert queue.cancel(first) is False


def test_a_cancel_file_written_while_queued_is_honoured(tmp_path, tiny_teacher, tiny_csv):
    cfg = SessionConfig.from_dict(tiny_config_dict(tiny_teacher, tiny_csv, train__epochs=1))
    store, queue, log, gate = RunStore(tmp_path), SessionQueue(workers=1, in_child=False), [], threading.Event()
    first = queue.submit(cfg, store, [Gate(log, "first", gate)])
    second = queue.submit(cfg, store, [Gate(log, "second")])
    store.open(second).request_cancel()          # as another process (the CLI) would
    gate.set()
    assert wait_for_status(store.open(second), timeout=300)["status"] == "cancelled"
    assert wait_for_status(store.open(first), timeout=300)["status"] == "done"
    assert "begin second" not in log


def test_cancel_session_helper_and_queued_status_after_a_crash(tmp_path, tiny_teacher, tiny_csv, monkeypatch):
    import distill_core
    from distill_core.session import queue as runner
    cfg = SessionConfig.from_dict(tiny_config_dict(tiny_teacher, tiny_csv, train__epochs=1))
    store = RunStore(tmp_path)
    queue = SessionQueue(workers=1)
    monkeypatch.setattr(runner, "_QUEUE", queue)
    run = store.create(cfg.to_dict(), status="queued")
    queue._pending.append(runner._Queued(run, cfg, store, ()))      # waiting, no worker yet
    assert "removed from the queue" in distill_core.cancel_session(store, run.id)
    assert run.status()["status"] == "cancelled"
    other = store.create(cfg.to_dict(), status="queued")
    assert "cancel requested" in distill_core.cancel_session(store, other.id)
    assert other.cancel_requested()
    other.update_status(pid=2 ** 22 + 12345)                        # its process is gone
    assert other.status()["status"] == "interrupted"
