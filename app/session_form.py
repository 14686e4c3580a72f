"""The New session form: widgets -> a validated SessionConfig, uploads, previews, and the live-progress helpers.

Settings the form does not show (e.g. the teacher's fine-tuning learning rate or the probe size) are kept from
the form's defaults: `SessionConfig()`, or the config file named by `ADS_FORM_DEFAULTS` (JSON or YAML).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path

import pandas as pd
import streamlit as st

from distill_core import SessionConfig
from distill_core.config import (ATTACKS, AUGMENT_OPS, AUTO_WEIGHTS, DEFAULT_DATASET, DEFAULT_TEACHER, DEVICES,
                                  HEAD_RULES, LAYER_MAPS, SCHEDULES, SMALL_TRAIN, STUDENT_INITS, AdversarialConfig,
                                  VariantConfig)
from distill_core.data import UPLOADS_DIR, DataCheck, check_file, file_label, read_raw_table
from distill_core.errors import ConfigError, DataError
from distill_core.objectives import LOSS_HELP, OBJECTIVES, TEXT_LOSS_NAMES as LOSS_NAMES
from distill_core.sources import source_kind
from distill_core.strategies.schedules import SCHEDULES as LOSS_SCHEDULES
from distill_core.strategies.schedules import TEMPERATURE_SCHEDULES
from distill_core.vocab import BASELINE, check_variant_name, variant_name_key

FORM_DEFAULTS_ENV = "ADS_FORM_DEFAULTS"
SAVED = "new._saved"             # widget values kept while the user visits other pages
ACTIVE_RUN = "new.active_run"    # the run this browser tab started
UPLOAD_PATH, UPLOAD_SIG = "new.upload_path", "new.upload_sig"
FILE_TYPES = ["csv", "tsv", "jsonl", "json", "ndjson"]
PREVIEW_ROWS = 200
TEACHER_KINDS = {"default": "Bundled all-MiniLM-L6-v2 (offline)", "local": "Model folder on this machine",
                 "hub": "Hugging Face hub id (online)"}
DATA_KINDS = {"default": "Rotten Tomatoes snippets (bundled)", "upload": "Upload a CSV or JSONL file",
              "local": "CSV or JSONL file on this machine", "hub": "Hugging Face hub dataset (online)"}
MAX_FORM_VARIANTS = 6           # the engine takes more; a form with more blocks stops being readable
VARIANT_IDS, NEXT_ID = "new.variant_ids", "new.next_variant_id"     # stable ids of the variant blocks, in order
VARIANT_KEY_RE = re.compile(r"^new\.v\d+\.")
# ---- strategies: the form's names for the engine's choices (distill_core.config, strategies/schedules.py) ----
SCHEDULE_KINDS = [s.partition("@")[0] for s in LOSS_SCHEDULES]        # step@E / until@E take an epoch input
SCHEDULE_LABELS = {"constant": "constant", "linear_up": "rising linearly, 0 → 1",
                   "linear_down": "falling linearly, 1 → 0",
                   "cosine_up": "rising along a half cosine", "cosine_down": "falling along a half cosine",
                   "step": "off, then on from epoch E", "until": "on until epoch E, then off"}
AUTO_WEIGHT_LABELS = {"none": "none (the weights above)", "magnitude": "magnitude (each loss over its running size)",
                      "uncertainty": "uncertainty (learned weights)"}
TEMPERATURE_LABELS = {"constant": "constant (T below, under Objectives)", "linear_up": "rising, low → high",
                      "linear_down": "falling, high → low", "cosine_up": "rising along a half cosine",
                      "cosine_down": "falling along a half cosine",
                      "curriculum": "curriculum (learned, within the range)"}
ADV_OFF = "off"
ADV_LABELS = {ADV_OFF: "off", "pgd": "PGD (several steps)", "fgsm": "FGSM (one step)", "freelb": "FreeLB"}
TRANSFER_KINDS = {"none": "None", "unused": "Unused rows of the dataset (labels hidden)",
                  "file": "A file of texts (.csv, .jsonl or .txt)"}
OP_LABELS = {"neighbours": "swap for a similar word", "mask": "mask a word", "delete": "delete a word",
             "swap": "swap two neighbouring words"}
_VARIANT_DEFAULTS = VariantConfig("v", {"ce": 1.0})
_ADV_DEFAULTS = AdversarialConfig()
STRATEGY_KEYS = ("preset", "auto_weights", "temp_schedule", "temp_low", "temp_high", "attention_focus", "adv_method",
                 "adv_epsilon", "adv_steps", "adv_step_size", "adv_weight", "generated")


# ---- defaults ----------------------------------------------------------------------------------------
def load_defaults() -> tuple[SessionConfig, str | None]:
    """The form's defaults and, when ADS_FORM_DEFAULTS names a bad file, a warning saying why it was ignored."""
    path = os.environ.get(FORM_DEFAULTS_ENV, "").strip()
    if not path:
        return SessionConfig(), None
    try:
        return SessionConfig.load(path), None
    except ConfigError as e:
        return SessionConfig(), f"{FORM_DEFAULTS_ENV} ignored: {e}"


def form_kind(source: str, role: str) -> str:
    """The form's choice for a source: 'default' (built in), 'local' or 'hub'; role is 'model' or 'data'."""
    kind = source_kind(source, role)
    return "default" if kind == "builtin" else kind


SCHEDULED = (*LOSS_NAMES, "adversarial")     # what a schedule can multiply: every loss, and the adversarial loss


