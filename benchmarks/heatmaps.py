"""Measures of heatmaps for the reports: where a map's mass and peak lie, and how two maps agree.

The trust report (``python -m benchmarks.trust``) and the external-validity report
(``python -m benchmarks.generalization``) both read the share of a class activation map's mass
inside the lung fields the bundled lung model finds, mapped into the classifier's input frame
(:func:`lung_mask_in_frame`, :func:`lung_share`); the trust report also compares a model's raw
maps with a reference's, per image (:func:`map_agreement`). numpy and OpenCV only: no TensorFlow.
"""
from __future__ import annotations

import cv2
import numpy as np

from edgecxr.core.card import ModelError
from edgecxr.core.imageio import LoadedImage
from edgecxr.core.lungs import LungModel, load_lung_model, spec_box
from edgecxr.core.preprocess import Box, SpecLike


def mass_fractions(heat: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, float]:
    """The share of a heatmap's (non-negative) mass inside each region."""
    total = float(heat.sum())
    return {name: float(heat[mask].sum()) / total if total > 0 else 0.0 for name, mask in masks.items()}


def lung_share(heat: np.ndarray, lungs: np.ndarray) -> float:
    """The share of a heatmap's mass inside the boolean lung mask ``lungs`` (same shape); 0.0 for an empty map."""
    return mass_fractions(heat, {"lungs": lungs})["lungs"]


def peak_cell(cam: np.ndarray) -> tuple[int, int]:
    """(row, column) of the hottest cell of a raw map."""
    row, col = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return int(row), int(col)


def peak_fields(cam: np.ndarray) -> dict[str, float]:
    """Where the hottest cell is: in the top row, or among the central cells (those the lung prior covers)."""
    h, w = cam.shape
    row, col = peak_cell(cam)
    return {"peak_top_row": float(row == 0), "peak_central": float(0 < row < h - 1 and 0 < col < w - 1)}


def lung_model() -> LungModel | None:
    """The bundled lung model, or None when this checkout has none."""
    try:
        return load_lung_model()
    except ModelError:
        return None


def film_lung_mask(lungs: LungModel, image: LoadedImage) -> np.ndarray:
    """The lung mask (uint8 0/255) of ``image`` at the size it was read at (``image.pixels``), where crop boxes are computed."""
    return lungs.segment(image, full_size=False).mask


def in_frame(mask: np.ndarray, box: Box, frame: tuple[int, int]) -> np.ndarray:
    """A film's lung mask over a model frame of ``frame`` size (h, w): the crop ``box`` of it, resized, as booleans."""
    top, left, bottom, right = box
    return cv2.resize(mask[top:bottom, left:right], (frame[1], frame[0]), interpolation=cv2.INTER_NEAREST) > 0


def lung_mask_in_frame(lungs: LungModel, image: LoadedImage, spec: SpecLike, frame: tuple[int, int]) -> np.ndarray:
    """The lung fields of ``image`` over the (h, w) ``frame`` of a classifier whose preprocessing is ``spec``.

    The mask (:func:`film_lung_mask`) goes through the same crop as the classifier's input.
    """
    return in_frame(film_lung_mask(lungs, image), spec_box(image.pixels, spec), frame)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps of the same shape (ties broken by position)."""
    ra = np.argsort(np.argsort(a.ravel())).astype(np.float64)
    rb = np.argsort(np.argsort(b.ravel())).astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


def map_agreement(maps: np.ndarray, reference: np.ndarray) -> dict[str, float | int]:
    """Per image, the Spearman rank correlation of ``maps[i]`` with ``reference[i]`` (summarised) and how often both peak in the same cell."""
    rho = np.array([rank_correlation(a, b) for a, b in zip(maps, reference)])
    same_peak = np.mean([peak_cell(a) == peak_cell(b) for a, b in zip(maps, reference)])
    return {
        "same_peak_cell": round(float(same_peak), 4),
        "images": int(len(rho)),
        "median": round(float(np.median(rho)), 4),
        "mean": round(float(np.mean(rho)), 4),
        "p5": round(float(np.percentile(rho, 5)), 4),
        "share_at_least_0.9": round(float(np.mean(rho >= 0.9)), 4),
    }
