"""Operating points of one score: the ROC, its AUC, the threshold meeting a target sensitivity, and what it costs.

The one implementation behind ``edgecxr calibrate``, ``edgecxr evaluate --site`` and the
operating-point report. A film is *flagged* (referred) at threshold ``t`` when its score is at or
above ``t``. ``positive`` marks the films that should be flagged (for the abnormality score: every
film whose true class is not Normal).

Intervals are 95% percentile intervals of a stratified bootstrap at the fixed threshold: each
class's films are resampled with replacement, keeping the sample's class counts. For a fixed
threshold the flagged counts of such a resample are binomial, so they are drawn directly
(seeded: the same sample gives the same intervals). They say how sure the sample makes each
number at this threshold; they do not include the uncertainty of choosing the threshold, nor any
difference between the sample's films and a site's future films.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

BOOTSTRAP_REPLICATES = 2000
BOOTSTRAP_SEED = 0
MIN_PER_CLASS = 30  # films of each kind (positive, negative) a sample needs before its operating point is trusted
MIN_MISSED = 3  # positives the target must allow to be missed, so that no one or two films set the threshold
METRICS = ("sensitivity", "specificity", "ppv", "npv", "flagged")


@dataclass(frozen=True)
class Roc:
    """The ROC of a score: one point per distinct score, thresholds in decreasing order."""

    thresholds: np.ndarray
    sensitivity: np.ndarray
    specificity: np.ndarray

    def points(self) -> list[list[float]]:
        """``[threshold, sensitivity, specificity]`` per point, as plain floats (the profile's ``roc``)."""
        return [[float(t), round(float(se), 6), round(float(sp), 6)] for t, se, sp in zip(self.thresholds, self.sensitivity, self.specificity)]


def _split(scores: np.ndarray | Sequence[float], positive: np.ndarray | Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    p = np.asarray(positive, dtype=bool)
    if s.shape != p.shape or s.ndim != 1:
        raise ValueError(f"{s.shape} scores for {p.shape} labels")
    return s[p], s[~p]


def roc(scores: np.ndarray | Sequence[float], positive: np.ndarray | Sequence[bool]) -> Roc:
    """Sensitivity and specificity at every distinct score used as the threshold (needs films of both kinds)."""
    pos, neg = _split(scores, positive)
    if not len(pos) or not len(neg):
        raise ValueError("a ROC needs positive and negative films")
    thresholds = np.unique(np.concatenate([pos, neg]))[::-1]
    flagged_pos = len(pos) - np.searchsorted(np.sort(pos), thresholds, side="left")
    flagged_neg = len(neg) - np.searchsorted(np.sort(neg), thresholds, side="left")
    return Roc(thresholds, flagged_pos / len(pos), 1.0 - flagged_neg / len(neg))


def auc(scores: np.ndarray | Sequence[float], positive: np.ndarray | Sequence[bool]) -> float | None:
    """Area under the ROC: the chance a positive film scores above a negative one (ties count half); None without both kinds."""
    pos, neg = _split(scores, positive)
    if not len(pos) or not len(neg):
        return None
    neg = np.sort(neg)
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below.sum() + 0.5 * ties.sum()) / (len(pos) * len(neg)))


def threshold_for(scores: np.ndarray | Sequence[float], positive: np.ndarray | Sequence[bool], target: float) -> float:
    """The operating threshold for ``target`` sensitivity (0 < target < 1): of the thresholds whose sensitivity is at least
    ``target``, the one with the best specificity and, among those, the highest sensitivity.

    The thresholds are the films' scores (the ROC's points). The best specificity is that of the
    highest threshold meeting the target (the k-th highest positive score); lowering the threshold
    further flags more positives at no cost until it reaches the next negative score below, so the
    threshold chosen is the lowest positive score above that negative: the same specificity,
    every positive that comes free flagged.
    """
    if not 0.0 < target < 1.0:
        raise ValueError(f"target sensitivity must be between 0 and 1, got {target}")
    pos, neg = _split(scores, positive)
    if not len(pos):
        raise ValueError("no positive films to set a threshold on")
    k = max(1, math.ceil(target * len(pos) - 1e-9))  # positives that must be flagged
    highest = float(np.sort(pos)[::-1][k - 1])
    below = neg[neg < highest]
    free = pos[pos > below.max()] if len(below) else pos  # positives flagged before the next negative is
    return float(free.min())  # never above `highest`, itself one of them


def counts_at(scores: np.ndarray | Sequence[float], positive: np.ndarray | Sequence[bool], threshold: float) -> dict[str, int]:
    """True and false positives and negatives when films scoring at or above ``threshold`` are flagged."""
    pos, neg = _split(scores, positive)
    tp, fp = int(np.sum(pos >= threshold)), int(np.sum(neg >= threshold))
    return {"tp": tp, "fn": len(pos) - tp, "tn": len(neg) - fp, "fp": fp}


def rates(tp: np.ndarray, fn: np.ndarray, tn: np.ndarray, fp: np.ndarray) -> dict[str, np.ndarray]:
    """Sensitivity, specificity, PPV, NPV and the share flagged from counts (arrays; NaN where undefined)."""
    def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        return np.divide(a, b, out=np.full(np.broadcast(a, b).shape, np.nan), where=b > 0)

    return {
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
        "flagged": ratio(tp + fp, tp + fn + tn + fp),
    }