def variant_keys(i: int) -> list[str]:
    """The widget keys of variant block `i`, its strategies included."""
    return [f"new.v{i}.name", *(f"new.v{i}.loss.{n}" for n in LOSS_NAMES),
            *(f"new.v{i}.weight.{n}" for n in LOSS_NAMES), *(f"new.v{i}.sched.{n}" for n in SCHEDULED),
            *(f"new.v{i}.sched_epoch.{n}" for n in SCHEDULED), *(f"new.v{i}.{k}" for k in STRATEGY_KEYS)]


def split_schedule(spec: str) -> tuple[str, int]:
    """A schedule name as the form shows it: "step@3" -> ("step", 3); "linear_up" -> ("linear_up", 2)."""
    kind, _, epoch = str(spec).partition("@")
    return kind, int(epoch) if epoch.isdigit() else 2


def variant_values(i: int, name: str, losses: dict, variant: VariantConfig | None = None) -> dict:
    """Widget key -> starting value of variant block `i`; its strategies from `variant` (None: all off)."""
    var = variant or _VARIANT_DEFAULTS
    adv = var.adversarial
    v = {f"new.v{i}.name": name}
    for n in LOSS_NAMES:
        w = float(losses.get(n, 0.0))
        v[f"new.v{i}.loss.{n}"] = w > 0
        v[f"new.v{i}.weight.{n}"] = w if w > 0 else 1.0
    for n in SCHEDULED:
        v[f"new.v{i}.sched.{n}"], v[f"new.v{i}.sched_epoch.{n}"] = split_schedule(var.schedules.get(n, "constant"))
    lo, hi = var.temperature_range
    a = adv or _ADV_DEFAULTS
    v.update({f"new.v{i}.{k}": x for k, x in (
        ("preset", var.preset == "tinybert"), ("auto_weights", var.auto_weights),
        ("temp_schedule", var.temperature_schedule), ("temp_low", float(lo)), ("temp_high", float(hi)),
        ("attention_focus", var.attention_focus), ("adv_method", adv.method if adv else ADV_OFF),
        ("adv_epsilon", float(a.epsilon)), ("adv_steps", int(a.steps)),
        ("adv_step_size", float(a.step_size or 0.0)), ("adv_weight", float(a.weight)),
        ("generated", var.generated))})
    return v


def variant_strategies(v: dict, i: int, losses: dict) -> dict:
    """The strategies of variant block `i` as config keys, only those that differ from the defaults (a variant
    without strategies is written exactly as before). v: form values without 'new.'."""
    out: dict = {}
    if v.get(f"v{i}.preset"):
        out["preset"] = "tinybert"
    else:                       # the preset sets the schedules itself: the engine refuses both
        schedules = {}
        method = v.get(f"v{i}.adv_method", ADV_OFF)
        for n in [*losses, *(["adversarial"] if method not in (ADV_OFF, "freelb") else [])]:
            kind = v.get(f"v{i}.sched.{n}") or "constant"
            if kind in ("step", "until"):
                schedules[n] = f"{kind}@{int(v.get(f'v{i}.sched_epoch.{n}') or 1)}"
            elif kind != "constant":
                schedules[n] = kind
        if schedules:
            out["schedules"] = schedules
    if (aw := v.get(f"v{i}.auto_weights", "none")) != "none":
        out["auto_weights"] = aw
    if (ts := v.get(f"v{i}.temp_schedule", "constant")) != "constant":
        out["temperature_schedule"] = ts
    default_range = tuple(_VARIANT_DEFAULTS.temperature_range)
    lo_hi = [float(v.get(f"v{i}.temp_low", default_range[0])), float(v.get(f"v{i}.temp_high", default_range[1]))]
    if tuple(lo_hi) != default_range:
        out["temperature_range"] = lo_hi
    if v.get(f"v{i}.attention_focus"):
        out["attention_focus"] = True
    if (method := v.get(f"v{i}.adv_method", ADV_OFF)) != ADV_OFF:
        adv = {"method": method, "epsilon": float(v.get(f"v{i}.adv_epsilon", _ADV_DEFAULTS.epsilon)),
               "steps": int(v.get(f"v{i}.adv_steps", _ADV_DEFAULTS.steps)),
               "weight": float(v.get(f"v{i}.adv_weight", _ADV_DEFAULTS.weight))}
        if float(v.get(f"v{i}.adv_step_size") or 0) > 0:
            adv["step_size"] = float(v[f"v{i}.adv_step_size"])
        out["adversarial"] = adv
    if v.get(f"v{i}.generated"):
        out["generated"] = True
    return out


