"""The variant blocks: their widget values from a VariantConfig and back (names, losses, strategies), and the
callbacks that add, remove and replace blocks. Each task has its own blocks (keys.TEXT_VARIANTS, IMAGE_VARIANTS)."""
from __future__ import annotations

import streamlit as st

from distill_core.config import AdversarialConfig, VariantConfig, image_default_variants, image_session_problem
from distill_core.errors import ConfigError
from distill_core.objectives import OBJECTIVES
from distill_core.vocab import BASELINE, ENSEMBLE, TEACHER, check_variant_name, teacher_name, variant_name_key

from .keys import IMAGE_VARIANTS, NEW, TEXT_VARIANTS, VariantSet, value_key
from .labels import ADV_OFF, MAX_FORM_VARIANTS, MAX_FURTHER_TEACHERS

_VARIANT_DEFAULTS = VariantConfig("v", {"ce": 1.0})
_ADV_DEFAULTS = AdversarialConfig()


def split_schedule(spec: str) -> tuple[str, int]:
    """A schedule name as the form shows it: "step@3" -> ("step", 3); "linear_up" -> ("linear_up", 2)."""
    kind, _, epoch = str(spec).partition("@")
    return kind, int(epoch) if epoch.isdigit() else 2


def variant_values(i: int, name: str, losses: dict, variant: VariantConfig | None = None,
                   vs: VariantSet = TEXT_VARIANTS) -> dict:
    """Widget key -> starting value of variant block `i`; its strategies from `variant` (None: all off)."""
    var = variant or _VARIANT_DEFAULTS
    adv = var.adversarial
    p = f"{NEW}{vs.block}{i}."
    v = {p + "name": name}
    for n in vs.losses:
        w = float(losses.get(n, 0.0))
        v[f"{p}loss.{n}"] = w > 0
        v[f"{p}weight.{n}"] = w if w > 0 else 1.0
    for n in vs.scheduled:
        v[f"{p}sched.{n}"], v[f"{p}sched_epoch.{n}"] = split_schedule(var.schedules.get(n, "constant"))
    lo, hi = var.temperature_range
    a = adv or _ADV_DEFAULTS
    v.update({p + k: x for k, x in (
        ("preset", var.preset == "tinybert"), ("auto_weights", var.auto_weights),
        ("temp_schedule", var.temperature_schedule), ("temp_low", float(lo)), ("temp_high", float(hi)),
        ("attention_focus", var.attention_focus), ("adv_method", adv.method if adv else ADV_OFF),
        ("adv_epsilon", float(a.epsilon)), ("adv_steps", int(a.steps)),
        ("adv_step_size", float(a.step_size or 0.0)), ("adv_weight", float(a.weight)),
        ("adv_start", a.start),
        ("generated", var.generated), ("transfer_labels", var.transfer_labels),
        ("teacher", var.teacher)) if k in vs.strategies})
    return v


def variants_values(variants, vs: VariantSet) -> dict:
    """Widget key -> starting value of every block of a variant set, from the config's variants."""
    v = {vs.ids: list(range(len(variants))), vs.next_id: len(variants)}
    for i, var in enumerate(variants):
        v.update(variant_values(i, var.name, var.losses, var, vs))
    return v


def _schedules(v: dict, p: str, losses: dict) -> dict:
    """The variant's loss schedules that are not constant (v: form values without 'new.'; p: its block)."""
    schedules = {}
    method = v.get(p + "adv_method", ADV_OFF)
    for n in [*losses, *(["adversarial"] if method not in (ADV_OFF, "freelb") else [])]:
        kind = v.get(f"{p}sched.{n}") or "constant"
        if kind in ("step", "until"):
            schedules[n] = f"{kind}@{int(v.get(f'{p}sched_epoch.{n}') or 1)}"
        elif kind != "constant":
            schedules[n] = kind
    return schedules


def _adversarial(v: dict, p: str) -> dict:
    """The variant's adversarial section (v: form values without 'new.'; p: its block), its method not off."""
    adv = {"method": v[p + "adv_method"], "epsilon": float(v.get(p + "adv_epsilon", _ADV_DEFAULTS.epsilon)),
           "steps": int(v.get(p + "adv_steps", _ADV_DEFAULTS.steps)),
           "weight": float(v.get(p + "adv_weight", _ADV_DEFAULTS.weight))}
    if float(v.get(p + "adv_step_size") or 0) > 0:
        adv["step_size"] = float(v[p + "adv_step_size"])
    if (start := v.get(p + "adv_start") or _ADV_DEFAULTS.start) != _ADV_DEFAULTS.start:
        adv["start"] = start
    return adv


