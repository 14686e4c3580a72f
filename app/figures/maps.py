"""Attention maps as heatmaps: one teacher map against one student map (the triptych), maps side by side, and the
heads of a layer (or a whole layers x heads grid) as small multiples; plus how many tokens a map can label.

Attention maps follow BertViz's layout: one map is `(T, T)` with query tokens on rows and key tokens on
columns, one layer is `(H, T, T)`. In every heatmap the keys run along x and the queries down y, the first
token at the top left, as a matrix is printed.

Large grids are built by laying out axes by hand (one heatmap trace per panel, no per-cell annotations):
`make_subplots` is several times slower for the 6 x 12 head grid of a MiniLM teacher. No Streamlit here.
"""
from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures.base import (DIFF_SCALE, FONT, PLAIN_CHAR_PX, SCREEN_SHARE, TOKEN_PX, TOOLBAR_PX, WIDE_PX,
                              axis_labels, base_layout, fit_title, map_colorscale, plain_label, title_px)
from distill_core.metrics import map_metric

ROW, GRID, STACK = "row", "grid", "stack"  # three maps in a row; teacher | student above the difference; one a row
BAR_THICKNESS, BAR_PAD = 12, 4               # a vertical colour bar: its width and the space around it, in pixels


def _check_square(name: str, m: np.ndarray, t: int | None = None) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{name} must be a (T, T) attention map, got shape {m.shape}")
    if t is not None and m.shape[0] != t:
        raise ValueError(f"{name} covers {m.shape[0]} tokens but {t} tokens were given")
    return m


