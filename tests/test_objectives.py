"""Objectives against hand computations and against TextBrewer's reference formulas, at T > 1 and with padding."""
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from distill_core import objectives
from distill_core.errors import ConfigError


def inputs(**kw):
    g = torch.Generator().manual_seed(0)
    base = dict(student_logits=torch.randn(4, 3, generator=g), labels=torch.tensor([0, 1, 2, 1]),
                mask=torch.ones(4, 5, dtype=torch.long), temperature=2.0)
    base.update(kw)
    return objectives.LossInputs(**base)


def softmax_list(xs, t=1.0):
    e = [math.exp(x / t) for x in xs]
    return [v / sum(e) for v in e]


def test_ce_matches_torch():
    inp = inputs()
    assert torch.isclose(objectives.ce(inp), F.cross_entropy(inp.student_logits, inp.labels))


@pytest.mark.parametrize("t", [1.0, 2.0, 4.0])
def test_logit_kd_is_t_squared_times_the_softened_kl(t):
    s = [[1.0, -0.5, 0.2], [0.3, 0.3, -1.0]]
    te = [[2.0, 0.1, -0.7], [-0.4, 1.5, 0.0]]
    expected = 0.0
    for srow, trow in zip(s, te):
        p, q = softmax_list(trow, t), softmax_list(srow, t)
        expected += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    expected = t * t * expected / len(s)
    got = objectives.logit_kd(objectives.LossInputs(torch.tensor(s), torch.tensor([0, 1]), torch.ones(2, 3),
                                                    temperature=t, teacher_logits=torch.tensor(te)))
    assert math.isclose(got.item(), expected, rel_tol=1e-5)


def test_logit_kd_zero_when_equal():
    inp = inputs()
    assert objectives.logit_kd(inputs(teacher_logits=inp.student_logits.clone(), temperature=3.0)).abs() < 1e-6


def test_hard_kd_uses_teacher_argmax():
    t_logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [5.0, 0, 0]])
    inp = inputs(teacher_logits=t_logits)
    assert torch.isclose(objectives.hard_kd(inp), F.cross_entropy(inp.student_logits, torch.tensor([0, 1, 2, 0])))


def masked_attention(seed, b=3, h=2, t=6, lengths=(6, 4, 2)):
    """Teacher and student attention probabilities (B, 1, H, T, T) with padded keys at zero, and the mask."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(b, t)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    key_bias = (1 - mask)[:, None, None, :] * -1e9                      # (B, 1, 1, T)
    s_t = torch.randn(b, h, t, t, generator=g) * 2 + key_bias
    s_s = torch.randn(b, h, t, t, generator=g) * 2 + key_bias
    return s_t, s_s, mask


def textbrewer_att_ce(attention_S, attention_T, mask):
    """textbrewer.losses.att_ce_loss with a mask, as published."""
    probs_T = F.softmax(attention_T, dim=-1)
    mask = mask.to(attention_S).unsqueeze(1).expand(-1, attention_S.size(1), -1)
    return -((probs_T * F.log_softmax(attention_S, dim=-1) * mask.unsqueeze(2)).sum(dim=-1) * mask).sum() / mask.sum()


def textbrewer_att_mse(attention_S, attention_T, mask):
    """textbrewer.losses.att_mse_loss with a mask, as published."""
    mask = mask.to(attention_S).unsqueeze(1).expand(-1, attention_S.size(1), -1)
    valid_count = torch.pow(mask.sum(dim=2), 2).sum()
    return (F.mse_loss(attention_S, attention_T, reduction="none") * mask.unsqueeze(-1) * mask.unsqueeze(2)).sum() \
        / valid_count


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_attention_kl_is_textbrewers_cross_entropy_minus_teacher_entropy(seed):
    s_t, s_s, mask = masked_attention(seed)
    p, q = F.softmax(s_t, -1), F.softmax(s_s, -1)
    entropy = textbrewer_att_ce(s_t, s_t, mask)
    expected = textbrewer_att_ce(s_s, s_t, mask) - entropy
    got = objectives.attention_kl(inputs(mask=mask, teacher_attention=p[:, None], student_attention=q[:, None]))
    assert math.isclose(got.item(), expected.item(), rel_tol=1e-4, abs_tol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_attention_mse_averages_over_query_key_pairs_as_textbrewer(seed):
    s_t, s_s, mask = masked_attention(seed)
    p, q = F.softmax(s_t, -1), F.softmax(s_s, -1)
    expected = textbrewer_att_mse(q, p, mask)
    got = objectives.attention_mse(inputs(mask=mask, teacher_attention=p[:, None], student_attention=q[:, None]))
    assert math.isclose(got.item(), expected.item(), rel_tol=1e-4)
    # the scale does not grow with sentence length: the same rows padded to twice the length give the same loss
    pad = lambda x: F.pad(x, (0, 6, 0, 6))                              # noqa: E731
    longer = objectives.attention_mse(inputs(mask=F.pad(mask, (0, 6)), teacher_attention=pad(p)[:, None],
                                             student_attention=pad(q)[:, None]))
    assert math.isclose(longer.item(), got.item(), rel_tol=1e-5)


def score_inputs(teacher, student, mask):
    return inputs(mask=mask, teacher_scores=teacher, student_scores=student)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_attention_score_mse_is_textbrewers_masked_mse_on_the_scores(seed):
    """TinyBERT's loss as TextBrewer computes it with a mask, on scores whose padded keys hold no mask."""
    g = torch.Generator().manual_seed(seed)
    _, _, mask = masked_attention(seed)
    a_t, a_s = torch.randn(3, 2, 6, 6, generator=g) * 3, torch.randn(3, 2, 6, 6, generator=g) * 3
    expected = textbrewer_att_mse(a_s, a_t, mask)
    got = objectives.attention_score_mse(score_inputs(a_t[:, None], a_s[:, None], mask))
    assert math.isclose(got.item(), expected.item(), rel_tol=1e-5)


