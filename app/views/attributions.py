"""Attributions: which tokens each model's decision rests on, and whether the student's follow the teacher's."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import charts, common, live, state
from distill_core.attribution import attention_agreement, attention_attribution_correlation, compare_attributions
from distill_core.errors import DistillError
from distill_core.vocab import TEACHER

K = "attributions."
view = state.View("attributions", state.ATTRIBUTIONS)
view.restore()

head_l, head_r = st.columns([3, 1], vertical_alignment="bottom")
head_l.title("🧭 Attributions")
st.caption("Token attributions by Integrated Gradients (Captum's LayerIntegratedGradients on the input embeddings, "
           "from an all-[PAD] baseline text): how much each token moved the model's probability of the explained "
           "class. Green tokens push towards that class, red ones away from it. The models run on the CPU with "
           "their final weights.")

run, probe = common.pick_run_with_probe(K + "run", "Run {run} has no probe set yet; attributions need its trained models.")
names = probe["label_names"]
variants = common.variants_of(run, probe)

left, right = st.columns([3, 2], gap="large")
with left:
    source, text, example = common.pick_text(K, probe)
with right:
    if st.session_state.get(K + "target", TEACHER) not in [TEACHER, *range(len(names))]:
        del st.session_state[K + "target"]        # a class of another run
    target_choice = st.selectbox(
        "Explain the class", [TEACHER, *range(len(names))], key=K + "target",
        format_func=lambda c: "the teacher's prediction" if c == TEACHER else f"{names[c]}",
        help="All models are explained towards the same class, so their attributions compare.")
    if st.session_state.get(K + "steps") not in (8, 16, 32, 64):
        st.session_state[K + "steps"] = 32
    n_steps = st.select_slider("Integration steps", options=[8, 16, 32, 64], key=K + "steps",
                               help="More steps: a more exact integral (smaller convergence delta), slower.")
view.sync()
with head_r:
    state.link_button(view)

if not text.strip():
    st.info("Type a sentence to see which tokens each model relies on.")
    st.stop()

try:
    with st.spinner("Running the models and Integrated Gradients on the CPU…"):
        tokens, maps, probs = live.attention_for_text(run.id, text)
        teacher_pred = int(np.argmax(probs[TEACHER]))
        target = teacher_pred if target_choice == TEACHER else int(target_choice)
        models = [m for m in (TEACHER, *variants.names) if m in maps]
        attrs = {m: live.token_attributions(run.id, text, m, target, n_steps) for m in models}
except (DistillError, ValueError, ImportError) as e:
    common.show_error(e)
    st.stop()

# ---- what the models say -----------------------------------------------------------------------------
st.markdown(f"**Explaining class “{names[target]}”**"
            + (f" · true label: **{names[probe['labels'][example]]}**" if source == "probe" else ""))
outputs = pd.DataFrame([{
    "model": variants.label(m),
    "prediction": names[int(np.argmax(probs[m]))],
    "confidence (%)": 100 * float(np.max(probs[m])),
    f"P({names[target]}) (%)": 100 * float(probs[m][target]),
    "convergence delta": attrs[m].delta,
} for m in models])
st.dataframe(outputs, hide_index=True, key=K + "outputs", column_config={
    "confidence (%)": st.column_config.NumberColumn(format="%.1f"),
    f"P({names[target]}) (%)": st.column_config.NumberColumn(format="%.1f"),
    "convergence delta": st.column_config.NumberColumn(
        format="%.2g", help="sum of the attributions minus the change in probability they explain; "
                            "near 0 means the integral is accurate (raise the steps otherwise)"),
})

# ---- teacher vs a student ----------------------------------------------------------------------------
students = [m for m in models if m != TEACHER]
if not students:
    st.warning(f"Run {run.id} has no trained student weights to compare with the teacher.")
    st.stop()
rows, stats = [], {}
for s in students:
    cmp = compare_attributions(attrs[TEACHER], attrs[s])
    agree = attention_agreement(maps[TEACHER], maps[s], probe["pairs"])
    own = attention_attribution_correlation(maps[s], attrs[s])
    stats[s] = (cmp["spearman"], agree)
    rows.append({"student": variants.label(s),
                 "attribution ρ vs teacher": cmp["spearman"],
                 f"top-{cmp['k']} tokens shared": cmp["top_k_overlap"],
                 "[CLS] attention agreement": agree,
                 "own attention ρ vs own attributions": own})
st.dataframe(pd.DataFrame(rows), hide_index=True, key=K + "comparison",
             column_config={c: st.column_config.NumberColumn(format="%.2f") for c in rows[0] if c != "student"})
st.caption("Attribution ρ: Spearman rank correlation of the student's and the teacher's token attributions over "
           "the non-special tokens (1 = same order). Top-k shared: share of the teacher's k most important tokens "
           "that are also among the student's. [CLS] attention agreement: 1 − mean Jensen-Shannon divergence / ln 2 "
           "between the head-averaged [CLS] rows of the mapped layer pairs (1 = identical). Last column: Spearman ρ "
           "between the student's own [CLS] attention (all layers and heads) and the size of its own attributions.")

if st.session_state.get(K + "student") not in students:
    st.session_state[K + "student"] = next((s for s in students if s != variants.reference), students[0])
student = st.radio("Compare the teacher with", students, horizontal=True, key=K + "student",
                   format_func=variants.label)
view.sync()
st.info(charts.attribution_reading(student, stats, variants.reference), icon="🧾")
st.plotly_chart(common.sized(charts.attribution_bars(tokens, attrs[TEACHER].scores, attrs[student].scores,
                                        variants.label(student))), width="stretch", config=common.PLOTLY_CONFIG,
                key=K + "bars")
