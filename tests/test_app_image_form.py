"""The New session form's Images mode, driven with AppTest: the image defaults, the families' variants and losses,
the engine's refusals on Start, uploaded zips of class folders, and a finished image run on the page. Nothing trains
in the form tests: starting is replaced by the `started` recorder (conftest)."""
from __future__ import annotations

import io
import json
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from app.new_session import keys, tasks, uploads, variants
from app_helpers import open_page, texts
from conftest import tiny_image_config_dict
from distill_core import SessionConfig
from distill_core.models import count_parameters
from distill_core.modality.vision.mobilenet import MobileNetConfig, MobileNetV2
from distill_core.modality.vision.models import build_cnn
from distill_core.objectives import LOSS_HELP

from test_app_session import PAGE, TIMEOUT, run_dirs

CNN_VARIANTS = ["baseline", "kd", "at", "kd_at"]
VIT_VARIANTS = ["baseline", "kd", "att_kl", "kd_att_kl"]


def run_page(query: dict | None = None):
    return open_page(PAGE, query, default_timeout=TIMEOUT)


def images(at):
    at.segmented_control(key=keys.MODALITY).set_value("image").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def start(at):
    at.button(key="new.start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def variant_names(at) -> list[str]:
    return [at.text_input(key=f"new.iv{i}.name").value for i in at.session_state[keys.IMAGE_VARIANTS.ids]]


def offered_losses(at, i: int = 0) -> list[str]:
    prefix = f"new.iv{i}.loss."
    return [c.key[len(prefix):] for c in at.checkbox if c.key and c.key.startswith(prefix)]


def png(value: int, size: int = 8) -> bytes:
    rng = np.random.default_rng(value)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def class_zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


TWO_CLASSES = {**{f"cats/c{k}.png": png(k) for k in range(4)}, **{f"dogs/d{k}.png": png(10 + k) for k in range(5)}}


# ---- the defaults ---------------------------------------------------------------------------------------------
def test_images_starts_a_cnn_session_on_mnist_with_the_four_cnn_variants(store, started):
    at = images(run_page())
    assert at.radio(key="new.img.teacher_kind").value == "cnn"
    assert at.radio(key="new.img.student_family").value == "cnn"
    assert at.selectbox(key="new.img.dataset").value == "mnist"
    assert variant_names(at) == CNN_VARIANTS
    assert offered_losses(at) == ["ce", "logit_kd", "hard_kd", "attention_transfer"]
    captions = texts(at.caption)
    assert LOSS_HELP["attention_transfer"] in captions and LOSS_HELP["attention_kl"] not in captions
    assert "5,000 images of 28×28 pixels (grey) in 10 classes" in captions      # check_image_source's answer
    im = SessionConfig.from_dict({"teacher": {"source": "cnn"}}).image
    ratio = count_parameters(build_cnn(1, 10, im.teacher_widths, im.teacher_blocks)) / \
        count_parameters(build_cnn(1, 10, im.student_widths, im.student_blocks))
    assert f"**{ratio:.1f}×** as many (on 28×28 images, 10 classes)" in captions     # teacher / student parameters
    assert not [k for k in (w.key or "" for w in at.selectbox) if k.startswith("new.iv") and "adv_" in k]
    assert not [c for c in at.checkbox if c.key and c.key.startswith("new.iv") and c.key.endswith("generated")]
    start(at)
    assert not at.error, texts(at.error)
    (cfg,) = started
    assert cfg.modality == "image"
    assert (cfg.data.source, cfg.teacher.source, cfg.image.student_family) == ("mnist", "cnn", "")
    assert (cfg.data.train_size, cfg.data.val_size, cfg.data.test_size) == (3500, 500, 1000)
    assert cfg.variant_names == CNN_VARIANTS
    assert cfg.variant("kd_at").losses == {"ce": 0.5, "logit_kd": 0.5, "attention_transfer": 100.0}
    assert cfg.objectives.temperature == 4.0
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr) == (6, 64, 2e-3)
    assert run_dirs(store) == [at.session_state[keys.ACTIVE_RUN]]


def test_text_mode_is_unchanged_after_a_visit_to_images(store, started):
    at = images(run_page())
    at.number_input(key="new.img.epochs").set_value(2).run()
    at.segmented_control(key=keys.MODALITY).set_value("text").run()
    assert at.number_input(key="new.epochs").value == SessionConfig().train.epochs
    start(at)
    (cfg,) = started
    assert cfg.to_dict() == SessionConfig().to_dict()
    at.segmented_control(key=keys.MODALITY).set_value("image").run()
    assert at.number_input(key="new.img.epochs").value == 2                  # each mode keeps its own values


