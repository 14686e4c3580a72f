"""Figures read at 1280 x 720: panel titles that do not run into each other, token labels at a readable size, colour
bars clear of their neighbours, bar names that do not touch, table headers that fit their columns, numbers not hidden
by marks. The figures are pure functions: their specs are checked against the pixels a chart gets on that screen."""
from __future__ import annotations

import html
import re

import numpy as np
import pytest

from app.figures import accuracy as fig_accuracy
from app.figures import base as fig_base
from app.figures import compare as fig_compare
from app.figures import maps as fig_maps

CHART_PX = 820                  # a full-width chart on a 1280 px wide screen with the sidebar open
LONG_TITLES = ("bert-base-uncased L11 · heads 9–11 averaged", "distilled L2 · head 0 · epoch 2", "student − teacher")


def square(t: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).random((t, t)).astype(np.float32)
    return x / x.sum(-1, keepdims=True)


def lines_of(annotation_text: str) -> list[str]:
    return [html.unescape(re.sub("<[^>]+>", "", x)) for x in annotation_text.split("<br>")]


def plot_area_px(fig, tokens) -> tuple[float, float]:
    """(width, height) in pixels of the plot area: the chart less its margins and the query labels on the left."""
    lay = fig.layout
    labels_px = max(len(t) for t in tokens) * (lay.font.size or 12) * 0.6 + 10
    return CHART_PX - lay.margin.l - lay.margin.r - labels_px, lay.height - lay.margin.t - lay.margin.b


def panels(fig) -> list[tuple[list, list]]:
    """(x domain, y domain) of each panel, in the order of the traces."""
    lay = fig.layout.to_plotly_json()
    out = []
    for k in range(1, 1 + sum(1 for key in lay if re.fullmatch(r"xaxis\d*", key))):
        sfx = "" if k == 1 else str(k)
        out.append((list(lay[f"xaxis{sfx}"]["domain"]), list(lay[f"yaxis{sfx}"]["domain"])))
    return out


# ---- 1. panel titles ------------------------------------------------------------------------------------
@pytest.mark.parametrize("t,arrangement", [(12, fig_maps.ROW), (12, fig_maps.GRID), (12, fig_maps.STACK),
                                           (29, None), (19, None)])
def test_triptych_titles_fit_their_panels_whatever_the_arrangement(t, arrangement):
    tokens = [f"tok{i}" for i in range(t)]
    fig = fig_maps.heatmap_triptych(square(t), square(t, 1), tokens, titles=LONG_TITLES, arrangement=arrangement)
    width, height = plot_area_px(fig, tokens)
    doms = panels(fig)
    for a, (xd, yd) in zip(fig.layout.annotations, doms):
        size = a.font.size
        for line in lines_of(a.text):                   # each line within its panel's width, so none meets the next
            assert len(line) * size * 0.6 <= (xd[1] - xd[0]) * width, (line, xd)
        # the lines above the panel fit below the panel (or the toolbar) above it
        above = [d[1][0] for d in doms if d[1][0] > yd[1]]
        room = ((min(above) - yd[1]) * height if above else
                (1 - yd[1]) * height + fig.layout.margin.t - fig_base.TOOLBAR_PX)
        assert len(lines_of(a.text)) * size * 1.2 <= room


def test_map_panels_titles_wrap_to_their_panels():
    tokens = [f"tok{i}" for i in range(10)]
    fig = fig_maps.map_panels([square(10), square(10, 1), square(10, 2)], tokens,
                              ("distilled L3 · head 2 · clean input", "kd_att_kl L3 · head 2 · under attack",
                               "baseline L3 · head 2"), diff=(0, 1), diff_title="distilled − kd_att_kl")
    width, _ = plot_area_px(fig, tokens)
    for a, (xd, _) in zip(fig.layout.annotations, panels(fig)):
        assert all(len(x) * a.font.size * 0.6 <= (xd[1] - xd[0]) * width for x in lines_of(a.text))
    assert any(len(lines_of(a.text)) > 1 for a in fig.layout.annotations)


# ---- 2. every token labelled at a readable size when the caller gives no arrangement -------------------
@pytest.mark.parametrize("t", [8, 29, 45, 120])
def test_triptych_without_an_arrangement_labels_the_tokens_at_a_readable_size(t):
    tokens = [f"w{i}" for i in range(t)]
    fig = fig_maps.heatmap_triptych(square(t), square(t, 1), tokens)          # as the head-averaged view calls it
    width, height = plot_area_px(fig, tokens)
    for k, (xd, yd) in enumerate(panels(fig)):
        axis = fig.layout[f"xaxis{'' if k == 0 else k + 1}"]
        shown = len(axis.tickvals)
        assert (xd[1] - xd[0]) * width / shown >= 10.5, (t, k)       # about a font size (12) per label
        assert (yd[1] - yd[0]) * height / shown >= 10.5, (t, k)
        assert shown == t or t > 60                                  # every token while a full-width map holds them