def initial_values(cfg: SessionConfig) -> dict:
    """Widget key -> starting value, from a SessionConfig."""
    t, s, d, o, tr, tf = cfg.teacher, cfg.student, cfg.data, cfg.objectives, cfg.train, cfg.transfer
    transfer_kind = tf.source if tf.source in ("none", "unused") else "file"
    lm = o.layer_map
    tk, dk = form_kind(t.source, "model"), form_kind(d.source, "data")
    v = {
        "new.name": cfg.name,
        "new.teacher_kind": tk,
        "new.teacher_path": t.source if tk == "local" else "",
        "new.teacher_hub": t.source if tk == "hub" else "",
        "new.teacher_finetune": t.finetune, "new.teacher_finetune_epochs": t.finetune_epochs,
        "new.student_layers": s.layers, "new.student_heads": s.heads, "new.student_hidden": s.hidden,
        "new.student_intermediate": s.intermediate, "new.student_init": s.init,
        "new.data_kind": dk,
        "new.data_path": d.source if dk == "local" else "",
        "new.data_hub": d.source if dk == "hub" else "", "new.hub_split": d.hub_split,
        "new.hub_text_column": d.text_column, "new.hub_label_column": d.label_column,
        "new.train_size": d.train_size, "new.val_size": d.val_size, "new.test_size": d.test_size,
        "new.max_length": d.max_length,
        "new.temperature": float(o.temperature), "new.head_rule": o.head_rule,
        "new.layer_map_kind": lm if isinstance(lm, str) else "explicit",
        "new.layer_list": "" if isinstance(lm, str) else ",".join(map(str, lm)),
        "new.epochs": tr.epochs, "new.batch_size": tr.batch_size, "new.lr": float(tr.lr),
        "new.schedule": tr.schedule, "new.time_budget": float(tr.time_budget_s or 0.0), "new.seed": tr.seed,
        "new.seeds": "",
        "new.device": tr.device,
        "new.transfer_kind": transfer_kind, "new.transfer_path": tf.source if transfer_kind == "file" else "",
        "new.transfer_text_column": tf.text_column, "new.transfer_max_texts": tf.max_texts,
        "new.transfer_copies": tf.copies, "new.transfer_fraction": float(tf.fraction),
        "new.transfer_ops": list(tf.ops),
        VARIANT_IDS: list(range(len(cfg.variants))), NEXT_ID: len(cfg.variants),
    }
    for i, var in enumerate(cfg.variants):
        v.update(variant_values(i, var.name, var.losses, var))
    return v


def form_keys(state, defaults: SessionConfig) -> list[str]:
    """Every key the form keeps: the fixed ones and those of the variant blocks now shown."""
    fixed = [k for k in initial_values(defaults) if not VARIANT_KEY_RE.match(k)]
    ids = state.get(VARIANT_IDS, [])
    return fixed + [k for i in ids for k in variant_keys(i)]


def init_state(defaults: SessionConfig) -> None:
    """Set every form key once: from what the user typed before visiting another page, else the defaults."""
    saved = st.session_state.get(SAVED, {})
    for key, value in {**initial_values(defaults), **saved}.items():
        if key not in st.session_state:
            st.session_state[key] = value


def save_state(defaults: SessionConfig) -> None:
    """Remember the widget values (Streamlit forgets widget state on pages that are not shown)."""
    st.session_state[SAVED] = {k: st.session_state[k] for k in form_keys(st.session_state, defaults)
                               if k in st.session_state}


# ---- variants --------------------------------------------------------------------------------------------
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


def variant_losses(v: dict, i: int) -> dict[str, float]:
    """The ticked losses of variant block `i` with a positive weight (v: form values without 'new.')."""
    return {n: float(v[f"v{i}.weight.{n}"]) for n in LOSS_NAMES
            if v.get(f"v{i}.loss.{n}") and float(v.get(f"v{i}.weight.{n}") or 0) > 0}


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


def add_variant() -> None:
    """Callback of "Add variant": a new block with the last variant's losses, under a fresh name."""
    ids = list(st.session_state.get(VARIANT_IDS, []))
    if len(ids) >= MAX_FORM_VARIANTS:
        return
    i = int(st.session_state.get(NEXT_ID, len(ids)))
    last = {k[4:]: st.session_state.get(k) for k in variant_keys(ids[-1])} if ids else {}
    losses = variant_losses(last, ids[-1]) if ids else {"ce": 1.0}
    names = [str(st.session_state.get(f"new.v{j}.name", "")) for j in ids]
    st.session_state.update(variant_values(i, new_variant_name(names), losses or {"ce": 1.0}))
    st.session_state[VARIANT_IDS] = ids + [i]
    st.session_state[NEXT_ID] = i + 1


def remove_variant(i: int) -> None:
    """Callback of a block's Remove button."""
    ids = list(st.session_state.get(VARIANT_IDS, []))
    if i in ids and len(ids) > 1:
        st.session_state[VARIANT_IDS] = [j for j in ids if j != i]
        for k in variant_keys(i):
            st.session_state.pop(k, None)


# ---- data files --------------------------------------------------------------------------------------
def upload_name(name: str) -> str:
    """The uploaded file's own name, safe to store: no folders, no control characters, no leading dot."""
    suffix = Path(str(name).replace("\\", "/")).suffix
    base = re.sub(r"[\x00-\x1f\x7f]+", "", str(name).replace("\\", "/").rsplit("/", 1)[-1]).strip().lstrip(".")
    if Path(base).suffix != suffix or not Path(base).stem.strip():
        base = "data" + suffix
    while len(base.encode()) > 160:               # file systems allow 255 bytes
        base = base[:-len(suffix) - 1] + suffix
    return base


def save_upload(runs_root: Path, name: str, data: bytes, max_mb: float) -> Path:
    """Write uploaded bytes to <runs_root>/.uploads/<content hash>/<the file's own name>, so that messages name
    the file as the user knows it and the same file uploaded again is the same path; only ever read as text."""
    if Path(name).suffix.lower().lstrip(".") not in FILE_TYPES:
        raise DataError(f"{name}: only {', '.join('.' + t for t in FILE_TYPES)} files can be used")
    if len(data) / 1e6 > max_mb:
        raise DataError(f"{name} is {len(data) / 1e6:.1f} MB, above the {max_mb:g} MB limit")
    folder = Path(runs_root) / UPLOADS_DIR / hashlib.sha256(data).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / upload_name(name)
    if not (path.is_file() and path.read_bytes() == data):     # unchanged: keep its mtime (and cached checks)
        path.write_bytes(data)
    return path


