"""Choosing a site's operating points on its own labelled films (``edgecxr calibrate``), and writing them with their report.

:func:`calibrate` reads a folder of class folders (as ``evaluate`` does), refits the model's
temperature on those films and shrinks the fit toward the card's by the sample's size
(:func:`edgecxr.core.calibration.shrunk_temperature`), and for each target (``abnormal`` or a label)
builds the ROC, picks the threshold that meets the target sensitivity with the best specificity
(then the highest sensitivity) and measures it (:mod:`edgecxr.evaluation.operating`). :func:`write_report` writes the profile JSON (:mod:`edgecxr.core.site`)
and beside it ``<stem>.roc.png`` and one ``<stem>.<target>.csv`` threshold table per target.
"""
from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgecxr.core.calibration import TEMPERATURE_PRIOR_FILMS, fit_temperature, negative_log_likelihood, shrunk_temperature
from edgecxr.core.model import Model
from edgecxr.core.site import ABNORMAL, KIND, SCHEMA_VERSION, check_target, target_positives, target_scores, write_profile
from edgecxr.evaluation.evaluate import labelled_files, predict_labelled
from edgecxr.evaluation.manifest import Manifest
from edgecxr.evaluation.operating import BOOTSTRAP_REPLICATES, BOOTSTRAP_SEED, TABLE_COLUMNS, Roc, operating_report, roc, sample_warnings, threshold_for, threshold_table
from edgecxr.evaluation.provenance import utc_now
from edgecxr.evaluation.rocplot import Curve, write_roc


@dataclass
class Calibration:
    """A profile made on a sample (``profile``: the JSON object), with what its report files need."""

    profile: dict[str, Any]
    rocs: dict[str, Roc]
    tables: dict[str, list[dict[str, float | None]]]
    errors: list[str] = field(default_factory=list)  # unreadable films, "<file>: <reason>", left out

    @property
    def warnings(self) -> list[str]:
        return list(self.profile["warnings"])


def calibrate(
    model: Model,
    data_dir: str | os.PathLike,
    target_sensitivity: float,
    targets: Sequence[str] = (ABNORMAL,),
    manifest: Manifest | None = None,
    progress: Callable[[int], None] | None = None,
    items: list[tuple[Path, int]] | None = None,
) -> Calibration:
    """The operating points of ``model`` on the films of ``data_dir`` for ``targets`` at ``target_sensitivity``.

    ValueError (naming ``data_dir``) for a folder that cannot be used: not a folder of the model's
    class folders, no readable film, or a target without positive or without negative films.
    ``items`` are ``labelled_files(data_dir, model.labels)`` when the caller has listed them already.
    """
    labels = model.labels
    if model.card.sha256 is None:
        raise ValueError(f"{model.path}: the card has no sha256 for a profile to name")
    for t in targets:
        check_target(t, labels)
    if items is None:
        items = labelled_files(data_dir, labels)
    files, truth, raw, errors = predict_labelled(model, items, progress, calibrated=False)
    y = np.asarray(truth, dtype=np.int64)
    if not files:
        raise ValueError(f"{data_dir}: none of the {len(items)} images could be read")
    require_both_kinds(y, labels, targets, data_dir)
    sources = manifest.sources(files) if manifest is not None else None
    return bundled_calibration(model, raw, y, target_sensitivity, targets, sources, errors)


def require_both_kinds(y: np.ndarray, labels: Sequence[str], targets: Sequence[str], data_dir: str | os.PathLike) -> None:
    """ValueError (naming ``data_dir``) when a target has no positive or no negative film among classes ``y``."""
    for t in targets:
        pos = target_positives(y, labels, t)
        if pos.all() or not pos.any():
            kind = "negative" if pos.all() else "positive"
            raise ValueError(f"{data_dir}: no {kind} films for target '{t}' (classes present: {', '.join(sorted({labels[i] for i in y}))}): a threshold needs both")


