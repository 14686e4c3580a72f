"""What a session's config must pass before any run starts: the checks that would otherwise only fail once the
session is under way (files, model folders, the device, the hub, the layer map and heads, the image families).

`preflight(cfg)` raises a ConfigError (or the DataError / OfflineError of the check that failed) with the words the
New session form shows. The form calls it before Start, and so do `start_session` and the command line's `run` and
`sweep`, so each refuses the same configs with the same words. It loads no model: a model folder's config.json
says its shape and family; whole-file and image checks are cached by the file's path, time and size, so a second
preflight of the same data (the form's, then start_session's) costs nothing.
"""
from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path

from . import mapping
from .analysis import resolve_suggested
from .config import DEFAULT_TEACHER, IMAGE_DATASETS, IMAGE_TEACHERS, SessionConfig, image_teacher_family
from .errors import ConfigError, DistillError, ModelError
from .hub import require_online
from .modality.text.data import DataCheck, check_file
from .modality.vision.data import check_image_source
from .modality.vision.modality import check_image_session
from .modality.vision.mobilenet import STAGE_FEATURES, imagenet_weights_path
from .modality.vision.models import CNN_CLASSES, check_patch
from .models import default_teacher_dir, pick_device
from .objectives import MAP_INPUTS, OBJECTIVES
from .sources import source_kind
from .store import RunStore
from .strategies.generated import load_transfer_texts
from .vocab import ENSEMBLE

FAMILY_NAMES = {"cnn": "CNN", "vit": "ViT", None: "model of unknown family"}


# ---- what the checks read, cached by the file's path, time and size ----------------------------------------
def _stamp(path: Path) -> tuple[float, int]:
    stat = path.stat()
    return stat.st_mtime, stat.st_size


@lru_cache(maxsize=16)
def _checked_file(path: str, stamp: tuple, text_column: str, label_column: str, sizes: tuple[int, int, int],
                  max_file_mb: float, split_seed: int) -> DataCheck:
    return check_file(path, text_column, label_column, sizes, max_file_mb, split_seed)


def file_check(path: str | Path, text_column: str, label_column: str, sizes: tuple[int, int, int],
               max_file_mb: float, split_seed: int = 0) -> DataCheck:
    """distill_core.data.check_file on the whole file, cached by the file's path, time and size (and the choices
    that change the answer)."""
    p = Path(path).expanduser()
    if not p.is_file():
        return check_file(p, text_column, label_column, sizes, max_file_mb, split_seed)
    return _checked_file(str(p), _stamp(p), text_column, label_column, tuple(int(x) for x in sizes),
                         float(max_file_mb), int(split_seed))


@lru_cache(maxsize=16)
def _image_info(source: str, stamp: tuple, max_file_mb: float) -> dict:
    return check_image_source(source, max_file_mb)


def image_source_info(source: str, max_file_mb: float) -> dict:
    """distill_core.images.check_image_source (classes and their counts, images, size, channels, notices), cached
    by the source's path, time and size; a built-in name, or a folder or .zip that exists. Raises DataError."""
    src = str(source).strip()
    p = Path(src).expanduser()
    stamp = _stamp(p) if src not in IMAGE_DATASETS and p.exists() else (0.0, 0)
    return copy.deepcopy(_image_info(src, stamp, float(max_file_mb)))


def model_shape(source: str) -> tuple[int, int] | None:
    """(layers, heads) from a local text model's config.json, or None when it is on the hub or unreadable."""
    try:
        folder = default_teacher_dir() if source == DEFAULT_TEACHER else Path(source).expanduser()
        c = json.loads((Path(folder) / "config.json").read_text())
        return int(c["num_hidden_layers"]), int(c["num_attention_heads"])
    except Exception:  # noqa: BLE001 - only a shape to check against; the session reports real problems
        return None


def model_family(source: str) -> str | None:
    """"cnn" or "vit" for a local image model folder (a CNN saved here says so in its config.json), None when the
    folder has no readable config.json."""
    try:
        conf = json.loads((Path(str(source).strip()).expanduser() / "config.json").read_text())
    except Exception:  # noqa: BLE001 - only a family to check against; the session reports real problems
        return None
    return "cnn" if conf.get("model_type") in CNN_CLASSES else "vit"


def _is_model_folder(source: str) -> bool:
    return (Path(source).expanduser() / "config.json").is_file()


# ---- the checks -------------------------------------------------------------------------------------------
def preflight(cfg: SessionConfig, store: RunStore | None = None) -> None:
    """Checks that would otherwise only fail in the background session: files, layer map, heads, device, hub.
    store: where `layer_map: suggested` looks for the run to suggest from (None: the default runs folder)."""
    CHECKS.get(cfg.modality, text_preflight)(cfg, store)


