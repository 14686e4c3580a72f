"""Image sessions end to end on the 8×8 digits with tiny models: CNN → CNN with attention transfer, ViT → ViT with
attention KL, CNN → ViT by logits; and the settings an image session refuses before any training."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import tiny_image_config_dict
from distill_core import RunStore, SessionConfig, run_session
from distill_core.errors import ConfigError


def test_cnn_session_records_stage_maps_and_attention_transfer(cnn_image_run):
    store, run_id = cnn_image_run
    run = store.open(run_id)
    summary, probe = run.summary(), run.probe()
    assert summary["status"] == "done", summary["error"]
    assert set(summary["accuracy"]) == {"teacher", "baseline", "kd", "at", "kd_at"}
    assert all(0 <= a <= 1 for a in summary["accuracy"].values())
    assert probe["modality"] == "image" and probe["families"] == {"teacher": "cnn", "student": "cnn"}
    assert probe["image_size"] == [8, 8] and probe["channels"] == 1
    assert len(probe["images"]) == 4 and np.asarray(probe["images"][0]).shape == (8, 8)
    assert probe["maps"]["student"] == {"family": "cnn", "stages": 2, "sizes": [[8, 8], [4, 4]]}
    assert probe["pairs"] == [[0, 0], [1, 1]]
    teacher = run.read_attention("teacher")
    assert teacher[0].shape == (2, 1, 1, 64)                      # stages, one "head", one row, 8×8 pixels
    assert np.allclose(teacher[0].astype(np.float32).sum(-1), 1.0, atol=1e-2)
    assert run.read_attention("at_e2")[0].shape == (2, 1, 1, 64)
    metrics = [m for m in run.metrics() if m["student"] == "at" and m["epoch"] == 2][0]
    assert np.asarray(metrics["attention"]["js"]).shape == (2, 1) and metrics["js_mean"] > 0
    steps = [s for s in run.train_steps() if s["student"] == "at"]
    assert steps and all("attention_transfer" in s["losses"] for s in steps)
    assert not any("attention_transfer" in s["losses"] for s in run.train_steps() if s["student"] == "kd")
    pre = json.loads((run.path / "models" / "preprocess" / "preprocess.json").read_text())
    assert pre["image_size"] == [8, 8] and pre["channels"] == 1 and len(pre["label_names"]) == 10


def test_a_saved_cnn_student_gives_the_recorded_maps(cnn_image_run):
    from distill_core.modality.vision.data import to_tensor
    from distill_core.modality.vision.models import load_image_model
    from distill_core.activation import activation_map
    store, run_id = cnn_image_run
    run = store.open(run_id)
    model = load_image_model(str(run.weights_path("kd_at"))).eval()
    probe = run.probe()
    x = to_tensor(np.asarray(probe["images"], dtype=np.uint8)[..., None])
    with torch.no_grad():
        feats = model(pixel_values=x, output_hidden_states=True).hidden_states
    maps = torch.stack([activation_map(f, (8, 8)) for f in feats], 1).numpy()       # (B, S, 64)
    recorded = np.stack([m[:, 0, 0] for m in run.read_attention("kd_at_e2")]).astype(np.float32)
    assert np.allclose(maps, recorded, atol=2e-3)


def test_vit_session_records_patch_attention(vit_image_run):
    store, run_id = vit_image_run
    run = store.open(run_id)
    summary, probe = run.summary(), run.probe()
    assert summary["status"] == "done", summary["error"]
    assert set(summary["accuracy"]) == {"teacher", "baseline", "kd", "att_kl", "kd_att_kl"}
    assert probe["families"] == {"teacher": "vit", "student": "vit"}
    assert probe["maps"]["teacher"]["grid"] == [2, 2] and probe["maps"]["teacher"]["tokens"][0] == "[CLS]"
    assert probe["tokens"][0] == ["[CLS]", "r0c0", "r0c1", "r1c0", "r1c1"]
    t = run.read_attention("teacher")[0].astype(np.float32)
    assert t.shape == (2, 2, 5, 5) and np.allclose(t.sum(-1), 1.0, atol=1e-2)
    s = run.read_attention("kd_att_kl_e2")[0]
    assert s.shape == (1, 2, 5, 5)
    assert probe["pairs"] == [[1, 0]]                           # uniform: the teacher's last layer
    steps = [s for s in run.train_steps() if s["student"] == "att_kl"]
    assert steps and all("attention_kl" in s["losses"] for s in steps)


def test_a_vit_student_learns_the_teachers_attention_scores(tmp_path):
    """attention_score_mse between two ViTs: the teacher's scores come with each batch, as its probabilities do."""
    variants = [{"name": "baseline", "losses": {"ce": 1}},
                {"name": "scores", "losses": {"ce": 1, "attention_score_mse": 1}}]
    cfg = SessionConfig.from_dict(tiny_image_config_dict("vit", variants=variants, train={
        "epochs": 1, "batch_size": 32, "lr": 2e-3, "seed": 0, "device": "cpu", "min_steps": 0}))
    store = RunStore(tmp_path / "runs")
    run = store.open(run_session(cfg, store))
    assert run.summary()["status"] == "done", run.summary()["error"]
    steps = [s["losses"]["attention_score_mse"] for s in run.train_steps() if s["student"] == "scores"]
    assert steps and all(0 < v < float("inf") for v in steps)


