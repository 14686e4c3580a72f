"""Robustness in the app: the figure and its reading, the Accuracy page's section and button, the explorer's
"Under attack" control. Pages read a copy of a run the real engine wrote; the measuring function is patched."""
from __future__ import annotations

import numpy as np

from app import live
from app.figures import accuracy as fig_accuracy
from app.figures import base as fig_base
from app_helpers import VIEWS, figures, open_page, run_app, texts, values
from distill_core.verdicts import robustness_reading
from distill_core.vocab import TEACHER_COLOR, variant_colors

LIVE_TIMEOUT = 60          # pages that run the models (tiny ones) on the CPU
RECORD = {"epsilons": [0.0, 0.05, 0.1], "steps": 3, "n": 32, "split": "test", "attack": "PGD", "seconds": 1.0,
          "accuracy": {"teacher": [0.9, 0.8, 0.6], "baseline": [0.7, 0.5, 0.3], "distilled": [0.75, 0.7, 0.65]}}


def test_robustness_figure_and_reading():
    fig = fig_accuracy.robustness_figure(RECORD, ["baseline", "distilled"], "baseline")
    assert [d.name for d in fig.data] == ["teacher", "baseline student", "distilled student"]
    colors = variant_colors(["baseline", "distilled"])
    assert [d.line.color for d in fig.data] == [TEACHER_COLOR, colors["baseline"], colors["distilled"]]
    assert fig.data[0].y == (90.0, 80.0, 60.0) and fig.data[1].line.dash == "dash"
    assert list(fig.data[2].x) == [0.0, 0.05, 0.1]
    reading = robustness_reading(RECORD, "baseline")
    assert "the distilled student keeps its accuracy best" in reading and "75.0% at ε = 0" in reading
    assert "65.0% at ε = 0.1" in reading
    assert robustness_reading({"epsilons": [0.0], "accuracy": {"teacher": [0.9]}}).endswith("model.")


def test_accuracy_page_draws_a_measured_run(run_copy):
    run_copy.write_json("robustness.json", RECORD)
    at = open_page(VIEWS / "accuracy.py")
    figs = figures(at)
    assert [d["name"] for d in figs["accuracy.robustness"]["data"]] == ["teacher", "baseline student", "distilled student"]
    assert robustness_reading(RECORD, "baseline") in texts(at.markdown)
    assert not [b for b in at.button if b.key == "accuracy.measure_robustness"]


def test_accuracy_page_measures_on_click(run_copy, monkeypatch):
    calls = []

    def fake_measure(run_id):
        calls.append(run_id)
        run_copy.write_json("robustness.json", RECORD)
        return RECORD

    monkeypatch.setattr(live, "measure_robustness", fake_measure)
    at = open_page(VIEWS / "accuracy.py")
    assert "accuracy.robustness" not in figures(at)
    at.button(key="accuracy.measure_robustness").click()
    run_app(at)
    assert calls == [run_copy.id]
    assert "accuracy.robustness" in figures(at)


def test_explorer_under_attack(run_copy):
    at = open_page(VIEWS / "explorer.py")
    assert at.select_slider(key="explorer.attack_eps").value == 0.0
    assert "explorer.attack_teacher" not in figures(at)
    at.select_slider(key="explorer.attack_eps").set_value(0.2)
    run_app(at, LIVE_TIMEOUT)
    figs = figures(at)
    for side in ("teacher", "student"):
        clean, attacked, diff = (values(d["z"]) for d in figs[f"explorer.attack_{side}"]["data"])
        assert clean.shape == attacked.shape
        np.testing.assert_allclose(diff, attacked - clean, atol=1e-6)
        assert not np.allclose(clean, attacked)
    probs = at.dataframe[-1].value                            # the last table: the probabilities
    assert set(probs.columns) == {"model", "class", "clean", "under attack"}
    np.testing.assert_allclose(probs.groupby("model")["clean"].sum(), 1.0, atol=1e-5)
    assert "at most 20% of its size" in texts(at.caption)
    run_app(at, LIVE_TIMEOUT)                                  # the second run reads the session's copy
    assert len(at.session_state["explorer._attacks"]) == 2


def test_explorer_under_attack_on_a_typed_sentence(run_copy):
    at = open_page(VIEWS / "explorer.py")
    at.radio(key="explorer.source").set_value("typed")
    at.select_slider(key="explorer.attack_eps").set_value(0.1)
    at.run(timeout=LIVE_TIMEOUT)
    at.text_input(key="explorer.text").input("a dull tedious film")
    run_app(at, LIVE_TIMEOUT)
    figs = figures(at)
    tokens = [fig_base.plain_label(x) for x in figs["explorer.attack_student"]["data"][0]["x"]]
    assert tokens == [fig_base.plain_label(x) for x in figs["explorer.triptych"]["data"][0]["x"]]
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and "dull" in tokens
    assert "Attacked with the final weights" in texts(at.caption)


def test_a_link_opens_the_explorer_under_attack_and_a_bad_size_falls_back(run_copy):
    at = open_page(VIEWS / "explorer.py", {"run": run_copy.id, "attack": "0.05"}, default_timeout=LIVE_TIMEOUT)
    assert at.select_slider(key="explorer.attack_eps").value == 0.05
    assert "explorer.attack_teacher" in figures(at)
    at = open_page(VIEWS / "explorer.py", {"run": run_copy.id, "attack": "0.3"}, default_timeout=LIVE_TIMEOUT)
    assert not at.exception and at.select_slider(key="explorer.attack_eps").value == 0.0
