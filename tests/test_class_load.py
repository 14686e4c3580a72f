"""benchmarks/class_load.py: its phase summary, and one real run of it (the app and headless Chromium) on a tiny run."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("class_load")


def test_a_phase_counts_viewers_errors_and_the_servers_seconds_per_viewer(bench):
    results = [2.0, 1.0, TimeoutError("no figure"), 4.0, 3.0]
    s = bench.summary(results, cpu_s=1.0, viewers=5, rss=512 * 2 ** 20)
    assert (s["ok"], s["p50_s"], s["max_s"], s["p95_s"]) == (4, 2.5, 4.0, 4.0)
    assert s["errors"] == ["TimeoutError: no figure"]
    assert s["server_cpu_s_per_viewer"] == pytest.approx(0.2) and s["server_rss_mb"] == 512


def test_the_benchmark_runs_two_viewers_on_a_finished_run(bench, finished_run, tmp_path):
    if not Path(bench.CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{bench.CHROMIUM} is missing; the benchmark needs Debian's chromium package")
        pytest.skip(f"{bench.CHROMIUM} is missing")
    store, run_id = finished_run
    out = tmp_path / "load.json"
    assert bench.main(["--runs-dir", str(store.root), "--run", run_id, "--viewers", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    phases = report["phases"]
    assert set(phases) == {f"{who}: {what}" for who in ("one viewer", "2 viewers")
                           for what in ("explorer, first view", "explorer, a control changed",
                                        "divergence, first view", "explorer again, files cached")}
    fetched = phases["one viewer: explorer, first view"]["one_browser_fetched"]
    assert fetched["files"] > 10 and fetched["requests"] > fetched["files"] and fetched["mb"] > 1
    for name, p in phases.items():
        assert p["errors"] == [] and p["ok"] == p["viewers"], (name, p)
        assert p["server_cpu_s"] > 0 and p["p50_s"] > 0
    assert report["server_rss_peak_mb"] >= report["server_rss_idle_mb"] > 0
