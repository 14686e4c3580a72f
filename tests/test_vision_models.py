"""Image models: the residual CNN and its activation attention (Zagoruyko & Komodakis), small ViTs built from a
config, saving and loading, training with the best epoch kept, and the built-in image teachers' cache.
Offline, CPU, tiny models."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from distill_core.capture import AttentionCapture
from distill_core.config import ImageConfig, SessionConfig, TeacherConfig
from distill_core.errors import ConfigError, ModelError
from distill_core.modality.vision.data import ImageSplits, to_tensor
from distill_core.models import set_attention_backend
from distill_core.modality.vision.models import CNN_MODEL_TYPE, CNNConfig, ResidualCNN, build_cnn, build_vit, check_patch, load_image_model, model_family, num_maps, save_image_model
from distill_core.activation import activation_attention, activation_map, attention_transfer_loss
from distill_core.modality.vision.teacher import image_teacher_key, predict_images, prepare_image_teacher, train_image_model

CPU = torch.device("cpu")


def random_images(n: int, size: int = 8, channels: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, channels), dtype=np.uint8)


def separable_images(n: int, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """8×8 images whose label says which half is bright: learnable in an epoch or two."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, (n, 8, 8, 1), dtype=np.uint8)
    labels = [i % 2 for i in range(n)]
    for i, y in enumerate(labels):
        images[i, :, (4 if y else 0):(8 if y else 4)] += 180
    return images, labels


# ---- activation attention ----------------------------------------------------------------------------------------

def test_activation_attention_by_hand():
    # one example, 2 channels over a 1×2 grid: channel 0 = [1, 2], channel 1 = [3, -4]
    feats = torch.tensor([[[[1.0, 2.0]], [[3.0, -4.0]]]])                  # (1, 2, 1, 2)
    # |A|^2: [1, 4] and [9, 16]; channel mean [5, 10]; L2 norm sqrt(125): [1/sqrt(5), 2/sqrt(5)]
    q = activation_attention(feats)
    assert q.shape == (1, 2) and q.dtype == torch.float32
    assert torch.allclose(q, torch.tensor([[1 / math.sqrt(5), 2 / math.sqrt(5)]]))
    # p = 1: channel mean of |A| = [2, 3], norm sqrt(13)
    assert torch.allclose(activation_attention(feats, p=1), torch.tensor([[2 / math.sqrt(13), 3 / math.sqrt(13)]]))
    # computed in float32 whatever the features' type
    assert activation_attention(feats.to(torch.bfloat16)).dtype == torch.float32


def test_activation_map_is_a_distribution_over_the_image():
    feats = torch.randn(3, 5, 7, 7)
    m = activation_map(feats, (28, 28))
    assert m.shape == (3, 28 * 28)
    assert torch.allclose(m.sum(1), torch.ones(3), atol=1e-5)
    assert (m >= 0).all()
    # the same energy everywhere gives the uniform distribution; all-zero features too
    flat = activation_map(torch.ones(1, 2, 4, 4), (8, 12))
    assert flat.shape == (1, 96) and torch.allclose(flat, torch.full((1, 96), 1 / 96))
    assert torch.allclose(activation_map(torch.zeros(1, 2, 4, 4), (8, 8)), torch.full((1, 64), 1 / 64))
    # a bright corner stays where it is after upsampling
    corner = torch.zeros(1, 1, 2, 2)
    corner[0, 0, 0, 0] = 1.0
    up = activation_map(corner, (8, 8)).view(8, 8)
    assert up[0, 0] == up.max() and up[7, 7] == 0