@st.cache_data(show_spinner=False, max_entries=16)
def _preview(path: str, mtime: float, size: int) -> pd.DataFrame:
    suffix = Path(path).suffix.lower()
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        if suffix in (".jsonl", ".json", ".ndjson"):
            rows = []
            for line in f:
                if line.strip():
                    obj = json.loads(line)
                    if not isinstance(obj, dict):
                        raise ValueError("each line must be one JSON object like {\"text\": ..., \"label\": ...}")
                    rows.append(obj)
                if len(rows) >= PREVIEW_ROWS:
                    break
            return pd.DataFrame(rows)
        return pd.read_csv(f, sep="\t" if suffix == ".tsv" else ",", nrows=PREVIEW_ROWS, dtype=object,
                           keep_default_na=False)


def preview_table(path: str | Path) -> pd.DataFrame:
    """The first rows of a CSV/JSONL file, as text; DataError with the reason when it cannot be read."""
    p = Path(path).expanduser()
    if not p.is_file():
        read_raw_table(p, math.inf)                  # says why, naming the file
    try:
        df = _preview(str(p), p.stat().st_mtime, p.stat().st_size)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{file_label(p)} cannot be read: {str(e).strip()}") from None
    if df.empty or not len(df.columns):
        raise DataError(f"{file_label(p)} has no rows")
    df.columns = [str(c) for c in df.columns]
    return df


@st.cache_data(show_spinner="Checking the whole file…", max_entries=16)
def _checked(path: str, mtime: float, size: int, text_column: str, label_column: str, sizes: tuple[int, int, int],
             max_file_mb: float, split_seed: int) -> DataCheck:
    return check_file(path, text_column, label_column, sizes, max_file_mb, split_seed)


def data_check(path: str | Path, text_column: str, label_column: str, sizes: tuple[int, int, int],
               max_file_mb: float, split_seed: int = 0) -> DataCheck:
    """distill_core.data.check_file on the whole file, cached by the file's path, time and size (and the
    choices that change the answer): the preview and the Start button see the same problems."""
    p = Path(path).expanduser()
    if not p.is_file():
        return check_file(p, text_column, label_column, sizes, max_file_mb, split_seed)
    stat = p.stat()
    return _checked(str(p), stat.st_mtime, stat.st_size, text_column, label_column,
                    tuple(int(x) for x in sizes), float(max_file_mb), int(split_seed))


def guess_column(columns: list[str], preferred: str, role: str) -> int:
    """Index of the column to preselect: the configured name, else a usual name, else first/last column."""
    usual = {"text": ("text", "sentence", "review", "content"), "label": ("label", "labels", "sentiment", "class")}
    for name in (preferred, *usual[role]):
        if name in columns:
            return columns.index(name)
    return 0 if role == "text" else len(columns) - 1


# ---- teacher shape (for the layer-map preview and early checks) ----------------------------------------
@st.cache_data(show_spinner=False, max_entries=16)
def teacher_shape(source: str) -> tuple[int, int] | None:
    """(layers, heads) from a local teacher's config.json, or None when it is on the hub or unreadable."""
    from distill_core.models import default_teacher_dir
    try:
        folder = default_teacher_dir() if source == DEFAULT_TEACHER else Path(source).expanduser()
        c = json.loads((Path(folder) / "config.json").read_text())
        return int(c["num_hidden_layers"]), int(c["num_attention_heads"])
    except Exception:  # noqa: BLE001 - only a preview; the engine reports real problems
        return None


# ---- widgets -> config -------------------------------------------------------------------------------
def collect(state) -> dict:
    """The form's values from session state (keys without the 'new.' prefix)."""
    keys = form_keys(state, SessionConfig()) + ["new.file_text_column", "new.file_label_column", UPLOAD_PATH]
    return {k[4:]: state[k] for k in keys if k in state}


def build_config(v: dict, base: SessionConfig) -> SessionConfig:
    """A SessionConfig from the form's values; settings the form lacks come from `base`. Raises ConfigError."""
    d = base.to_dict()
    d["name"] = str(v.get("name", "")).strip()
    kind = v["teacher_kind"]
    d["teacher"]["source"] = {"default": DEFAULT_TEACHER, "local": v.get("teacher_path", ""),
                              "hub": v.get("teacher_hub", "")}[kind].strip()
    if not d["teacher"]["source"]:
        raise ConfigError("enter the teacher's model folder" if kind == "local" else "enter the teacher's hub id")
    d["teacher"].update(finetune=v["teacher_finetune"], finetune_epochs=int(v["teacher_finetune_epochs"]))
    d["student"].update(layers=int(v["student_layers"]), heads=int(v["student_heads"]),
                        hidden=int(v["student_hidden"]), intermediate=int(v["student_intermediate"]),
                        init=v["student_init"])
    dk = v["data_kind"]
    if dk == "default":
        d["data"].update(source=DEFAULT_DATASET, text_column="text", label_column="label")
    elif dk == "hub":
        d["data"].update(source=v.get("data_hub", "").strip(), hub_split=v.get("hub_split", "train").strip(),
                         text_column=v["hub_text_column"].strip(), label_column=v["hub_label_column"].strip())
        if not d["data"]["source"]:
            raise ConfigError("enter the name of a hub dataset")
    else:
        source = v.get("upload_path") if dk == "upload" else v.get("data_path", "").strip()
        if not source:
            raise ConfigError("upload a CSV or JSONL file first" if dk == "upload" else "enter the data file's path")
        d["data"].update(source=str(source), text_column=v.get("file_text_column") or d["data"]["text_column"],
                         label_column=v.get("file_label_column") or d["data"]["label_column"])
    d["data"].update(train_size=int(v["train_size"]), val_size=int(v["val_size"]), test_size=int(v["test_size"]),
                     max_length=int(v["max_length"]))
    ids = list(v.get("variant_ids") or [])
    if not ids:
        raise ConfigError("add a student variant: a session trains at least one")
    names = [str(v.get(f"v{i}.name", "")).strip() for i in ids]
    problem = next((p for p in variant_name_problems(names) if p), None)
    if problem:
        raise ConfigError(problem)
    d["variants"] = []
    for i, name in zip(ids, names):
        losses = variant_losses(v, i)
        if not losses:
            raise ConfigError(f"variant {name} has no loss with a positive weight: tick at least one objective "
                              f"(e.g. ce, the plain label loss)")
        d["variants"].append({"name": name, "losses": losses, **variant_strategies(v, i, losses)})
    lmk = v["layer_map_kind"]
    d["objectives"].update(temperature=float(v["temperature"]), head_rule=v["head_rule"],
                           layer_map=lmk if lmk in LAYER_MAPS else v.get("layer_list", "").strip())
    if lmk not in LAYER_MAPS and not d["objectives"]["layer_map"]:
        raise ConfigError("enter the teacher layers for the explicit layer map, e.g. 1,3,5 (0-based)")
    d["transfer"].update(transfer_settings(v))
    budget = float(v["time_budget"])
    d["train"].update(epochs=int(v["epochs"]), batch_size=int(v["batch_size"]), lr=float(v["lr"]),
                      schedule=v["schedule"], time_budget_s=budget if budget > 0 else None, seed=int(v["seed"]),
                      device=v["device"])
    return SessionConfig.from_dict(d)


