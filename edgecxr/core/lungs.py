"""The lung-field model: a U-Net ``.tflite`` with its card, giving a 0/255 lung mask at the input's size.

    from edgecxr.core.lungs import load_lung_model
    lungs = load_lung_model()            # the bundled int8 model; or a path to a .tflite with its card
    mask = lungs.lungs("scan.png")       # uint8 (H, W), 0 or 255, the input's own size
    result = lungs.segment("scan.png")   # mask, lung_fraction, found (False: "no lung fields found")

A chest-film classifier's prediction runs it too, once per image (:func:`lung_fields`): its
``no_lungs`` check (in the card's ``chest-xray`` check profile) carries the "no lung fields
found" warning, and a ``"lungs"`` crop in the preprocessing spec crops to the fields' box.

The model outputs one sigmoid channel, the probability that a pixel of the preprocessed frame is
lung; the card's labels are ``["background", "lung"]``. The probability map is stretched back onto
the input (:func:`edgecxr.core.preprocess.to_original`) and thresholded at 0.5. Runs on the TFLite
interpreter only, like the classifiers; no TensorFlow.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgecxr.core.card import ModelError
from edgecxr.core.checks import Check, refuse_blank
from edgecxr.core.families import FAMILIES
from edgecxr.core.families import family as family_of
from edgecxr.core.imageio import ImageSource, as_loaded
from edgecxr.core.interpreter import VerifiedModel, dequantize, dims, quantize
from edgecxr.core.picture import PictureWriter
from edgecxr.core.preprocess import Box, PreprocessSpec, SpecLike, as_spec, crop_box, preprocess, to_original
from edgecxr.core.registry import LUNG_MODEL, MODELS_DIR

LUNG_SPEC: dict[str, Any] = {"color": "grayscale", "crop": "none", "size": [128, 128], "interpolation": "area", "scale": "0-1", "clahe": False}
THRESHOLD = 0.5  # probability above which a pixel is lung
LUNG_CROP_MARGIN = 0.1  # of the box's height (width) added above and below (left and right) by a "lungs" crop
NO_LUNGS_WARNING = "no lung fields found: this does not look like a frontal chest X-ray"


@dataclass
class LungResult:
    """One image's lung fields: ``mask`` uint8 0/255 at the input's size and what was read from it."""

    mask: np.ndarray
    lung_fraction: float  # share of the image's pixels inside the mask
    found: bool  # False when the mask fails the "lung fields found" rule (see lung_fields_found)
    latency_ms: float
    file: str | None = None


class LungModel(VerifiedModel):
    """A verified lung-segmentation ``.tflite`` with its card."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        super().__init__(path, threads)
        task = family_of(self.card.family).task if self.card.family in FAMILIES else None
        if task != "segmentation":
            raise ModelError(f"{self.path}: model family {self.card.family!r} is not a segmentation family (task {task!r})")
        outputs = self.interpreter.get_output_details()
        height, width = self.card.preprocessing.size
        if len(outputs) != 1 or tuple(outputs[0]["shape"]) != (1, height, width, 1) or tuple(self._input["shape"]) != (1, height, width, 1):
            raise ModelError(f"{self.path}: expected a (1, {height}, {width}, 1) input and output, got {dims(self._input)} -> {[dims(o) for o in outputs]}")
        self._output = outputs[0]
        self._lock = threading.Lock()

    @property
    def spec(self) -> PreprocessSpec:
        return self.card.preprocessing

    def probability(self, x: np.ndarray) -> np.ndarray:
        """The (h, w) lung probability of one preprocessed (h, w, 1) frame (one call at a time: training decodes in threads)."""
        with self._lock:
            self.interpreter.set_tensor(self._input["index"], quantize(x[None], self._input))
            self.interpreter.invoke()
            return dequantize(self.interpreter.get_tensor(self._output["index"])[0, :, :, 0], self._output)

    def lungs(self, image: ImageSource) -> np.ndarray:
        """The lung mask of ``image`` (a path or an array): uint8, 0 or 255, the input's own height and width."""
        return self.segment(image).mask

    def segment(self, image: ImageSource, full_size: bool = True) -> LungResult:
        """The mask, its lung fraction and whether lung fields were found.

        The mask covers the image at the file's own size; with ``full_size=False`` at the size it was
        read at (``LoadedImage.pixels``, at most :data:`edgecxr.core.imageio.WORK_SIDE` on a side), which is
        all the ``no_lungs`` check needs: a 7900 x 7900 film's own-size mask would take 250 MB on the way.
        """
        loaded, file = as_loaded(image)
        refuse_blank(loaded, file)
        start = time.perf_counter()
        frame = preprocess(loaded.pixels, self.spec)
        prob = self.probability(frame)
        mask = mask_at_size(prob, loaded.original_shape if full_size else (loaded.height, loaded.width), self.spec)
        latency = (time.perf_counter() - start) * 1000.0
        return LungResult(mask, lung_fraction(mask), lung_fields_found(prob, frame), latency, file)


