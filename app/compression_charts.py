"""Figures, table rows and sentences of the Compression page: pure functions of a run's compression.json record
(distill_core.compress). No Streamlit here.

A record holds, per variant, its versions (fp32, int8_linear, int8_linear_embeddings, pruned_<percent>) with
"size_bytes", "latency_ms", "test_accuracy" and "js", and a "pruning_curve" of {"fraction", "heads_removed",
"test_accuracy", "head_mask"} points (None for a CNN, which has no heads).

As in app/charts.py, traces are dicts added to a figure in one call (plotly validates them once).
"""
from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.charts import _base_layout, _dash, _cap, the
from distill_core.vocab import model_label, variant_colors

SAME_POINTS = 1.0        # accuracy drops closer than this (percentage points) read as "about the same"
COMPARED_FRACTION = 0.5  # the share of heads removed at which the sentence compares the variants
VERSION_TITLES = {"fp32": "float32 (as trained)", "int8_linear": "int8 linear layers",
                  "int8_linear_embeddings": "int8 linear layers + word embeddings"}


def _entries(record: dict, variants: Sequence[str] | None) -> list[str]:
    held = record.get("variants") or {}
    names = [v for v in (variants or []) if v in held]
    return names + [v for v in held if v not in names]


def version_title(version: dict) -> str:
    """A version as the table and the figures name it: "int8 linear layers", "25% of heads pruned (3)"."""
    if version.get("kind") == "pruned":
        return f"{version['fraction']:.0%} of heads pruned ({version['heads_removed']})"
    return VERSION_TITLES.get(version.get("name"), str(version.get("name")))


def version_rows(record: dict, variants: Sequence[str] | None = None, reference: str | None = None) -> list[dict]:
    """One table row per variant and version: size, change from float32, latency, test accuracy and its change, JS."""
    rows = []
    for name in _entries(record, variants):
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
    names = [n for n in _entries(record, variants) if record["variants"][n].get("pruning_curve")]
    colors = variant_colors(_entries(record, variants))
    traces = []
    for name in names:
        curve = record["variants"][name]["pruning_curve"]
        label = model_label(name, reference)
        heads = int(np.size(curve[0]["head_mask"]))
        traces.append(dict(
            type="scatter", x=[100 * p["fraction"] for p in curve], y=[100 * p["test_accuracy"] for p in curve],
            customdata=[[p["heads_removed"], heads] for p in curve], mode="lines+markers", name=label,
            line=dict(color=colors[name], dash=_dash(name, reference), width=2),
            hovertemplate=(f"{html.escape(label, quote=False)} · %{{x:.0f}}% asked, %{{customdata[0]}} of "
                           f"%{{customdata[1]}} heads removed: %{{y:.1f}}%<extra></extra>")))
    fig = go.Figure(data=traces)
    n = record.get("test_size")
    sub = f" <sup>(n = {n} test examples; least important heads first)</sup>" if n else ""
    fig.update_layout(**_base_layout(height, "Test accuracy as attention heads are removed" + sub),
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
    names = _entries(record, variants)
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
    fig.update_layout(**_base_layout(height), barmode="group", legend=dict(orientation="h", y=-0.75, x=0))
    fig.update_layout(margin=dict(l=10, r=10, t=50, b=10))
    fig.update_annotations(font=dict(size=13))
    fig.update_yaxes(gridcolor="#f3f4f6")
    fig.update_xaxes(tickangle=-45)
    return fig


def importance_figure(record: dict, variants: Sequence[str] | None = None, reference: str | None = None,
                      height: int = 300) -> go.Figure | None:
    """Each variant's head importance (layers x heads, each layer normalised), side by side; None when no variant
    has heads."""
    names = [n for n in _entries(record, variants) if record["variants"][n].get("head_importance")]
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
            colorscale="Purples", zmin=0, zmax=1, showscale=c == len(names),
            colorbar=dict(title=dict(text="importance", side="right"), thickness=12),
            text=np.round(imp, 2), texttemplate="%{text}",
            hovertemplate="%{y}, %{x}: importance %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")         # every panel's, in one call
    fig.add_traces(traces, rows=[1] * len(traces), cols=list(range(1, len(traces) + 1)))
    title = ("Head importance (Michel et al. 2019): |∂loss/∂mask| on the validation set, each layer divided by its "
             "L2 norm")
    fig.update_layout(**_base_layout(height, title))
    fig.update_annotations(font=dict(size=13))
    return fig