def test_29_tokens_go_two_maps_a_row_with_the_difference_below():
    t = 29
    fig = fig_maps.heatmap_triptych(square(t), square(t, 1), [f"w{i}" for i in range(t)])
    (x1, y1), (x2, y2), (x3, y3) = panels(fig)
    assert y1 == y2 and x3 == x1 and y3[1] < y1[0]
    assert fig_maps.readable_arrangement(t, fig_base.WIDE_PX, 12) == (fig_maps.GRID, 29)
    assert fig_maps.readable_arrangement(45, fig_base.WIDE_PX, 12)[0] == fig_maps.STACK


# ---- 3. colour bars clear of the next panel -------------------------------------------------------------
def _bar_room_px(bar, font_size: int = 12) -> float:
    """What a vertical colour bar needs right of where it starts: its pad (plotly's default 10 px), the bar (30 px by
    default), tick labels like "−0.25", and some space before the next panel."""
    pad = 10 if bar.xpad is None else bar.xpad
    return pad + (bar.thickness or 30) + 5 * (font_size - 1) * 0.6 + 16


@pytest.mark.parametrize("arrangement", [fig_maps.ROW, fig_maps.GRID, fig_maps.STACK])
def test_triptych_colour_bars_leave_room_before_any_panel_to_their_right(arrangement):
    t = 12
    tokens = [f"tok{i}" for i in range(t)]
    fig = fig_maps.heatmap_triptych(square(t), square(t, 1), tokens, arrangement=arrangement)
    width, _ = plot_area_px(fig, tokens)
    doms = panels(fig)
    for bar, beside in ((fig.layout.coloraxis.colorbar, 1), (fig.layout.coloraxis2.colorbar, 2)):
        xd, yd = doms[beside]
        assert bar.x > xd[1]                                          # right of its own panel
        for ox, oy in doms:                                           # and clear of any panel it shares rows with
            if ox[0] > xd[1] and oy[0] < yd[1] and oy[1] > yd[0]:
                assert (ox[0] - bar.x) * width >= _bar_room_px(bar), (arrangement, beside)


def test_map_panels_weight_bar_leaves_room_before_the_difference():
    tokens = [f"tok{i}" for i in range(10)]
    fig = fig_maps.map_panels([square(10), square(10, 1)], tokens, ("a", "b"), diff=(0, 1))
    width, _ = plot_area_px(fig, tokens)
    doms = panels(fig)
    bar = fig.layout.coloraxis.colorbar
    assert doms[1][0][1] < bar.x and (doms[2][0][0] - bar.x) * width >= _bar_room_px(bar)


# ---- 4. bar names that do not touch ------------------------------------------------------------------------
def assert_names_apart(axis, slot_px: float, font_size: int = 12) -> None:
    """Upright names: every line within its bar's share of the width (4 px to spare); angled ones: consecutive
    names further apart, across their slope, than a line is high."""
    if not axis.tickangle:
        for text in axis.ticktext:
            for line in lines_of(text):
                assert len(line) * font_size * 0.56 <= slot_px - 4, (line, slot_px)
    else:
        assert slot_px * abs(np.sin(np.radians(axis.tickangle))) >= 1.2 * font_size


def test_accuracy_bar_names_wrap_or_angle_so_they_never_touch():
    variants = ["baseline", "distilled", "kd", "kd_att"]
    acc = {"teacher": 0.9, "baseline": 0.8, "distilled": 0.85, "kd": 0.83, "kd_att": 0.84}
    fig = fig_accuracy.accuracy_bars(acc, 200, variants=variants, reference="baseline")
    slot = (CHART_PX / 2 - 90) / len(variants)                      # half the page, less the y axis
    assert_names_apart(fig.layout.xaxis, slot)
    assert "baseline<br>student" in fig.layout.xaxis.ticktext[0]    # wrapped at its space
    assert lines_of(fig.layout.xaxis.ticktext[1])[-1] == "85.0%"     # the accuracy still under each name
    long = fig_accuracy.accuracy_bars({**acc, "attention_score_mse_student": 0.7}, 200,
                                      variants=[*variants, "attention_score_mse_student"], reference="baseline")
    assert long.layout.xaxis.tickangle                               # a word too long for its share: angled
    assert_names_apart(long.layout.xaxis, (CHART_PX / 2 - 90) / 5)


def test_compare_runs_accuracy_names_never_touch():
    a = {"variants": ["baseline", "distilled"], "accuracy": {"teacher": 0.9, "baseline": 0.7, "distilled": 0.8}}
    b = {"variants": ["baseline", "kd_att_kl", "kd_att_mse"], "accuracy": {"teacher": 0.9, "kd_att_mse": 0.5}}
    fig = fig_compare.compare_runs_accuracy([("A", a), ("B", b)])
    assert_names_apart(fig.layout.xaxis, (CHART_PX / 2 - 70) / 5)


