"""Token tagging as the training loop reads it: the sentences' words split into sub-tokens once, each word's tag on
its first sub-token, length-bucketed batches, and entity-level scores.

Sub-words: the tokenizer splits a word into one or more sub-tokens (word_ids() of a fast tokenizer, reading the words
with is_split_into_words=True says which word each belongs to). A word's tag sits on its first sub-token; its other
sub-tokens and the special tokens ([CLS], [SEP], padding) get the label -100, which the losses and the scores leave
out. A model's answer for a word is its answer on that first sub-token. A sentence longer than data.max_length
sub-tokens is cut: the words past the cut are not read, count as O in the predictions, and are scored as such.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...batching import collate, make_batches
from ...capture import AttentionCapture
from ...evaluate import each_logits
from ...models import set_attention_backend
from ..base import Batch
from ..text.modality import TokenizedInputs
from .data import OUTSIDE, TagSplits
from .scores import entity_details, entity_units

IGNORE = -100                 # the label of a position no loss or score reads (F.cross_entropy's ignore_index)
METRIC = {"name": "entity F1", "short": "F1", "higher": True}


@dataclass
class Encoded:
    """Sentences as sub-token ids, with where each word begins."""
    ids: list[list[int]]               # sub-token ids per sentence, special tokens included
    starts: list[list[int]]            # per sentence, the position of each word's first sub-token; -1: not read
    truncated: int = 0                 # sentences cut at max_length
    words_cut: int = 0                 # words past a cut


def encode_words(tokenizer, sentences: list[list[str]], max_length: int) -> Encoded:
    """Sub-token ids of sentences given as words, and the position of each word's first sub-token (-1 for a word past
    max_length, or one the tokenizer reads as nothing)."""
    if not sentences:
        return Encoded([], [])
    sentences = [list(s) for s in sentences]
    enc = tokenizer(sentences, is_split_into_words=True, add_special_tokens=True, truncation=False)
    ids = [list(x) for x in enc["input_ids"]]
    word_ids = [enc.word_ids(i) for i in range(len(sentences))]
    long = [i for i, x in enumerate(ids) if len(x) > max_length]
    if long:        # only the long ones again, cut the tokenizer's way (its special tokens kept)
        cut = tokenizer([sentences[i] for i in long], is_split_into_words=True, add_special_tokens=True,
                        truncation=True, max_length=max_length)
        for k, i in enumerate(long):
            ids[i], word_ids[i] = list(cut["input_ids"][k]), cut.word_ids(k)
    starts, words_cut = [], 0
    for i, sentence in enumerate(sentences):
        first = [-1] * len(sentence)
        for pos, w in enumerate(word_ids[i]):
            if w is not None and first[w] < 0:
                first[w] = pos
        starts.append(first)
        if i in long:
            words_cut += sum(1 for s in first if s < 0)
    return Encoded(ids, starts, len(long), words_cut)


def targets_of(encoded: Encoded, tags: list[list[str]], tag_ids: dict[str, int]) -> list[list[int]]:
    """Per sentence and sub-token, the tag id on each word's first sub-token and IGNORE everywhere else."""
    out = []
    for ids, starts, sent in zip(encoded.ids, encoded.starts, tags, strict=True):
        row = [IGNORE] * len(ids)
        for pos, tag in zip(starts, sent, strict=True):
            if pos >= 0:
                row[pos] = tag_ids[tag]
        out.append(row)
    return out


def pad_targets(targets: list[list[int]], index, length: int) -> torch.Tensor:
    """(B, T) long labels of the sentences `index`, IGNORE on padding."""
    out = torch.full((len(index), length), IGNORE, dtype=torch.long)
    for j, i in enumerate(index):
        out[j, :len(targets[i])] = torch.tensor(targets[i], dtype=torch.long)
    return out


