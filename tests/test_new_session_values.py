"""The New session form's values, both ways, per task: the widget values a config starts the form with build that
same config again. Each config is built against the task's own defaults (not against itself), so a setting the
form shows that were dropped on either way (config -> values, values -> config) would come back as its default
and fail the comparison."""
from __future__ import annotations

import pytest

from app.new_session import tasks
from app.new_session.keys import IMAGE_TASK, MODALITY, TEXT_TASK, value_key
from distill_core import SessionConfig

TEXT_DEFAULTS = tasks.TASKS[TEXT_TASK].base(SessionConfig())
IMAGE_DEFAULTS = tasks.TASKS[IMAGE_TASK].base(SessionConfig())

# every setting the text form shows, away from its default
TEXT_CUSTOM = {
    "name": "custom text run",
    "teacher": {"source": "/models/tiny-bert", "finetune": "always", "finetune_epochs": 5, "seed": 0,
                "finetune_part": "1/2"},
    "student": {"layers": 3, "heads": 2, "hidden": 48, "intermediate": 96, "init": "teacher_embeddings"},
    "data": {"source": "stanfordnlp/sst2", "hub_split": "validation", "text_column": "sentence",
             "label_column": "polarity", "train_size": 900, "val_size": 120, "test_size": 150, "max_length": 48},
    "objectives": {"temperature": 3.5, "head_rule": "group", "layer_map": [0, 2, 3]},
    "transfer": {"source": "unused", "text_column": "body", "max_texts": 1200, "copies": 2, "fraction": 0.3,
                 "ops": ["mask", "swap"]},
    "train": {"epochs": 7, "batch_size": 16, "lr": 1e-3, "schedule": "cosine", "time_budget_s": 600.0, "seed": 4,
              "device": "cpu"},
    "ensemble": {"teachers": [{"seed": 3, "finetune_part": "2/2"},
                              {"source": "/models/other-bert", "seed": 7, "finetune_epochs": 3}],
                 "combine": "confidence", "attention": "mean"},
    "variants": [
        {"name": "baseline", "losses": {"ce": 1.0}},
        {"name": "kd_sched", "losses": {"ce": 0.5, "logit_kd": 2.0}, "teacher": "teacher_2",
         "schedules": {"ce": "linear_down", "logit_kd": "step@2"}, "auto_weights": "magnitude",
         "temperature_schedule": "linear_up", "temperature_range": [1.5, 6.0]},
        {"name": "tiny_adv", "losses": {"logit_kd": 1.0, "attention_kl": 1.0, "hidden_mse": 0.5},
         "preset": "tinybert", "attention_focus": True, "teacher": "ensemble",
         "adversarial": {"method": "pgd", "epsilon": 0.05, "steps": 3, "weight": 0.5, "step_size": 0.02}},
        {"name": "fgsm_until", "losses": {"ce": 1.0, "attention_mse": 0.25},
         "adversarial": {"method": "fgsm", "epsilon": 0.01, "steps": 1, "weight": 2.0},
         "schedules": {"adversarial": "until@3"}, "auto_weights": "uncertainty", "generated": True},
    ],
}

# every setting the image form shows, away from its default: two ViTs, several teachers
IMAGE_CUSTOM = {
    "name": "custom image run",
    "teacher": {"source": "vit"},
    "data": {"source": "fashion_mnist", "train_size": 2000, "val_size": 300, "test_size": 400},
    "image": {"size": 24, "patch": 6, "student_family": "", "student_widths": [4, 8], "student_blocks": 2,
              "student_layers": 3, "student_heads": 2, "student_hidden": 24, "teacher_widths": [8, 16, 24],
              "teacher_blocks": 3, "teacher_layers": 5, "teacher_heads": 2, "teacher_hidden": 48,
              "teacher_epochs": 9, "teacher_lr": 1e-3, "teacher_batch_size": 32},
    "objectives": {"temperature": 2.5, "head_rule": "mean", "layer_map": "last"},
    "train": {"epochs": 3, "batch_size": 48, "lr": 3e-3, "schedule": "constant", "time_budget_s": 120.0, "seed": 2,
              "device": "cpu"},
    "ensemble": {"teachers": [{"seed": 5}, {"source": "cnn", "seed": 8}], "combine": "most_confident",
                 "attention": "teacher"},
    "variants": [
        {"name": "baseline", "losses": {"ce": 1.0}},
        {"name": "kd", "losses": {"ce": 1.0, "logit_kd": 1.5}, "teacher": "teacher_3",
         "schedules": {"logit_kd": "cosine_up"}, "temperature_schedule": "curriculum"},
        {"name": "att", "losses": {"ce": 1.0, "attention_kl": 1.0, "hidden_mse": 0.5}, "preset": "tinybert",
         "attention_focus": True, "auto_weights": "magnitude", "teacher": "teacher_2"},
        {"name": "att_mse", "losses": {"ce": 1.0, "attention_mse": 2.0}, "teacher": "ensemble",
         "temperature_range": [2.0, 5.0], "temperature_schedule": "linear_down"},
    ],
}


def image_config(d: dict) -> SessionConfig:
    """An image config: the image task's defaults with `d` over them."""
    base = IMAGE_DEFAULTS.to_dict()
    for section, value in d.items():
        base[section] = {**base[section], **value} if isinstance(value, dict) else value
    return SessionConfig.from_dict(base)