def test_cnn_teacher_teaches_a_vit_student_by_logits(tmp_path):
    cfg = tiny_image_config_dict("cnn", image={**tiny_image_config_dict("cnn")["image"], "student_family": "vit"},
                                 train={"epochs": 1, "device": "cpu", "min_steps": 0, "batch_size": 64})
    config = SessionConfig.from_dict(cfg)
    assert config.variant_names == ["baseline", "kd"]              # no attention loss across families
    store = RunStore(tmp_path / "runs")
    run = store.open(run_session(config, store))
    summary, probe = run.summary(), run.probe()
    assert summary["status"] == "done", summary["error"]
    assert probe["pairs"] == [] and probe["families"] == {"teacher": "cnn", "student": "vit"}
    assert run.read_attention("teacher")[0].shape == (2, 1, 1, 64)
    assert run.read_attention("kd_e1")[0].shape == (1, 2, 5, 5)
    assert all(m["js_mean"] is None for m in run.metrics())
    assert any("different kinds" in n for n in summary["notices"])


def test_the_teacher_is_trained_once_and_cached(tmp_path, cnn_image_run):
    store = RunStore(tmp_path / "runs")
    cfg = SessionConfig.from_dict(tiny_image_config_dict("cnn", variants=[{"name": "baseline", "losses": {"ce": 1}},
                                                                          {"name": "kd", "losses": {"logit_kd": 1}}]))
    first = store.open(run_session(cfg, store)).summary()
    assert first["teacher_cached"] is True          # the fixture's session trained it with the same data and recipe
    assert first["accuracy"]["teacher"] == cnn_image_run[0].open(cnn_image_run[1]).summary()["accuracy"]["teacher"]


@pytest.mark.parametrize("over, words", [
    ({"image": {"student_family": "vit"}, "variants": [{"name": "at", "losses": {"ce": 1, "attention_transfer": 1000}}]},
     ["attention_transfer", "CNN", "ViT"]),
    ({"variants": [{"name": "kl", "losses": {"ce": 1, "attention_kl": 1}}]}, ["attention_kl", "CNN"]),
    ({"variants": [{"name": "sc", "losses": {"ce": 1, "attention_score_mse": 1}}]}, ["attention_score_mse", "CNN"]),
    ({"variants": [{"name": "adv", "losses": {"ce": 1, "logit_kd": 1}, "adversarial": {"method": "freelb"}}]},
     ["FreeLB", "pgd or fgsm"]),
])
def test_losses_an_image_teacher_and_student_cannot_compare_are_refused(over, words):
    with pytest.raises(ConfigError) as e:
        SessionConfig.from_dict({**tiny_image_config_dict("cnn"), **over})
    assert all(w in str(e.value) for w in words), str(e.value)