def test_attention_score_mse_is_zero_for_equal_scores_and_positive_otherwise():
    g = torch.Generator().manual_seed(4)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    a = torch.randn(2, 2, 3, 5, 5, generator=g)                          # (B, P, H', T, T)
    assert objectives.attention_score_mse(score_inputs(a, a.clone(), mask)).item() == 0.0
    b = a.clone()
    b[1, 0, 2, 1, 2] += 0.5                                              # one real pair of one head
    # (0.5^2) over the 25 + 9 real pairs of one head, averaged over the P * H' = 6 heads
    expected = 0.25 / 34 / 6
    assert objectives.attention_score_mse(score_inputs(a, b, mask)).item() == pytest.approx(expected, rel=1e-5)


def test_attention_score_mse_ignores_padded_pairs_and_stays_finite():
    """Scores with the additive mask added (-inf or finfo.min at padded keys), or anything else there, give the
    same finite loss and finite gradients as clean scores."""
    g = torch.Generator().manual_seed(5)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    a_t = torch.randn(2, 1, 2, 4, 4, generator=g)
    a_s = torch.randn(2, 1, 2, 4, 4, generator=g)
    clean = objectives.attention_score_mse(score_inputs(a_t, a_s, mask))
    pad_key = (mask == 0)[:, None, None, None, :].expand_as(a_t)       # (B, P, H', T, T) padded keys
    pad_query = (mask == 0)[:, None, None, :, None].expand_as(a_t)     # padded queries
    for fill in (float("-inf"), torch.finfo(torch.float32).min, 1e4, float("nan")):
        t = a_t.masked_fill(pad_key, fill).masked_fill(pad_query, -fill)
        s = a_s.masked_fill(pad_key, fill).detach().requires_grad_(True)
        loss = objectives.attention_score_mse(score_inputs(t, s, mask))
        loss.backward()
        assert torch.isfinite(loss) and loss.item() == pytest.approx(clean.item(), rel=1e-6), fill
        assert torch.isfinite(s.grad).all() and (s.grad[pad_key] == 0).all()
    # padding more keys onto every example changes nothing either
    wide = lambda x: F.pad(x, (0, 3, 0, 3), value=7.0)                  # noqa: E731
    longer = objectives.attention_score_mse(score_inputs(wide(a_t), wide(a_s), F.pad(mask, (0, 3))))
    assert longer.item() == pytest.approx(clean.item(), rel=1e-6)


def test_attention_score_mse_tells_apart_scores_that_attention_mse_cannot():
    """Rows of scores that differ by a constant have the same softmax: the probabilities' loss is 0, the scores'
    is the constant squared. A score loss computed on the probabilities would fail here."""
    g = torch.Generator().manual_seed(6)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    a_t = torch.randn(2, 1, 2, 5, 5, generator=g)
    shift = torch.randn(2, 1, 2, 5, 1, generator=g)                     # a constant per row
    a_s = a_t + shift
    key_bias = (1 - mask)[:, None, None, None, :] * -1e9
    p, q = torch.softmax(a_t + key_bias, -1), torch.softmax(a_s + key_bias, -1)
    assert objectives.attention_mse(inputs(mask=mask, teacher_attention=p, student_attention=q)).item() < 1e-12
    got = objectives.attention_score_mse(score_inputs(a_t, a_s, mask))
    real_rows = mask.bool()[:, None, None, :].expand(2, 1, 2, 5)
    keys = mask.sum(-1).float()[:, None, None, None].expand(2, 1, 2, 5)
    # each real row counts once per real key: the mean of shift^2 over real (query, key) pairs, per head
    weights = keys[real_rows]
    expected = (shift[..., 0][real_rows] ** 2 * weights).sum() / weights.sum()
    assert got.item() == pytest.approx(expected.item(), rel=1e-5) and got.item() > 0.01


