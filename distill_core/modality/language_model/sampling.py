"""Continuing prompts with a causal model: seeded sampling (or greedy decoding) with the model's key-value cache.

    rows = sample(model, [[5, 17, 9], [5, 2]], new_tokens=20, seed=0)      # each prompt's new token ids
    rows = sample(model, prompts, 20, seed=0, temperature=0)               # greedy

The random draws come from a torch.Generator seeded with `seed`, never from the global stream, so the same model,
prompts and seed give the same continuations, whatever ran before; two models asked with one seed draw from the
same stream. Prompts of several lengths are left-padded, so every row's next token sits in the last column.
Sampling stops early when every row has produced the end token (kept as the row's last token).
"""
from __future__ import annotations

import torch

from ...models import eval_mode, set_attention_backend


@torch.no_grad()
def sample(model, prompts: list[list[int]], new_tokens: int, seed: int = 0, temperature: float = 1.0,
           top_k: int = 0, eos: int | None = None, pad: int = 0, device=None) -> list[list[int]]:
    """Each prompt's continuation as token ids (at most `new_tokens`, ending at the end token `eos` when it comes),
    in order. temperature 0: greedy; top_k > 0: sampling among the k likeliest tokens only."""
    if not prompts:
        return []
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    limit = _positions(model)
    longest = max(len(p) for p in prompts)
    if limit:
        new_tokens = max(0, min(new_tokens, limit - longest))
    b = len(prompts)
    ids = torch.full((b, longest), pad, dtype=torch.long)
    mask = torch.zeros((b, longest), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, longest - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, longest - len(p):] = 1
    ids, mask = ids.to(device), mask.to(device)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    out = [[] for _ in prompts]
    done = torch.zeros(b, dtype=torch.bool)
    set_attention_backend(model, eager=False)
    with eval_mode(model):
        position = (mask.cumsum(-1) - 1).clamp_min(0)
        res = model(input_ids=ids, attention_mask=mask, position_ids=position, use_cache=True)
        past, logits = res.past_key_values, res.logits[:, -1].float()
        for _ in range(new_tokens):
            nxt = _draw(logits.cpu(), temperature, top_k, gen)                      # (B,)
            for i in range(b):
                if not done[i]:
                    out[i].append(int(nxt[i]))
                    if eos is not None and int(nxt[i]) == eos:
                        done[i] = True
            if bool(done.all()):
                break
            mask = torch.cat([mask, torch.ones((b, 1), dtype=mask.dtype, device=device)], 1)
            position = position[:, -1:] + 1
            res = model(input_ids=nxt[:, None].to(device), attention_mask=mask, position_ids=position,
                        past_key_values=past, use_cache=True)
            past, logits = res.past_key_values, res.logits[:, -1].float()
    return out


def _draw(logits: torch.Tensor, temperature: float, top_k: int, gen: torch.Generator) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)[:, 0]


def _positions(model) -> int:
    c = model.config
    return int(getattr(c, "n_positions", None) or getattr(c, "max_position_embeddings", 0) or 0)