def text_preflight(cfg: SessionConfig, store: RunStore | None = None) -> None:
    """Text sessions: the device, the teacher, the data and generated data, the layer map and heads against the
    teacher's shape (a suggested map resolved from `store`), and the further teachers."""
    pick_device(cfg.train.device)
    _text_teacher(cfg)
    _text_data(cfg)
    layer_map = None
    shape = model_shape(cfg.teacher.source)
    if shape and not cfg.student.source:
        layer_map = cfg.objectives.layer_map
        if layer_map == "suggested":
            layer_map, _ = resolve_suggested(store or RunStore(), cfg.teacher.source, shape[0], cfg.student.layers,
                                             cfg.student.heads, cfg.data.source)
        mapping.layer_map(layer_map, shape[0], cfg.student.layers)
        mapping.resolve_head_rule(cfg.objectives.head_rule, shape[1], cfg.student.heads)
    further_text_teachers(cfg, layer_map, cfg.student.layers if not cfg.student.source else None)


def _text_teacher(cfg: SessionConfig) -> None:
    """The first teacher: on the hub (online), the bundled one, or a model folder here."""
    if source_kind(cfg.teacher.source, "model") == "hub":
        require_online(f"teacher {cfg.teacher.source!r}")
    elif cfg.teacher.source != DEFAULT_TEACHER and not _is_model_folder(cfg.teacher.source):
        raise ConfigError(f"{cfg.teacher.source} is not a model folder (no config.json in it)")


def _text_data(cfg: SessionConfig) -> None:
    """The data (a file here is checked whole) and the file of texts for generated data."""
    src, d = cfg.data.source, cfg.data
    if source_kind(src, "data") == "hub":
        require_online(f"dataset {src!r}")
    elif source_kind(src, "data") == "local":      # a file on this machine or an upload: refused before any run
        file_check(src, d.text_column, d.label_column, (d.train_size, d.val_size, d.test_size), d.max_file_mb,
                   d.split_seed).raise_errors()
    tf = cfg.transfer
    if tf.source not in ("none", "unused") and not Path(tf.source).expanduser().is_file():
        raise ConfigError(f"the file of texts for generated data, {tf.source}, does not exist: enter the path of "
                          f"an existing .csv, .jsonl or .txt file, or pick another source under Dataset › Generated "
                          f"data")
    if tf.source not in ("none", "unused") and any(v.generated for v in cfg.variants):
        load_transfer_texts(tf, None)         # a file without the text column or without texts is refused here


def further_text_teachers(cfg: SessionConfig, layer_map, student_layers: int | None) -> None:
    """Text sessions with further teachers: each other model is a folder here (or on the hub, online), and the
    layer map fits its layers (layer_map: the first teacher's, resolved; None: not checked)."""
    for name, tc in zip(cfg.teacher_names[1:], cfg.teacher_configs[1:]):
        if tc.source == cfg.teacher.source:
            continue
        if source_kind(tc.source, "model") == "hub":
            require_online(f"{name} {tc.source!r}")
        elif tc.source != DEFAULT_TEACHER and not _is_model_folder(tc.source):
            raise ConfigError(f"{name}: {tc.source} is not a model folder (no config.json in it)")
        shape = model_shape(tc.source)
        if shape and layer_map is not None and student_layers:
            try:
                mapping.layer_map(layer_map, shape[0], student_layers)
            except DistillError as e:
                raise ConfigError(f"{name} ({tc.source}): {e}") from None


def image_preflight(cfg: SessionConfig, store: RunStore | None = None) -> None:
    """Image sessions: the device, the teacher's folder, the images (check_image_source), then the engine's own
    check of patch size and losses against the families (check_image_session) and the layer map."""
    pick_device(cfg.train.device)
    teacher_family = None
    if cfg.teacher.source == "mobilenet":
        imagenet_weights_path()                  # installed, before the pictures are read
    if cfg.teacher.source not in IMAGE_TEACHERS:
        if source_kind(cfg.teacher.source, "model") == "hub":
            require_online(f"teacher {cfg.teacher.source!r}")
        elif not _is_model_folder(cfg.teacher.source):
            raise ConfigError(f"{cfg.teacher.source} is not a model folder (no config.json in it)")
        teacher_family = model_family(cfg.teacher.source)
    size = _image_size(cfg)
    if size:
        check_image_session(cfg, size, teacher_family)
    im = cfg.image
    teacher = image_teacher_family(cfg.teacher.source)
    student = im.student_family or teacher
    further_image_teachers(cfg, size, student)
    if teacher and teacher == student and cfg.objectives.layer_map != "suggested":
        count = {"cnn": lambda who: len(getattr(im, f"{who}_widths")), "vit": lambda who: getattr(im, f"{who}_layers")}
        stages = MOBILENET_STAGES if cfg.teacher.source == "mobilenet" else count[teacher]("teacher")
        mapping.layer_map(cfg.objectives.layer_map, stages, count[student]("student"))
        if teacher == "vit":
            mapping.resolve_head_rule(cfg.objectives.head_rule, im.teacher_heads, im.student_heads)


MOBILENET_STAGES = len(STAGE_FEATURES)


