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
from distill_core.vocab import variant_colors

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
def records(*order, **per_student):
    """metrics.jsonl-like records from {epoch: (P, H) values} per student, all four metrics the same values."""
    out = []
    for student, per_epoch in per_student.items():
        for epoch, values in per_epoch.items():
            v = np.asarray(values, dtype=float).tolist()
            out.append({"epoch": epoch, "student": student,
                        "attention": {"kl": v, "js": v, "mse": v,
                                      "cosine": (1 - np.asarray(values)).tolist()}})
    return out


RECS = records(
    distilled={0: [[0.2, 0.4], [0.1, 0.1]], 1: [[0.1, 0.2], [0.05, 0.05]], 2: [[0.05, 0.1], [0.05, 0.05]]},
    baseline={0: [[0.2, 0.4], [0.1, 0.1]], 1: [[0.2, 0.4], [0.1, 0.1]], 2: [[0.3, 0.5], [0.1, 0.1]]})
TWO = dict(variants=["baseline", "distilled"], reference="baseline")
# four variants: kd moves away from the teacher, the two attention variants towards it
FOUR_RECS = records(
    baseline={0: [[0.2, 0.2]], 2: [[0.2, 0.2]]},
    kd={0: [[0.2, 0.2]], 2: [[0.3, 0.3]]},
    kd_att_kl={0: [[0.2, 0.2]], 2: [[0.05, 0.05]]},
    kd_att_mse={0: [[0.2, 0.2]], 2: [[0.1, 0.1]]})
FOUR = dict(variants=["baseline", "kd", "kd_att_kl", "kd_att_mse"], reference="baseline")


def test_divergence_curves_per_pair_distilled_and_baseline():
    fig = charts.divergence_curves(RECS, "js", labels=["teacher L1 → student L0", "teacher L3 → student L1"], **TWO)
    assert len(fig.data) == 4                                      # 2 students x 2 pairs
    by = {(tr.legendgroup, tr.xaxis): tr for tr in fig.data}
    np.testing.assert_allclose(by[("distilled", "x")].y, [0.3, 0.15, 0.075])
    np.testing.assert_allclose(by[("baseline", "x")].y, [0.3, 0.3, 0.4])
    np.testing.assert_allclose(by[("distilled", "x2")].y, [0.1, 0.05, 0.05])
    assert list(by[("distilled", "x")].x) == [0, 1, 2]
    assert by[("baseline", "x")].line.dash == charts.REFERENCE_DASH and by[("distilled", "x")].line.dash == "solid"
    assert [a.text for a in fig.layout.annotations][:2] == ["teacher L1 → student L0", "teacher L3 → student L1"]


def test_divergence_curves_draw_every_variant_in_its_colour():
    fig = charts.divergence_curves(FOUR_RECS, "js", **FOUR)
    colors = variant_colors(FOUR["variants"])
    assert [tr.legendgroup for tr in fig.data] == FOUR["variants"]      # one pair: one line each, one axes
    assert {tr.line.color for tr in fig.data} == {colors[v] for v in FOUR["variants"]}
    assert all(tr.line.color == colors[tr.legendgroup] for tr in fig.data)
    assert colors["baseline"] == "#f59e0b"                              # the same colour as on every page
    np.testing.assert_allclose(fig.data[2].y, [0.2, 0.05])


def test_divergence_curves_per_head_adds_a_line_per_head():
    fig = charts.divergence_curves(RECS, "js", per_head=True, **TWO)
    assert len(fig.data) == 4 + 2 * 2 * 2                          # + students x pairs x heads
    head_lines = [tr for tr in fig.data if "head 1" in tr.name and tr.legendgroup == "baseline" and tr.xaxis == "x"]
    np.testing.assert_allclose(head_lines[0].y, [0.4, 0.4, 0.5])


