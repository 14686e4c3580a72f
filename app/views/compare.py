"""Compare runs: two students (variants of one run, or of two runs) map by map, head by head, then run by run."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from app import common, state, tasks
from app.figures import compare as fig_compare, divergence as fig_divergence, image_attribution as iac, maps as fig_maps
from distill_core import analysis
from distill_core.config import flat_settings
from distill_core.errors import DistillError
from distill_core.verdicts import divergence_difference_reading, divergence_series
from distill_core.vocab import METRIC_HELP, METRIC_LABELS, METRICS

K = "compare."
AVERAGE = -1                                     # the "all heads, averaged" choice of a head selector
view = state.View("compare", state.COMPARE)
view.restore()

head_l, head_r = st.columns([3, 1], vertical_alignment="bottom")
head_l.title("Compare runs")
st.caption("Two sides, A and B: each is one student variant of a run at one epoch. Pick two variants of one run "
           "(e.g. the labels-only reference against a distilled one) or two runs, then see their attention on the "
           "same probe example side by side, and head by head which of them is closer to the teacher.")


@dataclass
class Candidate:
    """A run that can be compared: its probe set, its variants, and the epochs each variant recorded attention."""
    run: object
    name: str
    probe: dict
    variants: common.Variants
    epochs: dict                                 # variant -> recorded epochs, for variants with any


def candidates(store) -> dict[str, Candidate]:
    out = {}
    for info in store.list():
        if info.status == "damaged" or info.epochs_done < 1:
            continue
        try:
            run = store.open(info.run_id)
            probe = run.probe()
            if not probe:
                continue
            variants = common.variants_of(run, probe)
            epochs = {v: e for v in variants.names if (e := run.attention_epochs(v))}
        except DistillError:
            continue
        if epochs:
            out[info.run_id] = Candidate(run, info.name, probe, variants, epochs)
    return out


def keep(key: str, options, default) -> bool:
    """Reset a remembered choice that is no longer among its options (a deleted run, a run without that variant,
    fewer probe examples): True when the key took the default."""
    if st.session_state.get(key, object()) in list(options):
        return False
    st.session_state[key] = default
    return True


def other_than(options: list, avoid, preferred=None):
    """`preferred` when it is an option other than `avoid`, else the first option other than `avoid`."""
    if preferred in options and preferred != avoid:
        return preferred
    return next((o for o in options if o != avoid), options[0])


store = common.get_store()
try:
    found = candidates(store)
except DistillError as e:
    common.show_error(e)
    st.stop()
students = sum(len(c.epochs) for c in found.values())
if students < 2:
    st.info(f"Comparing needs two students with recorded attention: two variants of one run, or two runs. The run "
            f"store `{store.root}` holds {students}. Start a session on the **New session** page (every session "
            f"trains a labels-only reference and a distilled variant), or wait for a running one's first epoch.")
    st.stop()
run_ids = list(found)


def run_label(run_id: str) -> str:
    c = found[run_id]
    return run_id + (f" · {c.name}" if c.name else "") + f" ({len(c.epochs)} variant{'s' * (len(c.epochs) != 1)})"


def epoch_label(epochs: list[int]):
    return lambda e: f"epoch {e}" + (" (before training)" if e == 0 else " (last)" if e == epochs[-1] else "")


def start_over(side: str) -> None:
    """Another run on one side: its variant and epoch start from their defaults."""
    view.forget(*(f"{K}{side}_{name}" for name in ("variant", "epoch")))


# ---- the two sides -----------------------------------------------------------------------------------
col_a, col_b = st.columns(2, border=True)
with col_a:
    st.markdown("**A**")
    current = st.session_state.get(common.SELECTED_RUN)
    reset_a = keep(K + "a_run", run_ids, current if current in found else run_ids[0])
    if reset_a:
        start_over("a")
    a_run = st.selectbox("Run", run_ids, key=K + "a_run", format_func=run_label, on_change=start_over, args=("a",))
    a = found[a_run]
    a_vars = list(a.epochs)
    reset_a |= keep(K + "a_variant", a_vars, other_than(a_vars, a.variants.reference))
    a_variant = st.selectbox("Variant", a_vars, key=K + "a_variant", format_func=a.variants.label)
    a_epochs = a.epochs[a_variant]
    keep(K + "a_epoch", a_epochs, a_epochs[-1])
    a_epoch = st.selectbox("Epoch", a_epochs, key=K + "a_epoch", format_func=epoch_label(a_epochs))
with col_b:
    st.markdown("**B**")
    if reset_a and (st.session_state.get(K + "b_run"), st.session_state.get(K + "b_variant")) == (a_run, a_variant):
        view.forget(*(K + name for name in ("b_run", "b_variant", "b_epoch")))   # A fell onto B's choice: B starts over
    if keep(K + "b_run", run_ids, a_run if len(a_vars) > 1 else other_than(run_ids, a_run)):
        start_over("b")
    b_run = st.selectbox("Run", run_ids, key=K + "b_run", format_func=run_label, on_change=start_over, args=("b",))
    b = found[b_run]
    b_vars = list(b.epochs)
    if b_run == a_run:                           # another variant, the reference first
        b_default = other_than(b_vars, a_variant, b.variants.reference)
    else:                                        # the same variant in the other run, when it has one
        b_default = a_variant if a_variant in b_vars else other_than(b_vars, b.variants.reference)
    keep(K + "b_variant", b_vars, b_default)
    b_variant = st.selectbox("Variant", b_vars, key=K + "b_variant", format_func=b.variants.label)
    b_epochs = b.epochs[b_variant]
    same_student = (b_run, b_variant) == (a_run, a_variant)
    keep(K + "b_epoch", b_epochs, other_than(b_epochs[::-1], a_epoch) if same_student else b_epochs[-1])
    b_epoch = st.selectbox("Epoch", b_epochs, key=K + "b_epoch", format_func=epoch_label(b_epochs))

if (a_run, a_variant, a_epoch) == (b_run, b_variant, b_epoch):
    st.warning("A and B are the same student at the same epoch: pick another variant, run or epoch for B.")
    st.stop()
same_run = a_run == b_run
st.caption(f"**A** = {a.variants.label(a_variant)} of run `{a_run}` at epoch {a_epoch}; "
           f"**B** = {b.variants.label(b_variant)} of "
           + ("the same run" if same_run else f"run `{b_run}`") + f" at epoch {b_epoch}.")

# ---- one probe example, one layer, one head ----------------------------------------------------------
st.subheader("Map by map")
texts_a, texts_b = a.probe["texts"], b.probe["texts"]
first_b = {}
for i, t in enumerate(texts_b):
    first_b.setdefault(t, i)


def picture(c: Candidate, i: int):
    """The pixels of an image run's probe example (None for texts): two runs' examples match only when these do."""
    return (c.probe.get("images") or [None] * (i + 1))[i]


shared = [i for i, t in enumerate(texts_a)
          if t in first_b and a.probe["tokens"][i] == b.probe["tokens"][first_b[t]]
          and picture(a, i) == picture(b, first_b[t])]
if shared:
    examples = shared
    if len(shared) < max(len(texts_a), len(texts_b)):
        st.caption(f"The two runs' probe sets differ: the pickers offer the {len(shared)} text"
                   f"{'s' * (len(shared) != 1)} both hold, so A and B are always read on the same tokens.")
else:
    examples = list(range(min(len(texts_a), len(texts_b))))
    what = ("no image read the same way (other images, or maps of different kinds: a CNN's pixels, a ViT's "
            "patches)" if "images" in a.probe and "images" in b.probe else "no text (other data or probe settings)")
    st.warning(f"The two runs' probe sets share {what}: each side shows its own probe example at the same position, "
               f"and there is no difference map.")
keep(K + "example", examples, examples[0])
names_a = a.probe["label_names"]
example = st.selectbox(
    "Probe example", examples, key=K + "example",
    format_func=lambda i: f"#{i} [{tasks.example_label(a.probe['labels'][i], names_a)}] {texts_a[i][:110]}"
                          f"{'…' if len(texts_a[i]) > 110 else ''}")
ex_a = example
ex_b = first_b[texts_a[example]] if shared else example


def shape(c: Candidate) -> tuple[int, int]:
    return c.probe["student_layers"], c.probe["student_heads"]


def mapped(c: Candidate) -> dict[int, int]:
    return {s: t for t, s in c.probe["pairs"]}


def layer_head(c: Candidate, layer_key: str, head_key: str, where) -> tuple[int, int]:
    layers, heads = shape(c)
    m = mapped(c)
    keep(layer_key, range(layers), c.probe["pairs"][0][1] if c.probe["pairs"] else 0)
    layer = where[0].selectbox("Student layer", range(layers), key=layer_key,
                               format_func=lambda s: f"layer {s}" + (f" (mapped to teacher {m[s]})" if s in m else ""))
    options = [AVERAGE, *range(heads)]
    keep(head_key, options, AVERAGE)
    head = where[1].selectbox("Head", options, key=head_key,
                              format_func=lambda h: "all heads, averaged" if h == AVERAGE else f"head {h}")
    return layer, head


same_shape = shape(a) == shape(b)
if same_shape:
    a_layer, a_head = layer_head(a, K + "layer", K + "head", st.columns(2))
    b_layer, b_head = a_layer, a_head
else:
    st.caption(f"The two students differ in shape (A: {shape(a)[0]} layers × {shape(a)[1]} heads, B: "
               f"{shape(b)[0]} × {shape(b)[1]}): pick each side's layer and head.")
    c1, c2, c3, c4 = st.columns(4)
    with c1:
        st.markdown("**A**")
    with c3:
        st.markdown("**B**")
    a_layer, a_head = layer_head(a, K + "layer", K + "head", (c1, c2))
    b_layer, b_head = layer_head(b, K + "b_layer", K + "b_head", (c3, c4))
st.session_state.setdefault(K + "sqrt_scale", True)
gamma = 0.5 if st.session_state[K + "sqrt_scale"] else 1.0
view.sync()
with head_r:
    state.link_button(view)


def side_maps(c: Candidate, variant: str, epoch: int, ex: int, layer: int, head: int):
    """(student map, its description, teacher map or None, its description) of one side."""
    s_maps = common.attention(c.run.id, f"{variant}_e{epoch}")[ex][layer]          # (H, T, T)
    student = s_maps.mean(0) if head == AVERAGE else s_maps[head]
    t_layer = mapped(c).get(layer)
    if t_layer is None:
        return student, None, None
    t_maps = common.attention(c.run.id, "teacher")[ex][t_layer]
    rule, t_heads_n = c.probe["head_rule"], c.probe["teacher_heads"]
    if head == AVERAGE or rule == "mean":
        heads = list(range(t_heads_n))
    else:
        heads = analysis.teacher_heads_for(head, rule, t_heads_n, c.probe["student_heads"])
    which = (f"head {heads[0]}" if len(heads) == 1 else "all heads" if len(heads) == t_heads_n
             else f"heads {heads[0]}–{heads[-1]}")
    return student, t_maps[heads].mean(0), f"L{t_layer} · {which}"


def head_text(head: int) -> str:
    return "all heads averaged" if head == AVERAGE else f"head {head}"


def maps_figure(c: Candidate, ex: int, maps: list, titles: list, diff: bool):
    """Token × token maps on one scale (then A − B), or a CNN run's maps over its probe picture."""
    if not iac.is_pixel_run(c.probe):
        return fig_maps.map_panels(maps, c.probe["tokens"][ex], titles, gamma=gamma,
                                   diff=(len(maps) - 2, len(maps) - 1) if diff else None, diff_title="A − B")
    pixels = [iac.pixel_maps(m, c.probe["image_size"]) for m in maps]
    kinds = ["positive"] * len(pixels)
    if diff:
        pixels, titles, kinds = pixels + [pixels[-2] - pixels[-1]], [*titles, "A − B"], kinds + ["difference"]
    return iac.overlay_panels(iac.probe_picture(c.probe, ex), pixels, titles, kinds)


