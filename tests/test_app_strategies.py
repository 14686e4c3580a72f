"""The New session form's strategies: each variant's "Strategies" expander (schedules, the TinyBERT preset, automatic
weights, temperature schedule, attention focus, adversarial training, generated data) and the session's "Generated
data" section, driven with AppTest. Nothing trains: starting is replaced by the `started` recorder (conftest)."""
from __future__ import annotations

import json

import pytest

from app.new_session import labels, tasks, variants
from app_helpers import open_page, texts
from distill_core import SessionConfig

from test_app_session import PAGE, TIMEOUT, run_dirs


def run_page():
    return open_page(PAGE, default_timeout=TIMEOUT)


def start(at):
    at.button(key="new.start").click().run()
    assert not at.exception
    return at


STRATEGIES = {"name": "everything", "losses": {"ce": 0.5, "logit_kd": 0.5, "attention_kl": 0.1},
              "schedules": {"attention_kl": "until@3", "logit_kd": "cosine_up", "adversarial": "linear_up"},
              "auto_weights": "magnitude",
              "temperature_schedule": "linear_down", "temperature_range": [2.0, 6.0], "attention_focus": True,
              "adversarial": {"method": "fgsm", "epsilon": 0.02, "weight": 0.5, "step_size": 0.01},
              "generated": True}
TRANSFER = {"source": "unused", "text_column": "sentence", "max_texts": 500, "copies": 2, "fraction": 0.3,
            "ops": ["mask", "swap"]}


def test_adversarial_and_generated_data_reach_the_started_config(store, started):
    at = run_page()
    at.selectbox(key="new.v1.adv_method").set_value("pgd").run()
    at.number_input(key="new.v1.adv_epsilon").set_value(0.1)
    at.number_input(key="new.v1.adv_steps").set_value(2)
    at.checkbox(key="new.v1.generated").check()
    at.radio(key="new.transfer_kind").set_value("unused")
    start(at)
    assert not at.error, texts(at.error)
    (cfg,) = started
    d = cfg.to_dict()
    baseline, distilled = d["variants"]
    assert distilled["adversarial"] == {"method": "pgd", "epsilon": 0.1, "steps": 2, "step_size": None, "weight": 1.0,
                                        "start": "random"}
    assert distilled["generated"] is True
    assert d["transfer"]["source"] == "unused"
    assert baseline == SessionConfig().to_dict()["variants"][0]          # the other variant is untouched


def test_the_labels_only_reference_and_rows_held_out_from_the_teacher_reach_the_config(store, started):
    at = run_page()
    assert at.selectbox(key="new.v1.adv_start").disabled                  # while adversarial training is off
    at.selectbox(key="new.v1.adv_method").set_value("fgsm").run()
    at.selectbox(key="new.v1.adv_start").set_value("clean_gradient")
    at.checkbox(key="new.v0.transfer_labels").check()                     # the baseline learns the rows' labels
    at.checkbox(key="new.v1.generated").check()
    at.radio(key="new.transfer_kind").set_value("unused").run()
    at.checkbox(key="new.transfer_held_out_from_teacher").check()
    start(at)
    assert not at.error, texts(at.error)
    (cfg,) = started
    baseline, distilled = cfg.variants
    assert baseline.transfer_labels and not baseline.generated
    assert distilled.generated and not distilled.transfer_labels
    assert distilled.adversarial.method == "fgsm" and distilled.adversarial.start == "clean_gradient"
    assert cfg.transfer.source == "unused" and cfg.transfer.held_out_from_teacher


def test_generated_data_without_a_source_shows_the_engine_message_and_does_not_start(store, started):
    at = run_page()
    at.checkbox(key="new.v1.generated").check().run()
    assert "Not a valid session yet: variant distilled trains on generated data" in texts(at.caption)
    start(at)
    assert "variant distilled trains on generated data, but the session generates none" in texts(at.error)
    assert started == [] and run_dirs(store) == []
    assert at.checkbox(key="new.v1.generated").value                    # the form keeps what was typed


def test_adversarial_on_a_labels_only_variant_is_refused_with_the_fix(store, started):
    at = run_page()
    at.selectbox(key="new.v0.adv_method").set_value("fgsm").run()
    start(at)
    assert "give the variant a teacher loss (e.g. logit_kd) or use method freelb" in texts(at.error)
    assert started == []


def test_a_schedule_chosen_for_a_loss_appears_in_the_config(store, started):
    at = run_page()
    assert at.selectbox(key="new.v1.sched.attention_kl").options == [labels.SCHEDULE_LABELS[k] for k in labels.SCHEDULE_KINDS]
    at.selectbox(key="new.v1.sched.attention_kl").set_value("linear_down")
    at.selectbox(key="new.v1.sched.logit_kd").set_value("step").run()
    assert not at.number_input(key="new.v1.sched_epoch.logit_kd").disabled
    assert at.number_input(key="new.v1.sched_epoch.attention_kl").disabled
    at.number_input(key="new.v1.sched_epoch.logit_kd").set_value(3)
    start(at)
    (cfg,) = started
    assert cfg.variant("distilled").schedules == {"attention_kl": "linear_down", "logit_kd": "step@3"}
    assert cfg.variant("baseline").schedules == {}


