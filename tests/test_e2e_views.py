"""In a real browser at 1280 x 720, what a newcomer met: a view whose controls must say what its maps draw after a
typed sentence, a run that must stay open when another page is visited, and presentation mode's first screen.
Headless Chromium from the system drives the app over two copies of one tiny finished run."""
from __future__ import annotations

import os
import re
import shutil

import pytest

from test_e2e_browser import CHROMIUM_ARGS, _app, _no_exception, chromium_path  # noqa: F401 (a fixture)

OLDER, NEWER = "20990101-000000-older", "20990102-000000-newer"      # the newer one is listed first
TIMEOUT = 60_000


@pytest.fixture
def two_runs(finished_run, tmp_path):
    store, run_id = finished_run
    runs = tmp_path / "runs"
    for name in (OLDER, NEWER):
        shutil.copytree(store.root / run_id, runs / name)
    return runs


@pytest.fixture
def browser_page(chromium_path, two_runs, tmp_path):  # noqa: F811
    from playwright.sync_api import sync_playwright
    env = dict(os.environ, ADS_RUNS_DIR=str(two_runs), ADS_CACHE_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    with _app(env, tmp_path) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield url, browser.new_page(viewport={"width": 1280, "height": 720})
        finally:
            browser.close()


def _wait_idle(page) -> None:
    """Until the app has drawn the page again after the last interaction (no script running)."""
    page.wait_for_timeout(300)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=TIMEOUT)
    page.wait_for_timeout(300)


def _selected(page, label: str) -> str:
    """What a selectbox shows (its input's value)."""
    return page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first.locator("input").input_value()


def _triptych_titles(page) -> list[str]:
    return page.evaluate("() => (document.querySelector('.js-plotly-plot').layout.annotations || [])"
                         ".map(a => a.text)")


def test_after_a_typed_sentence_the_controls_show_what_the_maps_draw(browser_page):
    from playwright.sync_api import expect
    url, page = browser_page
    page.goto(f"{url}/explorer?run={OLDER}&example=1&epoch=1")
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=TIMEOUT)
    _wait_idle(page)
    assert "epoch 1" in " ".join(_triptych_titles(page))

    page.get_by_text("type a sentence").click()
    box = page.get_by_test_id("stTextInputField")
    expect(box).to_be_visible(timeout=TIMEOUT)
    for sentence in ("a wonderful clever film", "an awful messy story"):     # the fault showed after two
        box.fill(sentence)
        box.press("Enter")
        _wait_idle(page)
    expect(page.get_by_text(re.compile("final weights")).first).to_be_visible(timeout=TIMEOUT)

    page.get_by_text("a probe example").click()
    expect(page.locator('[data-testid="stSelectbox"]').filter(has_text="Probe example")).to_be_visible(
        timeout=TIMEOUT)
    _wait_idle(page)
    _no_exception(page)
    # the maps, the controls and the address all say example 1 at epoch 1
    assert "epoch 1" in " ".join(_triptych_titles(page))
    assert _selected(page, "Probe example").startswith("#1 [")
    assert page.locator('[data-testid="stSlider"]').filter(has_text="Epoch").first.locator(
        'input[type="range"]').first.get_attribute("value") == "1"
    assert "example=1" in page.url and "epoch=1" in page.url
    # and the next click keeps them (it used to write example 0 and epoch 0 into the address)
    page.get_by_text("Emphasise small weights").click()
    _wait_idle(page)
    assert "example=1" in page.url and "epoch=1" in page.url
    assert "epoch 1" in " ".join(_triptych_titles(page))


def _nav(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()


def test_visiting_new_session_keeps_the_run_a_page_shows(browser_page):
    from playwright.sync_api import expect
    url, page = browser_page
    page.goto(f"{url}/divergence?run={OLDER}")
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=TIMEOUT)
    _wait_idle(page)
    assert OLDER in _selected(page, "Run")
    _nav(page, "New session")
    expect(page.get_by_text(re.compile("The last session")).first).to_be_visible(timeout=TIMEOUT)
    _wait_idle(page)
    _nav(page, "Divergence over epochs")
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=TIMEOUT)
    _wait_idle(page)
    _no_exception(page)
    assert OLDER in _selected(page, "Run")
    assert f"run={OLDER}" in page.url


def test_presentation_mode_opens_on_the_maps(browser_page, tmp_path):
    from playwright.sync_api import expect
    url, page = browser_page
    page.goto(f"{url}/explorer?run={OLDER}&present=1")
    plot = page.locator(".js-plotly-plot").first
    expect(plot).to_be_visible(timeout=TIMEOUT)
    _wait_idle(page)
    _no_exception(page)
    page.screenshot(path=str(tmp_path / "present.png"))
    box = plot.bounding_box()
    assert box["y"] + box["height"] <= 720, box           # teacher and student maps whole on the first screen
    assert page.locator('[data-testid="stSidebar"]').get_attribute("data-collapsed") == "true"
    assert not page.locator('[data-testid="stSidebar"]').is_visible()
    titles = " ".join(_triptych_titles(page))
    assert "teacher" in titles and "student" in titles
    # the run picker and the rest are below the maps
    run_box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Run").first
    assert run_box.bounding_box()["y"] > box["y"] + box["height"]