try:
    s_a, t_a, t_a_desc = side_maps(a, a_variant, a_epoch, ex_a, a_layer, a_head)
    s_b, t_b, t_b_desc = side_maps(b, b_variant, b_epoch, ex_b, b_layer, b_head)
except (DistillError, IndexError) as e:
    common.show_error(e)
    st.stop()
if same_shape:                                   # the layer and head are the pickers' above
    title_a, title_b = f"A: {a_variant} · epoch {a_epoch}", f"B: {b_variant} · epoch {b_epoch}"
else:
    title_a = f"A: {a_variant} · e{a_epoch} · L{a_layer} · {'avg' if a_head == AVERAGE else f'h{a_head}'}"
    title_b = f"B: {b_variant} · e{b_epoch} · L{b_layer} · {'avg' if b_head == AVERAGE else f'h{b_head}'}"
if shared:
    maps, titles = [], []
    same_teacher = t_b is not None and t_a is not None and t_a.shape == t_b.shape and np.array_equal(t_a, t_b)
    if t_a is not None:
        maps.append(t_a)
        titles.append(f"teacher {t_a_desc}" if same_teacher or t_b is None else f"A's teacher {t_a_desc}")
    if t_b is not None and not same_teacher:
        maps.append(t_b)
        titles.append(f"B's teacher {t_b_desc}" if t_a is not None else f"teacher {t_b_desc}")
    maps += [s_a, s_b]
    titles += [title_a, title_b]
    fig = maps_figure(a, ex_a, maps, titles, diff=True)
    st.plotly_chart(common.sized(fig), width="stretch", config=common.PLOTLY_CONFIG, key=K + "maps")
    teachers = ("the teacher's map" if same_teacher or t_a is None or t_b is None
                else "each side's teacher map (the two runs' teachers, or their mapped layers or heads, differ)")
    shown = f"A: student layer {a_layer}, {head_text(a_head)}; B: layer {b_layer}, {head_text(b_head)}" \
        if not same_shape else f"Student layer {a_layer}, {head_text(a_head)}"
    scale = ("Each map over the picture is scaled to its own largest weight" if iac.is_pixel_run(a.probe)
             else "All attention maps share one colour scale")
    st.caption(f"{shown}. Left: {teachers} for the teacher layer the student layer is mapped to, for orientation. "
               f"{scale}. Right: A − B, red where A attends more, blue where B does.")