def test_variant_grids_share_one_colour_scale():
    grids = {"baseline": np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]),
             "kd": np.array([[0.7, 0.2, 0.3], [0.1, 0.0, 0.6]])}
    fig = charts.variant_grids(grids, ["a → b", "c → d"], metric="js", variants=["baseline", "kd"],
                               reference="baseline")
    base, kd = fig.data
    np.testing.assert_allclose(base.z, grids["baseline"])
    np.testing.assert_allclose(kd.z, grids["kd"])
    assert base.coloraxis == kd.coloraxis == "coloraxis"
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (0.0, 0.7)
    assert list(base.y) == ["a → b", "c → d"] and list(base.x) == ["head 0", "head 1", "head 2"]
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["<b>baseline student</b>", "<b>kd</b>"]
    assert [a.font.color for a in fig.layout.annotations] == [variant_colors(["baseline", "kd"])[v]
                                                              for v in ("baseline", "kd")]
    cos = charts.variant_grids(grids, ["a → b", "c → d"], metric="cosine")
    assert cos.layout.coloraxis.colorscale != fig.layout.coloraxis.colorscale    # red means "far" either way
    with pytest.raises(ValueError):
        charts.variant_grids(grids, ["only one label"])


def test_variant_grids_wrap_six_variants_into_rows_that_do_not_overlap():
    names = [f"v{k}" for k in range(6)]
    fig = charts.variant_grids({n: np.full((3, 4), k / 10) for k, n in enumerate(names)}, ["p0", "p1", "p2"],
                               variants=names)
    assert len(fig.data) == 6
    ys = sorted({tuple(fig.layout[f"yaxis{'' if k == 0 else k + 1}"].domain) for k in range(6)}, reverse=True)
    assert len(ys) == 2 and ys[0][0] > ys[1][1]                     # two rows, the first above the second
    four = charts.variant_grids({n: np.zeros((3, 4)) for n in names[:4]}, ["p0", "p1", "p2"])
    assert len({tuple(four.layout[f"yaxis{'' if k == 0 else k + 1}"].domain) for k in range(4)}) == 1   # one row


def test_divergence_reading_is_computed_from_the_records():
    text = charts.divergence_reading(RECS, "js", ["L1 pair", "L3 pair"], **TWO)
    # distilled mean 0.2 -> 0.0625, baseline 0.2 -> 0.25: 4x closer at the last epoch
    assert "fell from 0.2 to 0.0625" in text
    assert "rose from 0.2 to 0.25" in text
    assert "distilled student's attention is 4× closer" in text
    assert "L1 pair" in text                                     # shrank to 25% vs 50% for the L3 pair
    # the other way round: the baseline is closer, and the reading says so plainly
    flipped = records(distilled={0: [[0.2]], 2: [[0.3]]}, baseline={0: [[0.2]], 2: [[0.1]]})
    text = charts.divergence_reading(flipped, "kl", **TWO)
    assert "is not closer to the teacher's than the baseline student's" in text
    assert "3× closer" in text and "rose from 0.2 to 0.3" in text
    # cosine: higher is closer
    text = charts.divergence_reading(RECS, "cosine", **TWO)
    assert "rose from 0.8 to 0.938" in text and "4× closer" in text
    assert "Only epoch 0" in charts.divergence_reading(records(distilled={0: [[0.2]]}), "js")
    assert "No Jensen-Shannon" in charts.divergence_reading([], "js")


def test_divergence_reading_compares_every_variant_with_the_reference():
    text = charts.divergence_reading(FOUR_RECS, "js", **FOUR)
    assert "2 of 3 variants attend more like the teacher than the baseline student" in text
    assert "kd_att_kl (4× closer)" in text and "kd_att_mse (2× closer)" in text
    assert "Not closer to the teacher than the baseline student: kd (the baseline student's is 1.5× closer)" in text
    assert "kd rose from 0.2 to 0.3" in text and "baseline student stayed at 0.2" in text
    alone = charts.divergence_reading(FOUR_RECS, "js", variants=FOUR["variants"], reference=None)
    assert "no labels-only reference" in alone and "closest to the teacher's is variant kd_att_kl's" in alone


