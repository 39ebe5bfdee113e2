"""The one preprocessing implementation, driven by a spec stored in each model card.

Training (``training/``), conversion (``converters/``) and the runtime all call
:func:`preprocess`; nothing else in the project resizes or rescales an image for a model.

A spec is plain data, e.g.::

    {"color": "grayscale", "crop": "none", "size": [224, 224],
     "interpolation": "area", "scale": "0-1", "clahe": false}

- ``crop``: ``"none"`` resizes the whole image to ``size`` (aspect not kept; several public CXR
  collections were distributed already squashed to 224x224, so squashing every image makes all
  sources alike), ``"center-square"`` takes the largest centred square first.
- ``scale``: ``"0-1"`` maps intensities to [0, 1].
- ``clahe``: contrast-limited adaptive histogram equalisation before resizing.
"""
from __future__ import annotations

from typing import Any, Mapping

import edgecxr.imageio  # noqa: F401  (sets OpenCV's pixel limit, which cv2 reads only when loaded)
import cv2
import numpy as np

DEFAULT_SPEC: dict[str, Any] = {
    "color": "grayscale",
    "crop": "none",
    "size": [224, 224],
    "interpolation": "area",
    "scale": "0-1",
    "clahe": False,
}

_INTERPOLATIONS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}
_CROPS = ("none", "center-square")


def validate_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Return a complete spec (defaults filled in), or raise ValueError naming the bad key."""
    full = {**DEFAULT_SPEC, **spec}
    unknown = set(full) - set(DEFAULT_SPEC)
    if unknown:
        raise ValueError(f"unknown preprocessing keys: {sorted(unknown)}")
    if full["color"] != "grayscale":
        raise ValueError(f"preprocessing color {full['color']!r} is not supported (grayscale only)")
    if full["crop"] not in _CROPS:
        raise ValueError(f"preprocessing crop {full['crop']!r} not in {_CROPS}")
    if full["interpolation"] not in _INTERPOLATIONS:
        raise ValueError(f"preprocessing interpolation {full['interpolation']!r} not in {sorted(_INTERPOLATIONS)}")
    if full["scale"] != "0-1":
        raise ValueError(f"preprocessing scale {full['scale']!r} is not supported ('0-1' only)")
    size = full["size"]
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise ValueError(f"preprocessing size must be [height, width], got {size!r}")
    full["size"] = [int(size[0]), int(size[1])]
    full["clahe"] = bool(full["clahe"])
    return full


def preprocess(image: np.ndarray, spec: Mapping[str, Any]) -> np.ndarray:
    """Turn a grayscale intensity image into a model input of shape ``(H, W, 1)``, float32.

    ``image`` is 2-D; uint8 is read as 0..255, uint16 as 0..65535, float as already in [0, 1]
    (see :func:`edgecxr.imageio.load_image`, which returns that).
    """
    spec = validate_spec(spec)
    if image.ndim != 2:
        raise ValueError(f"preprocess expects a 2-D grayscale image, got shape {image.shape}")
    img = _to_unit_float(image)
    if spec["crop"] == "center-square":
        h, w = img.shape
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        img = img[top : top + side, left : left + side]
    if spec["clahe"]:
        u8 = np.round(img * 255.0).astype(np.uint8)
        img = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(u8).astype(np.float32) / 255.0
    height, width = spec["size"]
    img = cv2.resize(img, (width, height), interpolation=_INTERPOLATIONS[spec["interpolation"]])
    return np.clip(img, 0.0, 1.0).astype(np.float32)[:, :, None]


def to_original(frame_map: np.ndarray, original_shape: tuple[int, int], spec: Mapping[str, Any]) -> np.ndarray:
    """Map an (h, w) array over the model's input frame back onto the original image's pixels.

    The inverse of :func:`preprocess`'s geometry: a ``"none"`` crop is stretched back to the
    original size; a ``"center-square"`` crop fills its square and leaves zeros outside it.
    """
    spec = validate_spec(spec)
    height, width = original_shape
    if spec["crop"] == "none":
        return cv2.resize(frame_map.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    out = np.zeros((height, width), np.float32)
    out[top : top + side, left : left + side] = cv2.resize(frame_map.astype(np.float32), (side, side), interpolation=cv2.INTER_LINEAR)
    return out


def _to_unit_float(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if np.issubdtype(image.dtype, np.floating):
        return np.clip(image.astype(np.float32), 0.0, 1.0)
    raise ValueError(f"unsupported image dtype {image.dtype}")
