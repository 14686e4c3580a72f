"""The Compression page and its figures: a copy of a run the real engine wrote, compressed from the page's button
(tiny models: about a second), a record shown without recomputing, refusals shown as messages."""
from __future__ import annotations

import copy

import pytest

from app.figures import compression as cc
from app_helpers import VIEWS, figures, open_page, run_app, texts
from distill_core import compress as C
from distill_core.errors import RunStoreError
from distill_core.verdicts import heads_reading
from distill_core.vocab import variant_colors

PAGE = VIEWS / "compression.py"
TIMEOUT = 60


def version(name, kind, size, latency, acc, js, fraction=None, removed=None):
    return {"name": name, "kind": kind, "fraction": fraction, "heads_removed": removed, "size_bytes": size,
            "latency_ms": latency, "test_accuracy": acc, "js": js, "folder": f"compressed/x/{name}"}


def entry(accs: list[float], js=0.1) -> dict:
    """A variant's record entry with a pruning curve at 0, 25 and 50% of 8 heads."""
    curve = [{"fraction": f, "heads_removed": k, "test_accuracy": a,
              "head_mask": [[0 if h < k - layer * 2 and h < 2 else 1 for h in range(4)] for layer in range(2)]}
             for f, k, a in zip((0.0, 0.25, 0.5), (0, 2, 4), accs)]
    return {"versions": [version("fp32", "fp32", 29e6, 4.0, accs[0], js),
                         version("int8_linear", "quantized", 25e6, 5.0, accs[0] - 0.001, js),
                         version("int8_linear_embeddings", "quantized", 7.8e6, 5.0, accs[0] - 0.002, js),
                         version("pruned_25", "pruned", 29e6, 4.0, accs[1], js, 0.25, 2),
                         version("pruned_50", "pruned", 29e6, 4.0, accs[2], js, 0.5, 4)],
            "head_importance": [[0.1, 0.2, 0.5, 0.8], [0.3, 0.3, 0.6, 0.7]], "pruning_curve": curve,
            "family": "text", "weights": "final", "fractions": [0.0, 0.25, 0.5], "notes": ["a note"]}


def record(baseline: list[float], distilled: list[float]) -> dict:
    return {"created": "2026-01-01T00:00:00Z", "device": "cpu", "test_size": 2500, "fractions": [0.0, 0.25, 0.5],
            "variants": {"baseline": entry(baseline, 0.2), "distilled": entry(distilled, 0.06)}}


# ---- figures and sentences ------------------------------------------------------------------------------------------
def test_pruning_figure_draws_one_line_per_variant_on_the_same_axes():
    rec = record([0.72, 0.71, 0.70], [0.75, 0.75, 0.74])
    fig = cc.pruning_figure(rec, ["baseline", "distilled"], "baseline")
    assert [d.name for d in fig.data] == ["baseline student", "distilled student"]
    colors = variant_colors(["baseline", "distilled"])
    assert [d.line.color for d in fig.data] == [colors["baseline"], colors["distilled"]]
    assert fig.data[0].line.dash == "dash" and fig.data[1].line.dash == "solid"
    assert list(fig.data[1].x) == [0.0, 25.0, 50.0] and list(fig.data[1].y) == pytest.approx([75.0, 75.0, 74.0])
    cnn = copy.deepcopy(rec)
    cnn["variants"]["baseline"]["pruning_curve"] = None
    assert [d.name for d in cc.pruning_figure(cnn, ["baseline", "distilled"], "baseline").data] == ["distilled student"]


def test_the_reading_answers_whether_the_distilled_student_needs_fewer_heads():
    fewer = heads_reading(record([0.72, 0.70, 0.66], [0.75, 0.75, 0.74]), ["baseline", "distilled"], "baseline")
    assert fewer.startswith("With 50% of the heads removed")
    assert "the distilled student 74.0% (1.0 points below its 75.0% with all 8 heads; 4 removed)" in fewer
    assert "the baseline student 66.0% (6.0 points below" in fewer
    assert "loses 5.0 points less than the baseline student: it depends on fewer of its heads" in fewer
    more = heads_reading(record([0.72, 0.72, 0.71], [0.75, 0.70, 0.62]), ["baseline", "distilled"], "baseline")
    assert "loses 12.0 points more than the baseline student: it depends on more of its heads, not fewer" in more
    same = heads_reading(record([0.72, 0.72, 0.715], [0.75, 0.75, 0.748]), ["baseline", "distilled"], "baseline")
    assert "about as much as the baseline student" in same and "2,500 test examples" in same
    # a larger share than 50% is read too
    deeper = record([0.72, 0.72, 0.71], [0.75, 0.75, 0.745])
    for name, acc in (("baseline", 0.70), ("distilled", 0.66)):
        curve = deeper["variants"][name]["pruning_curve"]
        curve.append({**curve[-1], "fraction": 0.75, "heads_removed": 6, "test_accuracy": acc})
    both = heads_reading(deeper, ["baseline", "distilled"], "baseline").split("\n\n")
    assert len(both) == 3 and both[0].startswith("With 50% of the heads removed, least important first")
    assert "no sign that it depends on fewer heads" in both[0]
    assert both[1].startswith("With 75% of the heads removed: the baseline student 70.0% (2.0 points below its "
                              "72.0%; 6 removed)")
    assert "loses 7.0 points more than the baseline student: it depends on more of its heads, not fewer" in both[1]
    assert both[2].startswith("One run and 2,500 test examples")
    one = record([0.72, 0.71, 0.7], [0.75, 0.75, 0.74])
    del one["variants"]["baseline"]
    assert heads_reading(one, ["baseline", "distilled"], "baseline") is None


