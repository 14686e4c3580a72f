"""A prompt the user types, continued by one model, with the attention it used for every token it wrote.

    result = continue_with_attention(model, tokenizer, "In the beginning", new_tokens=20, seed=0)
    result["continuation"]                # the text it wrote
    result["tokens"]                      # the prompt's tokens, then the generated ones
    result["maps"]                        # (L, H, T, T): row i is where position i looked to predict token i + 1

The maps are those of one pass over the prompt and the model's own continuation: under causal attention every
position reads only itself and the earlier ones, so row i is exactly the attention the model used when it wrote
token i + 1. Two models asked with the same seed draw from the same random stream (sampling.sample).
"""
from __future__ import annotations

import numpy as np
import torch

from ...capture import AttentionCapture
from ...errors import DataError
from ...models import set_attention_backend
from .modality import encode_passages
from .sampling import sample


def prompt_ids(tokenizer, text: str, context: int) -> list[int]:
    """A prompt's token ids (no end token), its last `context - 1` kept so that one new token fits."""
    text = " ".join(str(text or "").split())
    if not text:
        raise DataError("type a prompt for the models to continue")
    ids = encode_passages(tokenizer, [text])[0]
    if tokenizer.eos_token_id is not None and ids and ids[-1] == tokenizer.eos_token_id:
        ids = ids[:-1]
    if not ids:
        raise DataError("the prompt holds no token the model knows; type some words")
    return ids[-max(1, context - 1):]


@torch.inference_mode()
def continue_with_attention(model, tokenizer, text: str, new_tokens: int = 20, seed: int = 0,
                            temperature: float = 1.0, device="cpu", context: int | None = None) -> dict:
    """{"prompt": text, "continuation": str, "tokens": [...] (prompt then generated), "prompt_length": int,
    "maps": (L, H, T, T) float32} for one prompt."""
    device = torch.device(device)
    model.eval().to(device)
    limit = context or int(getattr(model.config, "n_positions", 0) or 0) or 1024
    prompt = prompt_ids(tokenizer, text, limit)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    new = sample(model, [prompt], max(1, min(new_tokens, limit - len(prompt))), seed=seed, temperature=temperature,
                 eos=eos, pad=pad, device=device)[0]
    ids = prompt + new
    set_attention_backend(model, eager=True)
    with AttentionCapture(model) as cap:
        model(input_ids=torch.tensor([ids], device=device), attention_mask=torch.ones((1, len(ids)), dtype=torch.long,
                                                                                      device=device))
        maps = cap.pop_stacked()[0].float().cpu().numpy().astype(np.float32)
    shown = [i for i in new if i != eos]
    return {"prompt": " ".join(str(text).split()), "continuation": tokenizer.decode(shown),
            "tokens": tokenizer.convert_ids_to_tokens(ids), "prompt_length": len(prompt), "maps": maps,
            "ended": bool(new) and new[-1] == eos}
