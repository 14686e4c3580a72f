"""The Attention explorer for a language-model run: causal self-attention, teacher and student side by side with
their difference, on the opening of a probe passage; and a prompt box where each model continues a prompt the user
types, and a token it wrote shows what it attended to when it wrote it.

A probe passage shows the maps recorded every epoch on the same tokens, so teacher and student pair cell by cell
(only the lower triangle holds weight: a position reads itself and the earlier ones). A typed prompt shows each
model's own continuation (language_model/analysis.py): the two models wrote different tokens, so their maps are drawn
side by side without a difference, and a chosen generated token's row is drawn as bars over the tokens before it."""
from __future__ import annotations

import html

import numpy as np
import streamlit as st

from app import common, live, state
from app.figures import maps as fig_maps
from distill_core import analysis
from distill_core.errors import DistillError
from distill_core.vocab import TEACHER

K = "explorer."
AVERAGE = common.AVERAGE_HEADS
INTRO = ("Causal self-attention: each row is a position of the text, each column a position it may read (itself "
         "and the earlier ones: the lower triangle). A row is where the model looked to predict the next token, and "
         "sums to 1. Type a prompt to see each model continue it. Hover a cell for its exact weight.")


def _continuation_lines(found: dict, names: list[str], label) -> str:
    """The prompt in plain weight, each model's continuation after it in bold."""
    out = []
    for m in names:
        if m not in found:
            continue
        r = found[m]
        out.append(f'<div style="margin:2px 0"><span style="display:inline-block;min-width:9em;font-weight:600">'
                   f'{html.escape(label(m))}</span><span>{html.escape(r["prompt"])} </span>'
                   f'<span style="font-weight:600">{html.escape(r["continuation"])}</span>'
                   + (' <span style="color:#6b7280">(end of text)</span>' if r.get("ended") else "") + "</div>")
    return "".join(out)


def draw(run, probe: dict, view: state.View, link_slot, maps_slot=None) -> None:
    """The explorer for one language-model run (picked by the page, its probe.json read); `view` holds the page's
    fields, `maps_slot` (when presenting) the container above the controls the maps go into."""
    present, font = common.presenting(), common.chart_font()
    variants = common.variants_of(run, probe)
    students = [v for v in variants.names if run.attention_epochs(v)]
    if not students:
        st.info(f"Run {run.id} has not recorded any attention yet; it appears here after its first epoch.")
        return
    if st.session_state.get(K + "_run") != run.id:
        view.forget(*(K + n for n in ("student", "student_layer", "teacher_layer", "head", "example", "epoch",
                                      "weights", "token")))
        st.session_state[K + "_run"] = run.id
    left, right = st.columns([3, 2], gap="large")
    with left:
        source = st.radio("Text", ["probe", "typed"], horizontal=True, key=K + "source",
                          format_func={"probe": "a probe passage", "typed": "type a prompt"}.get)
        typed = source == "typed"
        example = None
        if typed:
            st.session_state.setdefault(K + "text", (probe.get("sample_prompts") or [""])[0])
            text = st.text_input("Prompt", key=K + "text", max_chars=300,
                                 help="The teacher and the chosen student each continue it, on the CPU.")
            c1, c2, c3 = st.columns(3)
            new_tokens = c1.number_input("New tokens", 1, 60, 20, key=K + "new_tokens")
            seed = c2.number_input("Seed", 0, 10_000, 0, key=K + "seed",
                                   help="Both models draw from the same seeded stream: the same seed gives the same "
                                        "continuations again.")
            greedy = c3.checkbox("Greedy", key=K + "greedy", help="Always the likeliest next token (no sampling).")
        else:
            texts = probe["texts"]
            if st.session_state.get(K + "example") not in range(len(texts)):
                st.session_state[K + "example"] = 0
            example = st.selectbox("Probe passage (its opening)", range(len(texts)), key=K + "example",
                                   format_func=lambda i: f"#{i} {texts[i][:110]}")
    with right:
        common.keep_choice(K + "student", students, next((v for v in students if v != variants.reference),
                                                         students[0]))
        student = st.radio("Student variant", students, horizontal=True, key=K + "student",
                           format_func=variants.label)
        epochs = run.attention_epochs(student)
        common.keep_choice(K + "epoch", epochs, epochs[-1])
        weights = "final"
        if typed:
            weights, kept, _ = common.pick_weights(run, student, K + "weights", "prompt")
            epoch = kept.get(weights, epochs[-1])
        elif len(epochs) > 1:
            epoch = st.select_slider("Epoch (0 = before training)", options=epochs, key=K + "epoch",
                                     help="Attention recorded on the probe passages after each epoch.")
        else:
            epoch = epochs[0]
    rule, pairs = probe["head_rule"], probe["pairs"]
    pick = common.pick_layers_and_heads(K, (probe["teacher_layers"], probe["teacher_heads"]),
                                        (probe["student_layers"], probe["student_heads"]), pairs, rule)
    mapped = {s: t for t, s in pairs}
    view.sync()
    with link_slot:
        state.link_button(view)
    gamma = 0.5 if st.session_state.setdefault(K + "sqrt_scale", True) else 1.0
    s_label = variants.label(student)
    s_layer, t_layer, s_head, t_heads = pick.s_layer, pick.t_layer, pick.s_head, pick.t_heads
    s_desc, t_desc = pick.s_desc, pick.t_desc
    area = maps_slot or st
    if typed:
        _prompt_view(run, text, int(new_tokens), int(seed), greedy, weights, student, s_label, variants.label,
                     (t_layer, t_heads, t_desc), (s_layer, s_head, s_desc), gamma, font, area)
        return
    try:
        t_maps = common.attention(run.id, TEACHER)[example]
        s_maps = common.attention(run.id, f"{student}_e{epoch}")[example]
    except (DistillError, ValueError, IndexError, KeyError) as e:
        common.show_error(e)
        return
    tokens = probe["tokens"][example]
    t_shown = t_maps[t_layer][t_heads].mean(0)
    s_shown = s_maps[s_layer].mean(0) if s_head == AVERAGE else s_maps[s_layer][s_head]
    titles = (f"teacher L{t_layer} · {t_desc}", f"{s_label} L{s_layer} · {s_desc} · epoch {epoch}",
              "student − teacher")
    if present:
        titles = ("teacher", s_label, "")
    fig = common.shared_figure(fig_maps.heatmap_triptych, t_shown, s_shown, tokens, gamma=gamma, font_size=font,
                               difference=not present, arrangement=fig_maps.ROW if present else None, titles=titles)
    area.plotly_chart(fig, width="stretch", config=common.PLOTLY_CONFIG, key=K + "triptych")
    if not present:
        st.caption("The opening of a held-out passage, the same tokens for both models: row i is where position i "
                   "looked to predict token i + 1. Above the diagonal nothing may be read, so both maps are 0 there.")
        st.checkbox("Emphasise small weights (square-root colour scale)", key=K + "sqrt_scale")
        js = analysis.compare_pair(t_maps[t_layer], s_maps[s_layer], rule, probe["student_heads"])["js"]
        st.caption(f"Jensen-Shannon divergence of this pair of layers as trained ({rule} rule), mean over compared "
                   f"heads and rows: **{float(np.mean(js)):.4f}**"
                   + ("" if mapped.get(s_layer) == t_layer else " (not a mapped pair: training did not compare "
                                                                "these)"))


