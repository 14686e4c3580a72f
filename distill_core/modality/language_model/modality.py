"""A language model as the training loop reads it: the passages encoded once with the teacher's tokenizer, cut
into blocks of the context length, and scored passage by passage.

Training blocks are cut from the training passages joined end to end (each passage ends with the end token), every
block `context + 1` tokens long and the next one starting where it stopped, so each token is predicted once.
Validation and test passages are cut alone, so every score belongs to one passage: its blocks' tokens predicted
from the earlier tokens of the same block. A batch's inputs are input_ids (B, T) and attention_mask; its labels are
the next tokens (B, T) with IGNORED (-100) at padding, so logits (B, T, V) line up with them and the per-token losses
(ce, logit_kd, ...) read them as they read tagging's.

Scores, per model and split: next-token accuracy (the main score: the share of tokens whose likeliest prediction is
the true next token), perplexity (exp of the mean negative log-likelihood per token), and, against the teacher, the
token-level KL(teacher || model) and the top-1 agreement (the share of tokens where both rank the same token first).
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...batching import make_batches
from ...evaluate import autocast_for
from ...models import eval_mode, set_attention_backend
from ...objectives import IGNORED
from ...store import atomic_write_json
from ..base import Batch
from .data import LMSplits

METRIC = {"name": "next-token accuracy", "short": "next-token acc.", "higher": True}
MODALITY_FILE = "language_model.json"   # beside the run's tokenizer: what reading its passages again needs
PROBE_TOKENS = 24                       # the opening of each probe passage whose attention the explorer shows
SAMPLE_PROMPT = 8                       # its first tokens: the fixed prompt each model continues
SAMPLE_SEED = 0                         # every model continues the fixed prompts from this seed


def encode_passages(tokenizer, texts: list[str]) -> list[list[int]]:
    """Each passage's token ids, ending with the end token."""
    if not texts:
        return []
    ids = [list(x) for x in tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]]
    eos = tokenizer.eos_token_id
    return [x + ([eos] if eos is not None else []) for x in ids]


def stream_blocks(passages: list[list[int]], context: int) -> list[list[int]]:
    """Blocks of context + 1 tokens cut from the passages joined end to end (the last, shorter block kept when it
    predicts at least one token)."""
    flat = [t for p in passages for t in p]
    out = [flat[k:k + context + 1] for k in range(0, max(0, len(flat) - 1), context)]
    return [b for b in out if len(b) >= 2]


def passage_blocks(passages: list[list[int]], context: int) -> tuple[list[list[int]], list[int]]:
    """Each passage alone cut into blocks of at most context + 1 tokens (consecutive blocks share one token, so every
    token after the first is predicted once), and the passage of each block."""
    blocks, owner = [], []
    for j, p in enumerate(passages):
        for k in range(0, max(1, len(p) - 1), context):
            b = p[k:k + context + 1]
            if len(b) >= 2:
                blocks.append(b)
                owner.append(j)
    return blocks, owner


def block_inputs(blocks: list[list[int]], pad: int, device) -> dict:
    """Blocks of token ids as a causal model's inputs: input_ids and attention_mask (B, T) hold each block's first
    len - 1 tokens, "labels" (B, T) the next token at each position, IGNORED at padding."""
    t = max(1, max(len(b) for b in blocks) - 1)
    ids = torch.full((len(blocks), t), pad, dtype=torch.long)
    mask = torch.zeros((len(blocks), t), dtype=torch.long)
    labels = torch.full((len(blocks), t), IGNORED, dtype=torch.long)
    for j, b in enumerate(blocks):
        n = len(b) - 1
        if n > 0:
            ids[j, :n] = torch.tensor(b[:-1], dtype=torch.long)
            labels[j, :n] = torch.tensor(b[1:], dtype=torch.long)
            mask[j, :n] = 1
    device = torch.device(device)
    nb = device.type == "cuda"
    return {"input_ids": ids.to(device, non_blocking=nb), "attention_mask": mask.to(device, non_blocking=nb),
            "labels": labels.to(device, non_blocking=nb)}


