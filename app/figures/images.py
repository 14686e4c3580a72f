"""Figures of the image explorer: where a teacher and a student look on a picture, as pure functions of arrays.

Every map here is an (H, W) distribution over the picture's pixels (distill_core.image_maps.spatial_map), drawn as a
semi-transparent heatmap over the picture in grey: clear up to an even share of the map, then more opaque the more of
the map a pixel holds. Teacher and student share one colour scale; their difference has its own diverging scale,
clear at 0 (both in app/figures/base.py). No Streamlit here.
"""
from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from app.figures.base import FONT, GREY_SCALE, OVERLAY_DIFF_SCALE, OVERLAY_SCALE, TOOLBAR_PX
from distill_core.modality.vision.maps import spatial_js, top_region

NEARLY_EVEN = 1.25                   # a map whose brightest pixel holds less than this × an even share reads as even


FOCUS_FLOOR = 2.0                    # the colour scale reaches at least twice an even share: an even map stays pale


PICTURE = "picture"                  # the name of the grey traces


def _layout(height: int, font_size: int, top: int, bottom: int) -> dict:
    return dict(height=height, font=dict(FONT, size=font_size), plot_bgcolor="white", paper_bgcolor="white",
                margin=dict(l=6, r=6, t=top, b=bottom))


def _panel_title(text: str, xdomain, ydomain, size: int) -> dict:
    """A title centred over one panel."""
    return dict(text=text, x=(xdomain[0] + xdomain[1]) / 2, y=ydomain[1], xref="paper", yref="paper",
                xanchor="center", yanchor="bottom", showarrow=False, font=dict(size=size))


def grey(pixels) -> np.ndarray:
    """A picture (H, W), (H, W, 1) or (H, W, 3) uint8 values as (H, W) grey levels 0..255 (ITU-R 601 luma for
    colour)."""
    a = np.asarray(pixels, dtype=np.float64)
    if a.ndim == 3 and a.shape[-1] == 3:
        return a @ np.array([0.299, 0.587, 0.114])
    if a.ndim == 3:
        return a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"a picture is (H, W) or (H, W, C), not shape {a.shape}")
    return a


def _axes(domain_x, domain_y, sfx: str, w: int, h: int) -> tuple[dict, dict]:
    """Square pixels, row 0 at the top, no ticks or labels."""
    plain = dict(showticklabels=False, showgrid=False, zeroline=False, ticks="", showline=False)
    x = dict(domain=domain_x, anchor=f"y{sfx}", range=[-0.5, w - 0.5], constrain="domain", **plain)
    y = dict(domain=domain_y, anchor=f"x{sfx}", range=[h - 0.5, -0.5], scaleanchor=f"x{sfx}", constrain="domain",
             **plain)
    return x, y


def _patch_lines(patch: int | None, h: int, w: int, sfx: str) -> list[dict]:
    """Thin lines on a ViT's patch boundaries (none for a CNN, or patches of one pixel)."""
    if not patch or patch <= 1:
        return []
    line = dict(color="rgba(255,255,255,0.45)", width=1)
    xref, yref = f"x{sfx}", f"y{sfx}"
    out = [dict(type="line", xref=xref, yref=yref, x0=c - 0.5, x1=c - 0.5, y0=-0.5, y1=h - 0.5, line=line)
           for c in range(patch, w, patch)]
    out += [dict(type="line", xref=xref, yref=yref, x0=-0.5, x1=w - 0.5, y0=r - 0.5, y1=r - 0.5, line=line)
            for r in range(patch, h, patch)]
    return out


def _panel(picture: np.ndarray, z: np.ndarray, sfx: str, name: str, coloraxis: str, what: str) -> list[go.Heatmap]:
    """The grey picture, then the map over it (both on axes x{sfx}, y{sfx})."""
    return [go.Heatmap(z=picture, colorscale=GREY_SCALE, zmin=0, zmax=255, showscale=False, xaxis=f"x{sfx}",
                       yaxis=f"y{sfx}", name=PICTURE, hoverinfo="skip"),
            go.Heatmap(z=z, xaxis=f"x{sfx}", yaxis=f"y{sfx}", name=name, coloraxis=coloraxis, customdata=picture,
                       hovertemplate=f"row %{{y}}, column %{{x}}<br>{what}: %{{z:.4f}}<br>pixel: %{{customdata:.0f}}"
                                     f"<extra>{html.escape(name)}</extra>")]