def _point(curve: list[dict], fraction: float) -> dict | None:
    return next((p for p in curve if abs(p["fraction"] - fraction) < 1e-9), None)


def compared_fractions(record: dict, names: Sequence[str]) -> list[float]:
    """The shares of heads removed at which the variants are compared: 50% when every curve has it, and the largest
    share they all have when it is larger (or the only one above 0 they share)."""
    curves = [record["variants"][n]["pruning_curve"] for n in names]
    common = set.intersection(*[{round(p["fraction"], 6) for p in c} for c in curves]) - {0.0} if curves else set()
    if not common:
        return []
    out = [COMPARED_FRACTION] if COMPARED_FRACTION in common else []
    return out + ([max(common)] if max(common) not in out and (not out or max(common) > out[0]) else [])


def _reading_at(record: dict, names: Sequence[str], fraction: float, reference: str | None,
                first: bool) -> str | None:
    """The variants' accuracy with `fraction` of the heads removed and how much each loses, read against the
    reference (within SAME_POINTS points: about the same)."""
    drops, parts = {}, []
    for name in names:
        curve = record["variants"][name]["pruning_curve"]
        start, at = _point(curve, 0.0), _point(curve, fraction)
        if start is None or at is None:
            continue
        drops[name] = d = 100 * (start["test_accuracy"] - at["test_accuracy"])
        change = (f"{d:.1f} points below" if d >= 0.05 else f"{-d:.1f} points above" if d <= -0.05 else "the same as")
        heads = f" with all {int(np.size(at['head_mask']))} heads" if first else ""
        parts.append(f"{the(name, reference)} {100 * at['test_accuracy']:.1f}% ({change} its "
                     f"{100 * start['test_accuracy']:.1f}%{heads}; {at['heads_removed']} removed)")
    if len(drops) < 2:
        return None
    text = (f"With {fraction:.0%} of the heads removed{', least important first' if first else ''}: "
            + "; ".join(parts) + ".")
    ref = reference if reference in drops else None
    if ref is None:
        best = min(drops, key=drops.get)
        return text + f" {_cap(the(best, reference))} loses least accuracy without its heads."
    lines = []
    for name in [n for n in drops if n != ref]:
        gap = drops[ref] - drops[name]
        if abs(gap) < SAME_POINTS:
            lines.append(f"{the(name, reference)} loses about as much as {the(ref, reference)} (within "
                         f"{SAME_POINTS:g} point): no sign that it depends on fewer heads")
        elif gap > 0:
            lines.append(f"{the(name, reference)} loses {gap:.1f} points less than {the(ref, reference)}: it "
                         f"depends on fewer of its heads")
        else:
            lines.append(f"{the(name, reference)} loses {-gap:.1f} points more than {the(ref, reference)}: it "
                         f"depends on more of its heads, not fewer")
    return text + " " + _cap("; ".join(lines)) + "."


def heads_reading(record: dict, variants: Sequence[str] | None = None, reference: str | None = None) -> str | None:
    """Does a distilled student depend on fewer heads? From the curves, at 50% of the heads removed and at the
    largest share when it is larger: each variant's test accuracy and its drop from its own unpruned accuracy, read
    against the reference's drop (a difference under SAME_POINTS points reads as about the same). Paragraphs
    separated by blank lines; None without two curves to compare."""
    names = [n for n in _entries(record, variants) if record["variants"][n].get("pruning_curve")]
    if len(names) < 2:
        return None
    paragraphs = [t for k, f in enumerate(compared_fractions(record, names))
                  if (t := _reading_at(record, names, f, reference, k == 0))]
    if not paragraphs:
        return None
    n = record.get("test_size")
    if n and reference in names:
        paragraphs.append(f"One run and {n} test examples: a gap of a point or two may not hold on another seed.")
    return "\n\n".join(paragraphs)
