"""The ``lungmask`` set in memory, and a tf.data pipeline that augments films and masks together.

``ROOT/manifest.csv`` lists ``image``, ``mask``, ``source``, ``patient_group`` and ``split``
(``train`` / ``val``, by patient). Films are preprocessed once with the runtime's
:func:`edgecxr.core.preprocess.preprocess` and the card's spec; masks are area-resized to the same
frame (soft values at the border, in [0, 1]). The originals stay available: Dice is measured on
them at the film's own size, as ``edgecxr lungs`` writes its masks.
"""
from __future__ import annotations

import csv
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf
import tf_keras as keras

from edgecxr.core.imageio import load_image
from edgecxr.core.preprocess import SpecLike, as_spec, preprocess


@dataclass
class LungSplit:
    """Films ``x`` (N, H, W, 1) and masks ``y`` (N, H, W, 1) in the model frame, float32 in [0, 1]."""

    x: np.ndarray
    y: np.ndarray
    files: list[str]  # image paths relative to the root
    sources: list[str]
    masks: list[np.ndarray]  # ground truth at the film's own size, bool


def manifest_rows(root: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of ``root/manifest.csv``, checked for the columns the lung model needs."""
    path = Path(root) / "manifest.csv"
    if not path.is_file():
        raise ValueError(f"{root}: no manifest.csv (needs image, mask, source, split columns)")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    missing = {"image", "mask", "source", "split"} - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"{path}: lacks columns {sorted(missing)}")
    return rows


def manifest_sha256(root: str | os.PathLike) -> str:
    return hashlib.sha256((Path(root) / "manifest.csv").read_bytes()).hexdigest()


def load_lungmask(root: str | os.PathLike, spec: SpecLike, splits=("train", "val"), workers: int = 4) -> dict[str, LungSplit]:
    """Decode and preprocess every film and mask of the given splits once."""
    root = Path(root)
    rows = manifest_rows(root)
    height, width = as_spec(spec).size

    def one(row: dict[str, str]):
        image = load_image(root / row["image"]).pixels
        mask = cv2.imread(str(root / row["mask"]), cv2.IMREAD_GRAYSCALE)
        if mask is None or mask.shape != image.shape:
            raise ValueError(f"{root / row['mask']}: missing, unreadable or not the size of its film")
        small = cv2.resize(mask.astype(np.float32) / 255.0, (width, height), interpolation=cv2.INTER_AREA)
        return preprocess(image, spec), small[:, :, None], mask > 127

    out = {}
    for name in splits:
        chosen = [r for r in rows if r["split"] == name]
        with ThreadPoolExecutor(workers) as pool:
            decoded = list(pool.map(one, chosen))
        out[name] = LungSplit(
            x=np.stack([d[0] for d in decoded]),
            y=np.stack([d[1] for d in decoded]),
            files=[r["image"] for r in chosen],
            sources=[r["source"] for r in chosen],
            masks=[d[2] for d in decoded],
        )
    return out


def train_pipeline(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> tf.data.Dataset:
    """Shuffled, augmented (film, mask) batches; one pass is one epoch.

    Geometry acts on film and mask together: a random crop of 75-100% of the area (aspect
    0.85-1.15, which also zooms out slightly when padded), rotation up to 10 degrees, shifts. No
    flips: a mirrored chest (heart on the right) is not a plausible film. Intensity acts on the
    film only: gamma 0.6-1.6, contrast, brightness, Gaussian blur or sharpening, noise.
    """
    size = x.shape[1:3]
    rotate = keras.layers.RandomRotation(10.0 / 360.0, fill_mode="constant", seed=seed)
    rng = tf.random.Generator.from_seed(seed)
    blur = tf.constant(cv2.getGaussianKernel(5, 1.2) @ cv2.getGaussianKernel(5, 1.2).T, tf.float32)[:, :, None, None]

    def augment(images, masks):
        n = tf.shape(images)[0]
        both = tf.concat([images, masks], axis=-1)
        scale = rng.uniform([n], 0.75, 1.1)
        aspect = rng.uniform([n], 0.85, 1.15)
        h, w = tf.sqrt(scale * aspect), tf.sqrt(scale / aspect)
        top = rng.uniform([n]) * (1.0 - h)
        left = rng.uniform([n]) * (1.0 - w)
        boxes = tf.stack([top, left, top + h, left + w], axis=1)
        both = tf.image.crop_and_resize(both, boxes, tf.range(n), size, extrapolation_value=0.0)
        both = rotate(both, training=True)
        images, masks = both[..., :1], both[..., 1:]
        gamma = tf.exp(rng.uniform([n, 1, 1, 1], np.log(0.6), np.log(1.6)))
        images = tf.pow(tf.clip_by_value(images, 1e-4, 1.0), gamma)
        smooth = tf.nn.conv2d(images, blur, 1, "SAME")
        sharpness = rng.uniform([n, 1, 1, 1], -1.0, 1.0)  # < 0 blurs, > 0 sharpens (unsharp mask)
        images = images + sharpness * (images - smooth)
        contrast = rng.uniform([n, 1, 1, 1], 0.7, 1.3)
        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        images = (images - mean) * contrast + mean + rng.uniform([n, 1, 1, 1], -0.1, 0.1)
        images += rng.normal(tf.shape(images), stddev=rng.uniform([], 0.0, 0.03))
        return tf.clip_by_value(images, 0.0, 1.0), tf.clip_by_value(masks, 0.0, 1.0)

    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).map(augment, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def eval_pipeline(x: np.ndarray, y: np.ndarray, batch_size: int) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).prefetch(tf.data.AUTOTUNE)
