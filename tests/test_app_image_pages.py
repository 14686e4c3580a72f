"""The analysis pages on image runs the real engine wrote (a CNN run, a ViT run, and a CNN teacher with ViT students),
driven with Streamlit's AppTest: every page opens without an exception, and the Attributions page shows the
teacher's and a student's pixel attributions with their rank correlation and attention agreement."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app import report
from app_helpers import VIEWS, figures, open_page, run_app, texts, values
from conftest import tiny_image_config_dict
from distill_core import RunStore
from distill_core.modality.vision import attribution as ia
from distill_core.sweep import SweepStore
from distill_core.modality.vision.models import load_image_model

TIMEOUT = 90                 # the attributions page runs the (tiny) models on the CPU
PAGES = ["runs", "divergence", "accuracy", "compare", "sweep", "generated", "attributions"]
KINDS = ["cnn", "vit", "cross"]


@pytest.fixture(scope="session")
def cross_image_run(tmp_path_factory, cnn_image_run):
    """(store, run_id): a CNN teacher (the CNN run's, from the cache) and ViT students (baseline and kd)."""
    from distill_core import SessionConfig, run_session
    store = RunStore(tmp_path_factory.mktemp("runs_cross"))
    cfg = SessionConfig.from_dict(tiny_image_config_dict("cnn", image__student_family="vit"))
    return store, run_session(cfg, store)


@pytest.fixture
def runs(cnn_image_run, vit_image_run, cross_image_run, tmp_path, monkeypatch) -> dict[str, str]:
    """The three runs copied into one run store that the app reads: kind -> run id."""
    root = tmp_path / "runs"
    ids = {}
    for kind, (store, run_id) in zip(KINDS, (cnn_image_run, vit_image_run, cross_image_run)):
        shutil.copytree(store.root / run_id, root / run_id)
        ids[kind] = run_id
    monkeypatch.setenv("ADS_RUNS_DIR", str(root))
    return ids


def page(name: str, query: dict | None = None) -> AppTest:
    return open_page(VIEWS / f"{name}.py", query=query, default_timeout=TIMEOUT)


def probe_of(run_id: str) -> dict:
    return RunStore(_root()).open(run_id).probe()


def _root():
    import os
    return os.environ["ADS_RUNS_DIR"]


# ---- every page opens ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", PAGES)
def test_every_page_opens_on_an_image_run(runs, name, kind):
    at = page(name, {"run": runs[kind]})
    assert not at.error, texts(at.error)


def test_the_runs_are_what_the_tests_say(runs):
    families = {kind: probe_of(run_id)["families"] for kind, run_id in runs.items()}
    assert families == {"cnn": {"teacher": "cnn", "student": "cnn"}, "vit": {"teacher": "vit", "student": "vit"},
                        "cross": {"teacher": "cnn", "student": "vit"}}
    assert probe_of(runs["cross"])["pairs"] == [] and probe_of(runs["cross"])["variants"] == ["baseline", "kd"]


# ---- divergence ------------------------------------------------------------------------------------------
def test_divergence_says_why_a_cross_family_run_has_none(runs):
    at = page("divergence", {"run": runs["cross"]})
    assert "different families; no attention divergence is recorded" in texts(at.info)
    assert not at.get("plotly_chart")
    for kind in ("cnn", "vit"):
        at = page("divergence", {"run": runs[kind]})
        assert "divergence.curves" in figures(at) and "different families" not in texts(at.info)


def test_divergence_of_a_cnn_run_speaks_of_stage_maps_not_heads(cnn_image_run, tmp_path, monkeypatch):
    store, run_id = cnn_image_run
    shutil.copytree(store.root / run_id, tmp_path / "runs" / run_id)
    monkeypatch.setenv("ADS_RUNS_DIR", str(tmp_path / "runs"))
    captions = texts(page("divergence", {"run": run_id}).caption)
    assert "CNN maps: each mapped pair of stages" in captions and "one column: the stage's map" in captions
    assert "each student head is compared" not in captions and "compared heads" not in captions


# ---- accuracy and generated data -------------------------------------------------------------------------
def test_accuracy_and_generated_pages_speak_of_images(runs):
    at = page("accuracy", {"run": runs["cnn"]})
    assert "probe images" in texts(at.caption)
    assert "input's pixels are nudged" in texts(at.markdown)
    assert [b for b in at.button if b.key == "accuracy.measure_robustness"]      # pixel PGD (robustness.py)
    at = page("generated", {"run": runs["vit"]})
    assert "images no split took (`transfer.source: unused`)" in texts(at.info) and ".txt" not in texts(at.info)


@pytest.fixture(scope="session")
def generated_image_run(tmp_path_factory, cnn_image_run):
    """(store, run_id): the CNN setup with a variant trained on generated images (unused ones, augmented copies)."""
    from distill_core import SessionConfig, run_session
    store = RunStore(tmp_path_factory.mktemp("runs_generated"))
    cfg = tiny_image_config_dict("cnn", variants=[{"name": "baseline", "losses": {"ce": 1}},
                                                  {"name": "kd_gen", "losses": {"ce": .1, "logit_kd": .9},
                                                   "generated": True}],
                                 transfer={"source": "unused", "max_texts": 20, "copies": 1},
                                 train__epochs=1)
    return store, run_session(SessionConfig.from_dict(cfg), store)


def test_generated_page_shows_an_image_run_s_generated_images(generated_image_run, monkeypatch):
    store, run_id = generated_image_run
    monkeypatch.setenv("ADS_RUNS_DIR", str(store.root))
    at = page("generated", {"run": run_id})
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Unused images"] == "20" and metrics["Augmented copies"] == "200"
    assert "**kd&#95;gen**" in texts(at.markdown)
    fig = figures(at)["generated.pictures"]
    titles = [a["text"] for a in fig["layout"]["annotations"]]
    record = store.open(run_id).read_json("generated.json")
    originals = sum(e["original"] is not None for e in record["examples"])
    assert len(fig["data"]) == len(record["examples"]) + originals == len(titles)
    assert titles.count("original") == originals and any(t.startswith("unused → ") for t in titles)
    at.radio(key="generated.kind").set_value("augmented")
    run_app(at)
    assert len(figures(at)["generated.pictures"]["data"]) == 2 * originals


# ---- compare -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("a, b", [("cnn", "cnn"), ("cnn", "vit"), ("vit", "cnn"), ("cross", "cnn"),
                                  ("cnn", "cross"), ("cross", "cross"), ("vit", "vit")])
