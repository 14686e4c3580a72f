"""Pixel attributions (Integrated Gradients, Grad-CAM), their comparison and attention agreement, on tiny image
models built from configs on the CPU."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from distill_core.errors import DataError, ModelError
from distill_core.modality.vision.attribution import (TEACHER, ImageAttribution, attention_agreement, baseline_image,
                                            class_probs, compare_attributions, explain_teacher_and_students,
                                            image_attributions, live_spatial_attention, methods_for,
                                            recorded_spatial_attention, top_pixels)
from distill_core.modality.vision.maps import read_image
from distill_core.modality.vision.data import to_tensor
from distill_core.modality.vision.models import build_cnn, build_vit
from distill_core.activation import activation_map

SIZE = 8


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return build_cnn(channels=1, num_labels=10, widths=[4, 8], blocks=1).eval()


@pytest.fixture(scope="module")
def cnn_student():
    torch.manual_seed(1)
    return build_cnn(channels=1, num_labels=10, widths=[2, 4], blocks=1).eval()


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return build_vit(channels=1, image_size=SIZE, patch=4, layers=2, heads=2, hidden=16, num_labels=10).eval()


@pytest.fixture(scope="module")
def digit() -> np.ndarray:
    """A bright stroke on a black background, like the 8×8 digits: uint8 (8, 8, 1)."""
    img = np.zeros((SIZE, SIZE, 1), dtype=np.uint8)
    img[1:7, 3:5, 0] = np.random.default_rng(0).integers(80, 256, (6, 2))
    img[1, 2:6, 0] = 200
    return img


def _prob(model, image: np.ndarray, target: int) -> float:
    with torch.no_grad():
        return float(torch.softmax(model(pixel_values=to_tensor(image[None])).logits, -1)[0, target])


# ------------------------------------------------------------------------------------------ integrated gradients


@pytest.mark.parametrize("family", ["cnn", "vit"])
def test_ig_completeness(family, cnn, vit, digit):
    model = {"cnn": cnn, "vit": vit}[family]
    attr = image_attributions(model, digit, "ig", n_steps=64)
    assert attr.scores.shape == attr.raw_scores.shape == (SIZE, SIZE)
    change = _prob(model, digit, attr.target) - _prob(model, baseline_image(digit), attr.target)
    # the delta is the gap between the sum of the attributions and the change they explain
    assert attr.raw_scores.sum() - change == pytest.approx(attr.delta, abs=1e-5)
    assert abs(attr.raw_scores.sum() - change) <= abs(attr.delta) + 1e-5
    assert abs(attr.delta) < 0.05 * max(abs(change), 1e-3) + 1e-4        # an accurate integral at 64 steps
    assert np.linalg.norm(attr.scores) == pytest.approx(1.0, abs=1e-5)
    assert attr.target == int(np.argmax(attr.probs)) and attr.method == "ig"


def test_background_pixels_get_no_attribution(cnn, digit):
    attr = image_attributions(cnn, digit, "ig", n_steps=8)
    background = digit[..., 0] == 0
    assert (attr.background_mask == background).all()
    assert (attr.raw_scores[background] == 0).all()               # a path of length zero
    assert attr.content_mask().sum() == (~background).sum()


def test_baseline_is_the_border_colour():
    dark = np.zeros((SIZE, SIZE, 1), dtype=np.uint8)
    dark[3:5, 3:5] = 255
    assert (baseline_image(dark) == 0).all()                     # black, i.e. -1 everywhere in model space
    paper = 255 - dark                                             # a dark drawing on white paper
    assert (baseline_image(paper) == 255).all()
    rgb = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    rgb[..., 2] = 90
    assert baseline_image(rgb).reshape(-1, 3).tolist() == [[0, 0, 90]] * SIZE * SIZE
    assert (baseline_image(paper, "black") == 0).all()
    with pytest.raises(ValueError, match="baseline"):
        baseline_image(dark, "grey")


def test_target_model_state_and_inference_mode(digit):
    torch.manual_seed(2)
    model = build_cnn(channels=1, num_labels=10, widths=[4], blocks=1)
    model.train()
    with torch.inference_mode():                                   # as inside an app view
        attr = image_attributions(model, digit, "ig", target=7, n_steps=4)
    assert attr.target == 7
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="class 10 does not exist"):
        image_attributions(model, digit, target=10)
    with pytest.raises(ValueError, match="unknown attribution method"):
        image_attributions(model, digit, "saliency")
    with pytest.raises(ValueError, match="uint8"):
        image_attributions(model, digit.astype(np.float32))


# ------------------------------------------------------------------------------------------------------ Grad-CAM


def test_grad_cam_shape_nonnegative_and_by_hand(cnn, digit):
    attr = image_attributions(cnn, digit, "gradcam", target=3)
    assert attr.scores.shape == (SIZE, SIZE) and attr.method == "gradcam"
    assert (attr.raw_scores >= 0).all() and math.isnan(attr.delta)
    assert attr.content_mask().all()                               # every pixel can carry Grad-CAM
    # by hand: the last stage's channels weighted by their mean gradient, ReLU, bilinear upsampling
    feats = {}
    handle = cnn.stages[-1].register_forward_hook(lambda m, i, o: feats.setdefault("a", o))
    x = to_tensor(digit[None])
    logit = cnn(pixel_values=x).logits[0, 3]
    handle.remove()
    a = feats["a"]                                                 # (1, C, h, w)
    grad, = torch.autograd.grad(logit, a)
    cam = torch.relu((grad.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True))
    up = torch.nn.functional.interpolate(cam, size=(SIZE, SIZE), mode="bilinear")[0, 0].detach().numpy()
    np.testing.assert_allclose(attr.raw_scores, up, rtol=1e-4, atol=1e-6)


def test_vit_is_explained_by_ig_only(vit, digit):
    assert methods_for("cnn") == methods_for("cnn", "cnn") == ["ig", "gradcam"]
    assert methods_for("vit") == methods_for("cnn", "vit") == ["ig"]
    with pytest.raises(ModelError, match="Integrated Gradients"):
        image_attributions(vit, digit, "gradcam")


# ---------------------------------------------------------------------------------------------- comparisons


def _attr(scores, method="ig", target=0, background=None) -> ImageAttribution:
    scores = np.asarray(scores, dtype=np.float64)
    return ImageAttribution(method, scores, target, 0.0, np.full(10, 0.1), scores, background)


def test_spearman_of_a_map_with_itself_is_one(cnn, digit):
    attr = image_attributions(cnn, digit, "ig", n_steps=8)
    cmp = compare_attributions(attr, attr)
    assert cmp["spearman"] == pytest.approx(1.0)
    assert cmp["top_k_overlap"] == 1.0 and cmp["same_target"] and math.isnan(cmp["attention_agreement"])


def test_spearman_matches_scipy_over_content_pixels():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(SIZE, SIZE)), rng.normal(size=(SIZE, SIZE))
    background = np.zeros((SIZE, SIZE), dtype=bool)
    background[:, :3] = True
    cmp = compare_attributions(_attr(a, background=background), _attr(b, background=background))
    assert cmp["spearman"] == pytest.approx(spearmanr(a[:, 3:].ravel(), b[:, 3:].ravel()).statistic)
    assert cmp["k"] == round(5 * SIZE / 10)                      # a tenth of the 40 content pixels
    assert all(p % SIZE >= 3 for p in cmp["teacher_top"] + cmp["student_top"])
    reversed_ = compare_attributions(_attr(a), _attr(-a))
    assert reversed_["spearman"] == pytest.approx(-1.0)


def test_top_pixels_and_method_mismatch():
    scores = np.zeros((2, 2))
    scores[1, 0], scores[0, 1] = -3.0, 2.0
    assert top_pixels(_attr(scores), 2) == [2, 1]
    assert top_pixels(_attr(scores), 2, absolute=False) == [1, 0]
    with pytest.raises(ValueError, match="one method"):
        compare_attributions(_attr(scores), _attr(scores, method="gradcam"))
    with pytest.raises(ModelError, match="same image"):
        compare_attributions(_attr(scores), _attr(np.zeros((3, 3))))


def test_attention_agreement_and_spatial_maps(cnn, vit, digit):
    cnn_map, vit_map = live_spatial_attention(cnn, digit), live_spatial_attention(vit, digit)
    for m in (cnn_map, vit_map):
        assert m.shape == (SIZE, SIZE) and m.sum() == pytest.approx(1.0) and (m >= 0).all()
    # a ViT's patch weight is spread evenly over its 4×4 pixels
    assert len(np.unique(vit_map[:4, :4].round(9))) == 1
    assert attention_agreement(cnn_map, cnn_map) == pytest.approx(1.0, abs=1e-6)
    assert 0.0 <= attention_agreement(cnn_map, vit_map) < 1.0
    one_hot = np.zeros((SIZE, SIZE))
    one_hot[0, 0] = 1.0
    other = np.zeros((SIZE, SIZE))
    other[7, 7] = 1.0
    assert attention_agreement(one_hot, other) == pytest.approx(0.0, abs=1e-4)


def test_recorded_maps_read_like_live_ones(cnn, vit, digit):
    # a CNN run records (S, 1, 1, H*W) per probe image
    with torch.no_grad():
        feats = cnn(pixel_values=to_tensor(digit[None]), output_hidden_states=True).hidden_states
    stacked = torch.stack([activation_map(f, (SIZE, SIZE)) for f in feats], 1)[0, :, None, None].numpy()
    desc = {"family": "cnn", "stages": 2, "sizes": [[8, 8], [4, 4]]}
    np.testing.assert_allclose(recorded_spatial_attention(stacked, desc, (SIZE, SIZE)),
                               live_spatial_attention(cnn, digit), rtol=1e-5, atol=1e-7)
    # a ViT run records (L, H, T, T): the last layer's [CLS] row, heads averaged
    from distill_core.capture import AttentionCapture
    with torch.no_grad(), AttentionCapture(vit) as cap:
        vit(pixel_values=to_tensor(digit[None]))
        maps = cap.pop_stacked()[0].numpy()                        # (L, H, T, T)
    desc = {"family": "vit", "layers": 2, "heads": 2, "patch": 4, "grid": [2, 2]}
    np.testing.assert_allclose(recorded_spatial_attention(maps, desc, (SIZE, SIZE)),
                               live_spatial_attention(vit, digit), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="stages, 1, 1"):
        recorded_spatial_attention(stacked[..., :10], {"family": "cnn"}, (SIZE, SIZE))


# ----------------------------------------------------------------------------------------- teacher vs students


def test_teacher_vs_students_record(cnn, cnn_student, vit, digit):
    students = {"baseline": cnn_student, "vit": vit}
    attention = {TEACHER: live_spatial_attention(cnn, digit), "baseline": live_spatial_attention(cnn_student, digit)}
    rec = explain_teacher_and_students(cnn, students, digit, "ig", n_steps=8, attention=attention)
    teacher_class = int(np.argmax(class_probs(cnn, digit)))
    assert rec.method == "ig" and rec.target == teacher_class
    assert list(rec.attributions) == [TEACHER, "baseline", "vit"]
    assert {a.target for a in rec.attributions.values()} == {teacher_class}     # all explain the teacher's class
    assert all(a.scores.shape == (SIZE, SIZE) for a in rec.attributions.values())
    assert list(rec.comparisons) == ["baseline", "vit"]
    keys = {"spearman", "top_k_overlap", "k", "teacher_top", "student_top", "same_target", "attention_agreement"}
    assert all(set(c) == keys for c in rec.comparisons.values())
    assert 0.0 <= rec.comparisons["baseline"]["attention_agreement"] <= 1.0
    assert math.isnan(rec.comparisons["vit"]["attention_agreement"])           # no map given for it
    assert -1.0 <= rec.comparisons["vit"]["spearman"] <= 1.0
    with pytest.raises(ModelError, match="Integrated Gradients"):
        explain_teacher_and_students(cnn, students, digit, "gradcam")


# ------------------------------------------------------------------------------------------------------- uploads


def _png(array: np.ndarray, mode: str) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


def test_an_upload_is_read_at_the_runs_channels_and_size():
    rgb = np.zeros((20, 30, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    gray = read_image(_png(rgb, "RGB"), (SIZE, SIZE), 1)
    assert gray.shape == (SIZE, SIZE, 1) and gray.dtype == np.uint8
    assert int(gray[0, 0, 0]) == 76                                # Pillow's luma of pure red
    colour = read_image(_png(np.full((4, 4), 9, np.uint8), "L"), (6, 10), 3)
    assert colour.shape == (6, 10, 3) and (colour == 9).all()


def test_a_junk_upload_is_refused():
    with pytest.raises(DataError, match="Pillow"):
        read_image(b"not an image at all", (SIZE, SIZE), 1)
