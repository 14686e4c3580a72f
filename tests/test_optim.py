"""The optimizer: AdamW (fused) with the word-embedding table updated row by row from sparse gradients."""
import torch
from torch import nn

from distill_core.optim import RowSparseAdamW, clip_grad_norm_, make_optimizer, sparse_embeddings


class Toy(nn.Module):
    def __init__(self, rows=5000, dim=8):
        super().__init__()
        self.emb = nn.Embedding(rows, dim)
        self.lin = nn.Linear(dim, 3)

    def get_input_embeddings(self):
        return self.emb

    def forward(self, ids):
        return self.lin(self.emb(ids).mean(1))


def _train(model, opt, batches, clip=None):
    for ids in batches:
        loss = model(ids).pow(2).sum()
        loss.backward()
        if clip is not None:
            clip_grad_norm_(list(model.parameters()), clip)
        opt.step()
        opt.zero_grad(set_to_none=True)


def test_large_input_embedding_gets_sparse_gradients_small_tables_do_not():
    big = Toy()
    dense = Toy()
    make_optimizer(dense, [{"params": list(dense.parameters())}], lr=1e-2, weight_decay=0.0)
    assert not dense.emb.sparse                              # row-sparse only when asked for
    opt = make_optimizer(big, [{"params": list(big.parameters())}], lr=1e-2, weight_decay=0.0, sparse_embedding=True)
    assert big.emb.sparse and isinstance(opt, RowSparseAdamW)
    big(torch.tensor([[1, 2, 3]])).sum().backward()
    assert big.emb.weight.grad.is_sparse and not big.lin.weight.grad.is_sparse
    small = Toy(rows=100)
    assert sparse_embeddings(small) == []
    make_optimizer(small, [{"params": list(small.parameters())}], lr=1e-2, weight_decay=0.0, sparse_embedding=True)
    assert not small.emb.sparse


def test_rows_in_every_batch_follow_dense_adamw_exactly():
    """When a batch names every row, the row-sparse update is AdamW's, weight decay and clipping included."""
    torch.manual_seed(0)
    a = Toy(rows=4096, dim=4)
    b = Toy(rows=4096, dim=4)
    b.load_state_dict(a.state_dict())
    every = torch.arange(4096).view(1, -1)
    batches = [every[:, torch.randperm(4096)] for _ in range(5)]
    opt_a = make_optimizer(a, [{"params": list(a.parameters())}], lr=1e-2, weight_decay=0.1, sparse_embedding=True)
    opt_b = torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=0.1)
    _train(a, opt_a, batches, clip=0.5)
    for ids in batches:
        b(ids).pow(2).sum().backward()
        torch.nn.utils.clip_grad_norm_(b.parameters(), 0.5)
        opt_b.step()
        opt_b.zero_grad(set_to_none=True)
    for (n, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(x, y, atol=1e-6), n


def test_rows_outside_the_batch_are_left_alone_and_match_sparse_adam():
    torch.manual_seed(1)
    a = Toy()
    b = Toy()
    b.load_state_dict(a.state_dict())
    before = a.emb.weight.detach().clone()
    batches = [torch.randint(0, 50, (4, 6)) for _ in range(6)]
    opt_a = make_optimizer(a, [{"params": list(a.parameters())}], lr=1e-2, weight_decay=0.0, sparse_embedding=True)
    _train(a, opt_a, batches)
    b.emb.sparse = True
    opt_b1 = torch.optim.SparseAdam([b.emb.weight], lr=1e-2)
    opt_b2 = torch.optim.AdamW(b.lin.parameters(), lr=1e-2, weight_decay=0.0)
    for ids in batches:
        b(ids).pow(2).sum().backward()
        opt_b1.step(); opt_b2.step()
        opt_b1.zero_grad(set_to_none=True); opt_b2.zero_grad(set_to_none=True)
    assert torch.equal(a.emb.weight[50:], before[50:])             # never in a batch: untouched
    assert not torch.equal(a.emb.weight[:50], before[:50])
    # SparseAdam adds eps before the bias correction, AdamW after it: equal up to that
    assert torch.allclose(a.emb.weight, b.emb.weight, atol=1e-4)
    assert torch.allclose(a.lin.weight, b.lin.weight, atol=1e-6)


def test_clip_counts_sparse_rows_once_even_when_a_token_repeats():
    m = Toy()
    make_optimizer(m, [{"params": list(m.parameters())}], lr=1e-2, weight_decay=0.0, sparse_embedding=True)
    ids = torch.tensor([[7, 7, 7, 9]])
    m(ids).pow(2).sum().backward()
    dense = m.emb.weight.grad.to_dense()
    expected = torch.sqrt(dense.pow(2).sum() + sum(p.grad.pow(2).sum() for p in m.lin.parameters()))
    total = clip_grad_norm_(list(m.parameters()), 1e-3)
    assert torch.allclose(total, expected)
    after = torch.sqrt(m.emb.weight.grad.to_dense().pow(2).sum() + sum(p.grad.pow(2).sum() for p in m.lin.parameters()))
    assert abs(float(after) - 1e-3) < 1e-5


def test_sparse_embedding_is_a_yes_or_no_setting_off_by_default():
    import pytest
    from distill_core.config import SessionConfig
    from distill_core.errors import ConfigError
    assert SessionConfig().train.sparse_embedding is False
    assert SessionConfig.from_dict({"train": {"sparse_embedding": True}}).train.sparse_embedding is True
    with pytest.raises(ConfigError, match="sparse_embedding must be true or false"):
        SessionConfig.from_dict({"train": {"sparse_embedding": "yes"}})


def test_lr_schedule_warms_up_then_decays_linearly_or_along_a_cosine():
    """100 steps (0..99), warm-up over the first 10: step s < 10 gives (s + 1) / 10, so the first step already
    learns and step 9 reaches the full rate; then progress p = (s - 10) / 90 gives 1 - p (linear) or
    (1 + cos(pi p)) / 2 (cosine), 1 at step 10 and one step short of 0 at the last step."""
    import math

    import pytest
    from distill_core.session.variant import lr_lambda
    total, warm = 100, 10

    def decay(schedule, s):
        p = (s - warm) / (total - warm)
        return 1 - p if schedule == "linear" else 0.5 * (1 + math.cos(math.pi * p))

    for schedule in ("linear", "cosine"):
        f = lr_lambda(schedule, total, 0.1)
        assert f(0) == pytest.approx(0.1)
        assert f(4) == pytest.approx(0.5)
        assert f(warm - 1) == pytest.approx(1.0)                      # the end of warm-up
        assert f(warm) == pytest.approx(1.0)                          # the first step of the decay
        for s in (warm + 1, 55, 70, total - 1):
            assert f(s) == pytest.approx(decay(schedule, s), abs=1e-12), (schedule, s)
    assert lr_lambda("linear", total, 0.1)(total - 1) == pytest.approx(1 / 90)
    assert lr_lambda("cosine", total, 0.1)(55) == pytest.approx(0.5)
    # without warm-up the decay starts at once; a constant schedule stays at 1 after its warm-up
    assert lr_lambda("linear", total, 0.0)(0) == 1.0 and lr_lambda("linear", total, 0.0)(50) == pytest.approx(0.5)
    assert lr_lambda("cosine", total, 0.0)(0) == 1.0
    assert [lr_lambda("constant", total, 0.1)(s) for s in (0, 9, 10, 99)] == pytest.approx([0.1, 1.0, 1.0, 1.0])
