"""A teacher is keyed by what it learned from: a session that asks for fewer training examples keeps the same
validation and test splits, and a teacher that learns from every example outside them (teacher.finetune_on: all)
is not fine-tuned again. Offline, no training."""
from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest

from distill_core import SessionConfig
from distill_core.config import DataConfig
from distill_core.modality.splits import in_teacher_order, split_parts, teacher_order
from distill_core.modality.text.data import load_splits
from distill_core.teacher import learned_from, teacher_cache_key, teacher_examples

from conftest import make_texts


def test_a_smaller_training_split_is_a_subset_and_keeps_validation_and_test():
    labels = np.random.default_rng(1).integers(0, 3, 6000)
    full = split_parts(labels, (3000, 500, 1500), 0, reference_train=3000)
    small = split_parts(labels, (400, 500, 1500), 0, reference_train=3000)
    assert np.array_equal(full.val, small.val) and np.array_equal(full.test, small.test)
    assert set(small.train.tolist()) < set(full.train.tolist()) and len(small.train) == 400
    assert np.array_equal(full.teacher, small.teacher)            # the teacher reads the same examples, in one order
    assert sorted(small.teacher.tolist()) == sorted(small.train.tolist() + small.extra.tolist())
    # the class shares hold in the smaller split too
    share = lambda idx: np.bincount(labels[idx], minlength=3) / len(idx)   # noqa: E731
    assert np.abs(share(small.train) - share(full.train)).max() < 0.01
    # at the reference size the split is the plain stratified one, and its teacher reads train then the rest
    assert teacher_order(full) is None
    order = teacher_order(small)
    both = small.train.tolist() + small.extra.tolist()
    assert in_teacher_order(small.train.tolist(), small.extra.tolist(), order) == full.teacher.tolist() == \
        [both[i] for i in order]
    # a larger training split than the reference moves validation (as it always did): its teacher is another
    assert not np.array_equal(split_parts(labels, (3500, 500, 1500), 0, reference_train=3000).val, full.val)


@pytest.fixture
def reviews(tmp_path):
    path = tmp_path / "reviews.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(make_texts(600, seed=3))
    return path


def splits_of(path, **data):
    return load_splits(DataConfig(source=str(path), val_size=50, test_size=100, **data))


def test_the_text_teacher_is_not_fine_tuned_again_for_fewer_training_examples(reviews):
    cfg = SessionConfig()
    big, small = splits_of(reviews, train_size=300), splits_of(reviews, train_size=120)
    assert big.val_texts == small.val_texts and big.test_texts == small.test_texts
    assert set(small.train_texts) < set(big.train_texts)
    key = lambda s, t=cfg.teacher: teacher_cache_key(t, s, 64)                  # noqa: E731
    assert key(big) == key(small)
    assert teacher_examples(cfg.teacher, big, big.train_texts, big.extra_texts) == \
        teacher_examples(cfg.teacher, small, small.train_texts, small.extra_texts)
    # what it learns from changes, so does the key: only the training split, another split seed, another label
    only_train = dataclasses.replace(cfg.teacher, finetune_on="train")
    assert key(big, only_train) != key(small, only_train)
    assert key(splits_of(reviews, train_size=120, split_seed=1)) != key(small)
    flipped = dataclasses.replace(small, extra_labels=[1 - y for y in small.extra_labels])
    assert learned_from(cfg.teacher, flipped) != learned_from(cfg.teacher, small)
    # the test split is not part of what it learned
    assert learned_from(cfg.teacher, dataclasses.replace(small, test_texts=small.test_texts[:10])) == \
        learned_from(cfg.teacher, small)


def test_an_image_teacher_is_not_trained_again_for_fewer_training_images():
    from distill_core.modality.vision.data import load_image_splits
    from distill_core.modality.vision.teacher import _teacher_training_data, image_teacher_key
    cfg = SessionConfig.from_dict({"task": "image", "data": {"source": "sklearn_digits", "val_size": 200,
                                                            "test_size": 400}, "teacher": {"source": "cnn"}})
    a = load_image_splits(dataclasses.replace(cfg.data, train_size=900))
    b = load_image_splits(dataclasses.replace(cfg.data, train_size=300))
    assert np.array_equal(a.test_images, b.test_images) and np.array_equal(a.val_images, b.val_images)
    assert np.array_equal(_teacher_training_data(cfg, a)[0], _teacher_training_data(cfg, b)[0])
    assert image_teacher_key(cfg, a) == image_teacher_key(cfg, b)
    trained_on_train = dataclasses.replace(cfg, teacher=dataclasses.replace(cfg.teacher, finetune_on="train"))
    assert image_teacher_key(trained_on_train, a) != image_teacher_key(trained_on_train, b)


def test_a_language_model_teacher_is_keyed_by_its_passages_not_the_students_split():
    from distill_core.modality.language_model.data import Passages, split_passages
    from distill_core.modality.language_model.teacher import teacher_key
    texts = [f"passage {i} " + " ".join(f"w{(i * 7 + j) % 50}" for j in range(30)) for i in range(80)]
    p = Passages(texts, [str(i) for i in range(80)], "passages")
    cfg = SessionConfig.from_dict({"task": "language_model"})
    a, b = (split_passages(p, (n, 10, 10), 0, 4, ["x"]) for n in (50, 20))
    assert a.fingerprint != b.fingerprint and a.test == b.test
    assert teacher_key(cfg, a) == teacher_key(cfg, b)


def test_a_tagging_teacher_is_not_fine_tuned_again_for_fewer_training_sentences():
    from distill_core.modality.tagging.data import load_tag_splits
    from distill_core.modality.tagging.teacher import learned_from
    cfg = SessionConfig.from_dict({"task": "tagging", "data": {"train_size": 1600, "val_size": 250, "test_size": 400}})
    a = load_tag_splits(cfg.data, cfg.tagging)
    b = load_tag_splits(dataclasses.replace(cfg.data, train_size=600), cfg.tagging)
    assert len(b.train_words) == 600 and a.test_words == b.test_words and a.val_words == b.val_words
    assert learned_from(cfg.teacher, a) == learned_from(cfg.teacher, b)
    assert learned_from(dataclasses.replace(cfg.teacher, finetune_on="train"), a) != \
        learned_from(dataclasses.replace(cfg.teacher, finetune_on="train"), b)


def test_a_translation_teacher_is_keyed_by_its_pairs_not_the_students_split():
    from distill_core.modality.translation.data import asked_sizes, DEFAULT_SIZES
    from distill_core.modality.translation.teacher import learned_from
    cfg = SessionConfig.from_dict({"task": "translation"})
    assert asked_sizes(cfg.data) == DEFAULT_SIZES
    assert asked_sizes(dataclasses.replace(cfg.data, train_size=1000, val_size=200, test_size=500)) == \
        (1000, *DEFAULT_SIZES[1:])
    assert asked_sizes(dataclasses.replace(cfg.data, train_size=1000)) == (1000, 500, 2500)   # set one, set all
    from distill_core.modality.translation.data import Pairs, split_pairs
    sources = [f"source {i} " + "w" * (i % 7) for i in range(300)]
    pairs = Pairs(sources, [s.upper() for s in sources], [str(i) for i in range(300)], "pairs", ("en", "fr"))
    a, b = (split_pairs(pairs, (n, 20, 40), 0, 4, ["x"]) for n in (200, 60))
    assert a.test_sources == b.test_sources and a.fingerprint != b.fingerprint
    assert learned_from(cfg, a) == learned_from(cfg, b)