def bundled_calibration(
    model: Model, raw: np.ndarray, y: np.ndarray, target_sensitivity: float, targets: Sequence[str], sources: Sequence[str] | None, errors: list[str]
) -> Calibration:
    """The profile of the card's head on films with raw softmax ``raw`` and classes ``y``: temperature refitted and shrunk toward the card's, thresholds on these films."""
    card_t = model.card.temperature.value if model.card.temperature else 1.0
    fitted = fit_temperature(raw, y, model.recalibrated)
    temperature, weight = shrunk_temperature(fitted, card_t, len(y))
    probs = model.recalibrated(raw, temperature)
    points, rocs, tables, warnings = operating_points(probs, y, model.labels, target_sensitivity, targets, sources)
    fit = {
        "value": temperature, "card": card_t, "fitted": round(fitted, 4), "films": int(len(y)), "weight": round(weight, 4),
        "nll_before": round(negative_log_likelihood(model.recalibrated(raw, card_t), y), 4),
        "nll_after": round(negative_log_likelihood(probs, y), 4),
    }
    if weight < 0.5:
        warnings.append(
            f"temperature: {len(y)} films are too few to replace the card's {card_t:.4f} with their own fit {fitted:.4f}; "
            f"using {temperature:.4f} (moved {weight:.0%} of the way on the log scale; {TEMPERATURE_PRIOR_FILMS} films move it half way)"
        )
    return Calibration(profile_object(model, y, len(errors), fit, points, warnings), rocs, tables, errors)


def operating_points(
    probs: np.ndarray, y: np.ndarray, labels: Sequence[str], target_sensitivity: float, targets: Sequence[str], sources: Sequence[str] | None
) -> tuple[list[dict[str, Any]], dict[str, Roc], dict[str, list[dict[str, float | None]]], list[str]]:
    """For each target: the profile's operating point (threshold for ``target_sensitivity`` on these scores, measured), ROC, table and warnings."""
    points, rocs, tables, warnings = [], {}, {}, []
    for t in targets:
        scores, pos = target_scores(probs, labels, t), target_positives(y, labels, t)
        threshold = threshold_for(scores, pos, target_sensitivity)
        rocs[t] = roc(scores, pos)
        tables[t] = threshold_table(scores, pos, [threshold])
        points.append({"for": t, "target_sensitivity": target_sensitivity, **operating_report(scores, pos, threshold, sources), "roc": rocs[t].points()})
        warnings += sample_warnings(int(pos.sum()), int((~pos).sum()), target_sensitivity, t)
    return points, rocs, tables, warnings


def profile_object(
    model: Model, y: np.ndarray, unreadable: int, temperature: dict[str, Any], points: list[dict[str, Any]], warnings: list[str]
) -> dict[str, Any]:
    """A site profile (:mod:`edgecxr.core.site`) for ``model`` made on films of classes ``y``; ``adapt`` adds ``head`` and ``adaptation``."""
    return {
        "kind": KIND,
        "schema_version": SCHEMA_VERSION,
        "model": {"name": model.name, "version": model.card.version, "sha256": model.card.sha256},
        "created": utc_now(),
        "sample": {"counts": {l: int(np.sum(y == i)) for i, l in enumerate(model.labels)}, "unreadable": unreadable},
        "temperature": temperature,
        "operating_points": points,
        "warnings": warnings,
        "bootstrap": {"replicates": BOOTSTRAP_REPLICATES, "seed": BOOTSTRAP_SEED, "stratified": True},
    }


def report_paths(out: str | os.PathLike, targets: Sequence[str]) -> dict[str, Path]:
    """The files :func:`write_report` writes for a profile at ``out``: ``profile``, ``roc`` and ``table:<target>`` each."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix == ".json" else out
    paths = {"profile": out, "roc": stem.with_name(stem.name + ".roc.png")}
    for t in targets:
        paths[f"table:{t}"] = stem.with_name(f"{stem.name}.{re.sub(r'[^A-Za-z0-9_-]', '_', t)}.csv")
    return paths


def write_report(calibration: Calibration, out: str | os.PathLike) -> dict[str, Path]:
    """Write the profile to ``out`` and its ROC plot and threshold tables beside it (see :func:`report_paths`); OSError when a file cannot be written."""
    profile = calibration.profile
    points = profile["operating_points"]
    paths = report_paths(out, [p["for"] for p in points])
    paths["profile"].parent.mkdir(parents=True, exist_ok=True)
    write_profile(profile, paths["profile"])
    curves = [
        Curve(p["for"], calibration.rocs[p["for"]], p["threshold"], p["sensitivity"]["value"], p["specificity"]["value"], p["auc"], p["target_sensitivity"])
        for p in points
    ]
    counts = ", ".join(f"{n} {l}" for l, n in profile["sample"]["counts"].items())
    write_roc(curves, f"{profile['model']['name']} {profile['model']['version']} on {counts}", paths["roc"])
    for p in points:
        with open(paths[f"table:{p['for']}"], "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(TABLE_COLUMNS)
            for row in calibration.tables[p["for"]]:
                writer.writerow(["" if row[c] is None else repr(row[c]) if c == "threshold" else f"{row[c]:.4f}" for c in TABLE_COLUMNS])
    return paths
