"""Adapting a model to a site (``edgecxr adapt``): a site head fitted on the site's own labelled films, checked before it is used.

:func:`adapt` reads a folder of class folders once (:func:`read_site`: the card head's raw
softmax and the pooled feature map of each film, one interpreter call each), then
:func:`adapt_films` does the rest in numpy:

1. Folds: the films' patients (``patient_group`` of a manifest, else each file its own patient)
   are dealt into :data:`FOLDS` folds, class by class; a patient's films stay in one fold.
2. The shrinkage toward the bundled head (:mod:`edgecxr.core.head`) is chosen from
   :data:`SHRINKAGE_GRID` by the out-of-fold log loss; the temperature is fitted on the
   out-of-fold logits; each target's threshold is chosen on the **out-of-fold** scores, so no
   film's score comes from a head fitted on it.
3. The site head is kept only when, for every target, the lower end of the paired patient
   bootstrap 95% interval of (out-of-fold site AUC - bundled AUC) is above 0; otherwise the
   profile is what ``edgecxr calibrate`` makes (the bundled head, its temperature refitted, the
   thresholds), and says why.
4. A learning curve: the out-of-fold AUC on random subsets of the site's patients, so a site
   sees whether more films would help.

The final head is fitted on all films at the chosen shrinkage. The profile is the one
``calibrate`` writes (:mod:`edgecxr.core.site`, one schema), with ``head`` and ``adaptation`` added.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgecxr.core.calibration import LOGITS_FLOOR, apply_temperature, fit_temperature, negative_log_likelihood, softmax
from edgecxr.core.head import Head, bundled_head, fit_head, in_label_order
from edgecxr.core.model import Model
from edgecxr.core.site import ABNORMAL, check_target, head_to_dict, target_positives, target_scores
from edgecxr.evaluation.calibrate import Calibration, bundled_calibration, operating_points, profile_object, require_both_kinds
from edgecxr.evaluation.evaluate import labelled_files, read_labelled
from edgecxr.evaluation.manifest import Manifest
from edgecxr.evaluation.operating import auc, paired_auc_intervals, rounded

MIN_FILMS_PER_CLASS = 20  # films of each class a site head needs (the shrinkage keeps 20 from doing harm)
FOLDS = 5
FOLD_SEED = 0
SHRINKAGE_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
LEARNING_SIZES = (20, 40, 80, 160, 320, 640, 1280)
LEARNING_REPEATS = 3


@dataclass
class SiteFilms:
    """What :func:`read_site` took from a site's films: one row per film read, in the order listed."""

    files: list[Path]
    y: np.ndarray  # true class, index into the model's labels
    raw: np.ndarray  # (N, C) the card head's raw softmax
    features: np.ndarray  # (N, K) pooled feature map
    groups: list[str]  # patient of each film (its file when unknown)
    sources: list[str] | None  # manifest source of each film ("" where unlisted); None without a manifest
    errors: list[str] = field(default_factory=list)  # unreadable films, "<file>: <reason>"
    duplicates: list[str] = field(default_factory=list)  # films left out as copies of an earlier one, "<copy> = <kept>"
    seconds: float = 0.0  # decoding and interpreter time

    def subset(self, keep: np.ndarray) -> SiteFilms:
        """The films where ``keep`` (bool, one per film) is true."""
        idx = np.flatnonzero(keep)
        return replace(
            self, files=[self.files[i] for i in idx], y=self.y[idx], raw=self.raw[idx], features=self.features[idx],
            groups=[self.groups[i] for i in idx], sources=None if self.sources is None else [self.sources[i] for i in idx],
        )


