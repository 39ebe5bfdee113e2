"""tf.data input pipelines with augmentation suited to chest X-rays.

Operates on images already preprocessed by :func:`edgecxr.core.preprocess.preprocess`, so the
augmentations perturb exactly what the model sees at inference. Horizontal flips are off by
default: a chest X-ray is not left-right symmetric (heart, aortic knob, side markers), so a
flipped film is not a plausible input; ``hflip=True`` turns them on for other data.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras


def train_pipeline(
    x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, hflip: bool = False, geometric: bool = True,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Shuffled, augmented, batched (image, label) pairs; one pass is one epoch.

    ``geometric=False`` keeps only intensity augmentation (brightness, contrast, noise): an MLP
    has no translation invariance, so crops and rotations mostly make its task harder.
    ``drop_remainder`` leaves out the last incomplete batch (multi-worker training needs whole batches).
    """
    augment = make_augment(x.shape[1:3], seed, hflip, geometric)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.map(lambda images, labels: (augment(images), labels), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def make_augment(size, seed: int, hflip: bool = False, geometric: bool = True):
    """The batch augmentation of :func:`train_pipeline`: a function images -> augmented images."""
    rotate = keras.layers.RandomRotation(7.0 / 360.0, fill_mode="constant", seed=seed)
    rng = tf.random.Generator.from_seed(seed)

    def augment(images):
        n = tf.shape(images)[0]
        if geometric:
            images = geometric_augment(images, n)
        if hflip:
            flip = rng.uniform([n, 1, 1, 1]) < 0.5
            images = tf.where(flip, tf.image.flip_left_right(images), images)
        brightness = rng.uniform([n, 1, 1, 1], -0.08, 0.08)
        contrast = rng.uniform([n, 1, 1, 1], 0.8, 1.2)
        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        images = (images - mean) * contrast + mean + brightness
        images += rng.normal(tf.shape(images), stddev=0.015)
        return tf.clip_by_value(images, 0.0, 1.0)

    def geometric_augment(images, n):
        """Random resized crop (80-100% area, aspect 0.9-1.1) and a rotation of up to 7 degrees."""
        scale = rng.uniform([n], 0.80, 1.0)
        aspect = rng.uniform([n], 0.9, 1.1)
        h = tf.minimum(tf.sqrt(scale * aspect), 1.0)
        w = tf.minimum(tf.sqrt(scale / aspect), 1.0)
        top = rng.uniform([n]) * (1.0 - h)
        left = rng.uniform([n]) * (1.0 - w)
        boxes = tf.stack([top, left, top + h, left + w], axis=1)
        images = tf.image.crop_and_resize(images, boxes, tf.range(n), size)
        return rotate(images, training=True)

    return augment


def eval_pipeline(x: np.ndarray, y: np.ndarray, batch_size: int, drop_remainder: bool = False) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """Inverse-frequency weights that average to 1 over the training set."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    return {i: float(len(y) / (n_classes * c)) if c else 0.0 for i, c in enumerate(counts)}
