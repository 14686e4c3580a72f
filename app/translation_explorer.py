"""The Attention explorer for a translation run: which source words each target word looks at (cross-attention),
and the encoder's and the decoder's self-attention, teacher and student side by side with their difference.

A probe pair shows the maps recorded every epoch under teacher forcing on the reference translation, so teacher and
student read the same target tokens and their maps pair cell by cell. A typed sentence shows each model's own
translation and the attention it used to write it (translation/analysis.py): the rows are each model's own target
tokens, so the two maps are drawn side by side without a difference."""
from __future__ import annotations

import html

import numpy as np
import streamlit as st

from app import common, live, state
from app.figures import maps as fig_maps
from distill_core import analysis
from distill_core.errors import DistillError
from distill_core.vocab import ATTENTION_KINDS, TEACHER

K = "explorer."
AVERAGE = common.AVERAGE_HEADS
INTRO = ("Cross-attention: each row is a target token, each column a source token; a row is where the decoder "
         "looked in the source when it wrote that token, and sums to 1. Choose the encoder's or the decoder's "
         "self-attention below. Hover a cell for its exact weight.")
AXES = {"cross": ("target_tokens", "tokens"), "encoder": ("tokens", "tokens"),
        "decoder": ("target_tokens", "decoder_tokens")}        # probe.json's (rows, columns) of each kind's maps


def _stored(run, name: str, kind: str, primary: str, example: int) -> np.ndarray:
    """One model's recorded maps of one kind on a probe pair: (L, H, rows, columns)."""
    return common.attention(run.id, name if kind == primary else f"{name}.{kind}")[example]


def _translation_lines(probe: dict, example: int | None, found: dict, names: list[str], label) -> str:
    """The source, the reference and each model's own translation, as HTML lines."""
    def line(head: str, text: str, weight: str = "400") -> str:
        return (f'<div style="margin:2px 0"><span style="display:inline-block;min-width:9em;font-weight:600">'
                f'{html.escape(head)}</span><span style="font-weight:{weight}">{html.escape(text)}</span></div>')
    langs = probe.get("languages") or ["source", "target"]
    out = []
    if example is not None:
        out += [line(f"source ({langs[0]})", probe["texts"][example]),
                line(f"reference ({langs[-1]})", probe["labels"][example])]
    out += [line(label(m), found[m]["translation"], "600") for m in names if m in found]
    return "".join(out)


