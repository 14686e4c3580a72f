"""The explorer greys out the heads a pruned version of the student masks."""
import numpy as np
import pytest

from app_helpers import VIEWS, figures, open_page, run_app
from distill_core.compress import compress_run, pruned_heads


@pytest.fixture
def compressed(run_copy):
    compress_run(run_copy, ["distilled"], fractions=[0.0, 0.5])
    return run_copy


def grey_panels(fig: dict) -> list[str]:
    """The panels of a head grid veiled as pruned (their axes), from the figure's shapes."""
    return sorted(s["xref"].split()[0] for s in fig["layout"].get("shapes", []) if s.get("fillcolor"))


def test_the_explorer_greys_out_the_pruned_heads(compressed):
    at = open_page(VIEWS / "explorer.py")
    assert at.radio(key="explorer.student").value == "distilled"
    options = at.selectbox(key="explorer.pruned").options
    assert len(options) == 2 and options[0] == "none" and options[1].startswith("pruned_50: 2 heads removed, test")
    assert grey_panels(figures(at)["explorer.student_grid"]) == []
    at.selectbox(key="explorer.pruned").set_value("pruned_50")
    run_app(at)
    mask = pruned_heads(compressed, "distilled", "pruned_50")                 # (layers, heads), True = pruned
    assert mask.sum() == 2
    for layer in range(mask.shape[0]):
        at.selectbox(key="explorer.student_layer").set_value(layer)
        run_app(at)
        grid = figures(at)["explorer.student_grid"]
        expected = sorted("x" if h == 0 else f"x{h + 1}" for h in np.flatnonzero(mask[layer]))
        assert grey_panels(grid) == expected
        titles = [a["text"] for a in grid["layout"]["annotations"]]
        assert [t.endswith("· pruned") for t in titles if t.startswith("head")] == list(mask[layer])
