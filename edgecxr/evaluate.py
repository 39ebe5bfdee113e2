"""Accuracy of a model on a folder of labelled images (one sub-folder per class)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from edgecxr.imageio import IMAGE_SUFFIXES, ImageError
from edgecxr.metrics import classification_report
from edgecxr.model import Model


def labelled_files(data_dir: str | os.PathLike, labels: list[str]) -> list[tuple[Path, int]]:
    """(file, class index) for every image under ``data_dir/<label>/``; raise ValueError for unknown folders."""
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    unknown = [f for f in folders if f not in labels]
    if unknown:
        raise ValueError(f"{root}: class folders {unknown} are not labels of the model ({', '.join(labels)})")
    items = [
        (f, labels.index(folder))
        for folder in folders
        for f in sorted((root / folder).rglob("*"))
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not items:
        raise ValueError(f"{root}: no images found in class folders named {', '.join(labels)}")
    return items


def predict_labelled(
    model: Model, items: list[tuple[Path, int]], progress: Callable[[int], None] | None = None
) -> tuple[list[Path], list[int], list[int], list[str]]:
    """Predict every (file, class) pair: (files read, true classes, predicted classes, error lines)."""
    files, y_true, y_pred, errors = [], [], [], []
    for path, truth in items:
        try:
            pred = model.predict(path)
        except ImageError as exc:
            errors.append(str(exc))
        else:
            files.append(path)
            y_true.append(truth)
            y_pred.append(model.labels.index(pred.label))
        if progress:
            progress(1)
    return files, y_true, y_pred, errors


def evaluate(model: Model, data_dir: str | os.PathLike, progress: Callable[[int], None] | None = None) -> dict:
    """Metrics of ``model`` on ``data_dir`` plus ``errors`` (unreadable files, skipped)."""
    _, y_true, y_pred, errors = predict_labelled(model, labelled_files(data_dir, model.labels), progress)
    report = classification_report(y_true, y_pred, model.labels)
    report["model"] = model.name
    report["errors"] = errors
    return report