def test_a_patch_that_does_not_divide_the_images_is_refused_before_training(tmp_path, monkeypatch):
    from distill_core.modality.vision import teacher as vision_teacher
    trained = []
    monkeypatch.setattr(vision_teacher, "train_image_model", lambda *a, **k: trained.append(1))
    cfg = tiny_image_config_dict("vit")
    cfg["image"]["patch"] = 3
    with pytest.raises(ConfigError) as e:
        run_session(SessionConfig.from_dict(cfg), RunStore(tmp_path / "runs"))
    assert "image.patch 3" in str(e.value) and "2, 4" in str(e.value)
    assert not trained


def test_augmented_copies_are_generated_data_for_images(tmp_path):
    from distill_core.strategies.generated import augment_images
    images = np.zeros((3, 8, 8, 1), dtype=np.uint8)
    images[:, 2:6, 3:5] = 255
    copies, origin = augment_images(images, 2, seed=0)
    again, _ = augment_images(images, 2, seed=0)
    assert copies.shape == (6, 8, 8, 1) and copies.dtype == np.uint8 and origin == [0, 1, 2, 0, 1, 2]
    assert np.array_equal(copies, again) and not np.array_equal(copies[:3], images)
    assert abs(float(copies.mean()) - float(images.mean())) < 20          # moved and noisy, not erased
    cfg = tiny_image_config_dict("cnn", variants=[{"name": "baseline", "losses": {"ce": 1}},
                                                  {"name": "kd_gen", "losses": {"ce": .1, "logit_kd": .9},
                                                   "generated": True}],
                                 transfer={"source": "unused", "max_texts": 50, "copies": 1},
                                 train={"epochs": 1, "device": "cpu", "min_steps": 0, "batch_size": 64})
    store = RunStore(tmp_path / "runs")
    run = store.open(run_session(SessionConfig.from_dict(cfg), store))
    summary = run.summary()
    assert summary["status"] == "done", summary["error"]
    assert summary["generated"]["transfer"] == 50 and summary["generated"]["augmented"] == 200
    record = run.read_json("generated.json")
    assert record["modality"] == "image" and record["used_by"] == ["kd_gen"]
    aug = [e for e in record["examples"] if e["kind"] == "augmented"][0]
    assert np.asarray(aug["image"]).shape == (8, 8) and np.asarray(aug["original"]).shape == (8, 8)
    steps = {s["student"]: s["steps"] for s in run.train_steps()}
    assert steps  # both variants stepped
    gen_steps = sum(s["steps"] for s in run.train_steps() if s["student"] == "kd_gen")
    base_steps = sum(s["steps"] for s in run.train_steps() if s["student"] == "baseline")
    assert gen_steps > base_steps                    # the shared batches, and the generated ones


def test_a_file_of_texts_is_refused_as_transfer_data_for_images():
    with pytest.raises(ConfigError, match="image sessions cannot use"):
        SessionConfig.from_dict(tiny_image_config_dict("cnn", transfer={"source": "texts.txt"}))


def test_pixel_attack_stays_in_the_ball_and_the_pixel_range():
    from distill_core.strategies.adversarial import PIXEL_RANGE, pixel_attack
    from distill_core.modality.vision.models import build_cnn
    torch.manual_seed(0)
    model = build_cnn(1, 3, (4, 8), 1).eval()
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    x[0] = 1.0                                                 # saturated pixels cannot go further up
    y = torch.tensor([0, 1, 2, 0, 1])
    loss = lambda logits: torch.nn.functional.cross_entropy(logits, y)
    delta = pixel_attack(model, x, loss, 0.1, 3, 0.05)
    assert delta.abs().max() <= 0.1 * PIXEL_RANGE + 1e-6 and delta.abs().max() > 0
    assert (x + delta).max() <= 1.0 and (x + delta).min() >= -1.0
    assert loss(model(pixel_values=x + delta).logits) > loss(model(pixel_values=x).logits)
    assert not any(p.grad is not None for p in model.parameters())
    assert torch.equal(pixel_attack(model, x, loss, 0.0, 3, 0.05), torch.zeros_like(x))


