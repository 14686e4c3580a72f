"""End to end in a real browser: start the app, run a tiny session from the New session page, watch it finish,
then open the Attention explorer and find its heatmaps. Headless Chromium from the system (/usr/bin/chromium);
everything stays on this machine (the app listens on 127.0.0.1 and the hub is switched off)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from app.figures import base as fig_base
from app.figures import maps as fig_maps

from conftest import tiny_config_dict

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                 "--disable-component-update", "--disable-sync"]
SESSION_TIMEOUT_MS = 240_000     # a tiny session takes ~20 s; generous for a busy machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if server.poll() is not None:
            raise AssertionError(f"the app exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the app did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=15)


@contextlib.contextmanager
def _app(env: dict, tmp_path: Path):
    """The app on a free port of 127.0.0.1 with `env`, healthy; yields its address, then stops it."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app/streamlit_app.py", "--server.address", "127.0.0.1",
             "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_healthy(url, server, log)
        yield url
    finally:
        _stop(server)


def _no_exception(page) -> None:
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, boxes.first.inner_text()


@pytest.fixture
def chromium_path() -> str:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; the browser test needs Debian's chromium package")
        pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium to run the browser test)")
    pytest.importorskip("playwright.sync_api")
    return str(CHROMIUM)


# Every plotly chart on the page: its traces' types and, for heatmaps, the z matrix's rows and columns as plotly
# decoded it (gd._fullData; gd.data keeps the typed-array encoding Streamlit sends), and whether any value is > 0.
PLOTS_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].map(el => (el.data || []).map((t, i) => {
    const full = (el._fullData || [])[i] || {};
    const z = Array.isArray(full.z) ? full.z : (Array.isArray(t.z) ? t.z : []);
    const rows = z.map(r => Array.from(r || []));
    return {type: t.type, rows: rows.length, cols: rows.length ? Math.min(...rows.map(r => r.length)) : 0,
            positive: rows.some(r => r.some(v => Number.isFinite(v) && v > 0))};
}))"""


def test_session_from_the_browser_then_explorer(chromium_path, tmp_path, tiny_teacher, tiny_csv):
    from playwright.sync_api import expect, sync_playwright

    runs = tmp_path / "runs"
    form = tmp_path / "form.json"
    form.write_text(json.dumps(tiny_config_dict(tiny_teacher, tiny_csv, name="browser")))
    env = dict(os.environ, ADS_RUNS_DIR=str(runs), ADS_CACHE_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1",
               ADS_FORM_DEFAULTS=str(form), TOKENIZERS_PARALLELISM="false")
    with _app(env, tmp_path) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url + "/")
            start = page.get_by_role("button", name=re.compile("Start"))
            expect(start).to_be_visible(timeout=60_000)
            # the form was prefilled from ADS_FORM_DEFAULTS: a local teacher and the tiny CSV
            expect(page.get_by_text("Model folder on this machine")).to_be_visible()
            _no_exception(page)
            # a third variant from the editor: it starts as a copy of the last one
            page.get_by_role("button", name=re.compile("Add variant")).click()
            expect(page.locator('input[aria-label="Variant name"]').nth(2)).to_have_value("variant_3",
                                                                               timeout=30_000)
            start.click()
            # the page follows the new run at once (queued, then live progress), then shows how it ended
            following = re.compile(r"browser.* is (queued|running)|Run .*browser.* (finished|failed|was)")
            expect(page.get_by_text(following).first).to_be_visible(timeout=30_000)
            ended = page.get_by_text(re.compile(r"Run .*browser.* (finished|failed|was)"))
            expect(ended).to_be_visible(timeout=SESSION_TIMEOUT_MS)
            assert "finished" in ended.inner_text(), ended.inner_text()
            labels = page.get_by_test_id("stMetricLabel")
            expect(labels.filter(has_text="distilled student")).to_be_visible()
            expect(labels.filter(has_text="variant_3")).to_be_visible()
            _no_exception(page)
            page.screenshot(path=str(tmp_path / "new_session_done.png"), full_page=True)

            (run_dir,) = [d for d in runs.iterdir() if d.is_dir() and not d.name.startswith(".")]
            assert json.loads((run_dir / "status.json").read_text())["status"] == "done"
            summary = json.loads((run_dir / "summary.json").read_text())
            assert summary["epochs_done"] == 2
            assert summary["variants"] == ["baseline", "distilled", "variant_3"]
            probe = json.loads((run_dir / "probe.json").read_text())

            page.goto(url + "/explorer")
            plots = page.locator(".js-plotly-plot")
            expect(plots.nth(3)).to_be_visible(timeout=60_000)     # triptych, two head grids, averaged view
            _no_exception(page)
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 4 && "
                                   "[...document.querySelectorAll('.js-plotly-plot')].every(e => e._fullData)",
                                   timeout=30_000)
            figs = page.evaluate(PLOTS_JS)
            assert len(figs) == 4, figs
            for traces in figs:                                      # every chart holds heatmaps with data
                assert traces and all(t["type"] == "heatmap" for t in traces), traces
                assert all(t["rows"] > 0 and t["cols"] > 0 for t in traces), traces
            n_tokens = len(probe["tokens"][0])
            shown = min(n_tokens, fig_maps.triptych_arrangement(n_tokens, fig_base.WIDE_PX, 12)[1])
            triptych = figs[0]
            assert len(triptych) == 3
            assert all((t["rows"], t["cols"]) == (shown, shown) for t in triptych), triptych
            assert triptych[0]["positive"] and triptych[1]["positive"]      # attention weights, not zeros
            assert len(figs[1]) == probe["teacher_heads"] and len(figs[2]) == probe["student_heads"]
            page.screenshot(path=str(tmp_path / "explorer.png"), full_page=True)

            # a deep link opens the explorer at the layer, head and example it names, and keeps them in the URL
            layer, head = probe["student_layers"] - 1, probe["student_heads"] - 1
            page.goto(f"{url}/explorer?run={run_dir.name}&variant=distilled&layer={layer}&head={head}&example=1")
            # the triptych's titles (wrapped onto lines that fit their panels) name that layer, head and epoch
            page.wait_for_function(
                "want => [...document.querySelectorAll('.js-plotly-plot')].some(el => {"
                "  const t = (el.layout?.annotations || []).map(a => a.text).join(' ').replace(/<[^>]+>/g, ' ');"
                "  return want.every(w => t.includes(w)); })",
                arg=[f"distilled L{layer} · head {head}", "epoch 2"], timeout=60_000)
            _no_exception(page)
            assert f"layer={layer}" in page.url and f"head={head}" in page.url and "example=1" in page.url
            assert "tlayer=" in page.url
        finally:
            browser.close()
    assert (tmp_path / "explorer.png").stat().st_size > 0


def test_image_run_in_the_explorer_overlays_the_maps_on_the_picture(chromium_path, tmp_path, cnn_image_run):
    """An image run opened in the browser: the explorer draws the teacher's, the student's and their difference's
    maps over the probe picture (a grey heatmap of the pixels under each map), one panel per model."""
    from playwright.sync_api import expect, sync_playwright

    store, run_id = cnn_image_run
    run = store.open(run_id)
    probe = run.probe()
    h, w = probe["image_size"]
    env = dict(os.environ, ADS_RUNS_DIR=str(store.root), ADS_CACHE_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    with _app(env, tmp_path) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"{url}/explorer?run={run_id}&variant=kd_at")
            expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)
            page.wait_for_function("[...document.querySelectorAll('.js-plotly-plot')].length >= 2 && "
                                   "[...document.querySelectorAll('.js-plotly-plot')].every(e => e._fullData)",
                                   timeout=30_000)
            _no_exception(page)
            expect(page.get_by_text("What to notice").first).to_be_visible()
            figs = page.evaluate(PLOTS_JS)
            overlay = figs[0]                  # teacher | student | difference, each a picture and a map
            assert len(overlay) == 6 and all(t["type"] == "heatmap" for t in overlay), overlay
            assert all((t["rows"], t["cols"]) == (h, w) for t in overlay), overlay
            assert all(t["positive"] for t in overlay[:4]), overlay      # the pictures and the two maps
            page.screenshot(path=str(tmp_path / "image_explorer.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "image_explorer.png").stat().st_size > 0


def test_a_viewer_cannot_start_a_session_until_they_enter_the_token(chromium_path, tmp_path, finished_run):
    """A class: the app started with an instructor token. A visitor is a viewer (no Start, no Delete, the run's
    maps all there); the token in the sidebar makes the instructor of that tab only; a link's token leaves the
    address bar at once."""
    from playwright.sync_api import expect, sync_playwright

    store, run_id = finished_run
    token = "class-of-2026"
    env = dict(os.environ, ADS_RUNS_DIR=str(store.root), ADS_CACHE_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1",
               ADS_INSTRUCTOR_TOKEN=token)
    with _app(env, tmp_path) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            viewer = browser.new_page(viewport={"width": 1400, "height": 1000})
            viewer.goto(url + "/")
            expect(viewer.get_by_text("You are a viewer").first).to_be_visible(timeout=60_000)
            expect(viewer.get_by_role("button", name=re.compile("Start"))).to_have_count(0)
            _no_exception(viewer)
            viewer.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)
            viewer.goto(f"{url}/runs?run={run_id}")
            expect(viewer.get_by_test_id("stBaseButton-primary").filter(has_text="Open")).to_be_visible(timeout=60_000)
            expect(viewer.get_by_role("button", name=re.compile("Delete"))).to_have_count(0)
            viewer.goto(f"{url}/explorer?run={run_id}")
            expect(viewer.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)
            _no_exception(viewer)
            box = viewer.locator('input[aria-label="Instructor token"]')
            box.fill(token)
            box.press("Enter")
            expect(viewer.get_by_text("You are the instructor in this tab")).to_be_visible(timeout=30_000)
            viewer.goto(url + "/")        # a new page load is a new tab's session: a viewer again
            expect(viewer.get_by_text("You are a viewer").first).to_be_visible(timeout=60_000)

            instructor = browser.new_page(viewport={"width": 1400, "height": 1000})
            instructor.goto(f"{url}/?token={token}")
            expect(instructor.get_by_role("button", name=re.compile("Start"))).to_be_visible(timeout=60_000)
            instructor.wait_for_function(f"!location.search.includes({json.dumps(token)})", timeout=30_000)
            assert token not in instructor.url and token not in instructor.content()
            _no_exception(instructor)
        finally:
            browser.close()
    assert token not in (tmp_path / "server.log").read_text()
