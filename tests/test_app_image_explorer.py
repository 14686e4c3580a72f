"""The attention explorer on image runs (app/image_explorer.py), driven with Streamlit's AppTest.

The runs are written once per test session by the real engine on the 8×8 digits (`cnn_image_run`, `vit_image_run`);
a cross-family run (CNN teacher, ViT student) is assembled here from those two. Nothing trains here.
"""
from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from app.figures import images as fig_images
from app_helpers import VIEWS, figures, open_page, run_app, texts, values
from distill_core import RunStore
from distill_core.modality.vision import maps as image_maps

K = "explorer.image."
OPEN_TIMEOUT = 30          # the first run of a page imports torch; later runs read cached arrays
LIVE_TIMEOUT = 90          # pages that load the run's models and run them on the CPU


def page(query: dict | None = None, timeout: float = OPEN_TIMEOUT):
    return open_page(VIEWS / "explorer.py", query=query, default_timeout=OPEN_TIMEOUT, timeout=timeout)


def overlay(at) -> dict:
    """The overlay figure's arrays: the picture under each panel and the teacher, student and difference maps."""
    data = figures(at)[K + "overlay"]["data"]
    assert [d["type"] for d in data] == ["heatmap"] * 6
    assert [d["name"] == "picture" for d in data] == [True, False] * 3
    pictures = [values(d["z"]) for d in data[0::2]]
    teacher, student, diff = (values(d["z"]) for d in data[1::2])
    layout = figures(at)[K + "overlay"]["layout"]
    return {"pictures": pictures, "teacher": teacher, "student": student, "diff": diff, "layout": layout}


def probe_pixels(probe: dict, k: int) -> np.ndarray:
    a = np.asarray(probe["images"][k], dtype=np.uint8)
    return a[..., None] if a.ndim == 2 else a