def test_compare_opens_on_image_runs(runs, a, b):
    at = page("compare", {"a_run": runs[a], "b_run": runs[b]})
    assert at.selectbox(key="compare.a_run").value == runs[a]
    assert at.selectbox(key="compare.b_run").value == runs[b]
    if "cross" in (a, b):
        assert "different families; no attention divergence is recorded" in texts(at.info)


def test_compare_draws_a_cnn_run_s_maps_over_the_picture(runs):
    at = page("compare", {"a_run": runs["cnn"], "b_run": runs["cnn"]})
    fig = figures(at)["compare.maps"]
    size = tuple(probe_of(runs["cnn"])["image_size"])
    heatmaps = [values(d["z"]) for d in fig["data"]]
    assert heatmaps and all(z.shape == size for z in heatmaps)       # pictures and maps, not (T, T) grids
    titles = [a["text"] for a in fig["layout"]["annotations"]]
    assert titles[-1] == "A − B" and titles[0].startswith("teacher")


# ---- the report ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_report_builds_for_image_runs(runs, kind):
    run = RunStore(_root()).open(runs[kind])
    html = report.build_report(run, report.default_heatmaps(run, [0, 1]))
    assert "<h1>" in html
    body = html[html.index("</head>"):]
    if kind == "cross":
        assert "different families" in body and not report.default_heatmaps(run)
    else:
        assert body.count('class="heatmap"') == 2 * (len(probe_of(runs[kind])["variants"]) - 1)
    assert "192 wide" not in body                           # the text student's shape is not an image model's


# ---- sweep ---------------------------------------------------------------------------------------------
def test_sweep_of_image_runs_opens(runs):
    root = RunStore(_root()).root
    sweeps = SweepStore(root)
    for kind in ("cnn", "cross"):
        record = sweeps.create({"name": kind}, [0, 1], kind)
        for seed in (0, 1):
            copy = f"{runs[kind]}-seed{seed}"
            shutil.copytree(root / runs[kind], root / copy)
            sweeps.record_run(record["id"], seed, copy)
        at = AppTest.from_file(str(VIEWS / "sweep.py"), default_timeout=TIMEOUT)
        at.session_state["sweep.selected"] = record["id"]
        run_app(at)
        assert "seeds done: 2 of 2" in texts(at.markdown)


