"""What the tasks that train their own teacher here (translation, language models) keep in the cache: the teacher
as a model folder, and rows of token ids the teacher wrote once for sequence-level KD (its translations, its
samples), each through cache.get_or_build.

    (model, tok), hit = cached_teacher(slot, load, build, source, data, "translation teacher")
    rows, hit = cached_token_rows(slot, len(sources), compute, {"kind": ...}, "translations")
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..cache import CacheSlot, get_or_build
from ..errors import ConfigError, ModelError
from ..models import set_attention_backend

log = logging.getLogger(__name__)


# ---- a teacher trained here, as a model folder --------------------------------------------------------------------
def teacher_loader(slot: CacheSlot, load: Callable[[str], tuple], what: str) -> Callable[[bool], tuple | None]:
    """get_or_build's loader: (model, tokenizer) = load(folder) when the folder holds a model, else None; a folder
    that cannot be loaded is deleted (and the teacher trained again)."""
    def loader(repair: bool = True):
        if not (slot.path / "config.json").is_file():
            return None
        try:
            return load(str(slot.path))
        except (ModelError, ConfigError) as e:
            log.warning("the cached %s in %s is damaged and is trained again: %s", what, slot.path, e)
            shutil.rmtree(slot.path, ignore_errors=True)
            return None
    return loader


def teacher_writer(source: str, key: str, data: str) -> Callable[[tuple, Path], None]:
    """get_or_build's writer of (model, tokenizer, fit): the model with eager attention, its tokenizer and
    distill_meta.json (source, key, data, fit)."""
    def write(built, tmp: Path) -> None:
        model, tokenizer, fit = built
        set_attention_backend(model, eager=True)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "distill_meta.json").write_text(json.dumps({"source": source, "key": key, "data": data, "fit": fit}))
    return write


def teacher_write_failed(folder: Path, what: str) -> Callable[[BaseException], None]:
    def fail(e: BaseException):
        raise ModelError(f"could not save the {what} in {folder}: {e}; free disk space or set ADS_CACHE_DIR to a "
                         f"writable folder") from None
    return fail


def cached_teacher(slot: CacheSlot, load: Callable[[str], tuple], build: Callable[[], tuple], source: str,
                   data: str, what: str) -> tuple[tuple, bool]:
    """((model, tokenizer), from the cache): the teacher in slot's folder, else build() -> (model, tokenizer, fit)
    written there first."""
    loader = teacher_loader(slot, load, what)
    return get_or_build(slot, loader, build, teacher_writer(source, slot.key, data), write_errors=(OSError,),
                        write_failed=teacher_write_failed(slot.folder, what), reread=lambda: loader(True))


# ---- rows of token ids the teacher wrote ----------------------------------------------------------------------------
def pack_rows(rows: list[list[int]]) -> dict[str, torch.Tensor]:
    return {"lengths": torch.tensor([len(r) for r in rows], dtype=torch.int64),
            "ids": torch.tensor([i for r in rows for i in r], dtype=torch.int64)}


def unpack_rows(tensors: dict, n: int, what: str) -> list[list[int]]:
    lengths = tensors["lengths"].tolist()
    if len(lengths) != n:
        raise ValueError(f"it holds {len(lengths)} {what}, not {n}")
    flat = tensors["ids"].tolist()
    if len(flat) != sum(lengths):
        raise ValueError("its token count differs from its lengths")
    out, at = [], 0
    for k in lengths:
        out.append(flat[at:at + k])
        at += k
    return out


def cached_token_rows(slot: CacheSlot, n: int, compute: Callable[[], list[list[int]]], metadata: dict,
                      what: str) -> tuple[list[list[int]], bool]:
    """n rows of token ids computed once and kept as one safetensors file; (rows, from the cache). A damaged file is
    computed again; one that cannot be written is computed again next session."""
    def load(repair: bool):
        if not slot.path.is_file():
            return None
        try:
            with safe_open(str(slot.path), framework="pt") as f:
                return unpack_rows({name: f.get_tensor(name) for name in f.keys()}, n, what)
        except Exception as e:  # noqa: BLE001 - safetensors raises its own errors for a damaged file
            if repair:
                log.warning("the cached teacher %s %s are damaged (%s); computed again", what, slot.path, e)
                slot.path.unlink(missing_ok=True)
            return None

    def write(rows, tmp: Path) -> None:
        save_file(pack_rows(rows), str(tmp), metadata={k: str(v) for k, v in metadata.items()})

    def not_saved(e: BaseException) -> None:
        log.warning("could not save the teacher's %s in %s: %s; they are computed again next session", what,
                    slot.folder, e)
    return get_or_build(slot, load, compute, write, write_errors=(Exception,), write_failed=not_saved,
                        read_unlocked=True, unlocked=lambda e: compute())
