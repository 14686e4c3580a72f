"""The notebook API (app/notebook.py) on a run the real engine wrote, and examples/quickstart.ipynb executed from top
to bottom in a Jupyter kernel on a tiny session, so that the lesson keeps running as the code changes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from app import notebook as studio
from app.figures import base as fig_base
from conftest import tiny_config_dict
from distill_core.analysis import attention_for_text, teacher_heads_for
from distill_core.errors import ConfigError
from distill_core.reopen import reopen

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = REPO / "examples" / "quickstart.ipynb"
PLOTLY = "application/vnd.plotly.v1+json"


@pytest.fixture(scope="module")
def nb_run(finished_run) -> studio.Run:
    store, run_id = finished_run
    return studio.open_run(run_id, store.root)


def panel_titles(fig) -> list[str]:
    return [fig_base.plain_label(a.text.replace("<b>", "").replace("</b>", "").replace("<br>", " "))
            for a in fig.layout.annotations]


def test_importing_the_api_does_not_import_streamlit():
    code = "import sys, app.notebook; sys.exit(1 if 'streamlit' in sys.modules else 0)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr or "app.notebook imported streamlit"


def test_summary_reads_the_run_as_the_accuracy_page_does(nb_run):
    summary = nb_run.stored.summary()
    table = nb_run.summary
    assert list(table["model"]) == ["teacher", "baseline student", "distilled student"]
    np.testing.assert_allclose(table["accuracy (%)"], [100 * summary["accuracy"][m]
                                                       for m in ("teacher", "baseline", "distilled")])
    assert table["± 95% (points)"].notna().all()
    assert table["McNemar p"].iloc[2] == pytest.approx(summary["paired"]["distilled"]["p"])
    page = nb_run._repr_html_()
    assert nb_run.id in page and "<table" in page and "distilled student" in page and "(the reference)" in page
    assert nb_run.variants == ["baseline", "distilled"] and nb_run.reference == "baseline"
    assert list(nb_run.examples["text"]) == nb_run.probe["texts"]


def test_maps_show_the_stored_maps_under_the_head_rule(nb_run):
    probe, run = nb_run.probe, nb_run.stored
    t_layer, s_layer = probe["pairs"][1]
    fig = nb_run.maps(layer=s_layer, head=1, example=2, variant="baseline", epoch=1)
    assert [d.type for d in fig.data] == ["heatmap"] * 3
    assert [fig_base.plain_label(x) for x in fig.data[0].x] == probe["tokens"][2]
    heads = teacher_heads_for(1, probe["head_rule"], probe["teacher_heads"], probe["student_heads"])
    teacher = run.read_attention("teacher")[2][t_layer][heads].mean(0)
    student = run.read_attention("baseline_e1")[2][s_layer][1]
    np.testing.assert_allclose(fig.data[0].z, teacher, rtol=1e-6)
    np.testing.assert_allclose(fig.data[1].z, student, rtol=1e-6)
    np.testing.assert_allclose(fig.data[2].z, student - teacher, rtol=1e-5, atol=1e-6)
    titles = panel_titles(fig)
    assert titles[0].startswith(f"teacher L{t_layer}") and "averaged" in titles[0]
    assert titles[1].startswith(f"baseline L{s_layer}") and "head 1" in titles[1] and "epoch 1" in titles[1]
    assert "Probe example #2" in fig.layout.title.text
    # the defaults: the first mapped pair, head 0, the distilled student at its last epoch
    t0, s0 = probe["pairs"][0]
    default = nb_run.maps()
    assert panel_titles(default)[1].startswith(f"distilled L{s0}") and "epoch 2" in panel_titles(default)[1]
    averaged = nb_run.maps(head=studio.ALL_HEADS)
    np.testing.assert_allclose(averaged.data[1].z, run.read_attention("distilled_e2")[0][s0].mean(0), rtol=1e-6)
    np.testing.assert_allclose(averaged.data[0].z, run.read_attention("teacher")[0][t0].mean(0), rtol=1e-6)


def test_maps_for_a_typed_sentence_run_the_runs_models(nb_run):
    probe = nb_run.probe
    t_layer, s_layer = probe["pairs"][0]
    fig = nb_run.maps_for("a wonderful clever film", layer=s_layer, head=0)
    assert [fig_base.plain_label(x) for x in fig.data[0].x] == ["[CLS]", "a", "wonderful", "clever", "film", "[SEP]"]
    _, maps, _ = attention_for_text(reopen(nb_run.stored).run_models(), "a wonderful clever film")
    heads = teacher_heads_for(0, probe["head_rule"], probe["teacher_heads"], probe["student_heads"])
    np.testing.assert_allclose(fig.data[0].z, maps["teacher"][t_layer][heads].mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fig.data[1].z, maps["distilled"][s_layer][0], rtol=1e-5, atol=1e-6)
    assert "final weights (epoch 2)" in panel_titles(fig)[1]
    assert "teacher:" in fig.layout.title.text and "distilled student:" in fig.layout.title.text
    with pytest.raises(ValueError, match="type a sentence"):
        nb_run.maps_for("   ")


def test_heads_divergence_and_accuracy_figures(nb_run):
    probe = nb_run.probe
    teacher, student = nb_run.heads(layer=probe["pairs"][0][1])
    assert len(teacher.data) == probe["teacher_heads"] and len(student.data) == probe["student_heads"]
    assert teacher.layout.coloraxis.cmax == student.layout.coloraxis.cmax          # one colour scale for both
    curves = nb_run.divergence()
    assert {t.name for t in curves.data} == {"baseline student", "distilled student"}
    assert [a.text for a in curves.layout.annotations] == [f"teacher L{t} → student L{s}" for t, s in probe["pairs"]]
    assert len(nb_run.divergence(metric="mse", per_head=True).data) > len(curves.data)
    bars = nb_run.accuracy()
    assert bars.layout.title.text.startswith("Test accuracy") and bars.data[0].type == "bar"
    assert [fig_base.plain_label(x) for x in bars.data[0].x] == ["baseline student", "distilled student"]
    diff = nb_run.difference()
    assert diff.layout.title.text.startswith("Difference from the baseline student")
    assert list(diff.data[0].y) == ["distilled student"]


@pytest.mark.parametrize("choice, words", [
    (dict(layer=9), "student layer 9 is out of range: the student has 2 layers"),
    (dict(head=5), "student head 5 is out of range: each student layer has 2 heads"),
    (dict(variant="kd"), "no variant 'kd'; its variants are baseline, distilled"),
    (dict(example=99), "example 99 is out of range"),
    (dict(epoch=7), "no attention maps of epoch 7; its recorded epochs are 0, 1, 2"),
    (dict(teacher_layer=4), "teacher layer 4 is out of range: the teacher has 4 layers"),
])
def test_a_choice_the_run_does_not_have_says_what_it_has(nb_run, choice, words):
    with pytest.raises(studio.NotebookError, match=words):
        nb_run.maps(**choice)


def test_other_kinds_of_run_name_what_the_notebook_draws(finished_run, tmp_path):
    import shutil
    store, run_id = finished_run
    shutil.copytree(store.root / run_id, tmp_path / run_id)
    probe = json.loads((tmp_path / run_id / "probe.json").read_text())
    (tmp_path / run_id / "probe.json").write_text(json.dumps({**probe, "modality": "tagging"}))
    run = studio.open_run(run_id, tmp_path)
    with pytest.raises(studio.NotebookError, match="token tagging run: the notebook draws the attention maps of text"):
        run.maps()
    assert run.accuracy().data                    # the scores and curves are every run's
    with pytest.raises(studio.NotebookError, match="metric must be one of kl, js, mse, cosine"):
        run.divergence(metric="l2")
    with pytest.raises(studio.NotebookError, match="records one kind of attention; leave kind out"):
        run.divergence(kind="cross")


def test_run_applies_settings_and_refuses_unknown_ones(tiny_teacher, tiny_csv, tmp_path, capsys):
    config = tiny_config_dict(tiny_teacher, tiny_csv)
    run = studio.run(config, runs_dir=tmp_path, train__epochs=1, settings={"train": {"seed": 3}, "name": "lesson"})
    saved = run.stored.config()
    assert (saved["train"]["epochs"], saved["train"]["seed"], saved["name"]) == (1, 3, "lesson")
    assert run.status == "done" and run.stored.attention_epochs("distilled") == [0, 1]
    out = capsys.readouterr()
    assert "train" in out.err and "epoch 1:" in out.out                          # a bar per phase, a line per epoch
    assert list(studio.runs(tmp_path)["run"]) == [run.id] and studio.open_run(runs_dir=tmp_path).id == run.id
    with pytest.raises(ConfigError, match="unknown setting 'train.epochz'"):
        studio.run(config, runs_dir=tmp_path, train__epochz=1)
    with pytest.raises(studio.NotebookError, match="config must be a path"):
        studio.run(42, runs_dir=tmp_path)
    cfg = studio.session_config(REPO / "examples" / "classroom.yaml",
                                variants__kd__losses={"ce": 0.5, "logit_kd": 0.5})
    assert cfg.variant_names == ["baseline", "distilled", "kd"] and cfg.train.epochs == 3


# ---- the quickstart notebook ------------------------------------------------------------------------------------
def test_quickstart_is_stored_clean_with_a_parameters_cell():
    nb = nbformat.read(QUICKSTART, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert all(not c.outputs and c.execution_count is None for c in code)


def test_the_setup_cell_finds_the_repository_from_examples():
    nb = nbformat.read(QUICKSTART, as_version=4)
    setup = next(c.source for c in nb.cells if c.cell_type == "code" and "sys.path" in c.source)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", setup + "\nprint(ROOT)"], cwd=REPO / "examples", env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(REPO)


def test_quickstart_runs_from_top_to_bottom(tiny_teacher, tiny_csv, tmp_path, monkeypatch):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config_dict(tiny_teacher, tiny_csv)))
    nb = nbformat.read(QUICKSTART, as_version=4)
    nb.cells[next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))].source = (
        f"CONFIG = {str(config)!r}\nRUNS_DIR = {str(tmp_path / 'runs')!r}\nSETTINGS = {{'train.epochs': 2}}")
    monkeypatch.setenv("ADS_RUNS_DIR", str(tmp_path / "runs"))      # the kernel inherits this process's environment
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("PYTHONPATH", raising=False)                  # the notebook finds the repository itself
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = {i: c.outputs for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    assert not [o for out in outputs.values() for o in out if o.output_type == "error"]
    shown = {i: {k for o in out for k in o.get("data", {})} for i, out in outputs.items()}
    source = {i: nb.cells[i].source for i in outputs}
    run_cell = next(i for i, s in source.items() if "studio.run(" in s)
    assert "text/html" in shown[run_cell]                            # the run's summary
    for call in ("run.maps(", "run.heads(", "run.divergence(", "run.accuracy()", "run.difference()",
                 "run.maps_for(", "same.maps("):
        cell = next(i for i, s in source.items() if call in s)
        assert PLOTLY in shown[cell], f"the cell with {call} drew no figure"
    assert len([o for o in outputs[next(i for i, s in source.items() if "run.heads(" in s)]
                if PLOTLY in o.get("data", {})]) == 2
    assert len(list((tmp_path / "runs").iterdir())) == 1


def test_the_epoch_line_of_a_run_without_divergence(capsys):
    """A session that records no attention divergence (a CNN teacher with a ViT student: js_mean None) still gets its
    epoch line on the progress bar of the command line and the notebook."""
    from types import SimpleNamespace

    from distill_core.session.callbacks import TqdmProgress
    TqdmProgress().on_epoch_end(SimpleNamespace(epoch=1), None, [
        {"student": "vit", "val_accuracy": 0.5, "js_mean": None},
        {"student": "kd", "val_accuracy": 0.75, "js_mean": 0.125}])
    out = capsys.readouterr().out
    assert "vit: val acc 0.500, JS –" in out and "kd: val acc 0.750, JS 0.1250" in out