def test_attention_transfer_loss_by_hand():
    feats = torch.randn(4, 6, 7, 7)
    assert attention_transfer_loss([feats], [activation_attention(feats)]).item() == pytest.approx(0.0, abs=1e-12)
    # pair 1: student [[1, 0]] -> Q_s = [1, 0]; teacher [0.6, 0.8]; diff [0.4, -0.8]; mean square (0.16+0.64)/2 = 0.4
    # pair 2: student [[1, 1]] -> Q_s = [1/sqrt2, 1/sqrt2] = the teacher's map: 0
    # loss = 0.5 * (0.4 + 0) = 0.2
    s1, t1 = torch.tensor([[[[1.0, 0.0]]]]), torch.tensor([[0.6, 0.8]])
    s2, t2 = torch.tensor([[[[1.0, 1.0]]]]), torch.full((1, 2), 1 / math.sqrt(2))
    assert attention_transfer_loss([s1, s2], [t1, t2]).item() == pytest.approx(0.2, abs=1e-6)
    assert attention_transfer_loss([s1], [t1]).item() == pytest.approx(0.2, abs=1e-6)


def test_attention_transfer_resizes_the_student_to_the_teacher():
    # a student stage of 4×4 constant features against a 2×2 teacher map: resized, both are uniform
    student = torch.ones(2, 3, 4, 4, requires_grad=True)
    teacher = torch.full((2, 4), 0.5)                                      # uniform 2×2, L2-normalised
    loss = attention_transfer_loss([student], [teacher])
    assert loss.item() == pytest.approx(0.0, abs=1e-10)
    # gradients reach the student through the resize
    bright = torch.tensor([[1.0, 0.0, 0.0, 0.0]])                          # the teacher looks at the top left
    s = torch.ones(1, 1, 4, 4, requires_grad=True)
    attention_transfer_loss([s], [bright]).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    # non-square: a 4×8 student against a 2×4 teacher map (8 entries, the student's aspect ratio)
    assert attention_transfer_loss([torch.ones(1, 2, 4, 8)], [torch.full((1, 8), 8 ** -0.5)]).item() == \
        pytest.approx(0.0, abs=1e-10)
    with pytest.raises(ValueError):
        attention_transfer_loss([student], [])


# ---- the residual CNN ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size,expected", [(28, [(28, 28), (14, 14), (7, 7)]), (8, [(8, 8), (4, 4), (2, 2)])])
def test_cnn_shapes_and_stage_sizes(size, expected):
    torch.manual_seed(0)
    model = build_cnn(channels=3, num_labels=5, widths=(4, 8, 16), blocks=2)
    assert model.num_stages == 3 and len(model.stages) == 3
    assert model.stage_sizes((size, size)) == expected
    out = model(pixel_values=torch.randn(2, 3, size, size), output_hidden_states=True, output_attentions=True)
    assert out.logits.shape == (2, 5)
    assert len(out.hidden_states) == 3
    assert [tuple(h.shape) for h in out.hidden_states] == [(2, w, *hw) for w, hw in zip((4, 8, 16), expected)]
    assert model(pixel_values=torch.randn(2, 3, size, size)).hidden_states is None
    labelled = model(pixel_values=torch.randn(2, 3, size, size), labels=torch.tensor([0, 4]))
    assert labelled.loss is not None and labelled.loss.dim() == 0
    assert model_family(model) == "cnn" and num_maps(model) == (3, 1)
    # a non-square input: each later stage rounds up
    assert model.stage_sizes((9, 12)) == [(9, 12), (5, 6), (3, 3)]
    assert [h.shape[-2:] for h in model(pixel_values=torch.randn(2, 3, 9, 12), output_hidden_states=True)
            .hidden_states] == [torch.Size(s) for s in [(9, 12), (5, 6), (3, 3)]]


def test_cnn_config_round_trip():
    conf = CNNConfig(channels=3, num_labels=7, widths=(8, 16), blocks=2, dropout=0.1)
    d = conf.to_dict()
    assert d["model_type"] == CNN_MODEL_TYPE and d["widths"] == [8, 16]
    assert CNNConfig.from_dict(json.loads(json.dumps(d))) == conf
    with pytest.raises(ConfigError):
        CNNConfig(widths=())