else:
    for tag, c, ex, t, t_desc, s, title in (("A", a, ex_a, t_a, t_a_desc, s_a, title_a),
                                            ("B", b, ex_b, t_b, t_b_desc, s_b, title_b)):
        maps = ([t] if t is not None else []) + [s]
        titles = ([f"{tag}'s teacher {t_desc}"] if t is not None else []) + [title]
        st.plotly_chart(common.sized(maps_figure(c, ex, maps, titles, diff=False)), width="stretch",
                        config=common.PLOTLY_CONFIG, key=K + f"maps_{tag.lower()}")
        st.caption(f"{tag}: #{ex} {c.probe['texts'][ex]}")
if not (iac.is_pixel_run(a.probe) and iac.is_pixel_run(b.probe)):      # maps over a picture have their own scale
    st.checkbox("Emphasise small weights (square-root colour scale)", key=K + "sqrt_scale",
                help="Spreads the colours over small attention weights, which a few large weights (often on [CLS] or "
                     "[SEP]) otherwise wash out. Values and hover text stay exact.")

# ---- layer x head: which side is closer to the teacher -----------------------------------------------
st.subheader("Head by head: which side is closer to the teacher")
keep(K + "metric", METRICS, "js")
metric = st.selectbox("Metric", METRICS, key=K + "metric", format_func=METRIC_LABELS.get)
view.sync()
st.caption(METRIC_HELP[metric])