def _title(text: str) -> str:
    """A panel title: its first line in bold, the next lines (after "\n") plain, every line HTML-escaped."""
    first, *rest = str(text).split("\n")
    return "<br>".join([f"<b>{html.escape(first)}</b>" if first else "", *map(html.escape, rest)])


def _bar(x: float, title: str, font_size: int, length: float = 0.8) -> dict:
    """A vertical colour bar at paper x (its left edge), percentages on its ticks."""
    return dict(title=dict(text=title, side="top"), x=x, xanchor="left", y=0.45, len=length, thickness=12,
                tickfont=dict(size=max(10, font_size - 1)), tickformat=".2~%")


def _percent(x: float) -> str:
    """0.0043 -> "0.43%" (two significant digits)."""
    return f"{x * 100:.2g}%"


def _hbar(domain, title: str, font_size: int) -> dict:
    """A horizontal colour bar under the panels spanning paper x `domain`."""
    return dict(orientation="h", title=dict(text=title, side="right"), x=(domain[0] + domain[1]) / 2,
                xanchor="center", y=-0.03, yanchor="top", len=min(0.9, domain[1] - domain[0]), lenmode="fraction",
                thickness=12, tickfont=dict(size=max(10, font_size - 1)), tickformat=".2~%")


def overlay_triptych(picture, teacher: np.ndarray, student: np.ndarray,
                     titles: Sequence[str] = ("teacher", "student", "student − teacher"),
                     patches: Sequence[int | None] = (None, None), font_size: int = 12, difference: bool = True,
                     height: int | None = None) -> go.Figure:
    """teacher | student | student − teacher over the picture, (H, W) maps each. A title's first line is bold, the
    next ones (after "\n") plain.

    Teacher and student share one colour scale (the share of the map on each pixel) from an even share, 1/(H·W),
    where the colour is still clear, to the larger of their maxima (at least FOCUS_FLOOR times an even share): a
    pixel is coloured only where a model looks more than evenly, so an unfocused map leaves the picture visible. The
    difference is on a diverging scale symmetric around 0, clear at 0 (red: the student looks there more).
    `patches` = (teacher's, student's) ViT patch size draws the patch grid on that side's panel (and on the
    difference when both have the same). `difference=False` draws teacher and student only."""
    pic = grey(picture)
    h, w = pic.shape
    teacher = np.asarray(teacher, dtype=np.float64)
    student = np.asarray(student, dtype=np.float64)
    for who, m in (("teacher", teacher), ("student", student)):
        if m.shape != (h, w):
            raise ValueError(f"the {who} map is {m.shape}, the picture {(h, w)}")
    diff = student - teacher
    even = 1.0 / (h * w)
    zmax = max(float(max(teacher.max(initial=0.0), student.max(initial=0.0))), FOCUS_FLOOR * even)
    dmax = float(np.abs(diff).max(initial=0.0)) or 1e-6
    n = 3 if difference else 2
    gap = 0.035
    pw = (1.0 - gap * (n - 1)) / n                      # colour bars go under the panels: all the width is maps
    xs = [[k * (pw + gap), k * (pw + gap) + pw] for k in range(n)]
    lines = max(str(t).count("\n") + 1 for t in titles[:n])
    title_px = int(font_size * 1.5 * lines + font_size * 0.6)
    bars_px = int(font_size * 4.5)
    width_px = 860                                        # a full-width chart on a 1280 px screen
    panel_px = int(width_px * pw)
    layout = _layout(height or panel_px + title_px + TOOLBAR_PX + bars_px, font_size, title_px + TOOLBAR_PX, bars_px)
    traces, shapes = [], []
    same_patch = patches[0] == patches[1]
    panels = [(teacher, titles[0], "coloraxis", "share", patches[0]),
              (student, titles[1], "coloraxis", "share", patches[1]),
              (diff, titles[2], "coloraxis2", "student − teacher", patches[0] if same_patch else None)][:n]
    for k, (z, name, axis, what, patch) in enumerate(panels):
        sfx = "" if k == 0 else str(k + 1)
        traces += _panel(pic, z, sfx, str(name), axis, what)
        layout[f"xaxis{sfx}"], layout[f"yaxis{sfx}"] = _axes(xs[k], [0.0, 1.0], sfx, w, h)
        shapes += _patch_lines(patch, h, w, sfx)
    layout["coloraxis"] = dict(colorscale=OVERLAY_SCALE, cmin=even, cmax=zmax,
                               colorbar=_hbar([xs[0][0] + 0.1 * pw, xs[1][1] - 0.1 * pw], "share of the map",
                                              font_size))
    if difference:
        layout["coloraxis2"] = dict(colorscale=OVERLAY_DIFF_SCALE, cmin=-dmax, cmax=dmax, cmid=0.0,
                                    colorbar=dict(_hbar([xs[2][0] + 0.1 * pw, xs[2][1] - 0.1 * pw], "diff.",
                                                        font_size), tickvals=[-dmax, 0.0, dmax],
                                                  ticktext=[f"−{_percent(dmax)}", "0", f"+{_percent(dmax)}"]))
    layout["shapes"] = shapes
    layout["annotations"] = [_panel_title(_title(name), xs[k], [0.0, 1.0], size=int(font_size * 1.05))
                             for k, (_, name, *_r) in enumerate(panels)]
    return go.Figure(data=traces, layout=layout)


