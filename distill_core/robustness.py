"""Robustness of a finished run's models: its teacher and students under the attack of its kind (distill_core.attacks),
measured on its rebuilt test split and written to robustness.json.

The attack is PGD on the word embeddings (strategies.adversarial): every token's perturbation is at most epsilon
times the norm of its own embedding, found against each model separately by maximising its cross-entropy with the
true labels, in eval mode (no dropout). It is measured on the first `LIMIT` examples of the run's test split, in
split order, so every model answers the same examples.

    robustness.json  {"epsilons": [...], "steps": s, "n": examples, "split": "test", "attack": ATTACK,
                      "accuracy": {"teacher": [one per epsilon], <variant>: [...]}, "seconds": wall time,
                      "weights": "final" (the students' weights measured)}
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from .attacks import EPSILONS, IMAGE_EPSILONS, LIMIT, STEPS, check_settings, image_robustness_curves, robustness_curves
from .batching import encode
from .errors import RunStoreError
from .modality.text.task import TextTask
from .modality.vision.task import ImageTask
from .reopen import FinishedRun, reopen
from .store import Run
from .vocab import TEACHER

FILE = "robustness.json"


def rebuild_test_split(run: Run, tokenizer) -> tuple[list[list[int]], list[int]]:
    """The run's test split rebuilt from its config: token ids and labels, checked against the labels it recorded."""
    return _text_test_split(reopen(run), tokenizer)


def _text_test_split(fr: FinishedRun, tokenizer) -> tuple[list[list[int]], list[int]]:
    splits = fr.splits()
    ids, _ = encode(tokenizer, splits.test_texts, fr.config.data.max_length)
    return ids, list(splits.test_labels)


def _text_curves(fr: FinishedRun, models: dict, epsilons, steps: int, limit: int, progress) -> dict:
    """robustness_curves on the run's test texts."""
    tokenizer = fr.reader()
    ids, labels = _text_test_split(fr, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return robustness_curves(models, ids, labels, pad_id, torch.device("cpu"), epsilons, steps, limit, progress)


def _image_curves(fr: FinishedRun, models: dict, epsilons, steps: int, limit: int, progress) -> dict:
    """image_robustness_curves on the run's test images; the text default EPSILONS stands for IMAGE_EPSILONS."""
    splits = fr.splits()
    return image_robustness_curves(models, splits.test_images, list(splits.test_labels), torch.device("cpu"),
                                   IMAGE_EPSILONS if epsilons is EPSILONS else epsilons, steps, limit, progress)


_CURVES = {TextTask.kind: _text_curves, ImageTask.kind: _image_curves}     # the attack each kind of run is measured under


def run_robustness(run: Run, epsilons=EPSILONS, steps: int = STEPS, limit: int = LIMIT,
                   progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Measure a finished run's teacher and variants (final weights) on the first `limit` test examples, on the
    CPU, and write the record to the run's robustness.json. Returns the record. A text run is attacked on its word
    embeddings (by default at EPSILONS), an image run on its pixels (by default at IMAGE_EPSILONS); the test split is
    rebuilt from the run's config and checked against the labels it recorded."""
    check_settings(epsilons, steps, limit)
    if run.summary() is None:
        raise RunStoreError(f"run {run.id} has not finished: measure its robustness once it is done")
    fr = reopen(run)
    models = {TEACHER: fr.teacher(), **fr.students()}       # the first teacher only
    record = _CURVES[fr.kind.kind](fr, models, epsilons, steps, limit, progress)
    record["weights"] = fr.weights
    run.write_json(FILE, record)
    return record


def run_image_robustness(run: Run, epsilons=IMAGE_EPSILONS, steps: int = STEPS, limit: int = LIMIT,
                         progress: Callable[[str, int, int], None] | None = None) -> dict:
    """run_robustness for an image run: the teacher and every variant's final weights under pixel PGD."""
    reopen(run).require(ImageTask)
    return run_robustness(run, epsilons, steps, limit, progress)


