"""Source x class balanced sampling of training films (``--balance {cells,sqrt}``).

Why sampling and not loss weights: a rare cell (e.g. ``nih/Normal``, 166 films) then appears in
nearly every batch, each time with fresh augmentation, instead of a few batches with a large
weight (high-variance gradients); the source-adversarial head also sees every collection in every
batch. How: every class gets the same share of draws (so no class weights are needed), and within
a class each ``source/class`` cell gets a share proportional to ``n ** power``: ``cells`` is
``power = 0`` (every cell of a class equally often), ``sqrt`` is ``power = 0.5`` (a compromise
that repeats tiny cells less). A cell with fewer than ``min_count`` films is weighted as if
linear below that size, so four films are not drawn as often as six hundred. An epoch is still
``ceil(N / batch_size)`` steps.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

POWERS = {"cells": 0.0, "sqrt": 0.5}


def cell_probabilities(y: np.ndarray, cells: np.ndarray, power: float, min_count: int = 20) -> np.ndarray:
    """Draw probability of each cell id (``cells`` are ids 0..K-1 per film; ``y`` its class)."""
    n_cells = int(cells.max()) + 1
    counts = np.bincount(cells, minlength=n_cells).astype(np.float64)
    cell_class = np.zeros(n_cells, dtype=np.int64)
    cell_class[cells] = y
    weight = np.where(counts >= min_count, counts**power, counts * float(min_count) ** (power - 1.0))
    weight[counts == 0] = 0.0
    probs = np.zeros(n_cells)
    classes = np.unique(y)
    for c in classes:
        members = cell_class == c
        members &= counts > 0
        probs[members] = weight[members] / weight[members].sum() / len(classes)
    return probs


def balanced_indices(y: np.ndarray, cell_names: Sequence[str], power: float, seed: int) -> tf.data.Dataset:
    """An endless stream of film indices, drawn per :func:`cell_probabilities`, shuffled within each cell."""
    _, cells = np.unique(np.asarray(cell_names), return_inverse=True)
    cells = cells.astype(np.int64)
    probs = cell_probabilities(np.asarray(y), cells, power)
    streams, weights = [], []
    for cell, p in enumerate(probs):
        members = np.flatnonzero(cells == cell)
        if p <= 0 or not len(members):
            continue
        ds = tf.data.Dataset.from_tensor_slices(members).shuffle(len(members), seed=seed + cell, reshuffle_each_iteration=True)
        streams.append(ds.repeat())
        weights.append(float(p))
    return tf.data.Dataset.sample_from_datasets(streams, weights=weights, seed=seed)
