"""Figures for the app's pages, and the numbers behind their captions. Pure functions: no Streamlit here.

Attention maps follow BertViz's layout: one map is `(T, T)` with query tokens on rows and key tokens on
columns, one layer is `(H, T, T)`. In every heatmap the keys run along x and the queries down y, the first
token at the top left, as a matrix is printed.

Large grids are built by laying out axes by hand (one heatmap trace per panel, no per-cell annotations):
`make_subplots` is several times slower for the 6 x 12 head grid of a MiniLM teacher.

Traces are given to plotly as dicts ({"type": "scatter", ...}) and added to a figure in one call: plotly validates a
dict once, but a `go.Scatter` object twice (when it is made, and again when a figure takes it), and each
`add_trace` call on its own costs more than one `add_traces` call for all. The figures are the same
(benchmarks/figures_bench.py times every page's figures).
"""
from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from distill_core.stats import p_text
from distill_core.vocab import (ATTENTION_LOSSES, LABEL_LOSS, LOSS_SOURCES, LOSS_TITLES, LOWER_IS_CLOSER,
                                 METRIC_LABELS, PALETTE, TEACHER, model_label, run_variants, variant_colors)

MAP_SCALE = "Blues"                 # attention weights: white = 0
DIFF_SCALE = "RdBu_r"               # student - teacher: red where the student attends more, blue where less
ZWSP = "\u200b"                     # makes repeated tokens distinct axis categories without changing how they look
FONT = dict(family="Inter, 'Source Sans Pro', Arial, sans-serif", size=12)
REFERENCE_DASH = "dash"             # the labels-only reference variant; every other variant is drawn solid


def map_colorscale(gamma: float = 1.0) -> list:
    """The attention colour scale; gamma < 1 spends more of the colours on small weights (0.5: square root).

    The values and the colour bar stay exact: only the colours along the bar are spaced differently.
    """
    if gamma == 1.0:
        return plotly.colors.get_colorscale(MAP_SCALE)
    stops = np.linspace(0.0, 1.0, 21)
    colors = plotly.colors.sample_colorscale(MAP_SCALE, list(stops ** gamma))
    return [[float(x), c] for x, c in zip(stops, colors)]


# ---- tokens ------------------------------------------------------------------------------------------
def axis_labels(tokens: Sequence[str]) -> list[str]:
    """Tokens as axis categories: HTML-escaped (plotly reads '<...>' as markup) and made unique.

    A repeated token gets trailing zero-width spaces, so "the ... the" stays two rows instead of one.
    """
    seen: dict[str, int] = {}
    out = []
    for tok in tokens:
        label = html.escape(str(tok), quote=False) or " "
        n = seen.get(label, 0)
        seen[label] = n + 1
        out.append(label + ZWSP * n)
    return out


def plain_label(label: str) -> str:
    """The token behind an axis label (inverse of `axis_labels` for one entry)."""
    return html.unescape(label.replace(ZWSP, ""))


def _check_square(name: str, m: np.ndarray, t: int | None = None) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{name} must be a (T, T) attention map, got shape {m.shape}")
    if t is not None and m.shape[0] != t:
        raise ValueError(f"{name} covers {m.shape[0]} tokens but {t} tokens were given")
    return m


def _base_layout(height: int, title: str | None = None, **extra) -> dict:
    layout = dict(height=height, margin=dict(l=10, r=10, t=60 if title else 40, b=10), font=FONT,
                  plot_bgcolor="white", paper_bgcolor="white")
    if title:
        layout["title"] = dict(text=title, x=0.0, xanchor="left", font=dict(size=15))
    layout.update(extra)
    return layout


def _panel_annotation(text: str, xdomain, ydomain, size: int = 12) -> dict:
    return dict(text=text, x=(xdomain[0] + xdomain[1]) / 2, y=ydomain[1], xref="paper", yref="paper",
                xanchor="center", yanchor="bottom", showarrow=False, font=dict(size=size))


def _tick_font_size(t: int) -> int:
    return 11 if t <= 24 else 9 if t <= 40 else 7


TOKEN_PX = 1.1                       # pixels along an axis per token label, per pixel of font size
TOOLBAR_PX = 34                      # the chart toolbar's height: panel titles start below it
WIDE_PX = 960                        # a full-width chart on a 1280 px wide screen (sidebar open) is about 880 px wide
PRESENT_PX = 640                     # the same in presentation mode, whose larger text leaves the charts less room
ROW, GRID = "row", "grid"            # three maps in a row, or teacher | student above the difference


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


# ---- one map against another -------------------------------------------------------------------------
def heatmap_triptych(teacher: np.ndarray, student: np.ndarray, tokens: Sequence[str],
                     titles: Sequence[str] = ("teacher", "student", "difference (student − teacher)"),
                     title: str | None = None, height: int | None = None, gamma: float = 1.0,
                     font_size: int = 12, difference: bool = True, arrangement: str = ROW) -> go.Figure:
    """teacher | student | student - teacher, tokens on both axes (x = keys, y = queries).

    Every token is labelled on both axes at `font_size` (pass a window of a long input, see map_window, rather
    than shrinking the labels). `arrangement` GRID puts the difference under the teacher, so each map gets half
    the width instead of a third; `difference=False` draws the first two maps only. Teacher and student share
    one colour scale from 0 to the larger of their maxima (see map_colorscale for gamma); the difference has its
    own diverging scale, symmetric around 0.
    """
    labels = axis_labels(tokens)
    t = len(labels)
    teacher = _check_square("teacher", teacher, t)
    student = _check_square("student", student, t)
    diff = student - teacher
    zmax = float(max(teacher.max(initial=0.0), student.max(initial=0.0))) or 1.0
    dmax = float(np.abs(diff).max(initial=0.0)) or 1e-6
    n = 3 if difference else 2
    grid = difference and arrangement == GRID
    tick = dict(tickfont=dict(size=font_size), showgrid=False, ticks="", type="category", tickmode="array",
                tickvals=labels, ticktext=labels)                    # every token labelled, on both axes
    longest = max((len(plain_label(x)) for x in labels), default=1)
    label_px = int(min(14, longest) * font_size * 0.62) + 12        # the rotated key labels under each map
    title_px = int(font_size * 1.8)
    top = TOOLBAR_PX + title_px + (int(font_size * 2.2) if title else 0)
    plot_px = max(240, int(t * font_size * TOKEN_PX))
    g1, g2 = 0.015, 0.095                       # the second gap holds the shared colour bar
    if grid:
        w = (1.0 - g1 - 0.1) / 2
        area = 2 * plot_px + 2 * label_px + title_px                 # both rows, in pixels
        row0 = [1.0 - plot_px / area, 1.0]
        r1_top = 1.0 - (plot_px + label_px + title_px) / area
        row1 = [r1_top - plot_px / area, r1_top]
        domains = [([0.0, w], row0), ([w + g1, 2 * w + g1], row0), ([0.0, w], row1)]
        bars = [(domains[1][0][1] + 0.008, sum(row0) / 2), (domains[2][0][1] + 0.008, sum(row1) / 2)]
        bar_len = 0.4
    else:
        w = (1.0 - g1 - (g2 if difference else 0.0) - 0.08) / n
        xs = [[0.0, w], [w + g1, 2 * w + g1], [2 * w + g1 + g2, 3 * w + g1 + g2]]
        domains = [(x, [0.0, 1.0]) for x in xs[:n]]
        area = plot_px + label_px
        bars = [(xs[1][1] + 0.008, 0.45), (xs[2][1] + 0.008, 0.45)]
        bar_len = 0.85
    layout = _base_layout(height or int(min(1900, area + top + 10)), title)
    layout["font"] = dict(FONT, size=font_size)
    if title:
        layout["title"]["font"] = dict(size=int(font_size * 1.3))
    hover = "query: %{y}<br>key: %{x}<br>NAME: %{z:.4f}<extra></extra>"
    traces = []
    for i, (z, name) in enumerate(list(zip((teacher, student, diff), titles))[:n]):
        sfx = "" if i == 0 else str(i + 1)
        is_diff = i == 2
        xd, yd = domains[i]
        traces.append(dict(
            type="heatmap", z=z, x=labels, y=labels, xaxis=f"x{sfx}", yaxis=f"y{sfx}", name=str(name),
            coloraxis="coloraxis2" if is_diff else "coloraxis", xgap=0, ygap=0,
            hovertemplate=hover.replace("NAME", "student − teacher" if is_diff else "weight")))
        layout[f"xaxis{sfx}"] = dict(domain=xd, anchor=f"y{sfx}", tickangle=-90, side="bottom", **tick)
        layout[f"yaxis{sfx}"] = dict(domain=yd, anchor=f"x{sfx}", autorange="reversed",
                                     showticklabels=xd[0] == 0.0, **tick)
    bar = dict(xanchor="left", len=bar_len, thickness=12, tickfont=dict(size=max(10, font_size - 1)))
    layout["coloraxis"] = dict(colorscale=map_colorscale(gamma), cmin=0.0, cmax=zmax,
                               colorbar=dict(title=dict(text="weight", side="top"), x=bars[0][0], y=bars[0][1],
                                             **bar))
    if difference:
        layout["coloraxis2"] = dict(colorscale=DIFF_SCALE, cmin=-dmax, cmax=dmax, cmid=0.0,
                                    colorbar=dict(title=dict(text="diff.", side="top"), x=bars[1][0],
                                                  y=bars[1][1], **bar))
    layout["annotations"] = [_panel_annotation(f"<b>{html.escape(str(name))}</b>", xd, yd, size=int(font_size * 1.1))
                             for name, (xd, yd) in zip(titles, domains)]
    layout["margin"] = dict(l=10, r=10, t=top, b=10)
    return go.Figure(data=traces, layout=layout)


def map_reading(teacher: np.ndarray, student: np.ndarray, tokens: Sequence[str], student_name: str = "the student",
                before: np.ndarray | None = None) -> list[str]:
    """What to notice in one teacher map and one student map (T, T), in sentences for a caption or a lecture.

    `before` is the student's map of the same text before training (epoch 0), when there is one.
    """
    from distill_core.metrics import map_metric
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


def scale_fonts(fig: go.Figure, factor: float) -> go.Figure:
    """The same figure with every text larger by `factor` (and a little taller), e.g. for a projector."""
    if factor == 1.0:
        return fig
    lay = fig.layout
    fig.update_layout(font_size=(lay.font.size or FONT["size"]) * factor)
    if lay.title.text:
        fig.update_layout(title_font_size=(lay.title.font.size or 15) * factor)
    for a in lay.annotations:
        a.font.size = (a.font.size or FONT["size"]) * factor
    for name in lay:
        axis = lay[name]
        if name.startswith(("xaxis", "yaxis")) and axis is not None and axis.tickfont.size:
            axis.tickfont.size = axis.tickfont.size * factor
    if lay.legend.font.size:
        lay.legend.font.size = lay.legend.font.size * factor
    if lay.height:
        fig.update_layout(height=int(lay.height * (1 + (factor - 1) / 2)))
    return fig


