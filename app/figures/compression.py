"""Figures and table rows of the Compression page: pure functions of a run's compression.json record
(distill_core.compress). No Streamlit here. What the pruning curves say (heads_reading) is in distill_core.verdicts.

A record holds, per variant, its versions (fp32, int8_linear, int8_linear_embeddings, pruned_<percent>) with
"size_bytes", "latency_ms", "test_accuracy" and "js", and a "pruning_curve" of {"fraction", "heads_removed",
"test_accuracy", "head_mask"} points (None for a CNN, which has no heads).

As everywhere in app/figures, traces are dicts added to a figure in one call (plotly validates them once).
"""
from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures.base import IMPORTANCE_SCALE, base_layout, line_dash
from distill_core.verdicts import compressed_variants
from distill_core.vocab import model_label, variant_colors

VERSION_TITLES = {"fp32": "float32 (as trained)", "int8_linear": "int8 linear layers",
                  "int8_linear_embeddings": "int8 linear layers + word embeddings"}


def version_title(version: dict) -> str:
    """A version as the table and the figures name it: "int8 linear layers", "25% of heads pruned (3)"."""
    if version.get("kind") == "pruned":
        return f"{version['fraction']:.0%} of heads pruned ({version['heads_removed']})"
    return VERSION_TITLES.get(version.get("name"), str(version.get("name")))


def version_rows(record: dict, variants: Sequence[str] | None = None, reference: str | None = None) -> list[dict]:
    """One table row per variant and version: size, change from float32, latency, test accuracy and its change, JS."""
    rows = []
    for name in compressed_variants(record, variants):
        versions = record["variants"][name].get("versions") or []
        base = next((v for v in versions if v.get("kind") == "fp32"), None)
        for v in versions:
            rows.append({
                "variant": model_label(name, reference),
                "version": v["name"],
                "what": version_title(v),
                "size (MB)": v["size_bytes"] / 1e6,
                "size vs fp32 (%)": 100 * v["size_bytes"] / base["size_bytes"] if base else None,
                "latency (ms)": v["latency_ms"],
                "test accuracy (%)": 100 * v["test_accuracy"],
                "vs fp32 (points)": 100 * (v["test_accuracy"] - base["test_accuracy"]) if base else None,
                "attention JS to the teacher": v.get("js"),
            })
    return rows


def pruning_figure(record: dict, variants: Sequence[str] | None = None, reference: str | None = None,
                   height: int = 380) -> go.Figure:
    """Test accuracy (%) against the share of attention heads removed, one line per variant on the same axes (the
    reference dashed), from the record's pruning curves; variants without heads (CNNs) are left out."""
    names = [n for n in compressed_variants(record, variants) if record["variants"][n].get("pruning_curve")]
    colors = variant_colors(compressed_variants(record, variants))
    traces = []
    for name in names:
        curve = record["variants"][name]["pruning_curve"]
        label = model_label(name, reference)
        heads = int(np.size(curve[0]["head_mask"]))
        traces.append(dict(
            type="scatter", x=[100 * p["fraction"] for p in curve], y=[100 * p["test_accuracy"] for p in curve],
            customdata=[[p["heads_removed"], heads] for p in curve], mode="lines+markers", name=label,
            line=dict(color=colors[name], dash=line_dash(name, reference), width=2),
            hovertemplate=(f"{html.escape(label, quote=False)} · %{{x:.0f}}% asked, %{{customdata[0]}} of "
                           f"%{{customdata[1]}} heads removed: %{{y:.1f}}%<extra></extra>")))
    fig = go.Figure(data=traces)
    n = record.get("test_size")
    sub = f" <sup>(n = {n:,} test examples; least important heads first)</sup>" if n else ""
    fig.update_layout(**base_layout(height, "Test accuracy as attention heads are removed" + sub),
                      hovermode="closest", legend=dict(orientation="h", y=-0.25, x=0))
    fig.update_xaxes(title_text="heads removed (% of all heads)", ticksuffix="%", gridcolor="#f3f4f6",
                     zeroline=False)
    fig.update_yaxes(title_text="test accuracy (%)", ticksuffix="%", gridcolor="#f3f4f6")
    return fig


