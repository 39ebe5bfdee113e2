"""Temperature scaling: calibrated probabilities from a model's own outputs, and how to measure calibration.

A model's softmax probabilities are softened (T > 1) or sharpened (T < 1) by one scalar fitted on
the validation split (Guo et al. 2017): ``p_T ∝ p ** (1 / T)``, the same as dividing the logits by
``T``.
It never changes which class wins, only how sure the model says it is. The converter fits ``T``
and stores it in the card; the runtime applies it.

A site's own films (``edgecxr calibrate``) refit it, but a few dozen films cannot pin a
temperature down (30 films moved one from 1.54 to 3.14): :func:`shrunk_temperature` pools the
sample's fit with the card's, weighting the sample by its size (``n / (n + TEMPERATURE_PRIOR_FILMS)``
on the log scale), so a small sample moves the card's temperature a little and a large one nearly all
the way.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

# Probabilities are floored here before taking logs: an int8 softmax output is quantized in
# steps of 1/256, so a wrong confident answer reads as exactly 0 and would dominate the fit.
PROBABILITY_FLOOR = 1e-4
LOGITS_FLOOR = 1e-37  # for probabilities computed in float from logits: only float32 underflow is floored
ECE_BINS = 15
# Set by hand: a sample of this many films moves the temperature half way (on the log scale) from the
# card's to its own fit; 30 films move it a quarter of the way, 900 films nine tenths.
TEMPERATURE_PRIOR_FILMS = 100
_TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(20.0), 1201))


def apply_temperature(probs: np.ndarray, temperature: float, floor: float = PROBABILITY_FLOOR) -> np.ndarray:
    """Probabilities (…, C) rescaled by ``temperature``, each floored at ``floor`` first; rows still sum to 1.

    On the float softmax of logits with ``floor`` :data:`LOGITS_FLOOR` this is the softmax of the
    logits divided by ``temperature``, to float32 rounding.
    """
    logp = np.log(np.clip(probs, floor, 1.0)) / temperature
    logp -= logp.max(axis=-1, keepdims=True)
    scaled = np.exp(logp)
    return (scaled / scaled.sum(axis=-1, keepdims=True)).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities (…, C) of ``logits``, computed in float64 and returned as float32."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def negative_log_likelihood(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean -log p(true class), probabilities floored at :data:`PROBABILITY_FLOOR`."""
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], PROBABILITY_FLOOR, 1.0))))


def fit_temperature(probs: np.ndarray, y: np.ndarray, rescale: Callable[[np.ndarray, float], np.ndarray] = apply_temperature) -> float:
    """The temperature in [0.05, 20] that minimises the NLL of ``rescale(probs, T)`` for labels ``y``.

    ``rescale`` is how the model applies a temperature to its uncalibrated probabilities ``probs``
    (N, C): :meth:`edgecxr.core.model.Model.recalibrated` for a loaded model, so the fit minimises the
    loss of what the runtime will compute.
    """
    if len(y) == 0:
        raise ValueError("cannot fit a temperature on no images")
    losses = [negative_log_likelihood(rescale(probs, t), y) for t in _TEMPERATURES]
    return float(_TEMPERATURES[int(np.argmin(losses))])


def shrunk_temperature(fitted: float, card: float, films: int) -> tuple[float, float]:
    """(temperature to use, weight of the sample's fit): ``card * (fitted / card) ** weight``, weight ``films / (films + TEMPERATURE_PRIOR_FILMS)``."""
    weight = films / (films + TEMPERATURE_PRIOR_FILMS)
    return float(card * (fitted / card) ** weight), weight


def reliability_bins(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> list[tuple[float, float, float]]:
    """(mean confidence, accuracy, share of images) of each non-empty equal-width confidence bin."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    return [
        (float(confidence[which == b].mean()), float(correct[which == b].mean()), float(np.mean(which == b)))
        for b in range(bins)
        if np.any(which == b)
    ]


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins."""
    return float(sum(share * abs(accuracy - confidence) for confidence, accuracy, share in reliability_bins(probs, y, bins)))