class LungMaskWriter(PictureWriter):
    """Writes ``<stem>.lungs.png`` masks (0 or 255, the input's own size) into one folder, same naming rule."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, ".lungs.png")


@lru_cache(maxsize=4)
def load_lung_model(path: str | os.PathLike | None = None, threads: int | None = None) -> LungModel:
    """The bundled lung model (loaded once per process), or the one at ``path``."""
    return LungModel(path or MODELS_DIR / f"{LUNG_MODEL}.tflite", threads=threads)


@dataclass(frozen=True)
class LungFields:
    """One lung-model pass over an image, for a classifier's prediction: the ``"lungs"`` crop and the ``no_lungs`` check."""

    prob: np.ndarray  # (h, w) lung probability over the lung model's frame
    found: bool  # lung_fields_found
    shape: tuple[int, int]  # the image's (height, width)

    def box(self) -> Box:
        """The ``"lungs"`` crop: the lung fields' bounding box grown by :data:`LUNG_CROP_MARGIN` a side, scaled to the image.

        The whole image when no lung fields are found.
        """
        h, w = self.shape
        rows, cols = np.nonzero(self.prob > THRESHOLD)
        if not self.found or rows.size == 0:
            return 0, 0, h, w
        fh, fw = self.prob.shape
        top, bottom, left, right = rows.min() / fh, (rows.max() + 1) / fh, cols.min() / fw, (cols.max() + 1) / fw
        dy, dx = LUNG_CROP_MARGIN * (bottom - top), LUNG_CROP_MARGIN * (right - left)
        y0, x0 = int(max(0.0, top - dy) * h), int(max(0.0, left - dx) * w)
        return y0, x0, max(int(np.ceil(min(1.0, bottom + dy) * h)), y0 + 1), max(int(np.ceil(min(1.0, right + dx) * w)), x0 + 1)

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """The lung fields as a bool (height, width) mask over the image at ``shape`` (the image's, or any of the same aspect)."""
        return to_original(self.prob, shape, LUNG_SPEC) > THRESHOLD

    def checks(self) -> list[Check]:
        """The ``no_lungs`` check: fires when no lung fields were found; its value is the lung share of the model frame."""
        return [] if self.found else [Check("no_lungs", NO_LUNGS_WARNING, round(float((self.prob > THRESHOLD).mean()), 4))]


def lung_fields(pixels: np.ndarray, lung_model: str | None = None, view: np.ndarray | None = None) -> LungFields:
    """Run the bundled lung model on a 2-D image; ``lung_model``, the sha256 a spec names, must be its (ModelError otherwise).

    ``view``: the whole image already area-resized (a classifier's ``crop: none`` input, (h, w, 1)); when
    it is at least the lung model's frame and no larger than the image, the frame is area-resized from it
    instead of from the full image: nearly the same frame for a fraction of the work on a large film.
    """
    model = lung_model_for(lung_model)
    frame = preprocess(lung_source(pixels, view, model.spec.size), model.spec)
    prob = model.probability(frame)
    return LungFields(prob, lung_fields_found(prob, frame), (int(pixels.shape[0]), int(pixels.shape[1])))


def lung_source(pixels: np.ndarray, view: np.ndarray | None, size: tuple[int, int]) -> np.ndarray:
    """What the lung frame is resized from: ``view`` (2-D) when it is at least ``size`` and no larger than ``pixels``, else ``pixels``."""
    if view is None or view.shape[0] < size[0] or view.shape[1] < size[1] or view.shape[0] > pixels.shape[0] or view.shape[1] > pixels.shape[1]:
        return pixels
    return view[:, :, 0] if view.ndim == 3 else view


def spec_box(pixels: np.ndarray, spec: SpecLike) -> Box:
    """The part of a 2-D image that ``spec``'s crop keeps: for a ``"lungs"`` crop the lung fields' box (:meth:`LungFields.box`,
    one lung-model pass), else :func:`edgecxr.core.preprocess.crop_box`. What :func:`~edgecxr.core.preprocess.preprocess` takes as ``box``.
    """
    spec = as_spec(spec)
    return lung_fields(pixels, spec.lung_model).box() if spec.crop == "lungs" else crop_box(pixels, spec)