def transfer_settings(v: dict) -> dict:
    """The transfer section from the form's "Generated data" values (v: without 'new.'); missing ones stay."""
    out = {}
    if "transfer_kind" in v:
        kind = v["transfer_kind"]
        path = str(v.get("transfer_path") or "").strip()
        if kind == "file" and not path:
            raise ConfigError("enter the path of the file of texts for generated data (a .csv, .jsonl or .txt "
                              "file), or pick another source under Dataset › Generated data")
        out["source"] = path if kind == "file" else kind
    for key, cast in (("text_column", str), ("max_texts", int), ("copies", int), ("fraction", float),
                      ("ops", list)):
        if f"transfer_{key}" in v:
            out[key] = cast(v[f"transfer_{key}"])
    if "text_column" in out:
        out["text_column"] = out["text_column"].strip()
    return out


def preflight(cfg: SessionConfig) -> None:
    """Checks that would otherwise only fail in the background session: files, layer map, heads, device, hub."""
    from distill_core import mapping
    from distill_core.hub import require_online
    from distill_core.models import pick_device
    pick_device(cfg.train.device)
    if form_kind(cfg.teacher.source, "model") == "hub":
        require_online(f"teacher {cfg.teacher.source!r}")
    elif cfg.teacher.source != DEFAULT_TEACHER and not (Path(cfg.teacher.source).expanduser() / "config.json").is_file():
        raise ConfigError(f"{cfg.teacher.source} is not a model folder (no config.json in it)")
    src = cfg.data.source
    if form_kind(src, "data") == "hub":
        require_online(f"dataset {src!r}")
    elif form_kind(src, "data") == "local":      # a file on this machine or an upload: refused before any run
        d = cfg.data
        data_check(src, d.text_column, d.label_column, (d.train_size, d.val_size, d.test_size), d.max_file_mb,
                   d.split_seed).raise_errors()
    tf = cfg.transfer
    if tf.source not in ("none", "unused") and not Path(tf.source).expanduser().is_file():
        raise ConfigError(f"the file of texts for generated data, {tf.source}, does not exist: enter the path of "
                          f"an existing .csv, .jsonl or .txt file, or pick another source under Dataset › Generated "
                          f"data")
    if tf.source not in ("none", "unused") and any(v.generated for v in cfg.variants):
        from distill_core.strategies.generated import load_transfer_texts
        load_transfer_texts(tf, None)         # a file without the text column or without texts is refused here
    shape = teacher_shape(cfg.teacher.source)
    if shape and not cfg.student.source:
        layer_map = cfg.objectives.layer_map
        if layer_map == "suggested":
            from distill_core.analysis import resolve_suggested
            from app.common import get_store
            layer_map, _ = resolve_suggested(get_store(), cfg.teacher.source, shape[0], cfg.student.layers,
                                             cfg.student.heads, cfg.data.source)
        mapping.layer_map(layer_map, shape[0], cfg.student.layers)
        mapping.resolve_head_rule(cfg.objectives.head_rule, shape[1], cfg.student.heads)


# ---- progress helpers --------------------------------------------------------------------------------

