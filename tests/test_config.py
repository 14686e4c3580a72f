import json

import pytest

from distill_core.config import SessionConfig, parse_value
from distill_core.errors import ConfigError


def test_defaults_follow_the_measured_findings():
    c = SessionConfig()
    assert (c.student.layers, c.student.heads, c.student.hidden, c.student.init) == (3, 4, 192, "auto")
    # auto is random on the default data (3,000 training examples): only small data starts from the teacher
    from distill_core.config import resolve_init
    assert resolve_init(c.student.init, c.data.train_size, widths_match=False) == "random"
    assert c.train.epochs == 4 and c.train.lr == 5e-4
    assert c.variant_names == ["baseline", "distilled"] and c.reference == "baseline"
    assert c.variant("baseline").losses == {"ce": 1.0}
    assert c.variant("distilled").losses == {"ce": 0.5, "logit_kd": 0.5, "attention_kl": 0.1}
    assert c.needs_teacher and not c.variant("baseline").uses_teacher


def test_round_trip_through_dict_and_file(tmp_path):
    c = SessionConfig().with_overrides({"train.epochs": 2, "variants.distilled.losses.attention_mse": 1.5,
                                        "objectives.layer_map": [1, 3, 5], "name": "x"})
    assert c.variant("distilled").losses["attention_mse"] == 1.5
    assert SessionConfig.from_dict(c.to_dict()) == c
    p = tmp_path / "c.json"
    c.save(p)
    assert SessionConfig.load(p) == c
    y = tmp_path / "c.yaml"
    y.write_text("train:\n  epochs: 3\nobjectives:\n  layer_map: last\nvariants:\n  - {name: plain, losses: {ce: 1}}\n"
                 "  - {name: kd, losses: {ce: 0.5, logit_kd: 0.5}}\n")
    loaded = SessionConfig.load(y)
    assert loaded.train.epochs == 3 and loaded.variant_names == ["plain", "kd"]
    assert loaded.reference == "plain" and loaded.objectives.layer_map == "last"


@pytest.mark.parametrize("override,match", [
    ({"train.epochs": 0}, "epochs must be a whole number of at least 1"),
    ({"train.epochs": -2}, "epochs"),
    ({"train.batch_size": 0}, "batch_size must be at least 1"),
    ({"train.lr": 0}, "learning rate must be positive"),
    ({"train.lr": -1e-3}, "learning rate must be positive"),
    ({"objectives.temperature": 0}, "temperature must be positive"),
    ({"variants.distilled.losses": {"ce": 0, "logit_kd": 0}}, "all objective weights of variant distilled are zero"),
    ({"variants.distilled.losses": {"focal": 1}}, "unknown loss focal in variant distilled; known losses: ce, logit_kd"),
    ({"variants.baseline.losses.ce": -1}, "must be 0 or more"),
    ({"variants.teacher.losses.ce": 1}, "reserved"),
    ({"variants.2fast.losses.ce": 1}, "must start with a letter"),
    ({"variants.kd.temperature": 1}, "a variant has: adversarial, attention_focus"),
    ({"variants.distilled.adversarial.epsilon": -0.1}, "adversarial.epsilon must be a finite number of 0 or more"),
    ({"variants.distilled.adversarial.steps": 0}, "adversarial.steps must be a whole number of at least 1"),
    ({"variants.distilled.adversarial.start": "zero"}, "adversarial.start must be random or clean_gradient"),
    ({"variants.distilled.transfer_labels": "yes"}, "transfer_labels of variant distilled must be true or false"),
    ({"transfer.held_out_from_teacher": True}, "it needs transfer.source: unused"),
    ({"ensemble.average": "geometric"}, "ensemble.average must be logits"),
    ({"variants.distilled.schedules.ce": "sideways"}, "unknown schedule"),
    ({"variants.distilled.auto_weights": "magic"}, "auto_weights of variant distilled must be one of"),
    ({"variants.distilled.generated": True}, "set transfer.source"),
    ({"transfer.copies": 1000}, "transfer.copies must be a whole number from 0 to 50"),
    ({"variants": []}, "variants must be a list"),
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
    ("variants", [{"name": "a", "losses": {"ce": float("nan")}}], "must be a number"),
    ("train", {"epochs": True}, "must be a number"),
])
def test_infinite_and_boolean_numbers_refused(section, values, match):
    with pytest.raises(ConfigError, match=match):
        SessionConfig.from_dict({section: values})