def test_hidden_mse_is_textbrewers_masked_mse():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(3, 1, 5, 8, generator=g), torch.randn(3, 1, 5, 8, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]]).float()
    expected = (F.mse_loss(s[:, 0], t[:, 0], reduction="none") * mask.unsqueeze(-1)).sum() / (mask.sum() * 8)
    got = objectives.hidden_mse(inputs(mask=mask, student_hidden=s, teacher_hidden=t))
    assert math.isclose(got.item(), expected.item(), rel_tol=1e-5)


def test_attention_kl_has_gradient_to_student():
    p = torch.softmax(torch.randn(2, 1, 1, 4, 4), -1)
    s_scores = torch.randn(2, 1, 1, 4, 4, requires_grad=True)
    loss = objectives.attention_kl(inputs(teacher_attention=p, student_attention=torch.softmax(s_scores, -1),
                                          mask=torch.ones(2, 4)))
    loss.backward()
    assert s_scores.grad.abs().sum() > 0


def test_registry_needs_and_unknown_name():
    assert set(objectives.LOSS_NAMES) == {"ce", "logit_kd", "hard_kd", "attention_mse", "attention_kl",
                                          "attention_score_mse", "hidden_mse", "attention_transfer", "seq_kd",
                                          "encoder_attention_kl", "decoder_attention_kl", "cross_attention_kl",
                                          "reverse_kl", "gkd", "on_policy", "causal_attention_kl"}
    assert "attention_transfer" not in objectives.TEXT_LOSS_NAMES
    assert set(objectives.loss_names_for("translation")) == {"ce", "logit_kd", "hard_kd", "seq_kd",
                                                             "encoder_attention_kl", "decoder_attention_kl",
                                                             "cross_attention_kl"}
    assert "seq_kd" not in objectives.TEXT_LOSS_NAMES and "attention_kl" in objectives.loss_names_for("tagging")
    assert objectives.needs_of({"attention_transfer": 1000}) == {objectives.ACTIVATION}
    assert objectives.needs_of({"ce": 1}) == frozenset()
    assert objectives.needs_of({"ce": 1, "logit_kd": 0.0, "attention_kl": 1}) == {objectives.ATTENTION}
    assert objectives.needs_of({"hard_kd": 1, "hidden_mse": 1}) == {objectives.TEACHER_LOGITS, objectives.HIDDEN}
    # only the score loss asks for the scores: the probabilities' losses leave them uncomputed
    assert objectives.needs_of({"attention_score_mse": 1}) == {objectives.ATTENTION_SCORES}
    assert objectives.needs_of({"attention_mse": 1, "attention_kl": 1}) == {objectives.ATTENTION}
    with pytest.raises(ConfigError, match="known losses: ce, logit_kd"):
        objectives.get("focal")


def test_a_new_objective_is_one_function_and_its_registration(monkeypatch):
    monkeypatch.setattr(objectives, "OBJECTIVES", dict(objectives.OBJECTIVES))

    @objectives.register("margin", needs=(objectives.TEACHER_LOGITS,), help="teacher-student logit gap")
    def margin(inp):
        return (inp.teacher_logits - inp.student_logits).abs().mean()

    inp = inputs(teacher_logits=torch.zeros(4, 3))
    total, parts = objectives.combined_loss({"ce": 1.0, "margin": 2.0}, inp)
    assert torch.isclose(total, objectives.ce(inp) + 2 * inp.student_logits.abs().mean())
    assert objectives.needs_of({"margin": 1}) == {objectives.TEACHER_LOGITS}
    assert objectives.get("margin").uses_teacher
    with pytest.raises(ValueError, match="unknown inputs"):
        objectives.register("bad", needs=("pixels",))


def test_combined_weights_and_missing_inputs():
    inp = inputs(teacher_logits=torch.randn(4, 3))
    total, parts = objectives.combined_loss({"ce": 0.5, "logit_kd": 0.5, "hard_kd": 0.0}, inp)
    assert set(parts) == {"ce", "logit_kd"}
    assert torch.isclose(total, 0.5 * parts["ce"] + 0.5 * parts["logit_kd"])
    with pytest.raises(ConfigError, match="needs teacher attention"):
        objectives.combined_loss({"attention_kl": 1.0}, inputs())
    assert dataclasses.is_dataclass(objectives.OBJECTIVES["ce"])
