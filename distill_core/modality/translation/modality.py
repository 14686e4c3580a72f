"""Translation as the training loop reads it: the pairs encoded once with the teacher's tokenizer, length-bucketed
batches with teacher forcing, chrF and BLEU by decoding, and the three kinds of attention on the probe pairs.

A batch's inputs are the source (input_ids, attention_mask) and the decoder's inputs (decoder_input_ids: the start
token then the reference, decoder_attention_mask); its labels are the reference ids (B, Tt) with IGNORED (-100) at
padding, so logits are (B, Tt, V); Batch.mask is the source mask.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...batching import make_batches
from ...models import set_attention_backend
from ...objectives import IGNORED
from ...store import atomic_write_json
from ..base import Batch
from .capture import KindsCapture
from .data import TranslationSplits
from .decoding import decoder_rows, forced_loss, pad_rows, score, translate
from .models import KINDS
from .tokenizer import encode_sources, encode_targets

# The main score: chrF of each test sentence, averaged. It is what the paired bootstrap resamples, so the score, the
# best epoch and the verdicts agree (with corpus chrF as the score, a variant scored 18.1 against the baseline's 18.1
# was judged "better" by +1.4 points of mean sentence chrF); corpus chrF and BLEU are in the details. chrF rather than
# BLEU: on a few hundred short sentences chrF moves smoothly where BLEU's 4-gram matches are few and jump.
METRIC = {"name": "chrF (mean over sentences)", "short": "chrF", "higher": True}
MODALITY_FILE = "translation.json"      # beside the run's tokenizer: what reading its pairs again needs


class TranslationModality:
    """Encodes the pairs with the teacher's tokenizer once; every variant is fed the same batches.

    Validation and test are scored by translating (greedy, or `beam` search): the main score is the mean of the
    sentences' chrF / 100 (METRIC), with corpus chrF and BLEU beside it in the details. `teacher` (set by the task) is
    the model whose poor BLEU earns a warning in its details."""
    kind = "translation"
    saved_as = "tokenizer"      # the folder under a run's models/ that save() fills
    metric = METRIC

    def __init__(self, tokenizer, splits: TranslationSplits, max_length: int, start_id: int, beam: int = 1,
                 poor_bleu: float = 10.0, encode_train: bool = True):
        self.tokenizer, self.splits, self.max_length = tokenizer, splits, max_length
        self.start_id, self.beam, self.poor_bleu = int(start_id), int(beam), float(poor_bleu)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.teacher = None
        self._teacher_results: dict[str, dict] = {}
        texts = {"train": (splits.train_sources, splits.train_targets) if encode_train else ([], []),
                 "val": (splits.val_sources, splits.val_targets), "test": (splits.test_sources, splits.test_targets)}
        self.ids, self.targets, cut = {}, {}, 0
        for split, (sources, targets) in texts.items():
            self.ids[split], a = encode_sources(tokenizer, sources, max_length)
            self.targets[split], b = encode_targets(tokenizer, targets, max_length)
            cut += a + b if split == "train" else 0
        self.labels = {"train": list(texts["train"][1]), "val": list(splits.val_targets),
                       "test": list(splits.test_targets)}
        self.notices = list(splits.notices)
        if cut:
            self.notices.append(f"{cut:,} training sentence{'s were' if cut != 1 else ' was'} longer than "
                                f"{max_length} tokens and {'were' if cut != 1 else 'was'} cut (data.max_length)")
        self.probe_sources = [self.ids["val"][i] for i in splits.probe_indices]
        self.probe_targets = [self.targets["val"][i] for i in splits.probe_indices]

    # ---- batches ------------------------------------------------------------------------------------------------
    def size(self, split: str) -> int:
        return len(self.ids[split])

    def batches(self, split: str, batch_size: int, seed: int | None, buckets: bool = True) -> list:
        """Index batches of a split: shuffled with `seed` (None: in order), similar lengths together (the longer of
        source and target)."""
        lengths = [max(len(s), len(t)) for s, t in zip(self.ids[split], self.targets[split])]
        return make_batches(lengths, batch_size, seed=seed, buckets=buckets)

    def encode_batch(self, sources: list[list[int]], targets: list[list[int]], index, device) -> Batch:
        """A batch of pairs (sources, targets as lists of ids) with teacher forcing on the targets."""
        device = torch.device(device)
        ids, mask = pad_rows(sources, self.pad_id)
        dec, dec_mask = pad_rows(decoder_rows(targets, self.start_id), self.pad_id)
        labels, _ = pad_rows(targets, self.pad_id, fill=IGNORED)
        nb = device.type == "cuda"
        inputs = {"input_ids": ids.to(device, non_blocking=nb), "attention_mask": mask.to(device, non_blocking=nb),
                  "decoder_input_ids": dec.to(device, non_blocking=nb),
                  "decoder_attention_mask": dec_mask.to(device, non_blocking=nb)}
        return Batch(inputs, inputs["attention_mask"], labels.to(device, non_blocking=nb), list(index))

    def batch(self, split: str, index, device: torch.device) -> Batch:
        index = list(index)
        return self.encode_batch([self.ids[split][i] for i in index], [self.targets[split][i] for i in index],
                                 index, device)

    def probe_batch(self, device) -> Batch:
        return self.encode_batch(self.probe_sources, self.probe_targets, range(len(self.probe_sources)), device)

    # ---- attention on the probe pairs ---------------------------------------------------------------------------
    @torch.inference_mode()
    def probe_maps(self, model, device) -> dict[str, list[np.ndarray]]:
        """Every layer's attention of each kind on each probe pair, teacher-forced on its reference: {"cross": [(L,
        H, t_i, s_i)], "encoder": [(L, H, s_i, s_i)], "decoder": [(L, H, t_i, t_i)]} float32, the cross-attention
        (the primary kind) first; s_i source tokens, t_i target tokens."""
        model.eval()
        set_attention_backend(model, eager=True)
        batch = self.probe_batch(device)
        with KindsCapture(model, {k: None for k in KINDS}) as cap:
            model(**batch.inputs)
            maps = {k: v.float().cpu() for k, v in cap.pop().items()}
        out: dict[str, list[np.ndarray]] = {k: [] for k in KINDS}
        for i, (s, t) in enumerate(zip(self.probe_sources, self.probe_targets)):
            s, t = len(s), len(t)
            out["cross"].append(maps["cross"][i, :, :, :t, :s].numpy())
            out["encoder"].append(maps["encoder"][i, :, :, :s, :s].numpy())
            out["decoder"].append(maps["decoder"][i, :, :, :t, :t].numpy())
        return out

    def probe_record(self) -> dict:
        """The probe pairs as the pages show them: source texts ("texts") and references ("labels"), the source
        tokens (the columns of the cross-attention and the encoder's maps), the target tokens each decoder step
        predicts (the rows of the cross and decoder maps) and the decoder's input tokens (the decoder map's
        columns)."""
        s, tok = self.splits, self.tokenizer
        return {"texts": [s.val_sources[i] for i in s.probe_indices],
                "labels": [s.val_targets[i] for i in s.probe_indices], "label_names": [],
                "tokens": [tok.convert_ids_to_tokens(x) for x in self.probe_sources],
                "target_tokens": [tok.convert_ids_to_tokens(x) for x in self.probe_targets],
                "decoder_tokens": [tok.convert_ids_to_tokens(x) for x in decoder_rows(self.probe_targets,
                                                                                        self.start_id)],
                "languages": list(s.languages), "data_name": s.name}

    # ---- scores -------------------------------------------------------------------------------------------------
    def translations(self, model, split: str, device, mixed_precision: bool = True, beam: int | None = None,
                     limit: int | None = None) -> list[str]:
        """The model's translation of each source of a split (the first `limit`), in order."""
        sources = self.ids[split] if limit is None else self.ids[split][:limit]
        return self.translations_of(model, sources, device, mixed_precision, beam)

    def translations_of(self, model, sources: list[list[int]], device, mixed_precision: bool = True,
                        beam: int | None = None) -> list[str]:
        """The model's translation of each source (token ids), in order."""
        return translate(model, sources, self.tokenizer, device, beam=self.beam if beam is None else beam,
                         max_length=self.max_length, mixed_precision=mixed_precision)

    def evaluate(self, model, split: str, device, mixed_precision: bool = True) -> tuple[float, float]:
        """(mean sentence chrF / 100 of greedy translations, cross-entropy per target token under teacher forcing)
        on a split: what picks each variant's best epoch. Greedy whatever the beam: it runs every epoch for every
        variant."""
        hyps = self.translations(model, split, device, mixed_precision, beam=1)
        each = score(hyps, self.labels[split])["sentence_chrf"]
        chrf = float(np.mean(each)) / 100 if each else 0.0
        return chrf, forced_loss(model, self.ids[split], self.targets[split], self.pad_id, self.start_id, device,
                                 mixed_precision=mixed_precision)

    def predict(self, model, split: str, device, mixed_precision: bool = True) -> dict:
        """{"accuracy": mean sentence chrF / 100, "loss", "predictions": the translations, "units": each sentence's
        chrF / 100, "statistic": "mean", "details": {"bleu", "chrf" (corpus), "sentence_chrf_mean", "beam", ...}} of a
        split, decoded with the session's beam. The teacher's, which never changes in a session, is computed once."""
        if model is self.teacher and split in self._teacher_results:
            return self._teacher_results[split]
        result = self._predict(model, split, device, mixed_precision)
        if model is self.teacher:
            self._teacher_results[split] = result
        return result

    def _predict(self, model, split: str, device, mixed_precision: bool) -> dict:
        hyps = self.translations(model, split, device, mixed_precision)
        scores = score(hyps, self.labels[split])
        loss = forced_loss(model, self.ids[split], self.targets[split], self.pad_id, self.start_id, device,
                           mixed_precision=mixed_precision)
        details = {"bleu": scores["bleu"], "chrf": scores["chrf"], "sentence_chrf_mean": scores["sentence_chrf_mean"],
                   "beam": self.beam, "decoding": "greedy" if self.beam == 1 else f"beam search ({self.beam})",
                   "examples": scores["examples"], "bleu_signature": scores.get("bleu_signature"),
                   "chrf_signature": scores.get("chrf_signature"), "split": split}
        if model is self.teacher and scores["bleu"] < self.poor_bleu:
            details["warning"] = poor_teacher_warning(scores["bleu"], self.poor_bleu, split)
        units = [u / 100 for u in scores["sentence_chrf"]]
        return {"accuracy": float(np.mean(units)) if units else 0.0, "loss": loss, "predictions": hyps,
                "units": [[u] for u in units], "statistic": "mean", "details": details}

    def logits(self, model, split: str, device, mixed_precision: bool = True) -> torch.Tensor:
        raise NotImplementedError("a translation session learns from one teacher: no ensemble reads its logits")

    def latency_examples(self, device) -> list[dict]:
        """Each probe pair alone (a batch of 1) as a model's keyword arguments: the source and the reference's
        decoder inputs, one teacher-forced pass (what latency.measure_latency times)."""
        out = []
        for k in range(len(self.probe_sources)):
            b = self.encode_batch([self.probe_sources[k]], [self.probe_targets[k]], [k], device)
            out.append(dict(b.inputs))
        return out

    def save(self, folder) -> None:
        """What a run keeps to read its pairs again: the tokenizer, and the decoder's start token beside it."""
        folder = Path(folder)
        self.tokenizer.save_pretrained(folder)
        atomic_write_json(folder / MODALITY_FILE, {"decoder_start_token_id": self.start_id,
                                                   "max_length": self.max_length, "beam": self.beam})


def poor_teacher_warning(bleu: float, threshold: float, split: str = "validation") -> str:
    """What a reader must know when the teacher translates poorly."""
    where = {"val": "validation", "test": "test"}.get(split, split)
    return (f"the teacher's {where} BLEU is {bleu:.1f}, under {threshold:g}: the teacher is the problem, not the "
            f"students. Its translations are poor, so what the students learn from it is poor too; train it longer "
            f"(translation.teacher_epochs), on more pairs (translation.max_words, data.train_size), or use a "
            f"pretrained Marian model as teacher.source")
