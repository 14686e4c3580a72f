"""Perturbations of the word embeddings against a model, and the adversarial distillation loss.

The perturbation `delta` is added to the output of the model's word-embedding table (positions and token types are
added afterwards by the model, untouched). Its size is relative, token by token:

    ||delta_t||_2 <= epsilon * ||e_t||_2        for every real token t;  delta_t = 0 at padding (mask 0)

so one epsilon means the same thing for any model, whatever the scale of its embeddings.

    attack      PGD (FGSM with one step) maximising a loss of the logits, from delta = 0 or from a random point
                of the ball (Madry et al. 2018); gradients w.r.t. delta only, so the model's parameters get no
                .grad and its train/eval mode is left as it is
    ard_loss    KL of the student on the perturbed input to the teacher's clean outputs (Goldblum et al. 2020):
                the loss adversarial distillation both attacks and learns
    random_start a random delta inside the ball (Madry's PGD and FreeLB's initialisation, Zhu et al. 2020)

Images are perturbed in pixel space instead (`pixel_attack`): an L-infinity ball of epsilon times the pixel range
around the picture, every step along the sign of the gradient (FGSM, Goodfellow et al. 2015; PGD, Madry et al.
2018), the result kept inside the valid pixel range.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

TINY = 1e-12            # guards divisions by a zero norm (a zero gradient, an all-zero embedding)


def word_embeddings(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """The rows of the model's word-embedding table for `input_ids` (B, T): (B, T, D)."""
    return model.get_input_embeddings()(input_ids)


def forward_embeds(model: nn.Module, inputs: dict, embeds: torch.Tensor, **kw):
    """The model's output on word embeddings `embeds` (B, T, D) instead of input ids (which are never passed)."""
    extra = {"token_type_ids": inputs["token_type_ids"]} if inputs.get("token_type_ids") is not None else {}
    return model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"], **extra, **kw)


def token_norms(embeds: torch.Tensor) -> torch.Tensor:
    """Detached L2 norm of each token's embedding: (B, T, D) -> (B, T, 1)."""
    return embeds.detach().norm(dim=-1, keepdim=True)


def project(delta: torch.Tensor, norms: torch.Tensor, epsilon: float, mask: torch.Tensor) -> torch.Tensor:
    """`delta` (B, T, D) with each token's vector shrunk onto the ball of radius epsilon * norm (norms (B, T, 1)),
    and zero where `mask` (B, T) is 0."""
    radius = epsilon * norms                                          # (B, T, 1)
    size = delta.norm(dim=-1, keepdim=True)                           # (B, T, 1)
    scale = torch.clamp(radius / size.clamp_min(TINY), max=1.0)       # 1 inside the ball
    return delta * scale * mask.unsqueeze(-1).to(delta.dtype)


def ascend(delta: torch.Tensor, grad: torch.Tensor, norms: torch.Tensor, alpha: float, epsilon: float,
           mask: torch.Tensor) -> torch.Tensor:
    """One ascent step: each token moves alpha * ||e_t|| along its own normalised gradient (a zero gradient does
    not move it), then the result is projected back into the ball. Detached, (B, T, D)."""
    direction = grad / grad.norm(dim=-1, keepdim=True).clamp_min(TINY)   # (B, T, D), unit per token or 0
    return project(delta + alpha * norms * direction, norms, epsilon, mask).detach()