def test_adversarial_distillation_of_images_attacks_pixels_and_measures_robustness(tmp_path):
    cfg = tiny_image_config_dict("cnn", variants=[{"name": "baseline", "losses": {"ce": 1}},
                                                  {"name": "ard", "losses": {"ce": .1, "logit_kd": .9},
                                                   "adversarial": {"method": "pgd", "epsilon": 0.1, "steps": 2}}],
                                 train={"epochs": 1, "device": "cpu", "min_steps": 0, "batch_size": 64})
    store = RunStore(tmp_path / "runs")
    run = store.open(run_session(SessionConfig.from_dict(cfg), store))
    assert run.summary()["status"] == "done", run.summary()["error"]
    steps = [s for s in run.train_steps() if s["student"] == "ard"]
    assert steps and all("adversarial" in s["losses"] for s in steps)
    rob = run.read_json("robustness.json")
    assert rob["attack"].startswith("PGD on pixels") and rob["epsilons"][0] == 0.0
    assert set(rob["accuracy"]) == {"teacher", "baseline", "ard"}
    for curve in rob["accuracy"].values():
        assert len(curve) == len(rob["epsilons"]) and curve[-1] <= curve[0] + 1e-9
    assert rob["accuracy"]["teacher"][0] == pytest.approx(run.summary()["accuracy"]["teacher"])


def test_robustness_of_a_finished_image_run_is_measured_on_pixels(cnn_image_run):
    from distill_core.robustness import run_robustness
    store, run_id = cnn_image_run
    run = store.open(run_id)
    record = run_robustness(run, steps=1, limit=40)
    assert record["attack"].startswith("PGD on pixels") and record["n"] == 40
    assert set(record["accuracy"]) == {"teacher", "baseline", "kd", "at", "kd_at"}
    assert run.read_json("robustness.json")["epsilons"] == record["epsilons"]
    (run.path / "robustness.json").unlink()


def test_the_cache_lists_and_clears_image_teachers(cnn_image_run):
    from distill_core.cache import cache_entries
    entries = [e for e in cache_entries() if e.source == "image teacher cnn"]
    assert entries and all(e.kind == "teacher" and e.size_bytes > 0 and e.data for e in entries)


def test_a_vit_teacher_with_other_patches_teaches_by_logits_only(tmp_path):
    from distill_core.modality.vision.models import build_vit
    folder = tmp_path / "vit_teacher"
    torch.manual_seed(0)
    build_vit(channels=1, image_size=(8, 8), patch=2, layers=2, heads=2, hidden=8, num_labels=10).save_pretrained(
        folder, safe_serialization=True)
    two = [{"name": "baseline", "losses": {"ce": 1}}, {"name": "kd", "losses": {"ce": .5, "logit_kd": .5}}]
    cfg = tiny_image_config_dict("vit", teacher={"source": str(folder)}, variants=two,
                                 image={**tiny_image_config_dict("vit")["image"], "student_family": "vit"},
                                 train={"epochs": 1, "device": "cpu", "min_steps": 0, "batch_size": 64})
    store = RunStore(tmp_path / "runs")
    run = store.open(run_session(SessionConfig.from_dict(cfg), store))
    assert run.summary()["status"] == "done", run.summary()["error"]
    assert run.probe()["pairs"] == [] and all(m["js_mean"] is None for m in run.metrics())
    assert any("patches differ in size" in n for n in run.summary()["notices"])
    cfg["variants"] = [*two, {"name": "kl", "losses": {"ce": 1, "attention_kl": 1}}]
    with pytest.raises(ConfigError, match="patches are 2 pixels"):
        run_session(SessionConfig.from_dict(cfg), RunStore(tmp_path / "runs2"))
