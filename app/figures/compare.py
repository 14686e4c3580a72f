"""Two runs, or two students, compared: the colours of two runs' variants, their divergence and accuracy overlaid,
and one side's divergence to the teacher minus the other's, layer pair by head. No Streamlit here."""
from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from app.figures.base import (DIFF_SCALE, DIFF_SCALE_REVERSED, SCREEN_SHARE, SIDE_COLORS, WIDE_PX, base_layout,
                              category_ticks, closer_word)
from distill_core.verdicts import closer_sides
from distill_core.vocab import LOWER_IS_CLOSER, METRIC_LABELS, PALETTE, TEACHER, run_variants, variant_colors

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
    fig.update_layout(**base_layout(height, f"Attention divergence from the teacher (mean "
                                             f"{METRIC_LABELS.get(metric, metric)})"),
                      legend={"orientation": "h", "y": -0.2})
    fig.update_xaxes(title_text="epoch", dtick=1, gridcolor="#f3f4f6")
    fig.update_yaxes(title_text=f"{metric}<br><sup>{closer_word(metric)}</sup>", gridcolor="#f3f4f6",
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
    fig.update_layout(**base_layout(height, "Test accuracy (%) <sup>plain bars: A · hatched: B</sup>"),
                      barmode="group", legend={"orientation": "h", "y": -0.2})
    fig.update_yaxes(range=[0, 112], gridcolor="#f3f4f6", title_text="%")
    fig.update_xaxes(**category_ticks(models, SCREEN_SHARE * WIDE_PX / 2 - 70))     # half the page wide
    return fig


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
    a_closer, b_closer = closer_sides(d, metric)
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
        colorscale=DIFF_SCALE if lower else DIFF_SCALE_REVERSED, texttemplate="%{z:+.2e}" if tiny else "%{z:+.3g}",
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
    fig.update_layout(**base_layout(height or int(max(300, 170 + 44 * len(row_labels))), full))
    fig.update_layout(margin=dict(l=10, r=90, t=70, b=10))
    fig.update_xaxes(type="category", showgrid=False, side="bottom", automargin=True)
    fig.update_yaxes(type="category", showgrid=False, autorange="reversed", automargin=True)
    return fig
