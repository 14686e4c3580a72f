"""Text: a tokenizer, the three splits encoded once, length-bucketed batches padded to their longest text."""
from __future__ import annotations

import numpy as np
import torch

from ...batching import collate, encode, make_batches
from ...capture import AttentionCapture
from ...evaluate import accuracy_and_loss, evaluate, predict_logits
from ...models import set_attention_backend
from ..base import Batch
from .data import Splits


class TokenizedInputs:
    """What every modality of tokenised sentences does alike (text classification, tagging): the probe inputs one
    at a time for latency, and the tokenizer kept with a run. Needs `probe_ids`, `pad_id` and `tokenizer`."""

    def latency_examples(self, device) -> list[dict]:
        """Each probe sentence alone (a batch of 1, no padding) as a model's keyword arguments, input_ids and
        attention_mask (1, t_i), on `device`: what latency.measure_latency times."""
        out = []
        for k in range(len(self.probe_ids)):
            input_ids, mask = collate(self.probe_ids, [k], self.pad_id)
            out.append({"input_ids": input_ids.to(device), "attention_mask": mask.to(device)})
        return out

    def save(self, folder) -> None:
        """What a run keeps to read its inputs again (the tokenizer)."""
        self.tokenizer.save_pretrained(folder)


class TextModality(TokenizedInputs):
    """Encodes the splits with the teacher's tokenizer once; every variant is fed the same batches."""
    kind = "text"
    saved_as = "tokenizer"      # the folder under a run's models/ that save() fills

    def __init__(self, tokenizer, splits: Splits, max_length: int):
        self.tokenizer, self.splits, self.max_length = tokenizer, splits, max_length
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.ids = {}
        self.ids["train"], n_trunc = encode(tokenizer, splits.train_texts, max_length)
        self.ids["val"], _ = encode(tokenizer, splits.val_texts, max_length)
        self.ids["test"], _ = encode(tokenizer, splits.test_texts, max_length)
        self.ids["extra"], _ = encode(tokenizer, splits.extra_texts, max_length)   # the teacher may learn from these
        self.labels = {"train": splits.train_labels, "val": splits.val_labels, "test": splits.test_labels}
        self.notices = list(splits.notices)
        if n_trunc:
            s = n_trunc != 1
            self.notices.append(f"{n_trunc} training text{'s were' if s else ' was'} longer than {max_length} tokens "
                                f"and {'were' if s else 'was'} truncated")
        self.probe_ids = [self.ids["val"][i] for i in splits.probe_indices]

    def size(self, split: str) -> int:
        return len(self.ids[split])

    def batches(self, split: str, batch_size: int, seed: int | None, buckets: bool = True) -> list:
        """Index batches of a split: shuffled with `seed` (None: in order), similar lengths together."""
        return make_batches([len(x) for x in self.ids[split]], batch_size, seed=seed, buckets=buckets)

    def batch(self, split: str, index, device: torch.device) -> Batch:
        input_ids, mask = collate(self.ids[split], index, self.pad_id)       # (B, T), (B, T)
        labels = torch.tensor([self.labels[split][i] for i in index], dtype=torch.long)
        nb = device.type == "cuda"
        return Batch({"input_ids": input_ids.to(device, non_blocking=nb),
                      "attention_mask": mask.to(device, non_blocking=nb)},
                     mask.to(device, non_blocking=nb), labels.to(device, non_blocking=nb), list(index))

    def probe_batch(self, device: torch.device) -> Batch:
        input_ids, mask = collate(self.probe_ids, range(len(self.probe_ids)), self.pad_id)
        return Batch({"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}, mask.to(device),
                     torch.zeros(len(self.probe_ids), dtype=torch.long), list(range(len(self.probe_ids))))

    def probe_lengths(self) -> list[int]:
        return [len(x) for x in self.probe_ids]

    @torch.inference_mode()
    def probe_maps(self, model, device: torch.device) -> list[np.ndarray]:
        """Attention probabilities of every layer on each probe example: list of (L, H, t_i, t_i) float32."""
        model.eval()
        set_attention_backend(model, eager=True)
        batch = self.probe_batch(device)
        with AttentionCapture(model) as cap:
            model(**batch.inputs)
            maps = cap.pop_stacked().float().cpu()          # (B, L, H, T, T)
        return [maps[i, :, :, :n, :n].numpy() for i, n in enumerate(self.probe_lengths())]

    def probe_record(self) -> dict:
        """What the pages show about the probe examples: texts, labels and the tokens on the axes."""
        s = self.splits
        return {"texts": [s.val_texts[i] for i in s.probe_indices],
                "labels": [s.val_labels[i] for i in s.probe_indices], "label_names": s.label_names,
                "tokens": [self.tokenizer.convert_ids_to_tokens(x) for x in self.probe_ids]}

    def evaluate(self, model, split: str, device, mixed_precision: bool = True) -> tuple[float, float]:
        """(accuracy, cross-entropy) of a classifier on a split."""
        return evaluate(model, self.ids[split], self.labels[split], self.pad_id, device,
                        mixed_precision=mixed_precision)

    def predict(self, model, split: str, device, mixed_precision: bool = True) -> dict:
        """{"accuracy", "loss", "predictions"} of a classifier on a split (predictions in split order)."""
        logits = self.logits(model, split, device, mixed_precision)
        acc, loss = accuracy_and_loss(logits, self.labels[split])
        return {"accuracy": acc, "loss": loss, "predictions": logits.argmax(-1).tolist()}

    def logits(self, model, split: str, device, mixed_precision: bool = True) -> torch.Tensor:
        """(N, C) float32 logits of a split, in split order."""
        return predict_logits(model, self.ids[split], self.pad_id, device, mixed_precision=mixed_precision)