# ---- accuracy and efficiency --------------------------------------------------------------------------
def test_intervals():
    assert charts.binomial_halfwidth(0.8, 400) == pytest.approx(1.96 * math.sqrt(0.8 * 0.2 / 400))
    d, lo, hi = charts.difference_interval(0.8, 0.7, 400)
    half = 1.96 * math.sqrt(0.8 * 0.2 / 400 + 0.7 * 0.3 / 400)
    assert (d, lo, hi) == pytest.approx((0.1, 0.1 - half, 0.1 + half))


def test_accuracy_bars_skip_missing_and_carry_intervals():
    fig = charts.accuracy_bars({"teacher": 0.9, "baseline": None, "distilled": 0.8}, n=100)
    (bar,) = fig.data
    assert list(bar.x) == ["teacher", "distilled student"]
    np.testing.assert_allclose(bar.y, [0.9, 0.8])
    np.testing.assert_allclose(bar.error_y.array, [charts.binomial_halfwidth(0.9, 100),
                                                   charts.binomial_halfwidth(0.8, 100)])
    assert fig.layout.yaxis.range == (0.0, 1.0)                   # no truncated axis
    # the colours are those of the run's variants, even when one of them has no accuracy
    assert list(bar.marker.color) == [variant_colors(["baseline", "distilled"])[m] for m in ("teacher", "distilled")]


def test_accuracy_bars_every_variant():
    acc = {"teacher": 0.9, "baseline": 0.7, "kd": 0.75, "kd_att_kl": 0.8, "kd_att_mse": 0.6}
    (bar,) = charts.accuracy_bars(acc, 200, variants=FOUR["variants"], reference="baseline").data
    assert list(bar.x) == ["teacher", "baseline student", "kd", "kd_att_kl", "kd_att_mse"]
    np.testing.assert_allclose(bar.y, list(acc.values()))


def test_accuracy_verdicts_against_the_reference():
    acc = {"teacher": 0.9, "baseline": 0.70, "kd": 0.72, "kd_att_kl": 0.85, "kd_att_mse": 0.55}
    rows = {r["variant"]: r for r in charts.accuracy_verdicts(acc, 400, FOUR["variants"], "baseline")}
    assert rows["baseline"]["verdict"] == "reference" and rows["baseline"]["diff"] is None
    assert (rows["kd"]["verdict"], rows["kd_att_kl"]["verdict"], rows["kd_att_mse"]["verdict"]) == \
        ("unclear", "better", "worse")
    assert (rows["kd_att_kl"]["diff"], rows["kd_att_kl"]["lo"], rows["kd_att_kl"]["hi"]) == \
        pytest.approx(charts.difference_interval(0.85, 0.70, 400))
    lines = charts.verdict_lines(list(rows.values()), "baseline")
    assert len(lines) == 3
    assert lines[0].startswith("**No clear winner** between kd and the baseline student")
    assert "includes zero" in lines[0]
    d, lo, hi = charts.difference_interval(0.85, 0.70, 400)
    assert "**kd_att_kl beat the baseline student**" in lines[1] and f"{lo * 100:+.1f} to {hi * 100:+.1f}" in lines[1]
    assert "**The baseline student beat kd_att_mse**" in lines[2]
    fig = charts.difference_chart(list(rows.values()), "baseline", FOUR["variants"])
    assert [tr.y[0] for tr in fig.data] == ["kd", "kd_att_kl", "kd_att_mse"]
    np.testing.assert_allclose([tr.x[0] for tr in fig.data], [2.0, 15.0, -15.0])
    # no reference: no verdicts
    none = charts.accuracy_verdicts(acc, 400, ["kd", "kd_att_kl"], None)
    assert {r["verdict"] for r in none} == {"no reference"} and charts.verdict_lines(none, None) == []


def test_efficiency_bars_units():
    fig = charts.efficiency_bars({"teacher": 22_000_000, "distilled": 7_000_000},
                                 {"teacher": 90_000_000, "distilled": 30_000_000},
                                 {"teacher": 12.0, "distilled": 2.0}, "cpu")
    params, size, latency = fig.data
    np.testing.assert_allclose(params.y, [22.0, 7.0])
    np.testing.assert_allclose(size.y, [90.0, 30.0])
    np.testing.assert_allclose(latency.y, [12.0, 2.0])
    assert "cpu" in fig.layout.annotations[2].text


