"""The widgets both tasks draw, once each, taking the task's differences as arguments: the task picker, the
temperature, the split sizes, the training settings, several teachers, and the variant blocks with their
strategies. Every key is namespaced "new." (keys.py)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import streamlit as st

from distill_core.config import (ATTACK_STARTS, ATTACKS, AUTO_WEIGHTS, COMBINE_RULES, DEVICES, ENSEMBLE_ATTENTION,
                                 ENSEMBLE_AVERAGES, HEAD_RULES, IMAGE_LOSS_FAMILY, SCHEDULES)
from distill_core.models import pick_device
from distill_core.errors import DataError
from distill_core.objectives import OBJECTIVES
from distill_core.sources import file_label
from distill_core.strategies.schedules import TEMPERATURE_SCHEDULES
from distill_core.vocab import ENSEMBLE, TEACHER, teacher_name

from .keys import DEVICE, MODALITY, NEW, SCHEDULE, SEED, SEEDS, TEXT_VARIANTS, TIME_BUDGET, VariantSet
from .labels import (ADV_LABELS, ADV_OFF, ATTACK_START_LABELS, AUTO_WEIGHT_LABELS, COMBINE_LABELS,
                     ENSEMBLE_ATTENTION_LABELS, ENSEMBLE_AVERAGE_LABELS, FURTHER, MAX_FORM_VARIANTS,
                     MAX_FURTHER_TEACHERS, SCHEDULE_KINDS, SCHEDULE_LABELS, TEMPERATURE_LABELS)
from .uploads import take_upload
from .variants import (add_variant, block_values, fit_variant_sources, form_reference, further_count, remove_variant,
                       source_label, teacher_sources, variant_losses, variant_name_problems)


def modality_section(labels: dict[str, str], default: str) -> str:
    """Which task the form shows below (labels: each task's name)."""
    return st.segmented_control("What the session distils", list(labels), format_func=labels.get,
                                key=MODALITY, required=True) or default


def task_sections(teacher: Callable[[], None], student: Callable[[], None], *below: Callable[[], None]) -> None:
    """A task's sections in the page's order: the teacher and the student side by side, then each of `below` (the
    data, the variants, the objectives, the training) in a box of its own."""
    left, right = st.columns(2, gap="large")
    with left, st.container(border=True):
        teacher()
    with right, st.container(border=True):
        student()
    for section in below:
        with st.container(border=True):
            section()


def temperature_input(col, prefix: str, help: str) -> None:
    """The temperature of logit_kd (key <prefix>temperature)."""
    col.number_input("Temperature T", min_value=0.05, step=0.5, key=prefix + "temperature", help=help)


def split_inputs(cols, prefix: str) -> None:
    """The train / validation / test sizes in the first three of `cols` (keys <prefix>train_size, ...)."""
    cols[0].number_input("Train examples", min_value=1, step=100, key=f"{prefix}train_size")
    cols[1].number_input("Validation examples", min_value=1, step=50, key=f"{prefix}val_size")
    cols[2].number_input("Test examples", min_value=1, step=100, key=f"{prefix}test_size")


def split_sizes_text(state, prefix: str, what: str = "examples") -> str:
    """The split sizes in words, with thousands separators (a number input shows its digits only): "3,000 for
    training, 500 for validation and 2,500 for testing: 6,000 examples in all"."""
    train, val, test = (int(state.get(f"{prefix}{k}_size") or 0) for k in ("train", "val", "test"))
    return (f"{train:,} for training, {val:,} for validation and {test:,} for testing: {train + val + test:,} "
            f"{what} in all.")


def budget_text(seconds) -> str:
    """The time budget in words: off at 0, else minutes and seconds of training."""
    s = int(math.ceil(float(seconds or 0)))
    if s <= 0:
        return "Time budget off: every epoch is trained."
    m, r = divmod(s, 60)
    span = f"{m:,} min {r:02d} s" if m else f"{s} s"
    return f"Training stops after the epoch in progress once {span} of training have passed."


def training_section(prefix: str = NEW) -> None:
    """Epochs, batch size and learning rate under `prefix` (each task has its own defaults); the rest shared."""
    st.subheader("Training")
    c = st.columns(4)
    c[0].number_input("Epochs", min_value=1, step=1, key=f"{prefix}epochs")
    c[1].number_input("Batch size", min_value=1, step=8, key=f"{prefix}batch_size")
    c[2].number_input("Learning rate", min_value=1e-7, step=1e-4, format="%.1e", key=f"{prefix}lr")
    c[3].selectbox("Schedule", SCHEDULES, key=SCHEDULE, help="after a short warm-up")
    c = st.columns(4)
    if isinstance(st.session_state.get(TIME_BUDGET), float):      # whole seconds (a value kept from before)
        st.session_state[TIME_BUDGET] = int(math.ceil(st.session_state[TIME_BUDGET]))
    c[0].number_input("Time budget (seconds, 0 = off)", min_value=0, step=60, key=TIME_BUDGET,
                      help="Counted from the start of training (preparing the teacher is not counted): training "
                           "stops after the epoch in progress once this much time has passed, so at least one epoch "
                           "finishes. 0: no budget.")
    c[0].caption(budget_text(st.session_state.get(TIME_BUDGET)))
    c[1].number_input("Seed", min_value=0, step=1, key=SEED)
    c[2].selectbox("Device", DEVICES, key=DEVICE)
    c[2].caption(f"auto picks **{pick_device('auto').type}** on this machine")
    c[3].text_input("Seeds (a sweep)", key=SEEDS, placeholder="e.g. 0-4 or 0,1,2",
                    help="Several students' seeds start a sweep: one session per seed, the same teacher and test "
                         "set, compared across seeds on the Sweep page. Empty: one session with the seed at left.")


def data_kind_input(prefix: str, label: str, kinds: dict[str, str]) -> str:
    """The Dataset section's heading and where the data come from (key <prefix>data_kind)."""
    st.subheader("Dataset")
    return st.radio(label, list(kinds), format_func=kinds.get, key=prefix + "data_kind", horizontal=True)


def data_file_input(kind: str, prefix: str, runs_root: Path, max_mb: float, what: str, types: list[str],
                    local: str) -> str | None:
    """The data file of kind "upload" (what: what the uploader takes; saved beside the runs, keys
    <prefix>upload_path, <prefix>upload_sig) or "local" (local: the path input's label); None for another kind or
    no file yet."""
    if kind == "upload":
        up = st.file_uploader(f"{what}, at most {max_mb:,g} MB. It is stored beside the runs and only read as text.",
                              type=types, key=prefix + "upload", max_upload_size=max(1, math.ceil(max_mb)))
        path = take_upload(up, runs_root, max_mb, prefix + "upload_path", prefix + "upload_sig", types)
        if path and up is None:
            st.caption(f"Using the file uploaded earlier: `{file_label(path)}`")
        return path
    if kind == "local":
        return st.text_input(local, key=prefix + "data_path").strip() or None
    return None


def engine_file_lines(prefix: str, read: Callable[[], dict | None], what: str, describe: Callable[[dict], str],
                      table=None) -> None:
    """What a task's engine finds in a data file (read(): its info, None while the engine cannot be loaded, or
    DataError): the first rows it reads and describe(info), or why Start would refuse the file in the engine's
    words; while the engine cannot be loaded, the file's first rows as a table (`table`) and that Start checks
    the `what` (pairs, passages)."""
    try:
        info = read()
    except DataError as e:
        st.error(str(e), icon=":material/block:")       # the engine's words: Start says the same
        return
    if info is None:
        if table is not None:
            st.dataframe(table.head(5), hide_index=True, key=prefix + "preview")
        st.caption(f"The {what} are checked when the session starts.")
        return
    st.dataframe(info["preview"].head(5), hide_index=True, key=prefix + "preview")
    st.caption(describe(info))


def sizes_inputs(prefix: str, title: str, what: str, length: str, length_help: str, note: str) -> None:
    """The split sizes in `what` (pairs, passages) and the length limit (data.max_length, labelled `length`) in
    an expander titled `title`, with `note` under them (keys <prefix>train_size, ..., <prefix>max_length)."""
    with st.expander(title):
        c = st.columns(4)
        c[0].number_input(f"Train {what} (at most)", min_value=1, step=100, key=prefix + "train_size")
        c[1].number_input(f"Validation {what}", min_value=1, step=50, key=prefix + "val_size")
        c[2].number_input(f"Test {what}", min_value=1, step=100, key=prefix + "test_size")
        c[3].number_input(length, min_value=8, step=8, key=prefix + "max_length", help=length_help)
        st.caption(note)


def task_sizes_text(prefix: str, sizes: tuple[int, int, int] | None, what: str) -> str:
    """The split sizes in words; while they are the engine's own (`sizes`), training takes every one validation
    and test leave, up to its size."""
    train, val, test = (int(st.session_state.get(f"{prefix}{k}_size") or 0) for k in ("train", "val", "test"))
    if (train, val, test) == sizes:
        return (f"{val:,} {what} for validation, {test:,} for testing, and every one they leave (at most "
                f"{train:,}) for training.")
    return split_sizes_text(st.session_state, prefix, what)


def comparison_inputs(prefix: str, maps: list[str], temperature_help: str, layer_help: str) -> None:
    """The temperature of the output losses, the head rule and the layer map (keys <prefix>temperature,
    <prefix>head_rule, <prefix>layer_map_kind, <prefix>layer_list)."""
    c1, c2, c3 = st.columns(3)
    temperature_input(c1, prefix, temperature_help)
    c2.selectbox("Head rule", HEAD_RULES, key=prefix + "head_rule",
                 help="How teacher and student heads are paired: direct (same count), group (average teacher "
                      "heads in groups), mean (average all heads); auto picks the first that fits.")
    kind = c3.radio("Layer map", maps, key=prefix + "layer_map_kind", horizontal=True, help=layer_help)
    if kind == "explicit":
        st.text_input("Teacher layers, one per student layer (0-based)", key=prefix + "layer_list",
                      placeholder="e.g. 1,3,5")


# ---- a task section's own settings (translation, language_model) ------------------------------------------
@dataclass(frozen=True)
class SectionForm:
    """How the form draws a task section's settings, one widget each by the kind of its default (keys
    <prefix>set.<name>); a setting it does not name here is drawn by its kind under its own name."""
    prefix: str                                 # the task's keys (new.mt., new.lm.)
    fields: Callable[[], dict]                  # the section's settings and their defaults, as the engine has them
    labels: dict = field(default_factory=dict)
    help: dict = field(default_factory=dict)
    choices: dict = field(default_factory=dict)         # a select box of these choices
    formats: dict = field(default_factory=dict)         # how a choice is named
    floats: dict = field(default_factory=dict)          # a number's format ("%.1e")
    minimum: dict = field(default_factory=dict)         # whole numbers are at least 1 (the engine's rule), numbers 0
    maximum: dict = field(default_factory=dict)
    placeholders: dict = field(default_factory=dict)


def settings_inputs(form: SectionForm, names: list[str], per_row: int = 3) -> None:
    """One widget per setting of a task section, `per_row` a row; names the section lacks are left out."""
    fields = form.fields()
    names = [n for n in names if n in fields]
    if not names:
        return
    cols = st.columns(per_row)
    for k, name in enumerate(names):
        col, key, default = cols[k % per_row], form.prefix + "set." + name, fields[name]
        label, help = form.labels.get(name, name.replace("_", " ").capitalize()), form.help.get(name)
        if name in form.choices:
            col.selectbox(label, form.choices[name], key=key, help=help, format_func=form.formats.get(name, str))
        elif isinstance(default, bool):
            col.checkbox(label, key=key, help=help)
        elif isinstance(default, int):
            col.number_input(label, min_value=form.minimum.get(name, 1), max_value=form.maximum.get(name), step=1,
                             key=key, help=help)
        elif isinstance(default, float):
            col.number_input(label, min_value=float(form.minimum.get(name, 0.0)), max_value=form.maximum.get(name),
                             format=form.floats.get(name, "%g"), key=key, help=help)
        else:
            col.text_input(label, key=key, help=help, placeholder=form.placeholders.get(name))


@dataclass(frozen=True)
class TrainedTeacherForm:
    """A teacher built and trained here (the section's teacher_* settings), a model folder or a hub id."""
    settings: SectionForm
    kinds: dict[str, str]                       # default (built here), local, hub: their labels
    folder: str                                 # the model folder's placeholder
    hub: str                                    # the hub id's placeholder
    built: str                                  # what a teacher built here is
    shape: tuple[str, ...]                      # its shape, training and vocabulary settings (under Advanced)
    own: str                                    # what a model folder or hub id must be
    finetune: str                               # "Fine-tune it on the <data>"
    finetune_help: str
    shape_note: str = ""                        # under its shape


def trained_teacher_section(form: TrainedTeacherForm) -> None:
    """The teacher of a task whose engine can train one here (keys <prefix>teacher_*, <prefix>set.teacher_*)."""
    p = form.settings.prefix
    st.subheader("Teacher")
    kind = st.radio("Teacher model", list(form.kinds), format_func=form.kinds.get, key=p + "teacher_kind")
    if kind == "local":
        st.text_input("Model folder", key=p + "teacher_path", placeholder=form.folder)
    elif kind == "hub":
        st.text_input("Hub id", key=p + "teacher_hub", placeholder=form.hub)
    if kind == "default":
        st.caption(form.built)
        settings_inputs(form.settings, ["teacher_epochs"], 2)
        with st.expander("Advanced: the teacher's shape, training and vocabulary"):
            settings_inputs(form.settings, list(form.shape), 2)
            if form.shape_note:
                st.caption(form.shape_note)
        return
    st.caption(form.own)
    c1, c2 = st.columns(2)
    finetune = c1.selectbox(form.finetune, ["auto", "always", "never"], key=p + "teacher_finetune",
                            help=form.finetune_help)
    c2.number_input("Fine-tuning epochs (at most)", min_value=0, step=1, key=p + "teacher_finetune_epochs",
                    disabled=finetune != "always")


# ---- several teachers --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EnsembleForm:
    """What a task's "Several teachers" section draws besides what both tasks draw."""
    variants: VariantSet
    caption: str                                # what a further teacher can be
    teacher_fields: Callable[[str], None]       # one further teacher's fields, under keys <q> = <prefix>ens<k>.
    lead: Callable[[], None] | None = None      # drawn before the further teachers
    note: Callable[[], str | None] | None = None    # a caption when the teachers are fine


def ensemble_section(form: EnsembleForm, problem: Callable[[], str | None]) -> None:
    """Several teachers (the config's ensemble section): how many further teachers, what makes each one differ
    from the first, and how the ensemble combines them. Keys <prefix>ens_count, <prefix>ens<k>.*,
    <prefix>ens_combine, <prefix>ens_attention, k = 2 .. 5 as in teacher_2 .. teacher_5. problem(): what the engine
    says against the teachers, or None."""
    p = form.variants.prefix
    count = further_count(st.session_state, p + "ens_count")
    with st.expander("Several teachers", expanded=count > 0):
        st.caption("Further teachers beside the one above, each prepared and cached like it: " + form.caption
                   + "Each variant learns from one of them or from all of them combined (its Strategies › Learns "
                     "from); the results compare each with the same recipe learning from the first teacher.")
        count = int(st.number_input("Further teachers", min_value=0, max_value=MAX_FURTHER_TEACHERS, step=1,
                                    key=p + "ens_count",
                                    help="0: one teacher, as usual. Each further teacher is prepared like the first "
                                         "(fine-tuned or trained here, then cached), which takes about as long."))
        fit_variant_sources(form.variants, count)
        if not count:
            return
        if form.lead:
            form.lead()
        for k in FURTHER[:count]:
            st.markdown(f"**{teacher_name(k - 1)}**")
            form.teacher_fields(f"{p}ens{k}.")
        _combine_inputs(p)
        if found := problem():
            st.error(found, icon=":material/block:")
        elif form.note and (note := form.note()):
            st.caption(note)


def _combine_inputs(p: str) -> None:
    c1, c2 = st.columns(2)
    c1.selectbox("Combine the teachers' logits by", COMBINE_RULES, key=p + "ens_combine",
                 format_func=lambda r: COMBINE_LABELS.get(r, r),
                 help="How the teachers' logits become one target, example by example: their mean; a mean "
                      "weighting each teacher by its confidence (top class probability) on the example; or the "
                      "logits of the teacher most confident on it.")
    c2.selectbox("Attention target from", ENSEMBLE_ATTENTION, key=p + "ens_attention",
                 format_func=lambda a: ENSEMBLE_ATTENTION_LABELS.get(a, a),
                 help="Where the attention losses of a variant learning from the ensemble find their target: the "
                      "first teacher's maps, or the mean of every teacher's maps (each reduced to the student's "
                      "heads first). Hidden states always come from the first teacher.")
    c1.selectbox("Average the teachers'", ENSEMBLE_AVERAGES, key=p + "ens_average",
                 format_func=lambda a: ENSEMBLE_AVERAGE_LABELS.get(a, a),
                 help="Logits (TextBrewer's): a geometric mean of the teachers' distributions, which the most "
                      "confident teacher dominates. Probabilities: the mixture of their distributions at the KD "
                      "temperature, where a teacher that hesitates keeps its say.")


# ---- the variant blocks --------------------------------------------------------------------------------------
def variants_section(vs: VariantSet = TEXT_VARIANTS, allowed: tuple[str, ...] | None = None) -> None:
    """The variant blocks of a variant set; `allowed`: the losses the blocks offer (None: all the set holds)."""
    allowed = allowed or vs.losses
    st.subheader("Student variants")
    st.caption("Every variant is the same student, trained side by side from the same initial weights on the same "
               "batches; each minimises the weighted sum of its own ticked losses. A variant trained on the labels "
               "alone (ce) is the reference the others are compared with: the difference is what the teacher adds.")
    with st.expander("What each loss does"):
        for name in allowed:
            st.caption(f"**`{name}`** · {OBJECTIVES[name].help}")
    ids = list(st.session_state[vs.ids])
    names = [str(st.session_state.get(f"{NEW}{vs.block}{i}.name", "")) for i in ids]
    problems = dict(zip(ids, variant_name_problems(names)))
    values = block_values(st.session_state, vs, ids)
    reference = form_reference([(n.strip(), variant_losses(values, i, vs, allowed)) for i, n in zip(ids, names)])
    for start in range(0, len(ids), vs.per_row):
        for col, i in zip(st.columns(vs.per_row), ids[start:start + vs.per_row]):
            with col, st.container(border=True):
                _variant_block(i, problems[i], reference, len(ids) > 1, vs, allowed)
    full = len(ids) >= MAX_FORM_VARIANTS
    c1, c2 = st.columns([1, 4], vertical_alignment="center")
    c1.button("Add variant", key=vs.prefix + "add_variant", icon=":material/add:",
              on_click=add_variant, args=(vs, allowed), disabled=full,
              help="A new block with the last variant's losses: change one thing to see what it does.")
    c2.caption(f"{len(ids)} of at most {MAX_FORM_VARIANTS} variants"
               + (". Remove one to add another." if full else ". Each variant adds about the time of one student.")
               + ("" if reference else " None trains on the labels alone, so there will be no reference to "
                                         "compare with."))


def _variant_block(i: int, problem: str | None, reference: str | None, can_remove: bool, vs: VariantSet,
                   allowed: tuple[str, ...]) -> None:
    k = f"{NEW}{vs.block}{i}."
    c1, c2 = st.columns([5, 1], vertical_alignment="bottom")
    name = c1.text_input("Variant name", key=k + "name", max_chars=32,
                         help="Letters, digits, '-' and '_', starting with a letter; shown on every page.")
    c2.button("", key=k + "remove", icon=":material/delete:", on_click=remove_variant, args=(i, vs),
              disabled=not can_remove,
              help="Remove this variant" if can_remove else "A session needs at least one variant")
    if problem:
        st.error(problem, icon=":material/edit:")
    for loss in allowed:
        a, b = st.columns([vs.wide, 1], vertical_alignment="center")
        on = a.checkbox(f"`{loss}`", key=f"{k}loss.{loss}", help=OBJECTIVES[loss].help)
        b.number_input(f"weight of {loss}", min_value=0.0, step=0.25, key=f"{k}weight.{loss}",
                       label_visibility="collapsed", disabled=not on)
    ticked = [n for n in allowed if st.session_state.get(f"{k}loss.{n}")]
    teacher = [n for n in ticked if OBJECTIVES[n].uses_teacher]
    if not ticked:
        st.caption(":material/warning: Tick at least one loss.")
    elif name.strip() == reference:
        st.caption("**Reference**: labels only; the other variants are compared with it.")
    else:
        count = further_count(st.session_state, vs.ens_count)
        source = st.session_state.get(k + "teacher") or TEACHER
        who = ("the teacher" if source == TEACHER or source not in teacher_sources(count) else
               "the ensemble" if source == ENSEMBLE else source)
        st.caption(f"Learns from {who} through {', '.join(teacher)}." if teacher else "Labels only.")
    strategies_section(i, ticked, vs, allowed)


def strategies_section(i: int, ticked: list[str], vs: VariantSet, allowed: tuple[str, ...]) -> None:
    """The variant's strategies (all off by default), each with what it does and when it helps. Image variants get
    those that apply to images: no adversarial training or generated data; the TinyBERT preset and attention focus
    only where the teacher and student compare attention (the preset: ViTs, whose attention losses it schedules)."""
    k = f"{NEW}{vs.block}{i}."
    count = further_count(st.session_state, vs.ens_count)
    with st.expander("Strategies"):
        if count:
            _learns_from(k, ticked, count)
        st.markdown("**Adaptive**")
        preset = _schedule_inputs(k, ticked, allowed)
        _weights_and_temperature(k)
        if "attention_focus" in vs.strategies and any(n in IMAGE_LOSS_FAMILY for n in allowed):  # attention losses
            st.checkbox("Attention focus", key=k + "attention_focus")
            st.caption("Weights each attention layer pair and head by how far the student still is from the "
                       "teacher, so effort goes where the attention differs most.")
        if not vs.adversarial:
            return
        _adversarial_inputs(k, preset)
        st.markdown("**Generated data**")
        st.checkbox("Also learn from generated data", key=k + "generated")
        st.checkbox("Also learn the generated data's true labels (labels-only reference)", key=k + "transfer_labels",
                    help="With the unused rows as generated data and cross-entropy: the fair reference for a variant "
                         "that learns the teacher's outputs on rows whose labels the teacher learned.")
        st.caption("Extra texts labelled by the teacher's soft outputs (Dataset › Generated data): more to imitate "
                   "when labelled data is scarce.")


def _learns_from(k: str, ticked: list[str], count: int) -> None:
    sources = teacher_sources(count)
    if st.session_state.get(k + "teacher") not in sources:
        st.session_state[k + "teacher"] = TEACHER
    st.markdown("**Teachers**")
    st.selectbox("Learns from", sources, format_func=lambda s: source_label(s, count), key=k + "teacher",
                 disabled=not any(OBJECTIVES[n].uses_teacher for n in ticked),
                 help="Whom its teacher losses compare it with: one of the session's teachers (Several "
                      "teachers, under the teacher), or all of them combined.")


def _schedule_inputs(k: str, ticked: list[str], allowed: tuple[str, ...]) -> bool:
    """The TinyBERT preset (where the blocks offer attention_kl) and each ticked loss's schedule; whether the
    preset is on."""
    preset = False
    if "attention_kl" in allowed:
        preset = st.checkbox("TinyBERT preset: attention first, then the outputs", key=k + "preset")
        st.caption("The attention and hidden-state losses count in the first half of training, the output "
                   "losses (ce, logit_kd, hard_kd) in the second: the student first learns where to look, then "
                   "what to answer. Helps a small student that copies attention.")
    for loss in ticked:
        a, b = st.columns([3, 1.2], vertical_alignment="bottom")
        kind = a.selectbox(f"Schedule of `{loss}`", SCHEDULE_KINDS, format_func=SCHEDULE_LABELS.get,
                           key=f"{k}sched.{loss}", disabled=preset)
        b.number_input("epoch E", min_value=1, step=1, key=f"{k}sched_epoch.{loss}",
                       disabled=preset or kind not in ("step", "until"))
    st.caption("A schedule multiplies a loss's weight over training, e.g. an attention loss that fades out once "
               "the student looks where the teacher looks." + (" The preset sets them now." if preset else ""))
    return preset


def _weights_and_temperature(k: str) -> None:
    st.selectbox("Automatic weights", AUTO_WEIGHTS, format_func=AUTO_WEIGHT_LABELS.get, key=k + "auto_weights")
    st.caption("Balances losses of very different sizes for you: magnitude divides each by its running size, "
               "uncertainty learns the weights (Kendall et al.). Helps when one loss drowns the others.")
    temp = st.selectbox("Temperature schedule", TEMPERATURE_SCHEDULES, format_func=TEMPERATURE_LABELS.get,
                        key=k + "temp_schedule")
    c1, c2 = st.columns(2)
    c1.number_input("lowest T", min_value=0.05, step=0.5, key=k + "temp_low", disabled=temp == "constant")
    c2.number_input("highest T", min_value=0.05, step=0.5, key=k + "temp_high", disabled=temp == "constant")
    st.caption("Changes how soft the teacher's outputs are over training; curriculum learns the temperature "
               "that makes the student's task harder step by step (CTKD). Helps logit_kd when a fixed T is too "
               "easy or too hard.")


def _adversarial_inputs(k: str, preset: bool) -> None:
    st.markdown("**Adversarial**")
    method = st.selectbox("Adversarial training", [ADV_OFF, *ATTACKS], format_func=ADV_LABELS.get,
                          key=k + "adv_method")
    off = method == ADV_OFF
    c1, c2 = st.columns(2)
    c1.number_input("epsilon", min_value=0.0, step=0.01, format="%.3f", key=k + "adv_epsilon", disabled=off,
                    help="The size of the nudge per token, relative to the norm of the token's embedding.")
    c2.number_input("steps", min_value=1, step=1, key=k + "adv_steps", disabled=off or method == "fgsm",
                    help="Attack steps (FGSM: one).")
    c1.number_input("weight λ", min_value=0.0, step=0.25, key=k + "adv_weight",
                    disabled=off or method == "freelb",
                    help="The weight of the adversarial loss next to the other losses (FreeLB has none).")
    c2.number_input("step size (0 = auto)", min_value=0.0, step=0.01, format="%.3f", key=k + "adv_step_size",
                    disabled=off, help="Relative like epsilon; auto: 2.5 × epsilon / steps.")
    a, b = st.columns([3, 1.2], vertical_alignment="bottom")
    kind = a.selectbox("Schedule of the adversarial loss", SCHEDULE_KINDS, format_func=SCHEDULE_LABELS.get,
                       key=f"{k}sched.adversarial", disabled=off or method == "freelb" or preset,
                       help="E.g. off, then on from epoch E: a random student first learns the task, then to "
                            "resist the nudges.")
    b.number_input("epoch E", min_value=1, step=1, key=f"{k}sched_epoch.adversarial",
                   disabled=off or method == "freelb" or preset or kind not in ("step", "until"))
    st.selectbox("Attack start", ATTACK_STARTS, format_func=ATTACK_START_LABELS.get, key=k + "adv_start",
                 disabled=off or method == "freelb",
                 help="Random: the attack starts anywhere in the epsilon ball and every step climbs the ARD loss "
                      "(as the paper). Clean gradient: one pass cheaper, its first step reuses the gradient of the "
                      "clean step's losses, which is not the ARD loss.")
    st.caption("The student learns the teacher's clean answers on inputs nudged to fool it (ARD): it becomes "
               "harder to fool and often generalises better. Each step costs 2 + steps plain steps (1 + steps "
               "with the clean-gradient start); FreeLB trains every loss on the nudged copies instead.")
