"""The Runs page, driven with Streamlit's AppTest on copies of a run the real engine wrote (nothing trains here)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app import common
from app.state import STARTED_HERE
from app_helpers import VIEWS, open_page, texts
from distill_core import RunStore

PAGE = str(Path(__file__).resolve().parent.parent / "app" / "views" / "runs.py")
TIMEOUT = 60


def run_page() -> AppTest:
    return open_page(PAGE, default_timeout=TIMEOUT)


def table(at: AppTest):
    return at.dataframe[0].value


@pytest.fixture
def store(tmp_path, monkeypatch) -> RunStore:
    monkeypatch.setenv("ADS_RUNS_DIR", str(tmp_path / "runs"))
    return RunStore(tmp_path / "runs")


def copy_run(finished_run, store: RunStore, new_id: str | None = None, **config_changes) -> str:
    """A copy of the session-scoped finished run in `store`, so the original stays intact."""
    src, run_id = finished_run
    new_id = new_id or run_id
    shutil.copytree(src.root / run_id, store.root / new_id)
    if config_changes:
        run = store.open(new_id)
        cfg = run.config()
        for key, value in config_changes.items():
            section, _, name = key.partition("__")
            if name:
                cfg[section][name] = value
            else:
                cfg[section] = value
        run.write_json("config.json", cfg)
    return new_id


def test_empty_store_says_what_to_do(store, tmp_path, monkeypatch):
    monkeypatch.setenv("ADS_CACHE_DIR", str(tmp_path / "empty-cache"))     # no cached teacher to list either
    at = run_page()
    assert "No runs yet" in texts(at.info)
    assert "New session" in texts(at.info)
    assert not at.dataframe


def test_lists_the_run_with_its_accuracies(finished_run, store):
    run_id = copy_run(finished_run, store)
    at = run_page()
    df = table(at)
    assert list(df["run"]) == [run_id]
    assert df["status"].iloc[0].endswith("done")
    acc = store.open(run_id).summary()["accuracy"]
    assert df["teacher %"].iloc[0] == pytest.approx(100 * acc["teacher"], abs=0.051)
    assert df["reference %"].iloc[0] == pytest.approx(100 * acc["baseline"], abs=0.051)
    best = "distilled" if acc["distilled"] > acc["baseline"] else "baseline"
    assert df["best variant"].iloc[0] == best
    assert df["best %"].iloc[0] == pytest.approx(100 * acc[best], abs=0.051)
    assert df["variants"].iloc[0] == "baseline, distilled"
    assert df["epochs"].iloc[0] == 2
    assert at.download_button(key="runs.download") is not None
    assert [link.proto.page for link in at.page_link] == ["compare"]      # comparing has its own page
    assert not [s for s in at.selectbox if str(s.key).startswith("runs.compare")]


def test_open_selects_the_run_for_the_other_pages(finished_run, store):
    run_id = copy_run(finished_run, store)
    at = run_page()
    at.button(key="runs.open").click().run()
    assert at.session_state[common.SELECTED_RUN] == run_id
    assert "now show it" in texts(at.success)


def test_delete_needs_confirmation_and_removes_the_folder(finished_run, store):
    run_id = copy_run(finished_run, store)
    keep = copy_run(finished_run, store, "another-run")
    at = run_page()
    at.selectbox(key="runs.choice").set_value(run_id).run()
    assert at.button(key="runs.delete").disabled     # AppTest, like a browser, cannot click it
    at.checkbox(key="runs.delete_confirm").check().run()
    assert not at.button(key="runs.delete").disabled
    at.button(key="runs.delete").click().run()
    assert not at.exception
    assert not (store.root / run_id).exists()
    assert store.exists(keep)
    assert f"Deleted run {run_id}" in texts(at.success)
    assert list(table(at)["run"]) == [keep]
    assert at.checkbox(key="runs.delete_confirm").value is False
    assert finished_run[0].exists(finished_run[1])   # the shared fixture is untouched


def test_deleting_a_running_run_shows_the_store_error(store, tiny_config):
    run = store.create(tiny_config.to_dict())        # running, owned by this live process
    at = run_page()
    at.checkbox(key="runs.delete_confirm").check().run()
    at.button(key="runs.delete").click().run()
    assert "still running" in texts(at.error)
    assert run.path.is_dir()


def test_a_run_whose_process_crashed_says_why(store, tiny_config):
    """What child.record_end leaves when a session's process dies of a signal: the reason and the stack, shown."""
    from distill_core.session.child import record_end
    run = store.create(tiny_config.to_dict())
    run.write_json("progress.json", {"phase": "train", "epoch": 0, "epochs": 6, "done": 4, "total": 30})
    (run.path / "crash.txt").write_text('Fatal Python error: Segmentation fault\n  File "variant.py", line 189')
    record_end(run, -11)
    at = run_page()
    assert table(at).set_index("run").loc[run.id, "status"].endswith("failed")
    shown = texts(at.error)
    assert "This run failed: killed by signal 11 (SIGSEGV, segmentation fault) during training, epoch 1 of 6, " \
           "after step 4 of 30" in shown and "It finished no epoch." in shown
    assert "Fatal Python error: Segmentation fault" in texts(at.code)