def random_start(like: torch.Tensor, norms: torch.Tensor, epsilon: float, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """A random delta shaped like `like` (B, T, D): a uniform random direction per token, at a radius uniform in
    [0, epsilon * norm]; zero at padding. Uses torch's global RNG unless `generator` is given."""
    device = generator.device if generator is not None else like.device
    shape = tuple(like.shape)
    noise = torch.randn(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)
    radius = torch.rand(shape[:-1] + (1,), generator=generator, device=device, dtype=like.dtype).to(like.device)
    unit = noise / noise.norm(dim=-1, keepdim=True).clamp_min(TINY)
    return project(unit * radius * epsilon * norms, norms, epsilon, mask).detach()


def loss_grad(model: nn.Module, inputs: dict, emb: torch.Tensor, delta: torch.Tensor,
              loss_fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """d loss_fn(logits at emb + delta) / d delta: one forward and backward pass, no gradient on the parameters."""
    d = delta.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(forward_embeds(model, inputs, emb + d).logits)
        (grad,) = torch.autograd.grad(loss, d)
    return grad


def climb(model: nn.Module, inputs: dict, emb: torch.Tensor, delta: torch.Tensor, mask: torch.Tensor,
          loss_fn: Callable, epsilon: float, steps: int, alpha: float) -> torch.Tensor:
    """`steps` PGD steps from `delta`, each one forward and backward pass."""
    norms = token_norms(emb)
    for _ in range(steps):
        delta = ascend(delta, loss_grad(model, inputs, emb, delta, loss_fn), norms, alpha, epsilon, mask)
    return delta


def attack(model: nn.Module, inputs: dict, mask: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor],
           epsilon: float, steps: int, alpha: float, first_grad: torch.Tensor | None = None,
           random: bool = False) -> torch.Tensor:
    """PGD on the word embeddings of inputs["input_ids"], maximising loss_fn(logits) (logits (B, C) -> scalar).

    Starts from delta = 0, or with `random` from a random point of the ball (random_start, torch's global RNG):
    then every one of the `steps` passes climbs loss_fn. With `first_grad` (the gradient of a pass the caller
    already made, w.r.t. the word embeddings) the first step from 0 uses it instead: steps - 1 passes, but that
    step climbs whatever loss the caller's pass computed. Returns delta (B, T, D), detached; zeros when epsilon is 0.
    The model's mode and its parameters' .grad are left untouched."""
    with torch.no_grad():
        emb = word_embeddings(model, inputs["input_ids"]).detach()       # (B, T, D)
    delta = torch.zeros_like(emb)
    if epsilon == 0 or steps < 1:
        return delta
    if random:
        delta = random_start(emb, token_norms(emb), epsilon, mask)
    elif first_grad is not None:
        delta = ascend(delta, first_grad.detach(), token_norms(emb), alpha, epsilon, mask)
        steps -= 1
    return climb(model, inputs, emb, delta, mask, loss_fn, epsilon, steps, alpha)


def ard_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)), batch mean, times T^2: the student on the perturbed input
    learns the teacher's answers on the clean one (Goldblum et al. 2020). Logits (B, C)."""
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits.float() / t, dim=-1)
    p_t = F.softmax(teacher_logits.detach().float() / t, dim=-1)
    return F.kl_div(log_p_s, p_t, reduction="batchmean") * (t * t)


# ---- images: pixels ---------------------------------------------------------------------------------------------
PIXEL_RANGE = 2.0       # model inputs span [-1, 1] (images.to_tensor): epsilon is a fraction of this range


def pixel_step(pixels: torch.Tensor, delta: torch.Tensor, grad: torch.Tensor, alpha: float,
               epsilon: float) -> torch.Tensor:
    """One signed-gradient step of alpha (fraction of the pixel range), then back into the epsilon ball and the
    valid pixel range [-1, 1]. pixels, delta, grad (B, C, H, W); detached."""
    eps = epsilon * PIXEL_RANGE
    delta = (delta + alpha * PIXEL_RANGE * grad.sign()).clamp(-eps, eps)
    return ((pixels + delta).clamp(-1.0, 1.0) - pixels).detach()


def pixel_random_start(pixels: torch.Tensor, epsilon: float) -> torch.Tensor:
    """A random delta uniform in the L-infinity ball of epsilon * PIXEL_RANGE, pixels + delta kept inside [-1, 1]
    (Madry et al. 2018); torch's global RNG."""
    eps = epsilon * PIXEL_RANGE
    delta = (torch.rand_like(pixels) * 2 - 1) * eps
    return ((pixels + delta).clamp(-1.0, 1.0) - pixels).detach()


def pixel_attack(model: nn.Module, pixels: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor],
                 epsilon: float, steps: int, alpha: float, first_grad: torch.Tensor | None = None,
                 random: bool = False) -> torch.Tensor:
    """PGD (FGSM with one step) in pixel space maximising loss_fn(logits): delta (B, C, H, W), detached, with
    |delta| <= epsilon * PIXEL_RANGE everywhere and pixels + delta inside [-1, 1]. `random` starts from a random
    point of the ball (pixel_random_start); otherwise `first_grad` (the gradient of a pass the caller already made
    w.r.t. the pixels) makes the first step from 0 without a pass. The model's parameters get no .grad."""
    pixels = pixels.detach()
    delta = torch.zeros_like(pixels)
    if epsilon == 0 or steps < 1:
        return delta
    if random:
        delta = pixel_random_start(pixels, epsilon)
    elif first_grad is not None:
        delta = pixel_step(pixels, delta, first_grad, alpha, epsilon)
        steps -= 1
    for _ in range(steps):
        d = delta.clone().requires_grad_(True)
        with torch.enable_grad():
            loss = loss_fn(model(pixel_values=pixels + d).logits)
            (grad,) = torch.autograd.grad(loss, d)
        delta = pixel_step(pixels, delta, grad, alpha, epsilon)
    return delta
