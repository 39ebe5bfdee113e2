"""Warnings for input that decodes but does not look like the chest X-rays the models were trained on.

Each check returns a short sentence for the prediction's ``warnings`` list and none stops a
prediction, except a constant image (every pixel the same), where no prediction means anything.
The thresholds were chosen on data: ``python -m benchmarks.trust`` reports how often each fires on
the shared test split (false alarms) and on deliberately wrong inputs.
"""
from __future__ import annotations

import numpy as np

from edgecxr.imageio import ImageError, LoadedImage

SMALL_SIDE = 64  # px: below this an X-ray has lost most of its detail
NEARLY_UNIFORM_STD = 0.02  # intensity std in [0, 1] units: a blank or washed-out frame
COLOR_SPREAD = 0.08  # mean |R-G|,|G-B| in [0, 1] units: a colour photograph, not a radiograph
EXTREME_ASPECT = 2.5  # long side / short side


def input_warnings(image: LoadedImage) -> list[str]:
    """The odd things about ``image`` worth telling the user."""
    out = []
    h, w = image.pixels.shape
    if min(h, w) < SMALL_SIDE:
        out.append(f"very small image ({w}x{h} px); predictions on it are unreliable")
    if max(h, w) / min(h, w) > EXTREME_ASPECT:
        out.append(f"extreme aspect ratio ({w}x{h}); not a typical chest radiograph")
    if float(np.std(image.pixels)) < NEARLY_UNIFORM_STD:
        out.append("image is blank or nearly uniform")
    if image.color_spread > COLOR_SPREAD:
        out.append(f"colour image (channel spread {image.color_spread:.2f}); chest radiographs are grayscale")
    return out


def refuse_blank(image: LoadedImage, file: str | None) -> None:
    """Raise :class:`ImageError` for a constant image: it holds nothing to classify."""
    low, high = float(image.pixels.min()), float(image.pixels.max())
    if low == high:
        raise ImageError(file or "<array>", f"blank image (every pixel is {low:.3f}); nothing to classify")
