"""The Divergence page's "Suggested layer mapping" section, driven with Streamlit's AppTest on a run the real engine
wrote (`finished_run`); nothing trains here."""
from __future__ import annotations

import numpy as np
import pytest

from app.layer_suggestion import js_format
from app_helpers import VIEWS, figures, open_page, texts, values
from distill_core.analysis import suggest_for_run

KEY = "divergence.suggest."


@pytest.fixture
def run_store(finished_run, monkeypatch):
    store, run_id = finished_run
    monkeypatch.setenv("ADS_RUNS_DIR", str(store.root))
    return store, run_id


def test_divergence_page_suggests_a_layer_mapping(run_store):
    store, run_id = run_store
    run = store.open(run_id)
    sug = suggest_for_run(run)
    at = open_page(VIEWS / "divergence.py", default_timeout=60)
    assert "Suggested layer mapping" in texts(at.subheader)
    suggested = ", ".join(map(str, sug["layers"]))
    used = ", ".join(str(t) for t, _ in run.probe()["pairs"])
    summary = texts(at.markdown)
    fmt = js_format(sug)                   # the tiny models' attention is nearly uniform: JS of about 1e-5
    assert f"Suggested teacher layers **{suggested}** (mean JS {fmt % sug['cost']})" in summary
    if sug["layers"] != sug["used"]:
        assert f"this run used **{used}** (mean JS {fmt % sug['used_cost']})" in summary
    captions = texts(at.caption)
    assert "baseline student" in captions and "no two student layers share a teacher layer" in captions

    table = next(d.value for d in at.dataframe if "suggested teacher layer" in d.value)
    assert list(table["student layer"]) == list(range(len(sug["layers"])))
    assert list(table["suggested teacher layer"]) == sug["layers"]
    assert list(table["used teacher layer"]) == sug["used"]
    assert table["JS, suggested"].mean() == pytest.approx(sug["cost"])
    assert table["JS, used"].mean() == pytest.approx(sug["used_cost"])
    first = " · ".join(f"h{h} ← {', '.join(map(str, g))}" for h, g in enumerate(sug["heads"][0]))
    assert table["teacher heads per student head"][0] == first

    code = texts(at.code)
    assert "layer_map: suggested" in code and f"[{suggested}]" in code
    fig = figures(at)[KEY + "costs"]
    heat, marks = fig["data"][0], fig["layout"]["shapes"]
    np.testing.assert_allclose(values(heat["z"]).reshape(len(sug["layers"]), -1), sug["costs"], rtol=1e-6)
    assert [m["name"] for m in marks if m["showlegend"]] == ["suggested", "used by the run"]
    assert [(m["x0"] + m["x1"]) / 2 for m in marks if m["name"] == "suggested"] == sug["layers"]   # its column


def test_the_section_waits_for_a_trained_epoch(run_store, tmp_path, monkeypatch):
    import shutil
    store, run_id = run_store
    root = tmp_path / "runs"
    shutil.copytree(store.open(run_id).path, root / run_id, ignore=shutil.ignore_patterns("models", "*_e[1-9]*.npz"))
    monkeypatch.setenv("ADS_RUNS_DIR", str(root))
    at = open_page(VIEWS / "divergence.py", default_timeout=60)
    assert f"Run {run_id} suggests a layer mapping after its first epoch." in texts(at.info)
    assert KEY + "costs" not in figures(at)


def suggestion(layers, used, costs=((0.2, 0.1, 0.3), (0.3, 0.4, 0.05))) -> dict:
    costs = [list(r) for r in costs]
    return {"layers": layers, "used": used, "uniform": [0, 2], "costs": costs, "heads": [[[0, 1]], [[2, 3]]],
            "cost": float(np.mean([costs[s][t] for s, t in enumerate(layers)])), "uniform_cost": 0.125,
            "used_cost": float(np.mean([costs[s][t] for s, t in enumerate(used)]))}


def test_the_summary_names_both_maps_and_their_divergence():
    from app.layer_suggestion import layer_rows, summary
    sug = suggestion([1, 2], [0, 1])
    assert summary(sug) == ("Suggested teacher layers **1, 2** (mean JS 0.0750); this run used **0, 1** (mean JS "
                            "0.3000); the uniform map 0, 2 gives 0.1250.")
    assert summary(suggestion([1, 2], [1, 2])) == ("Suggested teacher layers **1, 2** (mean JS 0.0750): the layers "
                                                   "this run already used.")
    assert layer_rows(sug)[1] == {"student layer": 1, "suggested teacher layer": 2, "JS, suggested": 0.05,
                                  "used teacher layer": 1, "JS, used": 0.4,
                                  "teacher heads per student head": "h0 ← 2, 3"}
    tiny = suggestion([1, 2], [1, 2], costs=((2e-5, 1e-5, 3e-5), (3e-5, 4e-5, 5e-6)))
    assert js_format(tiny) == "%.2e" and "(mean JS 7.50e-06)" in summary(tiny)
