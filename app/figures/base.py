"""What every figure of the app shares: the font, the page sizes, the layout, the colour scales, tokens as axis labels
and the larger text of presentation mode. Pure functions: no Streamlit here.

Every colour scale of the app is named here, so that a figure's colours are found in one place:
- attention weights (MAP_SCALE) and one map minus another (DIFF_SCALE, red where the first attends more);
- a distance to the teacher (DISTANCE_SCALE, darker red = further) and the two sides of a difference of distances
  (SIDE_COLORS, the ends of DIFF_SCALE);
- maps drawn over a picture (OVERLAY_SCALE, OVERLAY_DIFF_SCALE, clear at 0 so the picture shows through), the
  picture itself (GREY_SCALE, PICTURE_SCALE);
- pixel attributions over a picture (SIGNED_SCALE, POSITIVE_SCALE, ATTRIBUTION_DIFF_SCALE);
- head importance (IMPORTANCE_SCALE).

Traces are given to plotly as dicts ({"type": "scatter", ...}) and added to a figure in one call: plotly validates a
dict once, but a `go.Scatter` object twice (when it is made, and again when a figure takes it), and each
`add_trace` call on its own costs more than one `add_traces` call for all. The figures are the same
(benchmarks/figures_bench.py times every page's figures).
"""
from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import plotly.colors
import plotly.graph_objects as go

from distill_core.vocab import LOWER_IS_CLOSER

FONT = dict(family="Inter, 'Source Sans Pro', Arial, sans-serif", size=12)
REFERENCE_DASH = "dash"             # the labels-only reference variant; every other variant is drawn solid
ZWSP = "\u200b"                     # makes repeated tokens distinct axis categories without changing how they look
TOKEN_PX = 1.1                       # pixels along an axis per token label, per pixel of font size
TOOLBAR_PX = 34                      # the chart toolbar's height: panel titles start below it
WIDE_PX = 960                        # a full-width chart on a 1280 px wide screen (sidebar open) is about 880 px wide
SCREEN_SHARE = 0.85                  # what of a planned width a chart may really get (820 of 960): texts fit that
CHAR_PX = 0.62                       # the width of an average character of bold text, per pixel of font size
PLAIN_CHAR_PX = 0.56                 # the same for regular text
PRESENT_PX = 640                     # the same in presentation mode, whose larger text leaves the charts less room

# ---- colour scales -----------------------------------------------------------------------------------
MAP_SCALE = "Blues"                 # attention weights: white = 0
DIFF_SCALE = "RdBu_r"               # student - teacher: red where the student attends more, blue where less
DIFF_SCALE_REVERSED = "RdBu"        # DIFF_SCALE with its ends swapped (a difference of similarities)
DISTANCE_SCALE = "Reds"             # a divergence from the teacher: darker red = further
DISTANCE_SCALE_REVERSED = "Reds_r"  # a similarity to the teacher: darker red = lower = further
IMPORTANCE_SCALE = "Purples"        # head importance, each layer normalised
PICTURE_SCALE = "gray"              # a picture's grey levels, 0..255
SIDE_COLORS = {"A": "#2166ac", "B": "#b2182b"}      # the blue and red ends of the divergence-difference scale
# Attention over the grey picture: clear where a map is near 0 (the picture shows through), then red, then an
# opaque yellow where it is largest. The difference is clear at 0, blue where the student looks less, red more.
OVERLAY_SCALE = [[0.0, "rgba(220,38,38,0)"], [0.25, "rgba(220,38,38,0.35)"], [0.6, "rgba(249,115,22,0.7)"],
                 [1.0, "rgba(253,224,71,0.92)"]]
OVERLAY_DIFF_SCALE = [[0.0, "rgba(33,102,172,0.92)"], [0.3, "rgba(103,169,207,0.6)"], [0.5, "rgba(247,247,247,0)"],
                      [0.7, "rgba(239,138,98,0.6)"], [1.0, "rgba(178,24,43,0.92)"]]
GREY_SCALE = [[0.0, "rgb(0,0,0)"], [1.0, "rgb(255,255,255)"]]
# Pixel attributions over the grey picture: green where a pixel pushes towards the explained class, red where away,
# clear at 0; positive maps (Grad-CAM, attention) from clear to orange; one map minus another red / blue.
SIGNED_SCALE = [[0.0, "rgba(220,38,38,0.85)"], [0.5, "rgba(255,255,255,0)"], [1.0, "rgba(22,163,74,0.85)"]]
POSITIVE_SCALE = [[0.0, "rgba(249,115,22,0)"], [1.0, "rgba(234,88,12,0.7)"]]   # the picture shows through
ATTRIBUTION_DIFF_SCALE = [[0.0, "rgba(33,102,172,0.85)"], [0.5, "rgba(255,255,255,0)"],
                          [1.0, "rgba(178,24,43,0.85)"]]


def base_layout(height: int, title: str | None = None, **extra) -> dict:
    layout = dict(height=height, margin=dict(l=10, r=10, t=60 if title else 40, b=10), font=FONT,
                  plot_bgcolor="white", paper_bgcolor="white")
    if title:
        layout["title"] = dict(text=title, x=0.0, xanchor="left", font=dict(size=15))
    layout.update(extra)
    return layout


