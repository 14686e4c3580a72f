"""One student variant of a session: its model, objectives, optimizer and its own random stream.

Every variant starts from the same initial weights and takes one step on each shared batch. Dropout draws from
the variant's own stream (seeded from the session seed and the variant's name), so adding or removing a variant
never changes another variant's numbers.
"""
from __future__ import annotations

import hashlib
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from .. import mapping
from ..capture import AttentionCapture
from ..errors import NonFiniteLossError
from ..evaluate import autocast_for
from ..models import set_attention_backend
from ..objectives import ATTENTION, HIDDEN, TEACHER_LOGITS, LossInputs, combined_loss


def stream_seed(session_seed: int, name: str) -> int:
    """A 63-bit seed from the session seed and a variant name."""
    return int.from_bytes(hashlib.sha256(f"{session_seed}:{name}".encode()).digest()[:8], "little") >> 1


class RandomStream:
    """A private torch random state, swapped into the global generators while a variant runs.

        with variant.rng:      # dropout inside draws from this variant's stream only
            model(...)
    """

    def __init__(self, seed: int, device: torch.device):
        self.cpu = torch.Generator().manual_seed(seed).get_state()
        self.cuda = (torch.Generator(device="cuda").manual_seed(seed).get_state()
                     if device.type == "cuda" else None)
        self._saved = None

    def __enter__(self) -> "RandomStream":
        self._saved = (torch.get_rng_state(), torch.cuda.get_rng_state() if self.cuda is not None else None)
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda)
        return self

    def __exit__(self, *exc) -> None:
        self.cpu = torch.get_rng_state()
        torch.set_rng_state(self._saved[0])
        if self.cuda is not None:
            self.cuda = torch.cuda.get_rng_state()
            torch.cuda.set_rng_state(self._saved[1])


@dataclass
class StepContext:
    """What every variant's step shares: where, how teacher and student layers pair, and the loss settings."""
    device: torch.device
    mixed_precision: bool
    temperature: float
    student_layers: list[int]          # student layer of each mapped pair, in pair order
    head_rule: str
    max_grad_norm: float = 1.0


@dataclass
class TeacherBatch:
    logits: torch.Tensor | None = None     # (B, C)
    attention: torch.Tensor | None = None  # (B, P, H', T, T) already reduced to the compared heads
    hidden: torch.Tensor | None = None     # (B, P, T, Dt)


