"""Accuracy of a model on a folder of labelled images (one sub-folder per class), overall and per manifest source;
AUCs, and with a site profile the metrics at its operating points."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from edgecxr.core.failures import ImageError, per_input
from edgecxr.core.inputs import Skipped, class_folders, scan_images
from edgecxr.core.model import Model
from edgecxr.core.site import ABNORMAL, NORMAL, target_positives, target_scores
from edgecxr.evaluation.manifest import Manifest, resolved
from edgecxr.evaluation.metrics import classification_report
from edgecxr.evaluation.operating import auc, operating_report, rounded

T = TypeVar("T")


def scan_labelled(data_dir: str | os.PathLike, labels: list[str]) -> tuple[list[tuple[Path, int]], list[Skipped]]:
    """(file, class index) for every image under ``data_dir/<label>/``, and what the scan of the class folders passed over.

    Each class folder is scanned as :func:`edgecxr.core.inputs.scan_images` scans a folder (a class
    folder without an image is one of the skipped entries). ValueError for unknown folders, or
    when there is no image at all.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    folders = class_folders(root)
    unknown = [f for f in folders if f not in labels]
    if unknown:
        raise ValueError(f"{root}: class folders {unknown} are not labels of the model ({', '.join(labels)})")
    items: list[tuple[Path, int]] = []
    skipped: list[Skipped] = []
    for folder in folders:
        scan = scan_images(root / folder)
        items += [(f, labels.index(folder)) for f in scan.files]
        skipped += scan.skipped
    if not items:
        raise ValueError(f"{root}: no images found in class folders named {', '.join(labels)}")
    return items, skipped


def labelled_files(data_dir: str | os.PathLike, labels: list[str]) -> list[tuple[Path, int]]:
    """(file, class index) for every image under ``data_dir/<label>/`` (see :func:`scan_labelled`)."""
    return scan_labelled(data_dir, labels)[0]


def predict_labelled(
    model: Model, items: list[tuple[Path, int]], progress: Callable[[int], None] | None = None, calibrated: bool = True
) -> tuple[list[Path], list[int], np.ndarray, list[str]]:
    """Predict every (file, class) pair: (files read, true classes, class probabilities (N, C), error lines).

    The probabilities are the raw softmax when not ``calibrated``. With a site head on the model
    they are the site head's; :func:`predict_both_heads` gives the card head's beside them.
    """
    files, y_true, rows, errors = read_labelled(items, lambda p: model.probabilities(p, calibrated), progress)
    return files, y_true, np.array(rows, dtype=np.float32).reshape(len(rows), len(model.labels)), errors


def read_labelled(
    items: list[tuple[Path, int]], read: Callable[[Path], T], progress: Callable[[int], None] | None = None
) -> tuple[list[Path], list[int], list[T], list[str]]:
    """``read`` every (file, class) of ``items``: (files read, their classes, what ``read`` gave, error lines of the others)."""
    files, y_true, outputs, errors = [], [], [], []
    for (path, out), (_, truth) in zip(per_input([path for path, _ in items], read), items):
        if isinstance(out, ImageError):
            errors.append(str(out))
        else:
            outputs.append(out)
            files.append(path)
            y_true.append(truth)
        if progress:
            progress(1)
    return files, y_true, outputs, errors


def predict_both_heads(
    model: Model, items: list[tuple[Path, int]], progress: Callable[[int], None] | None = None
) -> tuple[list[Path], list[int], np.ndarray, np.ndarray, list[str]]:
    """For a model with a site head: (files read, true classes, site head probabilities, card head probabilities, error lines), one invoke per film."""
    assert model.head is not None, "callers check model.head"
    card_t = model.card.temperature.value if model.card.temperature else 1.0
    files, y_true, outputs, errors = read_labelled(items, model.bundled_outputs, progress)
    raw = np.array([r for r, _ in outputs], np.float32).reshape(len(files), len(model.labels))
    features = np.array([f for _, f in outputs], np.float64).reshape(len(files), -1)
    return files, y_true, model.head.probabilities(features, model.labels), model.recalibrated(raw, card_t), errors