def test_cnn_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_cnn(1, 4, (4, 8), 1, dropout=0.2)
    model.train()
    model(pixel_values=torch.randn(8, 1, 8, 8))                           # move the BatchNorm running statistics
    model.eval()
    x = torch.randn(3, 1, 8, 8)
    size = save_image_model(model, tmp_path / "cnn")
    assert size == (tmp_path / "cnn" / "model.safetensors").stat().st_size > 0
    assert json.loads((tmp_path / "cnn" / "config.json").read_text())["model_type"] == CNN_MODEL_TYPE
    for loaded in (ResidualCNN.from_pretrained(tmp_path / "cnn"), load_image_model(str(tmp_path / "cnn"))):
        assert isinstance(loaded, ResidualCNN) and loaded.config == model.config
        loaded.eval()
        assert torch.equal(loaded(pixel_values=x).logits, model(pixel_values=x).logits)
    # another number of labels: a new head, the rest kept
    other = load_image_model(str(tmp_path / "cnn"), num_labels=6)
    assert other(pixel_values=x).logits.shape == (3, 6)
    assert torch.equal(other.stages[0][0].conv1.weight, model.stages[0][0].conv1.weight)


def test_load_refuses_pickle_and_damaged_weights(tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(CNNConfig().to_dict()))
    (folder / "model.pt").write_bytes(b"not loaded")
    with pytest.raises(ModelError, match="pickle"):
        load_image_model(str(folder))
    save_image_model(build_cnn(1, 2, (4,), 1), tmp_path / "ok")
    weights = tmp_path / "ok" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(ModelError, match="damaged"):
        load_image_model(str(tmp_path / "ok"))
    with pytest.raises(ModelError, match="does not exist"):
        load_image_model(str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="built-in"):
        load_image_model("cnn")


# ---- ViT ----------------------------------------------------------------------------------------------------------

def tiny_vit(image_size=(8, 8), num_labels=3):
    torch.manual_seed(0)
    return build_vit(channels=1, image_size=image_size, patch=4, layers=2, heads=2, hidden=16, num_labels=num_labels)


def test_vit_attention_captured_equals_outputs_attentions():
    model = tiny_vit()
    assert model_family(model) == "vit" and num_maps(model) == (2, 2)
    assert model.config.intermediate_size == 32
    set_attention_backend(model, eager=True)
    model.eval()
    x = torch.randn(3, 1, 8, 8)
    with AttentionCapture(model) as cap:
        out = model(pixel_values=x, output_attentions=True)
        maps = cap.pop()
    assert len(maps) == len(out.attentions) == 2
    for m, a in zip(maps, out.attentions):
        assert m.shape == (3, 2, 5, 5)                                     # [CLS] + 2×2 patches
        assert torch.allclose(m, a)
        assert torch.allclose(m.sum(-1), torch.ones(3, 2, 5))


def test_vit_non_square_images(tmp_path):
    model = tiny_vit(image_size=(8, 12))
    model.eval()
    set_attention_backend(model, eager=True)
    x = torch.randn(2, 1, 8, 12)
    with AttentionCapture(model) as cap:
        logits = model(pixel_values=x).logits
        assert cap.pop()[0].shape == (2, 2, 7, 7)                          # [CLS] + 2×3 patches
    save_image_model(model, tmp_path / "vit")
    loaded = load_image_model(str(tmp_path / "vit"))
    loaded.eval()
    assert model_family(loaded) == "vit"
    assert torch.allclose(loaded(pixel_values=x).logits, logits)


def test_check_patch_lists_the_divisors():
    check_patch((28, 28), 4)
    check_patch(28, 7)
    with pytest.raises(ConfigError) as e:
        check_patch((28, 28), 5)
    assert str(e.value) == "image.patch 5 does not divide the image size 28×28: use one of 2, 4, 7, 14"
    with pytest.raises(ConfigError, match="8×12: use one of 2, 4"):
        check_patch((8, 12), 3)
    with pytest.raises(ConfigError, match="image.patch 5"):
        build_vit(channels=1, image_size=(28, 28), patch=5, layers=1, heads=1, hidden=8, num_labels=2)


def test_model_family_refuses_other_models():
    with pytest.raises(ModelError):
        model_family(torch.nn.Linear(2, 2))


# ---- training -----------------------------------------------------------------------------------------------------

