"""The teacher's outputs on the training sentences, computed once, kept on disk, and served per batch.

A tagger answers on every sub-token, so its logits are (t_i, C) per sentence, not one row per example as a text
classifier's (distill_core/teacher.py's TeacherOutputs): this is that cache for per-token logits. The mapped
attention (P, H', t_i, t_i), its scores before the softmax and the hidden states (P, t_i, Dt) are stored as the text
cache stores them, float16, under cache_root()/teacher_outputs, keyed by the teacher's content, the sub-token ids and
everything else that changes them.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ... import mapping
from ...batching import collate, make_batches, pad_square, pad_tokens
from ...cache import CacheSlot, get_or_build, outputs_dir
from ...capture import AttentionCapture
from ...evaluate import autocast_for
from ...models import set_attention_backend
from ...teacher import ids_digest, model_content_digest
from ..base import Batch, TeacherBatch

log = logging.getLogger(__name__)

TAGGING_OUTPUTS_VERSION = 1     # bump when compute_token_outputs changes what it produces


@dataclass
class TokenOutputs:
    """What the teacher says about each training sentence. logits[i]: (t_i, C) float32 over its sub-tokens;
    attention[i] and scores[i]: (P, H', t_i, t_i) float16 for the mapped layers, heads reduced to the compared ones;
    hidden[i]: (P, t_i, Dt) float16."""
    logits: list[torch.Tensor]
    attention: list[torch.Tensor] | None = None
    hidden: list[torch.Tensor] | None = None
    scores: list[torch.Tensor] | None = None

    def batch(self, index, t: int, device: torch.device) -> TeacherBatch:
        """The outputs of sentences `index` padded to t sub-tokens: logits (B, T, C) (zeros on padding, which the
        labels' -100 leaves out), attention and scores (B, P, H', T, T), hidden (B, P, T, Dt)."""
        pin = device.type == "cuda"     # pinned host memory lets the copy overlap with compute

        def move(x):
            return (x.pin_memory() if pin else x).to(device, non_blocking=True)
        rows = [self.logits[i] for i in index]
        logits = torch.zeros((len(rows), t, rows[0].shape[-1]), dtype=torch.float32)
        for j, z in enumerate(rows):
            logits[j, :z.shape[0]] = z
        att = move(pad_square([self.attention[i] for i in index], t)).float() if self.attention is not None else None
        hid = move(pad_tokens([self.hidden[i] for i in index], t)).float() if self.hidden is not None else None
        scores = move(pad_square([self.scores[i] for i in index], t)).float() if self.scores is not None else None
        return TeacherBatch(move(logits), att, hid, scores=scores)


class TokenOutputsSource:
    """A TeacherSource: the precomputed outputs of the sentences of each batch, padded to its length."""

    def __init__(self, outputs: TokenOutputs, device: torch.device):
        self.outputs, self.device = outputs, device

    def __call__(self, batch: Batch) -> TeacherBatch:
        return self.outputs.batch(batch.index, batch.length, self.device)


@torch.inference_mode()
def compute_token_outputs(teacher, ids: list[list[int]], pad_id: int, device, pairs_teacher: list[int],
                          head_rule: str, student_heads: int, need_attention: bool, need_hidden: bool,
                          need_scores: bool = False, batch_size: int = 64, mixed_precision: bool = True,
                          progress=None) -> TokenOutputs:
    """One inference pass of the teacher over `ids` (length-sorted batches), eager attention whatever is read (its
    logits must not depend on whether another variant reads the maps)."""
    teacher.eval()
    set_attention_backend(teacher, eager=True)
    n = len(ids)
    logits: list = [None] * n
    att = [None] * n if need_attention else None
    hid = [None] * n if need_hidden else None
    scores = [None] * n if need_scores else None
    batches = make_batches([len(x) for x in ids], batch_size, seed=None, buckets=True)
    capture = (AttentionCapture(teacher, pairs_teacher, scores=need_scores) if need_attention or need_scores
               else contextlib.nullcontext())
    with capture:
        for k, index in enumerate(batches):
            input_ids, mask = collate(ids, index, pad_id)
            with autocast_for(device, mixed_precision):
                out = teacher(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                              output_hidden_states=need_hidden)
            z = out.logits.float().cpu()                                                        # (B, T, C)
            if need_attention:
                maps = mapping.adapt_teacher(capture.pop_stacked().float(), head_rule, student_heads)  # (B,P,H',T,T)
                maps = maps.to(torch.float16).cpu()
            if need_scores:
                raw = mapping.adapt_teacher(capture.pop_scores_stacked().float(), head_rule, student_heads)
                raw = raw.to(torch.float16).cpu()
            if need_hidden:
                hs = torch.stack([out.hidden_states[layer + 1] for layer in pairs_teacher], 1).to(torch.float16).cpu()
            for j, i in enumerate(index):
                t = len(ids[i])
                logits[i] = z[j, :t].clone()
                if need_attention:
                    att[i] = maps[j, :, :, :t, :t].clone()
                if need_hidden:
                    hid[i] = hs[j, :, :t].clone()
                if need_scores:
                    scores[i] = raw[j, :, :, :t, :t].clone()
            if progress:
                progress("teacher outputs", k + 1, len(batches))
    return TokenOutputs(logits, att, hid, scores)


# ---- on disk ------------------------------------------------------------------------------------------------
GROUPS = ("attention", "hidden", "scores")


def pack(out: TokenOutputs, lengths: list[int]) -> dict[str, torch.Tensor]:
    """One flat tensor per group (every sentence has its own t_i)."""
    tensors = {"logits": torch.cat(out.logits).float().contiguous(),          # (sum t_i, C)
               "lengths": torch.tensor(lengths, dtype=torch.int64)}
    for name in GROUPS:
        group = getattr(out, name)
        if group is not None:
            tensors[name] = torch.cat([x.reshape(-1) for x in group]).to(torch.float16)
            tensors[f"{name}_dims"] = torch.tensor([group[0].shape[0], group[0].shape[-1] if name == "hidden"
                                                    else group[0].shape[1]], dtype=torch.int64)
    return tensors


def unpack(tensors: dict, lengths: list[int], num_labels: int, need: dict[str, bool]) -> TokenOutputs:
    """The outputs back per sentence; ValueError when the file does not hold what was asked for."""
    if tensors["lengths"].tolist() != lengths:
        raise ValueError("its sentence lengths differ from the sub-token ids'")
    flat = tensors["logits"]
    if flat.dtype != torch.float32 or tuple(flat.shape) != (sum(lengths), num_labels):
        raise ValueError(f"logits are {flat.dtype} {tuple(flat.shape)}, not float32 ({sum(lengths)}, {num_labels})")
    out = TokenOutputs(list(torch.split(flat, lengths)))
    for name in GROUPS:
        if not need[name]:
            continue
        if name not in tensors:
            raise ValueError(f"it holds no {name}")
        a, b = tensors[f"{name}_dims"].tolist()

        def shape(t, a=a, b=b, name=name):
            return (a, t, b) if name == "hidden" else (a, b, t, t)
        sizes = [int(np.prod(shape(t))) for t in lengths]
        data = tensors[name]
        if data.dtype != torch.float16 or data.dim() != 1 or data.numel() != sum(sizes):
            raise ValueError(f"its {name} are not a float16 array of {sum(sizes)} values")
        setattr(out, name, [x.view(shape(t)) for x, t in zip(torch.split(data, sizes), lengths)])
    return out


def outputs_key(teacher_path: str, num_labels: int, ids: list[list[int]], pad_id: int, device, pairs_teacher,
                head_rule: str, student_heads: int, need: dict[str, bool], key_parts: dict,
                mixed_precision: bool) -> str:
    """Everything that changes compute_token_outputs' result (the batch size only changes padding, which the mask
    hides)."""
    ident = {"task": "tagging", "teacher": model_content_digest(teacher_path), "num_labels": num_labels,
             "parts": key_parts, "ids": ids_digest(ids), "pad_id": pad_id, "pairs": list(pairs_teacher),
             "head_rule": head_rule, "student_heads": student_heads, **need, "storage": "float16",
             "bf16_autocast": bool(mixed_precision and torch.device(device).type == "cuda"),
             "version": TAGGING_OUTPUTS_VERSION}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:24]


def cached_token_outputs(prepared, ids: list[list[int]], pad_id: int, device, pairs_teacher: list[int],
                         head_rule: str, student_heads: int, need: dict[str, bool], key_parts: dict,
                         batch_size: int = 64, mixed_precision: bool = True,
                         progress=None) -> tuple[TokenOutputs, bool]:
    """compute_token_outputs, kept on disk for the next session with the same teacher, sentences and mapping.
    need: {"attention", "hidden", "scores"} -> whether to compute it. Returns (outputs, hit). A teacher not defined
    by a local folder (a hub id, a new random head), or a cache that cannot be written, only means they are computed
    each time."""
    def compute() -> TokenOutputs:
        return compute_token_outputs(prepared.model, ids, pad_id, device, pairs_teacher, head_rule, student_heads,
                                     need["attention"], need["hidden"], need["scores"], batch_size, mixed_precision,
                                     progress)
    if not ids or prepared.head_new or not (Path(prepared.path) / "config.json").is_file():
        return compute(), False
    num_labels = int(prepared.model.config.num_labels)
    key = outputs_key(prepared.path, num_labels, ids, pad_id, device, pairs_teacher, head_rule, student_heads, need,
                      key_parts, mixed_precision)
    slot = CacheSlot(outputs_dir(), key, ".safetensors")
    lengths = [len(x) for x in ids]
    meta = {"key": key, "teacher": prepared.path, "data": str(key_parts.get("data", "")),
            "parts": json.dumps(key_parts, sort_keys=True, default=str)}

    def load(repair: bool) -> TokenOutputs | None:
        if not slot.path.is_file():
            return None
        try:
            with safe_open(str(slot.path), framework="pt") as f:
                if (f.metadata() or {}).get("key") != key:
                    raise ValueError("it was written for another key")
                tensors = {name: f.get_tensor(name) for name in f.keys()}
            return unpack(tensors, lengths, num_labels, need)
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for a truncated file
            if repair:
                log.warning("the cached tagging teacher outputs %s are damaged (%s); they are computed again",
                            slot.path, e)
                with contextlib.suppress(OSError):
                    slot.path.unlink()
            return None

    def not_saved(e: BaseException) -> None:
        log.warning("could not save the tagging teacher's outputs in %s: %s; they are computed again next session",
                    outputs_dir(), e)

    def unlocked(e: Exception) -> TokenOutputs:
        log.warning("the tagging teacher's outputs are computed without caching: %s", e)
        return compute()
    out, hit = get_or_build(slot, load, compute, lambda value, tmp: save_file(pack(value, lengths), str(tmp),
                                                                              metadata=meta),
                            write_errors=(Exception,), write_failed=not_saved, read_unlocked=True, unlocked=unlocked)
    if hit and progress:
        progress("teacher outputs", 1, 1)
    return out, hit