CONFIGS = {
    "default text": (SessionConfig(), TEXT_DEFAULTS),
    "custom text": (SessionConfig.from_dict(TEXT_CUSTOM), TEXT_DEFAULTS),
    "default image": (IMAGE_DEFAULTS, IMAGE_DEFAULTS),
    "custom image": (image_config(IMAGE_CUSTOM), IMAGE_DEFAULTS),
    "image: a CNN student of a ViT": (image_config({"teacher": {"source": "vit"}, "image": {"student_family": "cnn"},
                                                    "variants": [{"name": "baseline", "losses": {"ce": 1.0}},
                                                                 {"name": "kd", "losses": {"logit_kd": 1.0}}]}),
                                      IMAGE_DEFAULTS),
}


def form_values(cfg: SessionConfig) -> dict:
    """The form's values (keys without 'new.') as the form starts from cfg."""
    return {value_key(k): v for k, v in tasks.initial_values(cfg).items()}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_a_config_comes_back_from_its_widget_values(name):
    cfg, defaults = CONFIGS[name]
    assert tasks.build_config(form_values(cfg), defaults).to_dict() == cfg.to_dict()
    assert tasks.build_config(form_values(cfg), defaults) == cfg


@pytest.mark.parametrize("name", ["custom text", "custom image"])
def test_the_custom_configs_differ_from_the_defaults_in_every_section_the_form_shows(name):
    """What makes the round trip above a test of every setting: none of them is its default."""
    cfg, defaults = CONFIGS[name]
    mine, theirs = cfg.to_dict(), defaults.to_dict()
    shown = {"name", "teacher", "data", "objectives", "train", "ensemble", "variants"} | (
        {"student", "transfer"} if cfg.modality == TEXT_TASK else {"image"})
    assert {section for section in shown if mine[section] == theirs[section]} == set()


@pytest.mark.parametrize("kind", [TEXT_TASK, IMAGE_TASK])
def test_each_task_converts_its_own_config_both_ways(kind):
    """The registry's converters, one task at a time: values from the task's config, and that config back."""
    task = tasks.TASKS[kind]
    cfg = {TEXT_TASK: CONFIGS["custom text"][0], IMAGE_TASK: CONFIGS["custom image"][0]}[kind]
    shown = {k: v for k, v in form_values(cfg).items()}
    assert task.build(shown, task.base(SessionConfig())) == cfg


def test_the_form_keeps_both_tasks_and_builds_the_one_it_shows():
    """A text config's values hold the image task's defaults too, and the other way round: switching the task
    builds the other task's defaults (with the shared name, schedule, seed and device)."""
    text_cfg, image_cfg = CONFIGS["custom text"][0], CONFIGS["custom image"][0]
    values = form_values(text_cfg)
    assert values[value_key(MODALITY)] == TEXT_TASK
    values[value_key(MODALITY)] = IMAGE_TASK
    shared = {"name": text_cfg.name, "train": {k: text_cfg.to_dict()["train"][k]
                                               for k in ("schedule", "time_budget_s", "seed", "device")}}
    assert tasks.build_config(values, text_cfg) == image_config(shared)
    values = form_values(image_cfg)
    values[value_key(MODALITY)] = TEXT_TASK
    built = tasks.build_config(values, image_cfg).to_dict()
    assert built["name"] == image_cfg.name and built["train"]["seed"] == image_cfg.train.seed
    assert {k: v for k, v in built.items() if k not in ("name", "train")} == \
        {k: v for k, v in SessionConfig().to_dict().items() if k not in ("name", "train")}


# ---- how the form shows numbers -------------------------------------------------------------------------------
def test_the_time_budget_is_whole_seconds_and_0_reads_as_off():
    from app.new_session.sections import budget_text
    assert form_values(SessionConfig())["time_budget"] == 0
    assert isinstance(form_values(SessionConfig())["time_budget"], int)           # shown as 0, not 0.00
    budget = form_values(SessionConfig.from_dict(TEXT_CUSTOM))["time_budget"]
    assert budget == 600 and isinstance(budget, int)
    assert tasks.build_config(form_values(SessionConfig()), TEXT_DEFAULTS).train.time_budget_s is None
    assert budget_text(0) == "Time budget off: every epoch is trained."
    assert "once 10 min 00 s of training" in budget_text(600) and "once 45 s" in budget_text(45)
    assert "once 1,000 min 00 s" in budget_text(60_000)


def test_the_form_writes_counts_with_thousands_separators(monkeypatch, tmp_path):
    import re
    from pathlib import Path
    from app_helpers import open_page, texts
    monkeypatch.setenv("ADS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("ADS_FORM_DEFAULTS", raising=False)
    page = Path(__file__).resolve().parent.parent / "app" / "views" / "new_session.py"
    at = open_page(page, default_timeout=60)
    assert at.number_input(key="new.time_budget").value == 0
    shown = texts(at.caption)
    assert "Time budget off: every epoch is trained." in shown
    assert "3,000 for training, 500 for validation and 2,500 for testing: 6,000 examples in all." in shown
    bare = re.findall(r"(?<![\d,.\w])\d{4,}(?![\d,.\w])", shown + "\n" + texts(at.markdown))
    assert [n for n in bare if not re.fullmatch(r"(19|20)\d\d", n)] == []    # years aside, 2,500 not 2500
    at.segmented_control(key="new.modality").set_value("image").run()
    assert "3,500 for training, 500 for validation and 1,000 for testing: 5,000 images in all." in texts(at.caption)
