"""Figure builders of the app (app/figures/) and the verdicts worded beside them (distill_core/verdicts.py): shapes,
axes, tokens, colour scales, and the numbers in captions."""
from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app.figures import accuracy as fig_accuracy
from app.figures import attribution as fig_attribution
from app.figures import base as fig_base
from app.figures import compare as fig_compare
from app.figures import curves as fig_curves
from app.figures import divergence as fig_divergence
from app.figures import maps as fig_maps
from distill_core.stats import binomial_halfwidth, difference_interval
from distill_core.verdicts import (accuracy_verdicts, attribution_reading, best_epoch_text, divergence_reading,
                                   verdict_lines)
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
    labels = fig_base.axis_labels(TOKENS)
    assert len(set(labels)) == len(TOKENS)                     # two "the" stay two categories
    assert [fig_base.plain_label(x) for x in labels] == TOKENS
    assert "<" not in labels[TOKENS.index("<3")]                # escaped: plotly would read it as markup


# ---- triptych -----------------------------------------------------------------------------------------
def test_triptych_panels_tokens_and_difference(maps):
    teacher, student = maps
    fig = fig_maps.heatmap_triptych(teacher, student, TOKENS)
    hm = heatmaps(fig)
    assert len(hm) == 3
    for tr in hm:
        assert [fig_base.plain_label(x) for x in tr.x] == TOKENS   # keys along x
        assert [fig_base.plain_label(y) for y in tr.y] == TOKENS   # queries along y
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
    fig = fig_maps.heatmap_triptych(teacher, student, TOKENS)
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
    linear = fig_maps.heatmap_triptych(*maps, TOKENS)
    sqrt = fig_maps.heatmap_triptych(*maps, TOKENS, gamma=0.5)
    for a, b in zip(heatmaps(linear), heatmaps(sqrt)):
        np.testing.assert_array_equal(a.z, b.z)
    assert sqrt.layout.coloraxis.cmax == linear.layout.coloraxis.cmax
    assert sqrt.layout.coloraxis.colorscale != linear.layout.coloraxis.colorscale
    # a weight of a quarter of the range gets the colour that sits halfway along the linear scale
    stops = fig_base.map_colorscale(0.5)
    quarter = next(c for x, c in stops if abs(x - 0.25) < 1e-9)
    import plotly.colors
    assert quarter == plotly.colors.sample_colorscale(fig_base.MAP_SCALE, [0.5])[0]


def test_triptych_hover_shows_query_key_and_exact_weight(maps):
    fig = fig_maps.heatmap_triptych(*maps, TOKENS)
    for tr in heatmaps(fig):
        assert "query" in tr.hovertemplate and "key" in tr.hovertemplate
        assert "%{z:.4f}" in tr.hovertemplate
    assert not fig.layout.annotations or len(fig.layout.annotations) <= 3   # panel titles only, no cell labels


def test_triptych_rejects_maps_of_another_text(maps):
    teacher, student = maps
    with pytest.raises(ValueError):
        fig_maps.heatmap_triptych(teacher, student, TOKENS[:-1])
    with pytest.raises(ValueError):
        fig_maps.heatmap_triptych(teacher[:, :-1], student, TOKENS)


# ---- small multiples ----------------------------------------------------------------------------------
def test_head_grid_one_layer(maps):
    rng = np.random.default_rng(1)
    layer = rows_summing_to_one(rng, 12, len(TOKENS), len(TOKENS))
    fig = fig_maps.head_grid(layer, TOKENS, "teacher layer 3", highlight=[3, 4, 5])
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
    fig_maps.head_grid(maps, tokens, "warm-up")
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        fig = fig_maps.head_grid(maps, tokens, "all heads")
        best = min(best, time.perf_counter() - start)
    hm = heatmaps(fig)
    assert len(hm) == 72
    np.testing.assert_allclose(hm[5 * 12 + 11].z, maps[5, 11])        # row = layer, column = head
    assert not any(a.text and a.text.replace(".", "").isdigit() for a in fig.layout.annotations)
    assert best < 0.5, f"a 6 x 12 head grid took {best:.2f}s to build"


