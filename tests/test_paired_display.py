"""Paired comparisons and model-health warnings as readers see them: in words (distill_core/verdicts.py), on the
Accuracy page, in the New session page's finished-run block, in the Runs overview and on the command line.

The run folders here are written by hand (no training), so every number on the page is known in advance.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.figures import accuracy as fig_accuracy
from app.tables import DISCORDANT, PAIRED_INTERVAL
from app_helpers import VIEWS, open_page, texts
from distill_core import RunStore
from distill_core.__main__ import print_summary
from distill_core.stats import difference_interval, mcnemar_exact, p_text, prediction_warnings
from distill_core.verdicts import TEACHER_PROBLEM, health_lines, paired_sentence, paired_verdicts, verdict_lines

N = 200
LABELS = [0, 1] * (N // 2)
NOTICE = "3 rows with an empty text were dropped"


def comparison(ref_only: int, variant_only: int, ref_accuracy: float, lo: float, hi: float) -> dict:
    """A paired dict as stats.paired_comparison writes it, on N examples."""
    p = mcnemar_exact(ref_only, variant_only)
    diff = (variant_only - ref_only) / N
    verdict = "no clear difference" if p >= 0.05 else "better" if variant_only > ref_only else "worse"
    return {"n": N, "ref_accuracy": ref_accuracy, "accuracy": ref_accuracy + diff, "diff": diff, "lo": lo, "hi": hi,
            "ref_only": ref_only, "variant_only": variant_only, "p": p, "verdict": verdict}


PAIRED = {"kd": comparison(6, 22, 0.70, 0.03, 0.13),           # better, p ~ 0.004
          "kd_att": comparison(10, 14, 0.70, -0.03, 0.07)}     # no clear difference
TEACHER_WARNINGS = prediction_warnings("teacher", [0] * N, LABELS, ["rotten", "fresh"], shown_as="teacher")


def summary(**over) -> dict:
    s = {"status": "done", "error": None, "variants": ["baseline", "kd", "kd_att"], "reference": "baseline",
         "accuracy": {"teacher": 0.5, "baseline": 0.70, "kd": 0.78, "kd_att": 0.72}, "test_size": N,
         "divergence": {"metric": "js", "epochs": [0, 1], "baseline": [0.3, 0.2], "kd": [0.3, 0.1],
                        "kd_att": [0.3, 0.05]},
         "params": {"teacher": 22_000_000, "baseline": 1_000_000, "kd": 1_000_000, "kd_att": 1_000_000},
         "size_bytes": {"teacher": 90_000_000, "baseline": 4_000_000, "kd": 4_000_000, "kd_att": 4_000_000},
         "latency_ms": {"teacher": 10.0, "baseline": 1.0, "kd": 1.0, "kd_att": 1.0}, "device": "cpu",
         "majority_rate": 0.5, "warnings": TEACHER_WARNINGS, "paired": PAIRED, "notices": [NOTICE]}
    s.update(over)
    return s


OLD_KEYS = ("majority_rate", "warnings", "paired", "notices")


def old_summary() -> dict:
    """A summary written before paired statistics and warnings existed."""
    return {k: v for k, v in summary().items() if k not in OLD_KEYS}


@pytest.fixture
def hand_store(tmp_path, monkeypatch):
    """A run store with one finished run whose files are written by hand; the app reads it."""
    store = RunStore(tmp_path / "runs")

    def make(s: dict, run_id: str = "hand-made") -> str:
        run = store.create({"name": "hand made", "data": {"source": "rotten_tomatoes"}}, run_id=run_id,
                           status="done")
        for epoch in (0, 1):
            for v in s["variants"]:
                run.append_metrics({"epoch": epoch, "student": v, "val_accuracy": 0.6, "js_mean": 0.2,
                                    "train_loss": {"total": 1.0}})
        run.write_json("summary.json", s)
        run.update_status(status="done", ended="2025-01-01T00:00:00Z")
        return run_id

    monkeypatch.setenv("ADS_RUNS_DIR", str(store.root))
    return store, make


def page(name: str, query: dict | None = None, timeout: float = 30) -> AppTest:
    return open_page(VIEWS / f"{name}.py", query, default_timeout=timeout)


# ---- words --------------------------------------------------------------------------------------------
def test_paired_sentence_better_worse_and_no_clear_difference():
    better = paired_sentence(PAIRED["kd"], "kd", "baseline")
    assert better.startswith("**kd beat the baseline student**: 78.0% vs 70.0%")
    assert "+8.0 points (paired 95% interval +3.0 to +13.0; McNemar p = 0.004)" in better
    assert "the baseline student alone was right on 6 examples, kd alone on 22" in better
    assert "sweep" not in better

    worse = paired_sentence(comparison(22, 6, 0.78, -0.13, -0.03), "kd", "baseline")
    assert worse.startswith("**The baseline student beat kd**") and "-8.0 points" in worse
    assert "alone was right on 22 examples, kd alone on 6" in worse

    unclear = paired_sentence(PAIRED["kd_att"], "kd_att", "baseline")
    assert unclear.startswith("**No clear difference** between kd_att and the baseline student on 200 examples")
    assert f"McNemar p = {PAIRED['kd_att']['p']:.3f}" in unclear and "-3.0 to +7.0" in unclear
    assert "python -m distill_core sweep --seeds 0-4" in unclear
    assert "beat" not in unclear


def test_verdict_follows_p_not_the_sign():
    """A difference of +8 points with p >= 0.05 is no clear difference, even though the variant is ahead."""
    c = comparison(2, 6, 0.70, -0.01, 0.05)
    assert c["p"] >= 0.05
    assert paired_sentence(c, "kd", "baseline").startswith("**No clear difference**")
    assert p_text(0.0001) == "p < 0.001" and p_text(0.0432) == "p = 0.043"


def test_paired_verdicts_rows_and_difference_chart():
    rows = paired_verdicts(PAIRED, summary()["accuracy"], ["baseline", "kd", "kd_att"], "baseline")
    assert [(r["variant"], r["verdict"]) for r in rows] == [("baseline", "reference"), ("kd", "better"),
                                                            ("kd_att", "unclear")]
    lines = verdict_lines(rows, "baseline")
    assert lines == [paired_sentence(PAIRED[v], v, "baseline") for v in ("kd", "kd_att")]
    fig = fig_accuracy.difference_chart(rows, "baseline", ["baseline", "kd", "kd_att"])
    np.testing.assert_allclose([tr.x[0] for tr in fig.data], [8.0, 2.0])
    np.testing.assert_allclose([tr.error_x.array[0] for tr in fig.data], [5.0, 5.0])       # hi - diff
    np.testing.assert_allclose([tr.error_x.arrayminus[0] for tr in fig.data], [5.0, 5.0])  # diff - lo
    assert "paired bootstrap" in fig.layout.title.text and "McNemar" in fig.data[0].hovertemplate


def test_health_lines_put_the_teacher_first():
    lines = health_lines(TEACHER_WARNINGS)
    assert lines[0] == TEACHER_PROBLEM and "teacher.finetune_epochs" in lines[0]
    assert lines[1:] == [w["message"] for w in TEACHER_WARNINGS]
    student = [{"model": "kd", "kind": "below_majority", "message": "The kd reaches 50.0% ..."}]
    assert health_lines(student) == ["The kd reaches 50.0% ..."]
    assert health_lines([]) == []


# ---- command line -------------------------------------------------------------------------------------
def test_print_summary_shows_paired_tests_warnings_and_notes(capsys):
    print_summary("hand-made", summary(), {"status": "done"})
    out = capsys.readouterr().out
    assert "paired with baseline on the same 200 test examples" in out
    kd = next(line for line in out.splitlines() if line.strip().startswith("kd ") and "McNemar" in line)
    assert "+8.0 points (95% interval +3.0 to +13.0), McNemar p = 0.004: better" in kd
    assert "baseline alone right on 6, kd alone on 22" in kd
    att = next(line for line in out.splitlines() if line.strip().startswith("kd_att") and "McNemar" in line)
    assert f"p = {PAIRED['kd_att']['p']:.3f}: no clear difference" in att and "-3.0 to +7.0" in att
    assert "sweep --seeds 0-4" in out
    assert "always answering the most common class scores 50.0%" in out
    for w in TEACHER_WARNINGS:
        assert f"warning: {w['message']}" in out
    assert f"note: {NOTICE}" in out


def test_print_summary_of_an_old_run(capsys):
    print_summary("old", old_summary(), {"status": "done"})
    out = capsys.readouterr().out
    assert "+8.0 points vs baseline" in out
    assert "McNemar" not in out and "warning:" not in out and "most common class" not in out


# ---- accuracy page ------------------------------------------------------------------------------------
def test_accuracy_page_shows_warnings_and_the_paired_verdict(hand_store):
    _, make = hand_store
    make(summary())
    at = page("accuracy")
    warnings = texts(at.warning)
    assert TEACHER_PROBLEM in warnings
    assert all(w["message"] in warnings for w in TEACHER_WARNINGS)
    assert "Always answering the most common class scores **50.0%**" in texts(at.markdown)
    verdict = texts(at.success)          # one variant is better: the verdict box is a success box
    assert paired_sentence(PAIRED["kd"], "kd", "baseline") in verdict
    assert paired_sentence(PAIRED["kd_att"], "kd_att", "baseline") in verdict
    assert "200 test examples" in verdict and "McNemar's exact test" in verdict
    assert "independent" not in verdict
    df = at.dataframe[0].value
    assert list(df["model"]) == ["teacher", "baseline student", "kd", "kd_att"]
    assert list(df[PAIRED_INTERVAL])[2:] == ["+3.0 to +13.0", "-3.0 to +7.0"]
    np.testing.assert_allclose(list(df["McNemar p"])[2:], [PAIRED["kd"]["p"], PAIRED["kd_att"]["p"]])
    assert list(df[DISCORDANT])[2:] == ["22 / 6", "14 / 10"]
    figs = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    diff = figs["accuracy.difference"]["data"]
    np.testing.assert_allclose([t["x"][0] for t in diff], [8.0, 2.0])
    assert [s["y0"] for s in figs["accuracy.accuracy_bars"]["layout"]["shapes"]] == [0.5]
    assert NOTICE in texts(at.info)


def test_accuracy_page_of_an_old_run_keeps_the_independent_reading(hand_store):
    _, make = hand_store
    make(old_summary())
    at = page("accuracy")
    assert not at.warning
    verdict = texts(at.success) + texts(at.info)
    assert "independent" in verdict and "McNemar" not in verdict
    d, lo, hi = difference_interval(0.78, 0.70, N)
    assert f"{lo * 100:+.1f} to {hi * 100:+.1f}" in verdict
    assert "McNemar p" not in at.dataframe[0].value.columns


# ---- new session page, runs overview ------------------------------------------------------------------
def test_new_session_finished_block_warns_and_greys_an_unclear_difference(hand_store):
    _, make = hand_store
    run_id = make(summary())
    at = page("new_session", {"run": run_id}, timeout=90)
    assert TEACHER_PROBLEM in texts(at.warning)
    shown = {m.label: m for m in at.metric}
    assert shown["kd"].delta == "+8.0 points vs baseline"
    assert shown["kd_att"].delta == "+2.0 points vs baseline"
    assert shown["kd"].proto.color != shown["kd_att"].proto.color   # grey: unclear
    assert "No clear difference" in shown["kd_att"].proto.help
    assert "200 test examples" in texts(at.caption)


def test_runs_overview_counts_warnings(hand_store):
    from app import run_list
    store, make = hand_store
    make(summary(), "b-warned")
    make(old_summary(), "a-old")
    rows = {r["run"]: r for r in run_list.overview_rows(store, store.list())}
    assert rows["b-warned"]["warnings"] == f"⚠ {len(TEACHER_WARNINGS)}"
    assert rows["a-old"]["warnings"] is None
