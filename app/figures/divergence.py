"""Attention divergence from the teacher: per mapped layer pair over epochs, the layer pairs x heads grid of every
variant, the cell clicked in it, and the student layer x teacher layer map of a suggested mapping. The numbers and
their reading are in distill_core.verdicts (divergence_series, divergence_reading). No Streamlit here."""
from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures.base import DISTANCE_SCALE, DISTANCE_SCALE_REVERSED, base_layout, closer_word, line_dash
from distill_core.verdicts import divergence_series, record_variants
from distill_core.vocab import LOWER_IS_CLOSER, METRIC_LABELS, model_label, variant_colors


def pair_labels(pairs: Sequence[Sequence[int]]) -> list[str]:
    """'teacher L3 → student L1' for each mapped (teacher_layer, student_layer) pair."""
    return [f"teacher L{t} → student L{s}" for t, s in pairs]


def cnn_maps(probe: dict) -> bool:
    """Whether a run compares CNN maps (one spatial map a stage, no heads), from its probe.json."""
    maps = probe.get("maps") or {}
    return any((maps.get(side) or {}).get("family") == "cnn" for side in ("teacher", "student"))


def comparison_rule(probe: dict) -> str:
    """How each variant's maps are compared with the teacher's in a mapped pair of layers, in a sentence for the
    page: the head rule of a model with heads; for CNNs, what their one map a stage is. '' when the probe says
    neither."""
    if cnn_maps(probe):
        return ("CNN maps: each mapped pair of stages compares the student's spatial map with the teacher's, one map "
                "a stage: its activation attention (the mean over channels of the squared activations, Zagoruyko & "
                "Komodakis), upsampled to the picture, a distribution over its pixels. A CNN has no heads: the grid "
                "below has one column.")
    rule = probe.get("head_rule")
    student_heads, teacher_heads = probe.get("student_heads"), probe.get("teacher_heads", 0)
    return {"direct": "Head rule direct: each student head is compared with the same teacher head.",
            "group": f"Head rule group: each of the student's {student_heads} heads is compared with the average of a "
                     f"group of {teacher_heads // max(1, student_heads or 1)} teacher heads.",
            "mean": "Head rule mean: both sides are averaged over their heads, one comparison per layer pair."
            }.get(rule, "")


def divergence_curves(records: Sequence[dict], metric: str, variants: Sequence[str] | None = None,
                      reference: str | None = None, per_head: bool = False, labels: Sequence[str] | None = None,
                      height: int = 380) -> go.Figure:
    """One panel per mapped layer pair: the metric across epochs, every variant on the same axes.

    Lines show the mean over compared heads (the reference variant dashed); with per_head, every compared head
    gets its own thin line.
    """
    variants = record_variants(records, variants)
    colors = variant_colors(variants)
    series = {v: divergence_series(records, v, metric) for v in variants}
    series = {v: s for v, s in series.items() if s[0]}
    n_pairs = max((s[1].shape[1] for s in series.values()), default=1)
    labels = list(labels) if labels is not None and len(labels) >= n_pairs else [f"pair {k}" for k in range(n_pairs)]
    fig = make_subplots(rows=1, cols=n_pairs, subplot_titles=labels[:n_pairs], shared_yaxes=True,
                        horizontal_spacing=0.04 if n_pairs > 1 else 0.0)
    traces, cols = [], []
    for v, (epochs, values) in series.items():
        dash, name = line_dash(v, reference), model_label(v, reference)
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
    fig.update_yaxes(title_text=f"{METRIC_LABELS.get(metric, metric)}<br><sup>{closer_word(metric)}</sup>",
                     row=1, col=1)
    fig.update_layout(**base_layout(height), legend=dict(orientation="h", y=-0.22, x=0))
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=10))
    return fig