def test_head_grid_rejects_wrong_shapes():
    with pytest.raises(ValueError):
        fig_maps.head_grid(np.zeros((4, 4)), ["a"] * 4)
    with pytest.raises(ValueError):
        fig_maps.head_grid(np.zeros((2, 5, 5)), ["a"] * 4)


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
    labels = ["teacher L1 → student L0", "teacher L3 → student L1"]
    fig = fig_divergence.divergence_curves(RECS, "js", labels=labels, **TWO)
    assert len(fig.data) == 4                                      # 2 students x 2 pairs
    by = {(tr.legendgroup, tr.xaxis): tr for tr in fig.data}
    np.testing.assert_allclose(by[("distilled", "x")].y, [0.3, 0.15, 0.075])
    np.testing.assert_allclose(by[("baseline", "x")].y, [0.3, 0.3, 0.4])
    np.testing.assert_allclose(by[("distilled", "x2")].y, [0.1, 0.05, 0.05])
    assert list(by[("distilled", "x")].x) == [0, 1, 2]
    assert by[("baseline", "x")].line.dash == fig_base.REFERENCE_DASH and by[("distilled", "x")].line.dash == "solid"
    assert [a.text for a in fig.layout.annotations][:2] == ["teacher L1 → student L0", "teacher L3 → student L1"]


def test_divergence_curves_draw_every_variant_in_its_colour():
    fig = fig_divergence.divergence_curves(FOUR_RECS, "js", **FOUR)
    colors = variant_colors(FOUR["variants"])
    assert [tr.legendgroup for tr in fig.data] == FOUR["variants"]      # one pair: one line each, one axes
    assert {tr.line.color for tr in fig.data} == {colors[v] for v in FOUR["variants"]}
    assert all(tr.line.color == colors[tr.legendgroup] for tr in fig.data)
    assert colors["baseline"] == "#f59e0b"                              # the same colour as on every page
    np.testing.assert_allclose(fig.data[2].y, [0.2, 0.05])


def test_divergence_curves_per_head_adds_a_line_per_head():
    fig = fig_divergence.divergence_curves(RECS, "js", per_head=True, **TWO)
    assert len(fig.data) == 4 + 2 * 2 * 2                          # + students x pairs x heads
    head_lines = [tr for tr in fig.data if "head 1" in tr.name and tr.legendgroup == "baseline" and tr.xaxis == "x"]
    np.testing.assert_allclose(head_lines[0].y, [0.4, 0.4, 0.5])


