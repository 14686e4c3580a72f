"""Token attributions of the teacher and a student side by side. Their reading (attribution_reading) is in
distill_core.verdicts. No Streamlit here."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures.base import axis_labels, base_layout, tick_font_size


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
    fig.update_yaxes(autorange="reversed", type="category", tickfont=dict(size=tick_font_size(t) + 1))
    lim = 1.05 if normalize else float(max(np.abs(a).max(initial=0), np.abs(b).max(initial=0)) * 1.05 or 1.0)
    fig.update_xaxes(range=[-lim, lim], zeroline=True, zerolinecolor="#9ca3af", gridcolor="#f3f4f6",
                     title_text="attribution (scaled to max |score| = 1)" if normalize else "attribution")
    fig.update_layout(**base_layout(height or int(min(1100, 120 + 18 * t))))
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=10), bargap=0.25)
    return fig