def test_versions_figure_and_table():
    rec = record([0.72, 0.71, 0.70], [0.75, 0.75, 0.74])
    fig = cc.versions_figure(rec, ["baseline", "distilled"], "baseline")
    assert [a.text for a in fig.layout.annotations] == ["size on disk (MB)", "latency per example (ms)",
                                                        "test accuracy (%)", "attention JS to the teacher"]
    assert len(fig.data) == 8 and [d.showlegend for d in fig.data[:4]] == [True, False, False, False]
    assert list(fig.data[0].y) == pytest.approx([29.0, 25.0, 7.8, 29.0, 29.0])
    assert [d.type for d in fig.data[:4]] == ["bar", "bar", "scatter", "scatter"]
    assert list(fig.data[6].y) == pytest.approx([75.0, 74.9, 74.8, 75.0, 74.0])     # distilled's accuracy
    for v in (e for name in rec["variants"] for e in rec["variants"][name]["versions"]):
        v["js"] = None
    assert len(cc.versions_figure(rec).layout.annotations) == 3          # no JS panel when nothing has one
    rows = cc.version_rows(record([0.72, 0.71, 0.70], [0.75, 0.75, 0.74]), ["baseline", "distilled"], "baseline")
    assert len(rows) == 10 and rows[0]["variant"] == "baseline student"
    assert rows[2]["size vs fp32 (%)"] == pytest.approx(100 * 7.8 / 29)
    assert rows[4]["what"] == "50% of heads pruned (4)" and rows[4]["vs fp32 (points)"] == pytest.approx(-2.0)
    assert cc.importance_figure(rec, ["baseline", "distilled"], "baseline").data[0].z.shape == (2, 4)


# ---- the page ------------------------------------------------------------------------------------------------------
def test_the_page_compresses_a_run_on_click(run_copy):
    at = open_page(PAGE)
    assert "has not been compressed yet" in texts(at.info)
    assert not figures(at)
    assert at.selectbox(key="compression.variant").value == "__all__"
    at.button(key="compression.compress").click()
    run_app(at, TIMEOUT)
    rec = C.read_compression(run_copy)
    assert list(rec["variants"]) == ["baseline", "distilled"]
    figs = figures(at)
    assert {"compression.pruning", "compression.versions", "compression.importance"} <= set(figs)
    assert [d["name"] for d in figs["compression.pruning"]["data"]] == ["baseline student", "distilled student"]
    table = at.dataframe[0].value
    assert list(table["version"][:3]) == ["fp32", "int8_linear", "int8_linear_embeddings"]
    assert table["test accuracy (%)"][0] == pytest.approx(100 * run_copy.summary()["accuracy"]["baseline"])
    reading = heads_reading(rec, ["baseline", "distilled"], "baseline")
    assert reading and reading in texts(at.markdown)
    assert "as large as the float32 one and no faster" in texts(at.caption)
    assert at.button(key="compression.compress").label == "Compress again"


def test_a_compressed_run_is_shown_without_recomputing(run_copy, monkeypatch):
    run_copy.write_json(C.FILE, record([0.72, 0.70, 0.66], [0.75, 0.75, 0.74]))

    def refuse(*a, **k):
        raise AssertionError("the page compressed again")

    monkeypatch.setattr(C, "compress_run", refuse)
    at = open_page(PAGE)
    figs = figures(at)
    assert list(figs["compression.pruning"]["data"][1]["y"]) == pytest.approx([75.0, 75.0, 74.0])
    assert "it depends on fewer of its heads" in texts(at.markdown)
    assert "over the heads a version keeps (a pruned version's removed heads are left out)" in texts(at.caption)
    assert not at.error


def test_one_variant_and_an_error_from_the_engine(run_copy, monkeypatch):
    calls = []

    def refused(run, variants=None, *a, **k):
        calls.append(variants)
        raise RunStoreError("run x is failed, not finished: compress it once it is done")

    monkeypatch.setattr(C, "compress_run", refused)
    at = open_page(PAGE, {"run": run_copy.id, "variant": "distilled"})
    assert at.selectbox(key="compression.variant").value == "distilled"
    at.button(key="compression.compress").click()
    run_app(at)
    assert calls == [["distilled"]]
    assert "not finished: compress it once it is done" in texts(at.error)


def test_an_unfinished_run_is_not_offered(run_copy):
    run_copy.update_status(status="failed", error="boom")
    at = open_page(PAGE)
    assert "can be compressed once it has finished" in texts(at.info)
    assert not [b for b in at.button if b.key == "compression.compress"]