def selected_cell(selection, variants: Sequence[str], labels: Sequence[str]) -> tuple[str, int, int] | None:
    """(variant, pair index, head) of the cell clicked in a `variant_grids` chart, from Streamlit's selection
    state (`st.plotly_chart(..., on_select="rerun")`); None when nothing was clicked. `variants` are the grid's
    panels in order and `labels` its row labels."""
    try:
        points = selection["selection"]["points"]
    except (KeyError, TypeError):
        return None
    for p in points or []:
        k, x, y = p.get("curve_number"), str(p.get("x", "")), p.get("y")
        if k is None or not 0 <= int(k) < len(variants) or y not in list(labels) or not x.startswith("head "):
            continue
        return variants[int(k)], list(labels).index(y), int(x.split()[1])
    return None


# ---- small multiples ---------------------------------------------------------------------------------
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
    if maps.ndim == 3:
        n_heads = maps.shape[0]
        cols = cols or min(n_heads, 6)
        rows = math.ceil(n_heads / cols)
        cells = [(h // cols, h % cols, maps[h], f"head {h}" + (" · pruned" if h in set(greyed) else ""))
                 for h in range(n_heads)]
    elif maps.ndim == 4:
        rows, cols = maps.shape[0], maps.shape[1]
        row_names = row_names or [f"layer {r}" for r in range(rows)]
        cells = [(r, c, maps[r, c], f"head {c}" if r == 0 else None) for r in range(rows) for c in range(cols)]
    else:
        raise ValueError(f"head_grid needs (H, T, T) or (L, H, T, T) maps, got shape {maps.shape}")
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
    layout = _base_layout(height or int(max(180, min(1600, plot_h + (70 if title else 40)))), title)
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
        if maps.ndim == 3 and (r * cols + c) in set(greyed):
            shapes.append(dict(type="rect", xref=f"x{sfx} domain", yref=f"y{sfx} domain", x0=0, x1=1, y0=0, y1=1,
                               fillcolor="rgba(229, 231, 235, 0.82)", line=dict(color="#9ca3af", width=1)))
        if maps.ndim == 3 and (r * cols + c) in set(highlight):
            shapes.append(dict(type="rect", xref=f"x{sfx} domain", yref=f"y{sfx} domain", x0=0, x1=1, y0=0, y1=1,
                               line=dict(color="#dc2626", width=2.5)))
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


# ---- variants ----------------------------------------------------------------------------------------
def _variants(records: Sequence[dict], variants: Sequence[str] | None) -> list[str]:
    return list(variants) if variants is not None else run_variants({}, list(records))


def the(name: str, reference: str | None = None) -> str:
    """A model named in a sentence: "the baseline student", "the teacher", "variant kd_att_kl"."""
    label = model_label(name, reference)
    return f"the {label}" if name == TEACHER or label.endswith(" student") else f"variant {label}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _dash(name: str, reference: str | None) -> str:
    return REFERENCE_DASH if name == reference else "solid"


def _closer_word(metric: str) -> str:
    return f"{'lower' if LOWER_IS_CLOSER.get(metric, True) else 'higher'} = closer to the teacher"


def _last_epoch(records: Sequence[dict], epochs) -> float:
    """The right end of an epoch axis: the planned epochs when known, else the last recorded one, at least 1 (a
    run that has recorded only epoch 0 still gets an axis from 0 to its planned end)."""
    try:
        planned = float(epochs) if epochs is not None else 0.0
    except (TypeError, ValueError):
        planned = 0.0
    seen = [float(r["epoch"]) for r in records if isinstance(r.get("epoch"), (int, float))]
    return max([1.0, planned, *seen])


def variant_lines(records: Sequence[dict], value, title: str, y_title: str, variants: Sequence[str] | None = None,
                  reference: str | None = None, epochs: int | None = None, height: int = 280,
                  y_range: tuple[float, float] | None = None) -> go.Figure:
    """One line per variant of `value(record)` against epoch (the live curves); x spans 0..epochs."""
    variants = _variants(records, variants)
    colors = variant_colors(variants)
    traces = []
    for v in variants:
        pts = [(r["epoch"], value(r)) for r in records if r.get("student") == v]
        pts = [(e, y) for e, y in pts if y is not None and not (isinstance(y, float) and math.isnan(y))]
        if pts:
            traces.append(dict(type="scatter", x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                               name=v, line={"color": colors[v], "dash": _dash(v, reference)}))
    fig = go.Figure(data=traces)
    if not fig.data:
        fig.add_annotation(text="appears after the first epoch", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper", font={"color": "gray"})
        fig.update_yaxes(showticklabels=False, range=[0, 1])
    last = _last_epoch(records, epochs)
    fig.update_layout(**_base_layout(height, title), xaxis_title="epoch", yaxis_title=y_title,
                      legend={"orientation": "h", "y": -0.3},
                      xaxis={"dtick": 1 if last <= 12 else None, "range": [-0.2, last + 0.2]})
    fig.update_layout(margin={"l": 10, "r": 10, "t": 40, "b": 10})
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
    return fig


def loss_order(names) -> list[str]:
    """Loss names in the order their panels appear: cross-entropy first, then the teacher losses as the registry
    lists them, then any other name alphabetically."""
    names = set(names)
    return [n for n in LOSS_TITLES if n in names] + sorted(n for n in names if n not in LOSS_TITLES)


def loss_title(name: str) -> str:
    """A loss as a panel title: its short name, and on a second line what it measures (from vocab.LOSS_TITLES)."""
    head, _, rest = LOSS_TITLES.get(name, name).partition(" (")
    head, rest = html.escape(head, quote=False), html.escape(rest.rstrip(")"), quote=False)
    return f"<b>{head}</b>" + (f"<br><span style='font-size:10px'>{rest}</span>" if rest else "")


def _finite(y) -> bool:
    return isinstance(y, (int, float)) and not isinstance(y, bool) and math.isfinite(y)


def _epoch_panels(fig: go.Figure, n: int, rows: int, cols: int, last: float) -> None:
    """Axes of a grid of n panels over epochs 0..last: light grid, "epoch" under the lowest panel of each column,
    the empty cells of the last row hidden."""
    fig.update_xaxes(range=[0, last], dtick=1 if last <= 12 else None, showgrid=True, gridcolor="#f3f4f6",
                     zeroline=False)
    fig.update_yaxes(showgrid=True, gridcolor="#f3f4f6", zeroline=False)
    for i in range(n):
        if i + cols >= n:                                    # the lowest panel of its column
            fig.update_xaxes(title_text="epoch", row=i // cols + 1, col=i % cols + 1)
    for i in range(n, rows * cols):                         # the empty cells of the last row
        fig.update_xaxes(visible=False, row=i // cols + 1, col=i % cols + 1)
        fig.update_yaxes(visible=False, row=i // cols + 1, col=i % cols + 1)


def loss_components(records: Sequence[dict], step_records: Sequence[dict] | None = None,
                    variants: Sequence[str] | None = None, reference: str | None = None, epochs: int | None = None,
                    height: int | None = None, title: str = "Training losses, one panel per loss") -> go.Figure:
    """The training losses: one small panel per loss component, in it one line per variant that trains with it.

    Every line of a panel measures the same unweighted loss, so the variants compare; a variant's weighted sum
    ("total") depends on its own weights and is never drawn. records: metrics.jsonl, whose "train_loss" holds
    each component's mean over an epoch (markers, at the middle of the epoch they average); step_records:
    train_steps.jsonl ({"step", "epoch": fractional position, "student", "losses"}), drawn as thin lines.
    Colours and dashes are those of variant_lines. x spans 0..epochs when `epochs` is known, even before the first
    step.
    """
    records, steps = list(records or []), list(step_records or [])
    variants = _variants(records + steps, variants)
    colors = variant_colors(variants)
    means: dict[tuple[str, str], list] = {}        # (loss, variant) -> [(x, mean, epoch)]
    lines: dict[tuple[str, str], list] = {}        # (loss, variant) -> [(fractional epoch, value)]
    for r in records:
        v, e = r.get("student"), r.get("epoch")
        if v in variants and _finite(e) and e > 0:
            for k, y in (r.get("train_loss") or {}).items():
                if k != "total" and _finite(y):
                    means.setdefault((k, v), []).append((e - 0.5, float(y), e))
    for r in steps:
        v, e = r.get("student"), r.get("epoch")
        if v in variants and _finite(e):
            for k, y in (r.get("losses") or {}).items():
                if k != "total" and _finite(y):
                    lines.setdefault((k, v), []).append((float(e), float(y)))
    losses = loss_order({k for k, _ in [*means, *lines]})
    n = max(1, len(losses))
    cols = n if n <= 3 else 2 if n == 4 else 3
    rows = math.ceil(n / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[loss_title(k) for k in losses] or None,
                        horizontal_spacing=0.08, vertical_spacing=0.3 / rows)
    fig.update_annotations(font_size=12)
    shown: set[str] = set()
    for i, k in enumerate(losses):
        row, col = divmod(i, cols)
        short = html.escape(LOSS_TITLES.get(k, k).partition(" (")[0], quote=False)
        for v in variants:
            pts_l, pts_m = sorted(lines.get((k, v), [])), sorted(means.get((k, v), []))
            label = html.escape(model_label(v, reference), quote=False)
            style = dict(name=model_label(v, reference), legendgroup=v, meta=dict(loss=k, student=v))
            line = dict(color=colors[v], dash=_dash(v, reference))
            if pts_l:
                fig.add_trace(go.Scatter(
                    x=[p[0] for p in pts_l], y=[p[1] for p in pts_l], mode="lines", opacity=0.75,
                    line=dict(**line, width=1.2), showlegend=v not in shown, **style,
                    hovertemplate=f"{label} · {short}<br>epoch %{{x:.2f}}: %{{y:.4g}}<extra></extra>"),
                    row=row + 1, col=col + 1)
                shown.add(v)
            if pts_m:
                fig.add_trace(go.Scatter(
                    x=[p[0] for p in pts_m], y=[p[1] for p in pts_m], customdata=[p[2] for p in pts_m],
                    mode="markers" if pts_l else "lines+markers", line=dict(**line, width=2),
                    marker=dict(color=colors[v], size=8, symbol="circle-open" if v == reference else "circle",
                                line=dict(color=colors[v], width=2)),
                    showlegend=v not in shown, **style,
                    hovertemplate=f"{label} · {short}<br>mean over epoch %{{customdata}}: %{{y:.4g}}<extra></extra>"),
                    row=row + 1, col=col + 1)
                shown.add(v)
    _epoch_panels(fig, n, rows, cols, _last_epoch(records + steps, epochs))
    if not losses:
        fig.add_annotation(text="appears after the first training steps", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper", font={"color": "gray"})
        fig.update_yaxes(showticklabels=False, range=[0, 1])
    how = "thin lines: training steps, dots: epoch means" if lines else "dots: the mean over each epoch"
    note = f" <sup>(each loss unweighted; {how})</sup>" if losses else ""
    fig.update_layout(**_base_layout(height or 120 + 250 * rows, f"{title}{note}" if title else None),
                      legend=dict(orientation="h", y=-0.12 if rows > 1 else -0.25, x=0))
    fig.update_layout(margin=dict(l=10, r=10, t=95 if title else 50, b=10))      # room for two-line panel titles
    return fig


# ---- divergence over epochs --------------------------------------------------------------------------
def pair_labels(pairs: Sequence[Sequence[int]]) -> list[str]:
    """'teacher L3 → student L1' for each mapped (teacher_layer, student_layer) pair."""
    return [f"teacher L{t} → student L{s}" for t, s in pairs]


def divergence_series(records: Sequence[dict], student: str, metric: str) -> tuple[list[int], np.ndarray]:
    """Epochs and the metric per epoch, mapped pair and compared head: (epochs, (E, P, H))."""
    recs = sorted((r for r in records if r.get("student") == student and metric in r.get("attention", {})),
                  key=lambda r: r["epoch"])
    if not recs:
        return [], np.zeros((0, 0, 0))
    return [r["epoch"] for r in recs], np.asarray([r["attention"][metric] for r in recs], dtype=np.float64)


def divergence_curves(records: Sequence[dict], metric: str, variants: Sequence[str] | None = None,
                      reference: str | None = None, per_head: bool = False, labels: Sequence[str] | None = None,
                      height: int = 380) -> go.Figure:
    """One panel per mapped layer pair: the metric across epochs, every variant on the same axes.

    Lines show the mean over compared heads (the reference variant dashed); with per_head, every compared head
    gets its own thin line.
    """
    variants = _variants(records, variants)
    colors = variant_colors(variants)
    series = {v: divergence_series(records, v, metric) for v in variants}
    series = {v: s for v, s in series.items() if s[0]}
    n_pairs = max((s[1].shape[1] for s in series.values()), default=1)
    labels = list(labels) if labels is not None and len(labels) >= n_pairs else [f"pair {k}" for k in range(n_pairs)]
    fig = make_subplots(rows=1, cols=n_pairs, subplot_titles=labels[:n_pairs], shared_yaxes=True,
                        horizontal_spacing=0.04 if n_pairs > 1 else 0.0)
    traces, cols = [], []
    for v, (epochs, values) in series.items():
        dash, name = _dash(v, reference), model_label(v, reference)
        for k in range(values.shape[1]):
            pair = html.escape(labels[k], quote=False)
            if per_head:
                for h in range(values.shape[2]):
                    head = f"{labels[k]} · head {h} · {name}"         # a thin line says which head it is
                    traces.append(dict(
                        type="scatter", x=epochs, y=values[:, k, h], mode="lines+markers", name=head,
                        legendgroup=v, showlegend=False, line=dict(color=colors[v], width=1, dash=dash),
                        marker=dict(size=4), opacity=0.55, customdata=[[k, h]] * len(epochs),
                        hovertemplate=f"{html.escape(head, quote=False)}: %{{y:.4g}}<br>epoch %{{x}} · {metric}"
                                      f"<extra></extra>"))
                    cols.append(k + 1)
            traces.append(dict(
                type="scatter", x=epochs, y=values[:, k, :].mean(-1), mode="lines+markers",
                name=name + (" (mean of heads)" if per_head else ""), legendgroup=v,
                showlegend=k == 0, line=dict(color=colors[v], width=3, dash=dash), marker=dict(size=7),
                hovertemplate=f"{pair} · {html.escape(name, quote=False)}"
                              f"{' · mean of heads' if values.shape[2] > 1 else ''}: %{{y:.4g}}<br>epoch %{{x}} · "
                              f"{metric}<extra></extra>"))
            cols.append(k + 1)
    if traces:
        fig.add_traces(traces, rows=[1] * len(traces), cols=cols)
    fig.update_xaxes(title_text="epoch", dtick=1, showgrid=True, gridcolor="#f3f4f6", zeroline=False)
    fig.update_yaxes(showgrid=True, gridcolor="#f3f4f6", zeroline=False, exponentformat="e")
    fig.update_yaxes(title_text=f"{METRIC_LABELS.get(metric, metric)}<br><sup>{_closer_word(metric)}</sup>",
                     row=1, col=1)
    fig.update_layout(**_base_layout(height), legend=dict(orientation="h", y=-0.22, x=0))
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=10))
    return fig


def variant_grids(grids: dict[str, np.ndarray], labels: Sequence[str], metric: str = "js",
                  variants: Sequence[str] | None = None, reference: str | None = None, title: str = "",
                  cols: int | None = None, height: int | None = None) -> go.Figure:
    """Mapped layer pairs x compared heads of every variant, side by side on one colour scale.

    grids: variant -> (pairs, heads) values of one epoch. Red = far from the teacher for every metric.
    Up to four variants share one row; more wrap into rows of three.
    """
    names = [v for v in (variants if variants is not None else grids) if v in grids]
    if not names:
        raise ValueError("variant_grids needs the values of at least one variant")
    colors = variant_colors(list(variants) if variants is not None else names)
    arrays = {v: np.asarray(grids[v], dtype=np.float64) for v in names}
    for v, a in arrays.items():
        if a.ndim != 2:
            raise ValueError(f"the grid of {v} must hold (pairs, heads) values, got shape {a.shape}")
        if a.shape[0] != len(labels):
            raise ValueError(f"{len(labels)} pair labels for the {a.shape[0]} rows of {v}")
    lo = min(float(np.nanmin(a)) for a in arrays.values())
    hi = max(float(np.nanmax(a)) for a in arrays.values())
    tiny = max(abs(lo), abs(hi)) < 0.01
    cols = max(1, min(cols or (len(names) if len(names) <= 4 else 3), len(names)))
    rows = math.ceil(len(names) / cols)
    # vertical layout in pixels: a title line above each panel, its head labels below, a gap between rows
    cell, head_px, label_px, gap_px = 34, 22, 26, 18
    panel_px = cell * len(labels)
    row_px = head_px + panel_px + label_px
    plot_px = rows * row_px + (rows - 1) * gap_px
    left, right, hgap = 0.16, 0.92, 0.02
    pw = (right - left - hgap * (cols - 1)) / cols
    heads = [f"head {h}" for h in range(next(iter(arrays.values())).shape[1])]
    axis = dict(type="category", showgrid=False, ticks="")
    traces, annotations = [], []
    top_margin = 60 if title else 10
    layout = _base_layout(height or plot_px + top_margin + 10, title)
    layout["margin"] = dict(l=10, r=10, t=top_margin, b=10)
    for k, v in enumerate(names):
        r, c = divmod(k, cols)
        sfx = "" if k == 0 else str(k + 1)
        xd = [left + c * (pw + hgap), left + c * (pw + hgap) + pw]
        top = r * (row_px + gap_px) + head_px                    # pixels from the top of the plot area
        yd = [max(0.0, 1.0 - (top + panel_px) / plot_px), min(1.0, 1.0 - top / plot_px)]
        p_n, h_n = arrays[v].shape
        traces.append(dict(
            type="heatmap", z=arrays[v], x=heads, y=list(labels), xaxis=f"x{sfx}", yaxis=f"y{sfx}", name=v,
            coloraxis="coloraxis",
            texttemplate="%{z:.2e}" if tiny else "%{z:.3g}", textfont=dict(size=10), xgap=2, ygap=2,
            customdata=[[[k, h] for h in range(h_n)] for k in range(p_n)],     # [pair index, head] of each cell
            hovertemplate=f"%{{y}} · %{{x}} · {html.escape(model_label(v, reference), quote=False)}: "
                          f"%{{z:.4g}}<br>{metric}<extra></extra>"))
        layout[f"xaxis{sfx}"] = dict(domain=xd, anchor=f"y{sfx}", side="bottom", **axis)
        layout[f"yaxis{sfx}"] = dict(domain=yd, anchor=f"x{sfx}", autorange="reversed", showticklabels=c == 0, **axis)
        annotations.append(dict(text=f"<b>{html.escape(model_label(v, reference))}</b>", x=xd[0], y=yd[1],
                                xref="paper", yref="paper", xanchor="left", yanchor="bottom", showarrow=False,
                                font=dict(size=12, color=colors[v])))
    scale = "Reds" if LOWER_IS_CLOSER.get(metric, True) else "Reds_r"
    layout["coloraxis"] = dict(colorscale=scale, cmin=lo, cmax=hi if hi > lo else lo + 1e-12,
                               colorbar=dict(thickness=12, x=right + 0.01, xanchor="left", len=1.0,
                                             tickformat=".1e" if tiny else None,
                                             title=dict(text=metric, side="top")))
    layout["annotations"] = annotations
    return go.Figure(data=traces, layout=layout)


def _moved(first: float, last: float) -> str:
    if math.isclose(first, last, rel_tol=1e-3, abs_tol=1e-12):
        return f"stayed at {last:.3g}"
    return f"{'fell' if last < first else 'rose'} from {first:.3g} to {last:.3g}"


def _decimals(d: float) -> int:
    """Decimals that show a difference d between two similarities: 2, more for a smaller one."""
    return 2 if d == 0 or not math.isfinite(d) else max(2, min(6, -math.floor(math.log10(abs(d)))))


def _similarity_gap(a: float, b: float) -> str:
    """Two similarities and their difference, with enough decimals to show it: "0.94 vs 0.75, +0.19"."""
    dec = _decimals(a - b)
    return f"{a:.{dec}f} vs {b:.{dec}f}, {a - b:+.{dec}f}"


def _closeness_sentences(verdicts: list[tuple], ref: str, epoch: int, name, metric: str = "js") -> list[str]:
    """Sentences saying which variants attend more like the teacher than the reference at `epoch`.

    ref: the reference as named in a sentence ("the baseline student"); name(v): a variant as named in one.
    Divergences (lower = closer) compare as ratios ("4× closer"); similarities, where a ratio means nothing, as
    differences ("cosine similarity 0.94 vs 0.75, +0.19")."""
    ratio_ok = LOWER_IS_CLOSER.get(metric, True)
    label = METRIC_LABELS.get(metric, metric)
    if len(verdicts) == 1:
        v, kind, ratio, a, b = verdicts[0][:5]
        if ratio_ok:
            closer, further = f"{ratio:.3g}× closer to the teacher's than {ref}'s", \
                f"not closer to the teacher's than {ref}'s ({ref}'s is {ratio:.3g}× closer)"
        else:
            closer, further = f"closer to the teacher's than {ref}'s ({label} {_similarity_gap(a, b)})", \
                f"not closer to the teacher's than {ref}'s ({label} {_similarity_gap(a, b)})"
        return [{"closer": f"At epoch {epoch} {name(v)}'s attention is {closer}: its teacher losses pulled it "
                           f"towards the teacher.",
                 "further": f"At epoch {epoch} {name(v)}'s attention is {further}: its teacher losses have not "
                            f"pulled it towards the teacher.",
                 "level": f"At epoch {epoch} {name(v)} and {ref} are about equally close to the teacher."}[kind]]
    out = []
    short = {x[0]: model_label(x[0]) for x in verdicts}
    if ratio_ok:
        closer = [f"{short[v]} ({r:.3g}× closer)" for v, k, r, *_ in verdicts if k == "closer"]
        further = [f"{short[v]} ({ref}'s is {r:.3g}× closer)" for v, k, r, *_ in verdicts if k == "further"]
        scale = ""
    else:
        closer = [f"{short[v]} ({_similarity_gap(a, b)})" for v, k, _, a, b, *_ in verdicts if k == "closer"]
        further = [f"{short[v]} ({_similarity_gap(a, b)})" for v, k, _, a, b, *_ in verdicts if k == "further"]
        scale = f" (mean {label}, the variant's vs {ref}'s; higher = closer)"
    level = [short[v] for v, k, *_ in verdicts if k == "level"]
    if closer:
        out.append(f"At epoch {epoch}, {len(closer)} of {len(verdicts)} variants attend more like the teacher than "
                   f"{ref}{scale}: {', '.join(closer)}.")
    if further:
        out.append(f"Not closer to the teacher than {ref}{scale if not closer else ''}: {', '.join(further)}; "
                   f"{'their teacher losses have' if len(further) > 1 else 'its teacher losses have'} not pulled "
                   f"{'their' if len(further) > 1 else 'its'} attention towards the teacher's.")
    if level:
        out.append(f"About as close to the teacher as {ref}: {', '.join(level)}.")
    return out


ABOUT_AS_CLOSE = 0.05       # distances to the teacher within 5% of each other read as "about equally close"


def _verdicts_against(series: dict, ref: str, others: list[str], last: dict, distance) -> list[tuple]:
    """(variant, "closer" | "further" | "level", ratio, its mean, the reference's mean, epoch) of each variant
    against the reference, at their last common epoch; series: variant -> (epochs, mean per epoch, (E, P, H)
    values). The ratio is of the distances to the teacher (larger over smaller); the means are the metric's."""
    verdicts = []
    for v in others:
        e_common = min(last[v], last[ref])
        if e_common not in series[v][0] or e_common not in series[ref][0]:
            continue
        mv = float(series[v][1][series[v][0].index(e_common)])
        mr = float(series[ref][1][series[ref][0].index(e_common)])
        dv, dr = distance(mv), distance(mr)
        if (dv <= 1e-12 and dr <= 1e-12) or math.isclose(dv, dr, rel_tol=ABOUT_AS_CLOSE):
            verdicts.append((v, "level", 1.0, mv, mr, e_common))
        elif dv < dr:
            verdicts.append((v, "closer", dr / max(dv, 1e-300), mv, mr, e_common))
        else:
            verdicts.append((v, "further", dv / max(dr, 1e-300), mv, mr, e_common))
    return verdicts


def _largest_move(series: dict, candidates: list[str], distance, lower: bool = True) -> tuple | None:
    """(change, variant, pair index, first epoch, first value, last value) of the mapped pair that moved most
    towards the teacher among `candidates`, or None. change: end / start distance for a divergence (below 1: it
    moved closer), the gain in similarity for a similarity (above 0: it moved closer)."""
    best = None
    for v in candidates:
        e, _, vals = series[v]
        first, end = vals[0].mean(-1), vals[-1].mean(-1)
        if len(first) < 2 or len(e) < 2:
            continue
        if lower:
            start = np.array([distance(x) for x in first])
            if not np.all(start > 1e-12):
                continue
            change = np.array([distance(x) for x in end]) / start
            k = int(np.argmin(change))
            better = best is None or change[k] < best[0]
        else:
            change = end - first
            k = int(np.argmax(change))
            better = best is None or change[k] > best[0]
        if better:
            best = (float(change[k]), v, k, e[0], float(first[k]), float(end[k]))
    return best


def _split_losses(weights: dict) -> tuple[list[str], list[str]]:
    """A variant's active attention losses, and its other teacher losses (everything but the labels' loss)."""
    active = [k for k, w in (weights or {}).items() if w and w > 0]
    att = [k for k in active if k in ATTENTION_LOSSES or k.startswith("attention")]
    return att, [k for k in active if k != LABEL_LOSS and k not in att]


def _and(items: Sequence[str]) -> str:
    items = list(items)
    return "" if not items else items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _attribution_sentences(series: dict, verdicts: list[tuple], losses: dict, ref: str | None, last: dict,
                           distance, metric: str, the_) -> list[str]:
    """What the run can and cannot credit each variant's closer attention to, from its weighted losses.

    A variant with an attention loss and another teacher loss is compared with a variant that has the same other
    teacher losses and no attention loss when the run has one; without one, its closer attention cannot be
    credited to the attention loss alone. A variant closer than the reference with no attention loss got there
    from its other teacher losses alone."""
    kinds = {x[0]: x[1] for x in verdicts}
    label = METRIC_LABELS.get(metric, metric)
    out = []
    for v in series:
        if v == ref or v not in losses:
            continue
        att, other = _split_losses(losses[v])
        who, from_ = _cap(the_(v)), _and([LOSS_SOURCES.get(k, f"the teacher through {k}") for k in other])
        if att and other:
            twins = [w for w in series if w != v and w in losses and not _split_losses(losses[w])[0]
                     and set(_split_losses(losses[w])[1]) == set(other)]
            twins.sort(key=lambda w: any(losses[w].get(k) != losses[v].get(k) for k in other))   # same weights first
            pair = _verdicts_against(series, twins[0], [v], last, distance) if twins else []
            if pair:
                w, (_, kind, ratio, a, b, e) = twins[0], pair[0]
                if LOWER_IS_CLOSER.get(metric, True):
                    c_note, f_note = f"{ratio:.3g}× closer", f"{w}'s is {ratio:.3g}× closer"
                else:
                    c_note = f_note = f"{label} {_similarity_gap(a, b)}"
                shared = f"{who} and {the_(w)} both learn from {_and(other)}; only {v} adds {_and(att)}"
                out.append({
                    "closer": f"{shared}, and at epoch {e} its attention is closer to the teacher's than {w}'s "
                              f"({c_note}): that difference is what the attention loss added.",
                    "further": f"{shared}, yet at epoch {e} its attention is not closer to the teacher's than "
                               f"{w}'s ({f_note}): in this run the attention loss added nothing that "
                               f"{_and(other)} had not done.",
                    "level": f"{shared}, and at epoch {e} their attention is about equally close to the "
                             f"teacher's: the attention loss added nothing measurable on top of {_and(other)}."
                }[kind])
            elif kinds.get(v) == "closer":
                out.append(f"{who} learns from {_and(other)} as well as {_and(att)}, so this run cannot credit its "
                           f"closer attention to the attention loss alone: learning from {from_} can move attention "
                           f"too. A variant with {_and(other)} and no attention loss would tell the two apart.")
        elif att and kinds.get(v) == "closer":
            out.append(f"{who}'s only teacher loss is {_and(att)}, so its closer attention can be credited to "
                       f"that loss.")
        elif other and kinds.get(v) == "closer":
            than = f" than {the_(ref)}'s" if ref else ""
            out.append(f"{who} has no attention loss: learning from {from_} alone ({_and(other)}) brought its "
                       f"attention closer to the teacher's{than}.")
    return out


def divergence_reading(records: Sequence[dict], metric: str, labels: Sequence[str] | None = None,
                       variants: Sequence[str] | None = None, reference: str | None = None,
                       losses: dict[str, dict[str, float]] | None = None) -> str:
    """A plain-language reading of how the metric moved, every variant against the reference, from the records.

    losses: each variant's weighted losses ({variant: {loss: weight}}, from the run's config); with them the
    reading ends with what the run can and cannot credit each variant's closer attention to."""
    name = METRIC_LABELS.get(metric, metric)
    lower = LOWER_IS_CLOSER.get(metric, True)
    variants = _variants(records, variants)
    series = {v: divergence_series(records, v, metric) for v in variants}
    series = {v: (e, vals.mean(axis=(1, 2)), vals) for v, (e, vals) in series.items() if e}
    if not series:
        return f"No {name} has been recorded yet."

    def distance(x: float) -> float:    # how far from the teacher: the metric, or 1 - cosine
        return x if lower else 1.0 - x

    def lbl(v: str) -> str:
        return model_label(v, reference)

    last = {v: e[-1] for v, (e, _, _) in series.items()}
    if all(len(e) == 1 for e, _, _ in series.values()):
        e0 = min(last.values())
        values = ", ".join(f"{lbl(v)} {m[0]:.3g}" for v, (_, m, _) in series.items())
        return f"Only epoch {e0} has been recorded so far. Mean {name} to the teacher: {values}."
    parts = []
    ref = reference if reference in series else None
    others = [v for v in series if v != ref]
    verdicts = []
    if ref is not None and others:
        en = min(last.values())
        verdicts = _verdicts_against(series, ref, others, last, distance)
        parts += _closeness_sentences(verdicts, the(ref, reference), en, lambda x: the(x, reference), metric)
    elif len(series) > 1:
        en = min(last.values())
        at = {v: distance(m[e.index(en)]) for v, (e, m, _) in series.items() if en in e}
        best, worst = min(at, key=at.get), max(at, key=at.get)
        parts.append(f"This run has no labels-only reference variant to measure the teacher's effect against. At "
                     f"epoch {en} the attention closest to the teacher's is {the(best, reference)}'s, the furthest "
                     f"{the(worst, reference)}'s.")
    e_first, e_last = min(e[0] for e, _, _ in series.values()), max(last.values())
    moves = "; ".join(f"{lbl(v)} {_moved(m[0], m[-1])}"
                      + ("" if (e[0], e[-1]) == (e_first, e_last) else f" (epochs {e[0]}–{e[-1]})")
                      for v, (e, m, _) in series.items())
    parts.append(f"Mean {name} from epoch {e_first} to epoch {e_last}: {moves}.")
    best = _largest_move(series, others if ref is not None else list(series), distance, lower)
    if best is not None:
        change, v, k, e0, first, end = best
        lab = labels[k] if labels is not None and k < len(labels) else f"pair {k}"
        if lower and change < 1:
            parts.append(f"The largest move towards the teacher was in {lab} of {the(v, reference)}: its distance to "
                         f"the teacher shrank to {change:.0%} of its epoch-{e0} value.")
        elif not lower and change > 0:
            dec = _decimals(change)
            parts.append(f"The largest move towards the teacher was in {lab} of {the(v, reference)}: its {name} "
                         f"rose from {first:.{dec}f} at epoch {e0} to {end:.{dec}f} ({change:+.{dec}f}).")
        else:
            parts.append("No mapped layer of any variant moved closer to the teacher.")
    if losses:
        parts += _attribution_sentences(series, verdicts, losses, ref, last, distance, metric,
                                        lambda x: the(x, reference))
    return " ".join(parts)


# ---- accuracy and efficiency -------------------------------------------------------------------------
def binomial_halfwidth(p: float, n: int, z: float = 1.96) -> float:
    """Half-width of the normal-approximation 95% interval of an accuracy p measured on n examples."""
    if n <= 0:
        return float("nan")
    return z * math.sqrt(max(p * (1.0 - p), 0.0) / n)


def difference_interval(p1: float, p2: float, n: int, z: float = 1.96) -> tuple[float, float, float]:
    """p1 - p2 and its approximate 95% interval, treating both accuracies as independent binomials on n examples."""
    d = p1 - p2
    half = z * math.sqrt(max(p1 * (1 - p1), 0.0) / n + max(p2 * (1 - p2), 0.0) / n) if n > 0 else float("nan")
    return d, d - half, d + half


def _models(d: dict, names: Sequence[str] | None) -> list[str]:
    """Teacher first, then the variants in run order (the keys of a summary's dict when names is None)."""
    names = list(names) if names is not None else [k for k in d if k != TEACHER]
    return [TEACHER, *[n for n in names if n != TEACHER]]


def accuracy_verdicts(accuracy: dict, n: int, variants: Sequence[str], reference: str | None) -> list[dict]:
    """Each variant against the reference: accuracy, difference, its 95% interval and the verdict.

    verdict: "better" / "worse" when the interval excludes zero, "unclear" when it includes it; the reference's
    own row has verdict "reference"; a variant without test accuracy is left out.
    """
    ref = accuracy.get(reference) if reference else None
    rows = []
    for v in variants:
        a = accuracy.get(v)
        if a is None:
            continue
        row = {"variant": v, "accuracy": float(a), "diff": None, "lo": None, "hi": None, "verdict": "reference"}
        if v != reference:
            if ref is None or not n:
                row["verdict"] = "no reference"
            else:
                d, lo, hi = difference_interval(float(a), float(ref), n)
                row.update(diff=d, lo=lo, hi=hi, verdict="better" if lo > 0 else "worse" if hi < 0 else "unclear")
        rows.append(row)
    return rows


SWEEP_HINT = "a sweep across seeds (`python -m distill_core sweep --seeds 0-4`) tells more"
TEACHER_PROBLEM = ("**The teacher is the problem**: distilling from it cannot help. Fine-tune it longer "
                   "(teacher.finetune_epochs; a built-in image teacher: image.teacher_epochs) or give it more data.")


def paired_verdicts(paired: dict, accuracy: dict, variants: Sequence[str], reference: str | None) -> list[dict]:
    """accuracy_verdicts' rows, from summary.json's "paired" (stats.paired_comparison of each variant against the
    reference on the same test examples).

    diff, lo, hi are the paired bootstrap interval; each row keeps the comparison's other keys (n, ref_accuracy,
    p, ref_only, variant_only). verdict is the engine's ("better" / "worse" only when McNemar's p < 0.05), with
    "no clear difference" written "unclear" as in accuracy_verdicts; the reference's row has verdict "reference".
    """
    rows = []
    for v in variants:
        c = paired.get(v)
        if v == reference:
            a = accuracy.get(v)
            a = a if a is not None else next((x["ref_accuracy"] for x in paired.values()), None)
            if a is not None:
                rows.append({"variant": v, "accuracy": float(a), "diff": None, "lo": None, "hi": None,
                             "verdict": "reference"})
        elif c is not None:
            rows.append({**c, "variant": v, "accuracy": float(c["accuracy"]),
                         "verdict": c["verdict"] if c["verdict"] in ("better", "worse") else "unclear"})
    return rows


def paired_sentence(c: dict, variant: str, reference: str) -> str:
    """One variant against the reference in words (markdown), from a paired comparison (stats.paired_comparison:
    n, ref_accuracy, accuracy, diff, lo, hi, ref_only, variant_only, p, verdict)."""
    v, rl = model_label(variant, reference), model_label(reference, reference)
    pts = (f"{100 * c['diff']:+.1f} points (paired 95% interval {100 * c['lo']:+.1f} to {100 * c['hi']:+.1f}; "
           f"McNemar {p_text(c['p'])})")
    pair = f"{c['accuracy']:.1%} vs {c['ref_accuracy']:.1%}"
    b, k = int(c["ref_only"]), int(c["variant_only"])
    disc = f"the {rl} alone was right on {b} example{'' if b == 1 else 's'}, {v} alone on {k}"
    if c["verdict"] == "better":
        return f"**{v} beat the {rl}**: {pair}, a difference of {pts}; {disc}."
    if c["verdict"] == "worse":
        return f"**The {rl} beat {v}**: {pair}; {v} minus the {rl} is {pts}; {disc}."
    return (f"**No clear difference** between {v} and the {rl} on {c['n']} examples: {pair}, a difference of "
            f"{pts}; {disc}. This test set cannot tell them apart: {SWEEP_HINT}.")


def best_epoch_text(best_epoch: dict, variants: Sequence[str], reference: str | None = None) -> str | None:
    """The variants whose best validation epoch was not their last, with the test accuracy of those weights (kept
    beside the final ones); None when every variant peaked at its last epoch."""
    earlier = [(v, b) for v in variants if (b := best_epoch.get(v)) and b.get("epoch") != b.get("final_epoch")]
    if not earlier:
        return None
    parts = [f"{model_label(v, reference)} at epoch {b['epoch']} of {b['final_epoch']}"
             + (f" (test {b['test_accuracy']:.1%} with those weights)" if b.get("test_accuracy") is not None else "")
             for v, b in earlier]
    return ("Best validation accuracy before the last epoch: " + "; ".join(parts) + ". The table reports the final "
            "weights, the ones every variant is compared with; the run keeps both, and the explorer reads a typed "
            "sentence with either.")


def health_lines(warnings: Sequence[dict]) -> list[str]:
    """What a run's warnings (summary.json "warnings": {"model", "kind", "message"}) tell a reader, most important
    first: a line saying so when the teacher itself is among them, then each warning's message."""
    out = [TEACHER_PROBLEM] if any(w.get("model") == TEACHER for w in warnings) else []
    return out + [str(w["message"]) for w in warnings if w.get("message")]


def verdict_lines(rows: Sequence[dict], reference: str | None) -> list[str]:
    """One sentence per variant compared with the reference (markdown); rows from paired_verdicts are
    read with paired_sentence."""
    ref = next((r for r in rows if r["verdict"] == "reference"), None)
    out = []
    for r in rows:
        if r["diff"] is None or ref is None:
            continue
        v, rl = model_label(r["variant"], reference), model_label(reference, reference)
        if "p" in r:
            out.append(paired_sentence(r, r["variant"], reference))
            continue
        pts = (f"{r['diff'] * 100:+.1f} points (95% interval {r['lo'] * 100:+.1f} to {r['hi'] * 100:+.1f})")
        pair = f"{r['accuracy']:.1%} vs {ref['accuracy']:.1%}"
        if r["verdict"] == "better":
            out.append(f"**{v} beat the {rl}**: {pair}, a difference of {pts}.")
        elif r["verdict"] == "worse":
            out.append(f"**The {rl} beat {v}**: {pair}; {v} minus the {rl} is {pts}.")
        else:
            side = f"{v} is ahead, " if r["diff"] > 0 else f"{v} is behind, " if r["diff"] < 0 else ""
            out.append(f"**No clear winner** between {v} and the {rl}: {side}{pair}, a difference of {pts}; the "
                       f"interval includes zero, so this test set cannot tell them apart.")
    return out


def accuracy_bars(accuracy: dict, n: int | None = None, title: str = "Test accuracy",
                  variants: Sequence[str] | None = None, reference: str | None = None,
                  majority: float | None = None) -> go.Figure:
    """Test accuracy of every variant that has one: a bar each with its 95% error bar when n is known; the
    teacher as a labelled horizontal line (its 95% interval a pale band) and `majority`, what always answering the
    most common class scores, as a dashed one.

    The y axis is zoomed to the data (every error bar and line inside it, with a margin), so a difference of a
    point or two shows; its title says when it does not start at 0."""
    models = _models(accuracy, variants)
    colors = variant_colors(models[1:])
    names = [m for m in models[1:] if accuracy.get(m) is not None]
    acc = [float(accuracy[m]) for m in names]
    err = [binomial_halfwidth(a, n) for a in acc] if n else None
    teacher = accuracy.get(TEACHER)
    t_err = binomial_halfwidth(float(teacher), n) if teacher is not None and n else 0.0
    traces = []
    if names:
        traces.append(dict(
            type="bar", x=[model_label(m, reference) for m in names], y=acc,
            marker=dict(color=[colors[m] for m in names]),
            name="students", showlegend=False, customdata=err or [None] * len(acc),
            error_y=dict(type="data", array=err, visible=True, color="#111827", thickness=1.5) if err else None,
            hovertemplate="%{x}: %{y:.2%}" + (" ± %{customdata:.2%}" if err else "") + "<extra></extra>"))
    # the y range: every bar top with its whisker, the teacher with its band, the majority rate; then a margin
    ends = [a + s * e for a, e in zip(acc, err or [0.0] * len(acc)) for s in (-1, 1)]
    ends += [float(teacher) - t_err, float(teacher) + t_err] if teacher is not None else []
    ends += [float(majority)] if majority is not None else []
    lo, hi = (min(ends), max(ends)) if ends else (0.0, 1.0)
    pad = max(0.15 * (hi - lo), 0.01)
    y0, y1 = max(0.0, lo - pad), min(1.0, hi + 1.6 * pad)       # more room on top for the lines' labels
    if y0 < 0.1:
        y0 = 0.0                                               # close to 0 anyway: start there
    if teacher is not None:
        t = float(teacher)
        if t_err:                                              # the teacher's own 95% interval, as a pale band
            traces.append(dict(type="scatter", x=[0, 1, 1, 0, 0],
                               y=[t - t_err, t - t_err, t + t_err, t + t_err, t - t_err],
                               xaxis="x2", mode="lines", fill="toself", fillcolor="rgba(55,65,81,0.10)",
                               line=dict(width=0), hoverinfo="skip", showlegend=False, name="teacher 95%"))
        traces.append(dict(
            type="scatter", x=[0, 1], y=[t, t], xaxis="x2", mode="lines", name=f"teacher {t:.1%}", showlegend=False,
            line=dict(color=colors[TEACHER], width=2.5),
            hovertemplate=f"teacher: {t:.2%}" + (f" ± {t_err:.2%}" if t_err else "") + "<extra></extra>"))
    fig = go.Figure(data=traces)
    if teacher is not None:
        fig.add_annotation(text=f"<b>teacher {t:.1%}</b>", x=0.0, xref="paper", y=t, yref="y", xanchor="left",
                           yanchor="bottom", showarrow=False, font=dict(size=11, color=colors[TEACHER]))
    fig.update_layout(**_base_layout(360, title + (f" <sup>(n = {n}, whiskers = 95% interval)</sup>" if n else "")))
    fig.update_layout(xaxis2=dict(overlaying="x", range=[0, 1], visible=False, fixedrange=True), hovermode="closest")
    if majority is not None:
        fig.add_hline(y=float(majority), line=dict(color="#6b7280", width=1.5, dash="dash"),
                      annotation_text=f"always the most common class: {majority:.0%}",
                      annotation_position="top right", annotation_font=dict(size=11, color="#374151"),
                      annotation_bgcolor="rgba(255,255,255,0.85)")
    fine = y1 - y0 < 0.06
    fig.update_yaxes(range=[y0, y1], tickformat=".1%" if fine else ".0%", gridcolor="#f3f4f6",
                     title_text="accuracy" + ("<br><sup>axis does not start at 0</sup>" if y0 > 0 else ""))
    labels = [model_label(m, reference) for m in names]           # each bar's accuracy under its name
    fig.update_xaxes(tickangle=0 if len(names) <= 5 else -30, tickmode="array", tickvals=labels,
                     ticktext=[f"{html.escape(x, quote=False)}<br><b>{a:.1%}</b>" for x, a in zip(labels, acc)])
    return fig


def difference_chart(rows: Sequence[dict], reference: str, variants: Sequence[str] | None = None,
                     height: int | None = None) -> go.Figure:
    """Each variant's accuracy minus the reference's, in points, with its 95% interval; a line at zero.

    Rows from paired_verdicts draw the paired bootstrap interval and show McNemar's p on hover."""
    shown = [r for r in rows if r["diff"] is not None]
    paired = bool(shown) and all("p" in r for r in shown)
    colors = variant_colors(list(variants) if variants is not None else [r["variant"] for r in rows])
    traces = []
    for r in shown:
        d, lo, hi = 100 * r["diff"], 100 * r["lo"], 100 * r["hi"]
        traces.append(dict(
            type="scatter", x=[d], y=[model_label(r["variant"], reference)], mode="markers", showlegend=False,
            marker=dict(color=colors[r["variant"]], size=12),
            error_x=dict(type="data", symmetric=False, array=[hi - d], arrayminus=[d - lo], thickness=2,
                         color=colors[r["variant"]]),
            hovertemplate=f"{r['variant']}: %{{x:+.1f}} points (95% interval {lo:+.1f} to {hi:+.1f}"
                          + (f"; McNemar {p_text(r['p'])}" if paired else "") + ")<extra></extra>"))
    fig = go.Figure(data=traces)
    fig.add_vline(x=0, line=dict(color="#6b7280", width=1.5, dash="dot"))
    fig.update_layout(**_base_layout(height or 110 + 46 * max(1, len(shown)),
                                     f"Difference from the {model_label(reference, reference)} "
                                     f"<sup>(points, whiskers = {'paired bootstrap ' if paired else ''}95% "
                                     f"interval)</sup>"))
    fig.update_yaxes(autorange="reversed", type="category", showgrid=False)
    fig.update_xaxes(zeroline=False, gridcolor="#f3f4f6", ticksuffix=" pt")
    return fig


def efficiency_bars(params: dict, size_bytes: dict, latency_ms: dict, device: str = "",
                    variants: Sequence[str] | None = None, reference: str | None = None) -> go.Figure:
    """Parameters (millions), size on disk (MB) and latency (ms) per model, side by side."""
    models = _models({**params, **size_bytes, **latency_ms}, variants)
    colors = variant_colors(models[1:])
    panels = [("parameters (millions)", params, 1e-6, "{:.2f} M"), ("size on disk (MB)", size_bytes, 1e-6, "{:.1f} MB"),
              (f"latency per example (ms{', ' + device if device else ''})", latency_ms, 1.0, "{:.1f} ms")]
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[0] for p in panels], horizontal_spacing=0.08)
    traces = []
    for _, data, scale, fmt in panels:
        shown = [m for m in models if data.get(m) is not None]
        vals = [float(data[m]) * scale for m in shown]
        traces.append(dict(type="bar", x=[model_label(m, reference) for m in shown], y=vals,
                           marker=dict(color=[colors[m] for m in shown]),
                           text=[fmt.format(v) for v in vals], textposition="outside", cliponaxis=False,
                           showlegend=False, hovertemplate="%{x}: %{text}<extra></extra>"))
    fig.add_traces(traces, rows=[1] * len(traces), cols=list(range(1, len(traces) + 1)))
    fig.update_layout(**_base_layout(360))
    fig.update_layout(margin=dict(l=10, r=10, t=50, b=10))
    fig.update_annotations(font=dict(size=13))
    fig.update_yaxes(gridcolor="#f3f4f6", rangemode="tozero")
    fig.update_xaxes(tickangle=0 if len(models) <= 3 else -45)
    return fig



# ---- robustness under attack -------------------------------------------------------------------------
def robustness_figure(record: dict, variants: Sequence[str] | None = None, reference: str | None = None,
                      height: int = 360) -> go.Figure:
    """Accuracy (%) against epsilon, one line per model (teacher included), from a run's robustness.json record
    ({"epsilons", "steps", "n", "accuracy": {model: [one per epsilon]}}): epsilon is the size of the perturbation
    of each word embedding, relative to the embedding's own size."""
    eps = [float(e) for e in record.get("epsilons") or []]
    acc = record.get("accuracy") or {}
    models = _models(acc, variants)
    colors = variant_colors(models[1:])
    traces = []
    for m in models:
        if len(acc.get(m) or []) != len(eps):
            continue
        label = model_label(m, reference)
        traces.append(dict(
            type="scatter", x=eps, y=[100 * float(a) for a in acc[m]], mode="lines+markers", name=label,
            line=dict(color=colors[m], dash=_dash(m, reference), width=3 if m == TEACHER else 2),
            hovertemplate=f"{html.escape(label, quote=False)} · ε = %{{x:g}}: %{{y:.1f}}%<extra></extra>"))
    fig = go.Figure(data=traces)
    sub = f" <sup>(n = {record['n']}, {record.get('steps', '?')} PGD steps)</sup>" if record.get("n") else ""
    fig.update_layout(**_base_layout(height, "Accuracy under attack" + sub), hovermode="closest",
                      legend=dict(orientation="h", y=-0.28, x=0))
    on_pixels = str(record.get("attack", "")).startswith("PGD on pixels")
    fig.update_xaxes(title_text=("ε: largest change of a pixel, as a fraction of the pixel range" if on_pixels else
                                 "ε: perturbation of each word embedding, relative to its size"), tickvals=eps,
                     gridcolor="#f3f4f6", zeroline=False)
    fig.update_yaxes(title_text="accuracy (%)", range=[0, 102], ticksuffix="%", gridcolor="#f3f4f6")
    return fig


def robustness_reading(record: dict, reference: str | None = None) -> str:
    """How to read the robustness figure, in one sentence, naming the model whose accuracy drops least from
    epsilon 0 (clean) to the largest epsilon."""
    eps = [float(e) for e in record.get("epsilons") or []]
    acc = {m: a for m, a in (record.get("accuracy") or {}).items() if len(a or []) == len(eps)}
    if str(record.get("attack", "")).startswith("PGD on pixels"):
        text = ("Each point is a model's test accuracy when every pixel of the picture may change by up to ε of the "
                "pixel range (ε = 0.1: 25 grey levels of 255), in the direction an attack (PGD) finds most harmful to "
                "that model")
    else:
        text = ("Each point is a model's test accuracy when every word embedding of the input is pushed by up to ε "
                "times its own size (ε = 0.05: 5%), in the direction an attack (PGD) finds most harmful to that model")
    if len(eps) < 2 or not acc:
        return text + "."
    first, last = eps.index(min(eps)), eps.index(max(eps))
    best = min(acc, key=lambda m: acc[m][first] - acc[m][last])
    a0, a1 = acc[best][first], acc[best][last]
    return (text + f"; {the(best, reference)} keeps its accuracy best, {a0:.1%} at ε = {eps[first]:g} and "
            f"{a1:.1%} at ε = {eps[last]:g}.")

# ---- two runs ----------------------------------------------------------------------------------------
RUN_DASHES = ("solid", "dot")            # run A, run B
RUN_PATTERNS = ("", "/")


def compared_variants(summaries: Sequence[dict]) -> list[str]:
    """The variants of several runs, in the order they first appear (run A's first)."""
    out: list[str] = []
    for s in summaries:
        out += [v for v in run_variants(s) if v not in out]
    return out


def compare_colors(summaries: Sequence[dict]) -> dict[str, str]:
    """Colours for two runs' variants: run A's as on its own pages, a name both runs share in A's colour, run B's
    other variants as on B's pages unless A already uses that colour (then the next free one)."""
    out: dict[str, str] = {}
    for s in summaries:
        own = variant_colors(run_variants(s))
        for name, color in own.items():
            if name in out:
                continue
            if color in out.values():
                used = set(out.values()) | set(own.values())
                color = next((c for c in PALETTE if c not in used), color)
            out[name] = color
    return out


def compare_runs_divergence(runs: Sequence[tuple[str, dict]], height: int = 400) -> go.Figure:
    """Mean divergence per epoch of every variant of each run: run A solid, run B dotted, variant colours.

    runs: (tag, summary.json) per run."""
    colors = compare_colors([s for _, s in runs])
    traces = []
    metric = "js"
    for (tag, s), dash in zip(runs, RUN_DASHES):
        d = s.get("divergence") or {}
        metric = d.get("metric", metric)
        for v in run_variants(s):
            if d.get(v):
                traces.append(dict(type="scatter", x=d["epochs"][:len(d[v])], y=d[v], mode="lines+markers",
                                   name=f"{tag} {v}", legendgroup=tag,
                                   line={"color": colors[v], "dash": dash, "width": 2.5},
                                   hovertemplate=f"{tag} {v}<br>epoch %{{x}}: %{{y:.4g}}<extra></extra>"))
    fig = go.Figure(data=traces)
    fig.update_layout(**_base_layout(height, f"Attention divergence from the teacher (mean "
                                             f"{METRIC_LABELS.get(metric, metric)})"),
                      legend={"orientation": "h", "y": -0.2})
    fig.update_xaxes(title_text="epoch", dtick=1, gridcolor="#f3f4f6")
    fig.update_yaxes(title_text=f"{metric}<br><sup>{_closer_word(metric)}</sup>", gridcolor="#f3f4f6",
                     exponentformat="e")
    return fig


def compare_runs_accuracy(runs: Sequence[tuple[str, dict]], height: int = 400) -> go.Figure:
    """Test accuracy (%) of the teacher and every variant of each run: bars in variant colours, run B hatched."""
    models = [TEACHER, *compared_variants([s for _, s in runs])]
    colors = compare_colors([s for _, s in runs])
    traces = []
    for (tag, s), pattern in zip(runs, RUN_PATTERNS):
        acc = s.get("accuracy") or {}
        y = [None if acc.get(m) is None else round(100 * acc[m], 1) for m in models]
        traces.append(dict(
            type="bar", x=models, y=y, name=tag, marker=dict(color=[colors[m] for m in models],
                                                 pattern=dict(shape=pattern, fgcolor="white", size=6)),
            text=["–" if v is None else f"{v}" for v in y], textposition="outside", cliponaxis=False,
            hovertemplate=f"{tag} %{{x}}: %{{y:.1f}}%<extra></extra>"))
    fig = go.Figure(data=traces)
    fig.update_layout(**_base_layout(height, "Test accuracy (%) <sup>plain bars: A · hatched: B</sup>"),
                      barmode="group", legend={"orientation": "h", "y": -0.2})
    fig.update_yaxes(range=[0, 112], gridcolor="#f3f4f6", title_text="%")
    fig.update_xaxes(tickangle=0 if len(models) <= 5 else -30)
    return fig


# ---- attributions ------------------------------------------------------------------------------------
def attribution_bars(tokens: Sequence[str], teacher_scores: np.ndarray, student_scores: np.ndarray,
                     student_name: str = "student", normalize: bool = True, height: int | None = None) -> go.Figure:
    """Token attributions of the teacher and a student side by side: one horizontal bar per token.

    With normalize, each model's scores are divided by its largest |score| so their shapes compare.
    Green bars push towards the explained class, red bars away from it.
    """
    labels = axis_labels(tokens)
    t = len(labels)
    a, b = np.asarray(teacher_scores, dtype=np.float64), np.asarray(student_scores, dtype=np.float64)
    if a.shape != (t,) or b.shape != (t,):
        raise ValueError(f"need one score per token ({t}); got {a.shape} and {b.shape}")
    if normalize:
        a = a / (np.abs(a).max() or 1.0)
        b = b / (np.abs(b).max() or 1.0)
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=("teacher", student_name))
    fig.add_traces([dict(type="bar", x=s, y=labels, orientation="h", showlegend=False,
                         marker=dict(color=np.where(s >= 0, "#16a34a", "#dc2626").tolist()),
                         hovertemplate="%{y}: %{x:.3f}<extra></extra>") for s in (a, b)], rows=[1, 1], cols=[1, 2])
    fig.update_yaxes(autorange="reversed", type="category", tickfont=dict(size=_tick_font_size(t) + 1))
    lim = 1.05 if normalize else float(max(np.abs(a).max(initial=0), np.abs(b).max(initial=0)) * 1.05 or 1.0)
    fig.update_xaxes(range=[-lim, lim], zeroline=True, zerolinecolor="#9ca3af", gridcolor="#f3f4f6",
                     title_text="attribution (scaled to max |score| = 1)" if normalize else "attribution")
    fig.update_layout(**_base_layout(height or int(min(1100, 120 + 18 * t))))
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=10), bargap=0.25)
    return fig


