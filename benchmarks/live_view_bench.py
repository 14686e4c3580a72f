#!/usr/bin/env python
"""Does watching a session slow it down? Training speed with the New session page open / with it closed.

    .venv/bin/python benchmarks/live_view_bench.py                   # default data, 9 epochs (~6 min on 2 cores)
    .venv/bin/python benchmarks/live_view_bench.py --train-size 800  # shorter epochs, noisier

Starts the app (`streamlit run`), opens it in headless Chromium and presses Start, so the session trains in the
app's process as a user's does. Epoch 1 warms up; then the page is opened or closed (about:blank) at each epoch
boundary in the order closed, open, open, closed, closed, open, open, closed (the order cancels a drift of the
machine's speed), and each epoch's wall time is read from the session's own metrics.jsonl (`time_s` of its
records). Prints training steps/s per state and the ratio open / closed, measured in this one run (target >= 0.9).
The teacher is fine-tuned (or read from the usual cache, `ADS_CACHE_DIR`) before the timed epochs start.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from distill_core.config import SessionConfig  # noqa: E402
from distill_core.store import RunStore  # noqa: E402

ORDER = ("closed", "open", "open", "closed", "closed", "open", "open", "closed")
TARGET = 0.9
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, timeout: float = 120.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if server.poll() is not None:
            raise RuntimeError(f"the app exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the app did not answer within {timeout:.0f} s")


def _epoch_ends(run) -> dict[int, float]:
    """Epoch -> the session's elapsed seconds when its first record was written."""
    out: dict[int, float] = {}
    for r in run.metrics():
        out.setdefault(int(r["epoch"]), float(r["time_s"]))
    return out


def measure(cfg: SessionConfig, work: Path, log=print, timeout_s: float = 3600) -> dict:
    """Train `cfg` (its epochs raised to cover the order) in the app, toggling the page per epoch."""
    from playwright.sync_api import sync_playwright
    epochs = 1 + len(ORDER)
    cfg = cfg.with_overrides({"train.epochs": epochs, "train.time_budget_s": 0})
    defaults = work / "form.json"
    defaults.write_text(json.dumps(cfg.to_dict()))
    runs = work / "runs"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ADS_RUNS_DIR": str(runs), "ADS_FORM_DEFAULTS": str(defaults)}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "streamlit_app.py"), "--server.port",
         str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env, stdout=open(work / "app.log", "wb"),
        stderr=subprocess.STDOUT, start_new_session=True)
    store = RunStore(runs)
    run = None
    try:
        _wait_healthy(url, server)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(url, wait_until="networkidle")
            page.get_by_role("button", name="Start").first.click(timeout=60_000)
            end = time.time() + timeout_s
            while run is None and time.time() < end:
                ids = [i.run_id for i in store.list()] if runs.is_dir() else []
                run = store.open(ids[0]) if ids else None
                time.sleep(0.5)
            if run is None:
                raise RuntimeError("pressing Start created no run")
            log(f"  run {run.id}: waiting for epoch 1 (teacher preparation and a warm-up epoch)")
            states: dict[int, str] = {}
            for k, st in enumerate(ORDER):
                epoch = 2 + k                                   # the epoch that trains in this state
                while (epoch - 1) not in _epoch_ends(run):
                    status = run.status().get("status")
                    if status not in ("queued", "running"):
                        raise RuntimeError(f"the session stopped ({status}): {run.status().get('error')}")
                    if time.time() > end:
                        raise RuntimeError("the session took too long")
                    time.sleep(0.2)
                if st == "open":
                    page.goto(f"{url}/?run={run.id}", wait_until="domcontentloaded")
                else:
                    page.goto("about:blank")
                states[epoch] = st
                log(f"  epoch {epoch}: page {st}")
            while epochs not in _epoch_ends(run):
                if run.status().get("status") not in ("queued", "running") or time.time() > end:
                    raise RuntimeError("the session stopped before its last epoch")
                time.sleep(0.5)
            page.goto("about:blank")
            browser.close()
        ends = _epoch_ends(run)
        progress = run.progress()
        steps_per_epoch = (progress.get("epoch_steps")
                           or (progress.get("total") or 0) / max(1, progress.get("epochs") or epochs)) or None
        per_epoch = {e: ends[e] - ends[e - 1] for e in states}
        rate = {e: steps_per_epoch / s for e, s in per_epoch.items()} if steps_per_epoch else {}
        open_r = [rate[e] for e, s in states.items() if s == "open"]
        closed_r = [rate[e] for e, s in states.items() if s == "closed"]
        ratio = statistics.median(open_r) / statistics.median(closed_r)
        return {"run": run.id, "steps_per_epoch": steps_per_epoch, "epoch_s": per_epoch, "state": states,
                "open_steps_per_s": open_r, "closed_steps_per_s": closed_r, "ratio": ratio, "target": TARGET}
    finally:
        if run is not None and run.status().get("status") in ("queued", "running"):
            run.request_cancel()
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)


def report(res: dict, log=print) -> None:
    for e in sorted(res["epoch_s"]):
        log(f"  epoch {e}: page {res['state'][e]:<6} {res['epoch_s'][e]:6.1f} s "
            f"({res['steps_per_epoch'] / res['epoch_s'][e]:.2f} steps/s)")
    log(f"  training speed with the page open / closed: {res['ratio']:.2f} (median "
        f"{statistics.median(res['open_steps_per_s']):.2f} vs {statistics.median(res['closed_steps_per_s']):.2f} "
        f"steps/s; target >= {TARGET})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-size", type=int, default=None, help="training examples (default: the default's)")
    ap.add_argument("--json", metavar="OUT", help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    cfg = SessionConfig()
    if args.train_size:
        cfg = cfg.with_overrides({"data.train_size": args.train_size})
    print(f"# live view: training speed with the New session page open vs closed ({1 + len(ORDER)} epochs, "
          f"train {cfg.data.train_size})")
    with tempfile.TemporaryDirectory(prefix="ads-live-") as tmp:
        res = measure(cfg, Path(tmp))
    report(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
