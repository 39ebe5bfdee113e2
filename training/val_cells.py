"""The per-epoch val pass that logs val loss, accuracy and the worst source x class cell (see :mod:`training.selection`)."""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tf_keras as keras

from training.selection import cell_recalls, worst_cell


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
