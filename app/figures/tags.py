"""A tagged sentence as coloured spans: each entity a coloured box with its type, the other words plain. HTML for
st.markdown; no Streamlit here. The colours are fixed per entity type within a run (its probe's entity_types)."""
from __future__ import annotations

import html
from collections.abc import Sequence

from distill_core.modality.tagging.analysis import spans

PALETTE = ("#fde68a", "#bfdbfe", "#bbf7d0", "#fecaca", "#ddd6fe", "#fbcfe8", "#a5f3fc", "#fed7aa", "#d9f99d",
           "#e5e7eb", "#c7d2fe", "#99f6e4")


def type_colors(types: Sequence[str]) -> dict[str, str]:
    """A colour per entity type, in the run's order of types."""
    return {t: PALETTE[k % len(PALETTE)] for k, t in enumerate(types)}


def tagged_html(words: Sequence[str], tags: Sequence[str], colors: dict[str, str], label: str = "",
                against: Sequence[str] | None = None) -> str:
    """One line: `label`, then the sentence with each entity in a box of its type's colour, the type in small
    capitals after it. With `against` (the reference tags: gold, or the teacher's), an entity the reference does not
    have exactly (same words, same type) is outlined in red."""
    theirs = set()
    if against is not None:
        pos = 0
        for text, kind in spans(list(words), list(against)):
            n = len(text.split(" "))
            if kind is not None:
                theirs.add((pos, n, kind))
            pos += n
    out, pos = [], 0
    for text, kind in spans(list(words), list(tags)):
        n = len(text.split(" "))
        safe = html.escape(text, quote=False)
        if kind is None:
            out.append(safe)
        else:
            miss = against is not None and (pos, n, kind) not in theirs
            border = "2px solid #dc2626" if miss else "1px solid rgba(0,0,0,0.08)"
            out.append(f'<span style="background:{colors.get(kind, "#e5e7eb")};border:{border};border-radius:4px;'
                       f'padding:1px 4px;white-space:nowrap">{safe}<span style="font-size:0.7em;font-weight:600;'
                       f'margin-left:4px;opacity:0.75">{html.escape(kind, quote=False)}</span></span>')
        pos += n
    if not any(t[:2] in ("B-", "I-") for t in tags):
        out.append('<span style="color:#6b7280;font-size:0.85em">(no entity found)</span>')
    head = f'<span style="display:inline-block;min-width:9em;font-weight:600">{html.escape(label)}</span>' if label \
        else ""
    return f'<div style="line-height:2.1;margin:2px 0">{head}{" ".join(out)}</div>'
