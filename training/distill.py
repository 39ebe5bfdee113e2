"""Distillation targets: a teacher model's soft outputs mixed with the hard labels.

A student (MLP-12) learns from ``alpha * onehot(label) + (1 - alpha) * teacher(film) ** (1 / T)``
(renormalised): the teacher's probabilities, softened by the temperature ``T``, carry which wrong
classes a film resembles, which a hard label does not (Hinton et al. 2015, offline and with soft
targets only). The teacher is a converted classifier (``.tflite`` with its card) run through the
runtime on each training film preprocessed by the teacher's own spec, once before training; the
targets are fixed per film, the student's augmentation is not shown to the teacher.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from edgecxr.core.model import Model
from training.data import DatasetError, Split
from training.multiroot import load_roots


def teacher_probabilities(teacher: Model, roots: Sequence[str | os.PathLike], student_train: Split, workers: int = 4) -> np.ndarray:
    """The teacher's uncalibrated probabilities (N, C) on the student's training films, in the student's film and label order."""
    data = load_roots(roots, teacher.card.preprocessing, workers=workers, splits=("train",))
    if sorted(data.labels) != sorted(teacher.labels):
        raise DatasetError(f"{teacher.path}: teacher labels {teacher.labels} differ from the data's {data.labels}")
    columns = [teacher.labels.index(label) for label in data.labels]
    split = data.splits["train"]
    if split.files != student_train.files:
        raise DatasetError(f"{teacher.path}: the teacher's training films differ from the student's (the same roots must give the same films)")
    return np.stack([teacher.predict_preprocessed(image, calibrated=False)[columns] for image in split.x])


def soft_targets(y: np.ndarray, teacher: np.ndarray, alpha: float, temperature: float) -> np.ndarray:
    """``alpha`` of the one-hot label plus ``1 - alpha`` of the teacher's probabilities at ``temperature``; rows sum to 1."""
    if not 0.0 <= alpha <= 1.0 or temperature <= 0:
        raise ValueError(f"distillation needs 0 <= alpha <= 1 and temperature > 0, got {alpha}, {temperature}")
    soft = np.clip(teacher.astype(np.float64), 1e-12, 1.0) ** (1.0 / temperature)
    soft /= soft.sum(axis=1, keepdims=True)
    onehot = np.eye(teacher.shape[1])[y]
    return (alpha * onehot + (1.0 - alpha) * soft).astype(np.float32)
