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