def test_variant_grids_share_one_colour_scale():
    grids = {"baseline": np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]),
             "kd": np.array([[0.7, 0.2, 0.3], [0.1, 0.0, 0.6]])}
    fig = fig_divergence.variant_grids(grids, ["a → b", "c → d"], metric="js", variants=["baseline", "kd"],
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
    cos = fig_divergence.variant_grids(grids, ["a → b", "c → d"], metric="cosine")
    assert cos.layout.coloraxis.colorscale != fig.layout.coloraxis.colorscale    # red means "far" either way
    with pytest.raises(ValueError):
        fig_divergence.variant_grids(grids, ["only one label"])


def test_variant_grids_wrap_six_variants_into_rows_that_do_not_overlap():
    names = [f"v{k}" for k in range(6)]
    fig = fig_divergence.variant_grids({n: np.full((3, 4), k / 10) for k, n in enumerate(names)}, ["p0", "p1", "p2"],
                                       variants=names)
    assert len(fig.data) == 6
    ys = sorted({tuple(fig.layout[f"yaxis{'' if k == 0 else k + 1}"].domain) for k in range(6)}, reverse=True)
    assert len(ys) == 2 and ys[0][0] > ys[1][1]                     # two rows, the first above the second
    four = fig_divergence.variant_grids({n: np.zeros((3, 4)) for n in names[:4]}, ["p0", "p1", "p2"])
    assert len({tuple(four.layout[f"yaxis{'' if k == 0 else k + 1}"].domain) for k in range(4)}) == 1   # one row


def test_divergence_reading_is_computed_from_the_records():
    text = divergence_reading(RECS, "js", ["L1 pair", "L3 pair"], **TWO)
    # distilled mean 0.2 -> 0.0625, baseline 0.2 -> 0.25: 4x closer at the last epoch
    assert "fell from 0.2 to 0.0625" in text
    assert "rose from 0.2 to 0.25" in text
    assert "distilled student's attention is 4× closer" in text
    assert "L1 pair" in text                                     # shrank to 25% vs 50% for the L3 pair
    # the other way round: the baseline is closer, and the reading says so plainly
    flipped = records(distilled={0: [[0.2]], 2: [[0.3]]}, baseline={0: [[0.2]], 2: [[0.1]]})
    text = divergence_reading(flipped, "kl", **TWO)
    assert "is not closer to the teacher's than the baseline student's" in text
    assert "3× closer" in text and "rose from 0.2 to 0.3" in text
    # cosine: higher is closer, and a ratio of similarities means nothing: the reading gives their difference
    text = divergence_reading(RECS, "cosine", **TWO)
    assert "rose from 0.8 to 0.938" in text and "×" not in text
    assert "closer to the teacher's than the baseline student's (cosine similarity 0.94 vs 0.75, +0.19)" in text
    assert "its cosine similarity rose from 0.70 at epoch 0 to 0.93 (+0.23)" in text   # the pair that moved most
    assert "Only epoch 0" in divergence_reading(records(distilled={0: [[0.2]]}), "js")
    assert "No Jensen-Shannon" in divergence_reading([], "js")


def test_divergence_reading_compares_every_variant_with_the_reference():
    text = divergence_reading(FOUR_RECS, "js", **FOUR)
    assert "2 of 3 variants attend more like the teacher than the baseline student" in text
    assert "kd_att_kl (4× closer)" in text and "kd_att_mse (2× closer)" in text
    assert "Not closer to the teacher than the baseline student: kd (the baseline student's is 1.5× closer)" in text
    assert "kd rose from 0.2 to 0.3" in text and "baseline student stayed at 0.2" in text
    alone = divergence_reading(FOUR_RECS, "js", variants=FOUR["variants"], reference=None)
    assert "no labels-only reference" in alone and "closest to the teacher's is variant kd_att_kl's" in alone


def test_divergence_reading_of_cosine_speaks_in_differences_for_every_variant():
    text = divergence_reading(FOUR_RECS, "cosine", **FOUR)
    assert "×" not in text
    # kd_att_kl: cosine 0.95 against the baseline's 0.8; kd: 0.7
    assert "kd_att_kl (0.95 vs 0.80, +0.15)" in text and "kd (0.70 vs 0.80, -0.10)" in text
    assert "higher = closer" in text


LOSSES = {"baseline": {"ce": 1.0}, "kd": {"ce": 0.5, "logit_kd": 0.5},
          "kd_att_kl": {"ce": 0.5, "logit_kd": 0.5, "attention_kl": 0.1},
          "kd_att_mse": {"ce": 0.5, "logit_kd": 0.5, "attention_mse": 1.0}}


def test_divergence_reading_does_not_credit_the_attention_loss_when_logit_kd_is_on_too():
    both = {"baseline": LOSSES["baseline"], "distilled": {"ce": 0.5, "logit_kd": 0.5, "attention_kl": 1.0}}
    text = divergence_reading(RECS, "js", ["L1 pair", "L3 pair"], **TWO, losses=both)
    assert "cannot credit its closer attention to the attention loss alone" in text
    assert "learning from the teacher's softened outputs can move attention too" in text
    assert "A variant with logit_kd and no attention loss would tell the two apart" in text
    # the losses only add to the reading: without them it is what it was
    assert text.startswith(divergence_reading(RECS, "js", ["L1 pair", "L3 pair"], **TWO))
    # an attention loss as the only teacher loss: the run can credit it
    alone = {"baseline": LOSSES["baseline"], "distilled": {"ce": 0.5, "attention_kl": 1.0}}
    text = divergence_reading(RECS, "js", **TWO, losses=alone)
    assert "only teacher loss is attention_kl, so its closer attention can be credited to that loss" in text
    assert "cannot credit" not in text


def test_divergence_reading_compares_with_the_variant_without_the_attention_loss():
    text = divergence_reading(FOUR_RECS, "js", **FOUR, losses=LOSSES)
    # kd_att_kl 0.05 and kd_att_mse 0.1 against kd's 0.3: same logit_kd, only the attention loss differs
    assert ("Variant kd_att_kl and variant kd both learn from logit_kd; only kd_att_kl adds attention_kl, and at "
            "epoch 2 its attention is closer to the teacher's than kd's (6× closer): that difference is what the "
            "attention loss added.") in text
    assert "only kd_att_mse adds attention_mse" in text and "than kd's (3× closer)" in text
    assert "cannot credit" not in text
    # kd got further than the baseline: nothing to credit to its logit_kd
    assert "kd has no attention loss" not in text
    # the same in cosine similarity: differences, no ratios
    text = divergence_reading(FOUR_RECS, "cosine", **FOUR, losses=LOSSES)
    assert "than kd's (cosine similarity 0.95 vs 0.70, +0.25)" in text and "×" not in text
    # an attention variant whose twin is as close: the attention loss added nothing measurable
    level = records(baseline={0: [[0.2]], 2: [[0.2]]}, kd={0: [[0.2]], 2: [[0.1]]}, kd_att_kl={0: [[0.2]], 2: [[0.1]]})
    text = divergence_reading(level, "js", variants=["baseline", "kd", "kd_att_kl"], reference="baseline",
                              losses=LOSSES)
    assert "the attention loss added nothing measurable on top of logit_kd" in text


def test_divergence_reading_credits_translations_attention_losses_like_the_others():
    recs = records(baseline={0: [[0.3]], 2: [[0.3]]}, word_kd={0: [[0.3]], 2: [[0.25]]},
                   kd_cross={0: [[0.3]], 2: [[0.05]]})
    losses = {"baseline": {"ce": 1.0}, "word_kd": {"ce": 0.5, "logit_kd": 0.5},
              "kd_cross": {"ce": 0.5, "logit_kd": 0.5, "cross_attention_kl": 0.5}}
    text = divergence_reading(recs, "js", variants=list(losses), reference="baseline", losses=losses)
    assert "only kd_cross adds cross_attention_kl" in text and "than word_kd's (5× closer)" in text


def test_divergence_reading_says_the_teacher_outputs_alone_moved_a_variant_without_attention_loss():
    recs = records(baseline={0: [[0.2]], 2: [[0.3]]}, kd={0: [[0.2]], 2: [[0.1]]})
    text = divergence_reading(recs, "js", variants=["baseline", "kd"], reference="baseline", losses=LOSSES)
    assert ("Variant kd has no attention loss: learning from the teacher's softened outputs alone (logit_kd) brought "
            "its attention closer to the teacher's than the baseline student's.") in text


def test_divergence_curves_per_head_lines_are_named_and_hovered_with_pair_and_head():
    labels = ["teacher L1 → student L0", "teacher L3 → student L1"]
    fig = fig_divergence.divergence_curves(RECS, "js", per_head=True, labels=labels, **TWO)
    thin = [tr for tr in fig.data if tr.line.width == 1]
    assert len(thin) == 2 * 2 * 2
    by = {tr.name: tr for tr in thin}
    tr = by["teacher L3 → student L1 · head 1 · distilled student"]
    np.testing.assert_allclose(tr.y, [0.1, 0.05, 0.05])
    assert tr.xaxis == "x2" and tr.legendgroup == "distilled" and tr.showlegend is False
    assert "teacher L3 → student L1 · head 1 · distilled student: %{y:.4g}" in tr.hovertemplate
    assert [list(c) for c in tr.customdata] == [[1, 1]] * 3                     # [pair index, head]
    assert all(t.showlegend is False for t in thin)                             # the legend lists variants only
    assert [t.name for t in fig.data if t.showlegend] == ["baseline student (mean of heads)",
                                                          "distilled student (mean of heads)"]


def test_variant_grids_cells_carry_pair_and_head():
    grids = {"baseline": np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]), "kd": np.zeros((2, 3))}
    fig = fig_divergence.variant_grids(grids, ["a → b", "c → d"], metric="js", variants=["baseline", "kd"],
                                       reference="baseline")
    for tr in fig.data:
        cd = np.asarray(tr.customdata)
        assert cd.shape == (2, 3, 2)
        assert cd[1, 2].tolist() == [1, 2] and cd[0, 1].tolist() == [0, 1]    # [pair index, head] of the cell
        assert "%{y} · %{x}" in tr.hovertemplate and "%{z:.4g}" in tr.hovertemplate
    assert "baseline student: %{z:.4g}" in fig.data[0].hovertemplate


