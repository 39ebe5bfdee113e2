"""The de-confounded training input: sampling, augmentations and targets, each switched by a flag.

One pipeline per run, built from the training split (images, labels, sources) and a
:class:`Recipe`: film indices (shuffled, or source x class balanced, :mod:`training.sampling`) ->
batch -> synthetic markers (:mod:`training.markers`) -> the usual augmentation
(:func:`training.augment.make_augment`) -> scanner effects (:mod:`training.scanner_aug`) -> the
targets: ``(image, label, weight)`` (the label a soft distillation target when there is a teacher), or for the source-adversarial wrapper
(:mod:`training.adversarial`) ``({image, class_onehot}, {classifier, source}, weight)``. Without
balanced sampling the weight is the inverse class frequency (the class weights of today's
recipe); with it, 1 (every class is drawn equally often). The stream is endless; an epoch is
``steps_per_epoch(N, batch_size)`` batches.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

BALANCE = ("none", "cells", "sqrt")


@dataclass(frozen=True)
class Recipe:
    """The de-confounding switches of a run (all off: today's recipe)."""

    balance: str = "none"
    scanner_aug: bool = False
    markers: bool = False
    adversarial: float = 0.0  # gradient-reversal strength; 0 = no adversarial head


def steps_per_epoch(n: int, batch_size: int) -> int:
    return int(np.ceil(n / batch_size))


def source_ids(sources: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Index of each film's source among the sorted training sources (``-`` for none)."""
    names = sorted({s or "-" for s in sources})
    lookup = {name: i for i, name in enumerate(names)}
    return np.array([lookup[s or "-"] for s in sources], dtype=np.int64), names


def train_dataset(
    x: np.ndarray,
    y: np.ndarray,
    sources: Sequence[str],
    labels: Sequence[str],
    recipe: Recipe,
    batch_size: int,
    seed: int,
    hflip: bool = False,
    geometric: bool = True,
    soft: np.ndarray | None = None,
) -> tf.data.Dataset:
    """The endless, batched, augmented training stream of a run; see the module docstring.

    ``soft`` (N, C), distillation targets (:mod:`training.distill`), replaces the label of each
    film (the class weight still follows the hard label ``y``).
    """
    import tensorflow as tf  # here, not at import: `python -m training --help` reads BALANCE without TensorFlow

    from training import augment, markers, sampling, scanner_aug
    from training.selection import cell_names

    if recipe.balance not in BALANCE:
        raise ValueError(f"unknown balance {recipe.balance!r}: choose from {BALANCE}")
    n_classes = len(labels)
    images = tf.constant(x)
    targets = tf.constant(y.astype(np.int64))
    soft_t = tf.constant(soft.astype(np.float32)) if soft is not None else None
    src, _ = source_ids(sources)
    source_t = tf.constant(src)
    if recipe.balance == "none":
        weights = augment.class_weights(y, n_classes)
        class_w = np.array([weights[i] for i in range(n_classes)])
        indices = tf.data.Dataset.range(len(x)).shuffle(len(x), seed=seed, reshuffle_each_iteration=True).repeat()
    else:
        class_w = np.ones(n_classes)
        indices = sampling.balanced_indices(y, cell_names(y, sources, labels), sampling.POWERS[recipe.balance], seed)
    class_w_t = tf.constant(class_w, tf.float32)
    base = augment.make_augment(x.shape[1:3], seed, hflip, geometric)
    rng = tf.random.Generator.from_seed(seed + 7919)
    bank = tf.constant(markers.stamp_bank(x.shape[1], seed=seed)) if recipe.markers else None

    def make_batch(idx):
        batch = tf.gather(images, idx)
        if bank is not None:
            batch = markers.burn_markers(batch, bank, rng)
        batch = base(batch)
        if recipe.scanner_aug:
            batch = scanner_aug.scanner_augment(batch, rng)
        label = tf.gather(targets, idx)
        weight = tf.gather(class_w_t, label)
        if recipe.adversarial <= 0:
            return batch, (label if soft_t is None else tf.gather(soft_t, idx)), weight
        inputs = {"image": batch, "class_onehot": tf.one_hot(label, n_classes)}
        return inputs, {"classifier": label, "source": tf.gather(source_t, idx)}, weight

    return indices.batch(batch_size, drop_remainder=True).map(make_batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
