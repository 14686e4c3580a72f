"""Accuracy and cost figures: test accuracy with its uncertainty, each variant's difference from the reference,
parameters / size / latency, and accuracy under attack. The intervals and verdicts they draw are computed in
distill_core.stats and distill_core.verdicts. No Streamlit here."""
from __future__ import annotations

import html
from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures.base import SCREEN_SHARE, WIDE_PX, base_layout, category_ticks, line_dash
from distill_core.stats import binomial_halfwidth, p_text
from distill_core.vocab import TEACHER, model_label, variant_colors

AXIS_PX = 90                # what the y axis's title and tick labels take of a chart's width


def _models(d: dict, names: Sequence[str] | None) -> list[str]:
    """Teacher first, then the variants in run order (the keys of a summary's dict when names is None)."""
    names = list(names) if names is not None else [k for k in d if k != TEACHER]
    return [TEACHER, *[n for n in names if n != TEACHER]]


def _accuracy_range(acc: list[float], err: list[float] | None, teacher: float | None, t_err: float,
                    majority: float | None) -> tuple[float, float]:
    """The y range of accuracy_bars: every bar top with its whisker, the teacher with its band, the majority rate;
    then a margin."""
    ends = [a + s * e for a, e in zip(acc, err or [0.0] * len(acc)) for s in (-1, 1)]
    ends += [float(teacher) - t_err, float(teacher) + t_err] if teacher is not None else []
    ends += [float(majority)] if majority is not None else []
    lo, hi = (min(ends), max(ends)) if ends else (0.0, 1.0)
    pad = max(0.15 * (hi - lo), 0.01)
    y0, y1 = max(0.0, lo - pad), min(1.0, hi + 1.6 * pad)       # more room on top for the lines' labels
    if y0 < 0.1:
        y0 = 0.0                                               # close to 0 anyway: start there
    return y0, y1


