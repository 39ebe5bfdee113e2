"""Classification metrics in plain numpy, shared by training, converters, `evaluate` and benchmarks."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def classification_report(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, labels: Sequence[str], sources: Sequence[str] | None = None
) -> dict:
    """Accuracy, per-class precision (PPV) / recall (sensitivity) / F1 / support, macro-F1, confusion.

    The keys are the stable contract of ``edgecxr evaluate --json``: ``accuracy``, ``macro_f1``,
    ``labels``, ``per_class``, ``confusion_matrix``, ``n``. With ``sources`` (one name per sample,
    ``""`` where unknown), ``per_source`` is added when any sample has one: ``{source: report of its
    samples}`` in name order; samples without a source count only in the overall numbers.
    """
    if sources is not None and len(sources) != len(y_true):
        raise ValueError(f"{len(sources)} sources for {len(y_true)} samples")
    report = _report(y_true, y_pred, list(labels))
    names = sorted({s for s in sources if s}) if sources is not None else []
    if names:
        true, pred, src = np.asarray(y_true), np.asarray(y_pred), np.asarray(sources)
        report["per_source"] = {s: _report(true[src == s], pred[src == s], report["labels"]) for s in names}
    return report


def _report(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, labels: list[str]) -> dict:
    """The report of one set of samples (no groups)."""
    cm = confusion_matrix(y_true, y_pred, len(labels))
    n = int(cm.sum())
    per_class = {}
    for i, label in enumerate(labels):
        tp = cm[i, i]
        predicted, actual = cm[:, i].sum(), cm[i, :].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {
            "precision": round(float(precision), 4),
            "recall": round(float(recall), 4),
            "f1": round(float(f1), 4),
            "support": int(actual),
        }
    present = [c for c in per_class.values() if c["support"] > 0]
    return {
        "accuracy": round(float(np.trace(cm) / n), 4) if n else 0.0,
        "macro_f1": round(float(np.mean([c["f1"] for c in present])), 4) if present else 0.0,
        "labels": labels,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "n": n,
    }
