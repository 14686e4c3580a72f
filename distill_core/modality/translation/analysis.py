"""A sentence the user types, translated by one model, with the attention it used.

    result = translate_with_attention(model, tokenizer, "In the beginning God created the heavens.", "cpu")
    result["translation"]                 # the model's own greedy (or beam) translation
    result["source_tokens"], result["target_tokens"]
    result["maps"]["cross"]               # (L, H, generated tokens, source tokens): where each generated token looked

The maps are those of a teacher-forced pass on the model's own translation: under causal attention every position
reads only earlier ones, so each row is the attention the model used when it generated that token.
"""
from __future__ import annotations

import numpy as np
import torch

from ...errors import DataError
from ...models import set_attention_backend
from .capture import KindsCapture
from .decoding import clean_output, decoder_rows, new_tokens, pad_rows
from .models import KINDS
from .tokenizer import encode_sources


@torch.inference_mode()
def translate_with_attention(model, tokenizer, text: str, device="cpu", beam: int = 1, max_length: int = 64) -> dict:
    """{"source": text, "translation": str, "source_tokens": [...], "target_tokens": [...] (each generated token and
    the end token: the rows of the cross and decoder maps), "decoder_tokens": [...] (the decoder's inputs: the
    columns of the decoder map), "maps": {kind: (L, H, rows, columns) float32}} for one sentence."""
    text = " ".join(str(text or "").split())
    if not text:
        raise DataError("type a sentence to translate")
    device = torch.device(device)
    model.eval().to(device)
    conf = model.config
    source = encode_sources(tokenizer, [text], max_length)[0][0]
    ids, mask = pad_rows([source], tokenizer.pad_token_id)
    set_attention_backend(model, eager=False)
    gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), num_beams=beam, do_sample=False,
                         max_length=new_tokens(len(source), max_length) + 1)
    special = {x for x in (conf.pad_token_id, conf.decoder_start_token_id, conf.eos_token_id) if x is not None}
    generated = clean_output(gen[0, 1:].tolist(), special, conf.eos_token_id)
    target = generated + [conf.eos_token_id]
    dec, dec_mask = pad_rows(decoder_rows([target], conf.decoder_start_token_id), tokenizer.pad_token_id)
    set_attention_backend(model, eager=True)
    with KindsCapture(model, {k: None for k in KINDS}) as cap:
        model(input_ids=ids.to(device), attention_mask=mask.to(device), decoder_input_ids=dec.to(device),
              decoder_attention_mask=dec_mask.to(device))
        maps = {k: v[0].float().cpu().numpy().astype(np.float32) for k, v in cap.pop().items()}
    return {"source": text, "translation": tokenizer.decode(generated, skip_special_tokens=True).strip(),
            "source_tokens": tokenizer.convert_ids_to_tokens(source),
            "target_tokens": tokenizer.convert_ids_to_tokens(target),
            "decoder_tokens": tokenizer.convert_ids_to_tokens(dec[0].tolist()), "maps": maps}