def read_site(
    model: Model, items: list[tuple[Path, int]], manifest: Manifest | None = None, progress: Callable[[int], None] | None = None
) -> SiteFilms:
    """Read every (file, class) of ``items`` once: raw softmax and pooled features, patient and source from ``manifest``.

    A film whose bytes equal an earlier one's is left out (listed in ``duplicates``): a copy in two
    folds would inflate every cross-validated number. ValueError when the same film is filed under
    two classes.
    """
    start = time.perf_counter()
    seen: dict[str, tuple[Path, int]] = {}
    unique, duplicates = [], []
    for path, label in items:
        digest = _sha256(path)
        if digest is not None and digest in seen:
            first, first_label = seen[digest]
            if first_label != label:
                raise ValueError(f"{path}: the same film as {first}, but filed under {model.labels[label]} there under {model.labels[first_label]}")
            duplicates.append(f"{path} = {first}")
            if progress:
                progress(1)
            continue
        if digest is not None:
            seen[digest] = (path, label)
        unique.append((path, label))
    files, y, outputs, errors = read_labelled(unique, model.bundled_outputs, progress)
    raws, feats = [r for r, _ in outputs], [f for _, f in outputs]
    rows = [manifest.get(f) if manifest is not None else None for f in files]
    return SiteFilms(
        files=files,
        y=np.asarray(y, np.int64),
        raw=np.asarray(raws, np.float32).reshape(len(files), len(model.labels)),
        features=np.asarray(feats, np.float64).reshape(len(files), -1),
        groups=[row.patient_group if row is not None and row.patient_group else str(f) for f, row in zip(files, rows)],
        sources=None if manifest is None else [row.source if row is not None else "" for row in rows],
        errors=errors,
        duplicates=duplicates,
        seconds=time.perf_counter() - start,
    )


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None  # reported as unreadable when the film is read


def adapt(
    model: Model,
    data_dir: str | os.PathLike,
    target_sensitivity: float = 0.90,
    targets: Sequence[str] = (ABNORMAL,),
    manifest: Manifest | None = None,
    progress: Callable[[int], None] | None = None,
    items: list[tuple[Path, int]] | None = None,
) -> Calibration:
    """The site profile of ``model`` on the films of ``data_dir`` (one folder per class): a site head when it is better, see the module docstring.

    ValueError (naming ``data_dir``) for a folder that cannot be used: fewer than two classes, a
    class with fewer than :data:`MIN_FILMS_PER_CLASS` films, a target it has no films for, the same
    film under two classes; ModelError for a model without a feature output.
    ``items`` are ``labelled_files(data_dir, model.labels)`` when the caller has listed them already.
    """
    require_features(model)
    films = read_site(model, labelled_files(data_dir, model.labels) if items is None else items, manifest, progress)
    return adapt_films(model, films, target_sensitivity, targets, data_dir)


def require_features(model: Model) -> None:
    """ValueError unless ``model`` has the feature output and dense weights a site head needs (the ResNets have, MLP-12 has not)."""
    if model.card.cam is None or model.feature_details is None:
        raise ValueError(f"{model.path}: model {model.name} has no feature output, so no site head (use edgecxr calibrate to set its thresholds)")


def head_labels(model: Model, y: np.ndarray, data_dir: str | os.PathLike) -> list[str]:
    """The labels a site head covers: the classes among ``y``, in the model's order; ValueError unless two or more have enough films."""
    counts = {l: int(np.sum(y == i)) for i, l in enumerate(model.labels) if np.any(y == i)}
    if len(counts) < 2:
        raise ValueError(f"{data_dir}: films of {len(counts)} class{'es' if len(counts) != 1 else ''} only ({', '.join(counts) or 'none'}): a site head needs two or more")
    short = [f"{l} has {n} (add {MIN_FILMS_PER_CLASS - n} more)" for l, n in counts.items() if n < MIN_FILMS_PER_CLASS]
    if short:
        raise ValueError(f"{data_dir}: a site head needs at least {MIN_FILMS_PER_CLASS} readable films per class: " + "; ".join(short))
    return list(counts)


