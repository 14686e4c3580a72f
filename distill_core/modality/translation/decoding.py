"""Translating with an encoder-decoder, and scoring translations with sacrebleu.

    hyps = translate(model, source_ids, tokenizer, device, beam=1, max_length=64)   # strings, in order
    scores = score(hyps, refs)      # {"bleu", "chrf", "sentence_chrf": [...], ...}

Decoding is greedy (beam 1) or beam search through transformers' generate, in length-sorted batches, on one thread:
each step's operations are too small to share (on a busy 2-core machine, two threads waited about 4 ms on each
other per operation: 500 test sentences took 17 to 68 s instead of 1.2 to 1.6 s). A translation may be at most twice
its source's tokens plus 5 (and at most max_length), so a model that has not yet learned to stop costs little. BLEU
is corpus BLEU (sacrebleu's 13a tokenisation); chrF is character n-gram F-score (order 6, beta 2), for the corpus
and for each sentence alone (the units the paired bootstrap resamples).
"""
from __future__ import annotations

import math
import threading
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from sacrebleu.metrics import BLEU, CHRF

from ...batching import make_batches
from ...evaluate import autocast_for
from ...models import eval_mode
from ...objectives import IGNORED


_THREADS = threading.Lock()
_decoding = {"depth": 0, "saved": 1}


@contextmanager
def one_thread():
    """torch on one thread while any decoding in this process runs; the thread count put back after the last."""
    with _THREADS:
        if _decoding["depth"] == 0:
            _decoding["saved"] = torch.get_num_threads()
            torch.set_num_threads(1)
        _decoding["depth"] += 1
    try:
        yield
    finally:
        with _THREADS:
            _decoding["depth"] -= 1
            if _decoding["depth"] == 0:
                torch.set_num_threads(_decoding["saved"])


def pad_rows(rows: list[list[int]], pad: int, fill: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of shape (B, T), T the longest row; padding holds `fill` (default `pad`)."""
    t = max(1, max((len(r) for r in rows), default=1))
    ids = torch.full((len(rows), t), pad if fill is None else fill, dtype=torch.long)
    mask = torch.zeros((len(rows), t), dtype=torch.long)
    for j, r in enumerate(rows):
        if r:
            ids[j, :len(r)] = torch.tensor(r, dtype=torch.long)
            mask[j, :len(r)] = 1
    return ids, mask


def decoder_rows(targets: list[list[int]], start: int) -> list[list[int]]:
    """The decoder's inputs for target ids ending with the end token: the start token, then every target but the
    last (teacher forcing: position j reads the tokens before target j)."""
    return [[start] + list(t[:-1]) for t in targets]


def new_tokens(source_length: int, max_length: int) -> int:
    """The most tokens a translation of a source of `source_length` tokens may take."""
    return max(1, min(max_length, 2 * source_length + 5))


def clean_output(ids: list[int], special: set[int], eos: int | None) -> list[int]:
    """Generated ids up to the first end token, special tokens left out."""
    out = []
    for i in ids:
        if eos is not None and i == eos:
            break
        if i not in special:
            out.append(int(i))
    return out


@torch.inference_mode()
def translate_ids(model, sources: list[list[int]], pad_id: int, device, beam: int = 1, max_length: int = 64,
                  batch_size: int = 64, mixed_precision: bool = True) -> list[list[int]]:
    """Each source's translation as token ids (no start, end or padding token), in the order of `sources`."""
    device = torch.device(device)
    out: list[list[int]] = [[] for _ in sources]
    if not sources:
        return out
    conf = model.config
    eos = conf.eos_token_id
    special = {x for x in (conf.pad_token_id, conf.decoder_start_token_id, eos, getattr(conf, "bos_token_id", None))
               if x is not None}
    with eval_mode(model), one_thread():
        for index in make_batches([len(x) for x in sources], max(1, batch_size // max(1, beam)), seed=None):
            ids, mask = pad_rows([sources[i] for i in index], pad_id)
            limit = new_tokens(ids.shape[1], max_length)
            with autocast_for(device, mixed_precision):
                gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), num_beams=beam,
                                     do_sample=False, max_length=limit + 1, min_length=0,
                                     early_stopping=beam > 1, num_return_sequences=1, length_penalty=1.0)
            for j, i in enumerate(index):
                out[i] = clean_output(gen[j, 1:].tolist(), special, eos)
    return out


def translate(model, sources: list[list[int]], tokenizer, device, beam: int = 1, max_length: int = 64,
              batch_size: int = 64, mixed_precision: bool = True) -> list[str]:
    """Each source's translation as text, in order."""
    ids = translate_ids(model, sources, tokenizer.pad_token_id, device, beam, max_length, batch_size,
                        mixed_precision)
    return [tokenizer.decode(x, skip_special_tokens=True).strip() for x in ids]


@torch.inference_mode()
def forced_loss(model, sources: list[list[int]], targets: list[list[int]], pad_id: int, start: int, device,
                batch_size: int = 64, mixed_precision: bool = True) -> float:
    """Cross-entropy per target token under teacher forcing on the references (the end token included)."""
    device = torch.device(device)
    total, count = 0.0, 0
    with eval_mode(model):
        for index in make_batches([len(x) for x in sources], batch_size, seed=None):
            ids, mask = pad_rows([sources[i] for i in index], pad_id)
            dec, dec_mask = pad_rows(decoder_rows([targets[i] for i in index], start), pad_id)
            labels, _ = pad_rows([targets[i] for i in index], pad_id, fill=IGNORED)
            with autocast_for(device, mixed_precision):
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                               decoder_input_ids=dec.to(device), decoder_attention_mask=dec_mask.to(device)).logits
            loss = F.cross_entropy(logits.float().flatten(0, 1), labels.to(device).flatten(), ignore_index=IGNORED,
                                   reduction="sum")
            total += float(loss)
            count += int((labels != IGNORED).sum())
    return total / max(1, count)


def score(hypotheses: list[str], references: list[str], sentences: bool = True) -> dict:
    """Corpus BLEU and chrF (0 to 100) of translations against one reference each, and with `sentences` the chrF of
    each sentence alone (its units) and their mean; with sacrebleu's signatures."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} translations for {len(references)} references")
    if not hypotheses:
        return {"bleu": 0.0, "chrf": 0.0, "sentence_chrf": [], "sentence_chrf_mean": 0.0, "examples": 0}
    bleu, chrf = BLEU(), CHRF()
    b = bleu.corpus_score(hypotheses, [references])
    c = chrf.corpus_score(hypotheses, [references])
    out = {"bleu": round(float(b.score), 4), "chrf": round(float(c.score), 4), "examples": len(hypotheses),
           "bleu_signature": str(bleu.get_signature()), "chrf_signature": str(chrf.get_signature())}
    if sentences:
        each = [round(float(chrf.sentence_score(h, [r]).score), 4) for h, r in zip(hypotheses, references)]
        out["sentence_chrf"] = each
        out["sentence_chrf_mean"] = round(sum(each) / len(each), 4)
    if not math.isfinite(out["bleu"]):
        out["bleu"] = 0.0
    return out
