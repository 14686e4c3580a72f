"""Figures for the app's pages, and the numbers behind their captions. Pure functions: no Streamlit here.

Attention maps follow BertViz's layout: one map is `(T, T)` with query tokens on rows and key tokens on
columns, one layer is `(H, T, T)`. In every heatmap the keys run along x and the queries down y, the first
token at the top left, as a matrix is printed.

Large grids are built by laying out axes by hand (one heatmap trace per panel, no per-cell annotations):
`make_subplots` is several times slower for the 6 x 12 head grid of a MiniLM teacher.
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
from distill_core.vocab import (LOWER_IS_CLOSER, METRIC_LABELS, PALETTE, TEACHER, model_label, run_variants,
                                 variant_colors)

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


# ---- one map against another -------------------------------------------------------------------------
def heatmap_triptych(teacher: np.ndarray, student: np.ndarray, tokens: Sequence[str],
                     titles: Sequence[str] = ("teacher", "student", "difference (student − teacher)"),
                     title: str | None = None, height: int | None = None, gamma: float = 1.0) -> go.Figure:
    """teacher | student | student - teacher, side by side, tokens on both axes (x = keys, y = queries).

    Teacher and student share one colour scale from 0 to the larger of their maxima (see map_colorscale for
    gamma); the difference has its own diverging scale, symmetric around 0.
    """
    labels = axis_labels(tokens)
    t = len(labels)
    teacher = _check_square("teacher", teacher, t)
    student = _check_square("student", student, t)
    diff = student - teacher
    zmax = float(max(teacher.max(initial=0.0), student.max(initial=0.0))) or 1.0
    dmax = float(np.abs(diff).max(initial=0.0)) or 1e-6
    g1, g2 = 0.015, 0.095                       # the second gap holds the shared colour bar
    w = (1.0 - g1 - g2 - 0.08) / 3
    domains = [[0.0, w], [w + g1, 2 * w + g1], [2 * w + g1 + g2, 3 * w + g1 + g2]]
    tick = dict(tickfont=dict(size=_tick_font_size(t)), showgrid=False, ticks="", type="category")
    every = dict(tickmode="array", tickvals=labels, ticktext=labels)     # a label for every query row
    hover = "query: %{y}<br>key: %{x}<br>NAME: %{z:.4f}<extra></extra>"
    traces, layout = [], _base_layout(height or int(min(760, max(400, 230 + 11 * t))), title)
    for i, (z, name) in enumerate(zip((teacher, student, diff), titles)):
        sfx = "" if i == 0 else str(i + 1)
        is_diff = i == 2
        traces.append(go.Heatmap(
            z=z, x=labels, y=labels, xaxis=f"x{sfx}", yaxis=f"y{sfx}", name=str(name),
            coloraxis="coloraxis2" if is_diff else "coloraxis", xgap=0, ygap=0,
            hovertemplate=hover.replace("NAME", "student − teacher" if is_diff else "weight")))
        layout[f"xaxis{sfx}"] = dict(domain=domains[i], anchor=f"y{sfx}", tickangle=-60 if t <= 16 else -90,
                                     side="bottom", **tick, **(every if t <= 24 else {}))
        layout[f"yaxis{sfx}"] = dict(domain=[0.0, 1.0], anchor=f"x{sfx}", autorange="reversed",
                                     showticklabels=i == 0, **tick, **(every if t <= 72 else {}))
    layout["coloraxis"] = dict(colorscale=map_colorscale(gamma), cmin=0.0, cmax=zmax,
                               colorbar=dict(title=dict(text="weight", side="top"), x=domains[1][1] + 0.008,
                                             xanchor="left", len=0.85, thickness=12, y=0.45))
    layout["coloraxis2"] = dict(colorscale=DIFF_SCALE, cmin=-dmax, cmax=dmax, cmid=0.0,
                                colorbar=dict(title=dict(text="diff.", side="top"),
                                              x=domains[2][1] + 0.008, xanchor="left", len=0.85, thickness=12,
                                              y=0.45))
    layout["annotations"] = [_panel_annotation(f"<b>{html.escape(str(n))}</b>", d, [0, 1.0])
                             for n, d in zip(titles, domains)]
    layout["margin"]["t"] = 70 if title else 36
    return go.Figure(data=traces, layout=layout)


# ---- small multiples ---------------------------------------------------------------------------------
def head_grid(maps: np.ndarray, tokens: Sequence[str], title: str = "", cols: int | None = None,
              zmax: float | None = None, highlight: Sequence[int] = (), row_names: Sequence[str] | None = None,
              height: int | None = None, width_px: int = 1000, gamma: float = 1.0) -> go.Figure:
    """Small multiples of attention heads with one colour scale.

    maps (H, T, T): the heads of one layer, wrapped into rows of `cols` panels;
    maps (L, H, T, T): a layers x heads grid (rows = layers).
    `highlight` outlines heads (of a single layer) in red, e.g. the teacher heads a student head is compared with.
    Panels are square; `width_px` (the expected width of the chart on screen) sets the default height.
    """
    maps = np.asarray(maps, dtype=np.float32)
    labels = axis_labels(tokens)
    t = len(labels)
    if maps.ndim == 3:
        n_heads = maps.shape[0]
        cols = cols or min(n_heads, 6)
        rows = math.ceil(n_heads / cols)
        cells = [(h // cols, h % cols, maps[h], f"head {h}") for h in range(n_heads)]
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
        traces.append(go.Heatmap(z=z, x=labels, y=labels, xaxis=f"x{sfx}", yaxis=f"y{sfx}", name=trace_name,
                                 coloraxis="coloraxis", hovertemplate=hover))
        layout[f"xaxis{sfx}"] = dict(domain=xd, anchor=f"y{sfx}", constrain="domain", **axis)
        layout[f"yaxis{sfx}"] = dict(domain=yd, anchor=f"x{sfx}", autorange="reversed", scaleanchor=f"x{sfx}",
                                     constrain="domain", constraintoward="top", **axis)
        if name:
            annotations.append(_panel_annotation(name, xd, yd, size=10 if cols > 6 else 11))
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


def variant_lines(records: Sequence[dict], value, title: str, y_title: str, variants: Sequence[str] | None = None,
                  reference: str | None = None, epochs: int | None = None, height: int = 280,
                  y_range: tuple[float, float] | None = None) -> go.Figure:
    """One line per variant of `value(record)` against epoch (the live curves); x spans 0..epochs."""
    variants = _variants(records, variants)
    colors = variant_colors(variants)
    fig = go.Figure()
    for v in variants:
        pts = [(r["epoch"], value(r)) for r in records if r.get("student") == v]
        pts = [(e, y) for e, y in pts if y is not None and not (isinstance(y, float) and math.isnan(y))]
        if pts:
            fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=v,
                                     line={"color": colors[v], "dash": _dash(v, reference)}))
    if not fig.data:
        fig.add_annotation(text="appears after the first epoch", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper", font={"color": "gray"})
        fig.update_yaxes(showticklabels=False)
    last = max([epochs or 0] + [r.get("epoch", 0) for r in records])
    fig.update_layout(**_base_layout(height, title), xaxis_title="epoch", yaxis_title=y_title,
                      legend={"orientation": "h", "y": -0.3},
                      xaxis={"dtick": 1, "range": [-0.2, max(1, last) + 0.2]})
    fig.update_layout(margin={"l": 10, "r": 10, "t": 40, "b": 10})
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
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
    for v, (epochs, values) in series.items():
        dash, name = _dash(v, reference), model_label(v, reference)
        for k in range(values.shape[1]):
            if per_head:
                for h in range(values.shape[2]):
                    fig.add_trace(go.Scatter(
                        x=epochs, y=values[:, k, h], mode="lines+markers", name=f"{name}, head {h}",
                        legendgroup=v, showlegend=False, line=dict(color=colors[v], width=1, dash=dash),
                        marker=dict(size=4), opacity=0.55,
                        hovertemplate=f"{v} head {h}<br>epoch %{{x}}<br>{metric}: %{{y:.4g}}<extra></extra>"),
                        row=1, col=k + 1)
            fig.add_trace(go.Scatter(
                x=epochs, y=values[:, k, :].mean(-1), mode="lines+markers",
                name=name + (" (mean of heads)" if per_head else ""), legendgroup=v,
                showlegend=k == 0, line=dict(color=colors[v], width=3, dash=dash), marker=dict(size=7),
                hovertemplate=f"{v}<br>epoch %{{x}}<br>{metric}: %{{y:.4g}}<extra></extra>"), row=1, col=k + 1)
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
        traces.append(go.Heatmap(
            z=arrays[v], x=heads, y=list(labels), xaxis=f"x{sfx}", yaxis=f"y{sfx}", name=v, coloraxis="coloraxis",
            texttemplate="%{z:.2e}" if tiny else "%{z:.3g}", textfont=dict(size=10), xgap=2, ygap=2,
            hovertemplate=f"{html.escape(v)}<br>%{{y}}, %{{x}}<br>{metric}: %{{z:.4g}}<extra></extra>"))
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


def _closeness_sentences(verdicts: list[tuple[str, str, float]], ref: str, epoch: int, name) -> list[str]:
    """Sentences saying which variants attend more like the teacher than the reference at `epoch`.

    ref: the reference as named in a sentence ("the baseline student"); name(v): a variant as named in one."""
    if len(verdicts) == 1:
        v, kind, ratio = verdicts[0]
        return [{"closer": f"At epoch {epoch} {name(v)}'s attention is {ratio:.3g}× closer to the teacher's than "
                           f"{ref}'s: its teacher losses pulled it towards the teacher.",
                 "further": f"At epoch {epoch} {name(v)}'s attention is not closer to the teacher's than {ref}'s "
                            f"({ref}'s is {ratio:.3g}× closer): its teacher losses have not pulled it towards the "
                            f"teacher.",
                 "level": f"At epoch {epoch} {name(v)} and {ref} are about equally close to the teacher."}[kind]]
    out = []
    short = {v: model_label(v) for v, _, _ in verdicts}
    closer = [f"{short[v]} ({r:.3g}× closer)" for v, k, r in verdicts if k == "closer"]
    further = [f"{short[v]} ({ref}'s is {r:.3g}× closer)" for v, k, r in verdicts if k == "further"]
    level = [short[v] for v, k, _ in verdicts if k == "level"]
    if closer:
        out.append(f"At epoch {epoch}, {len(closer)} of {len(verdicts)} variants attend more like the teacher than "
                   f"{ref}: {', '.join(closer)}.")
    if further:
        out.append(f"Not closer to the teacher than {ref}: {', '.join(further)}; "
                   f"{'their teacher losses have' if len(further) > 1 else 'its teacher losses have'} not pulled "
                   f"{'their' if len(further) > 1 else 'its'} attention towards the teacher's.")
    if level:
        out.append(f"About as close to the teacher as {ref}: {', '.join(level)}.")
    return out


def _verdicts_against(series: dict, ref: str, others: list[str], last: dict, distance) -> list[tuple]:
    """(variant, "closer" | "further" | "level", ratio) of each variant against the reference, at their last
    common epoch; series: variant -> (epochs, mean per epoch, (E, P, H) values)."""
    verdicts = []
    for v in others:
        e_common = min(last[v], last[ref])
        if e_common not in series[v][0] or e_common not in series[ref][0]:
            continue
        dv = distance(series[v][1][series[v][0].index(e_common)])
        dr = distance(series[ref][1][series[ref][0].index(e_common)])
        if (dv <= 1e-12 and dr <= 1e-12) or math.isclose(dv, dr, rel_tol=1e-3):
            verdicts.append((v, "level", 1.0))
        elif dv < dr:
            verdicts.append((v, "closer", dr / max(dv, 1e-300)))
        else:
            verdicts.append((v, "further", dv / max(dr, 1e-300)))
    return verdicts


def _largest_move(series: dict, candidates: list[str], distance) -> tuple | None:
    """(end / start distance, variant, pair index, first epoch) of the mapped pair that moved most towards the
    teacher among `candidates`, or None."""
    best = None
    for v in candidates:
        e, _, vals = series[v]
        start = np.array([distance(x) for x in vals[0].mean(-1)])
        end = np.array([distance(x) for x in vals[-1].mean(-1)])
        if len(start) > 1 and len(e) > 1 and np.all(start > 1e-12):
            k = int(np.argmin(end / start))
            if best is None or end[k] / start[k] < best[0]:
                best = (end[k] / start[k], v, k, e[0])
    return best


def divergence_reading(records: Sequence[dict], metric: str, labels: Sequence[str] | None = None,
                       variants: Sequence[str] | None = None, reference: str | None = None) -> str:
    """A plain-language reading of how the metric moved, every variant against the reference, from the records."""
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
    if ref is not None and others:
        en = min(last.values())
        verdicts = _verdicts_against(series, ref, others, last, distance)
        parts += _closeness_sentences(verdicts, the(ref, reference), en, lambda x: the(x, reference))
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
    best = _largest_move(series, others if ref is not None else list(series), distance)
    if best is not None:
        change, v, k, e0 = best
        lab = labels[k] if labels is not None and k < len(labels) else f"pair {k}"
        if change < 1:
            parts.append(f"The largest move towards the teacher was in {lab} of {the(v, reference)}: its distance to "
                         f"the teacher shrank to {change:.0%} of its epoch-{e0} value.")
        else:
            parts.append("No mapped layer of any variant moved closer to the teacher.")
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
                   "(teacher.finetune_epochs) or give it more data.")


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
    """Accuracy of the teacher and every variant that has one, with 95% error bars when n is known; a dashed line
    at `majority`, what always answering the most common class scores, when given."""
    models = _models(accuracy, variants)
    colors = variant_colors(models[1:])
    names = [m for m in models if accuracy.get(m) is not None]
    acc = [float(accuracy[m]) for m in names]
    err = [binomial_halfwidth(a, n) for a in acc] if n else None
    fig = go.Figure(go.Bar(
        x=[model_label(m, reference) for m in names], y=acc, marker_color=[colors[m] for m in names],
        text=[f"{a:.1%}" for a in acc], textposition="inside", insidetextanchor="start",
        textfont=dict(color="white", size=13),
        error_y=dict(type="data", array=err, visible=True, color="#111827", thickness=1.5) if err else None,
        hovertemplate="%{x}: %{y:.2%}<extra></extra>"))
    fig.update_layout(**_base_layout(360, title + (f" <sup>(n = {n}, whiskers = 95% interval)</sup>" if n else "")))
    if majority is not None:
        fig.add_hline(y=float(majority), line=dict(color="#6b7280", width=1.5, dash="dash"),
                      annotation_text=f"always the most common class: {majority:.0%}",
                      annotation_position="top right", annotation_font=dict(size=11, color="#374151"))
    fig.update_yaxes(range=[0.0, 1.0], tickformat=".0%", gridcolor="#f3f4f6")
    fig.update_xaxes(tickangle=0 if len(names) <= 5 else -30)
    return fig


def difference_chart(rows: Sequence[dict], reference: str, variants: Sequence[str] | None = None,
                     height: int | None = None) -> go.Figure:
    """Each variant's accuracy minus the reference's, in points, with its 95% interval; a line at zero.

    Rows from paired_verdicts draw the paired bootstrap interval and show McNemar's p on hover."""
    shown = [r for r in rows if r["diff"] is not None]
    paired = bool(shown) and all("p" in r for r in shown)
    colors = variant_colors(list(variants) if variants is not None else [r["variant"] for r in rows])
    fig = go.Figure()
    for r in shown:
        d, lo, hi = 100 * r["diff"], 100 * r["lo"], 100 * r["hi"]
        fig.add_trace(go.Scatter(
            x=[d], y=[model_label(r["variant"], reference)], mode="markers", showlegend=False,
            marker=dict(color=colors[r["variant"]], size=12),
            error_x=dict(type="data", symmetric=False, array=[hi - d], arrayminus=[d - lo], thickness=2,
                         color=colors[r["variant"]]),
            hovertemplate=f"{r['variant']}: %{{x:+.1f}} points (95% interval {lo:+.1f} to {hi:+.1f}"
                          + (f"; McNemar {p_text(r['p'])}" if paired else "") + ")<extra></extra>"))
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
    for c, (_, data, scale, fmt) in enumerate(panels, start=1):
        shown = [m for m in models if data.get(m) is not None]
        vals = [float(data[m]) * scale for m in shown]
        fig.add_trace(go.Bar(x=[model_label(m, reference) for m in shown], y=vals,
                             marker_color=[colors[m] for m in shown],
                             text=[fmt.format(v) for v in vals], textposition="outside", cliponaxis=False,
                             showlegend=False, hovertemplate="%{x}: %{text}<extra></extra>"), row=1, col=c)
    fig.update_layout(**_base_layout(360))
    fig.update_layout(margin=dict(l=10, r=10, t=50, b=10))
    fig.update_annotations(font=dict(size=13))
    fig.update_yaxes(gridcolor="#f3f4f6", rangemode="tozero")
    fig.update_xaxes(tickangle=0 if len(models) <= 3 else -45)
    return fig


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
    fig = go.Figure()
    metric = "js"
    for (tag, s), dash in zip(runs, RUN_DASHES):
        d = s.get("divergence") or {}
        metric = d.get("metric", metric)
        for v in run_variants(s):
            if d.get(v):
                fig.add_trace(go.Scatter(x=d["epochs"][:len(d[v])], y=d[v], mode="lines+markers", name=f"{tag} {v}",
                                         legendgroup=tag, line={"color": colors[v], "dash": dash, "width": 2.5},
                                         hovertemplate=f"{tag} {v}<br>epoch %{{x}}: %{{y:.4g}}<extra></extra>"))
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
    fig = go.Figure()
    for (tag, s), pattern in zip(runs, RUN_PATTERNS):
        acc = s.get("accuracy") or {}
        y = [None if acc.get(m) is None else round(100 * acc[m], 1) for m in models]
        fig.add_trace(go.Bar(
            x=models, y=y, name=tag, marker=dict(color=[colors[m] for m in models],
                                                 pattern=dict(shape=pattern, fgcolor="white", size=6)),
            text=["–" if v is None else f"{v}" for v in y], textposition="outside", cliponaxis=False,
            hovertemplate=f"{tag} %{{x}}: %{{y:.1f}}%<extra></extra>"))
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
    for c, s in enumerate((a, b), start=1):
        fig.add_trace(go.Bar(
            x=s, y=labels, orientation="h", showlegend=False,
            marker_color=np.where(s >= 0, "#16a34a", "#dc2626").tolist(),
            hovertemplate="%{y}: %{x:.3f}<extra></extra>"), row=1, col=c)
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
    for i, m in enumerate(models):
        label = model_label(m, reference)
        pts = [(s, v) for s, v in zip(seeds, per_seed.get(m) or []) if v is not None]
        fig.add_trace(go.Scatter(
            x=[i - 0.12] * len(pts), y=[v for _, v in pts], mode="markers", showlegend=False,
            marker=dict(color=colors[m], size=8, opacity=0.5, line=dict(width=0)),
            text=[f"seed {s}" for s, _ in pts], hovertemplate=f"{label}, %{{text}}: %{{y:{fmt}}}<extra></extra>"),
            row=1, col=col)
        mean, lo, hi = means.get(m, (None, None, None))
        if mean is None:
            continue
        err = None if lo is None else dict(type="data", symmetric=False, array=[hi - mean], arrayminus=[mean - lo],
                                           thickness=2, width=8, color=colors[m])
        interval = "" if lo is None else f" (95% interval {lo:{fmt}} to {hi:{fmt}})"
        fig.add_trace(go.Scatter(
            x=[i + 0.08], y=[mean], mode="markers", showlegend=False, error_y=err,
            marker=dict(color=colors[m], size=13, symbol="diamond", line=dict(color="white", width=1)),
            hovertemplate=f"{label}: mean %{{y:{fmt}}}{interval}<extra></extra>"), row=1, col=col)
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