def token_logits(model, ids: list[list[int]], pad_id: int, device: torch.device, batch_size: int = 64,
                 mixed_precision: bool = True) -> list[torch.Tensor]:
    """(t_i, C) float32 logits of each sentence's sub-tokens on the CPU, in the order of `ids`."""
    return each_logits(model, ids, pad_id, device, batch_size, mixed_precision, per_token=True)


def score_tags(logits: list[torch.Tensor], targets: list[list[int]], starts: list[list[int]],
               gold: list[list[str]], tag_names: list[str]) -> dict:
    """What a model's logits on a split say, as Modality.predict returns it: "accuracy" (micro entity F1), "loss"
    (cross-entropy over the scored sub-tokens), "predictions" (tags per word: a word that was not read is O),
    "units" (per sentence [true positives, predicted, gold] entities), "statistic" "f1" and "details"."""
    flat_logits, flat_labels, pred = [], [], []
    for z, target, first, words in zip(logits, targets, starts, gold, strict=True):
        y = torch.tensor(target, dtype=torch.long)
        scored = y != IGNORE
        flat_logits.append(z[scored])
        flat_labels.append(y[scored])
        best = z.argmax(-1).tolist()
        pred.append([tag_names[best[s]] if s >= 0 else OUTSIDE for s in first])
    if flat_logits and sum(len(y) for y in flat_labels):
        z, y = torch.cat(flat_logits), torch.cat(flat_labels)
        loss = float(F.cross_entropy(z, y))
        right, count = int((z.argmax(-1) == y).sum()), int(len(y))
    else:
        loss, right, count = 0.0, 0, 0
    details = entity_details(gold, pred, (right, count))
    return {"accuracy": details["f1"], "loss": loss, "predictions": pred, "units": entity_units(gold, pred),
            "statistic": "f1", "details": details}


