"""distill_core.image_maps: rollout, [CLS] maps, spatial maps, uploaded pictures, and live maps equal to the recorded
ones of a run the real engine wrote."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from distill_core.modality.vision import maps as im
from distill_core.errors import DataError


def random_maps(layers: int, heads: int, t: int, seed: int = 0) -> np.ndarray:
    """(L, H, T, T) row-stochastic maps."""
    x = np.random.default_rng(seed).random((layers, heads, t, t))
    return x / x.sum(-1, keepdims=True)


def png(pixels: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, format="PNG")
    return buf.getvalue()


# ---- rollout ---------------------------------------------------------------------------------------------
def test_rollout_of_identity_maps_is_the_identity():
    maps = np.broadcast_to(np.eye(5), (3, 2, 5, 5))
    np.testing.assert_allclose(im.attention_rollout(maps), np.broadcast_to(np.eye(5), (3, 5, 5)))


def test_rollout_rows_sum_to_one_and_multiply_through_the_layers():
    maps = random_maps(3, 4, 6)
    out = im.attention_rollout(maps)
    assert out.shape == (3, 6, 6)
    np.testing.assert_allclose(out.sum(-1), 1.0)
    a = [0.5 * maps[l].mean(0) + 0.5 * np.eye(6) for l in range(3)]
    a = [x / x.sum(-1, keepdims=True) for x in a]
    np.testing.assert_allclose(out[0], a[0])
    np.testing.assert_allclose(out[2], a[2] @ a[1] @ a[0])


def test_rollout_refuses_other_shapes():
    with pytest.raises(ValueError, match="layers, heads"):
        im.attention_rollout(np.ones((2, 3, 3)))


# ---- [CLS] and spatial maps ------------------------------------------------------------------------------
def test_cls_map_drops_cls_and_renormalises():
    row = np.array([0.5, 0.1, 0.1, 0.2, 0.0, 0.05, 0.05])          # [CLS] then a 2×3 grid
    out = im.cls_map(row, (2, 3))
    assert out.shape == (2, 3)
    assert out.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(out, np.array([[0.1, 0.1, 0.2], [0.0, 0.05, 0.05]]) / 0.5)
    with pytest.raises(ValueError, match="2×2"):
        im.cls_map(row, (2, 2))


def test_cls_map_of_rows_that_only_attend_to_cls_is_uniform():
    out = im.cls_map(np.array([1.0, 0, 0, 0, 0]), (2, 2))
    np.testing.assert_allclose(out, 0.25)


def test_vit_spatial_map_spreads_each_patch_over_its_pixels():
    describe = {"family": "vit", "layers": 1, "heads": 2, "patch": 4, "grid": [2, 2]}
    maps = np.zeros((1, 2, 5, 5))
    maps[0, 0, 0] = [0.0, 1.0, 0.0, 0.0, 0.0]                        # head 0: all on the top left patch
    maps[0, 1, 0] = [0.0, 0.0, 0.0, 0.0, 1.0]                        # head 1: all on the bottom right one
    one = im.spatial_map(maps, 0, 0, describe, (8, 8))
    assert one.shape == (8, 8) and one.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(one[:4, :4], 1 / 16)
    assert one[4:].sum() == 0 and one[:, 4:].sum() == 0
    mean = im.spatial_map(maps, 0, im.MEAN_HEADS, describe, (8, 8))
    np.testing.assert_allclose(mean[:4, :4], 0.5 / 16)
    np.testing.assert_allclose(mean[4:, 4:], 0.5 / 16)
    rolled = im.spatial_map(maps, 0, 0, describe, (8, 8), rollout=True)
    assert rolled.sum() == pytest.approx(1.0)


def test_cnn_spatial_map_is_the_stage_reshaped():
    maps = np.random.default_rng(1).random((2, 1, 1, 12)).astype(np.float32)
    describe = {"family": "cnn", "stages": 2, "sizes": [[3, 4], [2, 2]]}
    np.testing.assert_allclose(im.spatial_map(maps, 1, 0, describe, (3, 4)), maps[1, 0, 0].reshape(3, 4))


def test_top_region_and_js():
    m = np.zeros((9, 9))
    m[0:3, 6:9] = 1.0
    assert im.top_region(m) == ("top right", 1.0)
    m[3:6, 3:6] = 2.0
    assert im.top_region(m)[0] == "centre"
    assert im.spatial_js(m, m) == pytest.approx(0.0)
    assert im.spatial_js(np.eye(3), 1 - np.eye(3)) == pytest.approx(np.log(2))


# ---- uploaded pictures -----------------------------------------------------------------------------------
def test_read_image_grayscale_into_an_rgb_run_resized():
    gray = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))   # 16×16, a left-to-right ramp
    out = im.read_image(png(gray), (8, 8), 3)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert out[0, 0, 0] < 40 and out[0, -1, 0] > 210                 # the ramp survives the resizing


def test_read_image_colour_into_a_grayscale_run():
    rgb = np.zeros((10, 20, 3), dtype=np.uint8)
    rgb[..., 0] = 255                                                 # pure red
    out = im.read_image(png(rgb), (28, 28), 1)
    assert out.shape == (28, 28, 1)
    assert abs(int(out[5, 5, 0]) - 76) <= 1                           # ITU-R 601 luma of pure red


def test_read_image_lays_transparency_over_white():
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)                        # fully transparent black
    out = im.read_image(png(rgba, "RGBA"), (8, 8), 1)
    assert (out == 255).all()


@pytest.mark.parametrize("data, words", [(b"", "empty"), (b"not an image at all", "not a picture"),
                                         (b"\x80\x04\x95" + b"\x00" * 64, "not a picture")])
def test_read_image_refuses_what_is_not_a_picture(data, words):
    with pytest.raises(DataError, match=words) as e:
        im.read_image(data, (8, 8), 1)
    assert "PNG" in str(e.value)


def test_read_image_refuses_a_file_over_the_limit(monkeypatch):
    monkeypatch.setattr(im, "MAX_UPLOAD_MB", 0.0001)
    with pytest.raises(DataError, match="MB"):
        im.read_image(png(np.zeros((64, 64), dtype=np.uint8)) + b"\x00" * 200, (8, 8), 1)


# ---- live maps against the recorded ones -----------------------------------------------------------------
@pytest.mark.parametrize("fixture", ["cnn_image_run", "vit_image_run"])
def test_maps_on_image_equal_the_recorded_maps(fixture, request):
    store, run_id = request.getfixturevalue(fixture)
    run = store.open(run_id)
    probe = run.probe()
    variant = probe["variants"][-1]
    final = run.kept_weights(variant)["final"]
    teacher, student = im.load_run_models(run, variant)
    recorded_t = run.read_attention("teacher")
    recorded_s = run.read_attention(f"{variant}_e{final}")
    for k in range(len(probe["images"])):
        pixels = np.asarray(probe["images"][k], dtype=np.uint8)
        pixels = pixels[..., None] if pixels.ndim == 2 else pixels
        t_maps, t_probs = im.maps_on_image(teacher, pixels, probe["image_size"])
        s_maps, s_probs = im.maps_on_image(student, pixels, probe["image_size"])
        assert t_maps.shape == recorded_t[k].shape and s_maps.shape == recorded_s[k].shape
        np.testing.assert_allclose(t_maps, recorded_t[k], rtol=2e-3, atol=2e-4)    # stored as float16
        np.testing.assert_allclose(s_maps, recorded_s[k], rtol=2e-3, atol=2e-4)
        assert t_probs.shape == (len(probe["label_names"]),) and s_probs.sum() == pytest.approx(1.0, abs=1e-5)
        for side, maps in (("teacher", t_maps), ("student", s_maps)):
            spatial = im.spatial_map(maps, 0, im.MEAN_HEADS, probe["maps"][side], probe["image_size"])
            assert spatial.shape == tuple(probe["image_size"]) and spatial.sum() == pytest.approx(1.0, abs=1e-4)


def test_load_run_models_refuses_a_text_run(tmp_path):
    from distill_core import RunStore
    from distill_core.errors import ModelError
    run = RunStore(tmp_path).create({})
    run.write_json("probe.json", {"texts": ["a film"], "variants": ["baseline"]})
    with pytest.raises(ModelError, match="not an image run"):
        im.load_run_models(run, "baseline")
