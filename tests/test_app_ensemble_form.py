"""The New session form with several teachers (the config's ensemble section and each variant's `teacher`), driven
with AppTest for Text and Images. Nothing trains: starting is replaced by the `started` recorder (conftest)."""
from __future__ import annotations

import json

import pytest

from app.new_session import keys, tasks, variants
from app_helpers import open_page, run_app, texts
from conftest import tiny_image_config_dict
from distill_core import SessionConfig
from distill_core.config import EnsembleConfig

from test_app_session import PAGE, TIMEOUT


def run_page():
    return open_page(PAGE, default_timeout=TIMEOUT)


def start(at):
    at.button(key="new.start").click()
    return run_app(at)


def learns_from(at, i: int, block: str = "v"):
    """The "Learns from" selectbox of variant block i, or None when the page does not show it."""
    return next((s for s in at.selectbox if s.key == f"new.{block}{i}.teacher"), None)


def further_teachers(at, n: int, prefix: str = "new."):
    at.number_input(key=prefix + "ens_count").set_value(n)
    return run_app(at)


# ---- text -------------------------------------------------------------------------------------------------------
def test_two_further_teachers_and_a_variant_learning_from_the_ensemble(store, started):
    at = run_page()
    assert at.number_input(key="new.ens_count").value == 0
    assert learns_from(at, 1) is None                              # one teacher: nothing to choose
    further_teachers(at, 2)
    assert [at.number_input(key=f"new.ens{k}.seed").value for k in (2, 3)] == [1, 2]    # the next seeds
    part = at.text_input(key="new.ens3.part")
    assert part.value == "" and "two halves that never overlap" in part.help
    assert at.selectbox(key="new.ens_combine").options == ["mean of the logits", "confidence-weighted mean",
                                                           "most confident teacher per example"]
    assert at.selectbox(key="new.ens_attention").options == ["the first teacher", "mean of every teacher's maps"]
    at.number_input(key="new.ens3.seed").set_value(0)
    at.text_input(key="new.ens3.part").set_value("2/2")
    at.selectbox(key="new.ens_combine").set_value("confidence")
    run_app(at)
    box = learns_from(at, 1)
    assert box.value == "teacher"
    assert box.options == ["teacher (the first)", "teacher_2", "teacher_3", "ensemble (the 3 teachers combined)"]
    box.set_value("ensemble")
    run_app(at)
    assert "Learns from the ensemble through logit_kd, attention_kl." in texts(at.caption)
    start(at)
    assert not at.error, texts(at.error)
    (cfg,) = started
    assert cfg.ensemble == EnsembleConfig(teachers=({"seed": 1}, {"finetune_part": "2/2"}), combine="confidence",
                                          attention="teacher")
    assert [(v.name, v.teacher) for v in cfg.variants] == [("baseline", "teacher"), ("distilled", "ensemble")]
    assert cfg.teacher == SessionConfig().teacher
    assert [t.seed for t in cfg.teacher_configs] == [0, 1, 0]
    assert [t.finetune_part for t in cfg.teacher_configs] == ["", "", "2/2"]


def test_no_further_teachers_gives_the_same_config_as_before(store, started):
    at = run_page()
    start(at)
    assert not at.error, texts(at.error)
    assert started[0] == SessionConfig() and started[0].to_dict() == SessionConfig().to_dict()
    # teachers added and chosen, then taken away again: the config is the one-teacher config once more
    at = run_page()                                  # (Start is off while this tab's session runs)
    further_teachers(at, 2)
    at.selectbox(key="new.ens_combine").set_value("most_confident")
    at.selectbox(key="new.ens_attention").set_value("mean")
    at.text_input(key="new.teacher_part").set_value("1/2")
    run_app(at)
    learns_from(at, 1).set_value("ensemble")
    run_app(at)
    further_teachers(at, 0)
    assert learns_from(at, 1) is None
    assert at.session_state["new.v1.teacher"] == "teacher"          # fell back to the first teacher
    start(at)
    assert not at.error, texts(at.error)
    assert len(started) == 2
    assert started[1] == started[0] == SessionConfig()