def at_threshold(
    scores: np.ndarray | Sequence[float],
    positive: np.ndarray | Sequence[bool],
    threshold: float,
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """The counts at ``threshold`` and each of :data:`METRICS` as ``{"value", "low", "high"}`` (None where undefined).

    ``low``/``high`` bound the stratified-bootstrap 95% interval (see the module docstring). PPV
    and NPV are at the sample's own share of positives.
    """
    c = counts_at(scores, positive, threshold)
    n_pos, n_neg = c["tp"] + c["fn"], c["tn"] + c["fp"]
    rng = np.random.default_rng(seed)
    tp = rng.binomial(n_pos, c["tp"] / n_pos, replicates) if n_pos else np.zeros(replicates, np.int64)
    tn = rng.binomial(n_neg, c["tn"] / n_neg, replicates) if n_neg else np.zeros(replicates, np.int64)
    point = rates(*(np.array(c[k]) for k in ("tp", "fn", "tn", "fp")))
    boot = rates(tp, n_pos - tp, tn, n_neg - tn)
    out: dict[str, Any] = {"threshold": float(threshold), "n_positive": n_pos, "n_negative": n_neg, **c}
    for name in METRICS:
        value, sample = float(point[name]), boot[name][~np.isnan(boot[name])]
        if math.isnan(value):
            out[name] = {"value": None, "low": None, "high": None}
        else:
            low, high = np.percentile(sample, [2.5, 97.5])
            out[name] = {"value": round(value, 4), "low": round(float(low), 4), "high": round(float(high), 4)}
    return out


def operating_report(
    scores: np.ndarray | Sequence[float],
    positive: np.ndarray | Sequence[bool],
    threshold: float,
    sources: Sequence[str] | None = None,
) -> dict[str, Any]:
    """:func:`at_threshold` plus ``auc``; with ``sources`` (one per film, ``""`` where unknown), ``per_source`` of the same."""
    report = {**at_threshold(scores, positive, threshold), "auc": rounded(auc(scores, positive))}
    if sources is not None:
        s, p, src = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool), np.asarray(sources)
        report["per_source"] = {name: operating_report(s[src == name], p[src == name], threshold) for name in sorted({x for x in sources if x})}
    return report


def sample_warnings(n_positive: int, n_negative: int, target: float, what: str) -> list[str]:
    """Why a sample of ``n_positive`` / ``n_negative`` films is too small for ``target`` sensitivity, with how many more it needs."""
    need_pos = max(MIN_PER_CLASS, math.ceil(MIN_MISSED / (1.0 - target) - 1e-9))
    out = []
    if n_positive < need_pos:
        out.append(
            f"{what}: only {n_positive} positive films; a target sensitivity of {target:g} needs at least {need_pos} "
            f"(add {need_pos - n_positive} more): the threshold and its interval rest on too few films"
        )
    if n_negative < MIN_PER_CLASS:
        out.append(
            f"{what}: only {n_negative} negative films; at least {MIN_PER_CLASS} are needed (add {MIN_PER_CLASS - n_negative} more) "
            "before the specificity and share flagged mean much"
        )
    return out


def rounded(value: float | None) -> float | None:
    """``value`` to 4 decimals, as the reports give it; None stays None."""
    return None if value is None else round(value, 4)


TABLE_COLUMNS = ("threshold", "sensitivity", "specificity", "ppv", "npv", "percent_flagged")  # WHO/TDR CAD calibration toolkit's
TABLE_STEP = 0.01


def threshold_table(scores: np.ndarray | Sequence[float], positive: np.ndarray | Sequence[bool], chosen: Sequence[float] = ()) -> list[dict[str, float | None]]:
    """One row of :data:`TABLE_COLUMNS` per threshold 0, 0.01, ..., 1 and per ``chosen`` threshold, in increasing order (None: undefined)."""
    grid = {round(i * TABLE_STEP, 2) for i in range(int(round(1 / TABLE_STEP)) + 1)}
    rows = []
    for t in sorted(grid | {float(c) for c in chosen}):
        c = counts_at(scores, positive, t)
        r = rates(*(np.array(c[k]) for k in ("tp", "fn", "tn", "fp")))
        values = [float(r[k]) for k in ("sensitivity", "specificity", "ppv", "npv")] + [100.0 * float(r["flagged"])]
        rows.append({"threshold": t, **{k: None if math.isnan(v) else v for k, v in zip(TABLE_COLUMNS[1:], values)}})
    return rows


def paired_auc_intervals(
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    positive: np.ndarray | Sequence[bool],
    groups: Sequence[str],
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, dict[str, Any]]:
    """The AUCs of two scores of the same films, and their difference ``a - b``, each with a 95% interval.

    The bootstrap resamples whole ``groups`` (patients) with replacement, the same draw for both
    scores (paired), so the interval of the difference reflects that both were measured on the
    same films and that a patient's films go together. Replicates without both kinds of film are
    drawn again.
    """
    a, b, p = np.asarray(scores_a, np.float64), np.asarray(scores_b, np.float64), np.asarray(positive, bool)
    keys, members = np.unique(np.asarray(groups), return_inverse=True)
    films = np.arange(len(p))
    rng = np.random.default_rng(seed)
    draws: list[tuple[float, float]] = []
    while len(draws) < replicates:
        drawn = np.bincount(rng.integers(0, len(keys), len(keys)), minlength=len(keys))
        idx = np.repeat(films, drawn[members])  # each film as often as its patient was drawn
        if p[idx].any() and not p[idx].all():
            draws.append((auc(a[idx], p[idx]) or 0.0, auc(b[idx], p[idx]) or 0.0))
    boot = np.array(draws)
    values = {"a": auc(a, p), "b": auc(b, p)}
    series = {"a": boot[:, 0], "b": boot[:, 1], "difference": boot[:, 0] - boot[:, 1]}
    values["difference"] = None if values["a"] is None or values["b"] is None else values["a"] - values["b"]
    out = {}
    for name, sample in series.items():
        low, high = np.percentile(sample, [2.5, 97.5])
        out[name] = {"value": rounded(values[name]), "low": round(float(low), 4), "high": round(float(high), 4)}
    return out