# ---- families ---------------------------------------------------------------------------------------------
def test_a_vit_teacher_brings_the_vit_variants_and_attention_kl(store, started):
    at = images(run_page())
    at.radio(key="new.img.teacher_kind").set_value("vit").run()
    assert at.radio(key="new.img.student_family").value == "vit"              # the student follows the teacher
    assert variant_names(at) == VIT_VARIANTS
    offered = offered_losses(at)
    assert "attention_kl" in offered and "attention_transfer" not in offered
    assert at.number_input(key="new.img.patch").value == 4
    start(at)
    assert not at.error, texts(at.error)
    (cfg,) = started
    assert (cfg.teacher.source, cfg.image.student_family) == ("vit", "")
    assert cfg.variant_names == VIT_VARIANTS
    assert cfg.variant("kd_att_kl").losses == {"ce": 0.5, "logit_kd": 0.5, "attention_kl": 1.0}


def test_the_pretrained_mobilenet_teacher_keeps_a_cnn_student_and_attention_transfer(store, started):
    at = images(run_page())
    at.radio(key="new.img.teacher_kind").set_value("mobilenet").run()
    assert at.radio(key="new.img.student_family").value == "cnn"              # its family is the CNN's
    assert variant_names(at) == CNN_VARIANTS and "attention_transfer" in offered_losses(at)
    captions = texts(at.caption)
    assert "trained on ImageNet's 1.2 million photos" in captions
    n_teacher = count_parameters(MobileNetV2(MobileNetConfig(num_labels=10)))
    im = SessionConfig.from_dict({"teacher": {"source": "cnn"}}).image
    ratio = n_teacher / count_parameters(build_cnn(1, 10, im.student_widths, im.student_blocks))
    assert f"**{ratio:.1f}×** as many (on 28×28 images, 10 classes)" in captions
    assert at.number_input(key="new.img.teacher_input_size").value == 0
    at.number_input(key="new.img.teacher_input_size").set_value(160).run()
    start(at)
    assert not at.error, texts(at.error)
    (cfg,) = started
    assert (cfg.teacher.source, cfg.image.student_family, cfg.image.teacher_input_size) == ("mobilenet", "", 160)
    assert cfg.image.teacher_lr == 0.0 and cfg.image.lr_for("mobilenet") == 5e-4


def test_across_families_only_the_outputs_are_offered(store, started):
    at = images(run_page())
    at.radio(key="new.img.student_family").set_value("vit").run()
    assert variant_names(at) == ["baseline", "kd"]
    assert offered_losses(at, 1) == ["ce", "logit_kd", "hard_kd"]
    assert "Across families only the outputs are compared" in texts(at.caption)
    start(at)
    (cfg,) = started
    assert (cfg.teacher.source, cfg.image.student_family) == ("cnn", "vit")


def test_edited_variants_are_kept_without_the_losses_the_new_pair_cannot_compare(store, started):
    at = images(run_page())
    at.text_input(key="new.iv2.name").set_value("at_only").run()
    at.radio(key="new.img.teacher_kind").set_value("vit").run()
    assert variant_names(at) == ["baseline", "kd", "at_only", "kd_at"]
    assert "Unticked attention_transfer in at_only, attention_transfer in kd_at" in texts(at.info)
    start(at)
    assert not at.error, texts(at.error)
    (cfg,) = started
    assert cfg.variant("at_only").losses == {"ce": 1.0}


def test_a_patch_that_does_not_divide_the_images_is_refused_on_start(store, started):
    at = images(run_page())
    at.radio(key="new.img.teacher_kind").set_value("vit").run()
    at.number_input(key="new.img.patch").set_value(5).run()
    message = "image.patch 5 does not divide the image size 28×28"
    assert message in texts(at.warning)                                     # said before Start, too
    start(at)
    assert message in texts(at.error)
    assert started == [] and run_dirs(store) == []
    assert at.number_input(key="new.img.patch").value == 5


def test_a_missing_teacher_folder_is_refused_before_a_run_exists(store, started, tmp_path):
    at = images(run_page())
    at.radio(key="new.img.teacher_kind").set_value("local").run()
    at.text_input(key="new.img.teacher_path").set_value(str(tmp_path / "nowhere")).run()
    assert "is not a model folder" in texts(at.warning)
    start(at)
    assert "is not a model folder" in texts(at.error)
    assert started == [] and run_dirs(store) == []


# ---- data ------------------------------------------------------------------------------------------------------
def test_an_uploaded_zip_of_two_class_folders_is_checked_and_used(store, started):
    at = images(run_page())
    at.radio(key="new.img.data_kind").set_value("upload").run()
    at.file_uploader(key="new.img.upload").set_value(("pets.zip", class_zip(TWO_CLASSES), "application/zip")).run()
    assert not at.exception and not at.error, texts(at.error)
    (saved,) = (store.root / ".uploads").glob("*/*")
    assert saved.name == "pets.zip"
    captions = texts(at.caption)
    assert "9 images of 8×8 pixels (grey) in 2 classes" in captions
    assert "dogs: 5 (56%), cats: 4 (44%)" in captions
    start(at)
    assert not at.error, texts(at.error)
    (cfg,) = started
    assert cfg.data.source == str(saved) and cfg.modality == "image"
    assert run_dirs(store) == [at.session_state[keys.ACTIVE_RUN]]            # the upload folder is not a run


