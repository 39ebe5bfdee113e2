"""The one preprocessing implementation, driven by a spec stored in each model card.

Training (``training/``), conversion (``converters/``) and the runtime all call
:func:`preprocess`; nothing else in the project resizes or rescales an image for a model.

A spec is a :class:`PreprocessSpec`, stored in cards and run records as plain data, e.g.::

    {"color": "grayscale", "crop": "none", "size": [224, 224], "interpolation": "area",
     "scale": "0-1", "clahe": false, "clahe_clip_limit": 2.0, "clahe_tile_grid": 8}

- ``crop``: ``"none"`` resizes the whole image to ``size`` (aspect not kept; several public CXR
  collections were distributed already squashed to 224x224, so squashing every image makes all
  sources alike), ``"center-square"`` takes the largest centred square first, ``"lungs"`` the
  bounding box of the lung fields the bundled lung model finds plus a margin
  (:func:`edgecxr.core.lungs.spec_box`, passed in as ``box``: this module never runs a model; the
  whole image when it finds none), so the model sees the
  lungs at the same place and scale whatever the film's framing, labels and borders. Its
  ``lung_model`` (the lung model's sha256, recorded by training) makes a runtime with another
  lung model refuse the spec instead of cropping differently.
- ``scale``: ``"0-1"`` maps intensities to [0, 1].
- ``clahe``: contrast-limited adaptive histogram equalisation before resizing, with OpenCV's
  ``clahe_clip_limit`` and a ``clahe_tile_grid`` x ``clahe_tile_grid`` grid of tiles.
- ``decode_min_side``: how a JPEG *file* is read for the model (:func:`edgecxr.core.imageio.load_image`'s
  ``min_side``): libjpeg decodes it at 1/2 or 1/4 of its size, the smaller that keeps both
  sides at least this many pixels, and the crop, the resize and the input checks work on that smaller
  film. A 2000 px film then costs a 500 px decode, and the area resize to the input averages much the
  same pixels. At least the input's larger side (the model never sees a film enlarged); absent, a JPEG
  is decoded in full. Other formats are decoded in full either way (their decoders cannot reduce).

:meth:`PreprocessSpec.from_dict` validates a spec once (a card when it is read, a run record when
training starts); :func:`preprocess` given a :class:`PreprocessSpec` does not check it again.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Union

import edgecxr.core.imageio  # noqa: F401  (sets OpenCV's pixel limit, which cv2 reads only when loaded)

# isort: split
import cv2
import numpy as np

_INTERPOLATIONS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}
_CROPS = ("none", "center-square", "lungs")
Box = tuple[int, int, int, int]  # top, left, bottom, right: the image rows and columns a crop keeps


@dataclass(frozen=True)
class PreprocessSpec:
    """How an image becomes a model input; the defaults are what a card leaves out."""

    color: str = "grayscale"
    crop: str = "none"
    size: tuple[int, int] = (224, 224)  # (height, width)
    interpolation: str = "area"
    scale: str = "0-1"
    clahe: bool = False
    clahe_clip_limit: float = 2.0
    clahe_tile_grid: int = 8
    lung_model: str | None = None  # a "lungs" crop: the sha256 of the lung model whose fields it crops to
    decode_min_side: int | None = None  # a JPEG file is decoded reduced, both sides at least this (None: in full)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessSpec:
        """A complete spec (defaults filled in) from plain data, or ValueError naming the bad key."""
        if not isinstance(data, Mapping):
            raise ValueError(f"preprocessing must be an object, got {data!r}")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown preprocessing keys: {sorted(unknown)}")
        full = {**asdict(cls()), **data}
        if full["color"] != "grayscale":
            raise ValueError(f"preprocessing color {full['color']!r} is not supported (grayscale only)")
        if full["crop"] not in _CROPS:
            raise ValueError(f"preprocessing crop {full['crop']!r} not in {_CROPS}")
        if full["interpolation"] not in _INTERPOLATIONS:
            raise ValueError(f"preprocessing interpolation {full['interpolation']!r} not in {sorted(_INTERPOLATIONS)}")
        if full["scale"] != "0-1":
            raise ValueError(f"preprocessing scale {full['scale']!r} is not supported ('0-1' only)")
        size = full["size"]
        if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(_is_int(v) and v > 0 for v in size):
            raise ValueError(f"preprocessing size must be [height, width], got {size!r}")
        if not (isinstance(full["clahe"], bool) or (_is_int(full["clahe"]) and full["clahe"] in (0, 1))):
            raise ValueError(f"preprocessing clahe must be true or false, got {full['clahe']!r}")
        limit = full["clahe_clip_limit"]
        if not (isinstance(limit, (int, float)) and not isinstance(limit, bool) and math.isfinite(limit) and limit > 0):
            raise ValueError(f"preprocessing clahe_clip_limit must be a number > 0, got {limit!r}")
        lung_model = full["lung_model"]
        if lung_model is not None and (full["crop"] != "lungs" or not (isinstance(lung_model, str) and len(lung_model) == 64)):
            raise ValueError(f"preprocessing lung_model must be the 64-hex sha256 of a lung model, with crop 'lungs' only; got {lung_model!r}")
        if not (_is_int(full["clahe_tile_grid"]) and full["clahe_tile_grid"] > 0):
            raise ValueError(f"preprocessing clahe_tile_grid must be a whole number > 0, got {full['clahe_tile_grid']!r}")
        min_side = full["decode_min_side"]
        if min_side is not None and not (_is_int(min_side) and min_side >= max(int(size[0]), int(size[1]))):
            raise ValueError(f"preprocessing decode_min_side must be a whole number of pixels at least the input's larger side {max(size)}, got {min_side!r}")
        return cls(
            color=full["color"], crop=full["crop"], size=(int(size[0]), int(size[1])),
            interpolation=full["interpolation"], scale=full["scale"], clahe=bool(full["clahe"]),
            clahe_clip_limit=float(limit), clahe_tile_grid=int(full["clahe_tile_grid"]), lung_model=lung_model,
            decode_min_side=min_side,
        )

    def to_dict(self) -> dict[str, Any]:
        """The spec as a card stores it (``size`` as a list; ``lung_model`` and ``decode_min_side`` only when set)."""
        out = {**asdict(self), "size": list(self.size)}
        for key in ("lung_model", "decode_min_side"):
            if out[key] is None:
                del out[key]
        return out


SpecLike = Union[PreprocessSpec, Mapping[str, Any]]


def as_spec(spec: SpecLike) -> PreprocessSpec:
    """``spec`` itself, or plain data validated into a :class:`PreprocessSpec` (ValueError naming the bad key)."""
    return spec if isinstance(spec, PreprocessSpec) else PreprocessSpec.from_dict(spec)


def crop_box(image: np.ndarray, spec: SpecLike) -> Box:
    """The part of ``image`` (2-D) that a ``"none"`` or ``"center-square"`` crop keeps.

    A ``"lungs"`` crop's box comes from the lung model, which this module never runs: ValueError
    (the caller passes :func:`edgecxr.core.lungs.spec_box`'s box to :func:`preprocess`).
    """
    spec = as_spec(spec)
    h, w = image.shape[:2]
    if spec.crop == "none":
        return 0, 0, h, w
    if spec.crop == "center-square":
        return _center_square(h, w)
    raise ValueError("a 'lungs' crop needs its box from the lung model (edgecxr.core.lungs.spec_box)")


def scale_box(box: Box, shape: tuple[int, int], to_shape: tuple[int, int]) -> Box:
    """``box`` over an image of ``shape`` as the same region of an image of ``to_shape``."""
    fy, fx = to_shape[0] / shape[0], to_shape[1] / shape[1]
    top, left, bottom, right = box
    return (int(round(top * fy)), int(round(left * fx)), max(int(round(bottom * fy)), int(round(top * fy)) + 1),
            max(int(round(right * fx)), int(round(left * fx)) + 1))


def preprocess(image: np.ndarray, spec: SpecLike, box: Box | None = None) -> np.ndarray:
    """Turn a grayscale intensity image into a model input of shape ``(H, W, 1)``, float32.

    ``image`` is 2-D; uint8 is read as 0..255, uint16 as 0..65535, float as already in [0, 1]
    (see :func:`edgecxr.core.imageio.load_image`, which returns that). Plain-data ``spec`` is validated
    on every call: convert it once with :func:`as_spec` before a loop. ``box`` is the crop
    (:func:`crop_box` of this image and spec when left out; required for a ``"lungs"`` crop, whose
    box :func:`edgecxr.core.lungs.spec_box` gives).
    """
    spec = as_spec(spec)
    if image.ndim != 2:
        raise ValueError(f"preprocess expects a 2-D grayscale image, got shape {image.shape}")
    img = _to_unit_float(image)
    if spec.crop != "none":
        top, left, bottom, right = box if box is not None else crop_box(image, spec)
        img = img[top:bottom, left:right]
    if spec.clahe:
        u8 = np.round(img * 255.0).astype(np.uint8)
        grid = (spec.clahe_tile_grid, spec.clahe_tile_grid)
        img = cv2.createCLAHE(clipLimit=spec.clahe_clip_limit, tileGridSize=grid).apply(u8).astype(np.float32) / 255.0
    height, width = spec.size
    img = cv2.resize(img, (width, height), interpolation=_INTERPOLATIONS[spec.interpolation])
    return np.clip(img, 0.0, 1.0).astype(np.float32)[:, :, None]


def to_original(frame_map: np.ndarray, original_shape: tuple[int, int], spec: SpecLike, box: Box | None = None) -> np.ndarray:
    """Map an (h, w) array over the model's input frame back onto the original image's pixels.

    The inverse of :func:`preprocess`'s geometry: a ``"none"`` crop is stretched back to the
    original size; any other crop fills its box (``box``, over an image of ``original_shape``;
    computed for ``"center-square"``, required for ``"lungs"``) and leaves zeros outside it.
    """
    spec = as_spec(spec)
    height, width = original_shape
    if spec.crop == "none":
        return cv2.resize(frame_map.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    if box is None:
        if spec.crop == "lungs":
            raise ValueError("to_original needs the crop box of a 'lungs' crop")
        box = _center_square(height, width)
    top, left, bottom, right = box
    out = np.zeros((height, width), np.float32)
    out[top:bottom, left:right] = cv2.resize(frame_map.astype(np.float32), (right - left, bottom - top), interpolation=cv2.INTER_LINEAR)
    return out


def _center_square(h: int, w: int) -> Box:
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return top, left, top + side, left + side


def _to_unit_float(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if np.issubdtype(image.dtype, np.floating):  # a decoded film is float32 in [0, 1] already: used as it is, not copied
        img = image if image.dtype == np.float32 else image.astype(np.float32)
        low, high, _, _ = cv2.minMaxLoc(img)
        return img if 0.0 <= low and high <= 1.0 else np.clip(img, 0.0, 1.0)
    raise ValueError(f"unsupported image dtype {image.dtype}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
