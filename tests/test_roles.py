"""An instructor and a class of viewers (app/roles.py): every page drawn for both roles, the controls a viewer must
not have hidden, and a viewer's crafted request for them refused where the action is performed."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from app import roles
from app_helpers import VIEWS, run_app, texts
from distill_core import RunStore

APP = Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py"
TOKEN = "a-class-secret-7"
PAGES = sorted(p.stem for p in VIEWS.glob("*.py"))
# The controls that change something, by page: a viewer has none of them, the instructor every one.
ACTIONS = {"new_session": ["new.start"], "runs": ["runs.delete", "runs.cache_clear", "runs.export.push"],
           "accuracy": ["accuracy.measure_robustness"], "compression": ["compression.compress"]}


@pytest.fixture
def class_store(tmp_path, finished_run, monkeypatch):
    """The finished run in a store of its own, served to a class: ADS_INSTRUCTOR_TOKEN set."""
    store, run_id = finished_run
    shutil.copytree(store.root / run_id, tmp_path / "runs" / run_id)
    monkeypatch.setenv("ADS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv(roles.TOKEN_ENV, TOKEN)
    return RunStore(tmp_path / "runs"), run_id


@pytest.fixture
def served_on(monkeypatch):
    """Set the address Streamlit binds to for one test (the repository's config says 127.0.0.1)."""
    before = st_config.get_option("server.address")

    def serve(address):
        st_config.set_option("server.address", address)
    yield serve
    st_config.set_option("server.address", before)


def _page(name: str, run_id: str, instructor: bool, timeout: float = 30) -> AppTest:
    at = AppTest.from_file(str(VIEWS / f"{name}.py"), default_timeout=timeout)
    at.query_params["run"] = run_id
    at.session_state[roles.INSTRUCTOR] = instructor
    return run_app(at)


def _keys(at: AppTest, kind: str = "button") -> set[str]:
    return {w.key for w in at.get(kind) if w.key}


def test_modes_follow_the_token_and_the_address(monkeypatch):
    monkeypatch.delenv(roles.TOKEN_ENV, raising=False)
    assert roles.exposed("0.0.0.0") and roles.exposed("192.168.1.20") and roles.exposed("")
    assert not roles.exposed("127.0.0.1") and not roles.exposed("localhost") and not roles.exposed("[::1]")
    assert roles.mode() == roles.ALONE                      # the repository's config: 127.0.0.1
    monkeypatch.setenv(roles.TOKEN_ENV, "  " + TOKEN + "\n")
    assert roles.mode() == roles.CLASS
    assert roles.token_matches(TOKEN) and roles.token_matches(TOKEN + " ")
    assert not roles.token_matches(TOKEN[:-1]) and not roles.token_matches("") and not roles.token_matches(None)
    monkeypatch.setenv(roles.TOKEN_ENV, "")
    assert not roles.token_matches("")                      # an empty token never opens anything


@pytest.mark.parametrize("name", PAGES)
def test_every_page_for_a_viewer_and_for_the_instructor(class_store, name):
    _, run_id = class_store
    viewer, instructor = _page(name, run_id, False), _page(name, run_id, True)
    hidden = set(ACTIONS.get(name, []))
    assert not hidden & _keys(viewer), f"a viewer sees {hidden & _keys(viewer)} on {name}"
    assert hidden <= _keys(instructor), f"the instructor misses {hidden - _keys(instructor)} on {name}"
    assert not viewer.get("file_uploader")
    assert "new.cancel" not in _keys(viewer)
    if name == "runs":          # a viewer downloads the run, its report and its student
        assert {"runs.download", "runs.export.download"} <= _keys(viewer, "download_button")
    if name == "new_session":
        assert "You are a viewer" in texts(viewer.info)
        assert instructor.get("file_uploader") or instructor.text_input(key="new.name")


@pytest.mark.parametrize("name,key", [("runs", "runs.delete"), ("accuracy", "accuracy.measure_robustness"),
                                      ("compression", "compression.compress"), ("new_session", "new.start")])
def test_a_viewers_crafted_request_changes_nothing(class_store, name, key):
    """The instructor's page was drawn, then the tab is a viewer's and the control is clicked anyway: as a viewer's
    browser would send it for a control it was never shown."""
    store, run_id = class_store
    at = _page(name, run_id, True, timeout=60)
    if name == "runs":
        at.checkbox(key="runs.delete_confirm").check().run()
    before = sorted(p.name for p in (store.root / run_id).rglob("*"))
    runs_before = [r.run_id for r in store.list()]
    at.session_state[roles.INSTRUCTOR] = False
    at.button(key=key).click()
    run_app(at)
    assert [r.run_id for r in store.list()] == runs_before       # nothing started, nothing deleted
    assert sorted(p.name for p in (store.root / run_id).rglob("*")) == before     # nothing measured or written
    if name == "runs":
        assert "Only the instructor can delete runs" in texts(at.error)


def test_the_instructor_can_delete(class_store):
    store, run_id = class_store
    at = _page("runs", run_id, True)
    at.checkbox(key="runs.delete_confirm").check().run()
    at.button(key="runs.delete").click()
    run_app(at)
    assert not store.exists(run_id)


def test_exposed_without_a_token_serves_viewers_only(class_store, served_on, monkeypatch):
    _, run_id = class_store
    monkeypatch.delenv(roles.TOKEN_ENV)
    served_on("0.0.0.0")
    at = _page("new_session", run_id, True)            # even a tab that once was the instructor's
    assert "new.start" not in _keys(at)
    assert "ADS_INSTRUCTOR_TOKEN=<a secret> make serve" in texts(at.info)


def test_alone_on_this_machine_every_control_is_there(class_store, monkeypatch):
    _, run_id = class_store
    monkeypatch.delenv(roles.TOKEN_ENV)
    assert {"runs.delete", "runs.cache_clear"} <= _keys(_page("runs", run_id, False))


def _app(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=30)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    return run_app(at)


def test_the_token_in_the_sidebar_makes_the_instructor_and_is_forgotten(class_store):
    at = _app()
    assert at.session_state[roles.INSTRUCTOR] is not True if roles.INSTRUCTOR in at.session_state else True
    assert "new.start" not in _keys(at)
    at.text_input(key=roles.TOKEN_BOX).input("not it")
    run_app(at)
    assert "That is not the instructor token." in texts(at.sidebar.error)
    assert "new.start" not in _keys(at)
    at.text_input(key=roles.TOKEN_BOX).input(TOKEN)
    run_app(at)
    assert at.session_state[roles.INSTRUCTOR] is True and "new.start" in _keys(at)
    assert not at.get("text_input") or all(w.value != TOKEN for w in at.get("text_input"))
    assert TOKEN not in str(at.main) + str(at.sidebar)
    at.button(key="roles.leave").click()
    run_app(at)
    assert "new.start" not in _keys(at)


def test_a_link_with_the_token_makes_the_instructor_and_leaves_the_address(class_store):
    at = _app({roles.TOKEN_PARAM: TOKEN})
    assert at.session_state[roles.INSTRUCTOR] is True and "new.start" in _keys(at)
    assert roles.TOKEN_PARAM not in at.query_params
    wrong = _app({roles.TOKEN_PARAM: "guess"})
    assert "new.start" not in _keys(wrong) and roles.TOKEN_PARAM not in wrong.query_params
    assert "not right" in texts(wrong.sidebar.error)


def test_a_link_token_without_a_configured_token_is_dropped_quietly(class_store, monkeypatch):
    monkeypatch.delenv(roles.TOKEN_ENV)
    at = _app({roles.TOKEN_PARAM: "anything"})
    assert roles.TOKEN_PARAM not in at.query_params and not at.sidebar.error
    assert "new.start" in _keys(at)              # alone on 127.0.0.1: every control, as without the link


def test_a_viewer_explores_runs_and_types_sentences(class_store):
    _, run_id = class_store
    at = _page("explorer", run_id, False, timeout=60)
    assert at.get("plotly_chart")
    source = at.radio(key="explorer.source")
    source.set_value("typed")
    run_app(at)
    at.text_input(key="explorer.text").input("a viewer types a sentence of their own")
    run_app(at)
    assert at.get("plotly_chart")