def test_a_zip_with_a_member_outside_its_folder_is_refused(store, started):
    at = images(run_page())
    at.number_input(key="new.img.epochs").set_value(3).run()
    at.radio(key="new.img.data_kind").set_value("upload").run()
    bad = class_zip({**TWO_CLASSES, "../x.png": png(99)})
    at.file_uploader(key="new.img.upload").set_value(("evil.zip", bad, "application/zip")).run()
    assert "zip evil.zip was refused" in texts(at.error) and "../x.png" in texts(at.error)
    start(at)
    assert "would land outside its folder" in texts(at.error)
    assert started == [] and run_dirs(store) == []
    assert at.number_input(key="new.img.epochs").value == 3                # nothing else is lost


def test_a_missing_image_folder_is_said_and_refused(store, started, tmp_path):
    at = images(run_page())
    at.radio(key="new.img.data_kind").set_value("local").run()
    at.text_input(key="new.img.data_path").set_value(str(tmp_path / "nowhere")).run()
    assert "does not exist" in texts(at.error)
    start(at)
    assert "does not exist" in texts(at.error) and started == []


def test_choosing_a_dataset_sets_its_split_sizes(store, started):
    at = images(run_page())
    at.selectbox(key="new.img.dataset").set_value("sklearn_digits").run()
    assert [at.number_input(key=f"new.img.{k}_size").value for k in ("train", "val", "test")] == [1097, 300, 400]
    assert "1,797 images of 8×8 pixels" in texts(at.caption)
    at.number_input(key="new.img.epochs").set_value(1).run()
    assert "the students train about 17 epochs, not 1" in texts(at.caption)     # train.min_steps: 18 steps an epoch
    start(at)
    assert not at.error, texts(at.error)
    (cfg,) = started
    assert cfg.data.source == "sklearn_digits" and cfg.data.train_size == 1097


# ---- defaults from a config file, and the form helpers ----------------------------------------------------------
def test_an_image_config_file_opens_the_images_form_and_round_trips(store, started, tmp_path, monkeypatch):
    path = tmp_path / "images.json"
    path.write_text(json.dumps(tiny_image_config_dict("vit", objectives={"temperature": 3.0, "layer_map": [1]})))
    monkeypatch.setenv("ADS_FORM_DEFAULTS", str(path))
    expected = SessionConfig.load(path)
    at = run_page()
    assert at.segmented_control(key=keys.MODALITY).value == "image"
    assert at.radio(key="new.img.layer_map_kind").value == "explicit"
    start(at)
    assert not at.error, texts(at.error)
    (cfg,) = started
    assert cfg.to_dict() == expected.to_dict()


@pytest.mark.parametrize("family", ["cnn", "vit", "mobilenet"])
def test_build_config_round_trips_an_image_config(family):
    cfg = SessionConfig.from_dict(tiny_image_config_dict(family, variants=[
        {"name": "baseline", "losses": {"ce": 1.0}},
        {"name": "kd", "losses": {"ce": 0.5, "logit_kd": 0.5}, "auto_weights": "magnitude",
         "schedules": {"logit_kd": "step@2"}}]))
    values = {k[4:]: v for k, v in tasks.initial_values(cfg).items()}
    assert tasks.build_config(values, cfg).to_dict() == cfg.to_dict()


def test_image_losses_follow_the_engine_rule():
    assert variants.image_losses("cnn", "cnn") == ("ce", "logit_kd", "hard_kd", "attention_transfer")
    assert variants.image_losses("vit", "vit") == ("ce", "logit_kd", "hard_kd", "attention_mse", "attention_kl",
                                            "attention_score_mse", "hidden_mse")
    assert variants.image_losses("cnn", "vit") == variants.image_losses("vit", "cnn") == ("ce", "logit_kd", "hard_kd")


def test_save_upload_takes_a_zip_only_where_asked(tmp_path):
    with pytest.raises(Exception, match="only .csv"):
        uploads.save_upload(tmp_path, "pets.zip", b"PK", 1)
    assert uploads.save_upload(tmp_path, "pets.zip", b"PK", 1, ["zip"]).name == "pets.zip"


# ---- a finished image run ------------------------------------------------------------------------------------
def test_a_finished_image_run_shows_its_results(cnn_image_run, tmp_path, monkeypatch):
    src, run_id = cnn_image_run
    shutil.copytree(src.root / run_id, tmp_path / "runs" / run_id)
    monkeypatch.setenv("ADS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("ADS_FORM_DEFAULTS", raising=False)
    at = run_page({"run": run_id})
    assert f"Run **{run_id}** finished" in texts(at.success)
    shown = {m.label for m in at.metric}
    assert {"teacher", "baseline student", "kd_at"} <= shown
    assert len(at.get("plotly_chart")) >= 3
    assert "attention on the probe images" in texts(at.caption)