def attribution_reading(student: str, stats: dict, reference: str | None = None) -> str:
    """A plain-language comparison of attribution and attention closeness, from the numbers.

    stats: variant name -> (attribution rank correlation with the teacher, [CLS] attention agreement with it).
    The chosen variant is compared with the reference; the reference itself with every other variant.
    """
    def fmt(x: float) -> str:
        return "undefined" if math.isnan(x) else f"{x:.2f}"

    def closer(d: float, b: float) -> bool | None:     # None: about as close, or unknown
        if math.isnan(d) or math.isnan(b) or abs(d - b) < 0.005:
            return None
        return d > b

    rho, agree = stats[student]
    text = (f"On this text {the(student, reference)}'s attributions rank the tokens with ρ = {fmt(rho)} against "
            f"the teacher's, and its [CLS] attention agrees {fmt(agree)} with the teacher's.")
    if reference in stats and student != reference:
        (r_d, a_d), (r_b, a_b) = stats[student], stats[reference]
        pick = {True: student, False: reference}
        att, attr = pick.get(closer(a_d, a_b)), pick.get(closer(r_d, r_b))
        numbers = (f"(attention agreement: {student} {fmt(a_d)}, {reference} {fmt(a_b)}; "
                   f"attribution ρ: {student} {fmt(r_d)}, {reference} {fmt(r_b)})")
        if att is None and attr is None:
            text += f" It and {the(reference, reference)} are about as close to the teacher on both counts {numbers}."
        elif att is None:
            text += (f" Its attention and {the(reference, reference)}'s are about as close to the teacher's, but "
                     f"{the(attr, reference)} has the closer attributions {numbers}.")
        elif attr is None:
            text += (f" {_cap(the(att, reference))} has the closer attention, but their attributions are about "
                     f"as close "
                     f"to the teacher's {numbers}.")
        elif att == attr:
            text += (f" {_cap(the(att, reference))} is closer on both counts {numbers}: here closer attention "
                     f"goes with "
                     f"closer reasoning.")
        else:
            text += (f" {_cap(the(att, reference))} has the closer attention but {the(attr, reference)} the closer "
                     f"attributions {numbers}: here attention that looks like the teacher's does not mean the same "
                     f"tokens drive the decision.")
    elif student == reference and len(stats) > 1:
        others = [v for v in stats if v != reference]
        att = [v for v in others if closer(stats[v][1], agree)]
        attr = [v for v in others if closer(stats[v][0], rho)]
        if not att and not attr:
            text += " No other variant is clearly closer to the teacher on either count."
        else:
            text += (f" Variants with closer attention than {the(reference, reference)}: {', '.join(att) or 'none'}; "
                     f"with closer attributions: {', '.join(attr) or 'none'}.")
    return text + " One text is an anecdote; compare a few probe examples before drawing a conclusion."