def scale_fonts(fig: go.Figure, factor: float) -> go.Figure:
    """The same figure with every text larger by `factor` (and a little taller), e.g. for a projector."""
    if factor == 1.0:
        return fig
    lay = fig.layout
    fig.update_layout(font_size=(lay.font.size or FONT["size"]) * factor)
    if lay.title.text:
        fig.update_layout(title_font_size=(lay.title.font.size or 15) * factor)
    for a in lay.annotations:
        a.font.size = (a.font.size or FONT["size"]) * factor
    for name in lay:
        axis = lay[name]
        if name.startswith(("xaxis", "yaxis")) and axis is not None and axis.tickfont.size:
            axis.tickfont.size = axis.tickfont.size * factor
    if lay.legend.font.size:
        lay.legend.font.size = lay.legend.font.size * factor
    if lay.height:
        fig.update_layout(height=int(lay.height * (1 + (factor - 1) / 2)))
    return fig


def line_dash(name: str, reference: str | None) -> str:
    return REFERENCE_DASH if name == reference else "solid"


def closer_word(metric: str) -> str:
    return f"{'lower' if LOWER_IS_CLOSER.get(metric, True) else 'higher'} = closer to the teacher"


def axis_labels(tokens: Sequence[str]) -> list[str]:
    """Tokens as axis categories: HTML-escaped (plotly reads '<...>' as markup) and made unique.

    A repeated token gets trailing zero-width spaces, so "the ... the" stays two rows instead of one.
    """
    seen: dict[str, int] = {}
    out = []
    for tok in tokens:
        label = html.escape(str(tok), quote=False) or " "
        n = seen.get(label, 0)
        seen[label] = n + 1
        out.append(label + ZWSP * n)
    return out


def plain_label(label: str) -> str:
    """The token behind an axis label (inverse of `axis_labels` for one entry)."""
    return html.unescape(label.replace(ZWSP, ""))


def tick_font_size(t: int) -> int:
    return 11 if t <= 24 else 9 if t <= 40 else 7


def wrap_lines(text: str, max_chars: int) -> list[str]:
    """`text` on lines of at most `max_chars` characters: broken at " · " first, then at spaces. A single word
    longer than a line stays whole (fit_title cuts it short, category_ticks angles the labels instead)."""
    lines: list[str] = []
    for k, part in enumerate(str(text).split(" · ")):
        if k and len(lines[-1]) + 3 + len(part) <= max_chars:
            lines[-1] += " · " + part                       # short parts share a line
            continue
        line = None
        for word in part.split(" "):
            if line is not None and len(line) + 1 + len(word) <= max_chars:
                line += " " + word
            else:
                if line is not None:
                    lines.append(line)
                line = word
        lines.append(line)
    return lines


def fit_title(text: str, width_px: float, font_size: float) -> tuple[str, int]:
    """A bold panel title wrapped onto lines as wide as its panel (`width_px`, at `font_size`), HTML-escaped and
    joined with <br>; a word wider than the panel is cut short with an ellipsis. (the text, how many lines)."""
    chars = max(4, int(width_px / (font_size * CHAR_PX)))
    lines = [x if len(x) <= chars else x[:chars - 1] + "…" for x in wrap_lines(text, chars)]
    return "<br>".join(f"<b>{html.escape(x, quote=False)}</b>" for x in lines if x) or "", max(1, len(lines))


def title_px(lines: int, font_size: float) -> int:
    """The height of a panel title of `lines` lines above its panel, a little space below it included."""
    return int(lines * font_size * 1.3 + font_size * 0.6)


def category_ticks(labels: Sequence[str], width_px: float, font_size: float = FONT["size"],
                   below: Sequence[str] | None = None, values: Sequence | None = None) -> dict:
    """Axis settings (tickvals, ticktext, tickangle) that name each category of a bar chart `width_px` wide (the
    plot area) so that no two names touch: each wrapped at its spaces onto lines that fit its share of the width,
    or all angled at -45° when a single word is still too long. `below`: a further line under each name (already
    HTML), e.g. its value. The tick values are the categories (`labels`, as given to the traces) or `values`."""
    slot = width_px / max(1, len(labels))
    chars = max(3, int((slot - 6) / (font_size * PLAIN_CHAR_PX)))        # 6 px at least between two names
    wrapped = [wrap_lines(x, chars) for x in labels]
    angled = any(len(line) > chars for lines in wrapped for line in lines)
    names = [html.escape(str(x), quote=False) if angled else "<br>".join(html.escape(y, quote=False) for y in lines)
             for x, lines in zip(labels, wrapped)]
    if below is not None:
        names = [f"{x}<br>{b}" for x, b in zip(names, below)]
    return dict(tickmode="array", tickvals=list(labels if values is None else values), ticktext=names,
                tickangle=-45 if angled else 0)


def map_colorscale(gamma: float = 1.0) -> list:
    """The attention colour scale; gamma < 1 spends more of the colours on small weights (0.5: square root).

    The values and the colour bar stay exact: only the colours along the bar are spaced differently.
    """
    if gamma == 1.0:
        return plotly.colors.get_colorscale(MAP_SCALE)
    stops = np.linspace(0.0, 1.0, 21)
    colors = plotly.colors.sample_colorscale(MAP_SCALE, list(stops ** gamma))
    return [[float(x), c] for x, c in zip(stops, colors)]


# Attention over the grey picture: clear where a map is near 0 (the picture shows through), then red, then an
