"""Reading a finished tagging run's models on a sentence the user types, and a tagged sentence as entity spans: what
the explorer and the pages show. No Streamlit here.

    words = words_of("Saw @paulwalk at the Empire State Building!")   # the words a tagger reads
    tokens, maps, tagged, starts = tag_sentence(run_models, words)    # every model's attention and tags
    spans(words, tagged["teacher"])         # [("Saw", None), ..., ("Empire State Building", "facility"), ...]
"""
from __future__ import annotations

import re

import numpy as np
import torch
from seqeval.metrics.sequence_labeling import get_entities

from ...capture import AttentionCapture
from ...models import set_attention_backend, usable_positions
from .data import OUTSIDE

# A typed sentence's words as the bundled tweets write them: links, @names and #tags whole, a word's clitic ('s, 'm)
# and each punctuation mark apart.
WORD_RE = re.compile(r"https?://\S+|[@#]\w+|\w+(?:[-.]\w+)*|'\w+|[^\w\s]")
MAX_SUBTOKENS = 512            # a typed sentence is cut here when the models could read more


def words_of(text: str) -> list[str]:
    """The words of a typed sentence, split as the tagged data split theirs (WORD_RE)."""
    return WORD_RE.findall(text or "")


def spans(words: list[str], tags: list[str]) -> list[tuple[str, str | None]]:
    """The sentence as consecutive spans, in order: each entity (its words joined by a space) with its type, and each
    word outside an entity alone with None. Entities are read as the scores read them (seqeval: an I- tag that
    does not continue an entity of its type starts one)."""
    if len(words) != len(tags):
        raise ValueError(f"{len(words)} words but {len(tags)} tags")
    entities = {start: (end, kind) for kind, start, end in get_entities(list(tags))}
    out, k = [], 0
    while k < len(words):
        if k in entities:
            end, kind = entities[k]
            out.append((" ".join(words[k:end + 1]), kind))
            k = end + 1
        else:
            out.append((words[k], None))
            k += 1
    return out


@torch.inference_mode()
def tag_sentence(rm, words: list[str]) -> tuple[list[str], dict[str, np.ndarray], dict[str, list[str]], list[int]]:
    """A sentence given as words, read by every model of a tagging run (rm: reopen.RunModels): its sub-tokens, each
    model's attention (L, H, T, T), each model's tag per word (read at the word's first sub-token; a word past the
    models' length is O), and the position of each word's first sub-token (-1: past the cut)."""
    words = [w for w in (str(x).strip() for x in words) if w]
    if not words:
        raise ValueError("type a sentence first")
    limit = min([MAX_SUBTOKENS, *(u for m in rm.models.values() if (u := usable_positions(m.config)))])
    enc = rm.tokenizer([words], is_split_into_words=True, truncation=True, max_length=limit, return_tensors="pt")
    starts = [-1] * len(words)
    for pos, w in enumerate(enc.word_ids(0)):
        if w is not None and starts[w] < 0:
            starts[w] = pos
    tokens = rm.tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    maps, tagged = {}, {}
    for name, model in rm.models.items():
        model.eval()
        set_attention_backend(model, eager=True)
        with AttentionCapture(model) as cap:
            logits = model(**inputs).logits[0]                         # (T, C)
            maps[name] = cap.pop_stacked()[0].float().numpy()          # (L, H, T, T)
        best = logits.argmax(-1).tolist()
        names = model.config.id2label
        tagged[name] = [str(names[best[s]]) if s >= 0 else OUTSIDE for s in starts]
    return tokens, maps, tagged, starts
