"""Every page with a run of four variants (baseline, kd, kd_att_kl, kd_att_mse) written by the real engine with
tiny models (`four_variant_run`): each page lists every variant, draws each in the same colour, and compares
each with the reference (the labels-only baseline). Nothing trains here."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.figures import divergence as fig_divergence
from app_helpers import VIEWS, open_page, run_app, texts
from conftest import FOUR_VARIANTS
from distill_core import RunStore
from distill_core.verdicts import attribution_reading, divergence_reading
from distill_core.vocab import variant_colors
from test_app_views import assert_triptych_shows, figures, values

VARIANTS = [v["name"] for v in FOUR_VARIANTS]
COLORS = variant_colors(VARIANTS)
TIMEOUT = 90


def page(name: str, query: dict | None = None) -> AppTest:
    return open_page(VIEWS / f"{name}.py", query, default_timeout=TIMEOUT)


rerun = run_app


@pytest.fixture
def four(four_variant_run, monkeypatch):
    store, run_id = four_variant_run
    monkeypatch.setenv("ADS_RUNS_DIR", str(store.root))
    monkeypatch.delenv("ADS_FORM_DEFAULTS", raising=False)
    return store.open(run_id)


def test_the_run_has_four_variants_and_a_reference(four):
    assert four.probe()["variants"] == VARIANTS and four.summary()["reference"] == "baseline"
    assert set(COLORS.values()) >= {"#f59e0b"} and len(set(COLORS.values())) == 5        # teacher + 4, distinct


def test_explorer_picks_any_variant_and_shows_its_stored_maps(four):
    probe = four.probe()
    t0, s0 = probe["pairs"][0]
    at = page("explorer")
    radio = at.radio(key="explorer.student")
    assert radio.value == "kd"                                  # the first variant that is not the reference
    assert list(radio.options) == ["baseline student", "kd", "kd_att_kl", "kd_att_mse"]
    assert_triptych_shows(at, four, "kd", 2, 0, t0, s0, 0)
    for variant, epoch in (("kd_att_mse", 1), ("kd_att_kl", 0), ("baseline", 2)):
        at.radio(key="explorer.student").set_value(variant)
        at.select_slider(key="explorer.epoch").set_value(epoch)
        rerun(at)
        assert_triptych_shows(at, four, variant, epoch, 0, t0, s0, 0)
        assert f"{variant} L{s0}" in figures(at)["explorer.triptych"]["layout"]["annotations"][1]["text"]


def test_divergence_draws_every_variant_on_the_same_axes(four):
    probe = four.probe()
    labels = fig_divergence.pair_labels(probe["pairs"])
    at = page("divergence")
    figs = figures(at)
    curves = figs["divergence.curves"]["data"]
    assert len(curves) == 4 * len(probe["pairs"])
    for tr in curves:
        assert tr["line"]["color"] == COLORS[tr["legendgroup"]]
    first_panel = [tr for tr in curves if tr["xaxis"] == "x"]
    assert [tr["legendgroup"] for tr in first_panel] == VARIANTS
    for tr in first_panel:
        expected = [np.mean(r["attention"]["js"][0]) for r in four.metrics() if r["student"] == tr["legendgroup"]]
        np.testing.assert_allclose(values(tr["y"]), expected, rtol=1e-6)
    # the layer x head grid: one panel per variant, one colour scale
    grid = figs["divergence.grid"]["data"]
    assert [t["name"] for t in grid] == VARIANTS and {t["coloraxis"] for t in grid} == {"coloraxis"}
    for t in grid:
        rec = [r for r in four.metrics() if r["student"] == t["name"] and r["epoch"] == 2][0]
        np.testing.assert_allclose(values(t["z"]), rec["attention"]["js"])
    # the reading compares every variant with the reference
    reading = divergence_reading(four.metrics(), "js", labels, VARIANTS, "baseline")
    assert reading in texts(at.info)
    assert all(v in reading for v in ("kd", "kd_att_kl", "kd_att_mse")) and "baseline student" in reading


def test_accuracy_lists_teacher_and_every_variant_with_a_verdict_each(four):
    summary = four.summary()
    n = summary["test_size"]
    at = page("accuracy")
    df = at.dataframe[0].value
    assert list(df["model"]) == ["teacher", "baseline student", "kd", "kd_att_kl", "kd_att_mse"]
    np.testing.assert_allclose(df["accuracy (%)"], [100 * summary["accuracy"][m] for m in ("teacher", *VARIANTS)])
    assert list(df["objectives"])[1:] == ["ce 1", "ce 0.5 + logit_kd 0.5", "ce 0.5 + logit_kd 0.5 + attention_kl 0.1",
                                          "ce 0.5 + logit_kd 0.5 + attention_mse 1"]
    verdicts = texts(at.success) + texts(at.warning) + texts(at.info)
    for v in ("kd", "kd_att_kl", "kd_att_mse"):            # each verdict is the paired comparison of the run
        c = summary["paired"][v]
        assert c["n"] == n
        line = next(x for x in verdicts.splitlines() if "McNemar" in x and (f" {v} " in x or f"**{v} " in x))
        assert f"paired 95% interval {c['lo'] * 100:+.1f} to {c['hi'] * 100:+.1f}" in line
        assert ("No clear difference" in line) == (c["p"] >= 0.05)
    figs = figures(at)
    bars = figs["accuracy.accuracy_bars"]["data"][0]
    assert bars["marker"]["color"] == [COLORS[m] for m in VARIANTS]        # the teacher is a line, not a bar
    assert [t["y"][0] for t in figs["accuracy.difference"]["data"]] == ["kd", "kd_att_kl", "kd_att_mse"]


def test_accuracy_without_a_reference_says_so(four, tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    shutil.copytree(four.path, store.root / "no-reference")
    run = store.open("no-reference")
    for name in ("summary.json", "probe.json"):
        d = run.read_json(name)
        d["reference"] = None
        run.write_json(name, d)
    monkeypatch.setenv("ADS_RUNS_DIR", str(store.root))
    at = page("accuracy")
    assert "no reference variant" in texts(at.info)
    assert "accuracy.difference" not in figures(at)


def test_attributions_compare_the_teacher_with_any_variant(four):
    at = page("attributions")
    outputs, comparison = at.dataframe
    assert list(outputs.value["model"]) == ["teacher", "baseline student", "kd", "kd_att_kl", "kd_att_mse"]
    assert list(comparison.value["student"]) == ["baseline student", "kd", "kd_att_kl", "kd_att_mse"]
    assert at.radio(key="attributions.student").value == "kd"
    before = figures(at)["attributions.bars"]["data"]
    at.radio(key="attributions.student").set_value("kd_att_mse")
    rerun(at)
    after = figures(at)["attributions.bars"]["data"]
    assert after[0]["x"] == before[0]["x"] and after[1]["x"] != before[1]["x"]
    rho, agree = comparison.value["attribution ρ vs teacher"], comparison.value["[CLS] attention agreement"]
    stats = {v: (rho[k], agree[k]) for k, v in enumerate(VARIANTS)}
    assert attribution_reading("kd_att_mse", stats, "baseline") in texts(at.info)


def test_runs_page_lists_every_variant(four, finished_run, tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    shutil.copytree(four.path, store.root / "b-four")
    shutil.copytree(finished_run[0].root / finished_run[1], store.root / "a-two")
    monkeypatch.setenv("ADS_RUNS_DIR", str(store.root))
    at = page("runs")
    table = at.dataframe[0].value.set_index("run")
    assert table.loc["b-four", "variants"] == "baseline, kd, kd_att_kl, kd_att_mse"
    acc = four.summary()["accuracy"]
    best = max(VARIANTS, key=lambda v: acc[v])                   # the first of equals
    assert table.loc["b-four", "best variant"] == best
    assert table.loc["b-four", "reference %"] == pytest.approx(100 * acc["baseline"], abs=0.051)
    # one run: a row per variant
    at.selectbox(key="runs.choice").set_value("b-four").run()
    rows = next(d.value for d in at.dataframe if "variant" in d.value.columns)
    assert list(rows["variant"]) == ["baseline (reference)", "kd", "kd_att_kl", "kd_att_mse"]
    # comparing two runs moved to the Compare page (tests/test_app_compare.py)


def test_new_session_finished_block_shows_every_variant(four):
    at = page("new_session", {"run": four.id})
    acc = four.summary()["accuracy"]
    shown = {m.label: m for m in at.metric}
    assert list(shown) == ["teacher", "baseline student", "kd", "kd_att_kl", "kd_att_mse"]
    for v in ("kd", "kd_att_kl", "kd_att_mse"):
        m = shown[v]
        assert m.value == f"{100 * acc[v]:.1f}%"
        gain = 100 * (acc[v] - acc["baseline"])
        assert m.delta == (f"{gain:+.1f} points vs baseline" if abs(gain) >= 0.05 else "same as baseline")
    curves = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    assert len(curves) == 3
    for key in ("new.final.val", "new.final.js"):
        assert [t["name"] for t in curves[key]["data"]] == VARIANTS
        assert [t["line"]["color"] for t in curves[key]["data"]] == [COLORS[v] for v in VARIANTS]
    losses = curves["new.final.loss"]["data"]                  # one panel per loss, the variants that train with it
    assert {t["meta"]["student"] for t in losses} == set(VARIANTS)
    assert all(t.get("line", t.get("marker", {})).get("color") == COLORS[t["meta"]["student"]] for t in losses)