class TaggingModality(TokenizedInputs):
    """The sentences of each split encoded with the teacher's tokenizer once; every variant is fed the same batches.
    labels[split] holds each sentence's gold tags per word (what predictions.json stores beside the answers)."""
    kind = "tagging"
    saved_as = "tokenizer"      # the folder under a run's models/ that save() fills
    metric = METRIC

    def __init__(self, tokenizer, splits: TagSplits, max_length: int):
        self.tokenizer, self.splits, self.max_length = tokenizer, splits, max_length
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.tag_ids = {t: i for i, t in enumerate(splits.tag_names)}
        words = {"train": splits.train_words, "val": splits.val_words, "test": splits.test_words,
                 "extra": splits.extra_words}
        tags = {"train": splits.train_tags, "val": splits.val_tags, "test": splits.test_tags,
                "extra": splits.extra_tags}
        self.ids, self.starts, self.targets = {}, {}, {}
        truncated = words_cut = 0
        for split in words:
            enc = encode_words(tokenizer, words[split], max_length)
            self.ids[split], self.starts[split] = enc.ids, enc.starts
            self.targets[split] = targets_of(enc, tags[split], self.tag_ids)
            truncated, words_cut = truncated + enc.truncated, words_cut + enc.words_cut
        self.labels = {"train": splits.train_tags, "val": splits.val_tags, "test": splits.test_tags}
        self.notices = list(splits.notices) + [self.subword_notice()]
        if truncated:
            s = truncated != 1
            self.notices.append(f"{truncated:,} sentence{'s were' if s else ' was'} longer than {max_length} "
                                f"sub-tokens and {'were' if s else 'was'} cut: {words_cut:,} words past the cut are "
                                f"not read and count as O (raise data.max_length to read them)")
        self.probe_ids = [self.ids["val"][i] for i in splits.probe_indices]

    def subword_notice(self) -> str:
        """How words became sub-tokens, and which of them are scored."""
        split = "train" if self.ids["train"] else "val"
        words = sum(len(s) for s in self.starts[split])
        pieces = sum(sum(1 for t in row if t != IGNORE) for row in self.targets[split])
        subtokens = sum(len(x) for x in self.ids[split])
        return (f"each word is tagged on its first sub-token: the {words:,} words of the "
                f"{'training' if split == 'train' else 'validation'} sentences became {subtokens:,} sub-tokens with "
                f"the special tokens; the {subtokens - pieces:,} that are not a word's first (later pieces of a word, "
                f"[CLS], [SEP]) carry no tag and are left out of the losses and the scores")

    def size(self, split: str) -> int:
        return len(self.ids[split])

    def batches(self, split: str, batch_size: int, seed: int | None, buckets: bool = True) -> list:
        """Index batches of a split: shuffled with `seed` (None: in order), similar lengths together."""
        return make_batches([len(x) for x in self.ids[split]], batch_size, seed=seed, buckets=buckets)

    def batch(self, split: str, index, device: torch.device) -> Batch:
        """input_ids and attention_mask (B, T), labels (B, T) with IGNORE where nothing is scored."""
        input_ids, mask = collate(self.ids[split], index, self.pad_id)       # (B, T), (B, T)
        labels = pad_targets(self.targets[split], index, input_ids.shape[1])
        nb = device.type == "cuda"
        return Batch({"input_ids": input_ids.to(device, non_blocking=nb),
                      "attention_mask": mask.to(device, non_blocking=nb)},
                     mask.to(device, non_blocking=nb), labels.to(device, non_blocking=nb), list(index))

    def probe_batch(self, device: torch.device) -> Batch:
        input_ids, mask = collate(self.probe_ids, range(len(self.probe_ids)), self.pad_id)
        return Batch({"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}, mask.to(device),
                     pad_targets(self.targets["val"], self.splits.probe_indices, input_ids.shape[1]).to(device),
                     list(range(len(self.probe_ids))))

    @torch.inference_mode()
    def probe_maps(self, model, device: torch.device) -> list[np.ndarray]:
        """Attention probabilities of every layer on each probe sentence, over its sub-tokens: list of
        (L, H, t_i, t_i) float32."""
        model.eval()
        set_attention_backend(model, eager=True)
        batch = self.probe_batch(device)
        with AttentionCapture(model) as cap:
            model(**batch.inputs)
            maps = cap.pop_stacked().float().cpu()          # (B, L, H, T, T)
        return [maps[i, :, :, :len(x), :len(x)].numpy() for i, x in enumerate(self.probe_ids)]

    def probe_record(self) -> dict:
        """What the pages show about the probe sentences: the text, its words and their gold tags, the sub-tokens on
        the maps' axes, and which sub-token begins each word (-1: a word past the cut)."""
        s, k = self.splits, self.splits.probe_indices
        return {"texts": [" ".join(s.val_words[i]) for i in k], "words": [s.val_words[i] for i in k],
                "labels": [s.val_tags[i] for i in k], "label_names": s.tag_names, "entity_types": s.entity_types,
                "tokens": [self.tokenizer.convert_ids_to_tokens(x) for x in self.probe_ids],
                "word_starts": [self.starts["val"][i] for i in k], "scored": "first sub-token of each word"}

    def logits(self, model, split: str, device, mixed_precision: bool = True) -> list[torch.Tensor]:
        """(t_i, C) float32 logits of each sentence's sub-tokens, in split order."""
        return token_logits(model, self.ids[split], self.pad_id, device, mixed_precision=mixed_precision)

    def predict(self, model, split: str, device, mixed_precision: bool = True) -> dict:
        """Entity scores, answers and per-sentence units of a tagger on a split (score_tags)."""
        return score_tags(self.logits(model, split, device, mixed_precision), self.targets[split],
                          self.starts[split], self.labels[split], self.splits.tag_names)

    def evaluate(self, model, split: str, device, mixed_precision: bool = True) -> tuple[float, float]:
        """(micro entity F1, cross-entropy over the scored sub-tokens) of a tagger on a split."""
        out = self.predict(model, split, device, mixed_precision)
        return out["accuracy"], out["loss"]