# ---- form sections (widgets only; every key is namespaced "new.") ----------------------------------------
def teacher_section() -> None:
    st.subheader("Teacher")
    kind = st.radio("Teacher model", list(TEACHER_KINDS), format_func=TEACHER_KINDS.get, key="new.teacher_kind")
    if kind == "local":
        st.text_input("Model folder", key="new.teacher_path", placeholder="/path/to/model (config.json + weights)")
    elif kind == "hub":
        st.text_input("Hub id", key="new.teacher_hub", placeholder="e.g. textattack/bert-base-uncased-SST-2")
    c1, c2 = st.columns(2)
    c1.selectbox("Fine-tune the teacher first", ["auto", "always", "never"], key="new.teacher_finetune",
                 help="auto: only when its classifier head is new for this dataset (true of the bundled "
                      "sentence encoder). It learns from every labelled example outside validation and test, "
                      "keeps its best epoch by validation accuracy, and is cached and reused: on the bundled data "
                      "the first session spends about 9 minutes on it on a 2-core CPU, later sessions none.")
    c2.number_input("Fine-tuning epochs (at most)", min_value=0, step=1, key="new.teacher_finetune_epochs",
                    help="The epoch with the best validation accuracy is kept; small data gets more epochs so the "
                         "teacher takes at least teacher.finetune_min_steps steps (300).")
    source = {"default": DEFAULT_TEACHER, "local": st.session_state.get("new.teacher_path", ""),
              "hub": ""}[kind]
    shape = teacher_shape(source.strip()) if source.strip() else None
    if shape:
        st.caption(f"This teacher has {shape[0]} layers × {shape[1]} attention heads.")


def student_section() -> None:
    st.subheader("Student")
    c1, c2 = st.columns(2)
    c1.number_input("Layers", min_value=1, step=1, key="new.student_layers")
    c2.number_input("Attention heads", min_value=1, step=1, key="new.student_heads")
    c1.number_input("Hidden size", min_value=1, step=16, key="new.student_hidden",
                    help="Must be divisible by the number of heads (each head gets hidden / heads dimensions).")
    c2.number_input("Intermediate (feed-forward) size", min_value=1, step=64, key="new.student_intermediate")
    st.radio("Initialisation", list(STUDENT_INITS), key="new.student_init", horizontal=True,
             help=f"auto: random when there are {SMALL_TRAIN:,} training examples or more; with fewer, the student "
                  "starts from the teacher's knowledge (from_teacher when the widths allow, else "
                  "teacher_embeddings). from_teacher copies the teacher's embeddings and its mapped layers (needs "
                  "the same widths); teacher_embeddings starts from the teacher's token embeddings projected onto "
                  "the student's width; random starts from scratch. The run's notes say what auto chose.")
    heads, hidden = st.session_state["new.student_heads"], st.session_state["new.student_hidden"]
    if heads and hidden % heads == 0:
        st.caption(f"Each head works in {hidden // heads} dimensions.")


def data_section(runs_root: Path, base: SessionConfig) -> None:
    st.subheader("Dataset")
    kind = st.radio("Data", list(DATA_KINDS), format_func=DATA_KINDS.get, key="new.data_kind", horizontal=True)
    path = None
    if kind == "default":
        st.caption("Short movie-review snippets labelled fresh or rotten, shipped with the app: works offline.")
    elif kind == "upload":
        max_mb = base.data.max_file_mb
        up = st.file_uploader(f"CSV or JSONL file, at most {max_mb:g} MB. It is stored beside the runs and only "
                              f"read as text.", type=FILE_TYPES, key="new.upload",
                              max_upload_size=max(1, math.ceil(max_mb)))
        if up is not None:
            sig = f"{getattr(up, 'file_id', '')}:{up.name}:{up.size}"
            if st.session_state.get(UPLOAD_SIG) != sig:
                try:
                    st.session_state[UPLOAD_PATH] = str(save_upload(runs_root, up.name, up.getvalue(), max_mb))
                    st.session_state[UPLOAD_SIG] = sig
                except DataError as e:
                    st.error(str(e))
                    st.session_state.pop(UPLOAD_PATH, None)
        path = st.session_state.get(UPLOAD_PATH)
        if path and up is None:
            st.caption(f"Using the file uploaded earlier: `{file_label(path)}`")
    elif kind == "local":
        path = st.text_input("Path to a .csv or .jsonl file", key="new.data_path").strip() or None
    else:
        c1, c2 = st.columns([3, 1])
        c1.text_input("Hub dataset name", key="new.data_hub", placeholder="e.g. rotten_tomatoes, sst2")
        c2.text_input("Split", key="new.hub_split")
        c1, c2 = st.columns(2)
        c1.text_input("Text column", key="new.hub_text_column")
        c2.text_input("Label column", key="new.hub_label_column")
    if path:
        file_columns(path, base)
    with st.expander("Split sizes and sequence length"):
        c = st.columns(4)
        c[0].number_input("Train examples", min_value=1, step=100, key="new.train_size")
        c[1].number_input("Validation examples", min_value=1, step=50, key="new.val_size")
        c[2].number_input("Test examples", min_value=1, step=100, key="new.test_size")
        c[3].number_input("Max tokens per text", min_value=8, step=8, key="new.max_length")
        st.caption("Splits are stratified by label and seeded, so two runs with the same seed see the same examples.")
    transfer_section()


def transfer_section() -> None:
    """Where generated data comes from: used by the variants that tick "Also learn from generated data"."""
    with st.expander("Generated data"):
        st.caption("Extra texts for the variants that tick *Also learn from generated data* in their Strategies. "
                   "The teacher labels these texts with its soft outputs; the students never see their labels. "
                   "Back-translations or paraphrases can be given as a file (no translation model exists offline).")
        kind = st.radio("Texts", list(TRANSFER_KINDS), format_func=TRANSFER_KINDS.get, key="new.transfer_kind",
                        horizontal=True)
        if kind == "file":
            c1, c2 = st.columns([3, 1])
            c1.text_input("Path to a .csv, .jsonl or .txt file of texts", key="new.transfer_path")
            c2.text_input("Text column", key="new.transfer_text_column", help="For .csv and .jsonl files.")
        c = st.columns(3)
        c[0].number_input("Max texts taken", min_value=1, step=500, key="new.transfer_max_texts")
        c[1].number_input("Augmented copies per example", min_value=0, max_value=50, step=1,
                          key="new.transfer_copies",
                          help="Copies of each training text with a few words changed; 0: none.")
        c[2].number_input("Fraction of words changed", min_value=0.01, max_value=1.0, step=0.05,
                          key="new.transfer_fraction")
        st.multiselect("Operations on the copies", AUGMENT_OPS, format_func=OP_LABELS.get, key="new.transfer_ops")
        st.caption("Augmented copies change about that fraction of each training text's words (TinyBERT's data "
                   "augmentation); the teacher's answers on them show the students how it reacts to small changes.")