def test_train_image_model_keeps_the_best_epoch():
    images, labels = random_images(60), [i % 3 for i in range(60)]
    val_images, val_labels = random_images(30, seed=1), [i % 3 for i in range(30)]

    def run():
        torch.manual_seed(0)
        model = build_cnn(1, 3, (4, 8), 1)
        calls = []
        record = train_image_model(model, (images, labels), (val_images, val_labels), epochs=2, lr=1e-2,
                                   batch_size=16, device=CPU, seed=3, progress=lambda *a: calls.append(a))
        return model, record, calls

    model, record, calls = run()
    assert record["examples"] == 60 and isinstance(record["train_s"], float)
    assert [e["epoch"] for e in record["epochs"]] == [1, 2]
    accs = [e["val_accuracy"] for e in record["epochs"]]
    assert record["kept_epoch"] == max(e for e, a in enumerate(accs, 1) if a == max(accs))   # ties: the later
    assert record["val_accuracy"] == max(accs)
    assert all(np.isfinite(e["train_loss"]) for e in record["epochs"])
    assert all(p.is_contiguous() for p in model.parameters())             # trained channels-last, handed back as usual
    # the kept weights are those of the kept epoch
    logits = predict_images(model, val_images, CPU)
    assert logits.shape == (30, 3) and logits.dtype == torch.float32
    assert (logits.argmax(-1).numpy() == np.array(val_labels)).mean() == pytest.approx(record["val_accuracy"])
    assert calls[0] == ("train teacher", 1, 8) and calls[-1] == ("train teacher", 8, 8)
    # deterministic for a seed on the CPU
    again, record2, _ = run()
    assert [e for e in record2["epochs"]] == record["epochs"]
    assert torch.equal(predict_images(again, val_images, CPU), logits)


def test_train_image_model_learns_and_stops_when_asked():
    images, labels = separable_images(64)
    torch.manual_seed(0)
    model = build_cnn(1, 2, (4, 8), 1)
    record = train_image_model(model, (images, labels), separable_images(32, seed=1), epochs=4, lr=3e-3,
                               batch_size=16, device=CPU, seed=0)
    assert record["val_accuracy"] >= 0.9 and not model.training

    def stop(phase, done, total):
        if done == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_image_model(model, (images, labels), (images, labels), epochs=1, lr=1e-3, batch_size=16, device=CPU,
                          seed=0, progress=stop)


def test_train_vit_leaves_its_attention_readable():
    images, labels = separable_images(32)
    model = tiny_vit(num_labels=2)
    record = train_image_model(model, (images, labels), (images[:8], labels[:8]), epochs=1, lr=1e-3,
                               batch_size=16, device=CPU, seed=0)
    assert record["kept_epoch"] == 1 and not model.training
    with AttentionCapture(model) as cap:                                   # trained on the fast path, read after
        model(pixel_values=to_tensor(images[:2]))
        assert cap.pop()[0].shape == (2, 2, 5, 5)


def test_augmentation_shifts_with_zero_fill():
    from distill_core.modality.vision.teacher import _augment
    x = torch.full((50, 6, 6, 1), 200, dtype=torch.uint8)
    out = _augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert set(out.unique().tolist()) <= {0, 200}
    assert (out[:, 2:4, 2:4] == 200).all()                                 # shifts of at most 2 pixels
    assert (out == 0).any()


# ---- the built-in image teachers ----------------------------------------------------------------------------------

def tiny_splits() -> ImageSplits:
    train_images, train_labels = separable_images(40)
    val_images, val_labels = separable_images(20, seed=1)
    test_images, test_labels = separable_images(10, seed=2)
    extra_images, extra_labels = separable_images(6, seed=3)
    return ImageSplits(train_images, train_labels, val_images, val_labels, test_images, test_labels,
                       label_names=["left", "right"], probe_indices=[0, 1], fingerprint="tiny-halves",
                       extra_images=extra_images, extra_labels=extra_labels)


