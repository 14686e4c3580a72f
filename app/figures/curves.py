"""Curves over epochs: one value per variant (validation accuracy, mean divergence), the training losses one
panel per loss, and the loss weights and KD temperature each variant actually trained with. No Streamlit here."""
from __future__ import annotations

import html
import math
from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures.base import base_layout, line_dash
from distill_core.verdicts import record_variants
from distill_core.vocab import LOSS_TITLES, model_label, variant_colors


def _last_epoch(records: Sequence[dict], epochs) -> float:
    """The right end of an epoch axis: the planned epochs when known, else the last recorded one, at least 1 (a
    run that has recorded only epoch 0 still gets an axis from 0 to its planned end)."""
    try:
        planned = float(epochs) if epochs is not None else 0.0
    except (TypeError, ValueError):
        planned = 0.0
    seen = [float(r["epoch"]) for r in records if isinstance(r.get("epoch"), (int, float))]
    return max([1.0, planned, *seen])


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


def variant_lines(records: Sequence[dict], value, title: str, y_title: str, variants: Sequence[str] | None = None,
                  reference: str | None = None, epochs: int | None = None, height: int = 280,
                  y_range: tuple[float, float] | None = None) -> go.Figure:
    """One line per variant of `value(record)` against epoch (the live curves); x spans 0..epochs."""
    variants = record_variants(records, variants)
    colors = variant_colors(variants)
    traces = []
    for v in variants:
        pts = [(r["epoch"], value(r)) for r in records if r.get("student") == v]
        pts = [(e, y) for e, y in pts if y is not None and not (isinstance(y, float) and math.isnan(y))]
        if pts:
            traces.append(dict(type="scatter", x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                               name=v, line={"color": colors[v], "dash": line_dash(v, reference)}))
    fig = go.Figure(data=traces)
    if not fig.data:
        fig.add_annotation(text="appears after the first epoch", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper", font={"color": "gray"})
        fig.update_yaxes(showticklabels=False, range=[0, 1])
    last = _last_epoch(records, epochs)
    fig.update_layout(**base_layout(height, title), xaxis_title="epoch", yaxis_title=y_title,
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


def _loss_points(records: Sequence[dict], steps: Sequence[dict],
                 variants: Sequence[str]) -> tuple[dict[tuple[str, str], list], dict[tuple[str, str], list]]:
    """Each (loss, variant)'s epoch means [(middle of the epoch, mean, epoch)] from metrics.jsonl records (epoch 0,
    before training, has none) and its steps [(fractional epoch, value)] from train_steps.jsonl records; never the
    weighted "total"."""
    means: dict[tuple[str, str], list] = {}
    lines: dict[tuple[str, str], list] = {}
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
    return means, lines


def _add_loss_lines(fig: go.Figure, k: str, v: str, pts_l: list, pts_m: list, color: str, reference: str | None,
                    shown: set[str], row: int, col: int) -> None:
    """One variant's line of loss k in its panel: its steps as a thin line, its epoch means as dots (joined by a
    line when there are no steps); the variant enters the legend once (`shown`)."""
    short = html.escape(LOSS_TITLES.get(k, k).partition(" (")[0], quote=False)
    label = html.escape(model_label(v, reference), quote=False)
    style = dict(name=model_label(v, reference), legendgroup=v, meta=dict(loss=k, student=v))
    line = dict(color=color, dash=line_dash(v, reference))
    if pts_l:
        fig.add_trace(go.Scatter(
            x=[p[0] for p in pts_l], y=[p[1] for p in pts_l], mode="lines", opacity=0.75,
            line=dict(**line, width=1.2), showlegend=v not in shown, **style,
            hovertemplate=f"{label} · {short}<br>epoch %{{x:.2f}}: %{{y:.4g}}<extra></extra>"),
            row=row, col=col)
        shown.add(v)
    if pts_m:
        fig.add_trace(go.Scatter(
            x=[p[0] for p in pts_m], y=[p[1] for p in pts_m], customdata=[p[2] for p in pts_m],
            mode="markers" if pts_l else "lines+markers", line=dict(**line, width=2),
            marker=dict(color=color, size=8, symbol="circle-open" if v == reference else "circle",
                        line=dict(color=color, width=2)),
            showlegend=v not in shown, **style,
            hovertemplate=f"{label} · {short}<br>mean over epoch %{{customdata}}: %{{y:.4g}}<extra></extra>"),
            row=row, col=col)
        shown.add(v)


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
    variants = record_variants(records + steps, variants)
    colors = variant_colors(variants)
    means, lines = _loss_points(records, steps, variants)
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
        for v in variants:
            _add_loss_lines(fig, k, v, sorted(lines.get((k, v), [])), sorted(means.get((k, v), [])), colors[v],
                            reference, shown, row + 1, col + 1)
    _epoch_panels(fig, n, rows, cols, _last_epoch(records + steps, epochs))
    if not losses:
        fig.add_annotation(text="appears after the first training steps", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper", font={"color": "gray"})
        fig.update_yaxes(showticklabels=False, range=[0, 1])
    how = "thin lines: training steps, dots: epoch means" if lines else "dots: the mean over each epoch"
    note = f" <sup>(each loss unweighted; {how})</sup>" if losses else ""
    fig.update_layout(**base_layout(height or 120 + 250 * rows, f"{title}{note}" if title else None),
                      legend=dict(orientation="h", y=-0.12 if rows > 1 else -0.25, x=0))
    fig.update_layout(margin=dict(l=10, r=10, t=95 if title else 50, b=10))      # room for two-line panel titles
    return fig


def _varies(values: Sequence[float]) -> bool:
    """True when a recorded series is not constant (up to float noise)."""
    return bool(values) and max(values) - min(values) > 1e-6 * max(1.0, max(abs(x) for x in values))


def _weight_series(steps: Sequence[dict], variants: Sequence[str]) -> dict[tuple[str, str], list]:
    """(weight name or "temperature", variant) -> [(epoch, value)] from train_steps.jsonl records."""
    series: dict[tuple[str, str], list] = {}
    for r in steps:
        v = r.get("student")
        if v not in variants:
            continue
        for k, w in (r.get("weights") or {}).items():
            if _finite(w):
                series.setdefault((k, v), []).append((float(r["epoch"]), float(w)))
        if _finite(r.get("temperature")):
            series.setdefault(("temperature", v), []).append((float(r["epoch"]), float(r["temperature"])))
    return series


def weights_and_temperature(step_records: Sequence[dict], variants: Sequence[str] | None = None,
                            reference: str | None = None, epochs: int | None = None,
                            height: int | None = None) -> go.Figure | None:
    """The loss weights and the KD temperature each variant trained with, from train_steps.jsonl records
    ({"epoch": fractional, "student", "weights": {loss: effective weight}, "temperature"}): one small panel per
    loss weight that changes, one for the temperature when it changes, a line per variant whose weight or
    temperature changes (colours and dashes of loss_components). None when nothing changes (plain runs, and runs
    recorded before the weights were written), so pages draw nothing."""
    steps = [r for r in (step_records or []) if _finite(r.get("epoch"))]
    variants = record_variants(steps, variants)
    series = _weight_series(steps, variants)
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
                line=dict(color=colors[v], dash=line_dash(v, reference), width=1.6),
                hovertemplate=f"{label} · {what}<br>epoch %{{x:.2f}}: %{{y:.4g}}<extra></extra>"))
            at.append((row + 1, col + 1))
            legend.add(v)
    if traces:
        fig.add_traces(traces, rows=[r for r, _ in at], cols=[c for _, c in at])
    _epoch_panels(fig, n, rows, cols, _last_epoch(steps, epochs))
    fig.update_yaxes(rangemode="tozero")
    fig.update_layout(**base_layout(height or 110 + 220 * rows, "Loss weights and temperature actually used"),
                      legend=dict(orientation="h", y=-0.12 if rows > 1 else -0.3, x=0))
    fig.update_layout(margin=dict(l=10, r=10, t=80, b=10))
    return fig


def teacher_fit(points: Sequence[dict], epochs_planned: float | None = None) -> go.Figure:
    """The teacher's curve while it trains (progress.json's teacher_curve, fit_curve.py): its validation score
    (accuracy, entity F1, chrF, or perplexity for a language model) and its training loss, by epoch."""
    score = next((k for k in ("val_accuracy", "val_perplexity") if any(p.get(k) is not None for p in points)), None)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    xs = [p.get("epoch") for p in points]
    if score is not None:
        ys = [p.get(score) for p in points]
        name = "validation perplexity" if score == "val_perplexity" else "validation score"
        fig.add_trace(go.Scatter(x=xs, y=[100 * y if y is not None and score == "val_accuracy" else y for y in ys],
                                 mode="lines+markers", name=name, line=dict(color="#1f77b4", width=2)),
                      secondary_y=False)
        fig.update_yaxes(title_text="perplexity" if score == "val_perplexity" else "validation %", secondary_y=False)
    if any(p.get("train_loss") is not None for p in points):
        fig.add_trace(go.Scatter(x=xs, y=[p.get("train_loss") for p in points], mode="lines+markers",
                                 name="training loss", line=dict(color="#888888", dash="dot")), secondary_y=True)
        fig.update_yaxes(title_text="training loss", secondary_y=True, showgrid=False)
    fig.update_xaxes(title_text="epoch", range=[0, max([epochs_planned or 0, *[x or 0 for x in xs]]) + 0.05],
                     gridcolor="#eeeeee")
    fig.update_layout(**base_layout(300, "The teacher while it trains (once; cached for later sessions)"),
                      legend=dict(orientation="h", y=-0.25))
    return fig
