"""The New session page, driven with Streamlit's AppTest. Nothing trains here: starting a session is replaced by
a recorder that only creates the run folder, and finished runs come from the `finished_run` fixture."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import distill_core
from app import common
from app.new_session import keys, labels, tasks, uploads
from app.new_session.values import form_kind
from app_helpers import open_page, texts
from conftest import tiny_config_dict
from distill_core import RunStore, SessionConfig
from distill_core.errors import ConfigError, DataError
from distill_core.objectives import LOSS_HELP, TEXT_LOSS_NAMES as LOSS_NAMES
from distill_core.session import queue as session_queue_module

REPO = Path(__file__).resolve().parent.parent
PAGE = str(REPO / "app" / "views" / "new_session.py")
TIMEOUT = 60  # first imports of torch/transformers; nothing trains inside the page


@pytest.fixture
def tiny_defaults(tmp_path, monkeypatch, tiny_teacher, tiny_csv):
    path = tmp_path / "form.json"
    path.write_text(json.dumps(tiny_config_dict(tiny_teacher, tiny_csv)))
    monkeypatch.setenv("ADS_FORM_DEFAULTS", str(path))
    return SessionConfig.load(path)


def run_page(query: dict | None = None) -> AppTest:
    return open_page(PAGE, query, default_timeout=TIMEOUT)


def run_dirs(store: RunStore) -> list[str]:
    if not store.root.is_dir():
        return []
    return sorted(p.name for p in store.root.iterdir() if p.is_dir() and not p.name.startswith("."))


# ---- the form -----------------------------------------------------------------------------------------
def test_form_shows_every_setting_with_namespaced_keys(store):
    at = run_page()
    for key in ("new.student_layers", "new.student_heads", "new.student_hidden", "new.student_intermediate",
                "new.temperature", "new.epochs", "new.batch_size", "new.lr", "new.time_budget", "new.seed",
                "new.train_size", "new.val_size", "new.test_size"):
        assert at.number_input(key=key) is not None
    default = SessionConfig()
    assert [at.text_input(key=f"new.v{i}.name").value for i in range(2)] == default.variant_names == \
        ["baseline", "distilled"]
    for i, variant in enumerate(default.variants):
        for name in LOSS_NAMES:
            assert at.checkbox(key=f"new.v{i}.loss.{name}").value == (variant.weight(name) > 0)
            assert at.number_input(key=f"new.v{i}.weight.{name}").value == (variant.weight(name) or 1.0)
    captions = texts(at.caption)
    for help_text in (LOSS_HELP[n] for n in LOSS_NAMES):
        assert help_text in captions
    assert "Reference" in captions
    assert at.radio(key="new.teacher_kind").value == "default"
    assert at.radio(key="new.data_kind").value == "default"
    assert at.radio(key="new.student_init").options == ["auto", "random", "from_teacher", "teacher_embeddings"]
    assert at.radio(key="new.student_init").value == "auto"
    assert at.selectbox(key="new.device").options == ["auto", "cpu", "cuda", "mps"]
    assert at.selectbox(key="new.head_rule").options == ["auto", "direct", "group", "mean"]
    assert not [c for c in at.checkbox if c.key == "new.baseline"]          # variants replaced the switch
    assert at.button(key="new.start") is not None
    assert "auto picks" in captions
    assert "No session is running" in captions


def test_bad_setting_shows_error_keeps_the_form_and_creates_no_run(store, started):
    at = run_page()
    at.number_input(key="new.student_heads").set_value(4)
    at.number_input(key="new.student_hidden").set_value(30)
    at.number_input(key="new.epochs").set_value(7)
    at.button(key="new.start").click().run()
    assert not at.exception
    assert "divisible" in texts(at.error)
    assert started == [] and run_dirs(store) == []
    assert at.number_input(key="new.student_hidden").value == 30
    assert at.number_input(key="new.epochs").value == 7


def test_all_objectives_unticked_is_an_error(store, started):
    at = run_page()
    for name in LOSS_NAMES:
        at.checkbox(key=f"new.v1.loss.{name}").uncheck()
    at.run()
    assert "Tick at least one loss" in texts(at.caption)
    at.button(key="new.start").click().run()
    assert "variant distilled has no loss with a positive weight" in texts(at.error)
    assert "at least one objective" in texts(at.error)
    assert started == [] and run_dirs(store) == []


def test_explicit_layer_map_must_fit_the_student(store, started):
    at = run_page()
    at.radio(key="new.layer_map_kind").set_value("explicit").run()
    at.text_input(key="new.layer_list").set_value("1,3").run()      # the default student has 3 layers
    assert "layer_map lists 2 teacher layers" in texts(at.warning)
    at.button(key="new.start").click().run()
    assert "layer_map lists 2 teacher layers" in texts(at.error)
    assert started == [] and run_dirs(store) == []


def test_missing_local_teacher_folder_is_refused_before_a_run_exists(store, started, tmp_path):
    at = run_page()
    at.radio(key="new.teacher_kind").set_value("local").run()
    at.text_input(key="new.teacher_path").set_value(str(tmp_path / "nowhere")).run()
    at.button(key="new.start").click().run()
    assert "not a model folder" in texts(at.error)
    assert started == [] and run_dirs(store) == []


# ---- starting -------------------------------------------------------------------------------------------
def test_start_with_defaults_passes_the_default_config(store, started):
    at = run_page()
    at.button(key="new.start").click().run()
    assert not at.exception and not at.error
    assert len(started) == 1
    assert started[0].to_dict() == SessionConfig().to_dict()
    run_id = at.session_state[keys.ACTIVE_RUN]
    assert run_dirs(store) == [run_id]
    assert common.SELECTED_RUN not in at.session_state      # the analysis pages keep the run the user chose
    assert at.query_params["run"] == [run_id] or at.query_params["run"] == run_id
    # the live section follows the new run
    assert at.button(key="new.cancel") is not None
    assert at.get("progress")


def test_form_defaults_file_round_trips_into_the_started_config(store, started, tiny_defaults):
    at = run_page()
    assert at.radio(key="new.teacher_kind").value == "local"
    assert at.radio(key="new.data_kind").value == "local"
    assert at.selectbox(key="new.file_text_column").value == "review"
    assert at.selectbox(key="new.file_label_column").value == "sentiment"
    assert at.get("arrow_data_frame") or at.dataframe     # the preview of the file
    at.text_input(key="new.name").set_value("tiny from the form")
    at.number_input(key="new.v1.weight.attention_kl").set_value(2.5)
    at.checkbox(key="new.v1.loss.hard_kd").check()
    at.button(key="new.start").click().run()
    assert not at.error, texts(at.error)
    (cfg,) = started
    expected = tiny_defaults.with_overrides({"name": "tiny from the form",
                                             "variants.distilled.losses.attention_kl": 2.5,
                                             "variants.distilled.losses.hard_kd": 1.0})
    assert cfg.to_dict() == expected.to_dict()


def test_upload_is_saved_under_the_store_previewed_and_used(store, started):
    at = run_page()
    at.radio(key="new.data_kind").set_value("upload").run()
    assert "50 MB" in at.file_uploader[0].label
    body = "id,sentence,polarity\n" + "".join(f"{i},text number {i},{'pos' if i % 2 else 'neg'}\n"
                                              for i in range(40))
    at.file_uploader(key="new.upload").set_value(("my reviews (v2).csv", body.encode(), "text/csv")).run()
    assert not at.exception
    (saved,) = (store.root / ".uploads").glob("*/*")
    assert saved.name == "my reviews (v2).csv"
    assert saved.read_text() == body
    assert at.selectbox(key="new.file_text_column").options == ["id", "sentence", "polarity"]
    assert at.selectbox(key="new.file_text_column").value == "sentence"
    at.selectbox(key="new.file_label_column").set_value("polarity")
    at.button(key="new.start").click().run()
    (cfg,) = started
    assert cfg.data.source == str(saved)
    assert (cfg.data.text_column, cfg.data.label_column) == ("sentence", "polarity")
    assert run_dirs(store) == [at.session_state[keys.ACTIVE_RUN]]     # the upload folder is not a run


def test_unusable_upload_is_reported(store, started):
    at = run_page()
    at.radio(key="new.data_kind").set_value("upload").run()
    at.file_uploader(key="new.upload").set_value(("rows.jsonl", b'{"text": "a", "label": 1}\n[1, 2]\n',
                                                  "application/json")).run()
    said = texts(at.error)                          # the preview reads the file as a session would: Start's message
    assert "JSON object" in said
    at.button(key="new.start").click().run()
    assert said in texts(at.error)
    assert started == []


def test_bad_form_defaults_file_is_ignored_with_a_warning(store, tmp_path, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": {"epochs": 0}}')
    monkeypatch.setenv("ADS_FORM_DEFAULTS", str(bad))
    at = run_page()
    assert "ADS_FORM_DEFAULTS ignored" in texts(at.warning)
    assert at.number_input(key="new.epochs").value == SessionConfig().train.epochs


# ---- following a run -------------------------------------------------------------------------------------
def test_a_running_run_is_found_after_a_reload_and_can_be_cancelled(store, tiny_config):
    run = store.create(tiny_config.to_dict())          # status running, owned by this (live) process
    run.write_json("progress.json", {"phase": "train", "done": 6, "total": 12, "epoch": 1, "epochs": 2,
                                     "elapsed_s": 3.0, "eta_s": 4.0})
    for student, acc in (("distilled", 0.75), ("baseline", 0.5)):
        run.append_metrics({"epoch": 1, "student": student, "val_accuracy": acc, "train_loss": {"total": 0.7},
                            "js_mean": 0.1})
    at = run_page()                                     # a fresh session: nothing in session state
    assert run.id in texts(at.markdown)
    (bar,) = at.get("progress")
    assert bar.proto.value == 50
    assert "6/12 training steps" in bar.proto.text and "about 4 s left" in bar.proto.text
    assert "Training: epoch 2 of 2" in texts(at.markdown)
    charts = at.get("plotly_chart")
    assert len(charts) == 3
    spec = json.loads(charts[0].proto.spec)
    assert {t["name"]: t["y"] for t in spec["data"]} == {"distilled": [0.75], "baseline": [0.5]}
    at.button(key="new.cancel").click().run()
    assert run.cancel_requested()
    assert f"Run {run.id}: cancel requested" in texts(at.info)
    assert "Cancel requested" in texts(at.info)


def test_finished_run_shows_status_and_accuracies(finished_run, tmp_path, monkeypatch):
    src, run_id = finished_run
    shutil.copytree(src.root / run_id, tmp_path / "runs" / run_id)
    monkeypatch.setenv("ADS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("ADS_FORM_DEFAULTS", raising=False)
    at = run_page({"run": run_id})
    assert f"Run **{run_id}** finished" in texts(at.success)
    acc = src.open(run_id).summary()["accuracy"]
    shown = {m.label: m.value for m in at.metric}
    for name, label in (("teacher", "teacher"), ("baseline", "baseline student"), ("distilled", "distilled student")):
        assert shown[label] == f"{100 * acc[name]:.1f}%"
    assert "Open the Attention explorer on this run" in texts(at.markdown)
    assert len(at.get("plotly_chart")) == 3


def test_failed_run_shows_its_error(store, tiny_config):
    run = store.create(tiny_config.to_dict())
    run.update_status(status="failed", error="the teacher could not be loaded")
    at = run_page({"run": run.id})
    assert "failed: the teacher could not be loaded" in texts(at.error)


# ---- the form helpers without Streamlit ---------------------------------------------------------------------
def test_build_config_round_trips_initial_values(tiny_teacher, tiny_csv):
    base = SessionConfig.from_dict(tiny_config_dict(tiny_teacher, tiny_csv, objectives__layer_map=[1, 3],
                                                    train__time_budget_s=90.0))
    values = {k[4:]: v for k, v in tasks.initial_values(base).items()}
    values.update(file_text_column="review", file_label_column="sentiment")
    assert tasks.build_config(values, base).to_dict() == base.to_dict()


def test_build_config_reports_what_is_missing():
    values = {k[4:]: v for k, v in tasks.initial_values(SessionConfig()).items()}
    with pytest.raises(ConfigError, match="upload a CSV or JSONL file first"):
        tasks.build_config(dict(values, data_kind="upload"), SessionConfig())
    with pytest.raises(ConfigError, match="teacher's hub id"):
        tasks.build_config(dict(values, teacher_kind="hub", teacher_hub=" "), SessionConfig())
    with pytest.raises(ConfigError, match="learning rate must be positive"):
        tasks.build_config(dict(values, lr=0.0), SessionConfig())


def test_save_upload_refuses_other_types_and_oversized_files(tmp_path):
    with pytest.raises(DataError, match="only"):
        uploads.save_upload(tmp_path, "model.pkl", b"\x80\x04", 50)
    with pytest.raises(DataError, match="above the 0.001 MB limit"):
        uploads.save_upload(tmp_path, "big.csv", b"x" * 2000, 0.001)
    p = uploads.save_upload(tmp_path, "../../etc/passwd.csv", b"a,b\n", 1)
    assert p.parent.parent == tmp_path / ".uploads" and p.name == "passwd.csv"


def test_form_values_survive_a_visit_to_another_page(store):
    at = AppTest.from_file(str(Path(PAGE).parent.parent / "streamlit_app.py"), default_timeout=TIMEOUT).run()
    at.number_input(key="new.epochs").set_value(7)
    at.text_input(key="new.name").set_value("kept")
    at.text_input(key="new.v1.name").set_value("kd_kept")
    at.run()
    at.button(key="new.add_variant").click().run()
    at.checkbox(key="new.v2.loss.attention_mse").check().run()
    at.switch_page("views/runs.py").run()
    at.switch_page("views/new_session.py").run()
    assert not at.exception
    assert at.number_input(key="new.epochs").value == 7
    assert at.text_input(key="new.name").value == "kept"
    assert [at.text_input(key=f"new.v{i}.name").value for i in range(3)] == ["baseline", "kd_kept", "variant_3"]
    assert at.checkbox(key="new.v2.loss.attention_mse").value is True


# ---- the variants editor ---------------------------------------------------------------------------------
def names_shown(at: AppTest) -> list[str]:
    return [t.value for t in at.text_input if t.key and t.key.startswith("new.v") and t.key.endswith(".name")]


def test_add_rename_and_remove_variants_then_start(store, started):
    at = run_page()
    at.button(key="new.add_variant").click().run()
    assert names_shown(at) == ["baseline", "distilled", "variant_3"]
    # a new variant starts from the last one's losses
    assert [at.checkbox(key=f"new.v2.loss.{n}").value for n in LOSS_NAMES] == \
        [at.checkbox(key=f"new.v1.loss.{n}").value for n in LOSS_NAMES]
    at.text_input(key="new.v2.name").set_value("kd_mse")
    at.checkbox(key="new.v2.loss.attention_kl").uncheck()
    at.checkbox(key="new.v2.loss.attention_mse").check().run()
    at.number_input(key="new.v2.weight.attention_mse").set_value(100.0).run()
    at.button(key="new.v1.remove").click().run()
    assert names_shown(at) == ["baseline", "kd_mse"]
    assert '"name": "kd_mse"' in texts(at.code)                 # the config file view follows the editor
    at.button(key="new.start").click().run()
    assert not at.error, texts(at.error)
    (cfg,) = started
    assert [v.name for v in cfg.variants] == ["baseline", "kd_mse"]
    assert cfg.variant("kd_mse").losses == {"ce": 0.5, "logit_kd": 0.5, "attention_mse": 100.0}
    assert cfg.reference == "baseline"


def test_at_most_six_variants_and_never_none(store):
    at = run_page()
    for _ in range(4):
        at.button(key="new.add_variant").click().run()
    assert len(names_shown(at)) == labels.MAX_FORM_VARIANTS == 6
    assert at.button(key="new.add_variant").disabled
    assert "6 of at most 6 variants" in texts(at.caption)
    for i in range(5):
        at.button(key=f"new.v{i}.remove").click().run()
    assert names_shown(at) == ["variant_6"]
    assert at.button(key="new.v5.remove").disabled                 # a session needs one variant
    assert not at.button(key="new.add_variant").disabled


@pytest.mark.parametrize("name, problem", [("2fast", "must start with a letter"), ("teacher", "is reserved"),
                                           ("", "has no name"), ("baseline", "two variants are named 'baseline'")])
def test_bad_variant_names_are_shown_and_refused_without_losing_input(store, started, name, problem):
    at = run_page()
    at.number_input(key="new.epochs").set_value(9)
    at.text_input(key="new.v1.name").set_value(name).run()
    assert problem in texts(at.error)                             # under the block, before Start
    at.button(key="new.start").click().run()
    assert problem in texts(at.error)
    assert started == [] and run_dirs(store) == []
    assert at.text_input(key="new.v1.name").value == name and at.number_input(key="new.epochs").value == 9


def test_the_ablation_example_shows_its_five_variants(store, started, monkeypatch):
    example = REPO / "examples" / "ablation.yaml"
    monkeypatch.setenv("ADS_FORM_DEFAULTS", str(example))
    at = run_page()
    assert not at.warning, texts(at.warning)
    expected = SessionConfig.load(example)
    assert names_shown(at) == expected.variant_names == ["baseline", "kd", "distilled", "kd_att_mse", "kd_att_scores"]
    assert at.number_input(key="new.v3.weight.attention_mse").value == 100.0
    assert at.number_input(key="new.v4.weight.attention_score_mse").value == 0.1
    assert json.loads(at.code[0].value)["variants"] == expected.to_dict()["variants"]
    at.button(key="new.start").click().run()
    (cfg,) = started
    assert cfg.to_dict() == expected.to_dict()


def test_no_labels_only_variant_means_no_reference(store):
    at = run_page()
    at.checkbox(key="new.v0.loss.logit_kd").check()
    at.text_input(key="new.v0.name").set_value("kd_only").run()
    assert "there will be no reference" in texts(at.caption)


# ---- sources ------------------------------------------------------------------------------------------------
def test_sources_are_classified_by_the_engine_rule():
    assert form_kind("stanfordnlp/sst2", "data") == "hub"
    assert form_kind("data.csv", "data") == "local"
    assert form_kind("rotten_tomatoes", "data") == "default"
    assert form_kind("default", "model") == "default"
    assert form_kind("textattack/bert-base-uncased-SST-2", "model") == "hub"
    assert form_kind("./my-model", "model") == "local"
    values = tasks.initial_values(SessionConfig.from_dict({"data": {"source": "stanfordnlp/sst2",
                                                                 "text_column": "sentence"}}))
    assert (values["new.data_kind"], values["new.data_hub"], values["new.data_path"]) == \
        ("hub", "stanfordnlp/sst2", "")


def test_hub_dataset_in_the_defaults_is_shown_as_a_hub_dataset(store, tmp_path, monkeypatch):
    path = tmp_path / "hub.json"
    path.write_text(json.dumps({"data": {"source": "stanfordnlp/sst2", "text_column": "sentence"}}))
    monkeypatch.setenv("ADS_FORM_DEFAULTS", str(path))
    at = run_page()
    assert at.radio(key="new.data_kind").value == "hub"
    assert at.text_input(key="new.data_hub").value == "stanfordnlp/sst2"
    assert not at.warning, texts(at.warning)                   # not taken for a missing local file


# ---- the queue ------------------------------------------------------------------------------------------------
class FakeQueue:
    """Stands in for the session queue: the run waits at position 2 behind a running session."""

    def __init__(self, store: RunStore, run_id: str):
        self.store, self.waiting = store, [run_id]

    def position(self, run_id):
        return 2 if run_id in self.waiting else None

    def running(self):
        return ["20260101-000000-other-abcdef"]

    def cancel(self, run_id):
        if run_id not in self.waiting:
            return False
        self.waiting.remove(run_id)
        self.store.open(run_id).update_status(status="cancelled", error="cancelled while waiting in the queue")
        return True


def test_a_queued_run_shows_its_position_and_can_be_cancelled(store, tiny_config, monkeypatch):
    run = store.create(tiny_config.to_dict(), status="queued")
    queue = FakeQueue(store, run.id)
    monkeypatch.setattr(distill_core, "session_queue", lambda: queue)
    monkeypatch.setattr(session_queue_module, "session_queue", lambda: queue)
    at = run_page()                                     # found without being named: a queued run is followed
    assert f"**{run.id}** is queued, position 2" in texts(at.markdown)
    assert "20260101-000000-other-abcdef" in texts(at.markdown)
    assert not at.get("progress")
    at.button(key="new.cancel").click().run()
    assert not at.exception
    assert run.status()["status"] == "cancelled" and not run.cancel_requested()
    assert f"Run {run.id}: removed from the queue" in texts(at.info)
    assert f"Run **{run.id}** was cancelled: cancelled while waiting in the queue" in texts(at.warning)
    assert not at.metric                                 # nothing was tested


def test_start_queues_the_session(store, monkeypatch):
    """The page hands the config to start_session, which queues it: the page then shows the queued run."""
    calls = []

    def fake_start(config, store=None, callbacks=()):
        calls.append(config)
        return store.create(config.to_dict(), status="queued").id

    monkeypatch.setattr(distill_core, "start_session", fake_start)
    monkeypatch.setattr(distill_core, "session_queue", lambda: FakeQueue(store, "-"))
    at = run_page()
    at.button(key="new.start").click().run()
    assert len(calls) == 1
    assert f"**{at.session_state[keys.ACTIVE_RUN]}** is queued" in texts(at.markdown)


def test_the_classroom_preset_is_offered_by_name_and_starts_its_config(store, started):
    at = run_page()
    picker = at.selectbox(key="new.preset")
    assert "Classroom" in picker.format_func("classroom") and picker.value == "default"
    picker.set_value("classroom").run()
    assert not at.exception and not at.error
    assert at.number_input(key="new.epochs").value == 3
    at.button(key="new.start").click().run()
    assert not at.exception and not at.error
    assert started[-1].to_dict() == SessionConfig.load(REPO / "examples" / "classroom.yaml").to_dict()
    # back to the default session: every field as it was, the hidden step floor too
    at.selectbox(key="new.preset").set_value("default").run()
    assert at.number_input(key="new.epochs").value == SessionConfig().train.epochs
