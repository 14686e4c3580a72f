#!/usr/bin/env python
"""Does watching a session slow it down? Training speed with the New session page open / with it closed.

    .venv/bin/python benchmarks/live_view_bench.py                   # default data (~7 min on 2 cores)
    .venv/bin/python benchmarks/live_view_bench.py --train-size 800  # shorter epochs

Starts the app (`streamlit run`), opens it in headless Chromium and presses Start, so the session trains in the
app's process as a user's does. After a warm-up epoch, twelve windows of 20 s alternate the New session page open
(following the run) and closed (about:blank) in the order closed, open, open, closed, three times (the order
cancels a drift of the machine's speed); each window starts 5 s after the page was opened or closed and counts
the training steps the session reports in progress.json. Prints the ratio of the median steps/s with the page
open to the median with it closed, measured in this one run (target >= 0.9). The teacher is fine-tuned (or read
from the usual cache, `ADS_CACHE_DIR`) before the windows start.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "benchmarks"):          # the engine, and this folder's served_app (also when imported)
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from distill_core.config import SessionConfig  # noqa: E402
from distill_core.store import RunStore  # noqa: E402
from served_app import served_app  # noqa: E402

ORDER = ("closed", "open", "open", "closed") * 3     # ABBA, three times: a drift of the machine's speed cancels
WINDOW_S = 20.0                  # one measurement
SETTLE_S = 5.0                   # after opening or closing the page, before a measurement starts
EPOCHS = 40                      # enough training for the warm-up epoch and every window (the run is
                                 # cancelled after the last one; 14 ran out on 2026-12-07 at 8 steps/s)
TARGET = 0.9
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def _epoch_ends(run) -> dict[int, float]:
    """Epoch -> the session's elapsed seconds when its first record was written."""
    out: dict[int, float] = {}
    for r in run.metrics():
        out.setdefault(int(r["epoch"]), float(r["time_s"]))
    return out


def measure(cfg: SessionConfig, work: Path, log=print, timeout_s: float = 3600) -> dict:
    """Train `cfg` (its epochs raised to cover the order) in the app, toggling the page per epoch."""
    from playwright.sync_api import sync_playwright
    cfg = cfg.with_overrides({"train.epochs": EPOCHS, "train.time_budget_s": None})
    defaults = work / "form.json"
    defaults.write_text(json.dumps(cfg.to_dict()))
    runs = work / "runs"
    env = {"ADS_RUNS_DIR": str(runs), "ADS_FORM_DEFAULTS": str(defaults)}
    store = RunStore(runs)
    run = None
    try:
        with served_app(env, work / "app.log") as (url, _), sync_playwright() as pw:
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
            while 1 not in _epoch_ends(run):
                if run.status().get("status") not in ("queued", "running") or time.time() > end:
                    raise RuntimeError(f"the session stopped: {run.status().get('error')}")
                time.sleep(0.5)
            windows, shown = [], None
            for st in ORDER:
                if st != shown:                                 # open or close the page only on a change
                    page.goto(f"{url}/?run={run.id}" if st == "open" else "about:blank",
                              wait_until="domcontentloaded")
                    shown = st
                    time.sleep(SETTLE_S)
                p0, t0 = run.progress(), time.time()
                time.sleep(WINDOW_S)
                p1, t1 = run.progress(), time.time()
                if p1.get("phase") != "train" or p0.get("phase") != "train":
                    raise RuntimeError("the session left training before the last window; raise EPOCHS")
                rate = (p1["done"] - p0["done"]) / (t1 - t0)
                windows.append({"page": st, "steps_per_s": rate})
                log(f"  page {st:<6} {rate:.2f} steps/s")
            page.goto("about:blank")
            browser.close()
        open_r = [w["steps_per_s"] for w in windows if w["page"] == "open"]
        closed_r = [w["steps_per_s"] for w in windows if w["page"] == "closed"]
        ratio = statistics.median(open_r) / statistics.median(closed_r)
        return {"run": run.id, "windows": windows, "window_s": WINDOW_S, "settle_s": SETTLE_S,
                "open_steps_per_s": open_r, "closed_steps_per_s": closed_r, "ratio": ratio,
                "mean_ratio": statistics.mean(open_r) / statistics.mean(closed_r), "target": TARGET}
    finally:
        if run is not None and run.status().get("status") in ("queued", "running"):
            run.request_cancel()


def report(res: dict, log=print) -> None:
    log(f"  training speed with the page open / closed: {res['ratio']:.2f} (medians of {len(res['open_steps_per_s'])} "
        f"windows of {res['window_s']:g} s each: {statistics.median(res['open_steps_per_s']):.2f} vs "
        f"{statistics.median(res['closed_steps_per_s']):.2f} steps/s; ratio of means {res['mean_ratio']:.2f}; "
        f"target >= {TARGET})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-size", type=int, default=None, help="training examples (default: the default's)")
    ap.add_argument("--json", metavar="OUT", help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    cfg = SessionConfig()
    if args.train_size:
        cfg = cfg.with_overrides({"data.train_size": args.train_size})
    print(f"# live view: training speed with the New session page open vs closed ({len(ORDER)} windows of "
          f"{WINDOW_S:g} s, train {cfg.data.train_size})")
    with tempfile.TemporaryDirectory(prefix="ads-live-") as tmp:
        res = measure(cfg, Path(tmp))
    report(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