# ---- sweeps across seeds -----------------------------------------------------------------------------
def _seed_panel(fig: go.Figure, col: int, models: Sequence[str], per_seed: dict, means: dict, seeds: Sequence[int],
                colors: dict, reference: str | None, fmt: str) -> None:
    """One panel of sweep_figure: per model (at x = its position), a dot per seed just left of the mean, and the
    mean with its 95% interval as whiskers just right of it."""
    traces = []
    for i, m in enumerate(models):
        label = model_label(m, reference)
        pts = [(s, v) for s, v in zip(seeds, per_seed.get(m) or []) if v is not None]
        traces.append(dict(
            type="scatter", x=[i - 0.12] * len(pts), y=[v for _, v in pts], mode="markers", showlegend=False,
            marker=dict(color=colors[m], size=8, opacity=0.5, line=dict(width=0)),
            text=[f"seed {s}" for s, _ in pts], hovertemplate=f"{label}, %{{text}}: %{{y:{fmt}}}<extra></extra>"))
        mean, lo, hi = means.get(m, (None, None, None))
        if mean is None:
            continue
        err = None if lo is None else dict(type="data", symmetric=False, array=[hi - mean], arrayminus=[mean - lo],
                                           thickness=2, width=8, color=colors[m])
        interval = "" if lo is None else f" (95% interval {lo:{fmt}} to {hi:{fmt}})"
        traces.append(dict(
            type="scatter", x=[i + 0.08], y=[mean], mode="markers", showlegend=False, error_y=err,
            marker=dict(color=colors[m], size=13, symbol="diamond", line=dict(color="white", width=1)),
            hovertemplate=f"{label}: mean %{{y:{fmt}}}{interval}<extra></extra>"))
    if traces:
        fig.add_traces(traces, rows=[1] * len(traces), cols=[col] * len(traces))
    fig.update_xaxes(tickmode="array", tickvals=list(range(len(models))), range=[-0.6, len(models) - 0.4],
                     ticktext=[model_label(m, reference) for m in models], showgrid=False, zeroline=False,
                     row=1, col=col)