def variant_strategies(v: dict, i: int, losses: dict, vs: VariantSet = TEXT_VARIANTS,
                       sources: list[str] | None = None) -> dict:
    """The strategies of variant block `i` as config keys, only those that differ from the defaults (a variant
    without strategies is written exactly as before). v: form values without 'new.'. sources: the teachers the
    session has (teacher_sources); a variant learning from one it no longer has learns from the first teacher."""
    p = f"{vs.block}{i}."
    out: dict = {}
    if (source := v.get(p + "teacher") or TEACHER) != TEACHER and (sources is None or source in sources):
        out["teacher"] = source
    if v.get(p + "preset"):
        out["preset"] = "tinybert"
    elif schedules := _schedules(v, p, losses):      # the preset sets the schedules itself: the engine refuses both
        out["schedules"] = schedules
    if (aw := v.get(p + "auto_weights", "none")) != "none":
        out["auto_weights"] = aw
    if (ts := v.get(p + "temp_schedule", "constant")) != "constant":
        out["temperature_schedule"] = ts
    default_range = tuple(_VARIANT_DEFAULTS.temperature_range)
    lo_hi = [float(v.get(p + "temp_low", default_range[0])), float(v.get(p + "temp_high", default_range[1]))]
    if tuple(lo_hi) != default_range:
        out["temperature_range"] = lo_hi
    if v.get(p + "attention_focus"):
        out["attention_focus"] = True
    if v.get(p + "adv_method", ADV_OFF) != ADV_OFF:
        out["adversarial"] = _adversarial(v, p)
    if v.get(p + "generated"):
        out["generated"] = True
    if v.get(p + "transfer_labels"):
        out["transfer_labels"] = True
    return out


def variant_losses(v: dict, i: int, vs: VariantSet = TEXT_VARIANTS,
                   allowed: tuple[str, ...] | None = None) -> dict[str, float]:
    """The ticked losses of variant block `i` with a positive weight (v: form values without 'new.'), among
    `allowed` (None: every loss the block holds)."""
    p = f"{vs.block}{i}."
    return {n: float(v[f"{p}weight.{n}"]) for n in (allowed or vs.losses)
            if v.get(f"{p}loss.{n}") and float(v.get(f"{p}weight.{n}") or 0) > 0}


def variant_name_problems(names: list[str]) -> list[str | None]:
    """For each variant name: None when it can be used, else what is wrong with it and how to fix it."""
    out = []
    for k, name in enumerate(names):
        name = str(name).strip()
        if not name:
            out.append(f"variant {k + 1} has no name: enter one, e.g. kd_attention")
        elif problem := check_variant_name(name):
            out.append(problem)
        elif variant_name_key(name) in [variant_name_key(n) for n in names[:k]]:
            out.append(f"two variants are named {name!r} (names are compared ignoring case): give each its own "
                       f"name, e.g. {name}_2")
        else:
            out.append(None)
    return out


def variants_config(v: dict, vs: VariantSet, allowed: tuple[str, ...] | None = None,
                    sources: list[str] | None = None) -> list[dict]:
    """The variants section from a variant set's blocks (v: form values without 'new.'); `sources`: the teachers
    a variant can learn from (teacher_sources). Raises ConfigError."""
    ids = list(v.get(value_key(vs.ids)) or [])
    if not ids:
        raise ConfigError("add a student variant: a session trains at least one")
    names = [str(v.get(f"{vs.block}{i}.name", "")).strip() for i in ids]
    problem = next((p for p in variant_name_problems(names) if p), None)
    if problem:
        raise ConfigError(problem)
    out = []
    for i, name in zip(ids, names):
        losses = variant_losses(v, i, vs, allowed)
        if not losses:
            raise ConfigError(f"variant {name} has no loss with a positive weight: tick at least one objective "
                              f"(e.g. ce, the plain label loss)")
        out.append({"name": name, "losses": losses, **variant_strategies(v, i, losses, vs, sources)})
    return out


def form_reference(variants: list[tuple[str, dict]]) -> str | None:
    """Which of (name, losses) the session will compare the others with (SessionConfig.reference's rule)."""
    names = [n for n, _ in variants]
    if BASELINE in names:
        return BASELINE
    return next((n for n, losses in variants
                 if losses and not any(OBJECTIVES[k].uses_teacher for k, w in losses.items() if w > 0)), None)


