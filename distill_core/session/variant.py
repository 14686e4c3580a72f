"""One student variant of a session: its model, objectives, optimizer and its own random stream.

Every variant starts from the same initial weights and takes one step on each shared batch. Dropout draws from
the variant's own stream (seeded from the session seed and the variant's name), so adding or removing a variant
never changes another variant's numbers.
"""
from __future__ import annotations

import copy
import hashlib
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .. import distributed, mapping
from ..capture import AttentionCapture
from ..config import AdversarialConfig, SessionConfig, VariantConfig
from ..errors import NonFiniteLossError
from ..evaluate import autocast_for
from ..modality.base import TeacherBatch
from ..models import set_attention_backend
from ..objectives import (ACTIVATION, ATTENTION, ATTENTION_INPUTS, ATTENTION_SCORES, HIDDEN, MAP_INPUTS, TEACHER_LOGITS,
                          LossInputs, loss_values, needs_of)
from ..optim import clip_grad_norm_, make_optimizer
from ..strategies import adversarial as adv_lib
from ..strategies.adaptive import AUTO_LR, AttentionFocus, LossWeights, Temperature


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
    student_layers: list[int]          # student layer of each mapped pair, in pair order
    head_rule: str
    max_grad_norm: float = 1.0
    forward: Callable | None = None    # a task's own student forward (Task.student_forward); None: the usual one