def evaluate(
    model: Model,
    data_dir: str | os.PathLike,
    progress: Callable[[int], None] | None = None,
    manifest: Manifest | None = None,
    items: list[tuple[Path, int]] | None = None,
    skipped: list[Skipped] | None = None,
) -> dict:
    """Metrics of ``model`` on ``data_dir`` (see :func:`classification_report`) plus ``model``, ``errors`` and ``skipped``.

    ``errors`` lists the unreadable files ("<file>: <reason>"), which are left out of the metrics;
    ``skipped`` what the scan of the class folders passed over (:func:`scan_labelled`), one
    ``{"file", "skipped": reason}`` each.
    With a ``manifest``, two keys more: ``per_source`` ({source: report}, from the manifest's
    ``source`` of each image read) and ``manifest``, what the manifest covers:

    - ``listed``: how many of the images read it lists;
    - ``unlisted``: images read that it does not list (they count overall, in no source);
    - ``missing``: files it lists below ``data_dir`` that are not among the images found there
      (absent, or not an image in a class folder).

    Always ``auc`` ({label: one-vs-rest AUC of p(label)}) and ``abnormal_auc`` (of 1 - p(Normal);
    None without a Normal label), None where the films lack a class. With a site profile on the
    model, ``site``: its ``model``, ``temperature`` and ``head`` (``site`` or ``bundled``: which
    head gave the probabilities), ``operating_points`` (for each, the profile's ``for``,
    ``target_sensitivity`` and ``threshold`` with :func:`edgecxr.evaluation.operating.operating_report` on
    these films, per source with a manifest) and ``referred``, the share of films referred. With a
    site head, ``heads``: ``{"site": ..., "bundled": ...}``, each head's ``accuracy``, ``macro_f1``,
    ``auc``, ``abnormal_auc`` and per-class ``recall`` side by side (the top-level metrics are the site head's).

    ``items`` and ``skipped`` are ``scan_labelled(data_dir, model.labels)`` when the caller has scanned already.
    """
    if items is None:
        items, skipped = scan_labelled(data_dir, model.labels)
    heads: dict[str, Any] = {}
    if model.head is not None:
        files, y_true, probs, bundled, errors = predict_both_heads(model, items, progress)
        heads = {"heads": {"site": _head_summary(model, y_true, probs), "bundled": _head_summary(model, y_true, bundled)}}
    else:
        files, y_true, probs, errors = predict_labelled(model, items, progress)
    y_pred = probs.argmax(axis=1).tolist()
    read = {"model": model.name, "errors": errors, "skipped": [s.to_dict() for s in skipped or []], **heads}
    if manifest is None:
        return {**classification_report(y_true, y_pred, model.labels), **_scores(model, y_true, probs, None), **read}
    rows = [manifest.get(f) for f in files]
    sources = [row.source if row else "" for row in rows]
    scores = _scores(model, y_true, probs, sources)
    report = classification_report(y_true, y_pred, model.labels, sources)
    per_source = report.pop("per_source", {})
    root, found = Path(data_dir), {resolved(path) for path, _ in items}
    coverage = {
        "listed": sum(row is not None for row in rows),
        "unlisted": [str(f) for f, row in zip(files, rows) if row is None],
        "missing": [str(root / row.path.relative_to(root.resolve())) for row in manifest.under(root) if row.path not in found],
    }
    return {**report, **scores, **read, "per_source": per_source, "manifest": coverage}


def _scores(model: Model, y_true: list[int], probs: np.ndarray, sources: list[str] | None, site: bool = True) -> dict[str, Any]:
    """The ``auc``, ``abnormal_auc`` and (with a site profile, unless not ``site``) ``site`` keys of :func:`evaluate`."""
    labels = model.labels
    out: dict[str, Any] = {
        "auc": {l: rounded(auc(target_scores(probs, labels, l), target_positives(y_true, labels, l))) for l in labels},
        "abnormal_auc": rounded(auc(target_scores(probs, labels, ABNORMAL), target_positives(y_true, labels, ABNORMAL))) if NORMAL in labels else None,
    }
    if site and model.site is not None:
        points = []
        for p in model.site.points:
            scores = target_scores(probs, labels, p.target)
            points.append({**p.to_dict(), **operating_report(scores, target_positives(y_true, labels, p.target), p.threshold, sources)})
        referred = [model.site.decide(row, labels) for row in probs]
        out["site"] = {
            "model": model.site.model, "temperature": model.site.temperature, "head": model.site.head_name, "operating_points": points,
            "referred": round(float(np.mean(referred)), 4) if referred else None,
        }
    return out


def _head_summary(model: Model, y_true: list[int], probs: np.ndarray) -> dict[str, Any]:
    """One head's side of ``heads``: accuracy, macro-F1, per-class recall and the AUCs on these films."""
    report = classification_report(y_true, probs.argmax(axis=1).tolist(), model.labels)
    return {
        "accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
        "recall": {l: report["per_class"][l]["recall"] for l in model.labels},
        **_scores(model, y_true, probs, None, site=False),
    }