@pytest.mark.parametrize("source", ["cnn", "vit"])
def test_prepare_image_teacher_trains_once_then_loads(source, tmp_path, monkeypatch):
    monkeypatch.setenv("ADS_CACHE_DIR", str(tmp_path))
    splits = tiny_splits()
    cfg = SessionConfig(teacher=TeacherConfig(source=source, finetune_min_steps=0),      # the epochs as set
                        image=ImageConfig(patch=4, teacher_widths=(4, 8), teacher_blocks=1, teacher_layers=1,
                                          teacher_heads=2, teacher_hidden=8, teacher_epochs=1,
                                          teacher_batch_size=16))
    phases = []
    first = prepare_image_teacher(cfg, splits, CPU, progress=lambda p, d, t: phases.append(p))
    assert first.finetuned and not first.cached and not first.head_new and first.tokenizer is None
    assert phases and set(phases) == {"train teacher"}
    key = image_teacher_key(cfg, splits)
    folder = tmp_path / "image_teachers" / key
    assert first.path == str(folder)
    assert {"config.json", "model.safetensors", "distill_fit.json"} <= {p.name for p in folder.iterdir()}
    assert first.fit["examples"] == 46 and first.fit["kept_epoch"] == 1          # train + extra images
    assert model_family(first.model) == source and not first.model.training

    second = prepare_image_teacher(cfg, splits, CPU, progress=lambda *a: pytest.fail("trained again"))
    assert second.cached and second.finetuned and second.path == first.path and second.fit == first.fit
    x = to_tensor(splits.test_images)
    assert torch.equal(first.model(pixel_values=x).logits, second.model(pixel_values=x).logits)

    # the key follows what changes the teacher
    other_seed = SessionConfig(teacher=TeacherConfig(source=source, seed=1, finetune_min_steps=0), image=cfg.image)
    assert image_teacher_key(other_seed, splits) != key
    assert image_teacher_key(SessionConfig(teacher=cfg.teacher, image=ImageConfig(teacher_widths=(4, 8),
                             teacher_blocks=1, teacher_layers=1, teacher_heads=2, teacher_hidden=8,
                             teacher_epochs=2, teacher_batch_size=16)), splits) != key


def test_prepare_image_teacher_refuses_a_bad_patch_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("ADS_CACHE_DIR", str(tmp_path))
    cfg = SessionConfig(teacher=TeacherConfig(source="vit"), image=ImageConfig(patch=3, teacher_epochs=1))
    with pytest.raises(ConfigError, match="image.patch 3 does not divide the image size 8×8: use one of 2, 4"):
        prepare_image_teacher(cfg, tiny_splits(), CPU, progress=lambda *a: pytest.fail("trained"))


def test_prepare_image_teacher_loads_a_saved_model(tmp_path, monkeypatch):
    monkeypatch.setenv("ADS_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    save_image_model(build_cnn(1, 2, (4, 8), 1), tmp_path / "mine")
    cfg = SessionConfig(teacher=TeacherConfig(source=str(tmp_path / "mine")))
    prepared = prepare_image_teacher(cfg, tiny_splits(), CPU)
    assert not prepared.finetuned and not prepared.cached and not prepared.head_new
    assert isinstance(prepared.model, ResidualCNN)
    assert not (tmp_path / "cache" / "image_teachers").exists()


def test_a_built_in_teacher_learns_from_the_training_split_only_when_told():
    from distill_core.config import SessionConfig, TeacherConfig
    from distill_core.modality.vision.data import ImageSplits
    from distill_core.modality.vision.teacher import _teacher_extra, image_teacher_key
    img = np.zeros((4, 8, 8, 1), dtype=np.uint8)
    splits = ImageSplits(img, [0, 1, 0, 1], img, [0, 1, 0, 1], img, [0, 1, 0, 1], ["a", "b"], [0], "f",
                         extra_images=img, extra_labels=[0, 1, 0, 1])
    everything = SessionConfig(teacher=TeacherConfig(source="cnn"))
    train_only = SessionConfig(teacher=TeacherConfig(source="cnn", finetune_on="train"))
    assert len(_teacher_extra(everything, splits)[1]) == 4 and _teacher_extra(train_only, splits) == (None, [])
    assert image_teacher_key(everything, splits) != image_teacher_key(train_only, splits)