def _prompt_view(run, text: str, new_tokens: int, seed: int, greedy: bool, weights: str, student: str, s_label: str,
                 label, teacher_pick: tuple, student_pick: tuple, gamma: float, font: int, area) -> None:
    """Each model's continuation of the prompt, their maps side by side, and one generated token's attention."""
    if not text.strip():
        st.info("Type a prompt for the models to continue.")
        return
    try:
        found = live.continue_prompt(run.id, text, new_tokens, seed, 0.0 if greedy else None, weights=weights)
    except (DistillError, ValueError) as e:
        common.show_error(e)
        return
    area.markdown(_continuation_lines(found, [TEACHER, student], label), unsafe_allow_html=True)
    t, s = found[TEACHER], found[student]
    (t_layer, t_heads, t_desc), (s_layer, s_head, s_desc) = teacher_pick, student_pick
    t_map = t["maps"][t_layer][t_heads].mean(0)
    s_map = s["maps"][s_layer].mean(0) if s_head == AVERAGE else s["maps"][s_layer][s_head]
    written = min(len(t["tokens"]) - t["prompt_length"], len(s["tokens"]) - s["prompt_length"])
    if written >= 1:
        k = st.select_slider("Generated token", options=list(range(1, written + 1)), key=K + "token",
                             format_func=lambda i: f"{i}: teacher {t['tokens'][t['prompt_length'] + i - 1]!r} · "
                                                   f"{s_label} {s['tokens'][s['prompt_length'] + i - 1]!r}",
                             help="The k-th token each model wrote; the bars show where it looked when it wrote "
                                  "it (the row of the position before it).")
        rows = [(r, m, r["prompt_length"] + k - 2) for r, m in ((t, t_map), (s, s_map))]
        fig = fig_maps.attended_bars(
            [m[row, :row + 1] for r, m, row in rows], [r["tokens"][:row + 1] for r, m, row in rows],
            [f"teacher L{t_layer} · {t_desc} wrote {t['tokens'][rows[0][2] + 1]!r}",
             f"{s_label} L{s_layer} · {s_desc} wrote {s['tokens'][rows[1][2] + 1]!r}"],
            [r["prompt_length"] for r, _, _ in rows], font_size=font)
        area.plotly_chart(fig, width="stretch", config=common.PLOTLY_CONFIG, key=K + "attended")
    fig = common.shared_figure(
        fig_maps.own_maps, (t_map, s_map), (t["tokens"], s["tokens"]), (t["tokens"], s["tokens"]),
        (f"teacher L{t_layer} · {t_desc}", f"{s_label} L{s_layer} · {s_desc} · {weights} weights"),
        gamma=gamma, font_size=font)
    area.plotly_chart(fig, width="stretch", config=common.PLOTLY_CONFIG, key=K + "own_maps")
    st.caption("Each model's own continuation, and the attention it used to write each of its tokens: the two "
               "models wrote different tokens, so there is no difference map (a probe passage has one).")