def adapt_films(
    model: Model, films: SiteFilms, target_sensitivity: float, targets: Sequence[str], data_dir: str | os.PathLike = "site"
) -> Calibration:
    """:func:`adapt` on films already read (:func:`read_site`)."""
    if model.card.sha256 is None:
        raise ValueError(f"{model.path}: the card has no sha256 for a profile to name")
    require_features(model)
    assert model.card.cam is not None  # require_features
    if not films.files:
        raise ValueError(f"{data_dir}: none of the films could be read")
    start = time.perf_counter()
    labels = model.labels
    covered = head_labels(model, films.y, data_dir)
    for t in targets:
        check_target(t, labels)
        try:
            check_target(t, covered)
        except ValueError:
            raise ValueError(f"{data_dir}: no films for target '{t}' (classes present: {', '.join(covered)})") from None
    require_both_kinds(films.y, labels, targets, data_dir)
    y_head = np.array([covered.index(labels[i]) for i in films.y])
    card_t = model.card.temperature.value if model.card.temperature else 1.0
    prior = bundled_head(np.asarray(model.card.cam.weights), np.asarray(model.card.cam.bias), card_t, labels, covered)
    folds = group_folds(films.groups, y_head, FOLDS, FOLD_SEED)

    losses = [negative_log_likelihood(softmax(out_of_fold(films.features, y_head, folds, prior, s)), y_head) for s in SHRINKAGE_GRID]
    shrinkage = SHRINKAGE_GRID[int(np.argmin(losses))]
    oof_logits = out_of_fold(films.features, y_head, folds, prior, shrinkage)
    temperature = fit_temperature(softmax(oof_logits), y_head, lambda p, t: apply_temperature(p, t, LOGITS_FLOOR))
    site_probs = in_label_order(softmax(oof_logits / temperature), covered, labels)
    bundled_probs = model.recalibrated(films.raw, card_t)

    comparison, better = {}, True
    for t in targets:
        pos = target_positives(films.y, labels, t)
        intervals = paired_auc_intervals(target_scores(site_probs, labels, t), target_scores(bundled_probs, labels, t), pos, films.groups)
        comparison[t] = {"site_auc": intervals["a"], "bundled_auc": intervals["b"], "auc_difference": intervals["difference"]}
        better = better and intervals["difference"]["low"] > 0
    curve = learning_curve(films, y_head, covered, labels, prior, shrinkage, targets)

    fitted = time.perf_counter() - start
    if better:
        head = fit_head(films.features, y_head, prior, shrinkage)
        points, rocs, tables, warnings = operating_points(site_probs, films.y, labels, target_sensitivity, targets, films.sources)
        fit = {
            "value": temperature, "card": card_t,
            "nll_before": round(negative_log_likelihood(bundled_probs, films.y), 4),
            "nll_after": round(negative_log_likelihood(site_probs, films.y), 4),
        }
        result = Calibration(profile_object(model, films.y, len(films.errors), fit, points, warnings), rocs, tables, list(films.errors))
        result.profile["head"] = head_to_dict(head, model.card.cam.feature_layer, shrinkage, len(films.files))
        decision = "site head: its out-of-fold AUC is above the bundled head's for every target (95% interval of the difference above 0)"
    else:
        result = bundled_calibration(model, films.raw, films.y, target_sensitivity, targets, films.sources, list(films.errors))
        decision = (
            "bundled head kept, with the thresholds chosen on these films (as edgecxr calibrate does): the site head is not shown to be better "
            "(the 95% interval of its AUC minus the bundled head's reaches 0 or below for " + ", ".join(t for t in targets if comparison[t]["auc_difference"]["low"] <= 0) + ")"
        )
    bundled_points = operating_points(bundled_probs, films.y, labels, target_sensitivity, targets, None)[0]
    site_points = operating_points(site_probs, films.y, labels, target_sensitivity, targets, None)[0]
    for t, b, s in zip(targets, bundled_points, site_points):
        comparison[t]["bundled"] = _summary(b)
        comparison[t]["site"] = _summary(s)
    result.profile["adaptation"] = {
        "head": "site" if better else "bundled",
        "decision": decision,
        "head_labels": covered,
        "films": len(films.files),
        "patients": len(set(films.groups)),
        "patients_from": "manifest patient_group" if films.sources is not None else "each file its own patient",
        "duplicates_left_out": films.duplicates,
        "folds": FOLDS,
        "shrinkage": {"chosen": shrinkage, "grid": list(SHRINKAGE_GRID), "out_of_fold_nll": [round(v, 4) for v in losses]},
        "temperature_out_of_fold": temperature,
        "targets": comparison,
        "learning_curve": curve,
        "seconds": {"read": round(films.seconds, 2), "fit": round(fitted, 2)},
    }
    if films.duplicates:
        more = " ..." if len(films.duplicates) > 1 else ""
        result.profile["warnings"].append(f"{len(films.duplicates)} duplicate films left out (the same bytes as another film): {films.duplicates[0]}{more}")
    return result