def _grid_arrays(grids: dict[str, np.ndarray], names: Sequence[str], labels: Sequence[str]) -> dict[str, np.ndarray]:
    """Each named variant's (pairs, heads) values as floats, checked against the pair labels."""
    arrays = {v: np.asarray(grids[v], dtype=np.float64) for v in names}
    for v, a in arrays.items():
        if a.ndim != 2:
            raise ValueError(f"the grid of {v} must hold (pairs, heads) values, got shape {a.shape}")
        if a.shape[0] != len(labels):
            raise ValueError(f"{len(labels)} pair labels for the {a.shape[0]} rows of {v}")
    return arrays


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
    arrays = _grid_arrays(grids, names, labels)
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
    layout = base_layout(height or plot_px + top_margin + 10, title)
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
    scale = DISTANCE_SCALE if LOWER_IS_CLOSER.get(metric, True) else DISTANCE_SCALE_REVERSED
    layout["coloraxis"] = dict(colorscale=scale, cmin=lo, cmax=hi if hi > lo else lo + 1e-12,
                               colorbar=dict(thickness=12, x=right + 0.01, xanchor="left", len=1.0,
                                             tickformat=".1e" if tiny else None,
                                             title=dict(text=metric, side="top")))
    layout["annotations"] = annotations
    return go.Figure(data=traces, layout=layout)


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


def _cell_outlines(layers: Sequence[int], name: str, color: str, dash: str, inset: float) -> list[dict]:
    """An outline along the edges of the cell (student layer s, teacher layer layers[s]) for each s, `inset` of a
    cell inside them: the number in the middle of the cell stays clear. The first carries the legend entry."""
    return [dict(type="rect", xref="x", yref="y", x0=t - 0.5 + inset, x1=t + 0.5 - inset, y0=s - 0.5 + inset,
                 y1=s + 0.5 - inset, line=dict(color=color, width=3, dash=dash), fillcolor="rgba(0,0,0,0)",
                 layer="above", name=name, legendgroup=name, showlegend=s == 0)
            for s, t in enumerate(layers)]


def layer_cost_map(costs: Sequence[Sequence[float]], suggested: Sequence[int], used: Sequence[int] | None = None,
                   height: int | None = None) -> go.Figure:
    """Mean JS between each student layer (rows) and each teacher layer (columns), from mapping.layer_costs, its
    value written in each cell; a black outline along a cell's edges marks the suggested teacher layer of each
    student layer, a blue dotted one just inside it the layer the run used (hover a cell to read both)."""
    z = np.asarray(costs, dtype=np.float64)                      # (Ls, Lt)
    ls, lt = z.shape
    xs, ys = [f"teacher {t}" for t in range(lt)], [f"student {s}" for s in range(ls)]
    tiny = float(np.nanmax(np.abs(z), initial=0.0)) < 0.01
    marks = [("suggested", list(suggested), "#111827", "solid", 0.03)]
    if used is not None and len(used) == ls:
        marks.append(("used by the run", list(used), "#2563eb", "dot", 0.11))
    notes = [["" for _ in range(lt)] for _ in range(ls)]
    for name, layers, *_ in marks:
        for s, t in enumerate(layers):
            notes[s][t] += f" · {name}"
    traces = [dict(
        type="heatmap", z=z, x=xs, y=ys, colorscale=DISTANCE_SCALE, xgap=2, ygap=2, customdata=notes,
        texttemplate="%{z:.2e}" if tiny else "%{z:.3g}",
        textfont=dict(size=12), colorbar=dict(thickness=12, title=dict(text="JS", side="top")),
        hovertemplate="%{y} vs %{x}: JS %{z:.4g}%{customdata}<extra></extra>")]
    shapes = [o for name, layers, color, dash, inset in marks for o in _cell_outlines(layers, name, color, dash, inset)]
    fig = go.Figure(data=traces)
    axis = dict(type="category", showgrid=False, ticks="")
    fig.update_layout(**base_layout(height or 150 + 60 * ls, "Mean JS: student layer × teacher layer"),
                      xaxis=dict(categoryorder="array", categoryarray=xs, **axis),
                      yaxis=dict(categoryorder="array", categoryarray=ys, autorange="reversed", **axis),
                      legend=dict(orientation="h", y=-0.18, x=0), showlegend=True, shapes=shapes)
    return fig
