"""The Divergence page's "Suggested layer mapping": for each student layer, the teacher layer whose attention the
run's baseline student resembles most (distill_core.analysis.suggest_for_run), beside the layers the run used."""
from __future__ import annotations

import streamlit as st

from app import common
from app.figures import divergence as fig_divergence
from distill_core.errors import DistillError


def _layers(layers) -> str:
    return ", ".join(str(t) for t in layers)


def js_format(sug: dict) -> str:
    """A printf format for the suggestion's JS values: scientific when all are tiny (nearly identical maps)."""
    return "%.2e" if max(max(row) for row in sug["costs"]) < 0.01 else "%.4f"


def layer_rows(sug: dict) -> list[dict]:
    """One table row per student layer: the suggested and the used teacher layer with the mean JS of each, and the
    teacher heads each student head was matched with."""
    costs, used = sug["costs"], sug.get("used") or []
    rows = []
    for s, t in enumerate(sug["layers"]):
        row = {"student layer": s, "suggested teacher layer": t, "JS, suggested": costs[s][t]}
        if len(used) == len(sug["layers"]):
            row.update({"used teacher layer": used[s], "JS, used": costs[s][used[s]]})
        groups = sug["heads"][s]
        row["teacher heads per student head"] = " · ".join(f"h{h} ← {_layers(g)}" for h, g in enumerate(groups))
        rows.append(row)
    return rows


def summary(sug: dict) -> str:
    """The suggested layers and the used ones, with their mean JS, in one line."""
    fmt = js_format(sug)
    text = f"Suggested teacher layers **{_layers(sug['layers'])}** (mean JS {fmt % sug['cost']})"
    used = sug.get("used") or []
    if sug.get("used_cost") is None:
        return text + "."
    if list(used) == list(sug["layers"]):
        return text + ": the layers this run already used."
    text += f"; this run used **{_layers(used)}** (mean JS {fmt % sug['used_cost']})"
    if list(used) != list(sug["uniform"]):
        text += f"; the uniform map {_layers(sug['uniform'])} gives {fmt % sug['uniform_cost']}"
    return text + "."


def usage(sug: dict) -> str:
    """The lines of a config that use the suggestion."""
    return f"objectives:\n  layer_map: suggested      # or the layers themselves: [{_layers(sug['layers'])}]"


def section(run, variants: common.Variants, key: str) -> None:
    """Draw the section for a run whose variants the page read (common.variants_of); widget keys start with key."""
    st.subheader("Suggested layer mapping")
    try:
        sug = common.suggestion(run.id)
    except (DistillError, ValueError) as e:
        common.show_error(e)
        return
    if sug is None:
        st.info(f"Run {run.id} suggests a layer mapping after its first epoch.")
        return
    why = ("it learnt from the labels alone, so this is where its layers fall on their own"
           if sug["variant"] == variants.reference else "this run has no labels-only variant: its first one is used")
    st.caption(f"For each student layer, the teacher layer whose attention the {variants.label(sug['variant'])} "
               f"resembles most at epoch {sug['epoch']} ({why}), chosen together so that no two student layers share "
               f"a teacher layer. Closeness is the mean Jensen-Shannon divergence over the probe examples: lower is "
               f"closer.")
    st.markdown(summary(sug))
    fmt = js_format(sug)
    st.dataframe(layer_rows(sug), hide_index=True, key=key + "table", column_config={
        "JS, suggested": st.column_config.NumberColumn(format=fmt),
        "JS, used": st.column_config.NumberColumn(format=fmt)})
    st.caption("Heads: within each suggested pair, the teacher heads each student head resembles most, every "
               "teacher head used once. Training compares heads by the head rule; these are for reading.")
    fig = fig_divergence.layer_cost_map(sug["costs"], sug["layers"], sug.get("used"))
    st.plotly_chart(common.sized(fig), width="stretch", config=common.PLOTLY_CONFIG, key=key + "costs")
    st.markdown("**To train with it**, set `layer_map: suggested` in a config (the newest finished run with the "
                "same teacher, data and student shape is used), or give the layers as a list:")
    st.code(usage(sug), language="yaml", wrap_lines=True)