def lung_model_for(sha256: str | None) -> LungModel:
    """The bundled lung model, when it is the one ``sha256`` names (any, for None); ModelError otherwise."""
    model = load_lung_model()
    if sha256 is not None and sha256 != model.card.sha256:
        raise ModelError(
            f"preprocessing crops to the lung fields of lung model {sha256[:12]}…, but the bundled one is "
            f"{(model.card.sha256 or '')[:12]}…; use the edgecxr release the model was made for"
        )
    return model


def mask_at_size(prob: np.ndarray, shape: tuple[int, int], spec: SpecLike) -> np.ndarray:
    """A model-frame probability map as a uint8 0/255 mask over an image of ``shape`` (h, w)."""
    mask = (to_original(prob, shape, spec) > THRESHOLD).view(np.uint8)  # 0 / 1, in place of the comparison's own array
    mask *= 255
    return mask


def lung_fraction(mask: np.ndarray) -> float:
    """Share of the mask's pixels that are lung."""
    return float(np.count_nonzero(mask)) / mask.size


def lung_fields_found(prob: np.ndarray, frame: np.ndarray) -> bool:
    """Whether a model-frame probability map of the preprocessed ``frame`` holds lung fields.

    The rule (bounds in :data:`NO_LUNGS`, chosen on train + val films; ``python -m benchmarks.lungs``
    measures it): enough lung, two lungs, and a frame with a radiograph's texture.
    """
    return all(value >= low for value, low in zip(mask_features(prob, frame).values(), NO_LUNGS.values()))


def mask_features(prob: np.ndarray, frame: np.ndarray) -> dict[str, float]:
    """What the "lung fields found" rule reads, in the order of :data:`NO_LUNGS`.

    ``fraction``: share of the frame above the threshold; ``second_component``: the second-largest
    connected lung region's share of the frame (a chest film has two lungs); ``texture``: mean
    absolute Laplacian of the (h, w, 1) preprocessed frame. The U-Net was trained to leave
    non-chest images empty, but on very smooth images (colour fields, soft gradients) it can still
    draw two lung-shaped blobs; every radiograph has far more fine structure (ribs, vessels, grain).
    """
    binary = (prob > THRESHOLD).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    areas = sorted(stats[1:, cv2.CC_STAT_AREA].tolist(), reverse=True) + [0, 0]
    return {
        "fraction": float(binary.mean()),
        "second_component": areas[1] / binary.size,
        "texture": float(np.abs(cv2.Laplacian(frame[:, :, 0], cv2.CV_32F)).mean()),
    }


# Lower bounds of the "lung fields found" rule: an image below any of them gets NO_LUNGS_WARNING.
# Chosen on the 5945 train + val films of cxr3, cxr3-plus and lungmask (12 of them, 0.2%, fall
# below; benchmarks/results/lungs/ lists the quantiles and every film flagged). Test, external
# and full-resolution films and the reported set of generated images were not looked at.
NO_LUNGS = {"fraction": 0.05, "second_component": 0.005, "texture": 0.005}


# Mask projects of ``lungmask`` (named in its manifest's license column) whose masks are not lung-field outlines, and
# what they outline instead: their films are left out of training, and reports give Dice without them beside Dice on all.
NOT_LUNG_OUTLINES = {"GeneralBlockchain": "the whole thorax (mediastinum and diaphragm included, 61-92% of the film), not the lung fields"}


def lung_outline(row: dict[str, str]) -> bool:
    """Whether a ``lungmask`` manifest row's mask outlines the lung fields (its project is not one of :data:`NOT_LUNG_OUTLINES`)."""
    return not any(project in row.get("license", "") for project in NOT_LUNG_OUTLINES)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient of two masks (nonzero = lung); 1.0 when both are empty."""
    a, b = a.astype(bool), b.astype(bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks; 1.0 when both are empty."""
    a, b = a.astype(bool), b.astype(bool)
    union = int(np.logical_or(a, b).sum())
    return 1.0 if union == 0 else int(np.logical_and(a, b).sum()) / union


def segmentation_report(pred: Sequence[np.ndarray], truth: Sequence[np.ndarray], sources: Sequence[str]) -> dict[str, Any]:
    """Mean / median / min Dice and mean IoU of predicted masks against the truth, overall and per source."""

    def summary(idx: list[int]) -> dict[str, Any]:
        d = np.array([dice(pred[i], truth[i]) for i in idx])
        j = np.array([iou(pred[i], truth[i]) for i in idx])
        return {
            "n": len(idx), "dice_mean": round(float(d.mean()), 4), "dice_median": round(float(np.median(d)), 4),
            "dice_min": round(float(d.min()), 4), "iou_mean": round(float(j.mean()), 4),
        }

    out = summary(list(range(len(pred))))
    out["per_source"] = {s: summary([i for i, v in enumerate(sources) if v == s]) for s in sorted(set(sources))}
    return out