def _summary(point: dict[str, Any]) -> dict[str, Any]:
    """A profile operating point without its ROC: threshold, counts, metrics with intervals, AUC."""
    return {k: v for k, v in point.items() if k not in ("roc", "for", "target_sensitivity")}




def group_folds(groups: Sequence[str], y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold (0..folds-1) of each film: patients dealt out in turn, class by class (of each patient's first film), in a seeded order."""
    rng = np.random.default_rng(seed)
    first: dict[str, int] = {}
    for g, label in zip(groups, y):
        first.setdefault(g, int(label))
    fold_of: dict[str, int] = {}
    turn = 0
    for label in sorted(set(first.values())):
        patients = sorted(g for g, l in first.items() if l == label)
        for i in rng.permutation(len(patients)):
            fold_of[patients[i]] = turn % folds
            turn += 1
    return np.array([fold_of[g] for g in groups])


def out_of_fold(features: np.ndarray, y: np.ndarray, folds: np.ndarray, prior: Head, shrinkage: float) -> np.ndarray:
    """Logits (N, C) of each film from the head fitted on the other folds."""
    out = np.zeros((len(y), len(prior.labels)))
    for k in np.unique(folds):
        held = folds == k
        out[held] = fit_head(features[~held], y[~held], prior, shrinkage).logits(features[held])
    return out


def learning_curve(
    films: SiteFilms, y_head: np.ndarray, covered: Sequence[str], labels: Sequence[str], prior: Head, shrinkage: float, targets: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """Per target, the out-of-fold AUC of a head fitted on random subsets of the site's patients, by the number of films.

    Each size below the site's own is drawn :data:`LEARNING_REPEATS` times (patients in a seeded
    random order, taken until the size is reached); ``auc`` is the mean, ``low``/``high`` the
    lowest and highest of the draws. The last row is all films.
    """
    n = len(films.files)
    rng = np.random.default_rng(FOLD_SEED)
    patients, member = np.unique(np.asarray(films.groups), return_inverse=True)
    curve: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
    for size in [s for s in LEARNING_SIZES if s < n] + [n]:
        draws: dict[str, list[float]] = {t: [] for t in targets}
        for _ in range(LEARNING_REPEATS if size < n else 1):
            keep = _draw(rng, member, len(patients), size) if size < n else np.ones(n, bool)
            if len(set(y_head[keep].tolist())) < len(covered):
                continue
            sub = films.subset(keep)
            folds = group_folds(sub.groups, y_head[keep], FOLDS, FOLD_SEED)
            probs = in_label_order(softmax(out_of_fold(sub.features, y_head[keep], folds, prior, shrinkage)), covered, labels)
            for t in targets:
                value = auc(target_scores(probs, labels, t), target_positives(sub.y, labels, t))
                if value is not None:
                    draws[t].append(value)
        for t in targets:
            if draws[t]:
                curve[t].append({"films": size, "auc": rounded(float(np.mean(draws[t]))), "low": rounded(min(draws[t])), "high": rounded(max(draws[t])), "draws": len(draws[t])})
    return curve


def _draw(rng: np.random.Generator, member: np.ndarray, patients: int, size: int) -> np.ndarray:
    """Films of patients taken in a random order until ``size`` films are in."""
    counts = np.bincount(member, minlength=patients)
    order = rng.permutation(patients)
    taken = order[: int(np.searchsorted(np.cumsum(counts[order]), size) + 1)]
    return np.isin(member, taken)

