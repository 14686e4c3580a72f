"""Which tokens a classifier's decision rests on, and whether its attention points at the same tokens.

Token attributions come from Captum's LayerIntegratedGradients on the input (word) embeddings, as in
Captum's BERT tutorials: the path integral runs from a baseline text, where every token except the
tokenizer's special tokens ([CLS], [SEP]) is [PAD], to the real text, and the attributions of a token's
embedding are summed over the hidden dimension.

    attr = token_attributions(model, tokenizer, "a wonderful film")
    attr.tokens, attr.scores        # ['[CLS]', 'a', 'wonderful', 'film', '[SEP]'], (T,) unit L2 norm

Attention is compared through the [CLS] row (row 0) of the head-averaged maps, one example's maps laid
out as in analysis.py: `(layers, heads, T, T)`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...errors import ModelError
from ...metrics import JS_MAX, row_metric
from ...models import eval_mode

TOP_K = 3


@dataclass
class Attribution:
    """Integrated-gradients attributions of one text towards one class."""
    tokens: list[str]
    scores: np.ndarray              # (T,) summed over the hidden dim, normalised by the L2 norm
    target: int                     # the class attributed to
    delta: float                    # convergence delta: sum(raw_scores) - (f(x) - f(baseline))
    probs: np.ndarray               # (C,) class probabilities of the text
    raw_scores: np.ndarray | None = None     # (T,) summed over the hidden dim, before normalisation
    special_mask: np.ndarray | None = None   # (T,) True for the tokenizer's special tokens ([CLS], [SEP])

    def content_mask(self) -> np.ndarray:
        """(T,) True for the tokens that are not special tokens."""
        if self.special_mask is None:
            return np.ones(len(self.tokens), dtype=bool)
        return ~np.asarray(self.special_mask, dtype=bool)


# ---------------------------------------------------------------------------------------------------------
# integrated gradients


def _pad_id(model, tokenizer) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None:
        pad = getattr(model.config, "pad_token_id", None)
    if pad is None:
        raise ModelError("the tokenizer has no [PAD] token, which the attribution baseline is made of; "
                         "use a tokenizer with a pad token")
    return int(pad)


def _encode(tokenizer, text: str, max_length: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input ids (1, T), attention mask (1, T) and special-token mask (1, T) of one text."""
    text = (text or "").strip()
    if not text:
        raise ValueError("type a sentence first: attributions need a non-empty text")
    enc = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt",
                    return_special_tokens_mask=True)
    ids = enc["input_ids"].to(device)                                          # (1, T)
    mask = enc.get("attention_mask", torch.ones_like(enc["input_ids"])).to(device)
    special = enc["special_tokens_mask"].bool().to(device)                     # (1, T)
    if bool(special.all()):
        raise ValueError(f"the text {text!r} has no tokens besides the special ones; type a sentence with words")
    return ids, mask, special


