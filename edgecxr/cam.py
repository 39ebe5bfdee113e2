"""Class activation maps on the device: where in the image the evidence for a class sits.

The ResNet-18-style models end in global average pooling and one dense layer, so a class's logit
is the spatial mean of ``CAM_c = sum_k w_kc * F_k`` (plus a bias), where ``F`` is the last
convolutional feature map and ``w`` the dense weights (Zhou et al. 2016). The converter exports
``F`` as a second TFLite output and stores ``w`` in the card; the runtime dequantizes ``F`` with
its own scale and zero point and needs no gradients. MLP-12 has no spatial feature map (its first
dense layer mixes every pixel), so it has no heatmap.
"""
from __future__ import annotations

import cv2
import numpy as np


def class_activation_map(features: np.ndarray, weights: np.ndarray, class_index: int) -> np.ndarray:
    """The raw (h, w) map of ``class_index`` from ``features`` (h, w, K) and dense ``weights`` (K, C)."""
    return (features.astype(np.float32) @ weights[:, class_index].astype(np.float32)).astype(np.float32)


def normalise(cam: np.ndarray) -> np.ndarray:
    """Positive evidence only, scaled to [0, 1] (all zeros when nothing is positive)."""
    positive = np.clip(cam, 0.0, None)
    top = float(positive.max()) if positive.size else 0.0
    return (positive / top if top > 0 else positive).astype(np.float32)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """A BGR uint8 picture: the grayscale ``image`` in [0, 1] with ``heatmap`` (same shape, [0, 1]) over it."""
    if image.shape != heatmap.shape:
        raise ValueError(f"image {image.shape} and heatmap {heatmap.shape} differ in shape")
    gray = cv2.cvtColor(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    colour = cv2.applyColorMap(np.round(heatmap * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(colour, alpha, gray, 1.0 - alpha, 0.0)
