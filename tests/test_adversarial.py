"""Perturbations of the word embeddings (distill_core.strategies.adversarial) on a tiny seeded BERT classifier."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from distill_core.strategies import adversarial as adv

EPS = 0.1


@pytest.fixture(scope="module")
def model():
    from transformers import BertConfig, BertForSequenceClassification
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                     max_position_embeddings=16, num_labels=3)
    torch.manual_seed(0)
    m = BertForSequenceClassification._from_config(cfg, attn_implementation="eager")
    m.eval()
    return m


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1, 50, (4, 7), generator=g)                 # (B, T)
    mask = torch.ones(4, 7, dtype=torch.long)
    mask[1, 5:] = 0                                                       # two padded rows
    mask[3, 3:] = 0
    input_ids[mask == 0] = 0
    labels = torch.tensor([0, 1, 2, 1])
    return {"input_ids": input_ids, "attention_mask": mask}, labels


def ce(labels):
    return lambda logits: F.cross_entropy(logits, labels)


def loss_at(model, inputs, labels, delta) -> float:
    with torch.no_grad():
        emb = adv.word_embeddings(model, inputs["input_ids"])
        return F.cross_entropy(adv.forward_embeds(model, inputs, emb + delta).logits, labels).item()


def test_forward_embeds_matches_input_ids(model, batch):
    inputs, _ = batch
    with torch.no_grad():
        plain = model(**inputs).logits
        via = adv.forward_embeds(model, inputs, adv.word_embeddings(model, inputs["input_ids"])).logits
    torch.testing.assert_close(via, plain)


def test_pgd_raises_the_loss_and_stays_in_the_ball(model, batch):
    inputs, labels = batch
    delta = adv.attack(model, inputs, inputs["attention_mask"], ce(labels), EPS, steps=3, alpha=EPS)
    assert delta.shape == (4, 7, 16) and not delta.requires_grad
    assert loss_at(model, inputs, labels, delta) > loss_at(model, inputs, labels, torch.zeros_like(delta))
    emb = adv.word_embeddings(model, inputs["input_ids"]).detach()
    size, limit = delta.norm(dim=-1), EPS * emb.norm(dim=-1)              # (B, T)
    assert bool((size <= limit + 1e-5).all())
    assert bool((delta[inputs["attention_mask"] == 0] == 0).all())
    assert bool((size[inputs["attention_mask"] == 1] > 0).any())


def test_epsilon_zero_gives_zeros(model, batch):
    inputs, labels = batch
    delta = adv.attack(model, inputs, inputs["attention_mask"], ce(labels), 0.0, steps=3, alpha=0.1)
    assert bool((delta == 0).all())


def test_first_grad_saves_one_pass(model, batch):
    inputs, labels = batch
    calls = {"n": 0}
    handle = model.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
    try:
        emb = adv.word_embeddings(model, inputs["input_ids"]).detach()
        first = torch.randn_like(emb)
        adv.attack(model, inputs, inputs["attention_mask"], ce(labels), EPS, steps=3, alpha=EPS, first_grad=first)
        assert calls["n"] == 2
        calls["n"] = 0
        adv.attack(model, inputs, inputs["attention_mask"], ce(labels), EPS, steps=3, alpha=EPS)
        assert calls["n"] == 3
    finally:
        handle.remove()


@pytest.mark.parametrize("training", [True, False])
def test_attack_leaves_mode_and_parameters_alone(model, batch, training):
    inputs, labels = batch
    model.train(training)
    try:
        adv.attack(model, inputs, inputs["attention_mask"], ce(labels), EPS, steps=2, alpha=EPS)
        assert model.training is training
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.eval()


def test_project_and_ascend():
    norms = torch.tensor([[[2.0], [1.0], [3.0]]])                         # (1, 3, 1)
    mask = torch.tensor([[1, 1, 0]])
    delta = torch.tensor([[[3.0, 4.0], [0.01, 0.0], [5.0, 5.0]]])        # norms 5, 0.01, 7
    out = adv.project(delta, norms, 0.5, mask)
    torch.testing.assert_close(out[0, 0], torch.tensor([0.6, 0.8]))       # onto radius 0.5 * 2
    torch.testing.assert_close(out[0, 1], delta[0, 1])                    # inside: unchanged
    assert bool((out[0, 2] == 0).all())                                   # padding
    grad = torch.tensor([[[0.0, 0.0], [0.0, 2.0], [1.0, 0.0]]])          # a zero gradient for token 0
    step = adv.ascend(torch.zeros(1, 3, 2), grad, norms, 0.1, 0.5, mask)
    torch.testing.assert_close(step, torch.tensor([[[0.0, 0.0], [0.0, 0.1], [0.0, 0.0]]]))


def test_random_start_inside_the_ball():
    like = torch.zeros(2, 5, 8)
    norms = torch.rand(2, 5, 1) + 0.5
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    a = adv.random_start(like, norms, 0.05, mask, generator=torch.Generator().manual_seed(3))
    b = adv.random_start(like, norms, 0.05, mask, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    assert bool((a.norm(dim=-1) <= 0.05 * norms[..., 0] + 1e-6).all())
    assert bool((a[0, 3:] == 0).all()) and bool((a[mask == 1].norm(dim=-1) > 0).all())


def test_ard_loss_by_hand():
    s = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]])
    t = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    temp = 2.0
    p, q = torch.softmax(t / temp, -1), torch.softmax(s / temp, -1)
    by_hand = (p * (p.log() - q.log())).sum(-1).mean() * temp ** 2
    torch.testing.assert_close(adv.ard_loss(s, t, temp), by_hand)
    assert adv.ard_loss(s, s.clone(), temp).abs().item() < 1e-6


# ---- the attack follows the ARD objective (Goldblum et al. 2020; random start: Madry et al. 2018) ----------------
def test_each_pgd_step_raises_the_ard_loss_from_a_random_start(model, batch):
    inputs, _ = batch
    mask = inputs["attention_mask"]
    torch.manual_seed(5)
    teacher = torch.randn(4, 3) * 3
    emb = adv.word_embeddings(model, inputs["input_ids"]).detach()
    norms = adv.token_norms(emb)

    def ard(delta):
        with torch.no_grad():
            return adv.ard_loss(adv.forward_embeds(model, inputs, emb + delta).logits, teacher, 2.0).item()
    delta = adv.random_start(emb, norms, EPS, mask)
    assert bool((delta.norm(dim=-1)[mask == 1] > 0).all())                 # a random point, not 0
    losses = [ard(delta)]
    for _ in range(4):
        delta = adv.climb(model, inputs, emb, delta, mask, lambda lg: adv.ard_loss(lg, teacher, 2.0), EPS, 1,
                          EPS / 4)
        losses.append(ard(delta))
    assert all(b > a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] > ard(torch.zeros_like(delta))


def test_a_random_start_attack_makes_steps_passes_and_ignores_first_grad(model, batch):
    inputs, labels = batch
    calls = {"n": 0}
    handle = model.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
    try:
        torch.manual_seed(0)
        a = adv.attack(model, inputs, inputs["attention_mask"], ce(labels), EPS, steps=2, alpha=EPS, random=True)
        assert calls["n"] == 2
        first = torch.randn_like(a)
        torch.manual_seed(0)
        b = adv.attack(model, inputs, inputs["attention_mask"], ce(labels), EPS, steps=2, alpha=EPS, random=True,
                       first_grad=first)
        torch.testing.assert_close(a, b)
    finally:
        handle.remove()


def test_pixel_random_start_stays_in_the_ball_and_the_pixel_range():
    torch.manual_seed(0)
    pixels = torch.rand(3, 1, 6, 6) * 2 - 1
    pixels[0] = 1.0                                                       # a white picture cannot get whiter
    delta = adv.pixel_random_start(pixels, 0.1)
    assert float(delta.abs().max()) <= 0.1 * adv.PIXEL_RANGE + 1e-6 and float(delta.abs().max()) > 0
    assert bool(((pixels + delta) <= 1.0 + 1e-6).all()) and bool(((pixels + delta) >= -1.0 - 1e-6).all())
    assert bool((delta[0] <= 0).all())


def _adversarial_variant(tmp_path, **adversarial):
    """One pgd ARD variant of a tiny student without dropout (so a forward pass can be repeated exactly)."""
    from transformers import BertConfig, BertForSequenceClassification

    from conftest import tiny_config_dict
    from distill_core import SessionConfig
    from distill_core.session.variant import StepContext, build_variants
    cfg = SessionConfig.from_dict(tiny_config_dict(
        tmp_path / "teacher", tmp_path / "data.csv", objectives={},
        variants=[{"name": "adversarial", "losses": {"ce": 0.5, "logit_kd": 0.5},
                   "adversarial": {"method": "pgd", "epsilon": 0.1, "steps": 2, **adversarial}}]))
    conf = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                      max_position_embeddings=16, num_labels=3, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    student = BertForSequenceClassification._from_config(conf, attn_implementation="eager")
    (variant,) = build_variants(cfg, student, [student], [], "auto", 2, lambda vc: 10, 1, torch.device("cpu"))
    return variant, StepContext(torch.device("cpu"), False, [], "auto")


@pytest.mark.parametrize("start", ["random", "clean_gradient"])
def test_the_adversarial_loss_is_the_ard_loss_of_the_perturbed_student_to_the_teacher(tmp_path, batch, monkeypatch,
                                                                                         start):
    """The variant learns KL(teacher(x) || student(x + delta)): the teacher's clean logits as the target, the
    student's output on the perturbed embeddings (a target of the student's own clean logits, or a forward pass
    that drops delta, would give another value)."""
    from distill_core.modality.base import Batch, TeacherBatch
    from distill_core.strategies import adversarial as adv_module
    variant, ctx = _adversarial_variant(tmp_path, start=start)
    inputs, labels = batch
    torch.manual_seed(3)
    teacher = TeacherBatch(logits=torch.randn(4, 3) * 3)
    fixed = torch.randn(4, 7, 16) * 3 * inputs["attention_mask"].unsqueeze(-1)   # a large, known nudge
    monkeypatch.setattr(adv_module, "attack", lambda *a, **k: fixed)
    t = float(variant.temperature.at(0))
    with torch.no_grad():
        emb = adv.word_embeddings(variant.model, inputs["input_ids"])
        expected = adv.ard_loss(adv.forward_embeds(variant.model, inputs, emb + fixed).logits, teacher.logits, t)
        clean = adv.ard_loss(variant.model(**inputs).logits, teacher.logits, t)
        own = adv.ard_loss(adv.forward_embeds(variant.model, inputs, emb + fixed).logits,
                           variant.model(**inputs).logits, t)
    parts = variant.step(Batch(inputs, inputs["attention_mask"], labels, list(range(4))), teacher, ctx)
    assert parts["adversarial"] == pytest.approx(float(expected), rel=1e-5)
    assert abs(float(expected) - float(clean)) > 1e-3 and abs(float(expected) - float(own)) > 1e-3


def test_the_default_attack_climbs_the_ard_loss_not_the_clean_losses(tmp_path, batch, monkeypatch):
    """By default the attack starts from a random point and every step follows the ARD loss: the labels (which the
    clean loss reads and the ARD loss does not) do not change the nudge. With start clean_gradient they do: its
    first step follows the clean step's gradient (ce + KD)."""
    from distill_core.modality.base import Batch, TeacherBatch
    from distill_core.strategies import adversarial as adv_module
    inputs, labels = batch
    real_attack = adv_module.attack

    def nudges(start):
        seen = []

        def spy(*a, **k):
            seen.append(real_attack(*a, **k))
            return seen[-1]
        monkeypatch.setattr(adv_module, "attack", spy)
        for y in (labels, (labels + 1) % 3):
            variant, ctx = _adversarial_variant(tmp_path, start=start)
            torch.manual_seed(3)
            teacher = TeacherBatch(logits=torch.randn(4, 3) * 3)
            variant.step(Batch(inputs, inputs["attention_mask"], y, list(range(4))), teacher, ctx)
        return seen
    a, b = nudges("random")
    assert bool((a != 0).any())
    torch.testing.assert_close(a, b)
    a, b = nudges("clean_gradient")
    assert not torch.allclose(a, b)
