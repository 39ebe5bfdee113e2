"""A ROC plot drawn with OpenCV (the runtime has no plotting library): one curve per target and its chosen operating point."""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edgecxr.evaluation.operating import Roc

SIZE = 560  # px, square
MARGIN = 70
COLOURS = [(180, 90, 20), (30, 120, 230), (60, 160, 60), (160, 60, 160), (40, 40, 200), (120, 120, 20)]  # BGR
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class Curve:
    """What one target contributes to the plot."""

    name: str
    roc: Roc
    threshold: float
    sensitivity: float
    specificity: float
    auc: float | None
    target_sensitivity: float


def _xy(fpr: float, tpr: float) -> tuple[int, int]:
    span = SIZE - 2 * MARGIN
    return int(round(MARGIN + fpr * span)), int(round(SIZE - MARGIN - tpr * span))


def draw_roc(curves: Sequence[Curve], title: str) -> np.ndarray:
    """A BGR uint8 picture: sensitivity against 1 - specificity, each curve's chosen point circled, its target dashed."""
    img = np.full((SIZE, SIZE, 3), 255, np.uint8)
    cv2.rectangle(img, _xy(0, 1), _xy(1, 0), (0, 0, 0), 1)
    for tick in np.linspace(0, 1, 6):
        cv2.line(img, _xy(tick, 0), _xy(tick, 1), (225, 225, 225), 1)
        cv2.line(img, _xy(0, tick), _xy(1, tick), (225, 225, 225), 1)
        x, y = _xy(tick, 0)
        cv2.putText(img, f"{tick:.1f}", (x - 12, y + 20), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        x, y = _xy(0, tick)
        cv2.putText(img, f"{tick:.1f}", (x - 32, y + 4), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.line(img, _xy(0, 0), _xy(1, 1), (170, 170, 170), 1, cv2.LINE_AA)  # chance
    cv2.putText(img, "1 - specificity (share of negatives flagged)", (MARGIN + 40, SIZE - MARGIN + 45), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    label = np.full((24, SIZE - 2 * MARGIN, 3), 255, np.uint8)
    cv2.putText(label, "sensitivity", ((SIZE - 2 * MARGIN) // 2 - 40, 17), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    img[MARGIN : SIZE - MARGIN, 8:32] = cv2.rotate(label, cv2.ROTATE_90_COUNTERCLOCKWISE)
    cv2.putText(img, title, (MARGIN, MARGIN - 30), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for i, c in enumerate(curves):
        colour = COLOURS[i % len(COLOURS)]
        fpr = np.concatenate([[0.0], 1.0 - c.roc.specificity])
        tpr = np.concatenate([[0.0], c.roc.sensitivity])
        pts = np.array([_xy(a, b) for a, b in zip(fpr, tpr)], np.int32)
        cv2.polylines(img, [pts], False, colour, 2, cv2.LINE_AA)
        for x0 in np.arange(0.0, 1.0, 0.04):  # the target sensitivity, dashed
            cv2.line(img, _xy(x0, c.target_sensitivity), _xy(min(x0 + 0.02, 1.0), c.target_sensitivity), colour, 1)
        cv2.circle(img, _xy(1.0 - c.specificity, c.sensitivity), 7, colour, 2, cv2.LINE_AA)
        area = f", AUC {c.auc:.3f}" if c.auc is not None else ""
        text = f"{c.name}: threshold {c.threshold:.4f}, sens {c.sensitivity:.3f}, spec {c.specificity:.3f}{area}"
        x, y = _xy(0.04, 0.04 + 0.06 * (len(curves) - 1 - i))
        cv2.putText(img, text, (x + 60, y - 4), FONT, 0.4, colour, 1, cv2.LINE_AA)
    return img


def write_roc(curves: Sequence[Curve], title: str, path: str | os.PathLike) -> None:
    """Write :func:`draw_roc` as a PNG; OSError when it cannot be written."""
    if not cv2.imwrite(str(path), draw_roc(curves, title)):
        raise OSError(f"{path}: cannot write the ROC plot")
