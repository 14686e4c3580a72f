"""Figure builders of the app (app/charts.py): shapes, axes, tokens, colour scales, and the numbers in captions."""
from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app import charts

ROOT = Path(__file__).resolve().parent.parent
TOKENS = ["[CLS]", "the", "film", "is", "the", "best", "<3", "[SEP]"]


def rows_summing_to_one(rng, *shape):
    x = rng.random(shape).astype(np.float32) ** 3
    return x / x.sum(-1, keepdims=True)


@pytest.fixture
def maps():
    rng = np.random.default_rng(0)
    t = len(TOKENS)
    return rows_summing_to_one(rng, t, t), rows_summing_to_one(rng, t, t)


def heatmaps(fig):
    return [tr for tr in fig.data if tr.type == "heatmap"]


# ---- tokens -------------------------------------------------------------------------------------------
def test_axis_labels_keep_repeated_tokens_apart_and_read_back():
    labels = charts.axis_labels(TOKENS)
    assert len(set(labels)) == len(TOKENS)                     # two "the" stay two categories
    assert [charts.plain_label(x) for x in labels] == TOKENS
    assert "<" not in labels[TOKENS.index("<3")]                # escaped: plotly would read it as markup


# ---- triptych -----------------------------------------------------------------------------------------
def test_triptych_panels_tokens_and_difference(maps):
    teacher, student = maps
    fig = charts.heatmap_triptych(teacher, student, TOKENS)
    hm = heatmaps(fig)
    assert len(hm) == 3
    for tr in hm:
        assert [charts.plain_label(x) for x in tr.x] == TOKENS   # keys along x
        assert [charts.plain_label(y) for y in tr.y] == TOKENS   # queries along y
        assert np.asarray(tr.z).shape == (len(TOKENS), len(TOKENS))
    np.testing.assert_allclose(hm[0].z, teacher)
    np.testing.assert_allclose(hm[1].z, student)
    np.testing.assert_allclose(hm[2].z, student - teacher, atol=1e-7)
    # three separate panels side by side, first query at the top
    assert len({tr.xaxis for tr in hm}) == 3
    assert fig.layout.yaxis.autorange == "reversed"
    assert fig.layout.xaxis.domain[1] <= fig.layout.xaxis2.domain[0] < fig.layout.xaxis3.domain[0]


def test_triptych_colour_scales(maps):
    teacher, student = maps
    teacher = teacher * 0.5                                     # make the student hold the larger weight
    fig = charts.heatmap_triptych(teacher, student, TOKENS)
    hm = heatmaps(fig)
    # teacher and student share one scale from 0 to the larger maximum
    assert hm[0].coloraxis == hm[1].coloraxis == "coloraxis"
    assert fig.layout.coloraxis.cmin == 0
    assert fig.layout.coloraxis.cmax == pytest.approx(max(teacher.max(), student.max()))
    # the difference has its own diverging scale, symmetric around 0
    assert hm[2].coloraxis == "coloraxis2"
    ca2 = fig.layout.coloraxis2
    assert ca2.cmid == 0 and ca2.cmin == pytest.approx(-ca2.cmax)
    assert ca2.cmax == pytest.approx(np.abs(student - teacher).max())
    assert fig.layout.coloraxis.colorscale != ca2.colorscale


def test_square_root_colour_scale_keeps_the_values(maps):
    linear = charts.heatmap_triptych(*maps, TOKENS)
    sqrt = charts.heatmap_triptych(*maps, TOKENS, gamma=0.5)
    for a, b in zip(heatmaps(linear), heatmaps(sqrt)):
        np.testing.assert_array_equal(a.z, b.z)
    assert sqrt.layout.coloraxis.cmax == linear.layout.coloraxis.cmax
    assert sqrt.layout.coloraxis.colorscale != linear.layout.coloraxis.colorscale
    # a weight of a quarter of the range gets the colour that sits halfway along the linear scale
    stops = charts.map_colorscale(0.5)
    quarter = next(c for x, c in stops if abs(x - 0.25) < 1e-9)
    import plotly.colors
    assert quarter == plotly.colors.sample_colorscale(charts.MAP_SCALE, [0.5])[0]


def test_triptych_hover_shows_query_key_and_exact_weight(maps):
    fig = charts.heatmap_triptych(*maps, TOKENS)
    for tr in heatmaps(fig):
        assert "query" in tr.hovertemplate and "key" in tr.hovertemplate
        assert "%{z:.4f}" in tr.hovertemplate
    assert not fig.layout.annotations or len(fig.layout.annotations) <= 3   # panel titles only, no cell labels


def test_triptych_rejects_maps_of_another_text(maps):
    teacher, student = maps
    with pytest.raises(ValueError):
        charts.heatmap_triptych(teacher, student, TOKENS[:-1])
    with pytest.raises(ValueError):
        charts.heatmap_triptych(teacher[:, :-1], student, TOKENS)