# ---- 5. table headers that fit their columns ---------------------------------------------------------------
def test_accuracy_table_headers_are_short_and_explained():
    from app import tables
    acc = {"teacher": 0.9, "baseline": 0.8, "kd": 0.85}
    paired = {"kd": {"variant": "kd", "diff": 0.05, "lo": 0.01, "hi": 0.09, "p": 0.01, "variant_only": 12,
                     "ref_only": 2}, "baseline": {"variant": "baseline", "diff": None}}
    cost = ({"teacher": 4e6, "baseline": 1e6, "kd": 1e6}, {"teacher": 3.0, "baseline": 1.0, "kd": 1.0})
    further = [{"label": "teacher 2", "accuracy": 0.88, "params": 2e6, "size_bytes": 8e6}]
    names = set()
    for reference in ("baseline", "a_labels_only_reference_with_a_long_name"):
        for kw in (dict(paired=True), dict(independent=True)):
            verdicts = paired if kw.get("paired") else {"kd": {"diff": 0.05, "lo": -0.01, "hi": 0.11}}
            rows = tables.accuracy_rows(("teacher", "baseline", "kd"), acc, 400, verdicts, str, {"kd": "ce + kd"},
                                        cost[0], reference, costs=cost, further=further, **kw)
            names |= {k for r in rows for k in r}
    assert {"paired 95% interval (points)", "only it right / only reference right"}.isdisjoint(names)
    for name in names:
        assert len(name) <= 20, name                  # about 150 px of header: the whole table fits beside the sidebar
    for long in (tables.PAIRED_INTERVAL, tables.DISCORDANT, tables.INDEPENDENT_INTERVAL, tables.OF_TEACHER):
        assert len(tables.COLUMN_HELP[long]) > len(long)          # the long explanation goes in the column's help
    assert "points" in tables.vs_help("baseline") and tables.vs_column("baseline") == "vs baseline"


# ---- 6. numbers in the layer grid not hidden by its marks --------------------------------------------------
def test_layer_cost_map_marks_leave_the_numbers_clear():
    from app.figures import divergence as fig_divergence
    costs = [[0.2, 0.1, 0.3, 0.25], [0.3, 0.4, 0.05, 0.2], [0.1, 0.3, 0.2, 0.15]]
    fig = fig_divergence.layer_cost_map(costs, [1, 2, 0], [1, 3, 0])
    heat = fig.data[0]
    assert heat.texttemplate                                          # every cell's number, in its middle
    assert not [tr for tr in fig.data if tr.type == "scatter" and "markers" in (tr.mode or "")]   # no marker on it
    marks = fig.layout.shapes
    assert [m.name for m in marks if m.showlegend] == ["suggested", "used by the run"]
    for m in marks:                                                   # outlines run near the cell's edges
        t, s = (m.x0 + m.x1) / 2, (m.y0 + m.y1) / 2
        assert min(m.x1 - t, t - m.x0, m.y1 - s, s - m.y0) >= 0.35
    assert [(m.x0 + m.x1) / 2 for m in marks if m.name == "suggested"] == [1, 2, 0]
    assert [(m.y0 + m.y1) / 2 for m in marks if m.name == "used by the run"] == [0, 1, 2]
    assert "suggested" in heat.customdata[0][1] and "used by the run" in heat.customdata[1][3]    # and on hover


# ---- 7. the comparison rule in the words of the run's maps ----------------------------------------------------
def test_comparison_rule_speaks_of_stages_for_cnn_runs_and_of_heads_otherwise():
    from app.figures import divergence as fig_divergence
    cnn = {"head_rule": "direct", "student_heads": 1, "teacher_heads": 1, "families": {"teacher": "cnn",
           "student": "cnn"}, "maps": {"teacher": {"family": "cnn", "stages": 3}, "student": {"family": "cnn"}}}
    rule = fig_divergence.comparison_rule(cnn)
    assert "head" not in rule.replace("no heads", "") and "stage" in rule and "channels" in rule
    vit = {**cnn, "maps": {"teacher": {"family": "vit", "heads": 4}, "student": {"family": "vit", "heads": 2}},
           "head_rule": "group", "student_heads": 2, "teacher_heads": 4}
    assert fig_divergence.comparison_rule(vit) == ("Head rule group: each of the student's 2 heads is compared with "
                                                   "the average of a group of 2 teacher heads.")
    assert fig_divergence.comparison_rule({"head_rule": "direct"}).startswith("Head rule direct: each student head")
    assert fig_divergence.comparison_rule({}) == ""