def accuracy_bars(accuracy: dict, n: int | None = None, title: str = "Test accuracy",
                  variants: Sequence[str] | None = None, reference: str | None = None,
                  majority: float | None = None, width_px: int = WIDE_PX // 2, measure: str = "accuracy") -> go.Figure:
    """Test accuracy of every variant that has one: a bar each with its 95% error bar when n is known; the
    teacher as a labelled horizontal line (its 95% interval a pale band) and `majority`, what always answering the
    most common class scores, as a dashed one. The bars' names wrap (or angle) so that none touches the next in a
    chart `width_px` wide (the page gives it half its width).

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
    y0, y1 = _accuracy_range(acc, err, teacher, t_err, majority)
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
    fig.update_layout(**base_layout(360, title + (f" <sup>(n = {n:,}, whiskers = 95% interval)</sup>" if n else "")))
    fig.update_layout(xaxis2=dict(overlaying="x", range=[0, 1], visible=False, fixedrange=True), hovermode="closest")
    if majority is not None:
        fig.add_hline(y=float(majority), line=dict(color="#6b7280", width=1.5, dash="dash"),
                      annotation_text=f"always the most common class: {majority:.0%}",
                      annotation_position="top right", annotation_font=dict(size=11, color="#374151"),
                      annotation_bgcolor="rgba(255,255,255,0.85)")
    fine = y1 - y0 < 0.06
    fig.update_yaxes(range=[y0, y1], tickformat=".1%" if fine else ".0%", gridcolor="#f3f4f6",
                     title_text=measure + ("<br><sup>axis does not start at 0</sup>" if y0 > 0 else ""))
    labels = [model_label(m, reference) for m in names]           # each bar's accuracy under its name
    fig.update_xaxes(**category_ticks(labels, SCREEN_SHARE * width_px - AXIS_PX,
                                      below=[f"<b>{a:.1%}</b>" for a in acc]))
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
    fig.update_layout(**base_layout(height or 110 + 46 * max(1, len(shown)),
                                     f"Difference from the {model_label(reference, reference)}<br>"
                                     f"<sup>(points, whiskers = {'paired bootstrap ' if paired else ''}95% "
                                     f"interval)</sup>"))
    fig.update_layout(margin_t=78)                   # the title on two lines: it fits half a screen's width
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
    fig.update_layout(**base_layout(360))
    fig.update_layout(margin=dict(l=10, r=10, t=50, b=10))
    fig.update_annotations(font=dict(size=13))
    fig.update_yaxes(gridcolor="#f3f4f6", rangemode="tozero")
    panel_px = WIDE_PX * (1 - 2 * 0.08) / 3                  # the plot width of one of the three panels
    for col, trace in enumerate(traces, start=1):            # names wrapped (or angled) so that no two touch
        fig.update_xaxes(category_ticks(trace["x"], panel_px), row=1, col=col)
    return fig


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
            line=dict(color=colors[m], dash=line_dash(m, reference), width=3 if m == TEACHER else 2),
            hovertemplate=f"{html.escape(label, quote=False)} · ε = %{{x:g}}: %{{y:.1f}}%<extra></extra>"))
    fig = go.Figure(data=traces)
    sub = f" <sup>(n = {record['n']}, {record.get('steps', '?')} PGD steps)</sup>" if record.get("n") else ""
    fig.update_layout(**base_layout(height, "Accuracy under attack" + sub), hovermode="closest",
                      legend=dict(orientation="h", y=-0.28, x=0))
    on_pixels = str(record.get("attack", "")).startswith("PGD on pixels")
    fig.update_xaxes(title_text=("ε: largest change of a pixel, as a fraction of the pixel range" if on_pixels else
                                 "ε: perturbation of each word embedding, relative to its size"), tickvals=eps,
                     gridcolor="#f3f4f6", zeroline=False)
    fig.update_yaxes(title_text="accuracy (%)", range=[0, 102], ticksuffix="%", gridcolor="#f3f4f6")
    return fig


# ---- a task's other measures: entity F1 per type (tagging), BLEU and chrF (translation) -------------------------------
FRACTIONS = ("precision", "recall", "f1", "token_accuracy", "agreement")     # stored as fractions, shown in %
DETAIL_NAMES = {"precision": "precision (%)", "recall": "recall (%)", "f1": "entity F1 (%)",
                "token_accuracy": "token accuracy (%)", "bleu": "BLEU", "chrf": "chrF", "beam": "beam",
                "perplexity": "perplexity", "nll": "NLL per token", "kl_to_teacher": "KL to the teacher",
                "agreement": "top-1 agreement with the teacher (%)", "tokens": "test tokens",
                "passages": "test passages"}


def detail_format(column: str) -> str:
    """How a column of details_table is printed: divergences and log-likelihoods with three decimals."""
    return "%.3f" if column in (DETAIL_NAMES["kl_to_teacher"], DETAIL_NAMES["nll"]) else \
        "%d" if column in (DETAIL_NAMES["tokens"], DETAIL_NAMES["passages"]) else "%.1f"


def details_table(details: dict, models: Sequence[str]) -> list[dict]:
    """One row per model of summary.json "details": its numbers (fractions in %), per-type breakdowns left out."""
    rows = []
    for m in models:
        d = details.get(m) or {}
        row = {"model": m}
        for k, v in d.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            row[DETAIL_NAMES.get(k, k)] = 100 * v if k in FRACTIONS else v
        if len(row) > 1:
            rows.append(row)
    return rows


def details_notes(details: dict, models: Sequence[str], label) -> list[str]:
    """What a model's details warn of (the teacher itself is poor, ...), one line each."""
    return [f"{label(m)}: {details[m]['warning']}" for m in models if (details.get(m) or {}).get("warning")]


def per_type_f1(details: dict, models: Sequence[str], label, reference: str | None = None,
                width_px: int = WIDE_PX) -> go.Figure:
    """Entity F1 per entity type, a group of bars per type (the teacher first, then each variant), the types in
    order of their test support (the most frequent first), with each type's support under its name."""
    per = {m: (details.get(m) or {}).get("per_type") or {} for m in models}
    support: dict[str, int] = {}
    for m in models:
        for t, d in per[m].items():
            support[t] = max(support.get(t, 0), int(d.get("support") or 0))
    types = sorted(support, key=lambda t: (-support[t], t))
    colors = variant_colors([m for m in models if m != TEACHER])
    fig = go.Figure()
    for m in models:
        fig.add_bar(name=label(m), x=types, y=[100 * (per[m].get(t) or {}).get("f1", 0.0) for t in types],
                    marker_color=colors.get(m), customdata=[support[t] for t in types],
                    hovertemplate="%{x} (%{customdata} in test)<br>" + html.escape(label(m))
                                  + ": F1 %{y:.1f}%<extra></extra>")
    fig.update_layout(**base_layout(380, "Entity F1 per type on the test set"), barmode="group",
                      legend=dict(orientation="h", y=-0.3))
    fig.update_xaxes(**category_ticks(types, width_px - AXIS_PX, below=[f"<sup>{support[t]:,} in test</sup>"
                                                                         for t in types]))
    fig.update_yaxes(title_text="F1 (%)", range=[0, 100], ticksuffix="%", gridcolor="#f3f4f6")
    return fig
