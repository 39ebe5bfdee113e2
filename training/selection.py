"""Checkpoint selection on the worst source x class cell of val, not the mean val loss.

A cell is ``source/class`` (e.g. ``nih/Normal``); its recall is the share of its val films called
their class. Cells with fewer than :data:`MIN_CELL` val films are too noisy to select on and are
left out. :class:`ValCells` measures the plain classifier on val after every epoch and writes
``val_loss``, ``val_accuracy``, ``val_worst_recall`` and ``epoch_seconds`` into the epoch's logs (so the usual
checkpoint and early-stopping callbacks, and ``history.json``, see them) and the worst cell's name
into ``RUN_DIR/cells.json``.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tf_keras as keras

MIN_CELL = 10


def cell_names(y: Sequence[int] | np.ndarray, sources: Sequence[str], labels: Sequence[str]) -> list[str]:
    """``source/class`` of each film (``-`` for an unknown source)."""
    return [f"{s or '-'}/{labels[int(c)]}" for s, c in zip(sources, y)]


def cell_recalls(y_true: np.ndarray, y_pred: np.ndarray, cells: Sequence[str], min_n: int = MIN_CELL) -> dict[str, float]:
    """Recall of each cell with at least ``min_n`` films."""
    names = np.asarray(cells)
    out = {}
    for name in sorted(set(names.tolist())):
        mask = names == name
        if mask.sum() >= min_n:
            out[name] = round(float(np.mean(y_pred[mask] == y_true[mask])), 4)
    return out


def worst_cell(recalls: dict[str, float]) -> tuple[str, float]:
    """The cell with the lowest recall (first by name on ties)."""
    if not recalls:
        raise ValueError(f"no val cell has {MIN_CELL} or more films to select on")
    name = min(sorted(recalls), key=lambda k: recalls[k])
    return name, recalls[name]


def select_epoch(history: dict, key: str = "val_worst_recall") -> int:
    """1-based epoch with the highest ``history[key]`` (the earliest of equal ones)."""
    values = history.get(key) or []
    if not values:
        raise ValueError(f"history has no {key!r}")
    return int(np.argmax(values)) + 1


class ValCells(keras.callbacks.Callback):
    """Val loss, accuracy and worst-cell recall of ``classifier`` after each epoch, into the logs."""

    def __init__(self, classifier: keras.Model, x: np.ndarray, y: np.ndarray, cells: Sequence[str], out: Path, batch_size: int = 64):
        super().__init__()
        self.classifier, self.x, self.y, self.cells = classifier, x, np.asarray(y), list(cells)
        self.path, self.batch_size = out / "cells.json", batch_size

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        # Called batch by batch on this worker, not through Model.predict: under a multi-worker strategy predict
        # would gather across workers, and the last, smaller batch trips TensorFlow (see training.train).
        step = self.batch_size
        probs = np.concatenate([self.classifier(self.x[i : i + step], training=False).numpy() for i in range(0, len(self.x), step)])
        pred = np.argmax(probs, axis=1)
        p_true = np.clip(probs[np.arange(len(self.y)), self.y], 1e-7, 1.0)
        recalls = cell_recalls(self.y, pred, self.cells) or cell_recalls(self.y, pred, self.cells, min_n=1)  # tiny val sets
        name, value = worst_cell(recalls)
        logs.update(
            val_loss=float(-np.mean(np.log(p_true))),
            val_accuracy=float(np.mean(pred == self.y)),
            val_worst_recall=value,
            epoch_seconds=time.monotonic() - self.started,  # training and this val pass
        )
        record = json.loads(self.path.read_text()) if self.path.exists() else []
        record = [r for r in record if r["epoch"] < epoch + 1] + [{"epoch": epoch + 1, "worst_cell": name, "recalls": recalls}]
        self.path.write_text(json.dumps(record, indent=1) + "\n")
        print(f"epoch {epoch + 1}: worst val cell {name} recall {value:.3f}")