# ---- accuracy and efficiency --------------------------------------------------------------------------
def test_intervals():
    assert binomial_halfwidth(0.8, 400) == pytest.approx(1.96 * math.sqrt(0.8 * 0.2 / 400))
    d, lo, hi = difference_interval(0.8, 0.7, 400)
    half = 1.96 * math.sqrt(0.8 * 0.2 / 400 + 0.7 * 0.3 / 400)
    assert (d, lo, hi) == pytest.approx((0.1, 0.1 - half, 0.1 + half))


def bars_and_lines(fig):
    """The students' bar trace, and the teacher's line (a trace on the overlaid x2 axis) or None."""
    bars = [tr for tr in fig.data if tr.type == "bar"]
    teacher = [tr for tr in fig.data if tr.type == "scatter" and tr.name.startswith("teacher ") and tr.mode == "lines"
               and tr.fill is None]
    return (bars[0] if bars else None), (teacher[0] if teacher else None)


def test_accuracy_bars_skip_missing_and_carry_intervals():
    fig = fig_accuracy.accuracy_bars({"teacher": 0.9, "baseline": None, "distilled": 0.8}, n=100)
    bar, teacher = bars_and_lines(fig)
    assert list(bar.x) == ["distilled student"]                   # students are bars, the teacher a line
    np.testing.assert_allclose(bar.y, [0.8])
    np.testing.assert_allclose(bar.error_y.array, [binomial_halfwidth(0.8, 100)])
    np.testing.assert_allclose(teacher.y, [0.9, 0.9])
    assert teacher.xaxis == "x2" and fig.layout.xaxis2.overlaying == "x"   # across the whole plot
    # the colours are those of the run's variants, even when one of them has no accuracy
    colors = variant_colors(["baseline", "distilled"])
    assert list(bar.marker.color) == [colors["distilled"]] and teacher.line.color == colors["teacher"]
    assert list(fig.layout.xaxis.ticktext) == ["distilled student<br><b>80.0%</b>"]   # each bar's accuracy


