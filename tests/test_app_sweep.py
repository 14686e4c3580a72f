"""The Sweep page, the Runs page's sweeps and the New session page's Seeds field, driven with Streamlit's AppTest
on sweeps of hand-made runs (nothing trains here)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import distill_core
from distill_core import RunStore, SessionConfig
from distill_core.sweep import SweepStore

from app_helpers import open_page, run_app, texts
from test_sweep import hand_made_sweep

APP = Path(__file__).resolve().parent.parent / "app"
TIMEOUT = 60


def page(path: Path | AppTest) -> AppTest:
    return run_app(path) if isinstance(path, AppTest) else open_page(path, default_timeout=TIMEOUT)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "runs"
    monkeypatch.setenv("ADS_RUNS_DIR", str(root))
    monkeypatch.setenv("ADS_CACHE_DIR", str(tmp_path / "cache"))
    return root


def test_sweep_page_shows_the_table_the_verdict_and_the_figure(runs_dir):
    _, _, sweep_id = hand_made_sweep(runs_dir)
    at = page(APP / "views" / "sweep.py")
    assert at.title[0].value == "Sweep across seeds"
    assert at.selectbox(key="sweep.pick").value == sweep_id
    md = texts(at.markdown)
    assert "**done**" in md and "seeds done: 2 of 2 (0, 1)" in md
    table = at.dataframe[1].value                            # the first is the runs of the sweep
    assert list(table["model"]) == ["teacher", "baseline (reference)", "distilled"]
    assert list(table["accuracy %"]) == [93.8, 56.2, 87.5]
    assert table["final JS"].iloc[2] == pytest.approx(0.125)
    assert "No clear difference" in md and "n = 8 test examples, each answered by 2 seeds" in md
    assert "pooled per example, not counted as more examples" in texts(at.caption)   # what the pooled test means
    assert [c.proto.id for c in at.get("plotly_chart")][0].endswith("sweep.figure")
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert len(fig["data"]) == 2 * 3 + 2 * 2                 # dots and mean per model, per panel
    assert "seed 1: baseline is weak" in texts(at.warning)


def test_sweep_page_opens_the_selected_sweep_and_shows_a_partial_one(runs_dir):
    _, _, older = hand_made_sweep(runs_dir, failed_seed=2, name="older")
    newer = SweepStore(runs_dir).create({}, [0, 1], "newer")["id"]          # nothing has run yet
    at = AppTest.from_file(str(APP / "views" / "sweep.py"), default_timeout=TIMEOUT)
    at.session_state["sweep.selected"] = older
    page(at)
    assert at.selectbox(key="sweep.pick").value == older
    assert "**partial**" in texts(at.markdown) and "seeds done: 2 of 3" in texts(at.markdown)
    at.selectbox(key="sweep.pick").set_value(newer).run()
    assert not at.exception
    assert at.session_state["sweep.selected"] == newer
    assert "No seed has finished yet" in texts(at.info)


def test_sweep_page_without_sweeps_says_what_to_do(runs_dir):
    at = page(APP / "views" / "sweep.py")
    assert "No sweeps yet" in texts(at.info) and "Seeds" in texts(at.info)
    assert not at.get("plotly_chart")


def test_runs_page_lists_the_sweep_and_opens_it(runs_dir):
    _, _, sweep_id = hand_made_sweep(runs_dir)
    at = page(APP / "streamlit_app.py")
    at.switch_page("views/runs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    sweeps = [d.value for d in at.dataframe if "sweep" in d.value.columns][0]
    row = sweeps.iloc[0]
    assert (row["sweep"], row["seeds"], row["reference"], row["best variant"]) == (sweep_id, "0, 1", "baseline",
                                                                                 "distilled")
    assert row["status"].endswith("done") and row["reference %"] == 56.2 and row["best %"] == 87.5
    at.button(key="runs.sweep_open").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Sweep across seeds"
    assert at.selectbox(key="sweep.pick").value == sweep_id


def test_runs_page_without_sweeps(runs_dir):
    hand_made_sweep(runs_dir)
    SweepStore(runs_dir).delete(SweepStore(runs_dir).list()[0]["id"])   # the runs stay, the sweep is gone
    at = page(APP / "views" / "runs.py")
    assert "No sweeps yet" in texts(at.caption)


@pytest.fixture
def started(monkeypatch):
    calls = []

    def fake_start(config, store=None, callbacks=()):
        calls.append(config)
        return store.create(config.to_dict(), status="queued").id

    monkeypatch.setattr(distill_core, "start_session", fake_start)
    monkeypatch.delenv("ADS_FORM_DEFAULTS", raising=False)
    return calls


def test_several_seeds_start_a_sweep(runs_dir, started):
    at = page(APP / "views" / "new_session.py")
    assert at.text_input(key="new.seeds").value == ""
    at.text_input(key="new.seeds").set_value("2-4").run()
    at.button(key="new.start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [c.train.seed for c in started] == [2, 3, 4]
    [sweep] = SweepStore(runs_dir).list()
    assert sweep["seeds"] == [2, 3, 4] and len(sweep["runs"]) == 3
    assert sweep["id"] in texts(at.info) and at.session_state["sweep.selected"] == sweep["id"]
    assert at.button(key="new.open_sweep") is not None


def test_one_seed_or_none_starts_one_session(runs_dir, started):
    at = page(APP / "views" / "new_session.py")
    at.button(key="new.start").click().run()
    assert at.button(key="new.start").disabled                  # while this tab's session waits or runs
    store = RunStore(runs_dir)
    store.open(at.session_state["new.active_run"]).update_status(status="done")
    at.text_input(key="new.seeds").set_value("7").run()
    assert not at.button(key="new.start").disabled
    at.button(key="new.start").click().run()
    assert [c.train.seed for c in started] == [SessionConfig().train.seed, 7]
    assert SweepStore(runs_dir).list() == []
    store.open(at.session_state["new.active_run"]).update_status(status="done")
    at.text_input(key="new.seeds").set_value("1-x").run()
    at.button(key="new.start").click().run()
    assert "seeds must look like 0-4 or 0,1,2" in texts(at.error) and len(started) == 2