# ---- attributions --------------------------------------------------------------------------------------
def _expected_rho(run_id: str, example: int, student: str, method: str) -> tuple[float, float]:
    """The rank correlation and attention agreement the page must show, computed here from the run's files."""
    run = RunStore(_root()).open(run_id)
    probe = run.probe()
    image = np.asarray(probe["images"][example], dtype=np.uint8)[..., None]
    teacher = load_image_model(probe["teacher_path"])
    rec = ia.explain_teacher_and_students(teacher, {student: load_image_model(str(run.model_dir(student)))}, image,
                                          method, n_steps=32)
    epoch = run.kept_weights(student)["final"]
    t_att = ia.recorded_spatial_attention(run.read_attention("teacher")[example], probe["maps"]["teacher"],
                                          probe["image_size"])
    s_att = ia.recorded_spatial_attention(run.read_attention(f"{student}_e{epoch}")[example],
                                          probe["maps"]["student"], probe["image_size"])
    return rec.comparisons[student]["spearman"], ia.attention_agreement(t_att, s_att)


@pytest.mark.parametrize("kind", KINDS)
def test_attributions_page_shows_both_maps_and_the_correlation(runs, kind):
    at = page("attributions", {"run": runs[kind], "example": "1"})
    assert "Pixel attributions" in texts(at.caption)
    methods = at.radio(key="attributions.method").options
    assert methods == (["Integrated Gradients", "Grad-CAM"] if kind == "cnn" else ["Integrated Gradients"])
    if kind != "cnn":
        assert "explained with Integrated Gradients only" in texts(at.caption)
    student = at.radio(key="attributions.student").value
    assert student == "kd"                                     # the first variant that is not the reference
    fig = figures(at)["attributions.image_maps"]
    titles = [a["text"] for a in fig["layout"]["annotations"]]
    assert titles == ["teacher", "kd", "teacher's attention", "kd's attention"]
    size = tuple(probe_of(runs[kind])["image_size"])
    assert len(fig["data"]) == 8 and all(values(d["z"]).shape == size for d in fig["data"])
    metrics = {m.label: m.value for m in at.metric}
    rho, agree = _expected_rho(runs[kind], 1, student, "ig")
    assert metrics["Attribution ρ"] == f"{rho:.2f}" and metrics["Attention agreement"] == f"{agree:.2f}"
    assert "Spearman ρ" in texts(at.info) and "Jensen-Shannon" in texts(at.info)
    table = at.dataframe[0].value
    assert list(table["model"])[0] == "teacher" and "attribution ρ vs teacher" in table.columns
    assert "convergence delta" in table.columns
    # the teacher's prediction is the class every model is explained towards
    assert "the teacher's prediction" in texts(at.markdown)


def test_attributions_page_grad_cam_and_other_student(runs):
    at = page("attributions", {"run": runs["cnn"], "example": "0"})
    at.radio(key="attributions.method").set_value("gradcam")
    at.radio(key="attributions.student").set_value("at")
    run_app(at)
    fig = figures(at)["attributions.image_maps"]
    assert [a["text"] for a in fig["layout"]["annotations"]][:2] == ["teacher", "at"]
    assert all((values(d["z"]) >= 0).all() for d in fig["data"])      # Grad-CAM after ReLU, attention, the picture
    assert "convergence delta" not in at.dataframe[0].value.columns
    rho, _ = _expected_rho(runs["cnn"], 0, "at", "gradcam")
    assert {m.label: m.value for m in at.metric}["Attribution ρ"] == f"{rho:.2f}"
    assert "Grad-CAM ranks the pixels" in texts(at.info)


def test_attributions_page_waits_for_an_upload(runs):
    at = page("attributions", {"run": runs["vit"]})
    at.radio(key="attributions.image_source").set_value("upload")
    run_app(at)
    assert "Upload an image" in texts(at.info)
    assert at.radio(key="attributions.student").value == "kd"       # the choices beside it stay
    assert not at.get("plotly_chart")