def test_accuracy_bars_every_variant():
    acc = {"teacher": 0.9, "baseline": 0.7, "kd": 0.75, "kd_att_kl": 0.8, "kd_att_mse": 0.6}
    bar, teacher = bars_and_lines(fig_accuracy.accuracy_bars(acc, 200, variants=FOUR["variants"], reference="baseline"))
    assert list(bar.x) == ["baseline student", "kd", "kd_att_kl", "kd_att_mse"]
    np.testing.assert_allclose(bar.y, [acc[v] for v in FOUR["variants"]])
    assert teacher.y[0] == 0.9


def test_accuracy_bars_zoom_to_a_close_difference_with_the_reference_lines_inside():
    acc = {"teacher": 0.912, "baseline": 0.800, "kd": 0.813}
    n, majority = 872, 0.72
    fig = fig_accuracy.accuracy_bars(acc, n, variants=["baseline", "kd"], reference="baseline", majority=majority)
    lo, hi = fig.layout.yaxis.range
    assert lo > 0.5                                               # zoomed: 1.3 points no longer vanish
    assert "does not start at 0" in fig.layout.yaxis.title.text
    for a in (0.800, 0.813):                                      # every error bar inside, with a margin
        half = binomial_halfwidth(a, n)
        assert lo < a - half and a + half < hi
    t_half = binomial_halfwidth(0.912, n)
    assert lo < majority < hi and lo < 0.912 - t_half and 0.912 + t_half < hi
    assert [s.y0 for s in fig.layout.shapes] == [majority]        # the majority line
    labels = " ".join(str(a.text) for a in fig.layout.annotations)
    assert "teacher 91.2%" in labels and "most common class: 72%" in labels
    assert fig.layout.yaxis.tickformat == ".0%"
    # a range of a few points gets a decimal on its ticks
    near = fig_accuracy.accuracy_bars({"teacher": 0.81, "baseline": 0.80, "kd": 0.805}, 20000,
                                      variants=["baseline", "kd"])
    assert near.layout.yaxis.tickformat == ".1%" and near.layout.yaxis.range[0] > 0.75
    # accuracies near 0 keep an axis from 0, and then say nothing about it
    low = fig_accuracy.accuracy_bars({"teacher": 0.2, "baseline": 0.05}, 100, variants=["baseline"])
    assert low.layout.yaxis.range[0] == 0 and "does not start" not in low.layout.yaxis.title.text


def test_accuracy_verdicts_against_the_reference():
    acc = {"teacher": 0.9, "baseline": 0.70, "kd": 0.72, "kd_att_kl": 0.85, "kd_att_mse": 0.55}
    rows = {r["variant"]: r for r in accuracy_verdicts(acc, 400, FOUR["variants"], "baseline")}
    assert rows["baseline"]["verdict"] == "reference" and rows["baseline"]["diff"] is None
    assert (rows["kd"]["verdict"], rows["kd_att_kl"]["verdict"], rows["kd_att_mse"]["verdict"]) == \
        ("unclear", "better", "worse")
    assert (rows["kd_att_kl"]["diff"], rows["kd_att_kl"]["lo"], rows["kd_att_kl"]["hi"]) == \
        pytest.approx(difference_interval(0.85, 0.70, 400))
    lines = verdict_lines(list(rows.values()), "baseline")
    assert len(lines) == 3
    assert lines[0].startswith("**No clear winner** between kd and the baseline student")
    assert "includes zero" in lines[0]
    d, lo, hi = difference_interval(0.85, 0.70, 400)
    assert "**kd_att_kl beat the baseline student**" in lines[1] and f"{lo * 100:+.1f} to {hi * 100:+.1f}" in lines[1]
    assert "**The baseline student beat kd_att_mse**" in lines[2]
    fig = fig_accuracy.difference_chart(list(rows.values()), "baseline", FOUR["variants"])
    assert [tr.y[0] for tr in fig.data] == ["kd", "kd_att_kl", "kd_att_mse"]
    np.testing.assert_allclose([tr.x[0] for tr in fig.data], [2.0, 15.0, -15.0])
    # no reference: no verdicts
    none = accuracy_verdicts(acc, 400, ["kd", "kd_att_kl"], None)
    assert {r["verdict"] for r in none} == {"no reference"} and verdict_lines(none, None) == []


