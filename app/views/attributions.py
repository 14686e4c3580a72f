"""Attributions: which tokens (or pixels) each model's decision rests on, and whether the student's follow the
teacher's."""
from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import streamlit as st

from app import common, live, roles, state, tasks
from app.figures import attribution as fig_attribution, image_attribution as iac
from distill_core import RunStore
from distill_core.errors import DistillError
from distill_core.modality.text.attribution import (attention_agreement, attention_attribution_correlation,
                                                    compare_attributions)
from distill_core.modality.vision import attribution as ia, maps as image_maps
from distill_core.reopen import reopen
from distill_core.verdicts import attribution_reading
from distill_core.vocab import TEACHER

K = "attributions."
view = state.View("attributions", state.ATTRIBUTIONS)
view.restore()

# ---- image runs: pixels instead of tokens ------------------------------------------------------------
IMAGE_INTRO = ("Pixel attributions by Integrated Gradients (Captum, from the picture's background colour to the "
               "picture; green pixels push towards the explained class, red ones away from it) or, for CNNs, "
               "Grad-CAM on the last stage (orange: where the class evidence lies). Every model is explained towards "
               "the class the teacher predicts. The models run on the CPU with their final weights.")


@st.cache_resource(show_spinner="Loading the run's image models…", max_entries=16)
def _image_model(root: str, run_id: str, variant: str, version: float):
    run = reopen(RunStore(root).open(run_id))
    return run.teacher() if variant == TEACHER else run.student(variant)


@st.cache_resource
def _image_lock() -> threading.Lock:
    return threading.Lock()          # Grad-CAM and attention capture hook the shared models


@st.cache_data(show_spinner=False, max_entries=256)
def _image_attribution(root, run_id, version, variant, pixels: bytes, shape, method, target, n_steps):
    image = np.frombuffer(pixels, dtype=np.uint8).reshape(shape).copy()
    model = _image_model(root, run_id, variant, version)
    with _image_lock():
        return ia.image_attributions(model, image, method, target, n_steps)


@st.cache_data(show_spinner=False, max_entries=256)
def _live_attention(root, run_id, version, variant, pixels: bytes, shape):
    model = _image_model(root, run_id, variant, version)
    with _image_lock():
        return ia.live_spatial_attention(model, np.frombuffer(pixels, dtype=np.uint8).reshape(shape).copy())


def _picked_image(probe: dict):
    """The probe image or an uploaded one, as uint8 (H, W, C), its caption and its probe index (None: uploaded);
    (None, None, None) before a file is uploaded and (None, why, None) for a file Pillow cannot read."""
    sources = ["probe", "upload"] if roles.may_change() else ["probe"]        # viewers upload nothing
    common.keep_choice(K + "image_source", sources, "probe")
    source = st.radio("Image", sources, horizontal=True, key=K + "image_source",
                      format_func={"probe": "a probe image", "upload": "upload an image"}.get)
    size, channels = probe["image_size"], int(probe.get("channels", 1))
    if source == "upload" and not roles.refused("upload pictures"):
        file = st.file_uploader("Image file", type=["png", "jpg", "jpeg", "bmp", "gif", "webp"], key=K + "upload",
                                help=f"Converted to the run's {size[0]}×{size[1]} pixels and "
                                     f"{'colour' if channels == 3 else 'grey'}, as its models read images.")
        if file is None:
            return None, None, None
        try:
            image = image_maps.read_image(file.getvalue(), size, channels)
        except DistillError as e:
            return None, str(e), None
        return image, f"uploaded image {file.name}", None
    texts, labels, names = probe["texts"], probe["labels"], probe["label_names"]
    if st.session_state.get(K + "example") not in range(len(texts)):
        st.session_state[K + "example"] = 0
    example = st.selectbox("Probe image", range(len(texts)), key=K + "example",
                           format_func=lambda i: f"#{i} [{names[labels[i]]}] {texts[i]}")
    return iac.probe_picture(probe, example), texts[example], example


def _image_choices(probe: dict, students: list[str], variants):
    """The picture (left) and the method, integration steps and student (right): (image, caption, example, method,
    n_steps, student), as _picked_image and the widgets give them."""
    families = probe.get("families", {})
    left, right = st.columns([3, 2], gap="large")
    with left:
        image, caption, example = _picked_image(probe)
    with right:
        methods = ia.methods_for(families.get("teacher", "cnn"), families.get("student", "cnn"))
        if st.session_state.get(K + "method") not in methods:
            st.session_state[K + "method"] = "ig"
        method = st.radio("Method", methods, horizontal=True, key=K + "method", format_func=ia.METHODS.get)
        if len(methods) == 1:
            st.caption("A vision transformer is explained with Integrated Gradients only: Grad-CAM weighs a CNN's "
                       "feature maps, which a ViT does not have.")
        if st.session_state.get(K + "steps") not in (8, 16, 32, 64):
            st.session_state[K + "steps"] = 32
        n_steps = st.select_slider("Integration steps", options=[8, 16, 32, 64], key=K + "steps",
                                   disabled=method != "ig",
                                   help="More steps: a more exact integral (smaller convergence delta), slower.")
        if st.session_state.get(K + "student") not in students:
            st.session_state[K + "student"] = next((s for s in students if s != variants.reference), students[0])
        student = st.radio("Compare the teacher with", students, horizontal=True, key=K + "student",
                           format_func=variants.label)
    return image, caption, example, method, n_steps, student


