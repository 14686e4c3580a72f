import pytest
import torch

from distill_core import mapping
from distill_core.errors import ConfigError


@pytest.mark.parametrize("rule,t,s,expected", [
    ("uniform", 6, 3, [1, 3, 5]),
    ("uniform", 12, 4, [2, 5, 8, 11]),
    ("uniform", 6, 6, [0, 1, 2, 3, 4, 5]),
    ("uniform", 6, 1, [5]),
    ("last", 6, 3, [3, 4, 5]),
    ([0, 2, 4], 6, 3, [0, 2, 4]),
])
def test_layer_maps(rule, t, s, expected):
    assert mapping.layer_map(rule, t, s) == expected


def test_layer_map_errors_name_the_fix():
    with pytest.raises(ConfigError, match="at most 6 student layers"):
        mapping.layer_map("uniform", 6, 8)
    with pytest.raises(ConfigError, match="exactly one teacher layer per student layer"):
        mapping.layer_map([1, 2], 6, 3)
    with pytest.raises(ConfigError, match="teacher's layers are 0..5"):
        mapping.layer_map([1, 2, 9], 6, 3)


def test_head_rules():
    assert mapping.resolve_head_rule("auto", 12, 12) == "direct"
    assert mapping.resolve_head_rule("auto", 12, 4) == "group"
    assert mapping.resolve_head_rule("auto", 12, 5) == "mean"
    with pytest.raises(ConfigError):
        mapping.resolve_head_rule("group", 12, 5)
    with pytest.raises(ConfigError):
        mapping.resolve_head_rule("direct", 12, 4)


def test_group_averages_consecutive_teacher_heads():
    maps = torch.arange(12, dtype=torch.float).view(12, 1, 1).expand(12, 2, 2)   # (Ht, T, T), head h = h
    grouped = mapping.adapt_teacher(maps, "group", 4)
    assert grouped.shape == (4, 2, 2)
    assert grouped[:, 0, 0].tolist() == [1.0, 4.0, 7.0, 10.0]
    assert mapping.adapt_teacher(maps, "mean", 4).shape == (1, 2, 2)
    assert mapping.adapt_student(torch.rand(4, 2, 2), "mean").shape == (1, 2, 2)