# ---- small multiples ----------------------------------------------------------------------------------
def test_head_grid_one_layer(maps):
    rng = np.random.default_rng(1)
    layer = rows_summing_to_one(rng, 12, len(TOKENS), len(TOKENS))
    fig = charts.head_grid(layer, TOKENS, "teacher layer 3", highlight=[3, 4, 5])
    hm = heatmaps(fig)
    assert len(hm) == 12
    assert {tr.coloraxis for tr in hm} == {"coloraxis"}              # one scale for all heads
    assert fig.layout.coloraxis.cmin == 0
    assert fig.layout.coloraxis.cmax == pytest.approx(layer.max())
    for h, tr in enumerate(hm):
        np.testing.assert_allclose(tr.z, layer[h])
    assert len({tr.xaxis for tr in hm}) == 12                         # one panel per head
    assert len(fig.layout.shapes) == 3                               # the highlighted heads
    assert [a.text for a in fig.layout.annotations][:2] == ["head 0", "head 1"]


def test_head_grid_6x12_builds_fast():
    rng = np.random.default_rng(2)
    t = 40
    maps = rows_summing_to_one(rng, 6, 12, t, t)
    tokens = [f"tok{i}" for i in range(t)]
    charts.head_grid(maps, tokens, "warm-up")
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        fig = charts.head_grid(maps, tokens, "all heads")
        best = min(best, time.perf_counter() - start)
    hm = heatmaps(fig)
    assert len(hm) == 72
    np.testing.assert_allclose(hm[5 * 12 + 11].z, maps[5, 11])        # row = layer, column = head
    assert not any(a.text and a.text.replace(".", "").isdigit() for a in fig.layout.annotations)
    assert best < 0.5, f"a 6 x 12 head grid took {best:.2f}s to build"


def test_head_grid_rejects_wrong_shapes():
    with pytest.raises(ValueError):
        charts.head_grid(np.zeros((4, 4)), ["a"] * 4)
    with pytest.raises(ValueError):
        charts.head_grid(np.zeros((2, 5, 5)), ["a"] * 4)


# ---- divergence ---------------------------------------------------------------------------------------
def records(distilled, baseline):
    """metrics.jsonl-like records from {epoch: (P, H) values} per student, all four metrics the same values."""
    out = []
    for student, per_epoch in (("distilled", distilled), ("baseline", baseline)):
        for epoch, values in per_epoch.items():
            v = np.asarray(values, dtype=float).tolist()
            out.append({"epoch": epoch, "student": student,
                        "attention": {"kl": v, "js": v, "mse": v,
                                      "cosine": (1 - np.asarray(values)).tolist()}})
    return out


RECS = records(
    distilled={0: [[0.2, 0.4], [0.1, 0.1]], 1: [[0.1, 0.2], [0.05, 0.05]], 2: [[0.05, 0.1], [0.05, 0.05]]},
    baseline={0: [[0.2, 0.4], [0.1, 0.1]], 1: [[0.2, 0.4], [0.1, 0.1]], 2: [[0.3, 0.5], [0.1, 0.1]]})


def test_divergence_curves_per_pair_distilled_and_baseline():
    fig = charts.divergence_curves(RECS, "js", labels=["teacher L1 → student L0", "teacher L3 → student L1"])
    assert len(fig.data) == 4                                      # 2 students x 2 pairs
    by = {(tr.legendgroup, tr.xaxis): tr for tr in fig.data}
    np.testing.assert_allclose(by[("distilled", "x")].y, [0.3, 0.15, 0.075])
    np.testing.assert_allclose(by[("baseline", "x")].y, [0.3, 0.3, 0.4])
    np.testing.assert_allclose(by[("distilled", "x2")].y, [0.1, 0.05, 0.05])
    assert list(by[("distilled", "x")].x) == [0, 1, 2]
    assert by[("distilled", "x")].line.dash != by[("baseline", "x")].line.dash
    assert [a.text for a in fig.layout.annotations][:2] == ["teacher L1 → student L0", "teacher L3 → student L1"]


def test_divergence_curves_per_head_adds_a_line_per_head():
    fig = charts.divergence_curves(RECS, "js", per_head=True)
    assert len(fig.data) == 4 + 2 * 2 * 2                          # + students x pairs x heads
    head_lines = [tr for tr in fig.data if "head 1" in tr.name and tr.legendgroup == "baseline" and tr.xaxis == "x"]
    np.testing.assert_allclose(head_lines[0].y, [0.4, 0.4, 0.5])


def test_layer_head_grid():
    values = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    fig = charts.layer_head_grid(values, ["a → b", "c → d"], metric="js")
    (hm,) = fig.data
    np.testing.assert_allclose(hm.z, values)
    assert list(hm.y) == ["a → b", "c → d"] and list(hm.x) == ["head 0", "head 1", "head 2"]
    cos = charts.layer_head_grid(values, ["a → b", "c → d"], metric="cosine").data[0]
    assert cos.colorscale != hm.colorscale                         # red means "far" for both directions
    with pytest.raises(ValueError):
        charts.layer_head_grid(values, ["only one label"])