def grid_of(c: Candidate, variant: str, epoch: int) -> np.ndarray | None:
    """(mapped pairs, compared heads) values of the metric at one epoch, from the run's metric records."""
    epochs, values = divergence_series(common.metrics(c.run.id), variant, metric)
    return values[epochs.index(epoch)] if epoch in epochs else None


def aligned(grid_a: np.ndarray, grid_b: np.ndarray):
    """The rows both sides compare (the same teacher and student layers) and their values, or None."""
    pairs_a, pairs_b = [tuple(p) for p in a.probe["pairs"]], [tuple(p) for p in b.probe["pairs"]]
    if grid_a.shape[1] != grid_b.shape[1] or grid_a.shape[0] != len(pairs_a) or grid_b.shape[0] != len(pairs_b):
        return None
    common_pairs = [p for p in pairs_a if p in pairs_b]
    if not common_pairs:
        return None
    rows_a = [pairs_a.index(p) for p in common_pairs]
    rows_b = [pairs_b.index(p) for p in common_pairs]
    return common_pairs, grid_a[rows_a], grid_b[rows_b]


try:
    grid_a, grid_b = grid_of(a, a_variant, a_epoch), grid_of(b, b_variant, b_epoch)
except DistillError as e:
    common.show_error(e)
    st.stop()