def file_columns(path: str, base: SessionConfig) -> None:
    """Preview of a data file, pickers for its text and label columns, its examples per class, and the problems
    a session would have with the whole file (errors: Start refuses; warnings: worth knowing)."""
    try:
        df = preview_table(path)
    except DataError as e:
        st.warning(str(e))
        return
    cols = list(df.columns)
    c1, c2 = st.columns(2)
    text = c1.selectbox("Text column", cols, index=guess_column(cols, base.data.text_column, "text"),
                        key="new.file_text_column")
    label = c2.selectbox("Label column", cols, index=guess_column(cols, base.data.label_column, "label"),
                         key="new.file_label_column")
    st.dataframe(df.head(5), hide_index=True, key="new.preview")
    sizes = tuple(int(st.session_state[f"new.{k}_size"]) for k in ("train", "val", "test"))
    check = data_check(path, text, label, sizes, base.data.max_file_mb, base.data.split_seed)
    if check.class_counts:
        total = sum(check.class_counts.values())
        shown = [f"{k} {v:,} ({v / total:.0%})" for k, v in
                 sorted(check.class_counts.items(), key=lambda kv: -kv[1])[:12]]
        more = f" and {len(check.class_counts) - 12:,} more" if len(check.class_counts) > 12 else ""
        st.caption(f"{check.rows:,} rows with a text in {file_label(path)}; examples per class: "
                   f"{', '.join(shown)}{more}")
    for p in check.errors:
        st.error(p.message, icon="🚫")
    for p in check.warnings:
        st.warning(p.message)


def variants_section() -> None:
    st.subheader("Student variants")
    st.caption("Every variant is the same student, trained side by side from the same initial weights on the same "
               "batches; each minimises the weighted sum of its own ticked losses. A variant trained on the labels "
               "alone (ce) is the reference the others are compared with: the difference is what the teacher adds.")
    with st.expander("What each loss does"):
        for name in LOSS_NAMES:
            st.caption(f"**`{name}`** · {LOSS_HELP[name]}")
    ids = list(st.session_state[VARIANT_IDS])
    names = [str(st.session_state.get(f"new.v{i}.name", "")) for i in ids]
    problems = dict(zip(ids, variant_name_problems(names)))
    values = {k[4:]: st.session_state.get(k) for i in ids for k in variant_keys(i)}
    reference = form_reference([(n.strip(), variant_losses(values, i)) for i, n in zip(ids, names)])
    per_row = 3
    for start in range(0, len(ids), per_row):
        for col, i in zip(st.columns(per_row), ids[start:start + per_row]):
            with col, st.container(border=True):
                _variant_block(i, problems[i], reference, can_remove=len(ids) > 1)
    full = len(ids) >= MAX_FORM_VARIANTS
    c1, c2 = st.columns([1, 4], vertical_alignment="center")
    c1.button("Add variant", key="new.add_variant", icon=":material/add:", on_click=add_variant, disabled=full,
              help="A new block with the last variant's losses: change one thing to see what it does.")
    c2.caption(f"{len(ids)} of at most {MAX_FORM_VARIANTS} variants"
               + (". Remove one to add another." if full else ". Each variant adds about the time of one student.")
               + ("" if reference else " None trains on the labels alone, so there will be no reference to "
                                         "compare with."))


def _variant_block(i: int, problem: str | None, reference: str | None, can_remove: bool) -> None:
    c1, c2 = st.columns([5, 1], vertical_alignment="bottom")
    name = c1.text_input("Variant name", key=f"new.v{i}.name", max_chars=32,
                         help="Letters, digits, '-' and '_', starting with a letter; shown on every page.")
    c2.button("", key=f"new.v{i}.remove", icon=":material/delete:", on_click=remove_variant, args=(i,),
              disabled=not can_remove,
              help="Remove this variant" if can_remove else "A session needs at least one variant")
    if problem:
        st.error(problem, icon="✏️")
    for loss in LOSS_NAMES:
        a, b = st.columns([1.5, 1], vertical_alignment="center")
        on = a.checkbox(f"`{loss}`", key=f"new.v{i}.loss.{loss}", help=LOSS_HELP[loss])
        b.number_input(f"weight of {loss}", min_value=0.0, step=0.25, key=f"new.v{i}.weight.{loss}",
                       label_visibility="collapsed", disabled=not on)
    ticked = [n for n in LOSS_NAMES if st.session_state.get(f"new.v{i}.loss.{n}")]
    teacher = [n for n in ticked if OBJECTIVES[n].uses_teacher]
    if not ticked:
        st.caption("⚠️ Tick at least one loss.")
    elif name.strip() == reference:
        st.caption("**Reference**: labels only; the other variants are compared with it.")
    else:
        st.caption(f"Learns from the teacher through {', '.join(teacher)}." if teacher else "Labels only.")
    strategies_section(i, ticked)