def versions_figure(record: dict, variants: Sequence[str] | None = None, reference: str | None = None,
                    height: int = 430) -> go.Figure:
    """Size on disk and latency (bars from zero), test accuracy and attention JS to the teacher (markers on an axis
    that fits them: the versions differ by fractions of a point) of every version, one colour per variant (the JS
    panel only when some version has one)."""
    names = compressed_variants(record, variants)
    colors = variant_colors(names)
    panels = [("size on disk (MB)", lambda v: v["size_bytes"] / 1e6, ".1f", True),
              ("latency per example (ms)", lambda v: v["latency_ms"], ".2f", True),
              ("test accuracy (%)", lambda v: 100 * v["test_accuracy"], ".1f", False)]
    if any(v.get("js") is not None for n in names for v in record["variants"][n].get("versions") or []):
        panels.append(("attention JS to the teacher", lambda v: v.get("js"), ".4f", False))
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels], horizontal_spacing=0.06)
    traces, cols = [], []
    for name in names:
        label = model_label(name, reference)
        versions = record["variants"][name].get("versions") or []
        for c, (_, value, fmt, bars) in enumerate(panels, start=1):
            shown = [v for v in versions if value(v) is not None]
            common = dict(x=[v["name"] for v in shown], y=[value(v) for v in shown], name=label, legendgroup=name,
                          showlegend=c == 1, customdata=[version_title(v) for v in shown],
                          hovertemplate=(f"{html.escape(label, quote=False)} · %{{customdata}}: %{{y:{fmt}}}"
                                         f"<extra></extra>"))
            if bars:
                trace = dict(type="bar", **common, marker=dict(
                    color=colors[name], pattern=dict(shape="/" if name == reference else "")))
            else:
                trace = dict(type="scatter", **common, mode="markers", marker=dict(
                    color=colors[name], size=10, symbol="diamond-open" if name == reference else "circle"))
            traces.append(trace)
            cols.append(c)
    if names:                              # once per panel (each variant used to set the same again)
        for c, (*_, bars) in enumerate(panels, start=1):
            fig.update_yaxes(rangemode="tozero" if bars else "normal", row=1, col=c)
    if traces:
        fig.add_traces(traces, rows=[1] * len(traces), cols=cols)
    fig.update_layout(**base_layout(height), barmode="group", legend=dict(orientation="h", y=-0.75, x=0))
    fig.update_layout(margin=dict(l=10, r=10, t=50, b=10))
    fig.update_annotations(font=dict(size=13))
    fig.update_yaxes(gridcolor="#f3f4f6")
    fig.update_xaxes(tickangle=-45)
    return fig


def importance_figure(record: dict, variants: Sequence[str] | None = None, reference: str | None = None,
                      height: int = 300) -> go.Figure | None:
    """Each variant's head importance (layers x heads, each layer normalised), side by side; None when no variant
    has heads."""
    names = [n for n in compressed_variants(record, variants) if record["variants"][n].get("head_importance")]
    if not names:
        return None
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[model_label(n, reference) for n in names],
                        horizontal_spacing=0.08)
    traces = []
    for c, name in enumerate(names, start=1):
        imp = np.asarray(record["variants"][name]["head_importance"], dtype=float)      # (L, H)
        traces.append(dict(
            type="heatmap", z=imp, x=[f"head {h}" for h in range(imp.shape[1])],
            y=[f"layer {layer}" for layer in range(imp.shape[0])],
            colorscale=IMPORTANCE_SCALE, zmin=0, zmax=1, showscale=c == len(names),
            colorbar=dict(title=dict(text="importance", side="right"), thickness=12),
            text=np.round(imp, 2), texttemplate="%{text}",
            hovertemplate="%{y}, %{x}: importance %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")         # every panel's, in one call
    fig.add_traces(traces, rows=[1] * len(traces), cols=list(range(1, len(traces) + 1)))
    title = ("Head importance (Michel et al. 2019): each validation example's |∂loss/∂mask|, averaged, each layer "
             "divided by its L2 norm")
    fig.update_layout(**base_layout(height, title))
    fig.update_annotations(font=dict(size=13))
    return fig
