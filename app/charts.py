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

COLORS = {"teacher": "#374151", "distilled": "#2563eb", "baseline": "#f59e0b"}
MODEL_LABELS = {"teacher": "teacher", "distilled": "distilled student", "baseline": "baseline student"}
MAP_SCALE = "Blues"                 # attention weights: white = 0
DIFF_SCALE = "RdBu_r"               # student - teacher: red where the student attends more, blue where less
ZWSP = "\u200b"                     # makes repeated tokens distinct axis categories without changing how they look
FONT = dict(family="Inter, 'Source Sans Pro', Arial, sans-serif", size=12)

# metric names here mirror distill_core.metrics (kept local so this module imports without torch)
METRIC_NAMES = {"kl": "KL(teacher || student)", "js": "Jensen-Shannon", "mse": "MSE", "cosine": "cosine similarity"}
LOWER_IS_CLOSER = {"kl": True, "js": True, "mse": True, "cosine": False}


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


def divergence_curves(records: Sequence[dict], metric: str, per_head: bool = False,
                      labels: Sequence[str] | None = None, height: int = 360) -> go.Figure:
    """One panel per mapped layer pair: the metric across epochs, distilled vs baseline on the same axes.

    Lines show the mean over compared heads; with per_head, every compared head gets its own thin line.
    """
    series = {s: divergence_series(records, s, metric) for s in ("distilled", "baseline")}
    series = {s: v for s, v in series.items() if v[0]}
    n_pairs = max((v[1].shape[1] for v in series.values()), default=1)
    labels = list(labels) if labels is not None else [f"pair {k}" for k in range(n_pairs)]
    fig = make_subplots(rows=1, cols=n_pairs, subplot_titles=labels[:n_pairs], shared_yaxes=True,
                        horizontal_spacing=0.04 if n_pairs > 1 else 0.0)
    for s, (epochs, values) in series.items():
        dash = "solid" if s == "distilled" else "dash"
        for k in range(values.shape[1]):
            if per_head:
                for h in range(values.shape[2]):
                    fig.add_trace(go.Scatter(
                        x=epochs, y=values[:, k, h], mode="lines+markers", name=f"{MODEL_LABELS[s]}, head {h}",
                        legendgroup=s, showlegend=False, line=dict(color=COLORS[s], width=1, dash=dash),
                        marker=dict(size=4), opacity=0.55,
                        hovertemplate=f"{s} head {h}<br>epoch %{{x}}<br>{metric}: %{{y:.4g}}<extra></extra>"),
                        row=1, col=k + 1)
            fig.add_trace(go.Scatter(
                x=epochs, y=values[:, k, :].mean(-1), mode="lines+markers",
                name=MODEL_LABELS[s] + (" (mean of heads)" if per_head else ""), legendgroup=s,
                showlegend=k == 0, line=dict(color=COLORS[s], width=3, dash=dash), marker=dict(size=8),
                hovertemplate=f"{s}<br>epoch %{{x}}<br>{metric}: %{{y:.4g}}<extra></extra>"), row=1, col=k + 1)
    direction = f"{'lower' if LOWER_IS_CLOSER.get(metric, True) else 'higher'} = closer to the teacher"
    fig.update_xaxes(title_text="epoch", dtick=1, showgrid=True, gridcolor="#f3f4f6", zeroline=False)
    fig.update_yaxes(showgrid=True, gridcolor="#f3f4f6", zeroline=False, exponentformat="e")
    fig.update_yaxes(title_text=f"{METRIC_NAMES.get(metric, metric)}<br><sup>{direction}</sup>", row=1, col=1)
    fig.update_layout(**_base_layout(height), legend=dict(orientation="h", y=-0.22, x=0))
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=10))
    return fig


