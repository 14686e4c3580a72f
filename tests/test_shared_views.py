"""What many visitors of one view share: the run's arrays and the figures are made once, not once per visitor."""
from __future__ import annotations

import numpy as np
import pytest

from app import common

CALLS: list = []


def _count_and_build(maps, tokens, title=""):
    CALLS.append(title)
    return {"z": maps.tolist(), "tokens": list(tokens), "title": title}


def test_a_figure_is_built_once_for_every_visitor_of_the_same_view():
    CALLS.clear()
    maps = np.arange(9, dtype=np.float32).reshape(3, 3)
    first = common.shared_figure(_count_and_build, maps, ["a", "b", "c"], title="t")
    again = common.shared_figure(_count_and_build, maps.copy(), ["a", "b", "c"], title="t")   # another visitor
    assert again is first and CALLS == ["t"]
    other = common.shared_figure(_count_and_build, maps + 1, ["a", "b", "c"], title="t")      # other values
    assert other is not first and other["z"][0][0] == 1.0
    common.shared_figure(_count_and_build, maps, ["a", "b", "c"], title="u")                  # other options
    assert CALLS == ["t", "t", "u"]


def test_attention_arrays_are_shared_read_only(finished_run):
    store, run_id = finished_run
    first = common.read_attention(str(store.root), run_id, "teacher", 1.0)
    again = common.read_attention(str(store.root), run_id, "teacher", 1.0)
    assert again is first                                     # no copy per visitor
    with pytest.raises(ValueError):
        first[0][0, 0, 0, 0] = 0.5                            # and no page can change what another sees
