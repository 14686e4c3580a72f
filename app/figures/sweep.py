"""A sweep across seeds: every model's test accuracy and each variant's final attention divergence, a dot per seed and
the mean with its 95% interval. The verdicts across seeds (sweep_verdict_lines) are in distill_core.verdicts. No
Streamlit here."""
from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures.base import SCREEN_SHARE, WIDE_PX, base_layout, category_ticks
from distill_core.vocab import METRIC_LABELS, TEACHER, model_label, variant_colors

PANEL_PX = SCREEN_SHARE * WIDE_PX * 0.45 - 70     # one of the two panels of a full-width chart, less its y axis


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
    ticks = category_ticks([model_label(m, reference) for m in models], PANEL_PX, values=range(len(models)))
    fig.update_xaxes(range=[-0.6, len(models) - 0.4], **ticks, showgrid=False, zeroline=False,
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
    fig.update_layout(**base_layout(height, f"Across {n} seed{'s' if n != 1 else ''} <sup>(dots: one seed each; "
                                             f"diamonds: mean; whiskers: 95% interval of the mean)</sup>"))
    fig.update_annotations(font=dict(size=13))
    fig.update_yaxes(tickformat=".0%", gridcolor="#f3f4f6", row=1, col=1)
    fig.update_yaxes(gridcolor="#f3f4f6", rangemode="tozero", row=1, col=2)
    if not seeds:
        fig.add_annotation(text="appears when the first seed finishes", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper", font={"color": "gray"})
    return fig
