"""Warnings for input that decodes but does not look like the chest X-rays the models were trained on.

Each check returns a short sentence for the prediction's ``warnings`` list and none stops a
prediction, except a constant image (every pixel the same), where no prediction means anything.
``python -m benchmarks.trust`` reports how often each fires on the held-out test split (false
alarms) and on deliberately wrong inputs.
"""
from __future__ import annotations

import cv2
import numpy as np

from edgecxr.imageio import ImageError, LoadedImage
from edgecxr.preprocess import PreprocessSpec, preprocess
from edgecxr.regions import region_masks

# Set by hand, then checked on the shared films (the trust report counts how often they fire):
SMALL_SIDE = 64  # px: below this an X-ray has lost most of its detail
NEARLY_UNIFORM_STD = 0.02  # intensity std in [0, 1] units: a blank or washed-out frame
COLOR_SPREAD = 0.08  # mean |R-G|,|G-B| in [0, 1] units: a colour photograph, not a radiograph
EXTREME_ASPECT = 2.5  # long side / short side
# Chosen on a 64x64 view (CHECK_SIZE) of the 5116 train + val films of ../shared/data/cxr3; the
# test split and the full-resolution originals are held out for the trust report. Mean |Laplacian|
# is at most 0.177 on those films and at least 0.249 on uniform noise, so 0.2 sits between. The
# mediastinum is darker than the lung prior by more than 0.05 on 0.5% of them, and on 96.5% of
# the same films inverted.
CHECK_SIZE = 64
NOISE_LAPLACIAN = 0.2
NEGATIVE_CONTRAST = -0.05
_MASKS = region_masks(CHECK_SIZE, CHECK_SIZE)
_CHECK_SPEC = PreprocessSpec(size=(CHECK_SIZE, CHECK_SIZE))


def input_warnings(image: LoadedImage, frame: np.ndarray | None = None) -> list[str]:
    """The odd things about ``image`` worth telling the user.

    ``frame`` may be the model's input for this image when that is the whole film area-resized
    (see :func:`check_view`); the checks then reuse it instead of resizing the image again.
    """
    out = []
    h, w = image.pixels.shape
    if min(h, w) < SMALL_SIDE:
        out.append(f"very small image ({w}x{h} px); predictions on it are unreliable")
    if max(h, w) / min(h, w) > EXTREME_ASPECT:
        out.append(f"extreme aspect ratio ({w}x{h}); not a typical chest radiograph")
    if float(cv2.meanStdDev(image.pixels)[1][0, 0]) < NEARLY_UNIFORM_STD:
        out.append("image is blank or nearly uniform")
    if image.color_spread > COLOR_SPREAD:
        out.append(f"colour image (channel spread {image.color_spread:.2f}); chest radiographs are grayscale")
    view = check_view(image.pixels, frame)
    busy = float(np.abs(cv2.Laplacian(view, cv2.CV_32F)).mean())
    if busy > NOISE_LAPLACIAN:
        out.append(f"looks like noise (texture {busy:.2f}, chest X-rays stay below {NOISE_LAPLACIAN})")
    contrast = float(view[_MASKS["spine"]].mean() - view[_MASKS["lungs"]].mean())
    if contrast < NEGATIVE_CONTRAST:
        out.append(f"possibly a negative (inverted) film: the mediastinum is darker than the lung fields ({contrast:.2f})")
    return out


def check_view(pixels: np.ndarray, frame: np.ndarray | None = None) -> np.ndarray:
    """The CHECK_SIZE x CHECK_SIZE view the texture and negative-film checks read.

    It is the whole film area-resized; a ``frame`` that is itself the whole film area-resized to
    at least CHECK_SIZE (from an image at least that large) gives nearly the same view for far less
    work than resizing a full-size film a second time.
    """
    h, w = pixels.shape
    if frame is not None and min(frame.shape[:2]) >= CHECK_SIZE and min(h, w) >= min(frame.shape[:2]):
        return cv2.resize(frame[:, :, 0], (CHECK_SIZE, CHECK_SIZE), interpolation=cv2.INTER_AREA)
    return preprocess(pixels, _CHECK_SPEC)[:, :, 0]


def refuse_blank(image: LoadedImage, file: str | None) -> None:
    """Raise :class:`ImageError` for a constant image: it holds nothing to classify."""
    low, high = float(image.pixels.min()), float(image.pixels.max())
    if low == high:
        raise ImageError(file or "<array>", f"blank image (every pixel is {low:.3f}); nothing to classify")