def test_variants_from_lists_mappings_overrides_and_older_configs():
    listed = SessionConfig.from_dict({"variants": [{"name": "a", "losses": {"ce": 1}},
                                                   {"name": "b", "losses": {"logit_kd": 1}}]})
    mapped = SessionConfig.from_dict({"variants": {"a": {"losses": {"ce": 1}}, "b": {"losses": {"logit_kd": 1}}}})
    assert listed == mapped and listed.reference == "a"
    assert SessionConfig.from_dict({"variants": [{"name": "kd", "losses": {"logit_kd": 1}}]}).reference is None
    added = SessionConfig().with_overrides({"variants.kd_mse.losses.attention_mse": 1.0})
    assert added.variant_names == ["baseline", "distilled", "kd_mse"]
    assert added.variant("kd_mse").losses == {"attention_mse": 1.0}
    # configs written before variants existed: objectives.losses is the distilled student, train.baseline the other
    old = SessionConfig.from_dict({"objectives": {"losses": {"ce": 1, "hard_kd": 1}}, "train": {"baseline": False}})
    assert old.variant_names == ["distilled"] and old.variant("distilled").losses == {"ce": 1.0, "hard_kd": 1.0}
    assert SessionConfig().with_overrides({"train.baseline": False}).variant_names == ["distilled"]
    assert SessionConfig().with_overrides({"objectives.losses.hard_kd": 1}).variant("distilled").weight("hard_kd") == 1


@pytest.mark.parametrize("variants,match", [
    ([{"name": "a", "losses": {"ce": 1}}, {"name": "a", "losses": {"ce": 1}}], "variant name a is used twice"),
    ([{"name": "kd", "losses": {"ce": 1}}, {"name": "KD", "losses": {"ce": 1}}], "is used twice .names are compared"),
    ([{"name": f"v{i}", "losses": {"ce": 1}} for i in range(13)], "1 to 12 variants"),
    ([{"losses": {"ce": 1}}], "must be a mapping with a name"),
    ([{"name": "a", "losses": {"ce": 1}, "lr": 1}], "unknown setting lr in variant a"),
    ([{"name": "a b", "losses": {"ce": 1}}], "only letters, digits"),
])
def test_bad_variants_name_the_problem(variants, match):
    with pytest.raises(ConfigError, match=match):
        SessionConfig.from_dict({"variants": variants})
    with pytest.raises(ConfigError, match="older way"):
        SessionConfig.from_dict({"objectives": {"losses": {"ce": 1}}, "variants": [{"name": "a", "losses": {"ce": 1}}]})


def test_example_configs_load():
    from pathlib import Path
    for path in sorted((Path(__file__).parent.parent / "examples").glob("*.yaml")):
        SessionConfig.load(path)
    ablation = SessionConfig.load(Path(__file__).parent.parent / "examples" / "ablation.yaml")
    assert len(ablation.variants) == 5 and ablation.reference == "baseline"


def test_every_example_config_loads():
    from pathlib import Path
    examples = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml"))
    assert len(examples) >= 7
    for path in examples:
        cfg = SessionConfig.load(path)
        assert cfg.variant_names, path.name
    pictures = SessionConfig.load(examples[[p.name for p in examples].index("my_pictures.yaml")])
    assert (pictures.teacher.source, pictures.modality, pictures.train.min_steps) == ("mobilenet", "image", 300)
