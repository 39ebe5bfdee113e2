"""Checkpoint selection on the worst source x class cell of val, not the mean val loss.

A cell is ``source/class`` (e.g. ``nih/Normal``); its recall is the share of its val films called
their class. Cells with fewer than :data:`MIN_CELL` val films are too noisy to select on and are
left out. :class:`ValCells` measures the plain classifier on val after every epoch and writes
``val_loss``, ``val_accuracy``, ``val_worst_recall`` and ``epoch_seconds`` into the epoch's logs (so the usual
checkpoint and early-stopping callbacks, and ``history.json``, see them) and the worst cell's name
into ``RUN_DIR/cells.json``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

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
