"""Class activation maps on the device: where in the image the evidence for a class sits.

The ResNet-18-style models end in global average pooling and one dense layer, so a class's logit
is the spatial mean of ``CAM_c = sum_k w_kc * F_k`` (plus a bias), where ``F`` is the last
convolutional feature map and ``w`` the dense weights (Zhou et al. 2016). The converter exports
``F`` as a second TFLite output and stores ``w`` in the card; the runtime dequantizes ``F`` with
its own scale and zero point and needs no gradients. MLP-12 has no spatial feature map (its first
dense layer mixes every pixel), so it has no heatmap. The picture a person reads (the map inside
the lung fields, a colour bar, the call) is :mod:`edgecxr.core.picture`'s.
"""
from __future__ import annotations

import cv2
import numpy as np

HEATMAP_MAX_SIDE = 2048  # px: a heatmap of a larger image is made at this long side, same aspect


def heatmap_shape(shape: tuple[int, int]) -> tuple[int, int]:
    """The (height, width) a heatmap over an image of ``shape`` gets: the same, or scaled to :data:`HEATMAP_MAX_SIDE`."""
    height, width = shape
    scale = min(1.0, HEATMAP_MAX_SIDE / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def class_activation_map(features: np.ndarray, weights: np.ndarray, class_index: int) -> np.ndarray:
    """The raw (h, w) map of ``class_index`` from ``features`` (h, w, K) and dense ``weights`` (K, C)."""
    return (features.astype(np.float32) @ weights[:, class_index].astype(np.float32)).astype(np.float32)


def normalise(cam: np.ndarray) -> np.ndarray:
    """Positive evidence only, scaled to [0, 1] (all zeros when nothing is positive)."""
    positive = np.clip(cam.astype(np.float32, copy=False), 0.0, None)
    top = float(positive.max()) if positive.size else 0.0
    if top > 0:
        positive /= top
    return positive


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """A BGR uint8 picture: the grayscale ``image`` (values in [0, 1]) with ``heatmap`` ([0, 1]) over it.

    The image is resized to the heatmap's size when they differ (a capped heatmap of a large image)
    and stretched between its 1st and 99th percentiles for display, so a 12-bit film stored in
    16 bits is not shown nearly black.
    """
    if image.shape != heatmap.shape:
        image = cv2.resize(image.astype(np.float32, copy=False), (heatmap.shape[1], heatmap.shape[0]), interpolation=cv2.INTER_AREA)
    low, high = np.percentile(image, (1, 99))
    gray = np.clip((image - low) * (255.0 / max(float(high - low), 1e-6)), 0, 255).astype(np.uint8)
    colour = cv2.applyColorMap(np.round(heatmap * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(colour, alpha, cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), 1.0 - alpha, 0.0)
