"""Magnitude pruning with tensorflow-model-optimization: polynomial decay, fine-tune, strip."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras


def prune(
    model: keras.Model,
    train_data: tf.data.Dataset,
    steps_per_epoch: int,
    sparsity: float = 0.5,
    epochs: int = 2,
    lr: float = 1e-4,
    validation: tf.data.Dataset | None = None,
    class_weight: dict[int, float] | None = None,
) -> keras.Model:
    """Prune every prunable layer of ``model`` to ``sparsity`` while fine-tuning on ``train_data``
    (batched, e.g. :func:`training.augment.train_pipeline`), then strip the pruning wrappers.

    The schedule ramps sparsity from 0 to the target over the first 70% of fine-tuning steps,
    pruning every 50 steps, so the network recovers before the end.
    """
    steps = steps_per_epoch * epochs
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0, end_step=max(1, int(steps * 0.7)), frequency=max(1, min(50, steps // 10))
    )
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned.fit(
        train_data, epochs=epochs, validation_data=validation, class_weight=class_weight,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()], verbose=2,
    )
    return tfmot.sparsity.keras.strip_pruning(pruned)


def sparsity_of(model: keras.Model) -> float:
    """Fraction of zero weights among the kernels of Conv2D and Dense layers."""
    zeros = total = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            kernel = layer.kernel.numpy()
            zeros += int(np.sum(kernel == 0))
            total += kernel.size
    return zeros / total if total else 0.0