def heads_grid(picture, rows: Sequence[tuple[str, np.ndarray, Sequence[str]]],
               patches: Sequence[int | None] | None = None, font_size: int = 12,
               highlight: Sequence[int | None] | None = None) -> go.Figure:
    """Small multiples over the picture, one row per model: rows = [(row name, (n, H, W) maps, n panel titles)],
    e.g. every head of a ViT layer ([CLS] maps) or every stage of a CNN.

    One colour scale for every panel, from an even share (clear) up, as in overlay_triptych. `highlight` (one panel
    index or None per row) outlines the map chosen above; `patches` (a ViT patch size or None per row) draws the
    patch grid."""
    pic = grey(picture)
    h, w = pic.shape
    cols = max(m.shape[0] for _, m, _t in rows)
    even = 1.0 / (h * w)
    zmax = max(float(max(np.max(m) for _, m, _t in rows)), FOCUS_FLOOR * even)
    left, right, hgap, vgap = 0.09, 0.9, 0.012, 0.09
    slots = max(cols, 4)                                  # panels no larger than a quarter of the width
    pw = (right - left - hgap * (slots - 1)) / slots
    ph = (1.0 - vgap * (len(rows) - 1)) / len(rows)
    width_px = 880
    panel_px = width_px * pw
    title_px = int(font_size * 1.7)
    plot_px = int(len(rows) * panel_px / (1.0 - vgap * (len(rows) - 1)) * 1.0)
    layout = _layout(plot_px + title_px + TOOLBAR_PX + 10, font_size, title_px + TOOLBAR_PX, 4)
    traces, shapes, notes = [], [], []
    k = 0
    for r, (name, maps, panel_titles) in enumerate(rows):
        yd = [max(0.0, 1.0 - (r + 1) * ph - r * vgap), min(1.0, 1.0 - r * ph - r * vgap)]
        notes.append(dict(text=f"<b>{html.escape(name)}</b>", x=left - 0.01, y=sum(yd) / 2, xref="paper",
                          yref="paper", xanchor="right", yanchor="middle", showarrow=False, textangle=-90,
                          font=dict(size=font_size)))
        for c in range(maps.shape[0]):
            sfx = "" if k == 0 else str(k + 1)
            xd = [left + c * (pw + hgap), left + c * (pw + hgap) + pw]
            traces += _panel(pic, maps[c], sfx, f"{name} · {panel_titles[c]}", "coloraxis", "share")
            layout[f"xaxis{sfx}"], layout[f"yaxis{sfx}"] = _axes(xd, yd, sfx, w, h)
            notes.append(_panel_title(html.escape(str(panel_titles[c])), xd, yd, size=font_size))
            shapes += _patch_lines((patches or [None] * len(rows))[r], h, w, sfx)
            if highlight and highlight[r] == c:
                shapes.append(dict(type="rect", xref=f"x{sfx} domain", yref=f"y{sfx} domain", x0=0, x1=1, y0=0,
                                   y1=1, line=dict(color="#22d3ee", width=3)))
            k += 1
    layout["coloraxis"] = dict(colorscale=OVERLAY_SCALE, cmin=even, cmax=zmax,
                               colorbar=_bar(left + cols * (pw + hgap) + 0.01, "share", font_size, length=0.9))
    layout["shapes"] = shapes
    layout["annotations"] = notes
    return go.Figure(data=traces, layout=layout)


