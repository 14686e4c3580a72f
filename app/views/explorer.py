"""Attention explorer: the teacher's and a student's attention on one text, head by head, epoch by epoch."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import (common, image_explorer, live, lm_explorer, page_data, state, tasks, teacher_preview,
                 translation_explorer)
from app.figures import base as fig_base, maps as fig_maps, tags as fig_tags
from distill_core import analysis, compress
from distill_core.errors import DistillError
from distill_core.metrics import map_metric
from distill_core.modality.tagging.analysis import words_of
from distill_core.vocab import LOWER_IS_CLOSER, METRIC_LABELS, METRICS, TEACHER

K = "explorer."
AVERAGE = page_data.AVERAGE                      # the "all heads, averaged" choice of a head selector
view = state.View("explorer", state.EXPLORER, run_marker=K + "_run")
view.restore()
present = common.presenting()
font = common.chart_font()

head_l, head_r = st.columns([3, 1], vertical_alignment="bottom")
if not present:                                  # presenting: the first screen is the maps, the controls below them
    head_l.title("Attention explorer")
intro = st.empty()                               # an image run replaces this caption with its own
if not present:
    intro.caption("Each map is one attention head: row = the query token, column = the key token it attends to, "
                  "each row sums to 1. Hover a cell for its exact weight.")
maps_area, controls = (st.container(), st.container()) if present else (None, None)
if present:
    controls.divider()

NOT_YET = "Run {run} has not recorded any attention yet; it appears here after its first epoch."
with controls or st.container():
    run, probe = common.pick_run_with_probe(K + "run", NOT_YET, no_probe=teacher_preview.draw,
                                            offers=teacher_preview.offers)
task = tasks.of(probe)
if task.pictures:                                # pictures: where the models look (app/image_explorer.py)
    image_explorer.draw(run, probe, link_slot=controls or head_r, intro=intro, maps_slot=maps_area)
    st.stop()
if task.kinds:                                   # an encoder-decoder: cross-attention first (app/translation_explorer.py)
    if not present:
        intro.caption(translation_explorer.INTRO)
    with controls or st.container():
        translation_explorer.draw(run, probe, view, link_slot=controls or head_r, maps_slot=maps_area)
    st.stop()
if task.continues:                               # a language model: causal attention and a prompt box (app/lm_explorer.py)
    if not present:
        intro.caption(lm_explorer.INTRO)
    with controls or st.container():
        lm_explorer.draw(run, probe, view, link_slot=controls or head_r, maps_slot=maps_area)
    st.stop()
variants = common.variants_of(run, probe)
students = [v for v in variants.names if run.attention_epochs(v)]
if not students:
    st.info(NOT_YET.format(run=run.id))
    st.stop()

Lt, Ht = probe["teacher_layers"], probe["teacher_heads"]
Ls, Hs = probe["student_layers"], probe["student_heads"]
rule, pairs = probe["head_rule"], probe["pairs"]
mapped = {s: t for t, s in pairs}                # student layer -> teacher layer


def _follow_pair() -> None:
    """A new student layer brings its mapped teacher layer along."""
    s = st.session_state.get(K + "student_layer", 0)
    if s in mapped:
        st.session_state[K + "teacher_layer"] = mapped[s]


if st.session_state.get(K + "_run") != run.id:   # the user picked another run: start from its first mapped pair
    view.forget(*(K + name for name in ("student", "student_layer", "teacher_layer", "head", "teacher_head",
                                        "example", "epoch", "window", "weights")))
    st.session_state[K + "_run"] = run.id

# ---- what to look at ---------------------------------------------------------------------------------
left, right = (controls or st).columns([3, 2], gap="large")
with left:
    source, text, example = common.pick_text(
        K, probe, help="Runs the teacher and every trained student variant on this text, on the CPU.")
with right:
    common.keep_choice(K + "student", students, next((v for v in students if v != variants.reference), students[0]))
    student = st.radio("Student variant", students, horizontal=True, key=K + "student", format_func=variants.label,
                       help="Every variant is the same student trained with its own objectives, from the same "
                            "initial weights on the same batches.")
    # several teachers: any of those with the first one's layers and heads can stand beside the student
    teachers = [t["name"] for t in probe.get("teachers") or []
                if t["name"] == TEACHER or np.shape(common.attention(run.id, t["name"])[0])[:2] == (Lt, Ht)]
    if len(teachers) > 1:
        learns = (probe.get("learns_from") or {}).get(student, TEACHER)
        common.keep_choice(K + "teacher", teachers, learns if learns in teachers else TEACHER)
        teacher_name = st.radio("Teacher", teachers, horizontal=True, key=K + "teacher",
                                help="This session had several teachers; the divergences recorded during training "
                                     "are against the first one. "
                                     + (f"{variants.label(student)} learns from {learns}." if learns else ""))
    else:
        teacher_name = TEACHER
    epochs = run.attention_epochs(student)
    typed = source == "typed"
    common.keep_choice(K + "epoch", epochs, epochs[-1])
    if len(epochs) > 1 and not typed:
        epoch = st.select_slider("Epoch (0 = before training)", options=epochs, key=K + "epoch",
                                 help="Attention recorded on the probe set after each epoch.")
    elif not typed:
        epoch = epochs[0]
        st.caption(f"Only epoch {epoch} has been recorded so far (0 = before training).")
    else:
        epoch = st.session_state[K + "epoch"]
        weights, kept, options = common.pick_weights(run, student, K + "weights", "sentence")
        if len(options) == 1:
            st.caption(f"The final weights (epoch {kept.get('final')}) are also the best by validation accuracy; "
                       "the epoch slider applies to probe examples.")

view.sync()
# ---- the maps ----------------------------------------------------------------------------------------
try:
    if typed:
        if not text.strip():
            st.info("Type a sentence to see how the models attend to it.")
            st.stop()
        if task.kind == "tagging":                 # the sentence's words, tagged by every model
            words = words_of(text)
            tokens, live_maps, tagged, _ = live.tag_sentence(run.id, words, weights=weights)
            probs = None
        else:
            tokens, live_maps, probs = live.attention_for_text(run.id, text, weights=weights)
        if student not in live_maps:
            st.warning(f"Run {run.id} has no trained {student} weights.")
            st.stop()
        if teacher_name not in live_maps:
            st.warning(f"{teacher_name} of run {run.id} is no longer in the cache (it was cleared), so it cannot read "
                       f"a new sentence; its attention on the probe examples is still shown (Text: a probe example).")
            st.stop()
        t_maps, s_maps = live_maps[teacher_name], live_maps[student]
        shown_epoch, before = kept.get(weights, epochs[-1]), None
    else:
        tokens = probe["tokens"][example]
        t_maps = common.attention(run.id, teacher_name)[example]
        s_maps = common.attention(run.id, f"{student}_e{epoch}")[example]
        probs, shown_epoch = None, epoch
        before = common.attention(run.id, f"{student}_e0")[example] if epochs[0] == 0 and epoch != 0 else None
        if task.kind == "tagging":                 # the final models' tags on the probe sentence
            words = probe["words"][example]
            tagged = live.tag_sentence(run.id, words)[2]
except (DistillError, ValueError) as e:
    common.show_error(e)
    st.stop()

c1, c2, c3, c4 = (controls or st).columns(4)
common.keep_choice(K + "student_layer", range(Ls), pairs[0][1] if pairs else 0)
s_layer = c1.selectbox("Student layer", range(Ls), key=K + "student_layer", on_change=_follow_pair,
                       format_func=lambda s: f"layer {s}" + (f" → teacher {mapped[s]}" if s in mapped else ""))
common.keep_choice(K + "teacher_layer", range(Lt), mapped.get(s_layer, 0))
t_layer = c2.selectbox("Teacher layer", range(Lt), key=K + "teacher_layer",
                       format_func=lambda t: f"layer {t}" + (" (mapped)" if mapped.get(s_layer) == t else ""),
                       help="The teacher layer shown beside the student layer; “mapped” is the one the run's "
                            "attention loss compared it with.")
head_options = [AVERAGE, *range(Hs)]
common.keep_choice(K + "head", head_options, AVERAGE if rule == "mean" else 0)
s_head = c3.selectbox("Student head", head_options, key=K + "head",
                      format_func=lambda h: "all heads, averaged" if h == AVERAGE else f"head {h}")
st.session_state.setdefault(K + "sqrt_scale", True)
gamma = 0.5 if st.session_state[K + "sqrt_scale"] else 1.0
if present:
    side = "compared"
else:
    side = c4.radio("Teacher side", ["compared", "single"], key=K + "teacher_side",
                    format_func={"compared": f"as compared ({rule} rule)", "single": "one teacher head"}.get)
if side == "single":
    common.keep_choice(K + "teacher_head", range(Ht), 0)
    t_head = c4.selectbox("Teacher head", range(Ht), key=K + "teacher_head", format_func=lambda h: f"head {h}")

t_layer_maps, s_layer_maps = t_maps[t_layer], s_maps[s_layer]          # (Ht, T, T), (Hs, T, T)
shown = page_data.shown_maps(t_layer_maps, s_layer_maps, rule, s_head, t_head if side == "single" else None)
t_heads, teacher_shown, student_shown = shown.teacher_heads, shown.teacher, shown.student
t_desc, s_desc = shown.teacher_desc, shown.student_desc
when = f"{weights} weights (epoch {shown_epoch})" if typed else f"epoch {shown_epoch}"
if side == "compared" and s_head != AVERAGE and not present:
    rule_text = {"direct": f"Under the **direct** rule student head {s_head} is compared with teacher head {s_head}.",
                 "group": f"Under the **group** rule student head {s_head} is compared with the average of "
                          f"teacher heads {', '.join(map(str, t_heads))}.",
                 "mean": f"Under the **mean** rule both sides are averaged over all heads before they are compared: "
                         f"the teacher side shows the teacher's average, the student side head {s_head} alone "
                         f"(choose “all heads, averaged” to see the student's side as trained)."}[rule]
    st.markdown(rule_text)
if task.kind == "tagging":                      # the sentence, tagged: gold (probe), teacher, student
    colors = fig_tags.type_colors(probe.get("entity_types") or [])
    lines = []
    if not typed:
        lines.append(fig_tags.tagged_html(words, probe["labels"][example], colors, "gold"))
    reference_tags = None if typed else probe["labels"][example]
    for m in (teacher_name, student):
        if m in tagged:
            lines.append(fig_tags.tagged_html(words, tagged[m], colors, variants.label(m), against=reference_tags))
    (maps_area or st).markdown("".join(lines), unsafe_allow_html=True)
    st.caption(("Tags of the final weights" if not typed else f"Tags of the {weights} weights")
               + " · each word's tag is its first sub-token's; " + ("a red outline: an entity the gold tags do not "
                                                                    "have exactly" if not typed else
                                                                    "the maps below are over sub-tokens")
               + f" · {len(words)} words, {len(tokens)} sub-tokens")
elif typed and probs is not None:
    names = probe["label_names"]
    st.caption(" · ".join(f"{variants.label(m)}: **{names[int(np.argmax(p))]}** ({np.max(p):.0%})"
                          for m, p in probs.items() if m in (TEACHER, student)))
elif not typed and not present:
    st.caption(f"Label: **{probe['label_names'][probe['labels'][example]]}** · {len(tokens)} tokens")

# ---- the maps, every token labelled: a window of a long input ----------------------------------------------
n_tokens = len(tokens)
if present:                                     # teacher and student only, two large maps in a row
    arrangement, fit = fig_maps.ROW, fig_maps.tokens_that_fit(fig_base.PRESENT_PX, 2, font)
else:
    arrangement, fit = fig_maps.triptych_arrangement(n_tokens, fig_base.WIDE_PX, font)
first, last = 0, n_tokens - 1                   # the tokens shown, both ends included (as the slider reads)
if n_tokens > fit:
    stored = st.session_state.get(K + "window")
    if not (isinstance(stored, (tuple, list)) and len(stored) == 2 and 0 <= stored[0] < stored[1] < n_tokens):
        st.session_state[K + "window"] = (0, fit - 1)
    where = controls or st
    first, last = where.slider("Tokens shown", 0, n_tokens - 1, key=K + "window",
                               help=f"This text has {n_tokens} tokens (numbered from 0); about {fit} fit side by "
                                    "side with every token labelled at a readable size. Drag the range to move "
                                    "along the text or widen it.")
    where.caption(f"Tokens {first}–{last} of {n_tokens} (numbered from 0), on both axes: weights on tokens outside "
                  "the window are not drawn, so a row can sum to less than 1.")
w_tokens, (t_win, s_win) = fig_maps.map_window(tokens, first, last + 1, teacher_shown, student_shown)
titles = (f"{teacher_name} L{t_layer} · {t_desc}", f"{student} L{s_layer} · {s_desc} · {when}", "student − teacher")
if present:                                     # short titles over the narrow maps; the details above them
    label = ("" if typed or task.kind != "text" else
             f" · example #{example}, **{probe['label_names'][probe['labels'][example]]}**")
    maps_area.markdown(f"**Teacher** layer {t_layer}, {t_desc} · **{variants.label(student)}** layer {s_layer}, "
                       f"{s_desc}, {when}{label}")
    titles = (teacher_name, variants.label(student), "")
fig = common.shared_figure(fig_maps.heatmap_triptych, t_win, s_win, w_tokens, gamma=gamma, font_size=font,
                          difference=not present, arrangement=arrangement, titles=titles)
(maps_area or st).plotly_chart(fig, width="stretch", config=common.PLOTLY_CONFIG, key=K + "triptych")
(controls or st).checkbox("Emphasise small weights (square-root colour scale)", key=K + "sqrt_scale",
                          help="Spreads the colours over small attention weights, which a few large weights (often "
                               "on [CLS] or [SEP]) otherwise wash out. Values and hover text stay exact.")
before_shown = None
if before is not None:
    b = before[s_layer]
    before_shown = b.mean(0) if s_head == AVERAGE else b[s_head]
with maps_area or st.container():
    common.notice(fig_maps.map_reading(teacher_shown, student_shown, tokens, variants.label(student),
                                       before=before_shown))
view.sync()
with controls or head_r:
    state.link_button(view)
if present:
    st.stop()                                   # presentation mode: the maps and what to notice, nothing more

# ---- how far apart, in numbers -----------------------------------------------------------------------
pair = analysis.compare_pair(t_layer_maps, s_layer_maps, rule, Hs)      # metric -> (compared heads,)
idx = 0 if rule == "mean" else (None if s_head == AVERAGE else s_head)
rows = []
for m in METRICS:
    rows.append({
        "metric": METRIC_LABELS[m],
        "shown maps": float(map_metric(m, teacher_shown, student_shown)),
        f"student head {s_head} as trained" if idx is not None and rule != "mean" else "as trained":
            float(pair[m][idx]) if idx is not None else float(np.mean(pair[m])),
        "mean over compared heads": float(np.mean(pair[m])),
        "closer when": "lower" if LOWER_IS_CLOSER[m] else "higher",
    })
st.markdown(f"**Divergence, teacher layer {t_layer} vs student layer {s_layer}, {when}**"
            + ("" if mapped.get(s_layer) == t_layer else " (not a mapped pair: training did not compare these)"))
st.dataframe(pd.DataFrame(rows), hide_index=True, key=K + "metrics",
             column_config={c: st.column_config.NumberColumn(format="%.4g") for c in rows[0] if c not in
                            ("metric", "closer when")})
st.caption("“Shown maps” compares the two maps above; “as trained” compares the heads the way the run's "
           f"attention loss did ({rule} rule), averaged over this example's query rows.")

# ---- every head of both layers -----------------------------------------------------------------------
st.subheader("All heads of both layers")
zmax, cols = page_data.grid_scale(t_layer_maps, s_layer_maps)         # one scale, one panel size for both models
st.plotly_chart(common.shared_figure(fig_maps.head_grid, t_layer_maps, tokens, f"{teacher_name} layer {t_layer}",
                                     cols=cols, zmax=zmax, gamma=gamma,
                                     highlight=tuple(t_heads) if len(t_heads) < Ht else ()),
                width="stretch", config=common.PLOTLY_CONFIG, key=K + "teacher_grid")
pruned_versions = [v for v in ((compress.read_compression(run) or {}).get("variants", {}).get(student, {})
                               .get("versions") or []) if v.get("kind") == "pruned"]
greyed = []
if pruned_versions:                              # the run was compressed: which heads would a pruned version drop?
    names = ["none", *(v["name"] for v in pruned_versions)]
    common.keep_choice(K + "pruned", names, "none")
    chosen = st.selectbox("Grey out the heads pruned in", names, key=K + "pruned", format_func=lambda n: n if n == "none"
                          else next(f"{n}: {v['heads_removed']} heads removed, test accuracy {v['test_accuracy']:.1%}"
                                    for v in pruned_versions if v["name"] == n),
                          help="Heads ranked by importance on the validation set (Michel et al. 2019); the "
                               "Compression page has every version and the accuracy as heads are removed.")
    mask = compress.pruned_heads(run, student, chosen) if chosen != "none" else None
    greyed = [h for h in range(Hs) if mask is not None and mask[s_layer][h]]
st.plotly_chart(common.shared_figure(fig_maps.head_grid, s_layer_maps, tokens, f"{student} layer {s_layer} · {when}",
                                     cols=cols, zmax=zmax, gamma=gamma,
                                     highlight=() if s_head == AVERAGE else (s_head,), greyed=tuple(greyed)),
                width="stretch", config=common.PLOTLY_CONFIG, key=K + "student_grid")
st.caption("One colour scale for both grids. Red outlines: the heads in the comparison above."
           + (" Grey: the heads the chosen pruned version masks in this layer (their maps as trained)." if pruned_versions
              else ""))

st.subheader("Head-averaged view")
st.plotly_chart(common.shared_figure(
    fig_maps.heatmap_triptych, t_layer_maps.mean(0), s_layer_maps.mean(0), tokens, gamma=gamma, font_size=font,
    titles=(f"{teacher_name} L{t_layer} · mean of {Ht} heads", f"{student} L{s_layer} · mean of {Hs} heads",
            "student − teacher")), width="stretch", config=common.PLOTLY_CONFIG, key=K + "averaged")

# ---- under attack ------------------------------------------------------------------------------------
ATTACK_EPSILONS = state.ATTACK_SIZES              # relative to each word embedding's size; 0 = off


def _under_attack(model: str, eps: float, used: str) -> dict:
    """robustness.attention_under_attack for one model on the shown text, kept in the session by its arguments."""
    cache = st.session_state.setdefault(K + "_attacks", {})
    key = (run.id, model, used, text, eps)
    if key not in cache:
        if len(cache) >= 16:
            cache.pop(next(iter(cache)))
        cache[key] = live.attention_under_attack(run.id, text, model, eps, used)
    return cache[key]


if not task.attacks:
    st.stop()
st.subheader("Under attack")
eps = st.select_slider("Perturbation size ε (0 = off)", options=ATTACK_EPSILONS, key=K + "attack_eps",
                       help="Pushes every word embedding of the text by up to ε times its own size, in the direction "
                            "PGD finds to move each model furthest from its own clean prediction (a separate attack "
                            "on the teacher and on the student).")
if eps > 0:
    used = weights if typed else "final"
    try:
        with st.spinner("Attacking the teacher and the student…"):
            found = {m: _under_attack(m, eps, used) for m in (TEACHER, student)}
    except (DistillError, ValueError) as e:
        common.show_error(e)
        st.stop()
    a_tokens = found[TEACHER]["tokens"]
    sides = {TEACHER: (t_layer, t_heads, f"teacher L{t_layer} · {t_desc}"),
             student: (s_layer, list(range(Hs)) if s_head == AVERAGE else [s_head],
                       f"{student} L{s_layer} · {s_desc}")}
    for m, (layer, heads, title) in sides.items():
        clean, attacked = (found[m][k][layer][heads].mean(0) for k in ("clean", "attacked"))     # (T, T) each
        fig = fig_maps.map_panels([clean, attacked], a_tokens, (f"{title} · clean", "under attack"), gamma=gamma,
                                  diff=(1, 0), diff_title="attacked − clean", font_size=font)
        st.plotly_chart(fig, width="stretch", config=common.PLOTLY_CONFIG,
                        key=K + ("attack_teacher" if m == TEACHER else "attack_student"))
    names = probe["label_names"]
    rows = [{"model": variants.label(m), "class": names[c], "clean": float(found[m]["probs_clean"][c]),
             "under attack": float(found[m]["probs_attacked"][c])} for m in found for c in range(len(names))]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key=K + "attack_probs", column_config={
        c: st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0)
        for c in ("clean", "under attack")})
    flips = [variants.label(m) for m, r in found.items()
             if int(np.argmax(r["probs_clean"])) != int(np.argmax(r["probs_attacked"]))]
    st.caption(f"Attacked with the {used} weights, {len(a_tokens)} tokens, each embedding moved by at most "
               f"{eps:.0%} of its size. " + (f"The attack changed the prediction of {' and '.join(flips)}."
                                             if flips else "Neither model changed its prediction."))
