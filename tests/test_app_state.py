"""A view's state: restored from the URL, kept across page switches, written back into the URL."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app import state
from app_helpers import VIEWS, open_page, run_app, texts

APP = Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py"


@pytest.fixture
def store_with_run(tmp_path, four_variant_run, monkeypatch):
    src, run_id = four_variant_run
    shutil.copytree(src.root / run_id, tmp_path / run_id)
    monkeypatch.setenv("ADS_RUNS_DIR", str(tmp_path))
    return tmp_path, run_id


def _param(at: AppTest, name: str):
    value = at.query_params.get(name)
    return value[0] if isinstance(value, list) else value


def test_fields_parse_and_format_their_url_text():
    f = state.Field("x.window", "tokens", tuple)
    assert f.parse("3-27") == (3, 27) and f.format((3, 27)) == "3-27"
    b = state.Field("x.flag", "flag", bool)
    assert b.parse("1") is True and b.parse("off") is False and b.format(False) == "0"
    with pytest.raises(ValueError):
        state.Field("x.n", "n", int).parse("abc")
    assert state.class_or_model("2") == 2 and state.class_or_model("teacher") == "teacher"


def test_explorer_opens_at_the_view_named_in_the_url(store_with_run):
    _, run_id = store_with_run
    at = open_page(VIEWS / "explorer.py", {"run": run_id, "variant": "baseline", "layer": "1", "head": "1",
                                           "example": "2", "sqrt": "0"}, default_timeout=30)
    assert at.selectbox(key="explorer.run").value == run_id
    assert at.radio(key="explorer.student").value == "baseline"
    assert at.selectbox(key="explorer.student_layer").value == 1
    assert at.selectbox(key="explorer.head").value == 1
    assert at.selectbox(key="explorer.example").value == 2
    assert at.checkbox(key="explorer.sqrt_scale").value is False
    # the URL names the whole view, including the fields the link left out
    assert _param(at, "layer") == "1" and _param(at, "head") == "1" and _param(at, "run") == run_id
    assert _param(at, "tlayer") is not None and _param(at, "variant") == "baseline"


def test_a_mistyped_or_stale_link_falls_back_without_an_error(store_with_run):
    _, run_id = store_with_run
    at = open_page(VIEWS / "explorer.py", {"run": run_id, "layer": "abc", "head": "99", "example": "-4"},
                   default_timeout=30)
    assert at.selectbox(key="explorer.student_layer").value in (0, 1)
    assert at.selectbox(key="explorer.head").value in (-1, 0, 1)
    at = open_page(VIEWS / "explorer.py", {"run": "no-such-run"}, default_timeout=30)
    assert "no-such-run" in texts(at.warning) and at.selectbox(key="explorer.run").value == run_id


def test_state_survives_a_visit_to_another_page_and_a_reload(store_with_run):
    _, run_id = store_with_run
    at = run_app(AppTest.from_file(str(APP), default_timeout=30))
    at.switch_page("views/explorer.py")
    run_app(at)
    at.selectbox(key="explorer.student_layer").set_value(1)
    run_app(at)
    at.selectbox(key="explorer.head").set_value(0)
    at.selectbox(key="explorer.example").set_value(3)
    run_app(at)
    assert _param(at, "head") == "0" and _param(at, "example") == "3"
    at.switch_page("views/divergence.py")
    run_app(at)
    at.selectbox(key="divergence.metric").set_value("cosine")
    run_app(at)
    assert _param(at, "metric") == "cosine" and _param(at, "head") is None
    at.switch_page("views/explorer.py")
    run_app(at)
    assert at.selectbox(key="explorer.student_layer").value == 1
    assert at.selectbox(key="explorer.head").value == 0
    assert at.selectbox(key="explorer.example").value == 3
    link = dict(at.query_params)
    at.switch_page("views/divergence.py")
    run_app(at)
    assert at.selectbox(key="divergence.metric").value == "cosine"

    # a reload: a new browser session with only the URL
    fresh = AppTest.from_file(str(VIEWS / "explorer.py"), default_timeout=30)
    for k, v in link.items():
        fresh.query_params[k] = v[0] if isinstance(v, list) else v
    run_app(fresh)
    assert fresh.selectbox(key="explorer.head").value == 0
    assert fresh.selectbox(key="explorer.example").value == 3


def test_a_sentence_typed_in_the_explorer_is_offered_on_the_attributions_page(store_with_run):
    _, run_id = store_with_run
    at = run_app(AppTest.from_file(str(APP), default_timeout=60))
    at.switch_page("views/explorer.py")
    run_app(at)
    at.radio(key="explorer.source").set_value("typed")
    run_app(at)
    at.text_input(key="explorer.text").set_value("a quiet film about a loud family")
    run_app(at)
    assert _param(at, "text") == "a quiet film about a loud family"
    at.switch_page("views/attributions.py")
    run_app(at)
    offer = at.button(key="attributions.use_typed")
    assert "a quiet film about a loud family" in str(offer.label)


def test_a_divergence_grid_cell_opens_the_explorer_there(store_with_run):
    _, run_id = store_with_run
    at = run_app(AppTest.from_file(str(APP), default_timeout=30))
    at.switch_page("views/divergence.py")
    run_app(at)
    at.selectbox(key="divergence.open_pair").set_value(1)
    at.selectbox(key="divergence.open_head").set_value(1)
    at.button(key="divergence.open").click()
    run_app(at)
    assert at.selectbox(key="explorer.student_layer") is not None
    assert at.selectbox(key="explorer.head").value == 1
    pairs = at.session_state["state.explorer"]
    assert pairs["explorer.student_layer"] == at.selectbox(key="explorer.student_layer").value


def test_the_compare_page_opens_at_the_two_sides_named_in_the_url(store_with_run):
    _, run_id = store_with_run
    at = open_page(VIEWS / "compare.py", {"a_run": run_id, "a_variant": "kd", "a_epoch": "1", "b_run": run_id,
                                          "b_variant": "kd_att_kl", "b_epoch": "2", "metric": "kl"},
                   default_timeout=30)
    got = {k: at.selectbox(key=f"compare.{k}").value for k in ("a_variant", "a_epoch", "b_variant", "b_epoch",
                                                              "metric")}
    assert got == {"a_variant": "kd", "a_epoch": 1, "b_variant": "kd_att_kl", "b_epoch": 2, "metric": "kl"}
    assert _param(at, "b_variant") == "kd_att_kl" and _param(at, "metric") == "kl"