def expected(run, variant: str, epoch: int, example: int, t_layer: int, s_layer: int, head: int = -1,
             t_head: int = -1, rollout: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The teacher and student spatial maps the overlay must show, from the run's stored arrays."""
    probe = run.probe()
    size = probe["image_size"]
    t = run.read_attention("teacher")[example]
    s = run.read_attention(f"{variant}_e{epoch}")[example]
    return (image_maps.spatial_map(t, t_layer, t_head, probe["maps"]["teacher"], size, rollout=rollout),
            image_maps.spatial_map(s, s_layer, head, probe["maps"]["student"], size, rollout=rollout))


def assert_overlay_shows(at, run, variant, epoch, example, t_layer, s_layer, **kw):
    shown = overlay(at)
    t_exp, s_exp = expected(run, variant, epoch, example, t_layer, s_layer, **kw)
    for pic in shown["pictures"]:
        np.testing.assert_allclose(pic, probe_pixels(run.probe(), example)[..., 0])
    np.testing.assert_allclose(shown["teacher"], t_exp, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(shown["student"], s_exp, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(shown["diff"], s_exp - t_exp, rtol=1e-5, atol=1e-6)


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def cnn_store(cnn_image_run, monkeypatch):
    store, run_id = cnn_image_run
    monkeypatch.setenv("ADS_RUNS_DIR", str(store.root))
    return store.open(run_id)


@pytest.fixture
def vit_store(vit_image_run, monkeypatch):
    store, run_id = vit_image_run
    monkeypatch.setenv("ADS_RUNS_DIR", str(store.root))
    return store.open(run_id)


@pytest.fixture(scope="module")
def cross_family_root(cnn_image_run, vit_image_run, tmp_path_factory):
    """A CNN teacher → ViT student run assembled from the two real runs (same data, same probe images): the ViT
    run's students with the CNN run's teacher, and no mapped pairs (families differ)."""
    (c_store, c_id), (v_store, v_id) = cnn_image_run, vit_image_run
    root = tmp_path_factory.mktemp("runs_cross")
    dest = root / v_id
    shutil.copytree(v_store.open(v_id).path, dest)
    cnn = c_store.open(c_id)
    shutil.copy(cnn.path / "attention" / "teacher.npz", dest / "attention" / "teacher.npz")
    probe = json.loads((dest / "probe.json").read_text())
    c_probe = cnn.probe()
    assert probe["images"] == c_probe["images"]
    probe.update(families={"teacher": "cnn", "student": "vit"}, pairs=[], teacher_path=c_probe["teacher_path"],
                 teacher_layers=c_probe["teacher_layers"], teacher_heads=1,
                 maps={"teacher": c_probe["maps"]["teacher"], "student": probe["maps"]["student"]})
    (dest / "probe.json").write_text(json.dumps(probe))
    return root, v_id


@pytest.fixture
def cross_store(cross_family_root, monkeypatch):
    root, run_id = cross_family_root
    monkeypatch.setenv("ADS_RUNS_DIR", str(root))
    return RunStore(root).open(run_id)


# ---- the figures, as pure functions -----------------------------------------------------------------------
def test_overlay_triptych_draws_the_picture_under_each_map():
    picture = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    teacher = np.full((8, 8), 1 / 64)
    student = np.zeros((8, 8))
    student[2:4, 2:4] = 0.25
    fig = fig_images.overlay_triptych(picture, teacher, student, titles=("teacher\nlayer 1", "kd", "diff"),
                                      patches=(4, 4))
    data = fig.data
    assert [d.name for d in data] == ["picture", "teacher\nlayer 1", "picture", "kd", "picture", "diff"]
    for d in data[0::2]:
        np.testing.assert_array_equal(d.z, picture)
    np.testing.assert_allclose(data[5].z, student - teacher)
    layout = fig.layout
    assert layout.coloraxis.cmin == pytest.approx(1 / 64) and layout.coloraxis.cmax == pytest.approx(0.25)
    assert layout.coloraxis2.cmin == -layout.coloraxis2.cmax
    assert layout.yaxis.scaleanchor == "x" and not layout.xaxis.showticklabels
    assert len(layout.shapes) == 3 * 2                      # one patch line each way in every panel
    assert "<b>teacher</b><br>layer 1" in [a.text for a in layout.annotations]
    rgb = np.stack([picture] * 3, -1)
    np.testing.assert_allclose(fig_images.overlay_triptych(rgb, teacher, student).data[0].z, picture)


def test_overlay_reading_says_where_each_looks_and_how_far_apart():
    teacher = np.zeros((9, 9))
    teacher[0:3, 0:3] = 1 / 9
    student = np.zeros((9, 9))
    student[6:9, 6:9] = 1 / 9
    lines = fig_images.overlay_reading(teacher, student, "kd", before=teacher)
    assert lines[0] == ("The teacher looks most at the top left (100% of its map), kd at the bottom right (100% of "
                        "its map).")
    assert "0.693" in lines[-1] and "before training" in lines[-1] and "further from" in lines[-1]
    even = np.full((9, 9), 1 / 81)
    assert "nearly even" in fig_images.overlay_reading(even, even)[0]
    assert "kd spreads its map nearly evenly" in fig_images.overlay_reading(teacher, even, "kd")[0]


# ---- probe images --------------------------------------------------------------------------------------
def test_cnn_run_shows_where_each_model_looks(cnn_store):
    run, probe = cnn_store, cnn_store.probe()
    at = page()
    variant = at.radio(key=K + "student").value
    assert variant != probe["reference"]
    epochs = run.attention_epochs(variant)
    assert at.select_slider(key=K + "epoch").value == epochs[-1]
    t_layer, s_layer = probe["pairs"][-1]                   # the deepest mapped pair first
    assert at.selectbox(key=K + "student_layer").value == s_layer
    assert at.selectbox(key=K + "teacher_layer").value == t_layer
    assert not at.get("toggle")                             # no heads and no rollout for CNNs
    assert_overlay_shows(at, run, variant, epochs[-1], 0, t_layer, s_layer)
    shown = overlay(at)
    assert shown["teacher"].shape == tuple(probe["image_size"])
    layout = shown["layout"]
    assert layout["coloraxis"]["colorscale"] and layout["coloraxis2"]["cmid"] == 0     # one scale, then a diverging one
    assert layout["yaxis"]["scaleanchor"] == "x" and layout["xaxis"]["showticklabels"] is False
    assert set(figures(at)) == {K + "overlay", K + "heads"}
    heads = figures(at)[K + "heads"]["data"]
    assert len(heads) == 2 * (probe["teacher_layers"] + probe["student_layers"])     # picture + map per stage
    notice = texts(at.info)
    assert "What to notice" in notice and "Jensen-Shannon" in notice and "before training" in notice
    assert any(words in notice for words in ("looks most at", "look most at", "nearly even"))


def test_cnn_run_changes_epoch_example_and_pair(cnn_store):
    run, probe = cnn_store, cnn_store.probe()
    at = page()
    variant = at.radio(key=K + "student").value
    at.select_slider(key=K + "epoch").set_value(0)
    at.selectbox(key=K + "example").set_value(2)
    run_app(at)
    t_layer, s_layer = probe["pairs"][-1]
    assert_overlay_shows(at, run, variant, 0, 2, t_layer, s_layer)
    assert "before training" not in texts(at.info)          # epoch 0 is itself before training
    at.selectbox(key=K + "student_layer").set_value(0)
    run_app(at)
    mapped = {s: t for t, s in probe["pairs"]}
    assert at.selectbox(key=K + "teacher_layer").value == mapped.get(0, t_layer)
    assert_overlay_shows(at, run, variant, 0, 2, mapped.get(0, t_layer), 0)
    # the choices are in the URL, and a link with them opens the same view
    assert at.query_params["epoch"] == "0" and at.query_params["example"] == "2"
    again = page({"run": run.id, "epoch": "0", "example": "2", "layer": "0", "variant": variant})
    assert_overlay_shows(again, run, variant, 0, 2, mapped.get(0, t_layer), 0)


def test_vit_run_shows_heads_rollout_and_patch_maps(vit_store):
    run, probe = vit_store, vit_store.probe()
    at = page()
    variant = at.radio(key=K + "student").value
    last = run.attention_epochs(variant)[-1]
    t_layer, s_layer = probe["pairs"][-1]
    assert at.selectbox(key=K + "head").value == -1 and at.selectbox(key=K + "teacher_head").value == -1
    assert_overlay_shows(at, run, variant, last, 0, t_layer, s_layer)
    figs = figures(at)
    assert set(figs) == {K + "overlay", K + "heads", K + "patch_maps"}
    # every head of both chosen layers, [CLS] row over the picture
    assert len(figs[K + "heads"]["data"]) == 2 * (probe["teacher_heads"] + probe["student_heads"])
    # the patch-to-patch maps with their token labels
    patch = figs[K + "patch_maps"]["data"]
    tokens = probe["maps"]["student"]["tokens"]
    assert len(values(patch[0]["z"])) == len(tokens) and patch[0]["x"][0] == "[CLS]"
    t_full = run.read_attention("teacher")[0][t_layer].mean(0)
    np.testing.assert_allclose(values(patch[0]["z"]), t_full, rtol=1e-5, atol=1e-7)
    # one head, then the rollout
    at.selectbox(key=K + "head").set_value(1)
    run_app(at)
    if probe["head_rule"] == "direct":
        assert at.selectbox(key=K + "teacher_head").value == 1        # the compared teacher head follows
    assert_overlay_shows(at, run, variant, last, 0, t_layer, s_layer, head=1,
                         t_head=at.selectbox(key=K + "teacher_head").value)
    at.toggle(key=K + "rollout").set_value(True)
    run_app(at)
    assert at.selectbox(key=K + "head").disabled
    assert_overlay_shows(at, run, variant, last, 0, t_layer, s_layer, rollout=True)
    assert at.query_params["rollout"] == "1"


def test_cross_family_run_picks_each_side_freely(cross_store):
    run, probe = cross_store, cross_store.probe()
    at = page()
    variant = at.radio(key=K + "student").value
    last = run.attention_epochs(variant)[-1]
    assert at.selectbox(key=K + "teacher_layer").value == probe["teacher_layers"] - 1
    assert at.selectbox(key=K + "student_layer").value == probe["student_layers"] - 1
    assert at.selectbox(key=K + "head") is not None
    assert [s.key for s in at.selectbox if s.key == K + "teacher_head"] == []       # a CNN teacher has no heads
    assert_overlay_shows(at, run, variant, last, 0, probe["teacher_layers"] - 1, probe["student_layers"] - 1)
    at.selectbox(key=K + "teacher_layer").set_value(0)
    run_app(at)
    assert at.selectbox(key=K + "student_layer").value == probe["student_layers"] - 1
    assert_overlay_shows(at, run, variant, last, 0, 0, probe["student_layers"] - 1)
    assert {K + "overlay", K + "heads", K + "patch_map0"} == set(figures(at))


# ---- uploads -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("store_fixture", ["cnn_store", "vit_store"])
def test_an_uploaded_picture_runs_both_models_live(store_fixture, request):
    run = request.getfixturevalue(store_fixture)
    probe = run.probe()
    at = page()
    variant = at.radio(key=K + "student").value
    at.radio(key=K + "source").set_value("upload")
    run_app(at)
    assert "Choose a picture" in texts(at.info)
    picture = np.zeros((32, 32), dtype=np.uint8)
    picture[8:24, 14:18] = 255                               # a "1", larger than the run's 8×8 images
    at.file_uploader(key=K + "upload").set_value(("one.png", png(picture), "image/png"))
    run_app(at, timeout=LIVE_TIMEOUT)
    size = probe["image_size"]
    pixels = image_maps.read_image(png(picture), size, probe["channels"])
    teacher, student = image_maps.load_run_models(run, variant)
    (t_maps, t_probs), (s_maps, s_probs) = (image_maps.maps_on_image(m, pixels, size) for m in (teacher, student))
    t_layer, s_layer = probe["pairs"][-1]
    shown = overlay(at)
    np.testing.assert_allclose(shown["pictures"][0], pixels[..., 0])
    np.testing.assert_allclose(shown["teacher"], image_maps.spatial_map(t_maps, t_layer, -1, probe["maps"]["teacher"],
                                                                        size), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(shown["student"], image_maps.spatial_map(s_maps, s_layer, -1, probe["maps"]["student"],
                                                                        size), rtol=1e-4, atol=1e-6)
    said = texts(at.markdown)
    names = probe["label_names"]
    assert f"teacher: **{names[int(np.argmax(t_probs))]}** ({float(t_probs.max()):.0%})" in said
    assert f"**{names[int(np.argmax(s_probs))]}** ({float(s_probs.max()):.0%})" in said
    # inverting the picture runs the models on the negative
    at.checkbox(key=K + "invert").check()
    run_app(at, timeout=LIVE_TIMEOUT)
    np.testing.assert_allclose(overlay(at)["pictures"][0], 255 - pixels[..., 0])


def test_a_junk_upload_shows_the_error_and_keeps_the_choices(cnn_store):
    at = page()
    at.select_slider(key=K + "epoch").set_value(0)
    at.radio(key=K + "source").set_value("upload")
    run_app(at)
    at.file_uploader(key=K + "upload").set_value(("digit.png", b"this is not a picture", "image/png"))
    run_app(at, timeout=LIVE_TIMEOUT)
    assert "not a picture" in texts(at.error) and "PNG" in texts(at.error)
    assert K + "overlay" not in figures(at)
    at.radio(key=K + "source").set_value("probe")
    run_app(at)
    assert at.select_slider(key=K + "epoch").value == 0                # the choices made before are still there
    assert K + "overlay" in figures(at)
