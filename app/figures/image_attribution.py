"""Figures of pixel attributions and spatial attention drawn over the picture: pure functions of arrays.

Every panel shows the image in grey with a semi-transparent map over it, in one of three kinds: "signed" maps
(Integrated Gradients) are green where a pixel pushes towards the explained class and red where it pushes away,
transparent at 0; "positive" maps (Grad-CAM, attention) go from transparent to orange; "difference" maps (one map
minus another) are red where the first is larger and blue where the second is. Each panel is scaled to its own
largest |value| (so the shapes of a teacher's and a student's attributions compare whatever their sizes) unless
given a peak: two attention distributions over the same pixels share one, so a spread-out map looks paler.

Also the small readers of an image run's probe.json that the pages and the HTML report share (is_pixel_run,
probe_picture, pixel_maps, no_divergence_reason).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app import tasks
from app.figures.base import ATTRIBUTION_DIFF_SCALE, FONT, PICTURE_SCALE, POSITIVE_SCALE, SIGNED_SCALE
from app.figures.images import grey
from distill_core.vocab import FAMILY_NAMES

SCALES = {"signed": SIGNED_SCALE, "positive": POSITIVE_SCALE, "difference": ATTRIBUTION_DIFF_SCALE}


PANEL_PX = 300                       # the height of a row of panels


def _scaled(m: np.ndarray, peak: float | None = None) -> np.ndarray:
    peak = float(np.abs(m).max(initial=0.0)) if peak is None else float(peak)
    return m / peak if peak > 0 else m


def overlay_panels(image, maps: Sequence[np.ndarray], titles: Sequence[str], kinds: str | Sequence[str] = "signed",
                   height: int | None = None, peaks: Sequence[float | None] | None = None) -> go.Figure:
    """One panel per map (H, W) over the grey picture (H, W[, C]), side by side.

    kinds: "signed", "positive" or "difference" (see the module docstring), one for all panels or one per panel.
    peaks: per panel the |value| drawn at full colour (None: the panel's own largest). The hover text gives each
    pixel's value as computed (not scaled)."""
    base = grey(image)
    h, w = base.shape
    maps = [np.asarray(m, dtype=np.float64) for m in maps]
    if not maps or len(maps) != len(titles):
        raise ValueError(f"{len(titles)} titles for {len(maps)} maps")
    for title, m in zip(titles, maps):
        if m.shape != (h, w):
            raise ValueError(f"the map {title!r} is {m.shape}, not the image's {(h, w)}")
    kinds = [kinds] * len(maps) if isinstance(kinds, str) else list(kinds)
    unknown = [k for k in kinds if k not in SCALES]
    if unknown or len(kinds) != len(maps):
        raise ValueError(f"one kind per map, each one of {', '.join(SCALES)}; got {kinds}")
    peaks = [None] * len(maps) if peaks is None else list(peaks)
    fig = make_subplots(rows=1, cols=len(maps), subplot_titles=list(titles), horizontal_spacing=0.03)
    rows, cols = np.mgrid[0:h, 0:w]
    for k, (m, kind, peak) in enumerate(zip(maps, kinds, peaks), start=1):
        fig.add_trace(go.Heatmap(z=base, colorscale=PICTURE_SCALE, zmin=0, zmax=255, showscale=False, hoverinfo="skip"),
                      row=1, col=k)
        fig.add_trace(go.Heatmap(
            z=_scaled(m, peak), customdata=np.dstack([m, rows, cols]), colorscale=SCALES[kind], showscale=False,
            zmin=0.0 if kind == "positive" else -1.0, zmax=1.0,
            hovertemplate="row %{customdata[1]}, column %{customdata[2]}: %{customdata[0]:.3g}<extra></extra>"),
            row=1, col=k)
        fig.update_xaxes(row=1, col=k, showticklabels=False, ticks="", showgrid=False, zeroline=False,
                         range=[-0.5, w - 0.5], constrain="domain", scaleanchor=f"y{'' if k == 1 else k}", scaleratio=1)
        fig.update_yaxes(row=1, col=k, showticklabels=False, ticks="", showgrid=False, zeroline=False,
                         range=[h - 0.5, -0.5], constrain="domain")
    fig.update_layout(height=height or PANEL_PX, margin=dict(l=10, r=10, t=40, b=10), font=FONT,
                      plot_bgcolor="white", paper_bgcolor="white")
    return fig


def attribution_overlays(image, teacher_scores: np.ndarray, student_scores: np.ndarray, student_name: str,
                         method: str, teacher_attention: np.ndarray | None = None,
                         student_attention: np.ndarray | None = None) -> go.Figure:
    """The teacher's and a student's attributions over the picture (IG signed, Grad-CAM positive), each scaled to
    its own largest value, then, when given, their attention over the picture on one shared scale: 2 or 4 panels."""
    kind = "signed" if method == "ig" else "positive"
    maps, titles, kinds = [teacher_scores, student_scores], ["teacher", student_name], [kind, kind]
    peaks = [None, None]
    if teacher_attention is not None and student_attention is not None:
        maps += [teacher_attention, student_attention]
        titles += ["teacher's attention", f"{student_name}'s attention"]
        kinds += ["positive", "positive"]
        peaks += [float(max(np.max(teacher_attention), np.max(student_attention)))] * 2
    return overlay_panels(image, maps, titles, kinds, peaks=peaks)


def pixel_maps(maps, image_size) -> np.ndarray:
    """A CNN's recorded maps of one stage, (1, 1, H*W) or (1, H*W), as one (H, W) map over the picture."""
    return np.asarray(maps, dtype=np.float64).reshape(int(image_size[0]), int(image_size[1]))


def probe_picture(probe: dict, example: int) -> np.ndarray:
    """A probe image's pixels from probe.json, uint8 (H, W, C)."""
    a = np.asarray(probe["images"][example], dtype=np.uint8)
    return a[..., None] if a.ndim == 2 else a


def is_pixel_run(probe: dict | None) -> bool:
    """An image run whose students are CNNs: its recorded maps are distributions over the picture's pixels
    (S, 1, 1, H*W), drawn over the picture rather than as token × token heatmaps."""
    maps = (probe or {}).get("maps") or {}
    return tasks.of(probe).pictures and (maps.get("student") or {}).get("family") == "cnn"


def agreement_reading(student: str, rho: float, agreement: float, method_name: str) -> str:
    """One sentence with the two numbers and what they mean."""
    def fmt(x: float) -> str:
        return "undefined" if x is None or math.isnan(x) else f"{x:.2f}"

    text = (f"{method_name} ranks the pixels of {student} with Spearman ρ = {fmt(rho)} against the teacher's (1: the "
            f"same order of importance, 0: unrelated, −1: reversed)")
    if agreement is None or math.isnan(agreement):
        return text + "; no attention agreement is computed for this image."
    return (text + f", and their attention over the picture agrees {fmt(agreement)} (1 − Jensen-Shannon divergence "
            f"/ ln 2: 1 = the same places, 0 = none in common).")


def no_divergence_reason(probe: dict | None) -> str | None:
    """Why a run records no attention divergence, or None when it does: an image run whose teacher and students
    are of different families (a CNN's maps over pixels against a ViT's over patches) has no layer pairs."""
    probe = probe or {}
    families = probe.get("families") or {}
    teacher, student = families.get("teacher"), families.get("student")
    if not tasks.of(probe).pictures or probe.get("pairs") or teacher == student:
        return None
    t_name, s_name = (f"a {FAMILY_NAMES[f]}" if f and f in FAMILY_NAMES else f for f in (teacher, student))
    return (f"The teacher ({t_name}) and the student ({s_name}) are of different families; no attention divergence "
            f"is recorded. The students learned from the teacher's outputs only.")


def picture_grid(pictures: Sequence, titles: Sequence[str], cols: int = 8, panel_px: int = 120) -> go.Figure:
    """Small pictures (H, W[, C] uint8 pixels) in rows of `cols`, in grey, each under its title."""
    if not pictures or len(pictures) != len(titles):
        raise ValueError(f"{len(titles)} titles for {len(pictures)} pictures")
    cols = max(1, min(int(cols), len(pictures)))
    rows = -(-len(pictures) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(titles), horizontal_spacing=0.02,
                        vertical_spacing=min(0.3 / rows, 0.08))
    for k, picture in enumerate(pictures):
        base = grey(picture)
        r, c = divmod(k, cols)
        fig.add_trace(go.Heatmap(z=base, colorscale=PICTURE_SCALE, zmin=0, zmax=255, showscale=False,
                                 hovertemplate="row %{y}, column %{x}: %{z:.0f}<extra></extra>"), row=r + 1, col=c + 1)
        h, w = base.shape
        axis = "" if k == 0 else str(k + 1)
        fig.update_xaxes(row=r + 1, col=c + 1, showticklabels=False, ticks="", showgrid=False, zeroline=False,
                         range=[-0.5, w - 0.5], constrain="domain", scaleanchor=f"y{axis}", scaleratio=1)
        fig.update_yaxes(row=r + 1, col=c + 1, showticklabels=False, ticks="", showgrid=False, zeroline=False,
                         range=[h - 0.5, -0.5], constrain="domain")
    fig.update_annotations(font_size=10)
    fig.update_layout(height=40 + rows * panel_px, margin=dict(l=10, r=10, t=30, b=10), font=FONT,
                      plot_bgcolor="white", paper_bgcolor="white")
    return fig