def strategies_section(i: int, ticked: list[str]) -> None:
    """The variant's strategies (all off by default), each with what it does and when it helps."""
    k = f"new.v{i}."
    with st.expander("Strategies"):
        st.markdown("**Adaptive**")
        preset = st.checkbox("TinyBERT preset: attention first, then the outputs", key=k + "preset")
        st.caption("The attention and hidden-state losses count in the first half of training, the output losses "
                   "(ce, logit_kd, hard_kd) in the second: the student first learns where to look, then what to "
                   "answer. Helps a small student that copies attention.")
        for loss in ticked:
            a, b = st.columns([3, 1.2], vertical_alignment="bottom")
            kind = a.selectbox(f"Schedule of `{loss}`", SCHEDULE_KINDS, format_func=SCHEDULE_LABELS.get,
                               key=f"{k}sched.{loss}", disabled=preset)
            b.number_input("epoch E", min_value=1, step=1, key=f"{k}sched_epoch.{loss}",
                           disabled=preset or kind not in ("step", "until"))
        st.caption("A schedule multiplies a loss's weight over training, e.g. an attention loss that fades out once "
                   "the student looks where the teacher looks." + (" The preset sets them now." if preset else ""))
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
        st.checkbox("Attention focus", key=k + "attention_focus")
        st.caption("Weights each attention layer pair and head by how far the student still is from the teacher, "
                   "so effort goes where the attention differs most.")
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
        st.caption("The student learns the teacher's clean answers on inputs nudged to fool it (ARD): it becomes "
                   "harder to fool and often generalises better. Each step costs 1 + steps plain steps; FreeLB "
                   "trains every loss on the nudged copies instead.")
        st.markdown("**Generated data**")
        st.checkbox("Also learn from generated data", key=k + "generated")
        st.caption("Extra texts labelled by the teacher's soft outputs (Dataset › Generated data): more to imitate "
                   "when labelled data is scarce.")


def objectives_section(teacher_source: str) -> None:
    st.subheader("Objectives")
    st.caption("How teacher and students are compared, shared by every variant: the temperature of logit_kd, and "
               "which teacher layers and heads the attention and hidden-state losses (and the divergence charts) "
               "pair with each student layer and head.")
    c1, c2, c3 = st.columns(3)
    c1.number_input("Temperature T", min_value=0.05, step=0.5, key="new.temperature",
                    help="Softens both output distributions in logit_kd; higher T shows more of the teacher's "
                         "ranking of the wrong classes.")
    c2.selectbox("Head rule", HEAD_RULES, key="new.head_rule",
                 help="How teacher and student heads are paired: direct (same count), group (average teacher "
                      "heads in groups), mean (average all heads); auto picks the first that fits.")
    kind = c3.radio("Layer map", ["uniform", "last", "suggested", "explicit"], key="new.layer_map_kind",
                    horizontal=True,
                    help="Which teacher layer each student layer imitates and is compared with. suggested: the "
                         "layers where the baseline student of the newest finished run like this one resembled "
                         "the teacher most (Divergence page › Suggested layer mapping).")
    if kind == "explicit":
        st.text_input("Teacher layers, one per student layer (0-based)", key="new.layer_list",
                      placeholder="e.g. 1,3,5")
    _mapping_caption(teacher_source, kind)


def _mapping_caption(teacher_source: str, kind: str) -> None:
    from distill_core import mapping
    from distill_core.errors import DistillError
    shape = teacher_shape(teacher_source) if teacher_source else None
    if not shape:
        return
    rule = kind if kind in LAYER_MAPS else st.session_state.get("new.layer_list", "")
    try:
        rule = SessionConfig.from_dict({"objectives": {"layer_map": rule}}).objectives.layer_map if rule else None
        if rule is None:
            return
        if rule == "suggested":
            st.caption("The layers come from the newest finished run with this teacher, data and student shape; "
                       "Start says so if there is none yet.")
            return
        pairs = mapping.layer_map(rule, shape[0], int(st.session_state["new.student_layers"]))
        heads = mapping.resolve_head_rule(st.session_state["new.head_rule"], shape[1],
                                          int(st.session_state["new.student_heads"]))
    except DistillError as e:
        st.warning(str(e))
        return
    st.caption("Student layer ← teacher layer: " + ", ".join(f"{s} ← {t}" for s, t in enumerate(pairs))
               + f" · heads compared by rule **{heads}**")


def training_section() -> None:
    from distill_core.models import pick_device
    st.subheader("Training")
    c = st.columns(4)
    c[0].number_input("Epochs", min_value=1, step=1, key="new.epochs")
    c[1].number_input("Batch size", min_value=1, step=8, key="new.batch_size")
    c[2].number_input("Learning rate", min_value=1e-7, step=1e-4, format="%.1e", key="new.lr")
    c[3].selectbox("Schedule", SCHEDULES, key="new.schedule", help="after a short warm-up")
    c = st.columns(4)
    c[0].number_input("Time budget (s, 0 = none)", min_value=0.0, step=60.0, key="new.time_budget",
                      help="Counted from the start of training (preparing the teacher is not counted): training "
                           "stops after the epoch in progress once this much time has passed, so at least one epoch "
                           "finishes.")
    c[1].number_input("Seed", min_value=0, step=1, key="new.seed")
    c[2].selectbox("Device", DEVICES, key="new.device")
    c[2].caption(f"auto picks **{pick_device('auto').type}** on this machine")
    c[3].text_input("Seeds (a sweep)", key="new.seeds", placeholder="e.g. 0-4 or 0,1,2",
                    help="Several students' seeds start a sweep: one session per seed, the same teacher and test "
                         "set, compared across seeds on the Sweep page. Empty: one session with the seed at left.")
