"""Scanner-style augmentation (``--scanner-aug``): what another hospital's detector and export do.

Works on batches of preprocessed images (B, H, W, 1) float32 in [0, 1] inside the tf.data
pipeline, each effect drawn per image with its own probability: gamma, a random intensity
window, blur or sharpening (unsharp mask), Gaussian noise, JPEG recompression, down-and-up
sampling, and random border crops (each side cut by up to 12 %, resized back, so the framing and
aspect change) or a constant collimator-like frame. The output keeps the shape and stays in
[0, 1].
"""
from __future__ import annotations

import tensorflow as tf

_BLUR = (1.0 / 16, 4.0 / 16, 6.0 / 16, 4.0 / 16, 1.0 / 16)  # binomial kernel; a tuple, not a tensor: no TF op at import (multi-worker needs none before its strategy)


def scanner_augment(images: tf.Tensor, rng: tf.random.Generator) -> tf.Tensor:
    """Apply the scanner effects to a batch; see the module docstring."""
    n = tf.shape(images)[0]
    size = tf.shape(images)[1:3]

    def chance(p):
        return rng.uniform([n, 1, 1, 1]) < p

    gamma = tf.exp(rng.uniform([n, 1, 1, 1], -0.4, 0.4))
    images = tf.where(chance(0.5), tf.pow(tf.maximum(images, 1e-6), gamma), images)
    low = rng.uniform([n, 1, 1, 1], 0.0, 0.15)
    high = rng.uniform([n, 1, 1, 1], 0.85, 1.0)
    images = tf.where(chance(0.4), (images - low) / (high - low), images)
    images = tf.clip_by_value(images, 0.0, 1.0)
    amount = rng.uniform([n, 1, 1, 1], -1.0, 1.5)  # -1: full blur, 0: unchanged, > 0: sharpened
    images = tf.where(chance(0.5), images + amount * (images - _blur(images)), images)
    images = tf.where(chance(0.4), images + rng.normal(tf.shape(images), stddev=1.0) * rng.uniform([n, 1, 1, 1], 0.0, 0.04), images)
    images = tf.clip_by_value(images, 0.0, 1.0)
    images = _border_crop(images, chance(0.4)[:, 0, 0, 0], rng, size)
    images = _frame(images, chance(0.15), rng)
    flags = tf.concat([chance(0.3)[:, 0, 0, :], chance(0.3)[:, 0, 0, :]], axis=1)
    quality = rng.uniform([n], 25.0, 90.0)
    scale = rng.uniform([n], 0.35, 0.9)
    images = tf.map_fn(
        lambda args: _per_image(args[0], args[1], args[2], args[3], size),
        (images, flags, quality, scale),
        fn_output_signature=tf.float32,
    )
    return tf.clip_by_value(images, 0.0, 1.0)


def _blur(images: tf.Tensor) -> tf.Tensor:
    blur = tf.constant(_BLUR)
    kernel = tf.reshape(blur, [5, 1, 1, 1]) * tf.reshape(blur, [1, 5, 1, 1])
    return tf.nn.conv2d(tf.pad(images, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="SYMMETRIC"), kernel, 1, "VALID")


def _border_crop(images: tf.Tensor, apply: tf.Tensor, rng: tf.random.Generator, size: tf.Tensor) -> tf.Tensor:
    n = tf.shape(images)[0]
    cut = rng.uniform([n, 4], 0.0, 0.12) * tf.cast(apply, tf.float32)[:, None]
    boxes = tf.stack([cut[:, 0], cut[:, 1], 1.0 - cut[:, 2], 1.0 - cut[:, 3]], axis=1)
    return tf.image.crop_and_resize(images, boxes, tf.range(n), size)


def _frame(images: tf.Tensor, apply: tf.Tensor, rng: tf.random.Generator) -> tf.Tensor:
    """A constant border (black or white) of up to 8 % per side, like collimation or a scan frame."""
    n, h, w = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    width = rng.uniform([n, 4], 0.0, 0.08)
    rows = tf.cast(tf.range(h), tf.float32)[None, :, None, None] / tf.cast(h, tf.float32)
    cols = tf.cast(tf.range(w), tf.float32)[None, None, :, None] / tf.cast(w, tf.float32)
    inside = (
        (rows >= width[:, 0, None, None, None])
        & (rows < 1.0 - width[:, 1, None, None, None])
        & (cols >= width[:, 2, None, None, None])
        & (cols < 1.0 - width[:, 3, None, None, None])
    )
    value = tf.round(rng.uniform([n, 1, 1, 1]))
    return tf.where(apply & ~inside, value, images)


def _per_image(image: tf.Tensor, flags: tf.Tensor, quality: tf.Tensor, scale: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """JPEG recompression and down-and-up sampling, each when its flag is set."""
    image = tf.cond(
        flags[0],
        lambda: tf.image.adjust_jpeg_quality(image, tf.cast(quality, tf.int32)),
        lambda: image,
    )
    small = tf.maximum(tf.cast(tf.cast(size, tf.float32) * scale, tf.int32), 8)
    image = tf.cond(
        flags[1],
        lambda: tf.image.resize(tf.image.resize(image, small, method="area"), size, method="bilinear"),
        lambda: image,
    )
    return tf.ensure_shape(image, image.shape)