def test_the_adversarial_loss_has_its_own_schedule(store, started):
    at = run_page()
    assert at.selectbox(key="new.v1.sched.adversarial").disabled            # no adversarial training yet
    at.selectbox(key="new.v1.adv_method").set_value("pgd").run()
    at.selectbox(key="new.v1.sched.adversarial").set_value("step").run()
    at.number_input(key="new.v1.sched_epoch.adversarial").set_value(3)
    start(at)
    (cfg,) = started
    assert cfg.variant("distilled").schedules == {"adversarial": "step@3"}


def test_preset_automatic_weights_temperature_and_focus(store, started):
    at = run_page()
    at.selectbox(key="new.v1.sched.attention_kl").set_value("linear_down")
    at.checkbox(key="new.v1.preset").check().run()
    assert at.selectbox(key="new.v1.sched.attention_kl").disabled        # the preset sets the schedules
    at.selectbox(key="new.v1.auto_weights").set_value("uncertainty")
    at.selectbox(key="new.v1.temp_schedule").set_value("curriculum").run()
    at.number_input(key="new.v1.temp_low").set_value(1.5)
    at.number_input(key="new.v1.temp_high").set_value(5.0)
    at.checkbox(key="new.v1.attention_focus").check()
    start(at)
    assert not at.error, texts(at.error)
    v = started[0].variant("distilled")
    assert (v.preset, v.schedules, v.auto_weights, v.temperature_schedule, v.temperature_range, v.attention_focus) \
        == ("tinybert", {}, "uncertainty", "curriculum", (1.5, 5.0), True)


def test_generated_data_from_a_file(store, started, tmp_path):
    at = run_page()
    at.checkbox(key="new.v1.generated").check()
    at.radio(key="new.transfer_kind").set_value("file").run()
    start(at)
    assert "enter the path of the file of texts for generated data" in texts(at.error)
    at.text_input(key="new.transfer_path").set_value(str(tmp_path / "missing.txt"))
    start(at)
    assert "missing.txt, does not exist" in texts(at.error) and started == []
    texts_file = tmp_path / "paraphrases.txt"
    texts_file.write_text("a paraphrase\nanother one\n")
    at.text_input(key="new.transfer_path").set_value(str(texts_file))
    at.number_input(key="new.transfer_copies").set_value(3)
    at.multiselect(key="new.transfer_ops").set_value(["delete", "swap"])
    start(at)
    assert not at.error, texts(at.error)
    tf = started[0].transfer
    assert (tf.source, tf.copies, tf.ops) == (str(texts_file), 3, ("delete", "swap"))


def test_strategies_in_the_form_defaults_are_shown_and_started_unchanged(store, started, tmp_path, monkeypatch):
    path = tmp_path / "form.json"
    path.write_text(json.dumps({"variants": [{"name": "baseline", "losses": {"ce": 1}}, STRATEGIES],
                                "transfer": TRANSFER}))
    monkeypatch.setenv("ADS_FORM_DEFAULTS", str(path))
    at = run_page()
    assert at.selectbox(key="new.v1.sched.attention_kl").value == "until"
    assert at.number_input(key="new.v1.sched_epoch.attention_kl").value == 3
    assert at.selectbox(key="new.v1.adv_method").value == "fgsm"
    assert at.checkbox(key="new.v1.generated").value and at.radio(key="new.transfer_kind").value == "unused"
    assert at.multiselect(key="new.transfer_ops").value == ["mask", "swap"]
    start(at)
    assert not at.error, texts(at.error)
    assert started[0].to_dict() == SessionConfig.load(path).to_dict()


# ---- without Streamlit ------------------------------------------------------------------------------------------
def form_values(cfg: SessionConfig) -> dict:
    return {k[4:]: v for k, v in tasks.initial_values(cfg).items()}


def test_build_config_round_trips_every_strategy():
    cfg = SessionConfig.from_dict({"variants": [{"name": "baseline", "losses": {"ce": 1}}, STRATEGIES,
                                                {"name": "tiny", "losses": {"ce": 0.5, "attention_mse": 1},
                                                 "preset": "tinybert",
                                                 "adversarial": {"method": "freelb", "steps": 3}}],
                                   "transfer": {**TRANSFER, "source": "/data/paraphrases.txt"}})
    assert tasks.build_config(form_values(cfg), SessionConfig()).to_dict() == cfg.to_dict()


@pytest.mark.parametrize("variant", SessionConfig().variants, ids=lambda v: v.name)
def test_a_variant_without_strategies_is_written_as_before(variant):
    values = form_values(SessionConfig())
    i = SessionConfig().variant_names.index(variant.name)
    assert variants.variant_strategies(values, i, dict(variant.losses)) == {}