def _num(x: float) -> str:
    """A divergence with three significant digits (0.0671, 0.000123)."""
    return f"{x:.3g}" if x else "0"


def _where(name: str, share: float) -> str:
    return f"the {name} ({share:.0%} of its map)"


def overlay_reading(teacher: np.ndarray, student: np.ndarray, student_name: str = "the student",
                    before: np.ndarray | None = None, teacher_name: str = "the teacher") -> list[str]:
    """What to notice in a teacher and a student map of one picture, (H, W) each: where each looks most (which
    ninth of the picture holds most of its map), or that a map is nearly even, and how far apart the maps are
    (Jensen-Shannon divergence, natural log, 0 = the same map, ln 2 ≈ 0.693 = no overlap), against the student's
    map before training when given."""
    t_where, t_share = top_region(teacher)
    s_where, s_share = top_region(student)
    even = 1.0 / np.asarray(teacher).size
    t_peak, s_peak = float(np.max(teacher)) / even, float(np.max(student)) / even
    t_focused, s_focused = t_peak >= NEARLY_EVEN, s_peak >= NEARLY_EVEN
    cap_t = teacher_name[0].upper() + teacher_name[1:]
    out = []
    if not (t_focused or s_focused):
        out.append(f"Both maps are nearly even over the picture (no pixel holds {NEARLY_EVEN:g}× an even share): "
                   f"neither model looks anywhere in particular here.")
    elif not s_focused:
        out.append(f"{cap_t} looks most at {_where(t_where, t_share)}; {student_name} spreads its map nearly evenly "
                   f"(its brightest pixel holds {s_peak:.1f}× an even share).")
    elif not t_focused:
        out.append(f"{student_name[0].upper() + student_name[1:]} looks most at {_where(s_where, s_share)}; "
                   f"{teacher_name} spreads its map nearly evenly (its brightest pixel holds {t_peak:.1f}× an even "
                   f"share).")
    else:
        if t_where == s_where:
            out.append(f"Both look most at the {t_where} of the picture: {teacher_name} puts {t_share:.0%} of its "
                       f"map there, {student_name} {s_share:.0%}.")
        else:
            out.append(f"{cap_t} looks most at {_where(t_where, t_share)}, {student_name} at "
                       f"{_where(s_where, s_share)}.")
        out.append(f"The brightest pixel holds {t_peak:.1f}× an even share in {teacher_name}'s map, {s_peak:.1f}× in "
                   f"{student_name}'s: " +
                   ("the student's map is the more focused." if s_peak > 1.15 * t_peak else
                    "the teacher's map is the more focused." if t_peak > 1.15 * s_peak else
                    "about equally focused."))
    js = spatial_js(teacher, student)
    if before is not None and np.shape(before) == np.shape(teacher):
        js0 = spatial_js(teacher, before)
        moved = ("left it about as far from" if abs(js - js0) <= 0.02 * max(js, js0) else
                 "moved it closer to" if js < js0 else "moved it further from")
        out.append(f"Jensen-Shannon divergence between the two maps: {_num(js)}, against {_num(js0)} before training "
                   f"(epoch 0): training {moved} the teacher's.")
    else:
        out.append(f"Jensen-Shannon divergence between the two maps: {_num(js)} (0 = the same map, 0.693 = no "
                   f"overlap).")
    return out


def predictions_text(probs: dict[str, np.ndarray], label_names: Sequence[str]) -> str:
    """'teacher: **7** (83%) · kd: **1** (40%)' for {model name: class probabilities}."""
    parts = []
    for name, p in probs.items():
        c = int(np.argmax(p))
        label = label_names[c] if c < len(label_names) else str(c)
        parts.append(f"{name}: **{label}** ({float(p[c]):.0%})")
    return " · ".join(parts)
