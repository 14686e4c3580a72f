"""The explorer while a run's teacher is still being fine-tuned (the first session on a machine): the teacher's
attention on the probe examples as it was loaded, head by head, before the run has a probe set. The session
records it just before the fine-tune starts (distill_core/session/session.py, _teacher_preview)."""
from __future__ import annotations

import streamlit as st

from app import common
from app.figures import maps as fig_maps
from distill_core.errors import DistillError
from distill_core.session.session import PREVIEW_MAPS

K = "explorer.preview."


def offers(store, info) -> bool:
    """Whether a run without a recorded epoch has a preview to show (the run list offers it)."""
    return info.status == "running" and (store.root / info.run_id / "probe_preview.json").exists()


def draw(run) -> bool:
    """The preview of `run`, if it has one; False when it has none (the caller says the run has no maps yet)."""
    if not (run.path / "probe_preview.json").exists():
        return False
    try:
        preview = run.read_json("probe_preview.json") or {}
        maps = run.read_attention(PREVIEW_MAPS)
    except DistillError as e:
        common.show_error(e)
        return True
    tokens, texts = preview.get("tokens") or [], preview.get("texts") or []
    if not maps or len(tokens) != len(maps):
        return False
    source = preview.get("teacher") or "default"
    who = "the default teacher" if source == "default" else f"teacher `{source}`"
    st.info(f"Run **{run.id}** is still preparing its teacher ({who} is fine-tuned once for this data, then "
            f"cached). Here is its attention on the probe examples as it was loaded, before the fine-tune; the "
            f"students' maps, and the teacher's after its fine-tune, appear after epoch 0. Hover a cell for its "
            f"tokens and weight.", icon=":material/hourglass_top:")
    c1, c2 = st.columns([3, 1])
    example = c1.selectbox("Probe example", range(len(maps)), key=K + "example",
                           format_func=lambda i: texts[i] if i < len(texts) else f"example {i + 1}")
    layer = c2.selectbox("Teacher layer", range(maps[example].shape[0]), key=K + "layer",
                         format_func=lambda i: f"layer {i + 1}")
    fig = fig_maps.head_grid(maps[example][layer], tokens[example],
                             title=f"Teacher, layer {layer + 1}: every head (before its fine-tune)")
    st.plotly_chart(common.sized(fig), width="stretch", config=common.PLOTLY_CONFIG, key=K + "grid")
    return True
