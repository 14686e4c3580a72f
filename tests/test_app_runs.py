"""The Runs page, driven with Streamlit's AppTest on copies of a run the real engine wrote (nothing trains here)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app import common
from distill_core import RunStore

PAGE = str(Path(__file__).resolve().parent.parent / "app" / "views" / "runs.py")
TIMEOUT = 60


def run_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def table(at: AppTest):
    (df,) = at.dataframe
    return df.value


@pytest.fixture
def store(tmp_path, monkeypatch) -> RunStore:
    monkeypatch.setenv("ADS_RUNS_DIR", str(tmp_path / "runs"))
    return RunStore(tmp_path / "runs")


def copy_run(finished_run, store: RunStore, new_id: str | None = None, **config_changes) -> str:
    """A copy of the session-scoped finished run in `store`, so the original stays intact."""
    src, run_id = finished_run
    new_id = new_id or run_id
    shutil.copytree(src.root / run_id, store.root / new_id)
    if config_changes:
        run = store.open(new_id)
        cfg = run.config()
        for key, value in config_changes.items():
            section, _, name = key.partition("__")
            if name:
                cfg[section][name] = value
            else:
                cfg[section] = value
        run.write_json("config.json", cfg)
    return new_id


def test_empty_store_says_what_to_do(store):
    at = run_page()
    assert "No runs yet" in texts(at.info)
    assert "New session" in texts(at.info)
    assert not at.dataframe


def test_lists_the_run_with_its_accuracies(finished_run, store):
    run_id = copy_run(finished_run, store)
    at = run_page()
    df = table(at)
    assert list(df["run"]) == [run_id]
    assert df["status"].iloc[0].endswith("done")
    acc = store.open(run_id).summary()["accuracy"]
    for name in ("teacher", "baseline", "distilled"):
        assert df[f"{name} %"].iloc[0] == pytest.approx(100 * acc[name], abs=0.051)
    assert df["epochs"].iloc[0] == 2
    assert at.download_button(key="runs.download") is not None
    assert "two runs" in texts(at.info)          # comparing needs a second run


def test_open_selects_the_run_for_the_other_pages(finished_run, store):
    run_id = copy_run(finished_run, store)
    at = run_page()
    at.button(key="runs.open").click().run()
    assert at.session_state[common.SELECTED_RUN] == run_id
    assert "now show it" in texts(at.success)


def test_delete_needs_confirmation_and_removes_the_folder(finished_run, store):
    run_id = copy_run(finished_run, store)
    keep = copy_run(finished_run, store, "another-run")
    at = run_page()
    at.selectbox(key="runs.choice").set_value(run_id).run()
    assert at.button(key="runs.delete").disabled     # AppTest, like a browser, cannot click it
    at.checkbox(key="runs.delete_confirm").check().run()
    assert not at.button(key="runs.delete").disabled
    at.button(key="runs.delete").click().run()
    assert not at.exception
    assert not (store.root / run_id).exists()
    assert store.exists(keep)
    assert f"Deleted run {run_id}" in texts(at.success)
    assert list(table(at)["run"]) == [keep]
    assert at.checkbox(key="runs.delete_confirm").value is False
    assert finished_run[0].exists(finished_run[1])   # the shared fixture is untouched


def test_deleting_a_running_run_shows_the_store_error(store, tiny_config):
    run = store.create(tiny_config.to_dict())        # running, owned by this live process
    at = run_page()
    at.checkbox(key="runs.delete_confirm").check().run()
    at.button(key="runs.delete").click().run()
    assert "still running" in texts(at.error)
    assert run.path.is_dir()


def test_damaged_run_is_marked(finished_run, store):
    copy_run(finished_run, store)
    bad = store.root / "broken-run"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    at = run_page()
    df = table(at)
    assert df.set_index("run").loc["broken-run", "status"].endswith("damaged")
    assert "broken-run" in texts(at.warning) and "damaged" in texts(at.warning)
    at.selectbox(key="runs.choice").set_value("broken-run").run()
    assert at.button(key="runs.open").disabled
    at.checkbox(key="runs.delete_confirm").check().run()
    at.button(key="runs.delete").click().run()
    assert not bad.exists()


def test_compare_two_runs_overlays_curves_and_accuracies(finished_run, store):
    a = copy_run(finished_run, store, "run-a")
    b = copy_run(finished_run, store, "run-b", name="second", train__lr=0.002)
    summary_b = store.open(b).summary()
    summary_b["accuracy"]["distilled"] = 0.5
    summary_b["divergence"]["distilled"] = [0.3 for _ in summary_b["divergence"]["epochs"]]
    store.open(b).write_json("summary.json", summary_b)
    at = run_page()
    at.selectbox(key="runs.compare_a").set_value(a)
    at.selectbox(key="runs.compare_b").set_value(b)
    at.run()
    assert not at.exception
    charts = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    div = {t["name"]: t for t in charts["runs.compare_divergence"]["data"]}
    assert set(div) == {"A distilled", "A baseline", "B distilled", "B baseline"}
    assert div["B distilled"]["y"] == summary_b["divergence"]["distilled"]
    assert div["A distilled"]["y"] == store.open(a).summary()["divergence"]["distilled"]
    bars = {t["name"]: t for t in charts["runs.compare_accuracy"]["data"]}
    assert bars[f"B: {b}"]["y"][2] == 50.0
    diff = at.dataframe[-1].value
    assert set(diff["setting"]) == {"name", "train.lr"}
    at.selectbox(key="runs.compare_b").set_value(a).run()
    assert "two different runs" in texts(at.warning)
