"""The explorer, divergence, accuracy and attributions pages, driven with Streamlit's AppTest.

Every page reads a run the real engine wrote once per test session (`finished_run`); nothing trains here.
"""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.figures import base as fig_base
from app.figures import divergence as fig_divergence
from app_helpers import VIEWS, figures, open_page, run_app, texts, values
from distill_core import RunStore
from distill_core import analysis
from distill_core.analysis import compare_pair, teacher_heads_for
from distill_core.reopen import reopen
from distill_core.verdicts import attribution_reading, divergence_reading, paired_sentence
from distill_core.vocab import METRIC_LABELS

LIVE_TIMEOUT = 60          # pages that run the models (tiny ones) on the CPU


def page(name: str, timeout: float | None = None) -> AppTest:
    return open_page(VIEWS / f"{name}.py", timeout=timeout)


def triptych(at: AppTest) -> list[np.ndarray]:
    """The teacher, student and difference maps the explorer's triptych draws."""
    return [values(d["z"]) for d in figures(at)["explorer.triptych"]["data"]]


def stored_maps(run, variant: str, epoch: int, example: int, t_layer: int, s_layer: int, s_head: int,
                teacher_head: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """What the triptych must show, from the run's stored arrays: the teacher side averaged as the head rule says
    (or one teacher head), the student side one head (or all heads averaged when s_head is -1)."""
    probe = run.probe()
    teacher = run.read_attention("teacher")[example][t_layer]
    student = run.read_attention(f"{variant}_e{epoch}")[example][s_layer]
    if teacher_head is not None:
        t_shown = teacher[teacher_head]
    elif s_head == -1 or probe["head_rule"] == "mean":
        t_shown = teacher.mean(0)
    else:
        t_shown = teacher[teacher_heads_for(s_head, probe["head_rule"], probe["teacher_heads"],
                                            probe["student_heads"])].mean(0)
    return t_shown, student.mean(0) if s_head == -1 else student[s_head]


def assert_triptych_shows(at: AppTest, run, variant, epoch, example, t_layer, s_layer, s_head, teacher_head=None):
    teacher, student, diff = triptych(at)
    t_exp, s_exp = stored_maps(run, variant, epoch, example, t_layer, s_layer, s_head, teacher_head)
    np.testing.assert_allclose(teacher, t_exp, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(student, s_exp, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(diff, s_exp - t_exp, rtol=1e-5, atol=1e-6)


rerun = run_app


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
    assert [fig_base.plain_label(x) for x in trip["data"][0]["x"]] == probe["tokens"][0]
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


def test_explorer_layer_head_and_epoch_show_the_stored_maps(run_store):
    store, run_id = run_store
    run = store.open(run_id)
    probe = run.probe()
    at = page("explorer")
    t0, s0 = probe["pairs"][0]
    assert_triptych_shows(at, run, "distilled", 2, 0, t0, s0, 0)         # the first mapped pair, head 0, last epoch
    before = figures(at)

    # another student layer brings its mapped teacher layer along
    t_layer, s_layer = probe["pairs"][1]
    at.selectbox(key="explorer.student_layer").set_value(s_layer)
    rerun(at)
    assert at.selectbox(key="explorer.teacher_layer").value == t_layer
    assert_triptych_shows(at, run, "distilled", 2, 0, t_layer, s_layer, 0)
    assert figures(at)["explorer.teacher_grid"]["data"] != before["explorer.teacher_grid"]["data"]

    at.selectbox(key="explorer.head").set_value(1)
    rerun(at)
    assert_triptych_shows(at, run, "distilled", 2, 0, t_layer, s_layer, 1)
    assert "average of teacher heads" in texts(at.markdown) or probe["head_rule"] != "group"

    at.selectbox(key="explorer.head").set_value(-1)                     # all heads, averaged
    rerun(at)
    assert_triptych_shows(at, run, "distilled", 2, 0, t_layer, s_layer, -1)

    at.selectbox(key="explorer.head").set_value(1)
    at.select_slider(key="explorer.epoch").set_value(0)
    rerun(at)
    assert_triptych_shows(at, run, "distilled", 0, 0, t_layer, s_layer, 1)

    # one teacher head of the user's choice
    at.radio(key="explorer.teacher_side").set_value("single")
    rerun(at)
    at.selectbox(key="explorer.teacher_head").set_value(probe["teacher_heads"] - 1)
    rerun(at)
    assert_triptych_shows(at, run, "distilled", 0, 0, t_layer, s_layer, 1, teacher_head=probe["teacher_heads"] - 1)

    # a teacher layer that is not mapped says so
    other = next(t for t in range(probe["teacher_layers"]) if t != t_layer)
    at.selectbox(key="explorer.teacher_layer").set_value(other)
    rerun(at)
    assert "not a mapped pair" in texts(at.markdown)
    assert_triptych_shows(at, run, "distilled", 0, 0, other, s_layer, 1, teacher_head=probe["teacher_heads"] - 1)


def test_explorer_colour_scale_toggle(run_store):
    at = page("explorer")
    before = figures(at)["explorer.triptych"]
    at.checkbox(key="explorer.sqrt_scale").uncheck()
    rerun(at)
    after = figures(at)["explorer.triptych"]
    assert after["layout"]["coloraxis"]["colorscale"] != before["layout"]["coloraxis"]["colorscale"]
    assert after["data"] == before["data"]                    # the same weights, other colours


def test_explorer_variant_and_example_show_the_stored_maps(run_store):
    store, run_id = run_store
    run = store.open(run_id)
    t0, s0 = run.probe()["pairs"][0]
    at = page("explorer")
    assert at.radio(key="explorer.student").options == ["baseline student", "distilled student"]
    at.radio(key="explorer.student").set_value("baseline")
    rerun(at)
    assert_triptych_shows(at, run, "baseline", 2, 0, t0, s0, 0)
    at.selectbox(key="explorer.example").set_value(1)
    rerun(at)
    assert_triptych_shows(at, run, "baseline", 2, 1, t0, s0, 0)


def test_explorer_typed_sentence_runs_the_models(run_store):
    at = page("explorer")
    at.radio(key="explorer.source").set_value("typed")
    at.run(timeout=LIVE_TIMEOUT)
    at.text_input(key="explorer.text").input("a wonderful clever film")
    rerun(at, LIVE_TIMEOUT)
    assert not [s for s in at.select_slider if s.key == "explorer.epoch"]     # the epochs are the probe set's
    assert at.radio(key="explorer.weights").value == "final"
    assert "final weights" in texts(at.caption) or any("best" in o for o in at.radio(key="explorer.weights").options)
    trip = figures(at)["explorer.triptych"]
    tokens = [fig_base.plain_label(x) for x in trip["data"][0]["x"]]
    assert tokens == ["[CLS]", "a", "wonderful", "clever", "film", "[SEP]"]
    # the maps are the chosen student's on this sentence, computed here by the engine from the run's own weights
    store, run_id = run_store
    run = store.open(run_id)
    probe = run.probe()
    _, maps, _ = analysis.attention_for_text(reopen(run, "final").run_models(), "a wonderful clever film")
    t_layer, s_layer = at.selectbox(key="explorer.teacher_layer").value, at.selectbox(key="explorer.student_layer").value
    s_head = at.selectbox(key="explorer.head").value
    t_heads = (list(range(probe["teacher_heads"])) if s_head == -1 or probe["head_rule"] == "mean" else
               teacher_heads_for(s_head, probe["head_rule"], probe["teacher_heads"], probe["student_heads"]))
    for variant in ("distilled", "baseline"):
        at.radio(key="explorer.student").set_value(variant)
        rerun(at, LIVE_TIMEOUT)
        teacher, student, _ = triptych(at)
        s_maps = maps[variant][s_layer]
        np.testing.assert_allclose(teacher, maps["teacher"][t_layer][t_heads].mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(student, s_maps.mean(0) if s_head == -1 else s_maps[s_head], rtol=1e-5, atol=1e-6)
    assert not np.allclose(maps["distilled"][s_layer], maps["baseline"][s_layer])   # the test can tell them apart
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
    assert set(figs) == {"divergence.curves", "divergence.grid", "divergence.suggest.costs"}
    n_pairs = len(run.probe()["pairs"])
    assert len(figs["divergence.curves"]["data"]) == 2 * n_pairs
    assert [d["name"] for d in figs["divergence.grid"]["data"]] == ["baseline", "distilled"]
    # the reading is the one computed from this run's records
    labels = fig_divergence.pair_labels(run.probe()["pairs"])
    both = dict(variants=["baseline", "distilled"], reference="baseline")
    assert divergence_reading(run.metrics(), "js", labels, **both) in texts(at.info)

    at.selectbox(key="divergence.metric").set_value("cosine")
    rerun(at)
    cosine = figures(at)
    assert cosine["divergence.curves"]["data"][0]["y"] != figs["divergence.curves"]["data"][0]["y"]
    assert divergence_reading(run.metrics(), "cosine", labels, **both) in texts(at.info)
    assert "higher is closer" in texts(at.markdown)

    at.checkbox(key="divergence.per_head").check()
    rerun(at)
    heads = run.probe()["student_heads"] if run.probe()["head_rule"] != "mean" else 1
    assert len(figures(at)["divergence.curves"]["data"]) == 2 * n_pairs * (1 + heads)

    at.select_slider(key="divergence.epoch").set_value(0)
    rerun(at)
    cosine_e0 = [r["attention"]["cosine"] for r in run.metrics() if r["epoch"] == 0 and r["student"] == "distilled"][0]
    np.testing.assert_allclose(values(figures(at)["divergence.grid"]["data"][1]["z"]), cosine_e0)


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
    paired = summary["paired"]["distilled"]          # the engine's paired comparison, not independent intervals
    assert paired_sentence(paired, "distilled", "baseline") in verdicts
    assert f"{paired['lo'] * 100:+.1f} to {paired['hi'] * 100:+.1f}" in verdicts
    assert list(df["McNemar p"])[2] == pytest.approx(paired["p"])
    assert all(w["message"] in texts(at.warning) for w in summary["warnings"])
    figs = figures(at)
    assert set(figs) == {"accuracy.accuracy_bars", "accuracy.difference", "accuracy.efficiency_bars"}


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
    assert list(outputs.value["model"]) == ["teacher", "baseline student", "distilled student"]
    rho = comparison.value["attribution ρ vs teacher"]
    agree = comparison.value["[CLS] attention agreement"]
    assert all(math.isnan(r) or -1 <= r <= 1 for r in rho)
    assert all(0 <= a <= 1 for a in agree)
    bars = figures(at)["attributions.bars"]
    assert len(bars["data"]) == 2
    # the reading is the one computed from the numbers in the table
    assert at.radio(key="attributions.student").value == "distilled"
    stats = {"baseline": (rho[0], agree[0]), "distilled": (rho[1], agree[1])}
    assert attribution_reading("distilled", stats, "baseline") in texts(at.info)

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
    assert [fig_base.plain_label(y) for y in bars["data"][0]["y"]] == ["[CLS]", "a", "dull", "and", "boring", "film",
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
