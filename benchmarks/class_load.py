"""A class on one server: N real browsers open the same run at once, and what the server spends on each.

The app is started in its own process with an instructor token set (benchmarks/served_app.py), and N viewers, each a
Playwright context of its own in headless Chromium (no shared cache, as N laptops), open the explorer link of one
run at once, wait for its first figure, change one control of the explorer (the student variant), open the run's
Divergence page, then open the explorer link again (Streamlit's own files now in each browser's cache: what a
reload costs). Reported, per phase:

- time to the first figure per viewer (p50, p95, max) and the errors (a timeout, an exception box on the page);
- the **server process's CPU seconds per viewer**: its CPU time (user + system) before and after the phase,
  divided by the viewers; on a 2-core machine the browsers share the cores with the server, so wall times
  overstate what a class with its own laptops sees, while the server's CPU seconds do not;
- the server's memory (resident set) after each phase, and its peak.

First one viewer alone (the first visitor builds what later visitors share), then N at once.

    .venv/bin/python benchmarks/class_load.py --runs-dir runs --run RUN_ID [--viewers 20]
    .venv/bin/python benchmarks/class_load.py --viewers 20         # runs the default session first (~2 min)

Target (README › Performance): at most 0.2 CPU-s of server work per viewer's first view and per control change,
20 viewers with no errors, memory bounded.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "benchmarks") not in sys.path:            # served_app, also when this file is imported
    sys.path.insert(0, str(ROOT / "benchmarks"))

from served_app import served_app  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                 "--disable-component-update", "--disable-sync"]
TARGET_CPU_S = 0.2
FIGURE_TIMEOUT_MS = 300_000
# The first figure of a page: a plotly chart plotly.js has drawn (its _fullData is set).
DRAWN_JS = "[...document.querySelectorAll('.js-plotly-plot')].some(e => e._fullData && e._fullData.length)"


class ServerMeter:
    """The server process's CPU seconds (user + system) and its resident memory, sampled for the peak."""

    def __init__(self, pid: int):
        self.proc = psutil.Process(pid)
        self.peak_rss = 0
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)
            except psutil.Error:
                return

    def cpu(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system

    def rss(self) -> int:
        return self.proc.memory_info().rss

    def close(self) -> None:
        self._stop.set()


async def first_figure(page, url: str) -> float:
    """Seconds from asking for `url` to its first drawn figure; raises on a timeout or an exception box."""
    t0 = time.perf_counter()
    await page.goto(url)
    await page.wait_for_function(DRAWN_JS, timeout=FIGURE_TIMEOUT_MS)
    took = time.perf_counter() - t0
    if await page.locator('[data-testid="stException"]').count():
        raise RuntimeError(await page.locator('[data-testid="stException"]').first.inner_text())
    return took


async def change_variant(page, to: str) -> float:
    """Pick another student variant in the explorer and wait until its figures are drawn again."""
    await page.evaluate("window.__drawn = [...document.querySelectorAll('.js-plotly-plot')].map(e => e._fullData)")
    t0 = time.perf_counter()
    radio = page.locator('[data-testid="stRadio"]').filter(has_text="Student variant")
    await radio.locator("label").filter(has_text=to).first.click()
    await page.wait_for_function(
        "[...document.querySelectorAll('.js-plotly-plot')].some((e, i) => e._fullData && e._fullData.length && "
        "e._fullData !== (window.__drawn || [])[i])", timeout=FIGURE_TIMEOUT_MS)
    return time.perf_counter() - t0


def summary(results: list, cpu_s: float, viewers: int, rss: int) -> dict:
    """One phase: the viewers' seconds (or their errors), the server's CPU seconds over the phase and its memory."""
    q = sorted(r for r in results if isinstance(r, float))
    errors = [f"{type(r).__name__}: {str(r)[:200]}" for r in results if isinstance(r, BaseException)]
    pct = (lambda p: q[min(len(q) - 1, int(round(p * (len(q) - 1))))]) if q else (lambda p: None)
    return {"viewers": viewers, "ok": len(q), "errors": errors, "p50_s": statistics.median(q) if q else None,
            "p95_s": pct(0.95), "max_s": q[-1] if q else None, "server_cpu_s": cpu_s,
            "server_cpu_s_per_viewer": cpu_s / viewers, "server_rss_mb": rss / 2 ** 20}


async def together(pages, meter: ServerMeter, step) -> dict:
    """`step(page)` on every page at once; the server's CPU seconds from before the first to 2 s after the last
    (what the server still sends once the figures are drawn)."""
    before = meter.cpu()
    results = await asyncio.gather(*(step(p) for p in pages), return_exceptions=True)
    await asyncio.sleep(2.0)
    return summary(results, meter.cpu() - before, len(pages), meter.rss())


async def measure(url: str, run_id: str, variants: list[str], viewers: int, meter: ServerMeter) -> dict:
    """One viewer, then `viewers` at once, each in a fresh context: the explorer's first view, a control changed,
    the Divergence page's first view."""
    from playwright.async_api import async_playwright
    explorer = f"{url}/explorer?run={run_id}"
    divergence = f"{url}/divergence?run={run_id}"
    other = next(v for v in variants if v != "distilled") if "distilled" in variants else variants[0]
    out = {}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for name, n in (("one viewer", 1), (f"{viewers} viewers", viewers)):
            contexts = [await browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(n)]
            pages = [await c.new_page() for c in contexts]
            fetched = []                             # what the first browser fetched for its first view

            def keep(request):
                fetched.append(request)
            pages[0].on("requestfinished", keep)
            await asyncio.sleep(1.0)
            out[f"{name}: explorer, first view"] = await together(pages, meter, lambda pg: first_figure(pg, explorer))
            pages[0].remove_listener("requestfinished", keep)
            sizes = [(await r.sizes())["responseBodySize"] for r in fetched]
            out[f"{name}: explorer, first view"]["one_browser_fetched"] = {
                "files": sum("/static/" in r.url for r in fetched), "requests": len(fetched), "mb": sum(sizes) / 1e6}
            out[f"{name}: explorer, a control changed"] = await together(pages, meter,
                                                                         lambda pg: change_variant(pg, other))
            out[f"{name}: divergence, first view"] = await together(pages, meter,
                                                                    lambda pg: first_figure(pg, divergence))
            out[f"{name}: explorer again, files cached"] = await together(pages, meter,
                                                                        lambda pg: first_figure(pg, explorer))
            for c in contexts:
                await c.close()
        await browser.close()
    return out


def default_run(runs_dir: Path) -> str:
    """The offline default session, run once into runs_dir (its teacher comes from the cache when there)."""
    print("running the default session for the viewers to open…", flush=True)
    subprocess.run([sys.executable, "-m", "distill_core", "run", "--runs-dir", str(runs_dir)], cwd=ROOT, check=True)
    from distill_core import RunStore
    return RunStore(runs_dir).list()[0].run_id


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs-dir", type=Path)
    ap.add_argument("--run", help="the run the viewers open (default: the default session, run first)")
    ap.add_argument("--viewers", type=int, default=20)
    ap.add_argument("--json", type=Path, help="write the results here too")
    ap.add_argument("--profile", type=Path, help="sample the server with py-spy (installed apart) into this file "
                                                 "(collapsed stacks, every thread)")
    args = ap.parse_args(argv)
    runs_dir = (args.runs_dir or Path(tempfile.mkdtemp(prefix="ads-class-"))).resolve()
    run_id = args.run or default_run(runs_dir)
    sys.path.insert(0, str(ROOT))
    from distill_core import RunStore
    from distill_core.vocab import run_variants
    variants = run_variants(RunStore(runs_dir).open(run_id).summary() or {})
    log = Path(tempfile.mkdtemp(prefix="ads-class-log-")) / "server.log"
    env = {"ADS_RUNS_DIR": str(runs_dir), "HF_HUB_OFFLINE": "1", "ADS_INSTRUCTOR_TOKEN": "class-load-bench",
           "TOKENIZERS_PARALLELISM": "false"}
    with served_app(env, log) as (url, server):
        meter = ServerMeter(server.pid)
        spy = (subprocess.Popen(["py-spy", "record", "--pid", str(server.pid), "--format", "raw", "--rate", "100",
                                 "--gil", "--output", str(args.profile)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if args.profile else None)
        try:
            idle = meter.rss()
            results = asyncio.run(measure(url, run_id, variants, args.viewers, meter))
        finally:
            meter.close()
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)
    report = {"run": run_id, "viewers": args.viewers, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "server_rss_idle_mb": idle / 2 ** 20, "server_rss_peak_mb": meter.peak_rss / 2 ** 20,
              "target_cpu_s_per_viewer": TARGET_CPU_S, "phases": results}
    print(f"run {run_id}; server memory idle {idle / 2 ** 20:.0f} MB, peak {meter.peak_rss / 2 ** 20:.0f} MB")
    print(f"{'phase':<44} {'ok':>5} {'p50 s':>7} {'p95 s':>7} {'max s':>7} {'CPU-s/viewer':>13} {'RSS MB':>7}")
    for name, r in results.items():
        fmt = lambda x: f"{x:7.2f}" if isinstance(x, float) else f"{'-':>7}"
        print(f"{name:<44} {r['ok']:>2}/{r['viewers']:<2} {fmt(r['p50_s'])} {fmt(r['p95_s'])} {fmt(r['max_s'])} "
              f"{r['server_cpu_s_per_viewer']:13.3f} {r['server_rss_mb']:7.0f}")
        for e in r["errors"][:3]:
            print(f"    error: {e}")
        if got := r.get("one_browser_fetched"):
            print(f"    one browser fetched {got['requests']} files ({got['files']} of Streamlit's static files), "
                  f"{got['mb']:.1f} MB")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