def _class_probs(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the classes: (B, T) -> (B, C)."""
    logits = model(input_ids=ids, attention_mask=mask).logits
    return torch.softmax(logits.float(), dim=-1)


def token_attributions(model, tokenizer, text: str, target: int | None = None, n_steps: int = 32,
                       max_length: int = 64) -> Attribution:
    """Integrated gradients of the target class probability w.r.t. the input embeddings of one text.

    `target` defaults to the predicted class. More `n_steps` give a smaller convergence delta.
    """
    from captum.attr import LayerIntegratedGradients  # deferred: captum is heavy, only attributions need it

    if n_steps < 1:
        raise ValueError(f"n_steps must be at least 1, got {n_steps}")
    device = next(model.parameters()).device
    ids, mask, special = _encode(tokenizer, text, max_length, device)
    baseline = torch.where(special, ids, torch.full_like(ids, _pad_id(model, tokenizer)))   # (1, T)

    # callers may sit inside torch.inference_mode() (e.g. an app view); integrated gradients need autograd
    with torch.inference_mode(False), torch.enable_grad(), eval_mode(model, frozen=True):
        with torch.no_grad():
            probs = _class_probs(model, ids, mask)[0]                                # (C,)
        n_classes = probs.shape[0]
        target = int(probs.argmax()) if target is None else int(target)
        if not 0 <= target < n_classes:
            raise ValueError(f"target class {target} does not exist: the model has {n_classes} classes "
                             f"(0..{n_classes - 1})")

        def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return _class_probs(model, input_ids, attention_mask)[:, target]        # (B,)

        lig = LayerIntegratedGradients(forward, model.get_input_embeddings())
        attributions, delta = lig.attribute(inputs=ids, baselines=baseline, additional_forward_args=(mask,),
                                            n_steps=n_steps, return_convergence_delta=True)  # (1, T, D), (1,)

    raw = attributions[0].sum(-1).detach().float().cpu().numpy()                    # (T,)
    norm = float(np.linalg.norm(raw))
    scores = raw / norm if norm > 0 else raw.copy()
    return Attribution(tokens=tokenizer.convert_ids_to_tokens(ids[0].tolist()), scores=scores, target=target,
                       delta=float(delta.reshape(-1)[0]), probs=probs.detach().cpu().numpy(),
                       raw_scores=raw, special_mask=special[0].cpu().numpy())


# ---------------------------------------------------------------------------------------------------------
# rank correlation


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the average of their ranks: (N,) -> (N,)."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)                     # rank of the last member of each group of ties
    return (last - (counts - 1) / 2.0)[inverse.reshape(-1)]


def rank_correlation(a, b, mask=None) -> float:
    """Spearman rank correlation of two score vectors (T,), over the tokens where `mask` (T,) is true.

    Pass the non-special tokens as the mask (e.g. `Attribution.content_mask()`). NaN with fewer than two
    tokens, a constant vector or non-finite scores.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"cannot correlate {a.shape[0]} scores with {b.shape[0]}: both need one score per token")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool).reshape(-1)
        if mask.shape != a.shape:
            raise ValueError(f"the mask has {mask.shape[0]} entries for {a.shape[0]} tokens")
        a, b = a[mask], b[mask]
    if a.size < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    ra, rb = _average_ranks(a), _average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    if denom == 0:
        return float("nan")
    return float(np.clip((ra * rb).sum() / denom, -1.0, 1.0))


# ---------------------------------------------------------------------------------------------------------
# attention


def _as_maps(maps, name: str) -> np.ndarray:
    arr = np.asarray(maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else maps, dtype=np.float32)
    if arr.ndim != 4 or arr.shape[-1] != arr.shape[-2]:
        raise ValueError(f"{name} must be one example's attention (layers, heads, T, T), got shape {arr.shape}")
    return arr


def _check_layer(layer: int, n_layers: int, name: str) -> int:
    if not 0 <= int(layer) < n_layers:
        raise ValueError(f"{name} layer {layer} does not exist: its layers are 0..{n_layers - 1}")
    return int(layer)


def cls_attention(maps, layer: int) -> np.ndarray:
    """Head-averaged attention of [CLS] (row 0) over the tokens in one layer: (L, H, T, T) -> (T,)."""
    arr = _as_maps(maps, "the attention maps")
    layer = _check_layer(layer, arr.shape[0], "the model's")
    return arr[layer].mean(0)[0]                                                       # (T,)


def attention_to_tokens(maps, layers=None) -> np.ndarray:
    """Head- and layer-averaged attention from [CLS] to each token: (L, H, T, T) -> (T,), sums to 1.

    `layers` picks the layers to average (all by default).
    """
    arr = _as_maps(maps, "the attention maps")
    layers = range(arr.shape[0]) if layers is None else list(layers)
    picked = [_check_layer(i, arr.shape[0], "the model's") for i in layers]
    if not picked:
        raise ValueError("name at least one layer to average the attention over")
    return arr[picked].mean(axis=(0, 1))[0]                                            # (T,)