def _check_shape(name: str, m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    if m.shape != shape:
        raise ValueError(f"{name} must be a {shape[0]} × {shape[1]} attention map (target × source tokens), got "
                         f"shape {m.shape}")
    return m


def _panel_annotation(text: str, xdomain, ydomain, size: int = 12) -> dict:
    return dict(text=text, x=(xdomain[0] + xdomain[1]) / 2, y=ydomain[1], xref="paper", yref="paper",
                xanchor="center", yanchor="bottom", showarrow=False, font=dict(size=size))


def map_window(tokens: Sequence[str], start: int, stop: int, *maps: np.ndarray) -> tuple[list[str], list[np.ndarray]]:
    """Tokens start..stop-1 and the same rows and columns of each (T, T) map (a window on a long input)."""
    t = len(tokens)
    start, stop = max(0, int(start)), min(t, int(stop))
    if stop <= start:
        raise ValueError(f"an empty token window ({start}..{stop}) of {t} tokens")
    return list(tokens[start:stop]), [np.asarray(m)[start:stop, start:stop] for m in maps]


def tokens_that_fit(width_px: int, panels: int, font_size: int) -> int:
    """How many tokens one of `panels` maps side by side can label, each at `font_size`, in a chart `width_px`
    wide (colour bars and gaps take about a fifth of it)."""
    return max(4, int(width_px * 0.8 / panels / (font_size * TOKEN_PX)))


def triptych_arrangement(t: int, width_px: int, font_size: int) -> tuple[str, int]:
    """(ROW or GRID, the most tokens it labels): three maps in a row while the tokens fit, else two in a row with
    the difference below."""
    row = tokens_that_fit(width_px, 3, font_size)
    return (ROW, row) if t <= row else (GRID, tokens_that_fit(width_px, 2, font_size))


def readable_arrangement(t: int, width_px: int, font_size: int, difference: bool = True) -> tuple[str, int]:
    """(the arrangement, the most tokens it labels) in which `t` tokens are labelled at `font_size`: the maps in a
    row while they fit, then (with the difference) teacher | student above the difference, then one map a row."""
    row = tokens_that_fit(width_px, 3 if difference else 2, font_size)
    if t <= row:
        return ROW, row
    two = tokens_that_fit(width_px, 2, font_size)
    if difference and t <= two:
        return GRID, two
    return STACK, tokens_that_fit(width_px, 1, font_size)


def bar_px(font_size: int) -> int:
    """The width a vertical colour bar takes beside its panel: the bar, its tick labels ("−0.25") and its title
    above it ("weight"), with the space around them."""
    tick = max(10, font_size - 1)
    return int(2 * BAR_PAD + BAR_THICKNESS + 4 + max(5.5 * tick * PLAIN_CHAR_PX, 6 * tick * PLAIN_CHAR_PX
                                                     - BAR_THICKNESS))


def _bar_gap_px(font_size: int) -> int:
    """The gap right of a panel that holds its colour bar: a little space, the bar, then space to the next panel."""
    return 8 + bar_px(font_size) + 16


def _rows_of(arrangement: str, n: int) -> list[list[int]]:
    """The panels (0 teacher, 1 student, 2 difference) of each row of the triptych."""
    if arrangement == STACK:
        return [[i] for i in range(n)]
    if arrangement == GRID and n == 3:
        return [[0, 1], [2]]
    return [list(range(n))]


def _triptych_panels(labels: Sequence[str], font_size: int, titles: Sequence[str], n: int, arrangement: str,
                     width_px: int, shown: int) -> tuple[list, list, list[str], int]:
    """Where heatmap_triptych's n panels go: (x and y domain of each panel, (x, y, length) of the weight and the
    difference colour bars, each panel's title wrapped to its width, the height of the panels with their titles
    and labels in pixels). `shown`: how many tokens a panel labels.

    The weight bar sits right of the student's map and the difference bar right of the difference, each in a gap
    of its own, so neither touches a neighbouring panel."""
    longest = max((len(plain_label(x)) for x in labels), default=1)
    label_px = int(min(14, longest) * font_size * 0.62) + 12        # the rotated key labels under each map
    plot_px = max(240, int(shown * font_size * TOKEN_PX))
    avail = SCREEN_SHARE * width_px - label_px                       # the plot area beside the query labels, px
    g1, gb = 12 / avail, _bar_gap_px(font_size) / avail              # between two maps; a gap holding a bar
    rows = _rows_of(arrangement, n)
    cols = max(len(r) for r in rows)
    gaps = [g1, gb, gb][:cols] if cols > 1 else [gb]             # after each column: only bars get wide gaps
    w = (1.0 - sum(gaps)) / cols
    x0 = [c * w + sum(gaps[:c]) for c in range(cols)]
    size = int(font_size * 1.1)
    fitted = [fit_title(x, w * avail, size) for x in titles]
    row_title_px = [title_px(max(fitted[i][1] for i in r), size) for r in rows]
    row_gap = 10
    area = sum(row_title_px) + len(rows) * (plot_px + label_px) + row_gap * (len(rows) - 1)
    domains: list = [None] * n
    cursor = 0
    for r, panels in enumerate(rows):
        top = cursor + row_title_px[r]
        yd = [1.0 - (top + plot_px) / area, 1.0 - top / area]
        for c, i in enumerate(panels):
            domains[i] = ([x0[c], x0[c] + w], yd)
        cursor = top + plot_px + label_px + row_gap
    bars = [(domains[i][0][1] + 8 / avail, sum(domains[i][1]) / 2, 0.9 * plot_px / area) for i in (1, 2)
            if i < n]
    return domains, bars, [text for text, _ in fitted], area


def heatmap_triptych(teacher: np.ndarray, student: np.ndarray, tokens: Sequence[str],
                     titles: Sequence[str] = ("teacher", "student", "difference (student − teacher)"),
                     title: str | None = None, height: int | None = None, gamma: float = 1.0,
                     font_size: int = 12, difference: bool = True, arrangement: str | None = None,
                     width_px: int = WIDE_PX, rows: Sequence[str] | None = None) -> go.Figure:
    """teacher | student | student - teacher, tokens on both axes (x = keys, y = queries). With `rows` the maps are
    (len(rows), len(tokens)): queries other than the keys (cross-attention: target tokens over source tokens).

    Every token is labelled on both axes at `font_size` while they fit (pass a window of a long input, see
    map_window, rather than shrinking the labels; beyond what fits, every k-th token is labelled). `arrangement`
    ROW puts the maps in a row, GRID the difference under the teacher (each map gets half the width instead of a
    third), STACK one map a row; left out, the first in which the tokens fit a chart `width_px` wide
    (readable_arrangement). `difference=False` draws the first two maps only. Titles wrap onto more lines where a
    panel is narrow. Teacher and student share one colour scale from 0 to the larger of their maxima (see
    map_colorscale for gamma); the difference has its own diverging scale, symmetric around 0.
    """
    labels = axis_labels(tokens)
    ylabels = axis_labels(rows) if rows is not None else labels
    if rows is None:
        teacher = _check_square("teacher", teacher, len(labels))
        student = _check_square("student", student, len(labels))
    else:
        teacher, student = (_check_shape(n, m, (len(ylabels), len(labels))) for n, m in (("teacher", teacher),
                                                                                          ("student", student)))
    t = max(len(labels), len(ylabels))
    diff = student - teacher
    zmax = float(max(teacher.max(initial=0.0), student.max(initial=0.0))) or 1.0
    dmax = float(np.abs(diff).max(initial=0.0)) or 1e-6
    n = 3 if difference else 2
    titles = [*map(str, titles[:n]), *[""] * (n - len(titles))]
    if arrangement is None:
        arrangement = readable_arrangement(t, width_px, font_size, difference)[0]
    cols = max(len(r) for r in _rows_of(arrangement, n))
    fit = tokens_that_fit(width_px, cols, font_size)
    ticks = labels[::math.ceil(t / fit)] if t > fit else labels         # no two labels on top of each other
    yticks = ylabels[::math.ceil(t / fit)] if t > fit else ylabels
    tick = dict(tickfont=dict(size=font_size), showgrid=False, ticks="", type="category", tickmode="array")
    top = TOOLBAR_PX + (int(font_size * 2.2) if title else 0)
    domains, bars, names, area = _triptych_panels(labels, font_size, titles, n, arrangement, width_px,
                                                  min(t, fit))
    layout = base_layout(height or int(area + top + 10), title)
    layout["font"] = dict(FONT, size=font_size)
    if title:
        layout["title"]["font"] = dict(size=int(font_size * 1.3))
    hover = "query: %{y}<br>key: %{x}<br>NAME: %{z:.4f}<extra></extra>"
    traces = []
    for i, (z, name) in enumerate(zip((teacher, student, diff)[:n], titles)):
        sfx = "" if i == 0 else str(i + 1)
        is_diff = i == 2
        xd, yd = domains[i]
        traces.append(dict(
            type="heatmap", z=z, x=labels, y=ylabels, xaxis=f"x{sfx}", yaxis=f"y{sfx}", name=str(name),
            coloraxis="coloraxis2" if is_diff else "coloraxis", xgap=0, ygap=0,
            hovertemplate=hover.replace("NAME", "student − teacher" if is_diff else "weight")))
        layout[f"xaxis{sfx}"] = dict(domain=xd, anchor=f"y{sfx}", tickangle=-90, side="bottom", tickvals=ticks,
                                     ticktext=ticks, **tick)
        layout[f"yaxis{sfx}"] = dict(domain=yd, anchor=f"x{sfx}", autorange="reversed",
                                     showticklabels=xd[0] == 0.0, tickvals=yticks, ticktext=yticks, **tick)
    bar = dict(xanchor="left", thickness=BAR_THICKNESS, xpad=BAR_PAD, tickfont=dict(size=max(10, font_size - 1)))
    layout["coloraxis"] = dict(colorscale=map_colorscale(gamma), cmin=0.0, cmax=zmax,
                               colorbar=dict(title=dict(text="weight", side="top"), x=bars[0][0], y=bars[0][1],
                                             len=bars[0][2], **bar))
    if difference:
        layout["coloraxis2"] = dict(colorscale=DIFF_SCALE, cmin=-dmax, cmax=dmax, cmid=0.0,
                                    colorbar=dict(title=dict(text="diff.", side="top"), x=bars[1][0],
                                                  y=bars[1][1], len=bars[1][2], **bar))
    layout["annotations"] = [_panel_annotation(text, xd, yd, size=int(font_size * 1.1))
                             for text, (xd, yd) in zip(names, domains)]
    layout["margin"] = dict(l=10, r=10, t=top, b=10)
    return go.Figure(data=traces, layout=layout)


def map_reading(teacher: np.ndarray, student: np.ndarray, tokens: Sequence[str], student_name: str = "the student",
                before: np.ndarray | None = None) -> list[str]:
    """What to notice in one teacher map and one student map (T, T), in sentences for a caption or a lecture.

    `before` is the student's map of the same text before training (epoch 0), when there is one.
    """
    t = len(tokens)
    teacher, student = _check_square("teacher", teacher, t), _check_square("student", student, t)
    words = [plain_label(x) for x in axis_labels(tokens)]
    out = []
    special = [i for i, w in enumerate(words) if w.startswith("[") and w.endswith("]")]
    if special:
        ts, ss = teacher[:, special].sum(1).mean(), student[:, special].sum(1).mean()
        names = "/".join(dict.fromkeys(words[i] for i in special))
        parked = (": a head that parks most of its attention there is often doing little else"
                  if max(ts, ss) > 0.4 else "")
        out.append(f"The teacher puts {ts:.0%} of each token's attention on {names} on average, "
                   f"{student_name} {ss:.0%}{parked}.")
    diag_t, diag_s = float(np.trace(teacher)) / t, float(np.trace(student)) / t
    if max(diag_t, diag_s) > 0.3:
        out.append(f"Each token attends to itself with weight {diag_t:.2f} on average in the teacher, "
                   f"{diag_s:.2f} in {student_name}.")
    row_js = np.array([float(map_metric("js", teacher[i:i + 1], student[i:i + 1])) for i in range(t)])
    worst = int(np.argmax(row_js))
    k_t, k_s = int(np.argmax(teacher[worst])), int(np.argmax(student[worst]))
    out.append(f"They disagree most on the row of “{words[worst]}”: the teacher looks mostly at “{words[k_t]}” "
               f"({teacher[worst, k_t]:.2f}), {student_name} at “{words[k_s]}” ({student[worst, k_s]:.2f}).")
    js = float(map_metric("js", teacher, student))
    if before is not None and np.shape(before) == teacher.shape:
        js0 = float(map_metric("js", teacher, np.asarray(before, dtype=np.float32)))
        moved = ("left this map about as far from" if abs(js - js0) < 0.005 else
                 "moved this map closer to" if js < js0 else "moved this map further from")
        out.append(f"Jensen-Shannon divergence between the two maps: {js:.3f}, against {js0:.3f} before training: "
                   f"training {moved} the teacher's.")
    else:
        out.append(f"Jensen-Shannon divergence between the two maps: {js:.3f} (0 = the same map).")
    return out


def _head_cells(maps: np.ndarray, cols: int | None, row_names: Sequence[str] | None,
                greyed: Sequence[int]) -> tuple[int, int, Sequence[str] | None, list[tuple]]:
    """head_grid's panels: (rows, cols, row names, one (row, column, map, title or None) per panel). One layer's
    heads wrap into rows of `cols` (at most 6 by default); a layers x heads grid has a row per layer."""
    if maps.ndim == 3:
        n_heads = maps.shape[0]
        cols = cols or min(n_heads, 6)
        cells = [(h // cols, h % cols, maps[h], f"head {h}" + (" · pruned" if h in set(greyed) else ""))
                 for h in range(n_heads)]
        return math.ceil(n_heads / cols), cols, row_names, cells
    if maps.ndim == 4:
        rows, cols = maps.shape[0], maps.shape[1]
        row_names = row_names or [f"layer {r}" for r in range(rows)]
        cells = [(r, c, maps[r, c], f"head {c}" if r == 0 else None) for r in range(rows) for c in range(cols)]
        return rows, cols, row_names, cells
    raise ValueError(f"head_grid needs (H, T, T) or (L, H, T, T) maps, got shape {maps.shape}")


def _head_marks(head: int, sfx: str, greyed: Sequence[int], highlight: Sequence[int]) -> list[dict]:
    """The grey veil of a pruned head, then the red outline of a highlighted one, on the panel of axes x{sfx}."""
    out = []
    if head in set(greyed):
        out.append(dict(type="rect", xref=f"x{sfx} domain", yref=f"y{sfx} domain", x0=0, x1=1, y0=0, y1=1,
                        fillcolor="rgba(229, 231, 235, 0.82)", line=dict(color="#9ca3af", width=1)))
    if head in set(highlight):
        out.append(dict(type="rect", xref=f"x{sfx} domain", yref=f"y{sfx} domain", x0=0, x1=1, y0=0, y1=1,
                        line=dict(color="#dc2626", width=2.5)))
    return out


def head_grid(maps: np.ndarray, tokens: Sequence[str], title: str = "", cols: int | None = None,
              zmax: float | None = None, highlight: Sequence[int] = (), row_names: Sequence[str] | None = None,
              height: int | None = None, width_px: int = 1000, gamma: float = 1.0,
              greyed: Sequence[int] = ()) -> go.Figure:
    """Small multiples of attention heads with one colour scale.

    maps (H, T, T): the heads of one layer, wrapped into rows of `cols` panels;
    maps (L, H, T, T): a layers x heads grid (rows = layers).
    `highlight` outlines heads (of a single layer) in red, e.g. the teacher heads a student head is compared with;
    `greyed` veils heads (of a single layer) in grey and names them pruned, e.g. the heads a pruned version masks.
    Panels are square; `width_px` (the expected width of the chart on screen) sets the default height.
    """
    maps = np.asarray(maps, dtype=np.float32)
    labels = axis_labels(tokens)
    t = len(labels)
    rows, cols, row_names, cells = _head_cells(maps, cols, row_names, greyed)
    if maps.shape[-1] != t or maps.shape[-2] != t:
        raise ValueError(f"the maps cover {maps.shape[-1]} tokens but {t} tokens were given")
    zmax = float(zmax if zmax is not None else maps.max(initial=0.0)) or 1.0
    left = 0.05 if maps.ndim == 4 else 0.0
    right = 0.94
    hgap = 0.012 if cols > 6 else 0.02
    vgap = 0.05 if maps.ndim == 3 else 0.02
    pw = (right - left - hgap * (cols - 1)) / cols
    ph = (1.0 - vgap * (rows - 1)) / rows
    hover = "query: %{y}<br>key: %{x}<br>weight: %{z:.4f}<extra>%{fullData.name}</extra>"
    traces, annotations, shapes = [], [], []
    plot_h = rows * width_px * pw / (1.0 - vgap * (rows - 1))       # square panels as wide as planned
    layout = base_layout(height or int(max(180, min(1600, plot_h + (70 if title else 40)))), title)
    axis = dict(showticklabels=False, showgrid=False, ticks="", type="category", zeroline=False,
                showline=True, linecolor="#e5e7eb", mirror=True)
    for k, (r, c, z, name) in enumerate(cells):
        sfx = "" if k == 0 else str(k + 1)
        xd = [left + c * (pw + hgap), left + c * (pw + hgap) + pw]
        yd = [1.0 - (r + 1) * ph - r * vgap, 1.0 - r * ph - r * vgap]
        trace_name = f"{row_names[r]}, head {c}" if maps.ndim == 4 else f"head {r * cols + c}"
        traces.append(dict(type="heatmap", z=z, x=labels, y=labels, xaxis=f"x{sfx}", yaxis=f"y{sfx}",
                           name=trace_name, coloraxis="coloraxis", hovertemplate=hover))
        layout[f"xaxis{sfx}"] = dict(domain=xd, anchor=f"y{sfx}", constrain="domain", **axis)
        layout[f"yaxis{sfx}"] = dict(domain=yd, anchor=f"x{sfx}", autorange="reversed", scaleanchor=f"x{sfx}",
                                     constrain="domain", constraintoward="top", **axis)
        if name:
            annotations.append(_panel_annotation(name, xd, yd, size=10 if cols > 6 else 11))
        if maps.ndim == 3:
            shapes += _head_marks(r * cols + c, sfx, greyed, highlight)
        if maps.ndim == 4 and c == 0:
            annotations.append(dict(text=row_names[r], x=left - 0.006, y=(yd[0] + yd[1]) / 2, xref="paper",
                                    yref="paper", xanchor="right", yanchor="middle", showarrow=False,
                                    textangle=-90, font=dict(size=10)))
    layout["coloraxis"] = dict(colorscale=map_colorscale(gamma), cmin=0.0, cmax=zmax,
                               colorbar=dict(title=dict(text="weight", side="right"), x=right + 0.01,
                                             xanchor="left", len=0.9, thickness=12))
    layout["annotations"] = annotations
    layout["shapes"] = shapes
    return go.Figure(data=traces, layout=layout)


def map_panels(maps: Sequence[np.ndarray], tokens: Sequence[str], titles: Sequence[str], gamma: float = 1.0,
               diff: tuple[int, int] | None = None, diff_title: str = "A − B", height: int | None = None,
               font_size: int = 11, width_px: int = WIDE_PX) -> go.Figure:
    """Attention maps of one text side by side on one weight scale (x = keys, y = queries), then, with
    `diff` = (i, j), maps[i] − maps[j] on a diverging scale symmetric around 0 (red: map i attends more there,
    blue: map j does). Each colour bar has a gap of its own right of its panel; titles wrap to their panel's width
    in a chart `width_px` wide."""
    labels = axis_labels(tokens)
    t = len(labels)
    if len(titles) != len(maps) or not maps:
        raise ValueError(f"{len(titles)} titles for {len(maps)} maps")
    maps = [_check_square(str(name), m, t) for name, m in zip(titles, maps)]
    panels = list(zip(maps, titles, [False] * len(maps)))
    if diff is not None:
        panels.append((maps[diff[0]] - maps[diff[1]], diff_title, True))
    n, n_maps = len(panels), len(maps)
    longest = max((len(plain_label(x)) for x in labels), default=1)
    avail = SCREEN_SHARE * width_px - int(min(14, longest) * font_size * 0.62) - 12   # beside the query labels
    g1, gb = 12 / avail, _bar_gap_px(font_size) / avail            # between two maps; a gap holding a bar
    w = (1.0 - g1 * (n_maps - 1) - gb * (2 if diff is not None else 1)) / n
    domains = [[k * (w + g1), k * (w + g1) + w] for k in range(n_maps)]
    if diff is not None:
        x0 = domains[-1][1] + gb
        domains.append([x0, x0 + w])
    tick = dict(tickfont=dict(size=font_size), showgrid=False, ticks="", type="category", tickmode="array",
                tickvals=labels, ticktext=labels, automargin=True)
    size = 12
    fitted = [fit_title(str(name), w * avail, size) for _, name, _ in panels]
    top = title_px(max(lines for _, lines in fitted), size) + 8
    layout = base_layout(height or int(min(760, max(380, 200 + 14 * t)) + top - 36))
    traces = []
    for k, ((z, name, is_diff), dom) in enumerate(zip(panels, domains)):
        sfx = "" if k == 0 else str(k + 1)
        what = html.escape(str(name)) if is_diff else "weight"
        traces.append(dict(type="heatmap", z=z, x=labels, y=labels, xaxis=f"x{sfx}", yaxis=f"y{sfx}", name=str(name),
                           coloraxis="coloraxis2" if is_diff else "coloraxis",
                           hovertemplate=f"query: %{{y}}<br>key: %{{x}}<br>{what}: %{{z:.4f}}"
                                         f"<extra>{html.escape(str(name))}</extra>"))
        layout[f"xaxis{sfx}"] = dict(domain=dom, anchor=f"y{sfx}", side="bottom", tickangle=-60 if t <= 16 else -90,
                                     **tick)
        layout[f"yaxis{sfx}"] = dict(domain=[0.0, 1.0], anchor=f"x{sfx}", autorange="reversed",
                                     showticklabels=k == 0, **tick)
    zmax = float(max(m.max(initial=0.0) for m in maps)) or 1.0
    bar = dict(xanchor="left", len=0.85, thickness=BAR_THICKNESS, xpad=BAR_PAD, y=0.45,
               tickfont=dict(size=max(10, font_size - 1)))
    layout["coloraxis"] = dict(colorscale=map_colorscale(gamma), cmin=0.0, cmax=zmax,
                               colorbar=dict(title=dict(text="weight", side="top"),
                                             x=domains[n_maps - 1][1] + 8 / avail, **bar))
    if diff is not None:
        dmax = float(np.abs(panels[-1][0]).max(initial=0.0)) or 1e-6
        layout["coloraxis2"] = dict(colorscale=DIFF_SCALE, cmin=-dmax, cmax=dmax, cmid=0.0,
                                    colorbar=dict(title=dict(text="diff.", side="top"),
                                                  x=domains[-1][1] + 8 / avail, **bar))
    layout["annotations"] = [_panel_annotation(text, d, [0, 1.0], size=size) for (text, _), d in zip(fitted, domains)]
    layout["margin"]["t"] = top
    return go.Figure(data=traces, layout=layout)


def own_maps(maps: Sequence[np.ndarray], rows: Sequence[Sequence[str]], cols: Sequence[Sequence[str]],
             titles: Sequence[str], gamma: float = 1.0, font_size: int = 12, width_px: int = WIDE_PX) -> go.Figure:
    """Maps side by side, each over its own tokens (two models' own translations: their rows differ), on one colour
    scale from 0 to the largest weight; no difference panel, since the cells do not pair up."""
    n = len(maps)
    fig = make_subplots(rows=1, cols=n, horizontal_spacing=0.12,
                        subplot_titles=[fit_title(t, width_px / n, int(font_size * 1.1))[0] for t in titles])
    zmax = max(float(np.max(m, initial=0.0)) for m in maps) or 1.0
    for k, (z, r, c) in enumerate(zip(maps, rows, cols)):
        fig.add_trace(go.Heatmap(z=np.asarray(z, np.float32), x=axis_labels(c), y=axis_labels(r),
                                 coloraxis="coloraxis",
                                 hovertemplate="query: %{y}<br>key: %{x}<br>weight: %{z:.4f}<extra></extra>"),
                      row=1, col=k + 1)
        fig.update_xaxes(type="category", tickangle=-90, tickfont=dict(size=font_size), row=1, col=k + 1)
        fig.update_yaxes(type="category", autorange="reversed", tickfont=dict(size=font_size), row=1, col=k + 1)
    longest = max((len(x) for r in rows for x in r), default=4)
    height = max(320, int(max((len(r) for r in rows), default=8) * font_size * TOKEN_PX) + 160 + longest * 4)
    fig.update_layout(**base_layout(height), coloraxis=dict(colorscale=map_colorscale(gamma), cmin=0.0, cmax=zmax,
                                                            colorbar=dict(title=dict(text="weight", side="top"),
                                                                          thickness=BAR_THICKNESS)))
    fig.update_layout(font=dict(FONT, size=font_size))
    return fig


def attended_bars(rows: Sequence[np.ndarray], tokens: Sequence[Sequence[str]], titles: Sequence[str],
                  prompt_lengths: Sequence[int], font_size: int = 12, width_px: int = WIDE_PX) -> go.Figure:
    """One attention row per model as bars over the tokens it could read (a causal model writing its next token:
    the prompt's tokens in grey, its own earlier tokens in blue), one panel per model, on one scale."""
    n = len(rows)
    fig = make_subplots(rows=1, cols=n, horizontal_spacing=0.08,
                        subplot_titles=[fit_title(t, width_px / n, int(font_size * 1.1))[0] for t in titles])
    top = max(float(np.max(r, initial=0.0)) for r in rows) or 1.0
    for k, (r, toks, p) in enumerate(zip(rows, tokens, prompt_lengths)):
        colors = ["#9ca3af" if i < p else "#2563eb" for i in range(len(toks))]
        fig.add_trace(go.Bar(x=axis_labels(toks), y=np.asarray(r, np.float32), marker_color=colors, showlegend=False,
                             hovertemplate="key: %{x}<br>weight: %{y:.4f}<extra></extra>"), row=1, col=k + 1)
        fig.update_xaxes(type="category", tickangle=-90, tickfont=dict(size=font_size), row=1, col=k + 1)
        fig.update_yaxes(range=[0, top * 1.05], title_text="weight" if k == 0 else None, row=1, col=k + 1)
    longest = max((len(x) for t in tokens for x in t), default=4)
    fig.update_layout(**base_layout(300 + longest * 5))
    fig.update_layout(font=dict(FONT, size=font_size))
    return fig
