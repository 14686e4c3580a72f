import math

import pytest
import torch
import torch.nn.functional as F

from distill_core import losses
from distill_core.errors import ConfigError


def inputs(**kw):
    g = torch.Generator().manual_seed(0)
    base = dict(student_logits=torch.randn(4, 3, generator=g), labels=torch.tensor([0, 1, 2, 1]),
                mask=torch.ones(4, 5, dtype=torch.long), temperature=2.0)
    base.update(kw)
    return losses.LossInputs(**base)


def test_ce_matches_torch():
    inp = inputs()
    assert torch.isclose(losses.ce(inp), F.cross_entropy(inp.student_logits, inp.labels))


def test_logit_kd_zero_when_equal_and_scaled_by_t2():
    inp = inputs()
    same = inputs(teacher_logits=inp.student_logits.clone())
    assert losses.logit_kd(same).abs().item() < 1e-6
    t_logits = torch.randn(4, 3)
    a = losses.logit_kd(inputs(teacher_logits=t_logits, temperature=1.0))
    p, q = F.softmax(t_logits, -1), F.log_softmax(inp.student_logits, -1)
    expected = (p * (p.log() - q)).sum(-1).mean()
    assert math.isclose(a.item(), expected.item(), rel_tol=1e-5)


def test_hard_kd_uses_teacher_argmax():
    t_logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [5.0, 0, 0]])
    inp = inputs(teacher_logits=t_logits)
    assert torch.isclose(losses.hard_kd(inp), F.cross_entropy(inp.student_logits, torch.tensor([0, 1, 2, 0])))


def test_attention_losses_zero_for_equal_and_positive_otherwise():
    p = torch.softmax(torch.randn(4, 2, 3, 5, 5), -1)
    q = torch.softmax(torch.randn(4, 2, 3, 5, 5), -1)
    for fn in (losses.attention_mse, losses.attention_kl):
        assert fn(inputs(teacher_attention=p, student_attention=p.clone())).item() < 1e-6
        assert fn(inputs(teacher_attention=p, student_attention=q)).item() > 0


def test_attention_kl_has_gradient_to_student():
    p = torch.softmax(torch.randn(2, 1, 1, 4, 4), -1)
    s_scores = torch.randn(2, 1, 1, 4, 4, requires_grad=True)
    loss = losses.attention_kl(inputs(teacher_attention=p, student_attention=torch.softmax(s_scores, -1),
                                      mask=torch.ones(2, 4)))
    loss.backward()
    assert s_scores.grad.abs().sum() > 0


def test_hidden_mse_masks_padding():
    s = torch.zeros(1, 1, 3, 4)
    t = torch.zeros(1, 1, 3, 4)
    t[0, 0, 2] = 100.0        # only in the padded position
    mask = torch.tensor([[1, 1, 0]])
    assert losses.hidden_mse(inputs(student_hidden=s, teacher_hidden=t, mask=mask)).item() == 0.0


def test_registry_and_unknown_name():
    assert set(losses.LOSSES) == {"ce", "logit_kd", "hard_kd", "attention_mse", "attention_kl", "hidden_mse"}
    with pytest.raises(ConfigError, match="known losses: ce, logit_kd"):
        losses.get_loss("focal")


def test_combined_weights_and_missing_inputs():
    inp = inputs(teacher_logits=torch.randn(4, 3))
    total, parts = losses.combined_loss({"ce": 0.5, "logit_kd": 0.5, "hard_kd": 0.0}, inp)
    assert set(parts) == {"ce", "logit_kd"}
    assert torch.isclose(total, 0.5 * parts["ce"] + 0.5 * parts["logit_kd"])
    with pytest.raises(ConfigError, match="needs teacher attention"):
        losses.combined_loss({"attention_kl": 1.0}, inputs())