class LMModality:
    """Encodes the passages with the teacher's tokenizer once; every variant is fed the same blocks. `teacher` (set
    by the task) is the model the KL and agreement are measured against."""
    kind = "language_model"
    saved_as = "tokenizer"
    metric = METRIC

    def __init__(self, tokenizer, splits: LMSplits, context: int, encode_train: bool = True, samples: int = 40,
                 sample_temperature: float = 1.0):
        self.tokenizer, self.splits, self.context = tokenizer, splits, int(context)
        self.samples, self.sample_temperature = int(samples), float(sample_temperature)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.teacher = None
        self._teacher_results: dict[str, dict] = {}
        self.passages = {"train": encode_passages(tokenizer, splits.train) if encode_train else [],
                         "val": encode_passages(tokenizer, splits.val), "test": encode_passages(tokenizer, splits.test)}
        self.blocks = {"train": stream_blocks(self.passages["train"], self.context)}
        self.owner = {"train": []}
        for split in ("val", "test"):
            self.blocks[split], self.owner[split] = passage_blocks(self.passages[split], self.context)
        self.labels = {"train": [], "val": list(splits.val), "test": list(splits.test)}
        self.notices = list(splits.notices)
        self.probe_ids = [self.passages["val"][i][:PROBE_TOKENS + 1] for i in splits.probe_indices]
        # the fixed prompts every model continues at the end of a session (seeded alike): each probe passage's opening
        self.sample_prompts = [self._whole_words(b) for b in self.probe_ids]

    def _whole_words(self, block: list[int]) -> list[int]:
        """A probe passage's first SAMPLE_PROMPT tokens or fewer, cut where a word ends (the next token starts a new
        word), so that a continuation starts with a word of its own."""
        tokens = self.tokenizer.convert_ids_to_tokens(block)
        n = min(SAMPLE_PROMPT, len(block) - 1)
        ends = [k for k in range(2, n + 1) if str(tokens[k]).startswith(("▁", "Ġ"))]
        return block[:ends[-1] if ends else n]

    # ---- batches ------------------------------------------------------------------------------------------------
    def size(self, split: str) -> int:
        """Training: the blocks (one step reads batch_size of them); validation and test: the passages, the units
        every score and comparison is made of."""
        return len(self.blocks[split]) if split == "train" else len(self.passages[split])

    def tokens(self, split: str) -> int:
        """The tokens predicted in a split."""
        return sum(len(b) - 1 for b in self.blocks[split])

    def batches(self, split: str, batch_size: int, seed: int | None, buckets: bool = True) -> list:
        return make_batches([len(b) for b in self.blocks[split]], batch_size, seed=seed, buckets=buckets)

    def encode_blocks(self, blocks: list[list[int]], index, device) -> Batch:
        """Blocks of token ids as a batch: the first len - 1 tokens in, the last len - 1 as labels."""
        x = block_inputs(blocks, self.pad_id, device)
        labels = x.pop("labels")
        return Batch(x, x["attention_mask"], labels, list(index))

    def batch(self, split: str, index, device) -> Batch:
        index = list(index)
        return self.encode_blocks([self.blocks[split][i] for i in index], index, device)

    def probe_batch(self, device) -> Batch:
        return self.encode_blocks(self.probe_ids, range(len(self.probe_ids)), device)

    # ---- attention on the probe passages ------------------------------------------------------------------------
    @torch.inference_mode()
    def probe_maps(self, model, device) -> list[np.ndarray]:
        """Every layer's causal attention on each probe passage's opening: [(L, H, T_i, T_i)] float32, zero above the
        diagonal."""
        from ...capture import AttentionCapture
        model.eval()
        set_attention_backend(model, eager=True)
        batch = self.probe_batch(device)
        with AttentionCapture(model) as cap:
            model(**batch.inputs)
            maps = cap.pop_stacked().float().cpu()
        return [maps[i, :, :, :len(b) - 1, :len(b) - 1].numpy() for i, b in enumerate(self.probe_ids)]

    def probe_record(self) -> dict:
        """The probe passages as the pages show them: each opening's text ("texts"), its tokens (the rows and
        columns of the maps) and the token each position predicts ("next_tokens")."""
        tok = self.tokenizer
        return {"texts": [tok.decode(b[:-1]) for b in self.probe_ids],
                "labels": [self.splits.val[i] for i in self.splits.probe_indices], "label_names": [],
                "tokens": [tok.convert_ids_to_tokens(b[:-1]) for b in self.probe_ids],
                "next_tokens": [tok.convert_ids_to_tokens(b[1:]) for b in self.probe_ids],
                "data_name": self.splits.name, "context": self.context,
                "sample_prompts": [tok.decode(p) for p in self.sample_prompts]}

    # ---- scores -------------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def passage_scores(self, model, split: str, device, mixed_precision: bool = True, teacher=None,
                       batch_size: int = 32) -> dict[str, np.ndarray]:
        """Per passage of a split: "correct" (tokens whose top-1 prediction is the true next token), "tokens",
        "nll" (summed negative log-likelihood), and against `teacher`: "kl" (summed KL(teacher || model) per token)
        and "agree" (tokens whose top-1 matches the teacher's)."""
        device = torch.device(device)
        n = len(self.passages[split])
        out = {k: np.zeros(n) for k in ("correct", "tokens", "nll", "kl", "agree")}
        owner = np.asarray(self.owner[split], dtype=np.int64)
        models = [model] + ([teacher] if teacher is not None else [])
        for m in models:
            set_attention_backend(m, eager=False)
        with eval_mode(model), (eval_mode(teacher) if teacher is not None else nullcontext()):
            for index in make_batches([len(b) for b in self.blocks[split]], batch_size, seed=None):
                b = self.batch(split, index, device)
                keep = b.labels != IGNORED
                with autocast_for(device, mixed_precision):
                    logits = model(**b.inputs).logits.float()
                    t_logits = teacher(**b.inputs).logits.float() if teacher is not None else None
                logp = F.log_softmax(logits, -1)
                nll = -logp.gather(-1, b.labels.clamp_min(0)[..., None])[..., 0]
                top = logits.argmax(-1)
                rows = owner[index]
                self._add(out["correct"], rows, ((top == b.labels) & keep))
                self._add(out["tokens"], rows, keep)
                self._add(out["nll"], rows, nll * keep)
                if t_logits is not None:
                    t_logp = F.log_softmax(t_logits, -1)
                    kl = (t_logp.exp() * (t_logp - logp)).sum(-1)
                    self._add(out["kl"], rows, kl * keep)
                    self._add(out["agree"], rows, (top == t_logits.argmax(-1)) & keep)
        return out

    @staticmethod
    def _add(target: np.ndarray, rows: np.ndarray, values: torch.Tensor) -> None:
        np.add.at(target, rows, values.float().sum(-1).cpu().numpy())

    def evaluate(self, model, split: str, device, mixed_precision: bool = True) -> tuple[float, float]:
        """(next-token accuracy, mean negative log-likelihood per token) on a split."""
        s = self.passage_scores(model, split, device, mixed_precision)
        tokens = max(1.0, s["tokens"].sum())
        return float(s["correct"].sum() / tokens), float(s["nll"].sum() / tokens)

    def predict(self, model, split: str, device, mixed_precision: bool = True) -> dict:
        """{"accuracy": next-token accuracy, "loss": mean NLL per token, "predictions": each passage's perplexity,
        "units": per passage [correct, tokens] (statistic "ratio": summed, then divided), "details": {"perplexity",
        "kl_to_teacher", "agreement", "tokens", "passages", "passage_units": per passage [nll, kl, agree, tokens]}}.
        The teacher's, which never changes in a session, is computed once."""
        if model is self.teacher and split in self._teacher_results:
            return self._teacher_results[split]
        teacher = self.teacher if (self.teacher is not None and model is not self.teacher) else None
        s = self.passage_scores(model, split, device, mixed_precision, teacher=teacher)
        tokens = float(max(1.0, s["tokens"].sum()))
        nll = float(s["nll"].sum() / tokens)
        is_teacher = model is self.teacher
        kl = 0.0 if is_teacher else float(s["kl"].sum() / tokens) if teacher is not None else None
        agree = 1.0 if is_teacher else float(s["agree"].sum() / tokens) if teacher is not None else None
        if is_teacher:
            s["agree"] = s["tokens"].copy()
        each = [round(math.exp(a / max(1.0, t)), 4) for a, t in zip(s["nll"], s["tokens"])]
        details = {"perplexity": round(math.exp(nll), 4), "nll": round(nll, 6), "kl_to_teacher": kl,
                   "agreement": agree, "tokens": int(tokens), "passages": len(each), "split": split,
                   "passage_units": [[round(float(a), 5), round(float(k), 5), int(g), int(t)] for a, k, g, t
                                     in zip(s["nll"], s["kl"], s["agree"], s["tokens"])]}
        if split == "test" and self.sample_prompts:
            details["samples"] = self.continuations(model, device)
        result = {"accuracy": float(s["correct"].sum() / tokens), "loss": nll, "predictions": each,
                  "units": [[int(c), int(t)] for c, t in zip(s["correct"], s["tokens"])], "statistic": "ratio",
                  "details": details}
        if is_teacher:
            self._teacher_results[split] = result
        return result

    def continuations(self, model, device) -> list[str]:
        """The model's continuation of each fixed prompt (sample_prompts), `samples` new tokens, sampled from
        SAMPLE_SEED at sample_temperature (0: greedy): every model draws from the same stream."""
        from .sampling import sample
        rows = sample(model, self.sample_prompts, self.samples, seed=SAMPLE_SEED, temperature=self.sample_temperature,
                      eos=self.tokenizer.eos_token_id, pad=self.pad_id, device=device)
        eos = self.tokenizer.eos_token_id
        return [self.tokenizer.decode([i for i in r if i != eos]) for r in rows]

    def logits(self, model, split: str, device, mixed_precision: bool = True) -> torch.Tensor:
        raise NotImplementedError("a language-model session learns from one teacher: no ensemble reads its logits")

    def latency_examples(self, device) -> list[dict]:
        """Each probe passage's opening alone (a batch of 1): one forward pass over it."""
        return [dict(self.encode_blocks([b], [k], device).inputs) for k, b in enumerate(self.probe_ids)]

    def save(self, folder) -> None:
        folder = Path(folder)
        self.tokenizer.save_pretrained(folder)
        atomic_write_json(folder / MODALITY_FILE, {"context": self.context, "samples": self.samples,
                                                   "sample_temperature": self.sample_temperature})

