"""distill_core.reopen: a run written by the real engine, reopened as its config, rebuilt data, teachers and
students, for a text run and an image run, with the teacher where the run recorded it or beside the run."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from distill_core import RunStore, SessionConfig
from distill_core.analysis import load_run_models
from distill_core.errors import DataError, ModelError, RunStoreError
from distill_core.modality.vision.maps import load_run_models as load_image_run_models
from distill_core.modality import TextModality
from distill_core.modality.vision.modality import ImageModality
from distill_core.modality.registry import KINDS, TASKS, task_class
from distill_core.reopen import IMAGE, TEXT, FinishedRun, RunModels, reopen


def _copy(store_and_id, tmp_path) -> RunStore:
    store, run_id = store_and_id
    shutil.copytree(store.root / run_id, tmp_path / "runs" / run_id)
    return RunStore(tmp_path / "runs").open(run_id)


def _teacher_beside_the_run(run) -> None:
    """Copy the run's teacher into its folder and name it by a relative path in probe.json."""
    probe = run.probe()
    shutil.copytree(probe["teacher_path"], run.path / "teacher_copy")
    run.write_json("probe.json", {**probe, "teacher_path": "teacher_copy"})


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_kinds_are_keyed_by_the_modality_the_run_records():
    assert (TASKS["text"], TASKS["image"]) == (TEXT, IMAGE)
    assert KINDS == ("text", "image", "tagging", "translation", "language_model")
    assert task_class("text") is TEXT
    assert (TEXT.saved_as, IMAGE.saved_as) == (TextModality.saved_as, ImageModality.saved_as)


def test_a_text_run_reopens(finished_run):
    store, run_id = finished_run
    run = store.open(run_id)
    fr = reopen(run)
    assert isinstance(fr, FinishedRun) and fr.kind is TEXT and fr.weights == "final"
    assert isinstance(fr.config, SessionConfig) and fr.config.data.max_length == fr.max_length == 16
    assert fr.teacher_path() == run.teacher_dir() and fr.teacher_path().is_absolute()
    splits = fr.splits()
    assert list(splits.test_labels) == run.predictions()["labels"]
    task = fr.task()
    assert isinstance(task, TextModality) and task.size("train") == 0
    assert task.probe_record()["labels"] == run.probe()["labels"]
    assert fr.reader() is task.tokenizer
    assert fr.variants() == ["baseline", "distilled"]
    rm = fr.run_models()
    assert isinstance(rm, RunModels) and list(rm.models) == ["teacher", *fr.variants()]
    assert rm.loaded == {v: {"weights": "final", "epoch": 2} for v in fr.variants()}
    assert fr.student("distilled") is rm.models["distilled"]          # loaded once
    again = load_run_models(run)
    assert list(again.models) == list(rm.models) and again.label_names == rm.label_names
    assert all(_same_weights(again.models[k], rm.models[k]) for k in rm.models)


def test_a_text_run_finds_a_teacher_given_by_a_relative_path(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    original = reopen(run).teacher()
    _teacher_beside_the_run(run)
    shutil.rmtree(run.reader_dir(TEXT.saved_as))           # the tokenizer now comes from the teacher's folder
    fr = reopen(run)
    assert fr.teacher_path() == run.path / "teacher_copy"
    assert _same_weights(fr.teacher(), original)
    probe = run.probe()
    tokens = fr.reader().convert_ids_to_tokens(fr.task().probe_ids[0])
    assert tokens == probe["tokens"][0]


def test_a_text_run_whose_data_changed_cannot_be_rebuilt(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    predictions = run.predictions()
    run.write_json("predictions.json", {**predictions, "labels": [1 - y for y in predictions["labels"]]})
    with pytest.raises(DataError, match=rf"^the test split of run {run.id} cannot be rebuilt: its data \(.*\) "
                                        r"changed since the run; restore it or run a new session$"):
        reopen(run).splits()
    run.write_json("predictions.json", predictions)
    run.write_json("probe.json", {**run.probe(), "labels": [1 - y for y in run.probe()["labels"]]})
    with pytest.raises(DataError, match="the probe examples of run .* cannot be rebuilt"):
        reopen(run).task()


def test_reopen_refuses_what_it_cannot_reopen(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    with pytest.raises(ValueError, match="weights must be one of"):
        reopen(run, "middle")
    with pytest.raises(RunStoreError, match="kept no weights for variant nope"):
        reopen(run).student("nope")
    with pytest.raises(ModelError, match="not an image run"):
        reopen(run).require(IMAGE)
    probe = run.probe()
    run.write_json("probe.json", {**probe, "modality": "audio"})
    with pytest.raises(ModelError, match="reads audio inputs"):
        reopen(run)
    run.write_json("probe.json", {**probe, "teacher_path": str(tmp_path / "gone")})
    with pytest.raises(ModelError, match="no longer at"):
        reopen(run).teacher()
    (run.path / "probe.json").unlink()
    with pytest.raises(RunStoreError, match="no probe.json"):
        reopen(run)


def test_an_image_run_reopens_with_a_teacher_beside_it(cnn_image_run, tmp_path):
    store, run_id = cnn_image_run
    fr = reopen(store.open(run_id))
    assert fr.kind is IMAGE and fr.reader() is None
    task = fr.task()
    assert isinstance(task, ImageModality)
    assert list(fr.splits().test_labels) == fr.run.predictions()["labels"]
    students = fr.students()
    assert list(students) == fr.variants() and all(not m.training for m in students.values())

    run = _copy(cnn_image_run, tmp_path)
    _teacher_beside_the_run(run)
    moved = reopen(run)
    assert moved.teacher_path() == run.path / "teacher_copy"
    assert _same_weights(moved.teacher(), fr.teacher())
    variant = fr.variants()[-1]
    teacher, student = load_image_run_models(run, variant)
    assert _same_weights(teacher, fr.teacher()) and _same_weights(student, students[variant])
    x = torch.as_tensor(np.zeros((1, 1, *task.images["test"].shape[1:3]), dtype=np.float32))
    with torch.no_grad():
        assert torch.equal(teacher(pixel_values=x).logits, fr.teacher()(pixel_values=x).logits)


def test_an_image_run_whose_images_changed_cannot_be_rebuilt(cnn_image_run, tmp_path):
    run = _copy(cnn_image_run, tmp_path)
    predictions = run.predictions()
    run.write_json("predictions.json", {**predictions, "labels": list(reversed(predictions["labels"]))})
    with pytest.raises(DataError, match=rf"^the test split of run {run.id} cannot be rebuilt: its images "
                                        r"\(sklearn_digits\) changed since the run; restore them or run a new "
                                        r"session$"):
        reopen(run).splits()