def test_divergence_reading_is_computed_from_the_records():
    text = charts.divergence_reading(RECS, "js", ["L1 pair", "L3 pair"])
    # distilled mean 0.2 -> 0.0625, baseline 0.2 -> 0.25: 4x closer at the last epoch
    assert "fell from 0.2 to 0.0625" in text
    assert "rose from 0.2 to 0.25" in text
    assert "4× closer" in text and "distilled student's attention" in text
    assert "L1 pair" in text                                     # shrank to 25% vs 50% for the L3 pair
    # the other way round: the baseline is closer
    flipped = records(distilled={0: [[0.2]], 2: [[0.3]]}, baseline={0: [[0.2]], 2: [[0.1]]})
    text = charts.divergence_reading(flipped, "kl")
    assert "baseline's attention is 3× closer" in text and "rose from 0.2 to 0.3" in text
    # cosine: higher is closer
    text = charts.divergence_reading(RECS, "cosine")
    assert "rose from 0.8 to 0.938" in text and "4× closer" in text
    assert "Only epoch 0" in charts.divergence_reading(records({0: [[0.2]]}, {}), "js")
    assert "No Jensen-Shannon" in charts.divergence_reading([], "js")


# ---- accuracy and efficiency --------------------------------------------------------------------------
def test_intervals():
    assert charts.binomial_halfwidth(0.8, 400) == pytest.approx(1.96 * math.sqrt(0.8 * 0.2 / 400))
    d, lo, hi = charts.difference_interval(0.8, 0.7, 400)
    half = 1.96 * math.sqrt(0.8 * 0.2 / 400 + 0.7 * 0.3 / 400)
    assert (d, lo, hi) == pytest.approx((0.1, 0.1 - half, 0.1 + half))


def test_accuracy_bars_skip_missing_and_carry_intervals():
    fig = charts.accuracy_bars({"teacher": 0.9, "baseline": None, "distilled": 0.8}, n=100)
    (bar,) = fig.data
    assert list(bar.x) == ["teacher", "distilled"]
    np.testing.assert_allclose(bar.y, [0.9, 0.8])
    np.testing.assert_allclose(bar.error_y.array, [charts.binomial_halfwidth(0.9, 100),
                                                   charts.binomial_halfwidth(0.8, 100)])
    assert fig.layout.yaxis.range == (0.0, 1.0)                   # no truncated axis


def test_efficiency_bars_units():
    fig = charts.efficiency_bars({"teacher": 22_000_000, "distilled": 7_000_000},
                                 {"teacher": 90_000_000, "distilled": 30_000_000},
                                 {"teacher": 12.0, "distilled": 2.0}, "cpu")
    params, size, latency = fig.data
    np.testing.assert_allclose(params.y, [22.0, 7.0])
    np.testing.assert_allclose(size.y, [90.0, 30.0])
    np.testing.assert_allclose(latency.y, [12.0, 2.0])
    assert "cpu" in fig.layout.annotations[2].text


# ---- attributions -------------------------------------------------------------------------------------
def test_attribution_bars():
    t = np.array([0.0, 0.5, -1.0, 0.2, 0.1, 2.0, 0.0, 0.0])
    s = np.array([0.0, -0.1, 0.3, 0.0, 0.2, 0.1, 0.05, 0.0])
    fig = charts.attribution_bars(TOKENS, t, s, "distilled student")
    left, right = fig.data
    assert [charts.plain_label(y) for y in left.y] == TOKENS
    np.testing.assert_allclose(left.x, t / 2.0)                   # scaled to max |score| = 1
    np.testing.assert_allclose(right.x, s / 0.3)
    assert left.marker.color[2] != left.marker.color[1]          # sign shows in the colour
    assert [a.text for a in fig.layout.annotations] == ["teacher", "distilled student"]
    raw = charts.attribution_bars(TOKENS, t, s, normalize=False)
    np.testing.assert_allclose(raw.data[0].x, t)
    with pytest.raises(ValueError):
        charts.attribution_bars(TOKENS, t[:-1], s)


def test_attribution_reading_follows_the_numbers():
    split = charts.attribution_reading("distilled", {"distilled": (0.10, 0.99), "baseline": (0.19, 0.43)})
    assert "ρ = 0.10" in split and "agrees 0.99" in split
    assert "distilled student has the closer attention but the baseline student the closer attributions" in split
    both = charts.attribution_reading("baseline", {"distilled": (0.8, 0.9), "baseline": (0.3, 0.5)})
    assert "ρ = 0.30" in both and "distilled student is closer on both counts" in both
    tie = charts.attribution_reading("distilled", {"distilled": (0.5, 0.9), "baseline": (0.5, 0.9)})
    assert "about as close to the teacher on both counts" in tie
    alone = charts.attribution_reading("distilled", {"distilled": (float("nan"), 0.7)})
    assert "ρ = undefined" in alone and "baseline" not in alone


def test_charts_module_does_not_import_streamlit():
    code = "import sys, app.charts; sys.exit('streamlit' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
