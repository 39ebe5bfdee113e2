"""Fixed anatomical regions of a frontal chest film, as masks over a model-frame image.

The lung-field prior is two ellipses (centre x, centre y, radius x, radius y, as fractions of the
frame) fitted by eye to the dark lung fields of the mean of 1053 preprocessed training images of
``../shared/data/cxr3``. It is a population prior, not a segmentation: it misses the lungs of
rotated, cropped or pediatric films. The trust report measures heatmap mass against it, and the
input checks use it to spot a negative (inverted) film. :data:`CENTRE` is the middle of the film
(the same fraction of any film, whatever its pixel count), where the noise check measures the
pixel-level noise away from side markers and collimator edges.
"""
from __future__ import annotations

import numpy as np

LUNG_PRIOR = ((0.34, 0.46, 0.13, 0.27), (0.66, 0.44, 0.13, 0.27))
SPINE = (0.45, 0.55, 0.25, 0.75)  # x from, x to, y from, y to: the mediastinum between the lungs
BORDER = 0.08  # the outer band of the frame, as a fraction of its side
CORNER = 0.20  # the corner squares, where text markers and side labels usually sit
CENTRE = (0.25, 0.75, 0.25, 0.75)  # x from, x to, y from, y to: the middle quarter of the frame's area


def centre(image: np.ndarray) -> np.ndarray:
    """The :data:`CENTRE` of a 2-D (or H, W, ...) image, a view at the image's own resolution."""
    h, w = image.shape[:2]
    x0, x1, y0, y1 = CENTRE
    return image[int(y0 * h):max(int(y1 * h), int(y0 * h) + 1), int(x0 * w):max(int(x1 * w), int(x0 * w) + 1)]


def region_masks(height: int, width: int) -> dict[str, np.ndarray]:
    """Boolean masks over an (height, width) frame: ``lungs``, ``spine``, ``border`` band, ``corners``."""
    yy, xx = np.mgrid[0:height, 0:width]
    fx, fy = (xx + 0.5) / width, (yy + 0.5) / height
    lungs = np.zeros((height, width), bool)
    for cx, cy, rx, ry in LUNG_PRIOR:
        lungs |= ((fx - cx) / rx) ** 2 + ((fy - cy) / ry) ** 2 <= 1.0
    x0, x1, y0, y1 = SPINE
    return {
        "lungs": lungs,
        "spine": (fx > x0) & (fx < x1) & (fy > y0) & (fy < y1),
        "border": (fx < BORDER) | (fx > 1 - BORDER) | (fy < BORDER) | (fy > 1 - BORDER),
        "corners": ((fx < CORNER) | (fx > 1 - CORNER)) & ((fy < CORNER) | (fy > 1 - CORNER)),
    }