@dataclass
class Variant:
    name: str
    model: nn.Module
    needs: frozenset                   # inputs its objectives read (objectives.INPUTS)
    rng: RandomStream
    projections: nn.ModuleList | None = None   # student -> teacher width, for hidden_mse
    loss_weights: LossWeights | None = None    # the weight of each loss at each step (schedules, automatic)
    temperature: Temperature | None = None     # the KD temperature at each step (build_variants sets both)
    focus: AttentionFocus | None = None        # per pair and head attention weights (attention_focus)
    adversarial: AdversarialConfig | None = None
    generated: bool = False            # also steps on the generated transfer data
    transfer_labels: bool = False      # also steps on it with its true labels (the labels-only reference)
    teacher: str = "teacher"           # the outputs it learns from: teacher, teacher_2, ... or ensemble
    steps_done: int = 0                # optimisation steps taken (the schedules' clock)
    used: dict = field(default_factory=dict)   # weights and temperature of the last step, for train_steps.jsonl
    optimizer: torch.optim.Optimizer | None = None
    scheduler: object = None
    last_state: dict | None = None     # CPU copy of the weights after the last finished epoch
    last_epoch: int = 0                # that epoch (0: the initial weights)
    best_state: dict | None = None     # CPU copy of the weights of the best epoch (the same dict when it is the last)
    best_epoch: int | None = None      # the epoch (>= 1) with the best validation accuracy; the first wins ties
    best_val_accuracy: float | None = None
    loss_sums: dict = field(default_factory=dict)
    loss_counts: dict = field(default_factory=dict)   # steps each component was present in (ce: not on generated data)
    train_s: float = 0.0               # seconds in this variant's steps this epoch

    def parameters(self) -> list[nn.Parameter]:
        return list(self.model.parameters()) + (list(self.projections.parameters()) if self.projections else [])

    def strategy_parameters(self) -> list[nn.Parameter]:
        """Learned loss weights and temperature: their own learning rate, no weight decay."""
        return [p for m in (self.loss_weights, self.temperature) if m is not None for p in m.parameters()]

    def setup_optimizer(self, lr: float, weight_decay: float, lr_lambda, sparse_embedding: bool = False) -> None:
        groups = [{"params": self.parameters()}]
        if self.strategy_parameters():
            groups.append({"params": self.strategy_parameters(), "lr": AUTO_LR, "weight_decay": 0.0})
        self.optimizer = make_optimizer(self.model, groups, lr, weight_decay, next(self.model.parameters()).device,
                                        sparse_embedding)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda)

    def start_epoch(self) -> None:
        self.loss_sums, self.loss_counts, self.train_s = {}, {}, 0.0

    def epoch_losses(self) -> dict[str, float]:
        """Mean of each loss component (and 'total', the weighted sum) over this epoch's steps."""
        return {k: v / max(1, self.loss_counts.get(k, 0)) for k, v in self.loss_sums.items()}

    def forward(self, batch, ctx: StepContext, embeds: torch.Tensor | None = None):
        """Logits (B, C), student attention (B, P, H', T, T), projected hidden states (B, P, T, Dt), a CNN's mapped
        stage activations [(B, C_j, h_j, w_j)], attention scores before the softmax (B, P, H', T, T), as needed, and
        what a task's own forward adds (StepContext.forward: translation's kinds of attention).
        With `embeds` (B, T, D) the model reads these word embeddings instead of the token ids."""
        if ctx.forward is not None:     # a task's own forward (translation: decoder inputs, kinds of attention)
            with autocast_for(ctx.device, ctx.mixed_precision):
                out = ctx.forward(self.model, batch, self.needs, ctx, embeds)
            if out.hidden is not None and self.projections is not None:
                out.hidden = torch.stack([self.projections[j](out.hidden[:, j]) for j in range(out.hidden.shape[1])],
                                         1)
            return out.logits, out.attention, out.hidden, out.activation, out.scores, out.extra
        read_hid, read_act = HIDDEN in self.needs, ACTIVATION in self.needs
        read_att, read_scores = bool(self.needs & ATTENTION_INPUTS), ATTENTION_SCORES in self.needs
        if not read_act:
            set_attention_backend(self.model, eager=read_att)
        s_att = s_hid = s_act = s_scores = None

        def run():
            if embeds is None:
                return self.model(**batch.inputs, output_hidden_states=read_hid or read_act)
            if "pixel_values" in batch.inputs:                 # images: perturbed pixels
                return self.model(pixel_values=embeds, output_hidden_states=read_hid or read_act)
            return adv_lib.forward_embeds(self.model, batch.inputs, embeds, output_hidden_states=read_hid)
        with autocast_for(ctx.device, ctx.mixed_precision):
            if read_att:
                with AttentionCapture(self.model, ctx.student_layers, scores=read_scores) as capture:
                    out = run()
                    if ATTENTION in self.needs:
                        s_att = mapping.adapt_student(capture.pop_stacked().float(), ctx.head_rule)
                    if read_scores:
                        s_scores = mapping.adapt_student(capture.pop_scores_stacked().float(), ctx.head_rule)
            else:
                out = run()
            if read_hid:
                s_hid = torch.stack([self.projections[j](out.hidden_states[s + 1])
                                     for j, s in enumerate(ctx.student_layers)], 1)
            if read_act:
                s_act = [out.hidden_states[s] for s in ctx.student_layers]     # a CNN's stage outputs
        return out.logits, s_att, s_hid, s_act, s_scores, {}

    def _losses(self, batch, teacher: TeacherBatch, ctx: StepContext, temperature, embeds=None):
        """The weighted total, each loss's value (detached) and the weights used, on one forward pass."""
        logits, s_att, s_hid, s_act, s_scores, s_extra = self.forward(batch, ctx, embeds)
        inp = LossInputs(logits, batch.labels, batch.mask, temperature,
                         teacher.logits if TEACHER_LOGITS in self.needs else None, s_att,
                         teacher.attention if ATTENTION in self.needs else None, s_hid,
                         teacher.hidden if HIDDEN in self.needs else None,
                         student_features=s_act, teacher_activation=teacher.activation,
                         student_scores=s_scores,
                         teacher_scores=teacher.scores if ATTENTION_SCORES in self.needs else None,
                         head_weights=self.focus.weights(ctx.device) if self.focus is not None else None,
                         extra={"student": s_extra, "teacher": teacher.extra})
        values = loss_values(list(self.loss_weights.base), inp)
        total, used = self.loss_weights.combine(values, self.steps_done)
        if self.focus is not None:
            self.focus.update(inp.head_losses)
        return total, {k: v.detach() for k, v in values.items()}, used

    def _check(self, loss: torch.Tensor, parts: dict, where: str) -> None:
        if not torch.isfinite(loss):
            bad = ", ".join(f"{k}={v.item():.4g}" for k, v in parts.items())
            raise NonFiniteLossError(f"the {self.name} student's loss became {loss.item()} {where} ({bad}); "
                                     f"lower the learning rate or the loss weights")

    def _clean_and_adversarial(self, batch, teacher: TeacherBatch, ctx: StepContext, t, where: str):
        """The clean step, then (pgd, fgsm) the ARD loss on an attack against it: by default the attack starts from a
        random point of the ball and climbs the ARD loss for adversarial.steps passes (2 + steps passes in all);
        with start "clean_gradient" its first step reuses the clean step's gradient with respect to the word
        embeddings (1 + steps passes, that first step climbing the clean combined loss)."""
        adv = self.adversarial
        weight = adv.weight * self.loss_weights.multiplier("adversarial", self.steps_done) if adv is not None else 0.0
        attacking = weight > 0 and adv.epsilon > 0       # a step with no adversarial weight makes no attack
        embeds = None
        image = "pixel_values" in batch.inputs
        if attacking and not adv.random_start:          # the clean pass keeps its gradient for the first step
            if image:
                embeds = batch.inputs["pixel_values"].detach().clone().requires_grad_(True)
            else:
                embeds = adv_lib.word_embeddings(self.model, batch.inputs["input_ids"])
                embeds.retain_grad()
        loss, parts, used = self._losses(batch, teacher, ctx, t, embeds)
        self._check(loss, parts, where)
        loss.backward()
        if not attacking:
            if adv is not None and adv.method != "freelb":
                used["adversarial"] = weight
            return loss.detach(), parts, used
        t_plain = float(t.detach()) if torch.is_tensor(t) else float(t)
        target = teacher.logits
        first_grad = embeds.grad if embeds is not None else None

        def attack_loss(logits):
            return adv_lib.ard_loss(logits, target, t_plain)
        with autocast_for(ctx.device, ctx.mixed_precision):
            if image:
                pixels = batch.inputs["pixel_values"]
                delta = adv_lib.pixel_attack(self.model, pixels, attack_loss, adv.epsilon, adv.steps, adv.alpha,
                                             first_grad=first_grad, random=adv.random_start)
                logits = self.model(pixel_values=pixels + delta).logits
            else:
                delta = adv_lib.attack(self.model, batch.inputs, batch.mask, attack_loss, adv.epsilon, adv.steps,
                                       adv.alpha, first_grad=first_grad, random=adv.random_start)
                perturbed = adv_lib.word_embeddings(self.model, batch.inputs["input_ids"]) + delta
                logits = adv_lib.forward_embeds(self.model, batch.inputs, perturbed).logits
            adv_loss = adv_lib.ard_loss(logits, target, t)
        self._check(adv_loss, {"adversarial": adv_loss.detach()}, where)
        (weight * adv_loss).backward()
        parts["adversarial"] = adv_loss.detach()
        used["adversarial"] = weight
        return loss.detach() + weight * adv_loss.detach(), parts, used

    def _freelb(self, batch, teacher: TeacherBatch, ctx: StepContext, t, where: str):
        """FreeLB (Zhu et al. 2020): the variant's losses on `steps` perturbed copies, the perturbation climbing
        between them; the parameters' gradients are the mean over the copies."""
        adv = self.adversarial
        k = adv.steps
        ids, mask = batch.inputs["input_ids"], batch.mask
        with torch.no_grad():
            clean = adv_lib.word_embeddings(self.model, ids)                       # (B, T, D)
            norms = clean.norm(dim=-1, keepdim=True)                               # (B, T, 1)
        delta = adv_lib.random_start(clean, norms, adv.epsilon, mask)
        total, sums, used = 0.0, {}, {}
        for _ in range(k):
            delta = delta.detach().requires_grad_(True)
            loss, parts, used = self._losses(batch, teacher, ctx, t,
                                             adv_lib.word_embeddings(self.model, ids) + delta)
            self._check(loss, parts, where)
            (loss / k).backward()
            total += float(loss.detach()) / k
            for name, v in parts.items():
                sums[name] = sums.get(name, 0.0) + v / k
            delta = adv_lib.ascend(delta.detach(), delta.grad, norms, adv.alpha, adv.epsilon, mask)
        return torch.tensor(total), sums, used

    def step(self, batch, teacher: TeacherBatch | None, ctx: StepContext, where: str = "") -> dict[str, float]:
        """One optimisation step on a batch; returns the loss components (unweighted) and 'total'. The weights
        and temperature it used are left in `self.used`."""
        t0 = time.perf_counter()
        self.model.train()
        teacher = teacher or TeacherBatch()
        t = self.temperature.at(self.steps_done)
        with self.rng:
            if self.adversarial is not None and self.adversarial.method == "freelb":
                loss, parts, used = self._freelb(batch, teacher, ctx, t, where)
            else:
                loss, parts, used = self._clean_and_adversarial(batch, teacher, ctx, t, where)
        shared = distributed.active()
        if shared:      # several processes, each on its rows: the whole batch's gradient (after every backward pass)
            n_total = distributed.average_gradients(self.parameters() + self.strategy_parameters(), len(batch.index))
            distributed.average_state(self, len(batch.index), n_total)
        clip_grad_norm_(self.parameters(), ctx.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.temperature.clamp_()
        self.steps_done += 1
        self.used = {"weights": used, "temperature": float(t.detach()) if torch.is_tensor(t) else float(t)}
        values = {"total": float(loss), **{k: v.item() for k, v in parts.items()}}
        if shared:
            values = distributed.mean_values(values, len(batch.index), n_total)
        for k, v in values.items():
            self.loss_sums[k] = self.loss_sums.get(k, 0.0) + v
            self.loss_counts[k] = self.loss_counts.get(k, 0) + 1
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
    """Each variant's loss components, and the weights and temperature it used, averaged over the last few training
    steps, for train_steps.jsonl. Each value is averaged over the steps it was present in (a generated-data step
    has no ce)."""

    def __init__(self):
        self.sums: dict[str, dict[str, list]] = {}       # variant -> key -> [sum, count]
        self.counts: dict[str, int] = {}

    def _add(self, name: str, key: str, value: float) -> None:
        acc = self.sums.setdefault(name, {}).setdefault(key, [0.0, 0])
        acc[0] += value
        acc[1] += 1

    def add(self, losses: dict[str, dict[str, float]], used: dict[str, dict] | None = None) -> None:
        """One training step's losses: variant name -> component -> value (as Variant.step returns them), and the
        weights and temperature each variant used (Variant.used)."""
        for name, values in losses.items():
            for k, v in values.items():
                self._add(name, f"l:{k}", v)
            self.counts[name] = self.counts.get(name, 0) + 1
        for name, u in (used or {}).items():
            for k, w in u.get("weights", {}).items():
                self._add(name, f"w:{k}", w)
            if u.get("temperature") is not None:
                self._add(name, "t:", u["temperature"])

    def flush(self, step: int, steps_per_epoch: int) -> list[dict]:
        """One record per variant that stepped since the last flush: the mean of each loss component, and of the
        loss weights and temperature it used; `step` is the global step (1-based) of the last of them."""
        out = []
        for name, n in self.counts.items():
            means = {k: total / count for k, (total, count) in self.sums.get(name, {}).items()}
            rec = {"step": step, "epoch": round(step / steps_per_epoch, 4), "student": name, "steps": n,
                   "losses": {k[2:]: v for k, v in means.items() if k.startswith("l:")}}
            weights = {k[2:]: v for k, v in means.items() if k.startswith("w:")}
            if weights:
                rec["weights"] = weights
            if "t:" in means:
                rec["temperature"] = means["t:"]
            out.append(rec)
        self.sums, self.counts = {}, {}
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


def variant_needs(vc: VariantConfig) -> frozenset:
    """What a variant's objectives read (objectives.INPUTS); the ARD loss learns the teacher's clean answers."""
    needs = needs_of(vc.losses)
    if vc.adversarial is not None and vc.adversarial.method != "freelb":
        needs |= {TEACHER_LOGITS}
    return needs


def build_variants(cfg: SessionConfig, first: nn.Module, teachers: list[nn.Module], pairs: list, head_rule: str,
                   student_heads: int, steps_per_epoch: Callable[[VariantConfig], int], epochs: int,
                   device) -> list[Variant]:
    """Every configured variant, ready to train: a copy of the initial weights `first` (the last variant trains
    `first` itself), its own random stream, projections to the width of the teacher it learns from for a
    hidden-state loss (the first teacher's for the ensemble), its loss weights and temperature over training, its
    attention focus, its optimizer and schedule, and a copy of its initial weights."""
    names, last = cfg.teacher_names, len(cfg.variants) - 1
    out = []
    for k, vc in enumerate(cfg.variants):
        teacher = teachers[names.index(vc.teacher) if vc.teacher in names else 0]
        model = first if k == last else copy.deepcopy(first)
        rng = RandomStream(stream_seed(cfg.train.seed, vc.name), device)
        needs = variant_needs(vc)
        projections = None
        if HIDDEN in needs:
            ds, dt = first.config.hidden_size, teacher.config.hidden_size
            with rng:                              # the projection's initial weights come from its own stream
                projections = nn.ModuleList([nn.Linear(ds, dt) if ds != dt else nn.Identity()
                                             for _ in range(len(pairs))]).to(device)
        steps = steps_per_epoch(vc)
        total = steps * epochs
        v = Variant(vc.name, model.to(device), needs, rng, projections, adversarial=vc.adversarial,
                    generated=vc.generated, transfer_labels=vc.transfer_labels, teacher=vc.teacher,
                    loss_weights=LossWeights(vc.losses, vc.schedules, vc.preset, vc.auto_weights, total, steps,
                                             epochs).to(device),
                    temperature=Temperature(vc.temperature_schedule, cfg.objectives.temperature,
                                            *vc.temperature_range, total).to(device))
        if vc.attention_focus and needs & MAP_INPUTS:
            v.focus = AttentionFocus(len(pairs), mapping.compared_heads(head_rule, student_heads))
        out.append(v)
    for v in out:               # optimizers once every model is in place, as the variants' snapshots
        total = steps_per_epoch(cfg.variant(v.name)) * epochs
        v.setup_optimizer(cfg.train.lr, cfg.train.weight_decay,
                          lr_lambda(cfg.train.schedule, total, cfg.train.warmup_ratio), cfg.train.sparse_embedding)
        v.snapshot()
    return out