def test_damaged_run_is_marked(finished_run, store):
    copy_run(finished_run, store)
    bad = store.root / "broken-run"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    at = run_page()
    df = table(at)
    assert df.set_index("run").loc["broken-run", "status"].endswith("damaged")
    assert "broken-run" in texts(at.warning) and "damaged" in texts(at.warning)
    at.selectbox(key="runs.choice").set_value("broken-run").run()
    assert at.button(key="runs.open").disabled
    at.checkbox(key="runs.delete_confirm").check().run()
    at.button(key="runs.delete").click().run()
    assert not bad.exists()


def _fake_cache(root: Path) -> None:
    """A cached teacher folder and a teacher-outputs file, as the engine lays them out."""
    teacher = root / "teachers" / "abc123"
    teacher.mkdir(parents=True)
    (teacher / "model.safetensors").write_bytes(b"x" * 1_500_000)
    (teacher / "distill_meta.json").write_text('{"source": "default", "data": "d1"}')
    (root / "teacher_outputs").mkdir()
    (root / "teacher_outputs" / "def456.safetensors").write_bytes(b"y" * 500_000)


def test_teacher_cache_size_is_shown_and_cleared_after_confirmation(store, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ADS_CACHE_DIR", str(cache))
    _fake_cache(cache)
    at = run_page()                                 # an empty run store still shows the cache
    assert f"Teacher cache: 2.0 MB in 2 entries at `{cache}`" in texts(at.markdown)
    assert at.button(key="runs.cache_clear").disabled
    at.checkbox(key="runs.cache_confirm").check().run()
    at.button(key="runs.cache_clear").click().run()
    assert not at.exception
    assert "Freed 2.0 MB" in texts(at.success)
    assert "Teacher cache: 0.0 MB in 0 entries" in texts(at.markdown)
    assert not (cache / "teachers" / "abc123").exists()
    assert at.checkbox(key="runs.cache_confirm").value is False


# ---- the open run: chosen by the user, never switched by visiting a page ----------------------------------
def test_a_link_to_runs_chooses_and_opens_that_run(finished_run, store):
    first = copy_run(finished_run, store, "20990101-000000-aaaa")
    copy_run(finished_run, store, "20990102-000000-bbbb")          # newer: listed first
    at = open_page(VIEWS / "runs.py", {"run": first})
    assert at.selectbox(key="runs.choice").value == first
    assert at.session_state[common.SELECTED_RUN] == first


def test_new_session_page_leaves_the_open_run_alone(finished_run, store):
    older = copy_run(finished_run, store, "20990101-000000-aaaa")
    copy_run(finished_run, store, "20990102-000000-bbbb")          # the last session, shown on New session
    at = AppTest.from_file(str(VIEWS / "new_session.py"), default_timeout=10)
    at.session_state[common.SELECTED_RUN] = older
    at.run()
    assert not at.exception
    assert "20990102-000000-bbbb" in texts(at.markdown)                # the last session is shown there...
    assert at.session_state[common.SELECTED_RUN] == older           # ...but not opened on the other pages
    div = AppTest.from_file(str(VIEWS / "divergence.py"), default_timeout=10)
    div.session_state[common.SELECTED_RUN] = older
    div.run()
    assert div.selectbox(key="divergence.run").value == older


def test_a_finished_session_started_here_is_offered_not_imposed(finished_run, store):
    older = copy_run(finished_run, store, "20990101-000000-aaaa")
    mine = copy_run(finished_run, store, "20990102-000000-bbbb")
    at = AppTest.from_file(str(VIEWS / "divergence.py"), default_timeout=10)
    at.session_state[common.SELECTED_RUN] = older
    at.session_state[STARTED_HERE] = mine
    at.run()
    assert at.selectbox(key="divergence.run").value == older
    assert f"The session you started, **{mine}**, has finished" in texts(at.caption)
    at.button(key=f"common.offer.{mine}").click().run()
    assert at.session_state[common.SELECTED_RUN] == mine
    assert at.selectbox(key="divergence.run").value == mine
    assert "The session you started" not in texts(at.caption)
    # and a pick in the selector is the open run everywhere
    at.selectbox(key="divergence.run").set_value(older).run()
    assert at.session_state[common.SELECTED_RUN] == older
