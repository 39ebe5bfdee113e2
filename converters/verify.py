"""Checking a converted model against its float32 reference before it is released."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgecxr.core.cardparts import Deltas, Thresholds, Verification
from edgecxr.core.model import Model
from edgecxr.evaluation.metrics import classification_report


def tflite_probabilities(model: Model, x: np.ndarray) -> np.ndarray:
    """Uncalibrated class probabilities of every preprocessed image in ``x``, as the runtime computes them."""
    return np.stack([model.predict_preprocessed(image, calibrated=False) for image in x])


def compare(
    probs: np.ndarray,
    reference: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    sources: Sequence[str],
    thresholds: Thresholds,
) -> tuple[dict, Verification]:
    """Metrics of ``probs``, and their verification: agreement with and deltas to ``reference``, pass/fail."""
    pred, ref_pred = probs.argmax(1), reference.argmax(1)
    metrics = classification_report(y, pred, labels, sources)
    ref = classification_report(y, ref_pred, labels, sources)
    agreement = float(np.mean(pred == ref_pred))
    deltas = Deltas(
        accuracy=round(metrics["accuracy"] - ref["accuracy"], 4),
        macro_f1=round(metrics["macro_f1"] - ref["macro_f1"], 4),
        sensitivity={k: round(metrics["per_class"][k]["recall"] - ref["per_class"][k]["recall"], 4) for k in labels},
    )
    passed = agreement >= thresholds.min_agreement and -deltas.macro_f1 <= thresholds.max_macro_f1_drop
    return metrics, Verification(
        agreement_with_float32=round(agreement, 4),
        max_abs_probability_diff=round(float(np.max(np.abs(probs - reference))), 4),
        deltas_to_float32=deltas,
        thresholds=thresholds,
        passed=bool(passed),
    )
