"""The ``lungmask`` set in memory, and a tf.data pipeline that augments films and masks together.

``ROOT/manifest.csv`` lists ``image``, ``mask``, ``source``, ``patient_group`` and ``split``
(``train`` / ``val``, by patient). Films are preprocessed once with the runtime's
:func:`edgecxr.core.preprocess.preprocess` and the card's spec; masks are area-resized to the same
frame (soft values at the border, in [0, 1]). The originals stay available: Dice is measured on
them at the film's own size, as ``edgecxr lungs`` writes its masks.

Not every mask in ``lungmask`` outlines the lung fields: the 39 ``ieee`` masks of the
GeneralBlockchain project (the manifest's ``license`` column names each mask's project) outline
the whole thorax, mediastinum and diaphragm included (61-92% of the film; the V7 Labs and OpenIST
lung masks cover 9-59%). :data:`edgecxr.core.lungs.NOT_LUNG_OUTLINES` names them; training leaves them
out, and reports give Dice on the lung-field masks beside Dice on every film.
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
from edgecxr.core.lungs import lung_outline
from edgecxr.core.preprocess import SpecLike, as_spec, preprocess


@dataclass
class LungSplit:
    """Films ``x`` (N, H, W, 1) and masks ``y`` (N, H, W, 1) in the model frame, float32 in [0, 1]."""

    x: np.ndarray
    y: np.ndarray
    files: list[str]  # image paths relative to the root
    sources: list[str]
    masks: list[np.ndarray]  # ground truth at the film's own size, bool
    outlines: list[bool]  # whether each mask outlines the lung fields (lung_outline)

    def lung_outlines(self) -> LungSplit:
        """The films whose masks outline the lung fields."""
        keep = [i for i, o in enumerate(self.outlines) if o]
        return LungSplit(self.x[keep], self.y[keep], [self.files[i] for i in keep], [self.sources[i] for i in keep], [self.masks[i] for i in keep], [True] * len(keep))


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
            outlines=[lung_outline(r) for r in chosen],
        )
    return out


def train_pipeline(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> tf.data.Dataset:
    """Shuffled, augmented (film, mask) batches; one pass is one epoch.

    Geometry acts on film and mask together: a random crop of 60-135% of the area (aspect
    0.8-1.2; above 100% it zooms out onto a black surround), rotation up to 15 degrees, shifts, and
    on a third of the films a black or white border band (collimation, scanner edges) over up to
    12% of one side, the mask cleared under it. No flips: a mirrored chest (heart on the right) is
    not a plausible film. Intensity acts on the film only: gamma 0.5-2.0, contrast, brightness,
    Gaussian blur or sharpening, noise, and on half the films smooth bright opacities (the masks of
    diseased lungs include the opacified field).
    """
    size = x.shape[1:3]
    rotate = keras.layers.RandomRotation(15.0 / 360.0, fill_mode="constant", seed=seed)
    rng = tf.random.Generator.from_seed(seed)
    blur = tf.constant(cv2.getGaussianKernel(5, 1.2) @ cv2.getGaussianKernel(5, 1.2).T, tf.float32)[:, :, None, None]

    def augment(images, masks):
        n = tf.shape(images)[0]
        both = tf.concat([images, masks], axis=-1)
        scale = rng.uniform([n], 0.6, 1.35)
        aspect = rng.uniform([n], 0.8, 1.2)
        h, w = tf.sqrt(scale * aspect), tf.sqrt(scale / aspect)
        top = rng.uniform([n]) * (1.0 - h)
        left = rng.uniform([n]) * (1.0 - w)
        boxes = tf.stack([top, left, top + h, left + w], axis=1)
        both = tf.image.crop_and_resize(both, boxes, tf.range(n), size, extrapolation_value=0.0)
        both = rotate(both, training=True)
        images, masks = both[..., :1], both[..., 1:]
        images, masks = _border(images, masks, rng)
        opacity = tf.image.resize(rng.uniform([n, 4, 4, 1]), size, method="bicubic") ** 2
        images += opacity * rng.uniform([n, 1, 1, 1], 0.0, 0.4) * tf.cast(rng.uniform([n, 1, 1, 1]) < 0.5, tf.float32)
        gamma = tf.exp(rng.uniform([n, 1, 1, 1], np.log(0.5), np.log(2.0)))
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


def _border(images: tf.Tensor, masks: tf.Tensor, rng: tf.random.Generator) -> tuple[tf.Tensor, tf.Tensor]:
    """On a third of the films, a black or white band over up to 12% of one side (chosen at random), the mask cleared under it."""
    n, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    rows = tf.cast(tf.range(height), tf.float32)[None, :, None, None] / tf.cast(height, tf.float32)
    cols = tf.cast(tf.range(width), tf.float32)[None, None, :, None] / tf.cast(width, tf.float32)
    depth = rng.uniform([n, 1, 1, 1], 0.0, 0.12) * tf.cast(rng.uniform([n, 1, 1, 1]) < 1.0 / 3.0, tf.float32)
    side = tf.floor(rng.uniform([n, 1, 1, 1], 0.0, 4.0))
    band = tf.where(side < 1, rows < depth, tf.where(side < 2, rows > 1 - depth, tf.where(side < 3, cols < depth, cols > 1 - depth)))
    band = tf.cast(band, tf.float32)
    value = tf.round(rng.uniform([n, 1, 1, 1]))
    return images * (1 - band) + value * band, masks * (1 - band)


def eval_pipeline(x: np.ndarray, y: np.ndarray, batch_size: int) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def distillation_films(data_root: str | os.PathLike, lungmask_root: str | os.PathLike, n: int, seed: int) -> list[Path]:
    """``n`` films drawn at random (fixed seed) from the train splits of ``cxr3`` and ``cxr3-plus`` beside ``lungmask``.

    No test, val or external film, and no film that ``lungmask`` holds in any split (its ``cxr3_file``
    column), so a lungmask val film is never seen through the teacher either.
    """
    in_lungmask = {r.get("cxr3_file", "") for r in manifest_rows(lungmask_root)} - {""}
    films = []
    for collection in ("cxr3", "cxr3-plus"):
        with (Path(data_root) / collection / "manifest.csv").open(newline="") as fh:
            films += [Path(data_root) / collection / r["file"] for r in csv.DictReader(fh) if r["split"] == "train" and r["file"] not in in_lungmask]
    rng = np.random.default_rng(seed)
    return [films[i] for i in sorted(rng.choice(len(films), size=min(n, len(films)), replace=False))]


def teacher_targets(teacher_path: str | os.PathLike, films: list[Path], spec: SpecLike) -> tuple[np.ndarray, np.ndarray]:
    """Films preprocessed by ``spec`` and the teacher lung model's probability maps over them, area-resized to ``spec``'s frame (soft targets)."""
    from edgecxr.core.lungs import LungModel

    teacher = LungModel(teacher_path)
    height, width = as_spec(spec).size
    xs, ys = [], []
    for path in films:
        pixels = load_image(path).pixels
        prob = teacher.probability(preprocess(pixels, teacher.spec))
        xs.append(preprocess(pixels, spec))
        ys.append(cv2.resize(prob, (width, height), interpolation=cv2.INTER_AREA)[:, :, None])
    return np.stack(xs).astype(np.float32), np.clip(np.stack(ys), 0.0, 1.0).astype(np.float32)