def test_a_teacher_that_no_longer_exists_falls_back_to_the_first(store, started):
    at = run_page()
    further_teachers(at, 2)
    learns_from(at, 1).set_value("teacher_3")
    run_app(at)
    further_teachers(at, 1)
    box = learns_from(at, 1)
    assert box.value == "teacher" and box.options == ["teacher (the first)", "teacher_2",
                                                      "ensemble (the 2 teachers combined)"]
    start(at)
    assert not at.error, texts(at.error)
    (cfg,) = started
    assert cfg.ensemble.teachers == ({"seed": 1},)
    assert cfg.variant("distilled").teacher == "teacher"
    # the default variants learn from the first teacher: the engine adds the one that learns from the ensemble
    assert cfg.variant_names == ["baseline", "distilled", "distilled_ensemble"]
    assert cfg.variant("distilled_ensemble").teacher == "ensemble"


def test_the_engines_refusals_are_shown_before_start(store, started):
    at = run_page()
    further_teachers(at, 1)
    at.number_input(key="new.ens2.seed").set_value(0)             # the same teacher as the first
    run_app(at)
    same = "teacher 2 of ensemble.teachers is the same as teacher 1"
    assert same in texts(at.error)                                # in the section, before Start
    start(at)
    assert same in texts(at.error) and started == []
    at.text_input(key="new.ens2.part").set_value("3/2")
    run_app(at)
    assert "teacher 2 of ensemble.teachers: teacher.finetune_part must be empty" in texts(at.error)
    start(at)
    assert started == []
    at.text_input(key="new.ens2.part").set_value("2/2")
    at.text_input(key="new.teacher_part").set_value("1/2")
    run_app(at)
    assert not at.error, texts(at.error)
    start(at)
    assert not at.error, texts(at.error)
    (cfg,) = started
    assert cfg.teacher.finetune_part == "1/2" and cfg.ensemble.teachers == ({"finetune_part": "2/2"},)


def test_another_model_folder_must_exist(store, started, tmp_path):
    at = run_page()
    further_teachers(at, 1)
    at.text_input(key="new.ens2.source").set_value(str(tmp_path / "nowhere"))
    start(at)
    assert "teacher_2: " in texts(at.error) and "is not a model folder" in texts(at.error)
    assert started == []


def test_a_config_with_several_teachers_fills_the_form_and_starts_unchanged(store, started, tmp_path,
                                                                            monkeypatch):
    d = {"teacher": {"finetune_part": "1/2"},
         "ensemble": {"teachers": [{"seed": 3}, {"finetune_part": "2/2", "seed": 4}, {"finetune_part": "2/2"}],
                      "combine": "most_confident", "attention": "mean"},
         "variants": [{"name": "baseline", "losses": {"ce": 1}},
                      {"name": "kd3", "losses": {"ce": 0.5, "logit_kd": 0.5}, "teacher": "teacher_3"},
                      {"name": "kd_all", "losses": {"ce": 0.5, "logit_kd": 0.5}, "teacher": "ensemble"}]}
    path = tmp_path / "form.json"
    path.write_text(json.dumps(d))
    monkeypatch.setenv("ADS_FORM_DEFAULTS", str(path))
    at = run_page()
    assert at.number_input(key="new.ens_count").value == 3
    assert at.text_input(key="new.teacher_part").value == "1/2"
    assert [at.number_input(key=f"new.ens{k}.seed").value for k in (2, 3, 4)] == [3, 4, 0]
    assert [at.text_input(key=f"new.ens{k}.part").value for k in (2, 3, 4)] == ["1/2", "2/2", "2/2"]
    assert [at.text_input(key=f"new.ens{k}.source").value for k in (2, 3, 4)] == ["", "", ""]
    assert at.selectbox(key="new.ens_combine").value == "most_confident"
    assert at.selectbox(key="new.ens_attention").value == "mean"
    assert [learns_from(at, i).value for i in range(3)] == ["teacher", "teacher_3", "ensemble"]
    start(at)
    assert not at.error, texts(at.error)
    assert started[0].to_dict() == SessionConfig.load(path).to_dict()


# ---- images -----------------------------------------------------------------------------------------------------
def images(at):
    at.segmented_control(key=keys.MODALITY).set_value("image")
    return run_app(at)


def test_an_image_session_with_a_vit_beside_the_cnn_teacher(store, started):
    at = images(run_page())
    further_teachers(at, 1, keys.IMG)
    assert at.selectbox(key="new.img.ens2.kind").value == "cnn"          # the first teacher, with the next seed
    assert at.number_input(key="new.img.ens2.seed").value == 1
    at.selectbox(key="new.img.ens2.kind").set_value("vit")
    at.number_input(key="new.img.ens2.seed").set_value(0)
    run_app(at)
    assert [learns_from(at, i, "iv").value for i in range(4)] == ["teacher"] * 4
    learns_from(at, 1, "iv").set_value("ensemble")                      # kd
    run_app(at)
    start(at)
    assert not at.error, texts(at.error)
    (cfg,) = started
    assert cfg.ensemble.teachers == ({"source": "vit"},)
    assert [v.teacher for v in cfg.variants] == ["teacher", "ensemble", "teacher", "teacher"]
    assert cfg.variant_names == ["baseline", "kd", "at", "kd_at"]        # the form's variants, nothing added