missing = [f"{tag} ({c.run.id}, {v}, epoch {e})" for tag, c, v, e, g in
           (("A", a, a_variant, a_epoch, grid_a), ("B", b, b_variant, b_epoch, grid_b)) if g is None]
both = None if missing else aligned(grid_a, grid_b)
no_divergence = [f"{tag}: {why}" for tag, c in (("A", a), ("B", b)) if (why := iac.no_divergence_reason(c.probe))]
if no_divergence:
    st.info(" ".join(no_divergence))
elif missing:
    st.info(f"No {METRIC_LABELS[metric]} record for {' and '.join(missing)} in the run's metrics.")
elif both is None:
    st.info(f"The two students are not compared with the teacher on the same heads (A: {grid_a.shape[0]} layer "
            f"pairs × {grid_a.shape[1]} heads, B: {grid_b.shape[0]} × {grid_b.shape[1]}, or no mapped layer pair in "
            f"common), so their divergences cannot be subtracted head by head.")
else:
    pairs, values_a, values_b = both
    diff = values_a - values_b
    rows = fig_divergence.pair_labels(pairs)
    rule = a.probe["head_rule"]
    cols = ["all heads (mean rule)"] if rule == "mean" and diff.shape[1] == 1 else None
    st.info(divergence_difference_reading(diff, rows, metric, cols), icon=":material/lightbulb:")
    st.plotly_chart(common.sized(fig_compare.divergence_difference_grid(
        diff, rows, metric, title=f"{METRIC_LABELS[metric]}: A at epoch {a_epoch} minus B at epoch {b_epoch}",
        col_labels=cols)), width="stretch", config=common.PLOTLY_CONFIG, key=K + "grid")
    notes = []
    if len(pairs) < max(grid_a.shape[0], grid_b.shape[0]):
        notes.append(f"Only the {len(pairs)} mapped layer pair{'s' * (len(pairs) != 1)} both runs compare are shown.")
    if rule != b.probe["head_rule"]:
        notes.append(f"The runs compare heads under different rules (A: {rule}, B: {b.probe['head_rule']}).")
    st.caption("Each cell: A's divergence to the teacher minus B's on one compared head of one mapped layer pair, "
               "averaged over the probe examples. " + " ".join(notes))

# ---- run against run ---------------------------------------------------------------------------------
if same_run:
    st.caption("A and B are variants of one run: its run-level curves are on the **Divergence over epochs** and "
               "**Accuracy and efficiency** pages.")
    st.stop()
st.subheader("Run against run")
try:
    summaries = {a_run: a.run.summary(), b_run: b.run.summary()}
    fa, fb = flat_settings(a.run.config()), flat_settings(b.run.config())
except DistillError as e:
    common.show_error(e)
    st.stop()
unfinished = [r for r, s in summaries.items() if not (s and (s.get("divergence") or {}).get("epochs"))]
if unfinished:
    st.info(f"{' and '.join(f'Run {r}' for r in unfinished)} ha{'ve' if len(unfinished) > 1 else 's'} no summary "
            f"yet; the run-level curves appear when {'they finish' if len(unfinished) > 1 else 'it finishes'}.")
else:
    pair = [("A", summaries[a_run]), ("B", summaries[b_run])]
    c1, c2 = st.columns(2)
    c1.plotly_chart(common.sized(fig_compare.compare_runs_divergence(pair)), width="stretch",
                    config=common.PLOTLY_CONFIG, key=K + "run_divergence")
    c2.plotly_chart(common.sized(fig_compare.compare_runs_accuracy(pair)), width="stretch", config=common.PLOTLY_CONFIG,
                    key=K + "run_accuracy")
    st.caption(f"A = run {a_run}, B = run {b_run}, every variant of each. One colour per variant; run A solid lines "
               "and plain bars, run B dotted lines and hatched bars. Lower divergence means the variant's attention "
               "is closer to the teacher's on the probe sentences.")
settings = [{"setting": k, "A": str(fa.get(k, "–")), "B": str(fb.get(k, "–"))}
            for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]
st.markdown("**Settings that differ**")
if settings:
    st.dataframe(pd.DataFrame(settings), hide_index=True, key=K + "settings_diff")
else:
    st.caption("The two runs used the same settings.")