def new_variant_name(names: list[str]) -> str:
    k = len(names) + 1
    while f"variant_{k}" in names:
        k += 1
    return f"variant_{k}"


# ---- whom a variant learns from ---------------------------------------------------------------------------
def further_count(values, key: str) -> int:
    """The number of further teachers the form asks for (values[key]), within 0 .. MAX_FURTHER_TEACHERS."""
    try:
        n = int(values.get(key) or 0)
    except (TypeError, ValueError):
        n = 0
    return max(0, min(MAX_FURTHER_TEACHERS, n))


def teacher_sources(count: int) -> list[str]:
    """What a variant can learn from with `count` further teachers: teacher, teacher_2, ..., and the ensemble."""
    return [teacher_name(k) for k in range(count + 1)] + ([ENSEMBLE] if count else [])


def source_label(source: str, count: int) -> str:
    """How the "Learns from" choice names a teacher."""
    if source == TEACHER:
        return "teacher (the first)"
    return f"ensemble (the {count + 1} teachers combined)" if source == ENSEMBLE else source


# ---- the image losses -------------------------------------------------------------------------------------
def image_losses(teacher: str | None, student: str | None) -> tuple[str, ...]:
    """The losses a variant may use between these families (the engine's rule, config.image_session_problem)."""
    return tuple(n for n in IMAGE_VARIANTS.losses
                 if image_session_problem([VariantConfig("v", {n: 1.0})], teacher, student) is None)


def default_image_variants(families: tuple[str | None, str]) -> tuple[VariantConfig, ...]:
    teacher, student = families
    return image_default_variants(student, teacher is not None and teacher == student)


# ---- the blocks in session state ----------------------------------------------------------------------------
def block_values(state, vs: VariantSet, ids) -> dict:
    """The values of blocks `ids` of a variant set, without 'new.'."""
    return {value_key(k): state.get(k) for i in ids for k in vs.keys(i)}


def variant_rows(state, vs: VariantSet, allowed: tuple[str, ...] | None = None) -> list[tuple[str, dict, dict]]:
    """(name, losses, strategies) of every block of a variant set, as the config would hold them."""
    ids = list(state.get(vs.ids, []))
    values = block_values(state, vs, ids)
    rows = []
    for i in ids:
        losses = variant_losses(values, i, vs, allowed)
        rows.append((str(values.get(f"{vs.block}{i}.name", "")).strip(), losses,
                     variant_strategies(values, i, losses, vs)))
    return rows


def add_variant(vs: VariantSet = TEXT_VARIANTS, allowed: tuple[str, ...] | None = None) -> None:
    """Callback of "Add variant": a new block with the last variant's losses, under a fresh name."""
    ids = list(st.session_state.get(vs.ids, []))
    if len(ids) >= MAX_FORM_VARIANTS:
        return
    i = int(st.session_state.get(vs.next_id, len(ids)))
    last = block_values(st.session_state, vs, ids[-1:])
    losses = variant_losses(last, ids[-1], vs, allowed) if ids else {"ce": 1.0}
    names = [str(st.session_state.get(f"{NEW}{vs.block}{j}.name", "")) for j in ids]
    st.session_state.update(variant_values(i, new_variant_name(names), losses or {"ce": 1.0}, None, vs))
    st.session_state[vs.ids] = ids + [i]
    st.session_state[vs.next_id] = i + 1


def remove_variant(i: int, vs: VariantSet = TEXT_VARIANTS) -> None:
    """Callback of a block's Remove button."""
    ids = list(st.session_state.get(vs.ids, []))
    if i in ids and len(ids) > 1:
        st.session_state[vs.ids] = [j for j in ids if j != i]
        for k in vs.keys(i):
            st.session_state.pop(k, None)


def set_variants(variants, vs: VariantSet) -> None:
    """Replace the blocks of a variant set with `variants` (VariantConfig)."""
    for i in st.session_state.get(vs.ids, []):
        for k in vs.keys(i):
            st.session_state.pop(k, None)
    st.session_state.update(variants_values(variants, vs))


def fit_variant_sources(vs: VariantSet, count: int) -> None:
    """A variant learning from a teacher the session no longer has (fewer further teachers) learns from the first."""
    sources = teacher_sources(count)
    for i in st.session_state.get(vs.ids, []):
        key = f"{NEW}{vs.block}{i}.teacher"
        if st.session_state.get(key, TEACHER) not in sources:
            st.session_state[key] = TEACHER