@dataclass
class Variant:
    name: str
    model: nn.Module
    weights: dict                      # loss name -> weight
    needs: frozenset                   # inputs its objectives read (objectives.INPUTS)
    rng: RandomStream
    projections: nn.ModuleList | None = None   # student -> teacher width, for hidden_mse
    optimizer: torch.optim.Optimizer | None = None
    scheduler: object = None
    last_state: dict | None = None     # CPU copy of the weights after the last finished epoch
    last_epoch: int = 0                # that epoch (0: the initial weights)
    best_state: dict | None = None     # CPU copy of the weights of the best epoch (the same dict when it is the last)
    best_epoch: int | None = None      # the epoch (>= 1) with the best validation accuracy; the first wins ties
    best_val_accuracy: float | None = None
    loss_sums: dict = field(default_factory=dict)
    loss_count: int = 0
    train_s: float = 0.0               # seconds in this variant's steps this epoch

    def parameters(self) -> list[nn.Parameter]:
        return list(self.model.parameters()) + (list(self.projections.parameters()) if self.projections else [])

    def setup_optimizer(self, lr: float, weight_decay: float, lr_lambda) -> None:
        self.optimizer = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda)

    def start_epoch(self) -> None:
        self.loss_sums, self.loss_count, self.train_s = {}, 0, 0.0

    def epoch_losses(self) -> dict[str, float]:
        """Mean of each loss component (and 'total', the weighted sum) over this epoch's steps."""
        return {k: v / max(1, self.loss_count) for k, v in self.loss_sums.items()}

    def forward(self, batch, ctx: StepContext):
        """Logits (B, C), student attention (B, P, H', T, T) and projected hidden states (B, P, T, Dt), as needed."""
        read_att, read_hid = ATTENTION in self.needs, HIDDEN in self.needs
        set_attention_backend(self.model, eager=read_att)
        s_att = s_hid = None
        with autocast_for(ctx.device, ctx.mixed_precision):
            if read_att:
                with AttentionCapture(self.model, ctx.student_layers) as capture:
                    out = self.model(**batch.inputs, output_hidden_states=read_hid)
                    s_att = mapping.adapt_student(capture.pop_stacked().float(), ctx.head_rule)
            else:
                out = self.model(**batch.inputs, output_hidden_states=read_hid)
            if read_hid:
                s_hid = torch.stack([self.projections[j](out.hidden_states[s + 1])
                                     for j, s in enumerate(ctx.student_layers)], 1)
        return out.logits, s_att, s_hid

    def step(self, batch, teacher: TeacherBatch | None, ctx: StepContext, where: str = "") -> dict[str, float]:
        """One optimisation step on a batch; returns the loss components (unweighted) and 'total'."""
        t0 = time.perf_counter()
        self.model.train()
        teacher = teacher or TeacherBatch()
        with self.rng:
            logits, s_att, s_hid = self.forward(batch, ctx)
            inp = LossInputs(logits, batch.labels, batch.mask, ctx.temperature,
                             teacher.logits if TEACHER_LOGITS in self.needs else None, s_att,
                             teacher.attention if ATTENTION in self.needs else None, s_hid,
                             teacher.hidden if HIDDEN in self.needs else None)
            loss, parts = combined_loss(self.weights, inp)
            if not torch.isfinite(loss):
                bad = ", ".join(f"{k}={v.item():.4g}" for k, v in parts.items())
                raise NonFiniteLossError(f"the {self.name} student's loss became {loss.item()} {where} ({bad}); "
                                         f"lower the learning rate or the loss weights")
            loss.backward()
        torch.nn.utils.clip_grad_norm_(self.parameters(), ctx.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        values = {"total": loss.item(), **{k: v.item() for k, v in parts.items()}}
        for k, v in values.items():
            self.loss_sums[k] = self.loss_sums.get(k, 0.0) + v
        self.loss_count += 1
        self.train_s += time.perf_counter() - t0
        return values

    def snapshot(self, epoch: int = 0, val_accuracy: float | None = None) -> None:
        """Keep a CPU copy of the weights after `epoch`: a stop inside the next epoch goes back to them.

        When `val_accuracy` beats every earlier epoch's (epochs >= 1; the first epoch reaching the maximum wins
        ties), the same copy is also kept as the best weights."""
        self.last_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        self.last_epoch = epoch
        if epoch >= 1 and val_accuracy is not None and (self.best_val_accuracy is None
                                                         or val_accuracy > self.best_val_accuracy):
            self.best_state, self.best_epoch, self.best_val_accuracy = self.last_state, epoch, float(val_accuracy)

    @property
    def best_differs(self) -> bool:
        """Whether the best epoch's weights are not the last finished epoch's."""
        return self.best_epoch is not None and self.best_epoch != self.last_epoch

    def restore(self) -> None:
        """Back to the weights of the last finished epoch."""
        if self.last_state is not None:
            self.model.load_state_dict(self.last_state)

    @contextmanager
    def best_weights(self):
        """The best epoch's weights inside the block, the last finished epoch's after it.

            with variant.best_weights():
                modality.predict(variant.model, "test", ...)
        """
        if self.best_state is None:
            raise ValueError(f"the {self.name} student has no best epoch yet")
        self.model.load_state_dict(self.best_state)
        try:
            yield self.model
        finally:
            self.restore()


class LossWindow:
    """Each variant's loss components summed over the last few training steps, for train_steps.jsonl."""

    def __init__(self):
        self.sums: dict[str, dict[str, float]] = {}
        self.steps = 0

    def add(self, losses: dict[str, dict[str, float]]) -> None:
        """One training step's losses: variant name -> component -> value (as Variant.step returns them)."""
        for name, values in losses.items():
            sums = self.sums.setdefault(name, {})
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
        self.steps += 1

    def flush(self, step: int, steps_per_epoch: int) -> list[dict]:
        """One record per variant with the mean of each component over the steps added since the last flush
        (none when no step was added); `step` is the global step (1-based) of the last of them."""
        out = [{"step": step, "epoch": round(step / steps_per_epoch, 4), "student": name, "steps": self.steps,
                "losses": {k: v / self.steps for k, v in sums.items()}}
               for name, sums in self.sums.items()] if self.steps else []
        self.sums, self.steps = {}, 0
        return out


def lr_lambda(schedule: str, total: int, warmup_ratio: float):
    """Multiplier of the learning rate at each step: linear warm-up, then linear decay, constant or cosine."""
    warm = int(warmup_ratio * total)

    def f(step):
        if warm and step < warm:
            return (step + 1) / warm
        if schedule == "constant":
            return 1.0
        progress = (step - warm) / max(1, total - warm)
        if schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return max(0.0, 1.0 - progress)
    return f