def _image_results(run, probe: dict, students: list[str], image, example, method: str, n_steps: int):
    """(target class, attributions per model, attention per model) of the teacher and the students on one image."""
    root, version = str(common.runs_dir()), common.run_version(run.id)
    pixels, shape = image.tobytes(), image.shape
    teacher_model = _image_model(root, run.id, TEACHER, version)
    with _image_lock():
        target = int(np.argmax(ia.class_probs(teacher_model, image)))
    models = [TEACHER, *students]
    attrs = {m: _image_attribution(root, run.id, version, m, pixels, shape, method, target, n_steps) for m in models}
    if example is not None:          # the maps the run recorded at its final epoch
        attention = {TEACHER: ia.recorded_spatial_attention(
            common.attention(run.id, "teacher")[example], probe["maps"]["teacher"], probe["image_size"])}
        for s in students:
            epoch = run.kept_weights(s)["final"]
            attention[s] = ia.recorded_spatial_attention(common.attention(run.id, f"{s}_e{epoch}")[example],
                                                         probe["maps"]["student"], probe["image_size"])
    else:                            # an uploaded image: the same maps, computed now
        attention = {m: _live_attention(root, run.id, version, m, pixels, shape) for m in models}
    return target, attrs, attention


def image_page(run, probe: dict) -> None:
    """Teacher and student attributions over one image, their rank correlation and their attention agreement."""
    names = probe["label_names"]
    variants = common.variants_of(run, probe)
    students = [v for v in variants.names if run.kept_weights(v)]
    if not students:
        st.warning(f"Run {run.id} has no trained student weights to compare with the teacher.")
        st.stop()
    image, caption, example, method, n_steps, student = _image_choices(probe, students, variants)
    view.sync()
    with head_r:
        state.link_button(view)
    if image is None:                        # after the widgets, so that the choices on the right are kept
        if caption is None:
            st.info("Upload an image to explain it, or pick a probe image.")
        else:
            st.error(caption)
        st.stop()

    try:
        with st.spinner("Running the models and the attributions on the CPU…"):
            target, attrs, attention = _image_results(run, probe, students, image, example, method, n_steps)
    except (DistillError, ValueError, KeyError, ImportError) as e:
        common.show_error(e)
        st.stop()
    models = [TEACHER, *students]

    label = (f" · true label: **{names[probe['labels'][example]]}**" if example is not None else "")
    st.markdown(f"**{caption}** · explaining class “{names[target]}”, the teacher's prediction{label}")
    cmp = {s: ia.compare_attributions(attrs[TEACHER], attrs[s], attention[TEACHER], attention[s]) for s in students}
    rows = [{"model": variants.label(m), "prediction": names[int(np.argmax(attrs[m].probs))],
             "confidence (%)": 100 * float(np.max(attrs[m].probs)),
             f"P({names[target]}) (%)": 100 * float(attrs[m].probs[target]),
             "attribution ρ vs teacher": cmp[m]["spearman"] if m in cmp else None,
             "attention agreement": cmp[m]["attention_agreement"] if m in cmp else None,
             **({"convergence delta": attrs[m].delta} if method == "ig" else {})} for m in models]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key=K + "image_outputs", placeholder="–", column_config={
        c: st.column_config.NumberColumn(format="%.2g" if c == "convergence delta" else
                                         "%.1f" if "%" in c else "%.2f") for c in rows[0] if c not in
        ("model", "prediction")})

    c1, c2, c3 = st.columns([1, 1, 3], vertical_alignment="center")
    c1.metric("Attribution ρ", f"{cmp[student]['spearman']:.2f}",
              help="Spearman rank correlation of the two maps over the pixels that can carry an attribution")
    c2.metric("Attention agreement", f"{cmp[student]['attention_agreement']:.2f}",
              help="1 − Jensen-Shannon divergence / ln 2 of the two models' attention over the picture")
    c3.info(iac.agreement_reading(variants.label(student), cmp[student]["spearman"],
                                  cmp[student]["attention_agreement"], ia.METHODS[method]), icon=":material/lightbulb:")
    fig = iac.attribution_overlays(image, attrs[TEACHER].raw_scores, attrs[student].raw_scores,
                                   variants.label(student), method, attention[TEACHER], attention[student])
    st.plotly_chart(common.sized(fig), width="stretch", config=common.PLOTLY_CONFIG, key=K + "image_maps")
    where = ("the maps the run recorded at its final epoch" if example is not None else "computed now for this image")
    st.caption(f"Each attribution panel is scaled to its own largest value; the two attention panels share one "
               f"scale. Attention: a CNN's activation attention of its last stage, a ViT's last layer ([CLS] row over "
               f"the patches, heads averaged), {where}.")

head_l, head_r = st.columns([3, 1], vertical_alignment="bottom")
head_l.title("Attributions")
intro = st.empty()                  # the caption, once the run says whether it reads texts or images

run, probe = common.pick_run_with_probe(K + "run", "Run {run} has no probe set yet; attributions need its trained models.")
if not tasks.of(probe).attributions:
    st.info(f"Run {run.id} is a {tasks.of(probe).label} run. Attributions explain one class per input (a text's label, "
            f"an image's), so they are built for text and image classification; the Attention explorer shows this "
            f"run's models on a probe example or a sentence you type, with what each model answered.")
    st.stop()
if tasks.of(probe).pictures:
    intro.caption(IMAGE_INTRO)
    image_page(run, probe)
    st.stop()
intro.caption("Token attributions by Integrated Gradients (Captum's LayerIntegratedGradients on the input embeddings, "
              "from an all-[PAD] baseline text): how much each token moved the model's probability of the explained "
              "class. Green tokens push towards that class, red ones away from it. The models run on the CPU with "
              "their final weights.")
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
st.info(attribution_reading(student, stats, variants.reference), icon=":material/lightbulb:")
st.plotly_chart(common.sized(fig_attribution.attribution_bars(tokens, attrs[TEACHER].scores, attrs[student].scores,
                                        variants.label(student))), width="stretch", config=common.PLOTLY_CONFIG,
                key=K + "bars")
