"""A session in a child process, so that a crash in native code (a segmentation fault in a torch kernel, the
system's out-of-memory killer) ends only that session, and the process that started it records why.

    run_in_child(run, ...)  the parent: start `python -m distill_core.session RUN_FOLDER`, wait for it, and
                            when it ended without recording an end of its own, mark the run failed with the signal
                            or exit status, where the session was (phase, epoch, step) and the Python stack that
                            faulthandler wrote at the crash (crash.txt in the run folder)
    main()                  the child (session/__main__.py): run the run folder's config.json with run_session;
                            exit 0 when the run is done or cancelled, 2 when it failed on a DistillError, 1 on
                            anything else

The command line's `run` and `sweep` and the app's session queue all start sessions this way. A child whose parent
goes away (the app's server stopped) asks its session to stop after the current step, keeping its finished epochs.
"""
from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from ..config import SessionConfig
from ..errors import DistillError
from ..store import FINAL_STATUSES, Run, RunStore, now_iso
from .callbacks import TqdmProgress
from .runner import run_session
from .session import partial_summary

log = logging.getLogger(__name__)

CRASH_FILE = "crash.txt"        # the Python stack faulthandler writes when the child dies of a signal
LOG_FILE = "session.log"        # the child's output, when its parent has no terminal to show it on (the app)
PROJECT_ROOT = Path(__file__).resolve().parents[2]

_HINTS = {
    signal.SIGKILL: "often the system's out-of-memory killer: try a smaller batch size or fewer examples",
    signal.SIGSEGV: "a crash inside a native library (one of torch's kernels); setting OMP_NUM_THREADS=1 or "
                    "another batch size may avoid it",
    signal.SIGABRT: "a crash inside a native library (one of torch's kernels); setting OMP_NUM_THREADS=1 or "
                    "another batch size may avoid it",
    signal.SIGBUS: "a crash inside a native library, or a file it read changed or vanished",
}


# ---- the parent ---------------------------------------------------------------------------------------------------
def run_in_child(run: Run, *, progress: bool = False, threads: int | None = None,
                 output: Path | None = None) -> dict:
    """Run `run`'s session in a child process and wait for it; returns the run's final status, with the child's
    exit status added as "exit_code" (0 done or cancelled, 2 failed on a DistillError, 1 otherwise, -N signal N).

    progress: the child draws progress bars (a terminal's command line). threads: torch's thread count there
    (None: torch's default). output: a file for the child's output; None shares this process's terminal."""
    cmd = [sys.executable, "-m", "distill_core.session", str(run.path)]
    cmd += ["--progress"] if progress else []
    cmd += ["--threads", str(int(threads))] if threads else []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    sink = open(output, "ab") if output is not None else None
    try:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink)
        try:
            code = proc.wait()
        except BaseException:        # Ctrl-C (the child got it too) or the parent stopping: let the child record
            run.request_cancel()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
    finally:
        if sink is not None:
            sink.close()
    return {**record_end(run, code), "exit_code": code}


def record_end(run: Run, code: int) -> dict:
    """After the child exited with `code`: its run's status, marked failed with the reason when the child ended
    without recording an end (killed by a signal, or an exit before run_session could write one)."""
    status = run.read_json("status.json") or {}
    if status.get("status") in FINAL_STATUSES:
        return status
    stack = _read_crash(run)
    error = f"{describe_exit(code)} {where_it_stopped(run.progress())}"
    hint = _HINTS.get(-code) if code < 0 else None
    error += f"; {hint}" if hint else ""
    error += f" (the Python stack at the crash is in the run folder's {CRASH_FILE})" if stack else ""
    try:
        config = SessionConfig.from_dict(run.config())
        run.write_json("summary.json", partial_summary(config, run.metrics(), "failed", error))
    except DistillError as e:       # the pages fall back on status.json
        log.warning("run %s: no summary of its recorded epochs (%s)", run.id, e)
    return run.update_status(status="failed", ended=now_iso(), error=error, traceback=stack or None)


def describe_exit(code: int) -> str:
    """-11 -> "killed by signal 11 (SIGSEGV, segmentation fault)"; 3 -> "its process exited with status 3"."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = None
        words = (signal.strsignal(-code) or "").lower()
        detail = ", ".join(x for x in (name, words) if x)
        return f"killed by signal {-code}" + (f" ({detail})" if detail else "")
    return f"its process exited with status {code} before recording an end"


def where_it_stopped(progress: dict) -> str:
    """Where the session was by its last progress.json: "during training, epoch 1 of 6, after step 4 of 30"."""
    phase = progress.get("phase")
    if not phase or phase == "starting":
        return "before the session started"
    if phase == "train":
        epochs, epoch = progress.get("epochs") or 0, int(progress.get("epoch") or 0)
        text = f"during training, epoch {min(epoch + 1, epochs) if epochs else epoch + 1}"
        text += f" of {epochs}" if epochs else ""
        if progress.get("total"):
            text += f", after step {progress.get('done', 0)} of {progress['total']}"
        return text
    text = f"during {phase}"
    return text + (f", after step {progress.get('done', 0)} of {progress['total']}" if progress.get("total") else "")


def _read_crash(run: Run) -> str:
    try:
        return (run.path / CRASH_FILE).read_text(errors="replace").strip()
    except OSError:
        return ""


# ---- the child ----------------------------------------------------------------------------------------------------
PARENT_GONE = ("the process that started it (the app or the command line) ended, so it stopped after its "
               "current step")


def _watch_parent(run: Run, parent: int) -> threading.Event:
    """When the parent goes away (its process ends and the child is re-parented), ask the session to stop; the
    event returned is set then."""
    gone = threading.Event()

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        log.warning("the process that started session %s ended: stopping it after the current step", run.id)
        gone.set()
        run.request_cancel()
    threading.Thread(target=watch, name="watch-parent", daemon=True).start()
    return gone


def _mark_interrupted(run: Run) -> None:
    """A session stopped because its parent ended reads 'interrupted' (like one whose process died), not
    'cancelled' (which a person asked for)."""
    run.update_status(status="interrupted", error=PARENT_GONE)
    summary = run.read_json("summary.json")
    if summary:
        run.write_json("summary.json", {**summary, "status": "interrupted", "error": PARENT_GONE})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill_core.session",
                                     description="Run the session of a run folder (made by RunStore.create).")
    parser.add_argument("run_folder")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    warnings.filterwarnings("ignore", category=FutureWarning)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    run = Run(Path(args.run_folder))
    crash = open(run.path / CRASH_FILE, "w")
    faulthandler.enable(crash, all_threads=False)
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        try:
            config = SessionConfig.from_dict(run.config())
        except DistillError as e:
            run.update_status(status="failed", ended=now_iso(), error=f"the session could not start: {e}")
            return 2
        run.update_status(status="running", pid=os.getpid(), started=now_iso())
        parent_gone = _watch_parent(run, os.getppid())
        run_session(config, RunStore(run.path.parent), [TqdmProgress()] if args.progress else [], run=run)
        if parent_gone.is_set() and run.status().get("status") == "cancelled":
            _mark_interrupted(run)
        return 0
    except DistillError:
        return 2                    # recorded in the run by run_session
    except BaseException:  # noqa: BLE001 - run_session recorded it in the run, where the parent reads it
        if (run.read_json("status.json") or {}).get("status") not in FINAL_STATUSES:
            traceback.print_exc()   # a failure before the session began: the parent records "exited with status 1"
        return 1
    finally:
        faulthandler.disable()
        crash.close()
        if not (run.path / CRASH_FILE).stat().st_size:
            (run.path / CRASH_FILE).unlink()