def _image_size(cfg: SessionConfig) -> tuple[int, int] | None:
    """The size the models see (image.size, else the images' own; None for a hub dataset), once the images are
    checked; ConfigError when the source does not exist."""
    src, im = cfg.data.source.strip(), cfg.image
    size = (im.size, im.size) if im.size else None
    if src in IMAGE_DATASETS or Path(src).expanduser().exists():
        info = image_source_info(src, cfg.data.max_file_mb)
        return size or tuple(info["size"])
    if source_kind(src, "data") == "hub":
        require_online(f"dataset {src!r}")
        return size
    raise ConfigError(f"{src} does not exist: enter an image folder (one subfolder per class) or a .zip of them")


def further_image_teachers(cfg: SessionConfig, size: tuple[int, int] | None, student: str | None) -> None:
    """Image sessions with further teachers: each folder is a model folder, a ViT built here fits the images, and a
    teacher whose maps a variant compares (learning from it, or from the ensemble with attention mean) is of the
    student's family (the session refuses it only once its teachers are trained)."""
    compared = {v.teacher for v in cfg.variants
                if any(w > 0 and OBJECTIVES[n].needs & MAP_INPUTS for n, w in v.losses.items())}
    mean_maps = ENSEMBLE in compared and cfg.ensemble.attention == "mean"
    for name, tc in zip(cfg.teacher_names[1:], cfg.teacher_configs[1:]):
        if tc.source in IMAGE_TEACHERS:
            family = image_teacher_family(tc.source)
            if family == "vit" and size:
                check_patch(size, cfg.image.patch)
        elif not _is_model_folder(tc.source):
            raise ConfigError(f"{name}: {tc.source} is not a model folder (no config.json in it)")
        else:
            family = model_family(tc.source)
        if (name in compared or mean_maps) and student and family and family != student:
            how = (f"give the variants that learn from {name} output losses only (ce, logit_kd, hard_kd)"
                   if name in compared else
                   "take the ensemble's attention from the first teacher (Several teachers › Attention target "
                   "from) or give the variants that learn from the ensemble output losses only (ce, logit_kd, "
                   "hard_kd)")
            raise ConfigError(f"{name} is a {FAMILY_NAMES[family]} whose maps the {FAMILY_NAMES[student]} student "
                              f"cannot be compared with: {how}")


def tagging_preflight(cfg: SessionConfig, store: RunStore | None = None) -> None:
    """Tagging sessions: the device, the teacher (the bundled encoder, a model folder or a hub id), and the
    sentences read and split as the session reads them (a file that is not BIO-tagged is refused here)."""
    from .modality.tagging.data import is_builtin, load_tag_splits        # the tagging reader, on first use
    pick_device(cfg.train.device)
    _text_teacher(cfg)
    if not is_builtin(cfg.data.source) and source_kind(cfg.data.source, "data") == "hub":
        require_online(f"dataset {cfg.data.source!r}")
    else:
        load_tag_splits(cfg.data, cfg.tagging)


def translation_preflight(cfg: SessionConfig, store: RunStore | None = None) -> None:
    """Translation sessions: the device, the teacher (built here, a Marian model folder or a hub id), and the
    pairs read and split as the session reads them (an empty side, a missing column is refused here)."""
    from .modality.translation.data import is_bible, load_translation_splits     # the translation reader
    pick_device(cfg.train.device)
    _text_teacher(cfg)
    if not is_bible(cfg.data.source) and source_kind(cfg.data.source, "data") == "hub":
        require_online(f"dataset {cfg.data.source!r}")
    else:
        load_translation_splits(cfg.data, cfg.translation)


def language_model_preflight(cfg: SessionConfig, store: RunStore | None = None) -> None:
    """Language-model sessions: the device, the teacher (built here, a causal model folder or a hub id: an
    encoder-only or encoder-decoder model is refused), and the passages read and split as the session reads them."""
    from .modality.language_model.data import is_bible_text, load_lm_splits     # the language-model reader
    pick_device(cfg.train.device)
    _text_teacher(cfg)
    source = cfg.teacher.source
    if source != "default" and source_kind(source, "model") == "local":
        from transformers import AutoConfig
        from .modality.language_model.models import check_causal
        try:
            conf = AutoConfig.from_pretrained(str(Path(source).expanduser()), local_files_only=True,
                                              trust_remote_code=False)
        except Exception as e:  # noqa: BLE001 - transformers raises many kinds
            raise ModelError(f"cannot read the config of teacher {source}: {e}") from None
        check_causal(conf, source)
    if not is_bible_text(cfg.data.source) and source_kind(cfg.data.source, "data") == "hub":
        require_online(f"dataset {cfg.data.source!r}")
    else:
        load_lm_splits(cfg.data, cfg.language_model)


CHECKS = {"text": text_preflight, "image": image_preflight,      # by SessionConfig.modality
          "tagging": tagging_preflight, "translation": translation_preflight,
          "language_model": language_model_preflight}