def test_efficiency_bars_units():
    fig = fig_accuracy.efficiency_bars({"teacher": 22_000_000, "distilled": 7_000_000},
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
    fig = fig_curves.variant_lines(recs, lambda r: r.get("val_accuracy"), "Validation accuracy", "accuracy", **FOUR,
                                   epochs=3)
    assert [tr.name for tr in fig.data] == FOUR["variants"]
    colors = variant_colors(FOUR["variants"])
    assert [tr.line.color for tr in fig.data] == [colors[v] for v in FOUR["variants"]]
    assert fig.data[0].line.dash == fig_base.REFERENCE_DASH
    np.testing.assert_allclose(fig.data[3].y, [0.8, 0.81])
    assert fig.layout.xaxis.range == (-0.2, 3.2)


def test_variant_lines_keep_the_planned_epochs_when_only_epoch_0_exists():
    recs = [{"epoch": 0, "student": v, "val_accuracy": 0.5, "train_loss": {}} for v in FOUR["variants"]]
    fig = fig_curves.variant_lines(recs, lambda r: r.get("val_accuracy"), "Validation accuracy", "accuracy", **FOUR,
                                   epochs=5)
    assert fig.layout.xaxis.range == (-0.2, 5.2)
    empty = fig_curves.variant_lines(recs, lambda r: r["train_loss"].get("total"), "loss", "loss", **FOUR, epochs=5)
    assert not empty.data and empty.layout.xaxis.range == (-0.2, 5.2) and empty.layout.yaxis.range == (0, 1)
    unknown = fig_curves.variant_lines(recs, lambda r: r.get("val_accuracy"), "acc", "acc", **FOUR)
    assert unknown.layout.xaxis.range == (-0.2, 1.2)


def loss_records(steps_per_epoch: int = 4, epochs: int = 2):
    """metrics.jsonl and train_steps.jsonl records of the four variants: each variant's loss k at step s is
    (index of k's panel + 1) + s / 100 + (variant index) / 10⁶, so every value tells its loss and variant."""
    recs, steps = [], []
    order = fig_curves.loss_order({k for weights in LOSSES.values() for k in weights})
    for i, v in enumerate(FOUR["variants"]):
        names = [k for k, w in LOSSES[v].items() if w > 0]
        recs.append({"epoch": 0, "student": v, "train_loss": {}})
        for s in range(1, steps_per_epoch * epochs + 1):
            losses = {k: order.index(k) + 1 + s / 100 + i / 1e6 for k in names}
            losses["total"] = 100 + sum(LOSSES[v][k] * x for k, x in losses.items())
            steps.append({"step": s, "epoch": s / steps_per_epoch, "student": v, "losses": losses})
        for e in range(1, epochs + 1):
            sel = [r["losses"] for r in steps if r["student"] == v and e - 1 < r["epoch"] <= e]
            recs.append({"epoch": e, "student": v,
                         "train_loss": {k: float(np.mean([x[k] for x in sel])) for k in sel[0]}})
    return recs, steps


def test_loss_components_one_panel_per_loss_never_mixing_losses_or_totals():
    recs, steps = loss_records()
    fig = fig_curves.loss_components(recs, steps, **FOUR, epochs=3)
    titles = [a.text for a in fig.layout.annotations]
    order = ["ce", "logit_kd", "attention_kl", "attention_mse"]           # cross-entropy first
    assert titles[0].startswith("<b>cross-entropy</b>") and "on the true labels" in titles[0]
    assert "logit KD" in titles[1] and "softened outputs" in titles[1]
    assert len(titles) == 4 and not any("total" in t for t in titles)
    panels: dict[str, set] = {}
    for tr in fig.data:
        panels.setdefault(tr.xaxis, set()).add(tr.meta["loss"])
        assert tr.meta["loss"] != "total"
        k = order.index(tr.meta["loss"])
        # every value of the trace is that loss of that variant: no total, no other variant's loss
        i = FOUR["variants"].index(tr.meta["student"])
        assert all(math.floor(y) == k + 1 and round(y * 1e6) % 10 == i for y in tr.y), (tr.meta, tr.y)
    assert all(len(losses) == 1 for losses in panels.values())            # one loss per panel
    assert [panels[a].pop() for a in ("x", "x2", "x3", "x4")] == order
    # a line per variant that trains with the loss, in its colour; the reference dashed
    colors = variant_colors(FOUR["variants"])
    ce = [tr for tr in fig.data if tr.meta["loss"] == "ce" and tr.mode == "lines"]
    assert [tr.meta["student"] for tr in ce] == FOUR["variants"]
    assert [tr.line.color for tr in ce] == [colors[v] for v in FOUR["variants"]]
    assert ce[0].line.dash == fig_base.REFERENCE_DASH and ce[1].line.dash == "solid"
    att = {tr.meta["student"] for tr in fig.data if tr.meta["loss"] == "attention_kl"}
    assert att == {"kd_att_kl"}
    # one legend entry per variant
    assert sorted(tr.legendgroup for tr in fig.data if tr.showlegend) == sorted(FOUR["variants"])
    assert all(fig.layout[f"xaxis{k}"].range == (0, 3) for k in ("", "2", "3", "4"))


def test_loss_components_draws_the_steps_as_lines_and_the_epoch_means_as_markers():
    recs, steps = loss_records()
    fig = fig_curves.loss_components(recs, steps, **FOUR, epochs=2)
    line = next(tr for tr in fig.data if tr.meta == dict(loss="ce", student="kd") and tr.mode == "lines")
    np.testing.assert_allclose(line.x, [s / 4 for s in range(1, 9)])     # fractional epochs of the steps
    np.testing.assert_allclose(line.y, [1 + s / 100 + 1e-6 for s in range(1, 9)])
    dots = next(tr for tr in fig.data if tr.meta == dict(loss="ce", student="kd") and tr.mode == "markers")
    np.testing.assert_allclose(dots.x, [0.5, 1.5])                       # each epoch's mean, at its middle
    np.testing.assert_allclose(dots.y, [1.025 + 1e-6, 1.065 + 1e-6])
    assert list(dots.customdata) == [1, 2] and "mean over epoch" in dots.hovertemplate
    assert "thin lines: training steps" in fig.layout.title.text
    # without step records: the epoch means, joined
    only = fig_curves.loss_components(recs, None, **FOUR, epochs=2)
    assert {tr.mode for tr in only.data} == {"lines+markers"}
    assert len(only.data) == len([tr for tr in fig.data if tr.mode == "markers"])


def test_loss_components_before_any_step_has_an_axis_to_the_planned_epochs():
    recs = [{"epoch": 0, "student": v, "train_loss": {}} for v in FOUR["variants"]]
    fig = fig_curves.loss_components(recs, [], **FOUR, epochs=4)
    assert not fig.data and fig.layout.xaxis.range == (0, 4)
    assert "appears after the first training steps" in [a.text for a in fig.layout.annotations]
    # a few steps of the first epoch: already on the 0..epochs axis
    _, steps = loss_records()
    fig = fig_curves.loss_components(recs, steps[:2], **FOUR, epochs=4)
    assert fig.layout.xaxis.range == (0, 4) and len(fig.data) == 1
    assert fig_curves.loss_components([], [], epochs=None).layout.xaxis.range == (0, 1)


def test_compare_two_runs_keeps_each_variant_colour():
    a = {"variants": ["baseline", "distilled"], "accuracy": {"teacher": 0.9, "baseline": 0.7, "distilled": 0.8},
         "divergence": {"metric": "js", "epochs": [0, 1], "baseline": [0.2, 0.2], "distilled": [0.2, 0.1]}}
    b = {"variants": FOUR["variants"], "accuracy": {"teacher": 0.9, "baseline": 0.6, "kd": 0.5},
         "divergence": {"metric": "js", "epochs": [0, 1], **{v: [0.2, 0.3] for v in FOUR["variants"]}}}
    colors = fig_compare.compare_colors([a, b])
    assert {v: colors[v] for v in a["variants"]} == {v: c for v, c in variant_colors(a["variants"]).items()
                                                     if v != "teacher"}
    assert len({colors[v] for v in ("baseline", "distilled", "kd", "kd_att_kl", "kd_att_mse")}) == 5
    div = fig_compare.compare_runs_divergence([("A", a), ("B", b)])
    lines = {tr.name: tr for tr in div.data}
    assert set(lines) == {"A baseline", "A distilled", *(f"B {v}" for v in FOUR["variants"])}
    assert lines["A baseline"].line.dash == "solid" and lines["B baseline"].line.dash == "dot"
    assert lines["A baseline"].line.color == lines["B baseline"].line.color
    np.testing.assert_allclose(lines["A distilled"].y, [0.2, 0.1])
    acc = fig_compare.compare_runs_accuracy([("A", a), ("B", b)])
    bars = {tr.name: tr for tr in acc.data}
    assert list(bars["A"].x) == ["teacher", "baseline", "distilled", "kd", "kd_att_kl", "kd_att_mse"]
    assert list(bars["B"].y) == [90.0, 60.0, None, 50.0, None, None]


# ---- attributions -------------------------------------------------------------------------------------
def test_attribution_bars():
    t = np.array([0.0, 0.5, -1.0, 0.2, 0.1, 2.0, 0.0, 0.0])
    s = np.array([0.0, -0.1, 0.3, 0.0, 0.2, 0.1, 0.05, 0.0])
    fig = fig_attribution.attribution_bars(TOKENS, t, s, "distilled student")
    left, right = fig.data
    assert [fig_base.plain_label(y) for y in left.y] == TOKENS
    np.testing.assert_allclose(left.x, t / 2.0)                   # scaled to max |score| = 1
    np.testing.assert_allclose(right.x, s / 0.3)
    assert left.marker.color[2] != left.marker.color[1]          # sign shows in the colour
    assert [a.text for a in fig.layout.annotations] == ["teacher", "distilled student"]
    raw = fig_attribution.attribution_bars(TOKENS, t, s, normalize=False)
    np.testing.assert_allclose(raw.data[0].x, t)
    with pytest.raises(ValueError):
        fig_attribution.attribution_bars(TOKENS, t[:-1], s)


def test_attribution_reading_follows_the_numbers():
    split = attribution_reading("distilled", {"distilled": (0.10, 0.99), "baseline": (0.19, 0.43)}, "baseline")
    assert "ρ = 0.10" in split and "agrees 0.99" in split
    assert "distilled student has the closer attention but the baseline student the closer attributions" in split
    both = attribution_reading("kd", {"kd": (0.8, 0.9), "baseline": (0.3, 0.5)}, "baseline")
    assert "ρ = 0.80" in both and "Variant kd is closer on both counts" in both
    tie = attribution_reading("distilled", {"distilled": (0.5, 0.9), "baseline": (0.5, 0.9)}, "baseline")
    assert "about as close to the teacher on both counts" in tie
    alone = attribution_reading("distilled", {"distilled": (float("nan"), 0.7)}, None)
    assert "ρ = undefined" in alone and "baseline" not in alone
    # the reference itself: which variants are closer than it
    ref = attribution_reading("baseline", {"baseline": (0.3, 0.5), "kd": (0.8, 0.4), "kd_att_kl": (0.1, 0.9)},
                              "baseline")
    assert "closer attention than the baseline student: kd_att_kl; with closer attributions: kd." in ref


FIGURE_MODULES = ("base", "maps", "curves", "divergence", "accuracy", "compare", "attribution", "sweep", "compression",
                  "images", "image_attribution", "teachers")


def test_figure_modules_do_not_import_streamlit():
    modules = ", ".join(f"app.figures.{m}" for m in FIGURE_MODULES)
    code = f"import sys, {modules}; sys.exit('streamlit' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_verdicts_import_neither_streamlit_nor_plotly_nor_the_app():
    code = ("import sys, distill_core.verdicts; "
            "sys.exit(any(m in sys.modules for m in ('streamlit', 'plotly', 'app')))")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_best_epoch_text_names_the_variants_that_peaked_early():
    best = {"baseline": {"epoch": 2, "final_epoch": 4, "test_accuracy": 0.7236, "val_accuracy": 0.746},
            "distilled": {"epoch": 4, "final_epoch": 4, "test_accuracy": 0.75, "val_accuracy": 0.76}}
    text = best_epoch_text(best, ["baseline", "distilled"], "baseline")
    assert "epoch 2 of 4 (test 72.4% with those weights)" in text and "distilled" not in text
    assert "reads a typed sentence with either" in text and text.startswith("Best validation accuracy")
    assert best_epoch_text(best, ["baseline"], None, metric="entity F1").startswith("Best validation entity F1")
    assert "reads an uploaded picture with either" in best_epoch_text(best, ["baseline"], None, "an uploaded picture")
    assert best_epoch_text({"distilled": best["distilled"]}, ["distilled"]) is None
    assert best_epoch_text({}, ["baseline"]) is None


def test_a_few_percent_apart_reads_as_about_equally_close():
    def rec(epoch, student, js):
        return {"epoch": epoch, "student": student, "attention": {"js": [[js, js]]}, "js_mean": js}
    records = [rec(0, "baseline", 0.19), rec(0, "kd", 0.19), rec(4, "baseline", 0.219), rec(4, "kd", 0.215)]
    text = divergence_reading(records, "js", ["teacher L1 → student L0"], ["baseline", "kd"], "baseline",
                              {"baseline": {"ce": 1.0}, "kd": {"ce": 0.5, "logit_kd": 0.5}})
    assert "about equally close" in text and "×" not in text.split(".")[0]
    assert "brought its attention closer" not in text