def sweep_figure(summary: dict, height: int = 420) -> go.Figure:
    """A sweep across seeds (distill_core.sweep.summarize_sweep): test accuracy of the teacher and every variant,
    and each variant's final attention JS to the teacher; a dot per seed, a diamond at the mean, whiskers at the
    95% interval of the mean."""
    variants, ref = list(summary.get("variants") or []), summary.get("reference")
    seeds, colors = summary.get("seeds_done") or [], variant_colors(variants)
    vs = summary.get("variants_stats") or {}
    t = summary.get("teacher") or {}
    acc = {TEACHER: t.get("accuracy"), **{v: vs.get(v, {}).get("accuracy") for v in variants}}
    acc_means = {TEACHER: (t.get("mean"), t.get("lo"), t.get("hi")),
                 **{v: tuple(vs.get(v, {}).get(k) for k in ("acc_mean", "acc_lo", "acc_hi")) for v in variants}}
    js = {v: vs.get(v, {}).get("js") for v in variants}
    js_means = {v: tuple(vs.get(v, {}).get(k) for k in ("js_mean", "js_lo", "js_hi")) for v in variants}
    n = len(seeds)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=[
        "Test accuracy", f"Final attention {METRIC_LABELS['js']} to the teacher <sup>(lower = closer)</sup>"])
    _seed_panel(fig, 1, [TEACHER, *variants], acc, acc_means, seeds, colors, ref, ".1%")
    _seed_panel(fig, 2, variants, js, js_means, seeds, colors, ref, ".4f")
    fig.update_layout(**_base_layout(height, f"Across {n} seed{'s' if n != 1 else ''} <sup>(dots: one seed each; "
                                             f"diamonds: mean; whiskers: 95% interval of the mean)</sup>"))
    fig.update_annotations(font=dict(size=13))
    fig.update_yaxes(tickformat=".0%", gridcolor="#f3f4f6", row=1, col=1)
    fig.update_yaxes(gridcolor="#f3f4f6", rangemode="tozero", row=1, col=2)
    fig.update_xaxes(tickangle=0 if len(variants) <= 3 else -30)
    if not seeds:
        fig.add_annotation(text="appears when the first seed finishes", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper", font={"color": "gray"})
    return fig


def sweep_verdict_lines(summary: dict) -> list[str]:
    """Each variant against the reference over a sweep's seeds, in words (markdown): the pooled McNemar test
    decides (p < 0.05: better or worse, else no clear difference), always naming n and the number of seeds."""
    ref, seeds = summary.get("reference"), len(summary.get("seeds_done") or [])
    out = []
    for v, c in (summary.get("paired") or {}).items():
        name, rl = the(v, ref), the(ref, ref)
        mean = c.get("diff_mean")
        spread = ("" if c.get("diff_lo") is None else
                  f", 95% interval across seeds {100 * c['diff_lo']:+.1f} to {100 * c['diff_hi']:+.1f}")
        across = ("no finished seeds" if mean is None else
                  f"mean difference {100 * mean:+.1f} points over {seeds} seed{'s' if seeds != 1 else ''}{spread}")
        if "p" not in c:
            out.append(f"**{_cap(name)} against {rl}**: {across}; the seeds' test answers could not be pooled, so "
                       f"there is no paired test.")
            continue
        head = {"better": f"**{_cap(name)} beat {rl}**", "worse": f"**{_cap(rl)} beat {name}**"}.get(
            c["verdict"], f"**No clear difference** between {name} and {rl}")
        test = (f"on n = {c['n']} test answers pooled over {seeds} seed{'s' if seeds != 1 else ''} (McNemar "
                f"{p_text(c['p'])}; {c['variant_only']} right only for {name}, {c['ref_only']} only for {rl})")
        gap = ("" if c.get("gap_closed") is None else
               f" It closed {c['gap_closed']:.0%} of the gap between {rl} and the teacher.")
        js = (" Its attention was closer to the teacher's than the reference's on every seed."
              if c.get("js_below_reference_every_seed") else "")
        out.append(f"{head} {test}: {across}.{gap}{js}")
    return out


# ---- two students, map by map ------------------------------------------------------------------------
SIDE_COLORS = {"A": "#2166ac", "B": "#b2182b"}      # the blue and red ends of the divergence-difference scale


def map_panels(maps: Sequence[np.ndarray], tokens: Sequence[str], titles: Sequence[str], gamma: float = 1.0,
               diff: tuple[int, int] | None = None, diff_title: str = "A − B", height: int | None = None,
               font_size: int = 11) -> go.Figure:
    """Attention maps of one text side by side on one weight scale (x = keys, y = queries), then, with
    `diff` = (i, j), maps[i] − maps[j] on a diverging scale symmetric around 0 (red: map i attends more there,
    blue: map j does)."""
    labels = axis_labels(tokens)
    t = len(labels)
    if len(titles) != len(maps) or not maps:
        raise ValueError(f"{len(titles)} titles for {len(maps)} maps")
    maps = [_check_square(str(name), m, t) for name, m in zip(titles, maps)]
    panels = list(zip(maps, titles, [False] * len(maps)))
    if diff is not None:
        panels.append((maps[diff[0]] - maps[diff[1]], diff_title, True))
    n, n_maps = len(panels), len(maps)
    g1, g2, right = 0.012, (0.085 if diff is not None else 0.0), 0.08   # g2 holds the weight colour bar
    w = (1.0 - g1 * (n_maps - 1) - g2 - right) / n
    domains = [[k * (w + g1), k * (w + g1) + w] for k in range(n_maps)]
    if diff is not None:
        x0 = domains[-1][1] + g2
        domains.append([x0, x0 + w])
    tick = dict(tickfont=dict(size=font_size), showgrid=False, ticks="", type="category", tickmode="array",
                tickvals=labels, ticktext=labels, automargin=True)
    layout = _base_layout(height or int(min(760, max(380, 200 + 14 * t))))
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
    layout["coloraxis"] = dict(colorscale=map_colorscale(gamma), cmin=0.0, cmax=zmax,
                               colorbar=dict(title=dict(text="weight", side="top"), x=domains[n_maps - 1][1] + 0.006,
                                             xanchor="left", len=0.85, thickness=12, y=0.45))
    if diff is not None:
        dmax = float(np.abs(panels[-1][0]).max(initial=0.0)) or 1e-6
        layout["coloraxis2"] = dict(colorscale=DIFF_SCALE, cmin=-dmax, cmax=dmax, cmid=0.0,
                                    colorbar=dict(title=dict(text="diff.", side="top"), x=domains[-1][1] + 0.006,
                                                  xanchor="left", len=0.85, thickness=12, y=0.45))
    layout["annotations"] = [_panel_annotation(f"<b>{html.escape(str(name))}</b>", d, [0, 1.0])
                             for (_, name, _), d in zip(panels, domains)]
    layout["margin"]["t"] = 36
    return go.Figure(data=traces, layout=layout)


def _closer_sides(diff: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Where side A is closer to the teacher and where side B is, from A's metric minus B's (ties: neither)."""
    d = np.asarray(diff, dtype=np.float64)
    level = np.abs(d) <= 1e-12
    a_closer = (d < 0) if LOWER_IS_CLOSER.get(metric, True) else (d > 0)
    return a_closer & ~level, ~a_closer & ~level


def divergence_difference_grid(diff: np.ndarray, row_labels: Sequence[str], metric: str = "js", title: str = "",
                               col_labels: Sequence[str] | None = None, sides: Sequence[str] = ("A", "B"),
                               height: int | None = None) -> go.Figure:
    """A's divergence to the teacher minus B's: mapped layer pairs (rows) x compared heads (columns).

    The colours say which side is closer whatever the metric (for cosine similarity higher is closer): blue where
    A is closer to the teacher, red where B is, white where both are as close; the scale is symmetric around 0.
    """
    d = np.asarray(diff, dtype=np.float64)
    if d.ndim != 2:
        raise ValueError(f"the difference must hold (pairs, heads) values, got shape {d.shape}")
    if d.shape[0] != len(row_labels):
        raise ValueError(f"{len(row_labels)} row labels for {d.shape[0]} rows")
    cols = list(col_labels) if col_labels is not None else [f"head {h}" for h in range(d.shape[1])]
    if len(cols) != d.shape[1]:
        raise ValueError(f"{len(cols)} column labels for {d.shape[1]} columns")
    a, b = sides
    lower = LOWER_IS_CLOSER.get(metric, True)
    a_closer, b_closer = _closer_sides(d, metric)
    who = np.where(a_closer, f"{a} closer", np.where(b_closer, f"{b} closer", "as close"))
    dmax = float(np.nanmax(np.abs(d), initial=0.0)) or 1e-12
    tiny = dmax < 0.01
    name = METRIC_LABELS.get(metric, metric)
    top, bottom = (b, a) if lower else (a, b)            # the side the top (positive) end of the scale favours
    legend = (f"<sup><span style='color:{SIDE_COLORS['A']}'>blue: {html.escape(a)} closer to the teacher</span> · "
              f"<span style='color:{SIDE_COLORS['B']}'>red: {html.escape(b)} closer</span> · "
              f"{html.escape(a)}'s {html.escape(name)} minus {html.escape(b)}'s</sup>")
    fig = go.Figure(data=[dict(
        type="heatmap", z=d, x=cols, y=list(row_labels), customdata=who, xgap=2, ygap=2, zmin=-dmax, zmax=dmax,
        colorscale="RdBu_r" if lower else "RdBu", texttemplate="%{z:+.2e}" if tiny else "%{z:+.3g}",
        textfont=dict(size=11),
        hovertemplate=f"%{{y}}, %{{x}}<br>{html.escape(a)} − {html.escape(b)}: %{{z:.4g}}<br>"
                      f"%{{customdata}}<extra></extra>",
        colorbar=dict(thickness=12, len=0.7, y=0.5, tickformat=".1e" if tiny else None,
                      title=dict(text=f"{html.escape(a)} − {html.escape(b)}", side="top")))])
    for y, anchor, side in ((0.86, "bottom", top), (0.14, "top", bottom)):
        fig.add_annotation(text=f"<b>{html.escape(side)} closer</b>", x=1.0, xref="paper", xanchor="left", y=y,
                           yref="paper", yanchor=anchor, showarrow=False,
                           font=dict(size=11, color=SIDE_COLORS["A" if side == a else "B"]))
    full = f"{title} {legend}" if title else legend
    fig.update_layout(**_base_layout(height or int(max(300, 170 + 44 * len(row_labels))), full))
    fig.update_layout(margin=dict(l=10, r=90, t=70, b=10))
    fig.update_xaxes(type="category", showgrid=False, side="bottom", automargin=True)
    fig.update_yaxes(type="category", showgrid=False, autorange="reversed", automargin=True)
    return fig


def divergence_difference_reading(diff: np.ndarray, row_labels: Sequence[str], metric: str = "js",
                                  col_labels: Sequence[str] | None = None,
                                  sides: Sequence[str] = ("A", "B")) -> str:
    """One line on A's divergence minus B's: on how many compared heads each side is closer to the teacher, and
    where the gap is largest."""
    d = np.asarray(diff, dtype=np.float64)
    a, b = sides
    n = d.size
    if n == 0:
        return "There are no compared heads to read."
    cols = list(col_labels) if col_labels is not None else [f"head {h}" for h in range(d.shape[1])]
    a_closer, b_closer = _closer_sides(d, metric)
    na, nb = int(a_closer.sum()), int(b_closer.sum())
    heads = f"head{'s' if n != 1 else ''}"
    if na == nb == 0:
        return f"{a} and {b} are exactly as close to the teacher on all {n} compared {heads}."
    level = n - na - nb
    text = f"{a} is closer to the teacher on {na} of {n} compared {heads}, {b} on {nb}"
    text += f", {level} level" if level else ""
    r, c = np.unravel_index(int(np.nanargmax(np.abs(d))), d.shape)
    winner = a if a_closer[r, c] else b
    text += (f"; the largest gap is {row_labels[r]}, {cols[c]}, where {winner} is closer by "
             f"{abs(d[r, c]):.3g} ({METRIC_LABELS.get(metric, metric)}).")
    return text


# ---- loss weights and temperature actually used ------------------------------------------------------------
def _varies(values: Sequence[float]) -> bool:
    """True when a recorded series is not constant (up to float noise)."""
    return bool(values) and max(values) - min(values) > 1e-6 * max(1.0, max(abs(x) for x in values))


def weights_and_temperature(step_records: Sequence[dict], variants: Sequence[str] | None = None,
                            reference: str | None = None, epochs: int | None = None,
                            height: int | None = None) -> go.Figure | None:
    """The loss weights and the KD temperature each variant trained with, from train_steps.jsonl records
    ({"epoch": fractional, "student", "weights": {loss: effective weight}, "temperature"}): one small panel per
    loss weight that changes, one for the temperature when it changes, a line per variant whose weight or
    temperature changes (colours and dashes of loss_components). None when nothing changes (plain runs, and runs
    recorded before the weights were written), so pages draw nothing."""
    steps = [r for r in (step_records or []) if _finite(r.get("epoch"))]
    variants = _variants(steps, variants)
    series: dict[tuple[str, str], list] = {}        # (weight name or "temperature", variant) -> [(epoch, value)]
    for r in steps:
        v = r.get("student")
        if v not in variants:
            continue
        for k, w in (r.get("weights") or {}).items():
            if _finite(w):
                series.setdefault((k, v), []).append((float(r["epoch"]), float(w)))
        if _finite(r.get("temperature")):
            series.setdefault(("temperature", v), []).append((float(r["epoch"]), float(r["temperature"])))
    moving = {key for key, pts in series.items() if _varies([y for _, y in pts])}
    if not moving:
        return None
    shown_variants = [v for v in variants if any(m[1] == v for m in moving)]
    weights = loss_order({k for k, _ in moving if k != "temperature"})
    panels = weights + (["temperature"] if any(k == "temperature" for k, _ in moving) else [])
    titles = ["<b>KD temperature</b>" if k == "temperature" else
              f"<b>weight of {html.escape(LOSS_TITLES.get(k, k).partition(' (')[0], quote=False)}</b>"
              for k in panels]
    n = len(panels)
    cols = n if n <= 3 else 2 if n == 4 else 3
    rows = math.ceil(n / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.08,
                        vertical_spacing=0.3 / rows)
    fig.update_annotations(font_size=12)
    colors = variant_colors(variants)
    legend: set[str] = set()
    traces, at = [], []
    for i, k in enumerate(panels):
        row, col = divmod(i, cols)
        for v in shown_variants:
            pts = sorted(series.get((k, v), []))
            if not pts:
                continue
            label = html.escape(model_label(v, reference), quote=False)
            what = "temperature" if k == "temperature" else f"weight of {html.escape(k, quote=False)}"
            traces.append(dict(
                type="scatter", x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines",
                name=model_label(v, reference), legendgroup=v, showlegend=v not in legend,
                meta=dict(panel=k, student=v),
                line=dict(color=colors[v], dash=_dash(v, reference), width=1.6),
                hovertemplate=f"{label} · {what}<br>epoch %{{x:.2f}}: %{{y:.4g}}<extra></extra>"))
            at.append((row + 1, col + 1))
            legend.add(v)
    if traces:
        fig.add_traces(traces, rows=[r for r, _ in at], cols=[c for _, c in at])
    _epoch_panels(fig, n, rows, cols, _last_epoch(steps, epochs))
    fig.update_yaxes(rangemode="tozero")
    fig.update_layout(**_base_layout(height or 110 + 220 * rows, "Loss weights and temperature actually used"),
                      legend=dict(orientation="h", y=-0.12 if rows > 1 else -0.3, x=0))
    fig.update_layout(margin=dict(l=10, r=10, t=80, b=10))
    return fig


# ---- suggested layer mapping ------------------------------------------------------------------------------
def layer_cost_map(costs: Sequence[Sequence[float]], suggested: Sequence[int], used: Sequence[int] | None = None,
                   height: int | None = None) -> go.Figure:
    """Mean JS between each student layer (rows) and each teacher layer (columns), from mapping.layer_costs; a
    square marks the suggested teacher layer of each student layer, a circle the one the run used."""
    z = np.asarray(costs, dtype=np.float64)                      # (Ls, Lt)
    ls, lt = z.shape
    xs, ys = [f"teacher {t}" for t in range(lt)], [f"student {s}" for s in range(ls)]
    tiny = float(np.nanmax(np.abs(z), initial=0.0)) < 0.01
    traces = [dict(
        type="heatmap", z=z, x=xs, y=ys, colorscale="Reds", xgap=2, ygap=2,
        texttemplate="%{z:.2e}" if tiny else "%{z:.3g}",
        textfont=dict(size=12), colorbar=dict(thickness=12, title=dict(text="JS", side="top")),
        hovertemplate="%{y} vs %{x}: JS %{z:.4g}<extra></extra>")]
    marks = [("suggested", suggested, "square-open", "#111827", 34)]
    if used is not None and len(used) == ls:
        marks.append(("used by the run", used, "circle-open", "#2563eb", 22))
    for name, layers, symbol, color, size in marks:
        traces.append(dict(type="scatter", x=[xs[t] for t in layers], y=ys[:len(layers)], mode="markers", name=name,
                           marker=dict(symbol=symbol, size=size, color=color, line=dict(width=3)),
                           hovertemplate=f"%{{y}} → %{{x}} ({name})<extra></extra>"))
    fig = go.Figure(data=traces)
    axis = dict(type="category", showgrid=False, ticks="")
    fig.update_layout(**_base_layout(height or 150 + 60 * ls, "Mean JS: student layer × teacher layer"),
                      xaxis=dict(categoryorder="array", categoryarray=xs, **axis),
                      yaxis=dict(categoryorder="array", categoryarray=ys, autorange="reversed", **axis),
                      legend=dict(orientation="h", y=-0.18, x=0))
    return fig
