import math

import numpy as np
import torch
from hypothesis import given, settings, strategies as st

from distill_core.metrics import JS_MAX, attention_metrics, map_metric, row_metric


def random_maps(shape, seed=0, sharp=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(*shape, generator=g) * sharp, dim=-1)


def test_zero_for_equal_maps():
    p = random_maps((2, 3, 4, 5, 5))
    m = attention_metrics(p, p.clone())
    for name in ("kl", "js", "mse"):
        assert torch.allclose(m[name], torch.zeros(3, 4), atol=1e-6), name
    assert torch.allclose(m["cosine"], torch.ones(3, 4), atol=1e-6)


def test_js_symmetric_and_bounded():
    p, q = random_maps((2, 1, 2, 6, 6), 1, 5.0), random_maps((2, 1, 2, 6, 6), 2, 5.0)
    a, b = attention_metrics(p, q)["js"], attention_metrics(q, p)["js"]
    assert torch.allclose(a, b, atol=1e-6)
    assert (a > 0).all() and (a <= JS_MAX + 1e-6).all()


def test_js_reaches_ln2_for_disjoint_rows():
    t = 4
    p = torch.zeros(1, 1, 1, t, t)
    q = torch.zeros(1, 1, 1, t, t)
    p[..., 0] = 1.0
    q[..., 1] = 1.0
    js = attention_metrics(p, q)["js"]
    assert math.isclose(js.item(), math.log(2), rel_tol=1e-4)


def test_kl_matches_hand_computation():
    p = torch.tensor([[0.5, 0.5], [0.9, 0.1]]).view(1, 1, 1, 2, 2)
    q = torch.tensor([[0.25, 0.75], [0.5, 0.5]]).view(1, 1, 1, 2, 2)
    expected = np.mean([0.5 * np.log(0.5 / 0.25) + 0.5 * np.log(0.5 / 0.75),
                        0.9 * np.log(0.9 / 0.5) + 0.1 * np.log(0.1 / 0.5)])
    assert math.isclose(attention_metrics(p, q)["kl"].item(), expected, rel_tol=1e-5)


def test_js_and_mse_and_cosine_match_hand_computation():
    rows_p = [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]
    rows_q = [[0.3, 0.3, 0.4], [0.5, 0.25, 0.25]]

    def kl(a, b):
        return sum(x * math.log(x / y) for x, y in zip(a, b))

    def js(a, b):
        m = [(x + y) / 2 for x, y in zip(a, b)]
        return 0.5 * kl(a, m) + 0.5 * kl(b, m)

    def mse(a, b):
        return sum((x - y) ** 2 for x, y in zip(a, b)) / len(a)       # mean over the keys of a row

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    p = torch.zeros(1, 1, 1, 3, 3)
    q = torch.zeros(1, 1, 1, 3, 3)
    p[..., :2, :] = torch.tensor(rows_p)
    q[..., :2, :] = torch.tensor(rows_q)
    p[..., 2, :], q[..., 2, :] = torch.tensor([1.0, 0, 0]), torch.tensor([1.0, 0, 0])   # an identical third row
    m = attention_metrics(p, q)
    for name, f in (("js", js), ("mse", mse), ("cosine", cos), ("kl", kl)):
        expected = (f(rows_p[0], rows_q[0]) + f(rows_p[1], rows_q[1]) + f([1, 1e-30, 1e-30], [1, 1e-30, 1e-30])) / 3
        assert math.isclose(m[name].item(), expected, rel_tol=1e-4, abs_tol=1e-7), name
    # a 5-token map whose last two keys are padding: MSE averages over the 3 real keys only
    pp, qq = torch.zeros(1, 1, 1, 5, 5), torch.zeros(1, 1, 1, 5, 5)
    pp[..., :3, :3], qq[..., :3, :3] = p, q
    masked = attention_metrics(pp, qq, torch.tensor([[1, 1, 1, 0, 0]]))
    assert math.isclose(masked["mse"].item(), m["mse"].item(), rel_tol=1e-5)


def test_padding_is_ignored():
    """Whatever sits in padded rows and columns changes nothing."""
    p, q = random_maps((1, 1, 2, 3, 3), 3), random_maps((1, 1, 2, 3, 3), 4)
    base = attention_metrics(p, q)
    pp = torch.zeros(1, 1, 2, 5, 5)
    qq = torch.zeros(1, 1, 2, 5, 5)
    pp[..., :3, :3], qq[..., :3, :3] = p, q
    pp[..., 3:, :] = 0.2      # garbage in padded query rows
    qq[..., :, 3:] = 0.0
    pp[..., :3, 3:] = 0.3     # probability mass on padded keys is dropped and rows renormalised
    pp[..., :3, :3] = p * 0.7
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    padded = attention_metrics(pp, qq, mask)
    for k in base:
        assert torch.allclose(base[k], padded[k], atol=1e-5), k


def test_mask_weights_examples_by_real_rows():
    p, q = random_maps((2, 1, 1, 4, 4), 5), random_maps((2, 1, 1, 4, 4), 6)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    rows, query = row_metric("js", p, q, mask)
    assert query.sum().item() == 6
    assert rows.shape == (2, 1, 1, 4)


def test_map_metric_numpy_helper():
    p = random_maps((3, 4, 4), 7).numpy()
    assert np.allclose(map_metric("js", p, p), 0, atol=1e-6)
    assert map_metric("kl", p, random_maps((3, 4, 4), 8).numpy()).shape == (3,)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 6), st.integers(0, 10_000), st.floats(0.1, 8.0))
def test_properties_random(t, seed, sharp):
    p = random_maps((1, 1, 1, t, t), seed, sharp)
    q = random_maps((1, 1, 1, t, t), seed + 1, sharp)
    m = attention_metrics(p, q)
    assert m["kl"].item() >= -1e-6
    assert -1e-6 <= m["js"].item() <= JS_MAX + 1e-6
    assert math.isclose(m["js"].item(), attention_metrics(q, p)["js"].item(), abs_tol=1e-5)
    assert -1e-6 <= m["mse"].item() <= 2 + 1e-6
    assert 0 <= m["cosine"].item() <= 1 + 1e-6