def layer_head_grid(values: np.ndarray, labels: Sequence[str], title: str = "", metric: str = "js",
                    zmin: float | None = None, zmax: float | None = None, height: int | None = None) -> go.Figure:
    """Mapped layer pairs x compared heads, coloured by the metric (red = far from the teacher)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"layer_head_grid needs (pairs, heads) values, got shape {values.shape}")
    if len(labels) != values.shape[0]:
        raise ValueError(f"{len(labels)} pair labels for {values.shape[0]} rows")
    scale = "Reds" if LOWER_IS_CLOSER.get(metric, True) else "Reds_r"
    heads = [f"head {h}" for h in range(values.shape[1])]
    fig = go.Figure(go.Heatmap(
        z=values, x=heads, y=list(labels), colorscale=scale, zmin=zmin, zmax=zmax, texttemplate="%{z:.3g}",
        textfont=dict(size=11), xgap=2, ygap=2, colorbar=dict(thickness=12, title=dict(text=metric, side="right")),
        hovertemplate="%{y}, %{x}<br>" + metric + ": %{z:.4g}<extra></extra>"))
    fig.update_layout(**_base_layout(height or 110 + 48 * values.shape[0], title))
    fig.update_yaxes(autorange="reversed", type="category", showgrid=False)
    fig.update_xaxes(type="category", side="bottom", showgrid=False)
    return fig


def divergence_reading(records: Sequence[dict], metric: str, labels: Sequence[str] | None = None) -> str:
    """A plain-language reading of how the metric moved, computed from the records."""
    name = METRIC_NAMES.get(metric, metric)
    lower = LOWER_IS_CLOSER.get(metric, True)
    dist_e, dist_v = divergence_series(records, "distilled", metric)
    base_e, base_v = divergence_series(records, "baseline", metric)
    if not dist_e:
        return f"No {name} has been recorded for the distilled student yet."

    def closer(a: float, b: float) -> bool:
        return a < b if lower else a > b

    def distance(v: float) -> float:    # how far from the teacher: the metric, or 1 - cosine
        return v if lower else 1.0 - v

    def moved(first: float, last: float) -> str:
        if math.isclose(first, last, rel_tol=1e-3, abs_tol=1e-12):
            return f"stayed at {last:.3g}"
        verb = "fell" if last < first else "rose"
        return f"{verb} from {first:.3g} to {last:.3g}"

    d_mean = dist_v.mean(axis=(1, 2))
    e0, en = dist_e[0], dist_e[-1]
    if len(dist_e) == 1:
        return (f"Only epoch {e0} has been recorded so far: the distilled student's mean {name} to the teacher "
                f"is {d_mean[0]:.3g}.")
    parts = [f"The distilled student's mean {name} {moved(d_mean[0], d_mean[-1])} between epoch {e0} and epoch {en}"]
    if base_e:
        b_mean = base_v.mean(axis=(1, 2))
        span = "" if (base_e[0], base_e[-1]) == (e0, en) else f" between epoch {base_e[0]} and epoch {base_e[-1]}"
        parts[0] += f"; the baseline's {moved(b_mean[0], b_mean[-1])}{span}."
        d_last, b_last = distance(d_mean[-1]), distance(b_mean[-1])
        if d_last > 1e-12 and b_last > 1e-12 and not math.isclose(d_last, b_last, rel_tol=1e-3):
            if closer(d_mean[-1], b_mean[-1]):
                ratio = b_last / d_last
                parts.append(f"At epoch {en} the distilled student's attention is {ratio:.3g}× closer to the "
                             f"teacher's than the baseline's: training on the attention loss pulled it towards "
                             f"the teacher.")
            else:
                ratio = d_last / b_last
                parts.append(f"At epoch {en} the baseline's attention is {ratio:.3g}× closer to the teacher's than "
                             f"the distilled student's: the attention loss has not pulled the student closer.")
        else:
            parts.append(f"At epoch {en} both students are about equally close to the teacher.")
    else:
        parts[0] += " (this run trained no baseline)."
    # the mapped pair that moved most towards the teacher
    start = np.array([distance(v) for v in dist_v[0].mean(-1)])      # per mapped pair, first epoch
    end = np.array([distance(v) for v in dist_v[-1].mean(-1)])       # and last
    if len(start) > 1 and np.all(start > 1e-12):
        change = end / start
        k = int(np.argmin(change))
        lab = labels[k] if labels is not None and k < len(labels) else f"pair {k}"
        if change[k] < 1:
            parts.append(f"The largest move was in {lab}, whose distance to the teacher shrank to "
                         f"{change[k]:.0%} of its epoch-{e0} value.")
        else:
            parts.append(f"No mapped layer moved closer to the teacher; {lab} changed least.")
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


def accuracy_bars(accuracy: dict, n: int | None = None, title: str = "Test accuracy") -> go.Figure:
    """Accuracy per model (teacher, baseline, distilled that have one), with 95% error bars when n is known."""
    names = [m for m in ("teacher", "baseline", "distilled") if accuracy.get(m) is not None]
    acc = [float(accuracy[m]) for m in names]
    err = [binomial_halfwidth(a, n) for a in acc] if n else None
    fig = go.Figure(go.Bar(
        x=names, y=acc, marker_color=[COLORS[m] for m in names],
        text=[f"{a:.1%}" for a in acc], textposition="inside", insidetextanchor="start",
        textfont=dict(color="white", size=13),
        error_y=dict(type="data", array=err, visible=True, color="#111827", thickness=1.5) if err else None,
        hovertemplate="%{x}: %{y:.2%}<extra></extra>"))
    fig.update_layout(**_base_layout(340, title + (f" <sup>(n = {n}, whiskers = 95% interval)</sup>" if n else "")))
    fig.update_yaxes(range=[0.0, 1.0], tickformat=".0%", gridcolor="#f3f4f6")
    return fig


def efficiency_bars(params: dict, size_bytes: dict, latency_ms: dict, device: str = "") -> go.Figure:
    """Parameters (millions), size on disk (MB) and latency (ms) per model, side by side."""
    names = [m for m in ("teacher", "baseline", "distilled") if m in params or m in size_bytes or m in latency_ms]
    panels = [("parameters (millions)", params, 1e-6, "{:.2f} M"), ("size on disk (MB)", size_bytes, 1e-6, "{:.1f} MB"),
              (f"latency per example (ms{', ' + device if device else ''})", latency_ms, 1.0, "{:.1f} ms")]
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[0] for p in panels], horizontal_spacing=0.08)
    for c, (_, data, scale, fmt) in enumerate(panels, start=1):
        shown = [m for m in names if data.get(m) is not None]
        vals = [float(data[m]) * scale for m in shown]
        fig.add_trace(go.Bar(x=shown, y=vals, marker_color=[COLORS[m] for m in shown],
                             text=[fmt.format(v) for v in vals], textposition="outside", cliponaxis=False,
                             showlegend=False, hovertemplate="%{x}: %{text}<extra></extra>"), row=1, col=c)
    fig.update_layout(**_base_layout(340))
    fig.update_layout(margin=dict(l=10, r=10, t=50, b=10))
    fig.update_annotations(font=dict(size=13))
    fig.update_yaxes(gridcolor="#f3f4f6", rangemode="tozero")
    fig.update_xaxes(tickangle=0)
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


def attribution_reading(student: str, stats: dict) -> str:
    """A plain-language comparison of attribution and attention closeness, from the numbers.

    stats: student name -> (attribution rank correlation with the teacher, [CLS] attention agreement with it).
    """
    def fmt(x: float) -> str:
        return "undefined" if math.isnan(x) else f"{x:.2f}"

    rho, agree = stats[student]
    text = (f"On this text the {MODEL_LABELS[student]}'s attributions rank the tokens with ρ = {fmt(rho)} against "
            f"the teacher's, and its [CLS] attention agrees {fmt(agree)} with the teacher's.")
    if {"distilled", "baseline"} <= set(stats):
        (r_d, a_d), (r_b, a_b) = stats["distilled"], stats["baseline"]

        def closer(d: float, b: float) -> str | None:
            if math.isnan(d) or math.isnan(b) or abs(d - b) < 0.005:
                return None
            return "distilled" if d > b else "baseline"

        att, attr = closer(a_d, a_b), closer(r_d, r_b)
        numbers = f"(attention agreement: distilled {fmt(a_d)}, baseline {fmt(a_b)}; " \
                  f"attribution ρ: distilled {fmt(r_d)}, baseline {fmt(r_b)})"
        if att is None and attr is None:
            text += f" Both students are about as close to the teacher on both counts {numbers}."
        elif att is None:
            text += (f" Their attention is about as close to the teacher's, but the {MODEL_LABELS[attr]} has the "
                     f"closer attributions {numbers}.")
        elif attr is None:
            text += (f" The {MODEL_LABELS[att]} has the closer attention, but their attributions are about as close "
                     f"to the teacher's {numbers}.")
        elif att == attr:
            text += (f" The {MODEL_LABELS[att]} is closer on both counts {numbers}: here closer attention goes with "
                     f"closer reasoning.")
        else:
            text += (f" The {MODEL_LABELS[att]} has the closer attention but the {MODEL_LABELS[attr]} the closer "
                     f"attributions {numbers}: here attention that looks like the teacher's does not mean the same "
                     f"tokens drive the decision.")
    return text + " One text is an anecdote; compare a few probe examples before drawing a conclusion."
