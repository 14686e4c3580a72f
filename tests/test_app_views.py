"""The explorer, divergence, accuracy and attributions pages, driven with Streamlit's AppTest.

Every page reads a run the real engine wrote once per test session (`finished_run`); nothing trains here.
"""
from __future__ import annotations

import base64
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app import charts
from distill_core import RunStore
from distill_core.analysis import compare_pair
from distill_core.metrics import METRIC_LABELS

VIEWS = Path(__file__).resolve().parent.parent / "app" / "views"
LIVE_TIMEOUT = 60          # pages that run the models (tiny ones) on the CPU


def page(name: str, timeout: float | None = None) -> AppTest:
    at = AppTest.from_file(str(VIEWS / f"{name}.py"))
    at.run(timeout=timeout)
    assert not at.exception, [e.value for e in at.exception]
    return at


def figures(at: AppTest) -> dict[str, dict]:
    """The page's plotly figures as JSON, by chart key."""
    return {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def values(data) -> np.ndarray:
    """A plotly JSON array: a plain list, or numpy's typed-array encoding {"dtype", "bdata", "shape"}."""
    if isinstance(data, dict):
        arr = np.frombuffer(base64.b64decode(data["bdata"]), dtype=np.dtype(data["dtype"]))
        shape = data.get("shape")
        return arr.reshape([int(x) for x in str(shape).split(",")]) if shape else arr
    return np.asarray(data, dtype=float)


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def rerun(at: AppTest, timeout: float | None = None) -> AppTest:
    at.run(timeout=timeout)
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def run_store(finished_run, monkeypatch):
    store, run_id = finished_run
    monkeypatch.setenv("ADS_RUNS_DIR", str(store.root))
    return store, run_id


@pytest.fixture
def empty_store(tmp_path, monkeypatch):
    monkeypatch.setenv("ADS_RUNS_DIR", str(tmp_path / "no-runs-here"))


@pytest.mark.parametrize("name", ["explorer", "divergence", "accuracy", "attributions"])
def test_empty_store_says_what_to_do(empty_store, name):
    at = page(name)
    assert "No runs to show yet" in texts(at.info)
    assert not at.get("plotly_chart")


# ---- explorer -----------------------------------------------------------------------------------------
def test_explorer_shows_a_probe_example(run_store):
    store, run_id = run_store
    probe = store.open(run_id).probe()
    at = page("explorer")
    for key in ("explorer.run", "explorer.example", "explorer.student_layer", "explorer.teacher_layer",
                "explorer.head"):
        assert at.selectbox(key=key) is not None
    assert at.radio(key="explorer.student").value == "distilled"
    assert at.select_slider(key="explorer.epoch").value == 2
    figs = figures(at)
    assert set(figs) == {"explorer.triptych", "explorer.teacher_grid", "explorer.student_grid", "explorer.averaged"}
    trip = figs["explorer.triptych"]
    assert [d["type"] for d in trip["data"]] == ["heatmap"] * 3
    assert [charts.plain_label(x) for x in trip["data"][0]["x"]] == probe["tokens"][0]
    # the first mapped pair is preselected
    t_layer, s_layer = probe["pairs"][0]
    assert at.selectbox(key="explorer.student_layer").value == s_layer
    assert at.selectbox(key="explorer.teacher_layer").value == t_layer
    # the grids hold every head of both layers
    assert len(figs["explorer.teacher_grid"]["data"]) == probe["teacher_heads"]
    assert len(figs["explorer.student_grid"]["data"]) == probe["student_heads"]


def test_explorer_divergence_table_matches_compare_pair(run_store):
    store, run_id = run_store
    run = store.open(run_id)
    probe = run.probe()
    at = page("explorer")
    t_layer, s_layer = probe["pairs"][0]
    teacher = run.read_attention("teacher")[0][t_layer]
    student = run.read_attention("distilled_e2")[0][s_layer]
    expected = compare_pair(teacher, student, probe["head_rule"], probe["student_heads"])
    df = at.dataframe[0].value
    assert list(df["metric"]) == [METRIC_LABELS[m] for m in ("kl", "js", "mse", "cosine")]
    np.testing.assert_allclose(df["mean over compared heads"], [np.mean(expected[m]) for m in
                                                                ("kl", "js", "mse", "cosine")], rtol=1e-5)
    # head 0 as trained is the first compared head; the shown maps are that very comparison
    np.testing.assert_allclose(df.iloc[:, 2], [expected[m][0] for m in ("kl", "js", "mse", "cosine")], rtol=1e-5)
    np.testing.assert_allclose(df["shown maps"], df.iloc[:, 2], rtol=1e-4)


def test_explorer_layer_head_and_epoch_change_the_maps(run_store):
    store, run_id = run_store
    probe = store.open(run_id).probe()
    at = page("explorer")
    before = figures(at)

    # another student layer brings its mapped teacher layer along
    t_layer, s_layer = probe["pairs"][1]
    at.selectbox(key="explorer.student_layer").set_value(s_layer)
    rerun(at)
    assert at.selectbox(key="explorer.teacher_layer").value == t_layer
    after_layer = figures(at)
    assert after_layer["explorer.triptych"]["data"] != before["explorer.triptych"]["data"]
    assert after_layer["explorer.teacher_grid"]["data"] != before["explorer.teacher_grid"]["data"]

    at.selectbox(key="explorer.head").set_value(1)
    rerun(at)
    after_head = figures(at)
    assert after_head["explorer.triptych"]["data"][1]["z"] != after_layer["explorer.triptych"]["data"][1]["z"]
    assert "average of teacher heads" in texts(at.markdown) or probe["head_rule"] != "group"

    at.select_slider(key="explorer.epoch").set_value(0)
    rerun(at)
    after_epoch = figures(at)
    assert after_epoch["explorer.triptych"]["data"][1]["z"] != after_head["explorer.triptych"]["data"][1]["z"]
    assert after_epoch["explorer.triptych"]["data"][0]["z"] == after_head["explorer.triptych"]["data"][0]["z"]

    # one teacher head of the user's choice
    at.radio(key="explorer.teacher_side").set_value("single")
    rerun(at)
    at.selectbox(key="explorer.teacher_head").set_value(probe["teacher_heads"] - 1)
    rerun(at)
    single = figures(at)
    assert single["explorer.triptych"]["data"][0]["z"] != after_epoch["explorer.triptych"]["data"][0]["z"]

    # a teacher layer that is not mapped says so
    other = next(t for t in range(probe["teacher_layers"]) if t != t_layer)
    at.selectbox(key="explorer.teacher_layer").set_value(other)
    rerun(at)
    assert "not a mapped pair" in texts(at.markdown)


def test_explorer_colour_scale_toggle(run_store):
    at = page("explorer")
    before = figures(at)["explorer.triptych"]
    at.checkbox(key="explorer.sqrt_scale").uncheck()
    rerun(at)
    after = figures(at)["explorer.triptych"]
    assert after["layout"]["coloraxis"]["colorscale"] != before["layout"]["coloraxis"]["colorscale"]
    assert after["data"] == before["data"]                    # the same weights, other colours


def test_explorer_student_and_example_change_the_maps(run_store):
    at = page("explorer")
    before = figures(at)["explorer.triptych"]["data"]
    at.radio(key="explorer.student").set_value("baseline")
    rerun(at)
    baseline = figures(at)["explorer.triptych"]["data"]
    assert baseline[1]["z"] != before[1]["z"] and baseline[0]["z"] == before[0]["z"]
    at.selectbox(key="explorer.example").set_value(1)
    rerun(at)
    assert figures(at)["explorer.triptych"]["data"][0] != baseline[0]


def test_explorer_typed_sentence_runs_the_models(run_store):
    at = page("explorer")
    at.radio(key="explorer.source").set_value("typed")
    at.run(timeout=LIVE_TIMEOUT)
    at.text_input(key="explorer.text").input("a wonderful clever film")
    rerun(at, LIVE_TIMEOUT)
    assert at.select_slider(key="explorer.epoch").disabled
    assert "final weights" in texts(at.caption)
    trip = figures(at)["explorer.triptych"]
    tokens = [charts.plain_label(x) for x in trip["data"][0]["x"]]
    assert tokens == ["[CLS]", "a", "wonderful", "clever", "film", "[SEP]"]
    at.text_input(key="explorer.text").input("   ")
    rerun(at, LIVE_TIMEOUT)
    assert "Type a sentence" in texts(at.info)


# ---- divergence ---------------------------------------------------------------------------------------
def test_divergence_page(run_store):
    store, run_id = run_store
    run = store.open(run_id)
    at = page("divergence")
    assert at.selectbox(key="divergence.metric").value == "js"
    figs = figures(at)
    assert set(figs) == {"divergence.curves", "divergence.grid.distilled", "divergence.grid.baseline"}
    n_pairs = len(run.probe()["pairs"])
    assert len(figs["divergence.curves"]["data"]) == 2 * n_pairs
    # the reading is the one computed from this run's records
    labels = charts.pair_labels(run.probe()["pairs"])
    assert charts.divergence_reading(run.metrics(), "js", labels) in texts(at.info)

    at.selectbox(key="divergence.metric").set_value("cosine")
    rerun(at)
    cosine = figures(at)
    assert cosine["divergence.curves"]["data"][0]["y"] != figs["divergence.curves"]["data"][0]["y"]
    assert charts.divergence_reading(run.metrics(), "cosine", labels) in texts(at.info)
    assert "higher is closer" in texts(at.markdown)

    at.checkbox(key="divergence.per_head").check()
    rerun(at)
    heads = run.probe()["student_heads"] if run.probe()["head_rule"] != "mean" else 1
    assert len(figures(at)["divergence.curves"]["data"]) == 2 * n_pairs * (1 + heads)

    grid_before = figures(at)["divergence.grid.distilled"]["data"][0]["z"]
    at.select_slider(key="divergence.epoch").set_value(0)
    rerun(at)
    assert figures(at)["divergence.grid.distilled"]["data"][0]["z"] != grid_before


# ---- accuracy -----------------------------------------------------------------------------------------
def test_accuracy_page(run_store):
    store, run_id = run_store
    summary = store.open(run_id).summary()
    at = page("accuracy")
    df = at.dataframe[0].value
    assert list(df["model"]) == ["teacher", "baseline student", "distilled student"]
    np.testing.assert_allclose(df["accuracy (%)"], [100 * summary["accuracy"][m]
                                                    for m in ("teacher", "baseline", "distilled")], rtol=1e-6)
    np.testing.assert_allclose(df["params (M)"], [summary["params"][m] / 1e6
                                                  for m in ("teacher", "baseline", "distilled")])
    n = summary["test_size"]
    verdicts = texts(at.success) + texts(at.warning) + texts(at.info)
    assert f"{n} test examples" in verdicts and "one seed" in verdicts
    d, lo, hi = charts.difference_interval(summary["accuracy"]["distilled"], summary["accuracy"]["baseline"], n)
    assert f"{lo * 100:+.1f} to {hi * 100:+.1f}" in verdicts
    figs = figures(at)
    assert set(figs) == {"accuracy.accuracy_bars", "accuracy.efficiency_bars"}


def _copy_as_cancelled(finished_run, tmp_path, monkeypatch) -> str:
    src, run_id = finished_run
    store = RunStore(tmp_path / "runs")
    shutil.copytree(src.root / run_id, store.root / "cancelled-run")
    run = store.open("cancelled-run")
    summary = run.summary()
    run.write_json("summary.json", {
        "status": "cancelled", "error": None, "accuracy": {"teacher": None, "baseline": None, "distilled": None},
        "val_accuracy": summary["val_accuracy"], "divergence": summary["divergence"], "epochs_done": 2})
    run.update_status(status="cancelled")
    monkeypatch.setenv("ADS_RUNS_DIR", str(store.root))
    return "cancelled-run"


def test_accuracy_page_cancelled_run(finished_run, tmp_path, monkeypatch):
    _copy_as_cancelled(finished_run, tmp_path, monkeypatch)
    at = page("accuracy")
    assert "no test accuracy" in texts(at.warning)
    assert not at.get("plotly_chart")
    assert len(at.dataframe) == 1 and list(at.dataframe[0].value.index) == [0, 1, 2]   # validation per epoch


# ---- attributions -------------------------------------------------------------------------------------
def test_attributions_page(run_store):
    at = page("attributions", LIVE_TIMEOUT)
    for key in ("attributions.run", "attributions.example", "attributions.target"):
        assert at.selectbox(key=key) is not None
    outputs, comparison = at.dataframe
    assert list(outputs.value["model"]) == ["teacher", "distilled student", "baseline student"]
    rho = comparison.value["attribution ρ vs teacher"]
    agree = comparison.value["[CLS] attention agreement"]
    assert all(math.isnan(r) or -1 <= r <= 1 for r in rho)
    assert all(0 <= a <= 1 for a in agree)
    bars = figures(at)["attributions.bars"]
    assert len(bars["data"]) == 2
    # the reading is the one computed from the numbers in the table
    stats = {"distilled": (rho[0], agree[0]), "baseline": (rho[1], agree[1])}
    assert charts.attribution_reading("distilled", stats) in texts(at.info)

    at.radio(key="attributions.student").set_value("baseline")
    rerun(at, LIVE_TIMEOUT)
    baseline_bars = figures(at)["attributions.bars"]
    assert baseline_bars["data"][1]["x"] != bars["data"][1]["x"]
    assert baseline_bars["data"][0]["x"] == bars["data"][0]["x"]          # the teacher side stays

    at.selectbox(key="attributions.example").set_value(1)
    rerun(at, LIVE_TIMEOUT)
    assert figures(at)["attributions.bars"]["data"][0]["x"] != bars["data"][0]["x"]


def test_attributions_typed_sentence_and_target(run_store):
    at = page("attributions", LIVE_TIMEOUT)
    at.radio(key="attributions.source").set_value("typed")
    rerun(at, LIVE_TIMEOUT)
    at.text_input(key="attributions.text").input("a dull and boring film")
    rerun(at, LIVE_TIMEOUT)
    bars = figures(at)["attributions.bars"]
    assert [charts.plain_label(y) for y in bars["data"][0]["y"]] == ["[CLS]", "a", "dull", "and", "boring", "film",
                                                                    "[SEP]"]
    at.selectbox(key="attributions.target").set_value(0)
    rerun(at, LIVE_TIMEOUT)
    assert "Explaining class “fresh”" in texts(at.markdown)
    towards_0 = values(figures(at)["attributions.bars"]["data"][0]["x"])
    at.selectbox(key="attributions.target").set_value(1)
    rerun(at, LIVE_TIMEOUT)
    assert "Explaining class “rotten”" in texts(at.markdown)
    towards_1 = values(figures(at)["attributions.bars"]["data"][0]["x"])
    # with two classes P(0) = 1 - P(1): integrated gradients of one are those of the other, negated
    np.testing.assert_allclose(towards_0, -towards_1, atol=0.05)
