"""Activation attention of CNN stages (Zagoruyko & Komodakis, "Paying more attention to attention", 2017) and the
attention transfer loss between a student's and a teacher's maps. Pure torch: the objectives read it, and the image
task records it on the probe pictures.

    activation_attention  (B, C, h, w) -> (B, h*w)  the channel mean of |A|^p, L2-normalised: what the loss compares
    activation_map        (B, C, h, w) -> (B, H*W)  the same energy upsampled to the picture, summing to 1: records
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _channel_energy(features: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, h, w) -> (B, h, w): mean over channels of |A|^p, in float32."""
    if features.dim() != 4:
        raise ValueError(f"features must be (batch, channels, height, width), not {tuple(features.shape)}")
    return features.float().abs().pow(p).mean(1)


def activation_attention(features: torch.Tensor, p: int = 2) -> torch.Tensor:
    """The paper's attention map for the loss: (B, C, h, w) -> (B, h*w), the channel mean of |A|^p, flattened and
    L2-normalised per example; float32."""
    return F.normalize(_channel_energy(features, p).flatten(1), dim=1)        # (B, h*w)


def activation_map(features: torch.Tensor, size: tuple[int, int], p: int = 2) -> torch.Tensor:
    """For records and pictures: (B, C, h, w) -> (B, H*W), the channel mean of |A|^p bilinearly upsampled to `size`
    (H, W) (align_corners=False), clamped at 0 and normalised to sum 1 per example: a distribution over the image's
    pixels. An example whose features are all zero gets the uniform distribution."""
    energy = _channel_energy(features, p)[:, None]                             # (B, 1, h, w)
    up = F.interpolate(energy, size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=False)
    flat = up.clamp_min(0.0).flatten(1)                                        # (B, H*W)
    total = flat.sum(1, keepdim=True)                                          # (B, 1)
    uniform = torch.full_like(flat, 1.0 / flat.shape[1])
    return torch.where(total > 0, flat / total.clamp_min(1e-30), uniform)


def _grid_for(n: int, like: tuple[int, int]) -> tuple[int, int]:
    """The (h, w) with h*w == n whose aspect ratio is closest to `like`'s (a square for a square `like`)."""
    ratio = like[0] / like[1]
    best = None
    for h in range(1, n + 1):
        if n % h == 0:
            score = abs(math.log((h / (n // h)) / ratio))
            if best is None or score < best[0]:
                best = (score, (h, n // h))
    return best[1]


def attention_transfer_loss(student_feats: list[torch.Tensor], teacher_maps: list[torch.Tensor], p: int = 2,
                            teacher_sizes: list[tuple[int, int]] | None = None) -> torch.Tensor:
    """Attention transfer (Zagoruyko & Komodakis, 2017; their code: (at(x) - at(y)).pow(2).mean(), summed over the
    pairs, times beta/2): 0.5 * sum over pairs of mean((Q_s - Q_t)^2), with Q = activation_attention.

    student_feats: (B, C_s, h_s, w_s) stage outputs; teacher_maps: the teacher's activation_attention outputs
    (B, h_t*w_t), pair by pair. When a pair's spatial sizes differ, the student's features are bilinearly resized
    (align_corners=False) to the teacher's (h_t, w_t) before its map is taken; (h_t, w_t) come from `teacher_sizes`,
    else they are the factorisation of h_t*w_t with the student's aspect ratio (a square for square images).
    The weight beta (1000 in the paper) is the variant's loss weight and is not applied here."""
    if len(student_feats) != len(teacher_maps):
        raise ValueError(f"{len(student_feats)} student stages against {len(teacher_maps)} teacher maps")
    if not student_feats:
        raise ValueError("attention_transfer_loss needs at least one pair of stages")
    total = None
    for k, (s, t) in enumerate(zip(student_feats, teacher_maps)):
        hs, ws = int(s.shape[-2]), int(s.shape[-1])
        n_t = int(t.shape[-1])
        if teacher_sizes is not None:
            ht, wt = (int(v) for v in teacher_sizes[k])
            if ht * wt != n_t:
                raise ValueError(f"teacher map {k} has {n_t} entries, not {ht}×{wt}")
        else:
            ht, wt = (hs, ws) if hs * ws == n_t else _grid_for(n_t, (hs, ws))
        if (hs, ws) != (ht, wt):
            s = F.interpolate(s.float(), size=(ht, wt), mode="bilinear", align_corners=False)   # (B, C_s, h_t, w_t)
        q_s = activation_attention(s, p)                                     # (B, h_t*w_t)
        term = (q_s - t.to(q_s.device, torch.float32)).pow(2).mean()
        total = term if total is None else total + term
    return 0.5 * total


# ---- building, loading and saving ---------------------------------------------------------------------------------