def test_an_image_teacher_whose_maps_cannot_be_compared_is_refused_on_start(store, started):
    at = images(run_page())
    further_teachers(at, 1, keys.IMG)
    at.selectbox(key="new.img.ens2.kind").set_value("vit")
    at.selectbox(key="new.img.ens_attention").set_value("mean")
    run_app(at)
    learns_from(at, 3, "iv").set_value("ensemble")                      # kd_at: attention_transfer
    start(at)
    assert "teacher_2 is a ViT whose maps the CNN student cannot be compared with" in texts(at.error)
    assert started == []
    at.selectbox(key="new.img.ens_attention").set_value("teacher")
    start(at)
    assert not at.error, texts(at.error)
    (cfg,) = started
    assert cfg.ensemble == EnsembleConfig(teachers=({"source": "vit", "seed": 1},), attention="teacher")
    assert cfg.variant("kd_at").teacher == "ensemble"


def test_an_image_teacher_folder_is_asked_for(store, started):
    at = images(run_page())
    further_teachers(at, 1, keys.IMG)
    at.selectbox(key="new.img.ens2.kind").set_value("local")
    start(at)
    assert "enter the folder of teacher_2 under Several teachers" in texts(at.error) and started == []


# ---- without Streamlit ------------------------------------------------------------------------------------------
def form_values(cfg: SessionConfig) -> dict:
    return {k[4:]: v for k, v in tasks.initial_values(cfg).items()}


def test_build_config_round_trips_several_text_teachers():
    cfg = SessionConfig.from_dict({
        "teacher": {"seed": 2},
        "ensemble": {"teachers": [{"seed": 5}, {"source": "/models/other", "finetune": "always"},
                                  {"finetune_part": "2/3", "finetune_epochs": 1}],
                     "combine": "confidence"},
        "variants": [{"name": "baseline", "losses": {"ce": 1}},
                     {"name": "kd", "losses": {"ce": 0.5, "logit_kd": 0.5}, "teacher": "teacher_4"}]})
    values = form_values(cfg)
    assert values["ens3.source"] == "/models/other" and values["ens3.seed"] == 2
    assert values["ens3.extra"] == {"finetune": "always"}                 # kept though the form does not show it
    # the first teacher's seed is not in the form: it comes from the defaults, like every setting the form lacks
    assert tasks.build_config(values, cfg).to_dict() == cfg.to_dict()


def test_build_config_round_trips_several_image_teachers():
    cfg = SessionConfig.from_dict(tiny_image_config_dict("cnn", ensemble={
        "teachers": [{"source": "vit"}, {"seed": 3}], "attention": "mean"}, variants=[
        {"name": "baseline", "losses": {"ce": 1.0}},
        {"name": "kd", "losses": {"ce": 0.5, "logit_kd": 0.5}, "teacher": "teacher_2"}]))
    values = form_values(cfg)
    assert (values["img.ens2.kind"], values["img.ens3.kind"], values["img.ens3.seed"]) == ("vit", "cnn", 3)
    assert tasks.build_config(values, cfg).to_dict() == cfg.to_dict()


def test_without_further_teachers_the_variants_teacher_and_ensemble_stay_out():
    values = form_values(SessionConfig())
    values["v1.teacher"] = "ensemble"                    # left over from a count since lowered to 0
    values["ens_combine"] = "most_confident"
    assert tasks.build_config(values, SessionConfig()) == SessionConfig()
    values["ens_count"] = 1
    cfg = tasks.build_config(values, SessionConfig())
    assert cfg.ensemble == EnsembleConfig(teachers=({"seed": 1},), combine="most_confident")
    assert cfg.variant("distilled").teacher == "ensemble"


@pytest.mark.parametrize("count, sources", [(0, ["teacher"]), (2, ["teacher", "teacher_2", "teacher_3", "ensemble"])])
def test_teacher_sources(count, sources):
    assert variants.teacher_sources(count) == sources