def attention_attribution_correlation(maps, attribution: Attribution, layers=None, absolute: bool = True) -> float:
    """Spearman correlation of [CLS] attention (attention_to_tokens) with token attributions, special tokens left out.

    Attention is unsigned, so by default it is ranked against the attributions' magnitudes.
    """
    attention = attention_to_tokens(maps, layers)                                      # (T,)
    if attention.shape[0] != len(attribution.tokens):
        raise ValueError(f"the attention covers {attention.shape[0]} tokens but the attribution "
                         f"{len(attribution.tokens)}: use maps and attributions of the same text and tokenizer")
    scores = np.abs(attribution.scores) if absolute else attribution.scores
    return rank_correlation(attention, scores, attribution.content_mask())


def attention_agreement(teacher_maps, student_maps, pairs) -> float:
    """1 - mean Jensen-Shannon divergence / ln 2 of the head-averaged [CLS] rows of the mapped layer pairs.

    teacher_maps (L_t, H_t, T, T), student_maps (L_s, H_s, T, T), pairs [(teacher_layer, student_layer), ...].
    1 means identical [CLS] attention in every pair, 0 maximally different.
    """
    t_arr = _as_maps(teacher_maps, "the teacher's attention")
    s_arr = _as_maps(student_maps, "the student's attention")
    if t_arr.shape[-1] != s_arr.shape[-1]:
        raise ModelError(f"the teacher's attention covers {t_arr.shape[-1]} tokens but the student's "
                         f"{s_arr.shape[-1]}: both must read the same text with the same tokenizer")
    pairs = [tuple(p) for p in pairs]
    if not pairs:
        raise ValueError("attention agreement needs at least one (teacher_layer, student_layer) pair")
    p = np.stack([cls_attention(t_arr, t) for t, _ in pairs])[:, None]              # (P, 1, T): one query row
    q = np.stack([cls_attention(s_arr, s) for _, s in pairs])[:, None]              # (P, 1, T)
    js, _ = row_metric("js", torch.from_numpy(p)[None], torch.from_numpy(q)[None])  # (1, P, 1)
    return float(1.0 - js.mean().item() / JS_MAX)


# ---------------------------------------------------------------------------------------------------------
# teacher vs student


def top_tokens(attribution: Attribution, k: int = TOP_K, absolute: bool = True) -> list[int]:
    """Positions of the k most important non-special tokens, most important first."""
    scores = np.abs(attribution.scores) if absolute else np.asarray(attribution.scores)
    candidates = np.flatnonzero(attribution.content_mask())
    order = np.argsort(-scores[candidates], kind="stable")
    return [int(i) for i in candidates[order[:k]]]


def compare_attributions(teacher_attr: Attribution, student_attr: Attribution, k: int = TOP_K) -> dict:
    """How far a student's token attributions follow the teacher's on the same text.

    Returns spearman (rank correlation over non-special tokens, nan when undefined), top_k_overlap (share of
    the k largest-magnitude tokens in common, 0..1, nan without tokens), k (as used: at most the number of
    non-special tokens), teacher_top / student_top (token positions, most important first) and same_target.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if list(teacher_attr.tokens) != list(student_attr.tokens):
        raise ModelError("the teacher and the student split the text into different tokens; attributions can "
                         "only be compared when both share a tokenizer")
    mask = teacher_attr.content_mask() & student_attr.content_mask()
    k_used = min(k, int(mask.sum()))
    t_top, s_top = top_tokens(teacher_attr, k_used), top_tokens(student_attr, k_used)
    overlap = len(set(t_top) & set(s_top)) / k_used if k_used else float("nan")
    return {"spearman": rank_correlation(teacher_attr.scores, student_attr.scores, mask),
            "top_k_overlap": float(overlap), "k": k_used, "teacher_top": t_top, "student_top": s_top,
            "same_target": teacher_attr.target == student_attr.target}
