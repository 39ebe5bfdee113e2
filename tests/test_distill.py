"""Distillation targets: the teacher's outputs on the student's films, in the student's order, mixed with the labels."""
from __future__ import annotations

import os
from dataclasses import replace

import cv2
import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from edgecxr.core.model import load_model  # noqa: E402
from edgecxr.core.preprocess import preprocess  # noqa: E402
from test_recipe import SPEC, two_roots  # noqa: E402
from training.data import DatasetError  # noqa: E402
from training.distill import soft_targets, teacher_probabilities  # noqa: E402
from training.multiroot import load_roots  # noqa: E402


def test_soft_targets_mix_labels_and_softened_teacher():
    y = np.array([0, 2])
    teacher = np.array([[0.9, 0.09, 0.01], [0.2, 0.3, 0.5]])
    np.testing.assert_allclose(soft_targets(y, teacher, 1.0, 2.0), np.eye(3)[y])
    t1 = soft_targets(y, teacher, 0.0, 1.0)
    np.testing.assert_allclose(t1, teacher, rtol=1e-6)
    t2 = soft_targets(y, teacher, 0.0, 2.0)
    np.testing.assert_allclose(t2[0], np.sqrt(teacher[0]) / np.sqrt(teacher[0]).sum(), rtol=1e-6)  # p ** (1 / T)
    assert t2[0].max() < t1[0].max()  # softer
    half = soft_targets(y, teacher, 0.5, 2.0)
    np.testing.assert_allclose(half, 0.5 * np.eye(3)[y] + 0.5 * t2, rtol=1e-6)
    np.testing.assert_allclose(half.sum(1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        soft_targets(y, teacher, 1.5, 2.0)


def test_teacher_outputs_follow_the_students_films_and_labels(tmp_path, tiny_models):
    """The tiny teacher lists its labels in another order than the data's class folders: columns are reordered."""
    roots = list(two_roots(tmp_path))
    student = load_roots(roots, SPEC, verbose=False).splits["train"]
    teacher = load_model(tiny_models["float32"])
    assert teacher.labels != sorted(teacher.labels)
    data_labels = load_roots(roots, SPEC, verbose=False).labels
    probs = teacher_probabilities(teacher, roots, student)
    assert probs.shape == (len(student.files), 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    first = cv2.imread(student.files[0], cv2.IMREAD_GRAYSCALE)
    direct = teacher.predict_preprocessed(preprocess(first, teacher.card.preprocessing), calibrated=False)
    np.testing.assert_allclose(probs[0], [direct[teacher.labels.index(label)] for label in data_labels], atol=1e-6)


def test_teacher_with_other_labels_is_refused(tmp_path, tiny_models):
    roots = list(two_roots(tmp_path))
    student = load_roots(roots, SPEC, verbose=False).splits["train"]
    teacher = load_model(tiny_models["float32"])
    teacher.card = replace(teacher.card, labels=("a", "b", "c"))
    with pytest.raises(DatasetError, match="teacher labels"):
        teacher_probabilities(teacher, roots, student)
