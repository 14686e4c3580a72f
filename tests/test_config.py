import json

import pytest

from distill_core.config import SessionConfig, parse_value
from distill_core.errors import ConfigError


def test_defaults_follow_the_measured_findings():
    c = SessionConfig()
    assert (c.student.layers, c.student.heads, c.student.hidden, c.student.init) == (3, 4, 192, "random")
    assert c.train.epochs == 4 and c.train.lr == 5e-4 and c.train.baseline
    assert c.objectives.needs_teacher


def test_round_trip_through_dict_and_file(tmp_path):
    c = SessionConfig().with_overrides({"train.epochs": 2, "objectives.losses.attention_mse": 1.5,
                                        "objectives.layer_map": [1, 3, 5], "name": "x"})
    assert SessionConfig.from_dict(c.to_dict()) == c
    p = tmp_path / "c.json"
    c.save(p)
    assert SessionConfig.load(p) == c
    y = tmp_path / "c.yaml"
    y.write_text("train:\n  epochs: 3\nobjectives:\n  losses: {ce: 1.0}\n  layer_map: last\n")
    loaded = SessionConfig.load(y)
    assert loaded.train.epochs == 3 and loaded.objectives.losses == {"ce": 1.0}


@pytest.mark.parametrize("override,match", [
    ({"train.epochs": 0}, "epochs must be a whole number of at least 1"),
    ({"train.epochs": -2}, "epochs"),
    ({"train.batch_size": 0}, "batch_size must be at least 1"),
    ({"train.lr": 0}, "learning rate must be positive"),
    ({"train.lr": -1e-3}, "learning rate must be positive"),
    ({"objectives.temperature": 0}, "temperature must be positive"),
    ({"objectives.losses": {"ce": 0, "logit_kd": 0}}, "all objective weights are zero"),
    ({"objectives.losses": {"focal": 1}}, "unknown loss focal; known losses: ce, logit_kd"),
    ({"objectives.losses.ce": -1}, "must be 0 or more"),
    ({"objectives.head_rule": "magic"}, "head_rule must be one of"),
    ({"objectives.layer_map": "every-other"}, "layer_map must be"),
    ({"student.hidden": 190}, "must be divisible by student.heads"),
    ({"student.init": "pretrained"}, "student.init must be"),
    ({"train.device": "tpu"}, "device must be one of"),
    ({"train.nonsense": 1}, "unknown setting 'train.nonsense'"),
    ({"epochs": 1}, "needs a section"),
])
def test_bad_settings_name_the_problem(override, match):
    with pytest.raises(ConfigError, match=match):
        SessionConfig().with_overrides(override)


def test_unknown_sections_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="unknown setting optimizer"):
        SessionConfig.from_dict({"optimizer": {}})
    bad = tmp_path / "c.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        SessionConfig.load(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        SessionConfig.load(tmp_path / "missing.yaml")


def test_parse_value():
    assert parse_value("2") == 2 and parse_value("3e-4") == 3e-4 and parse_value("[1, 3]") == [1, 3]
    assert parse_value("false") is False and parse_value("last") == "last"
    assert json.dumps(SessionConfig().to_dict())


def test_numbers_written_as_text_and_wrong_types(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("train:\n  lr: 3e-4\n  epochs: '2'\n")
    c = SessionConfig.load(y)
    assert c.train.lr == 3e-4 and c.train.epochs == 2
    with pytest.raises(ConfigError, match="train.lr must be a number, not 'fast'"):
        SessionConfig.from_dict({"train": {"lr": "fast"}})
    with pytest.raises(ConfigError, match="train.batch_size must be a number"):
        SessionConfig.from_dict({"train": {"batch_size": [32]}})
    with pytest.raises(ConfigError, match="epochs must be a whole number"):
        SessionConfig.from_dict({"train": {"epochs": 1.5}})


@pytest.mark.parametrize("section,values,match", [
    ("train", {"lr": float("inf")}, "finite"),
    ("objectives", {"temperature": float("inf")}, "finite"),
    ("objectives", {"losses": {"ce": float("inf")}}, "must be a number"),
    ("train", {"epochs": True}, "must be a number"),
])
def test_infinite_and_boolean_numbers_refused(section, values, match):
    with pytest.raises(ConfigError, match=match):
        SessionConfig.from_dict({section: values})