def test_variant_lines_one_line_per_variant():
    recs = [{"epoch": e, "student": v, "val_accuracy": 0.5 + 0.1 * k + 0.01 * e}
            for e in (0, 1) for k, v in enumerate(FOUR["variants"])]
    fig = charts.variant_lines(recs, lambda r: r.get("val_accuracy"), "Validation accuracy", "accuracy", **FOUR,
                               epochs=3)
    assert [tr.name for tr in fig.data] == FOUR["variants"]
    colors = variant_colors(FOUR["variants"])
    assert [tr.line.color for tr in fig.data] == [colors[v] for v in FOUR["variants"]]
    assert fig.data[0].line.dash == charts.REFERENCE_DASH
    np.testing.assert_allclose(fig.data[3].y, [0.8, 0.81])
    assert fig.layout.xaxis.range == (-0.2, 3.2)


def test_compare_two_runs_keeps_each_variant_colour():
    a = {"variants": ["baseline", "distilled"], "accuracy": {"teacher": 0.9, "baseline": 0.7, "distilled": 0.8},
         "divergence": {"metric": "js", "epochs": [0, 1], "baseline": [0.2, 0.2], "distilled": [0.2, 0.1]}}
    b = {"variants": FOUR["variants"], "accuracy": {"teacher": 0.9, "baseline": 0.6, "kd": 0.5},
         "divergence": {"metric": "js", "epochs": [0, 1], **{v: [0.2, 0.3] for v in FOUR["variants"]}}}
    colors = charts.compare_colors([a, b])
    assert {v: colors[v] for v in a["variants"]} == {v: c for v, c in variant_colors(a["variants"]).items()
                                                     if v != "teacher"}
    assert len({colors[v] for v in ("baseline", "distilled", "kd", "kd_att_kl", "kd_att_mse")}) == 5
    div = charts.compare_runs_divergence([("A", a), ("B", b)])
    lines = {tr.name: tr for tr in div.data}
    assert set(lines) == {"A baseline", "A distilled", *(f"B {v}" for v in FOUR["variants"])}
    assert lines["A baseline"].line.dash == "solid" and lines["B baseline"].line.dash == "dot"
    assert lines["A baseline"].line.color == lines["B baseline"].line.color
    np.testing.assert_allclose(lines["A distilled"].y, [0.2, 0.1])
    acc = charts.compare_runs_accuracy([("A", a), ("B", b)])
    bars = {tr.name: tr for tr in acc.data}
    assert list(bars["A"].x) == ["teacher", "baseline", "distilled", "kd", "kd_att_kl", "kd_att_mse"]
    assert list(bars["B"].y) == [90.0, 60.0, None, 50.0, None, None]


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
    split = charts.attribution_reading("distilled", {"distilled": (0.10, 0.99), "baseline": (0.19, 0.43)}, "baseline")
    assert "ρ = 0.10" in split and "agrees 0.99" in split
    assert "distilled student has the closer attention but the baseline student the closer attributions" in split
    both = charts.attribution_reading("kd", {"kd": (0.8, 0.9), "baseline": (0.3, 0.5)}, "baseline")
    assert "ρ = 0.80" in both and "Variant kd is closer on both counts" in both
    tie = charts.attribution_reading("distilled", {"distilled": (0.5, 0.9), "baseline": (0.5, 0.9)}, "baseline")
    assert "about as close to the teacher on both counts" in tie
    alone = charts.attribution_reading("distilled", {"distilled": (float("nan"), 0.7)}, None)
    assert "ρ = undefined" in alone and "baseline" not in alone
    # the reference itself: which variants are closer than it
    ref = charts.attribution_reading("baseline", {"baseline": (0.3, 0.5), "kd": (0.8, 0.4), "kd_att_kl": (0.1, 0.9)},
                                     "baseline")
    assert "closer attention than the baseline student: kd_att_kl; with closer attributions: kd." in ref


def test_charts_module_does_not_import_streamlit():
    code = "import sys, app.charts; sys.exit('streamlit' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