def draw(run, probe: dict, view: state.View, link_slot, maps_slot=None) -> None:
    """The explorer for one translation run (picked by the page, its probe.json read); `view` holds the page's
    fields, `maps_slot` (when presenting) the container above the controls the maps go into."""
    present, font = common.presenting(), common.chart_font()
    variants = common.variants_of(run, probe)
    students = [v for v in variants.names if run.attention_epochs(v)]
    if not students:
        st.info(f"Run {run.id} has not recorded any attention yet; it appears here after its first epoch.")
        return
    kinds = probe.get("attention_kinds") or {}
    primary = next(iter(kinds), "cross")
    if st.session_state.get(K + "_run") != run.id:        # another run: start from its defaults
        view.forget(*(K + n for n in ("student", "student_layer", "teacher_layer", "head", "example", "epoch",
                                      "kind", "weights")))
        st.session_state[K + "_run"] = run.id

    left, right = st.columns([3, 2], gap="large")
    with left:
        source, text, example = common.pick_text(K, probe, help="Translates this sentence with the teacher and every "
                                                                "trained student, on the CPU.")
        common.keep_choice(K + "kind", list(kinds), primary)
        kind = st.radio("Attention", list(kinds), key=K + "kind", horizontal=True,
                        format_func=lambda k: kinds[k].get("name") or k,
                        help="; ".join(ATTENTION_KINDS.get(k, k) for k in kinds))
    typed = source == "typed"
    with right:
        common.keep_choice(K + "student", students, next((v for v in students if v != variants.reference),
                                                         students[0]))
        student = st.radio("Student variant", students, horizontal=True, key=K + "student",
                           format_func=variants.label)
        epochs = run.attention_epochs(student)
        common.keep_choice(K + "epoch", epochs, epochs[-1])
        weights = "final"
        if typed:
            weights, kept, _ = common.pick_weights(run, student, K + "weights", "sentence")
            epoch = kept.get(weights, epochs[-1])
        elif len(epochs) > 1:
            epoch = st.select_slider("Epoch (0 = before training)", options=epochs, key=K + "epoch",
                                     help="Attention recorded on the probe pairs after each epoch, under teacher "
                                          "forcing on the reference translation.")
        else:
            epoch = epochs[0]
    info = kinds.get(kind) or {}
    pairs = info.get("pairs") or []
    rule = info.get("head_rule") or probe.get("head_rule", "mean")
    (Lt, Ht), (Ls, Hs) = info.get("teacher_shape", [1, 1]), info.get("student_shape", [1, 1])
    pick = common.pick_layers_and_heads(K, (Lt, Ht), (Ls, Hs), pairs, rule)
    mapped = {s: t for t, s in pairs}
    view.sync()
    with link_slot:
        state.link_button(view)

    gamma = 0.5 if st.session_state.setdefault(K + "sqrt_scale", True) else 1.0
    s_label = variants.label(student)
    s_layer, t_layer, s_head, t_heads = pick.s_layer, pick.t_layer, pick.s_head, pick.t_heads
    s_desc, t_desc = pick.s_desc, pick.t_desc
    area = maps_slot or st
    try:
        if typed:
            if not text.strip():
                st.info("Type a sentence to see how the models translate it.")
                return
            found = live.translate(run.id, text, weights=weights)
            area.markdown(_translation_lines(probe, None, found, [TEACHER, student], variants.label),
                          unsafe_allow_html=True)
            t, s = found[TEACHER], found[student]
            rows_of = {"cross": "target_tokens", "encoder": "source_tokens", "decoder": "target_tokens"}
            cols_of = {"cross": "source_tokens", "encoder": "source_tokens", "decoder": "decoder_tokens"}
            t_map = t["maps"][kind][t_layer][t_heads].mean(0)
            s_map = s["maps"][kind][s_layer].mean(0) if s_head == AVERAGE else s["maps"][kind][s_layer][s_head]
            fig = common.shared_figure(
                fig_maps.own_maps, (t_map, s_map), (t[rows_of[kind]], s[rows_of[kind]]),
                (t[cols_of[kind]], s[cols_of[kind]]),
                (f"teacher L{t_layer} · {t_desc}", f"{s_label} L{s_layer} · {s_desc} · {weights} weights"),
                gamma=gamma, font_size=font)
            area.plotly_chart(fig, width="stretch", config=common.PLOTLY_CONFIG, key=K + "own_maps")
            st.caption("Each model's own translation, and the attention it used to write each of its tokens: the rows "
                       "differ between the two models, so there is no difference map (a probe pair has one, on the "
                       "reference's tokens).")
            return
        t_maps = _stored(run, TEACHER, kind, primary, example)
        s_maps = _stored(run, f"{student}_e{epoch}", kind, primary, example)
        found = {TEACHER: {"translation": t} for t in [(probe.get("translations") or {}).get(TEACHER, [None])[example]]
                 if t is not None}
        if run.summary() is not None:          # the students' final weights exist: their own translations
            found.update({m: r for m, r in live.translate(run.id, probe["texts"][example]).items()
                          if m in (TEACHER, student)})
    except (DistillError, ValueError, IndexError, KeyError) as e:
        common.show_error(e)
        return
    area.markdown(_translation_lines(probe, example, found, [TEACHER, student], variants.label),
                  unsafe_allow_html=True)
    rows_key, cols_key = AXES[kind]
    rows, cols = probe[rows_key][example], probe[cols_key][example]
    t_shown = t_maps[t_layer][t_heads].mean(0)
    s_shown = s_maps[s_layer].mean(0) if s_head == AVERAGE else s_maps[s_layer][s_head]
    titles = (f"teacher L{t_layer} · {t_desc}", f"{s_label} L{s_layer} · {s_desc} · epoch {epoch}",
              "student − teacher")
    if present:
        titles = ("teacher", s_label, "")
    arrangement = fig_maps.ROW if present else None
    fig = common.shared_figure(fig_maps.heatmap_triptych, t_shown, s_shown, cols, rows=rows, gamma=gamma,
                               font_size=font, difference=not present, arrangement=arrangement, titles=titles)
    area.plotly_chart(fig, width="stretch", config=common.PLOTLY_CONFIG, key=K + "triptych")
    if not present:
        st.caption(f"Under teacher forcing on the reference: rows are the reference's tokens ({rows_key.replace('_', ' ')}),"
                   f" columns {'the source tokens' if cols_key == 'tokens' else 'the decoder inputs'}. "
                   f"Translations above: the teacher's and the student's own, greedy, final weights.")
        st.checkbox("Emphasise small weights (square-root colour scale)", key=K + "sqrt_scale")
        js = analysis.compare_pair(t_maps[t_layer], s_maps[s_layer], rule, Hs)["js"]
        st.caption(f"Jensen-Shannon divergence of this pair of layers as trained ({rule} rule), mean over compared "
                   f"heads and target rows: **{float(np.mean(js)):.4f}**"
                   + ("" if mapped.get(s_layer) == t_layer else " (not a mapped pair: training did not compare "
                                                                "these)"))
