"""Accuracy of a model on a folder of labelled images (one sub-folder per class), overall and per manifest source."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from edgecxr.failures import ImageError, per_input
from edgecxr.inputs import class_folders, find_images
from edgecxr.manifest import Manifest, resolved
from edgecxr.metrics import classification_report
from edgecxr.model import Model


def labelled_files(data_dir: str | os.PathLike, labels: list[str]) -> list[tuple[Path, int]]:
    """(file, class index) for every image under ``data_dir/<label>/``; raise ValueError for unknown folders."""
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    folders = class_folders(root)
    unknown = [f for f in folders if f not in labels]
    if unknown:
        raise ValueError(f"{root}: class folders {unknown} are not labels of the model ({', '.join(labels)})")
    items = [(f, labels.index(folder)) for folder in folders for f in find_images(root / folder)]
    if not items:
        raise ValueError(f"{root}: no images found in class folders named {', '.join(labels)}")
    return items


def predict_labelled(
    model: Model, items: list[tuple[Path, int]], progress: Callable[[int], None] | None = None
) -> tuple[list[Path], list[int], list[int], list[str]]:
    """Predict every (file, class) pair: (files read, true classes, predicted classes, error lines)."""
    files, y_true, y_pred, errors = [], [], [], []
    for (path, pred), (_, truth) in zip(per_input([path for path, _ in items], model.predict), items):
        if isinstance(pred, ImageError):
            errors.append(str(pred))
        else:
            files.append(path)
            y_true.append(truth)
            y_pred.append(model.labels.index(pred.label))
        if progress:
            progress(1)
    return files, y_true, y_pred, errors


def evaluate(
    model: Model,
    data_dir: str | os.PathLike,
    progress: Callable[[int], None] | None = None,
    manifest: Manifest | None = None,
    items: list[tuple[Path, int]] | None = None,
) -> dict:
    """Metrics of ``model`` on ``data_dir`` (see :func:`classification_report`) plus ``model`` and ``errors``.

    ``errors`` lists the unreadable files ("<file>: <reason>"), which are left out of the metrics.
    With a ``manifest``, two keys more: ``per_source`` ({source: report}, from the manifest's
    ``source`` of each image read) and ``manifest``, what the manifest covers:

    - ``listed``: how many of the images read it lists;
    - ``unlisted``: images read that it does not list (they count overall, in no source);
    - ``missing``: files it lists below ``data_dir`` that are not among the images found there
      (absent, or not an image in a class folder).

    ``items`` are ``labelled_files(data_dir, model.labels)`` when the caller has listed them already.
    """
    if items is None:
        items = labelled_files(data_dir, model.labels)
    files, y_true, y_pred, errors = predict_labelled(model, items, progress)
    if manifest is None:
        return {**classification_report(y_true, y_pred, model.labels), "model": model.name, "errors": errors}
    rows = [manifest.get(f) for f in files]
    report = classification_report(y_true, y_pred, model.labels, [row.source if row else "" for row in rows])
    per_source = report.pop("per_source", {})
    root, found = Path(data_dir), {resolved(path) for path, _ in items}
    coverage = {
        "listed": sum(row is not None for row in rows),
        "unlisted": [str(f) for f, row in zip(files, rows) if row is None],
        "missing": [str(root / row.path.relative_to(root.resolve())) for row in manifest.under(root) if row.path not in found],
    }
    return {**report, "model": model.name, "errors": errors, "per_source": per_source, "manifest": coverage}
