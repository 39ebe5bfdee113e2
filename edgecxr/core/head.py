"""A site's own classifier head: multinomial logistic regression on the model's pooled features, fitted in numpy.

The ResNet models end in global average pooling and one dense layer, so their class logits are
``pooled @ W + b`` with ``W`` and ``b`` in the card (:mod:`edgecxr.core.cam`). A site head is a new
``W`` and ``b`` over some of the model's labels (the classes a site has films of), fitted on the
site's films with the bundled head as the prior: the penalty ``shrinkage / 2 * |W - W0|^2``
(in standardised feature units) pulls it toward the bundled head, so with few films it stays
close to it and with many it follows the films.

Features are standardised with the site's own mean and scale before the fit; the head keeps
both, so applying it is one affine map and a softmax (nothing measurable per prediction).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgecxr.core.calibration import softmax

NEWTON_STEPS = 50
NEWTON_TOLERANCE = 1e-8  # stop when the objective moves less than this
CG_STEPS = 200  # conjugate-gradient iterations per Newton step, at most
CG_TOLERANCE = 1e-3  # relative residual at which a Newton step's solve stops (truncated Newton: the outer steps make up the rest)
BIAS_SHRINKAGE = 1e-4  # a little pull of the biases toward the prior's, so the fit has one solution
SCALE_FLOOR = 1e-6  # a feature that does not vary on the site's films is left unscaled


@dataclass(frozen=True)
class Head:
    """Logits ``((features - mean) / scale) @ weights + bias``, divided by ``temperature``, over ``labels``."""

    labels: tuple[str, ...]
    mean: np.ndarray  # (K,)
    scale: np.ndarray  # (K,)
    weights: np.ndarray  # (K, C)
    bias: np.ndarray  # (C,)
    temperature: float = 1.0

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Uncalibrated logits (N, C) of pooled ``features`` (N, K)."""
        z = (np.asarray(features, np.float64) - self.mean) / self.scale
        return z @ self.weights + self.bias

    def probabilities(self, features: np.ndarray, labels: Sequence[str], calibrated: bool = True) -> np.ndarray:
        """Probabilities (N, len(labels)) in the model's label order: 0 for a label the head does not cover."""
        return in_label_order(softmax(self.logits(features) / (self.temperature if calibrated else 1.0)), self.labels, labels)


    def cam_weights(self, labels: Sequence[str]) -> np.ndarray:
        """(K, len(labels)) weights on the raw features, 0 for labels the head lacks: a class activation map of this head."""
        out = np.zeros((len(self.mean), len(labels)))
        out[:, [list(labels).index(l) for l in self.labels]] = self.weights / self.scale[:, None]
        return out


def in_label_order(probs: np.ndarray, covered: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Probabilities (N, len(covered)) over ``covered`` as (N, len(labels)) in the order of ``labels``, 0 for the labels not covered."""
    out = np.zeros((len(probs), len(labels)), np.float32)
    out[:, [list(labels).index(l) for l in covered]] = probs
    return out


def bundled_head(weights: np.ndarray, bias: np.ndarray, temperature: float, model_labels: Sequence[str], labels: Sequence[str]) -> Head:
    """The card's dense layer (``weights`` (K, C) and ``bias`` over ``model_labels``) as a head over ``labels``, at ``temperature``."""
    columns = [list(model_labels).index(l) for l in labels]
    k = np.asarray(weights).shape[0]
    return Head(
        tuple(labels), np.zeros(k), np.ones(k), np.asarray(weights, np.float64)[:, columns], np.asarray(bias, np.float64)[columns], float(temperature)
    )


def fit_head(features: np.ndarray, y: np.ndarray, prior: Head, shrinkage: float) -> Head:
    """The head over ``prior.labels`` that minimises the mean cross-entropy on (``features``, ``y``) plus the pull to ``prior``.

    ``y`` holds indices into ``prior.labels``. The prior's calibrated logits are the starting
    point: in the site's standardised units its weights are ``prior.weights * scale / T``. Fitted
    by Newton's method with conjugate-gradient steps (the objective is strictly convex); the result has temperature 1.
    """
    x = np.asarray(features, np.float64)
    y = np.asarray(y, np.int64)
    mean = x.mean(axis=0)
    scale = np.maximum(x.std(axis=0), SCALE_FLOOR)
    z = (x - mean) / scale
    # the prior's calibrated logits, rewritten for standardised features: z @ w0 + b0
    w_prior = prior.weights / prior.scale[:, None] * scale[:, None] / prior.temperature
    b_prior = (prior.bias + ((mean - prior.mean) / prior.scale) @ prior.weights) / prior.temperature
    w, b = _newton(z, np.eye(len(prior.labels))[y], w_prior, b_prior, shrinkage)
    return Head(prior.labels, mean, scale, w, b, 1.0)


def _newton(z: np.ndarray, targets: np.ndarray, w0: np.ndarray, b0: np.ndarray, shrinkage: float) -> tuple[np.ndarray, np.ndarray]:
    """Minimise the penalised cross-entropy by Newton's method, each step solved by conjugate gradients on Hessian-vector products.

    A product costs two (N, K) x (K, C) matrix products, so a step never forms the
    C(K+1)-square Hessian; the line search halves a step until the objective does not rise.
    """
    n = len(z)
    za = np.hstack([z, np.ones((n, 1))])
    theta0 = np.vstack([w0, b0[None]])  # (K + 1, C)
    penalty = np.full((len(theta0), 1), float(shrinkage))
    penalty[-1] = BIAS_SHRINKAGE

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        logits = za @ theta
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return float(-np.sum(targets * logp) / n + 0.5 * np.sum(penalty * (theta - theta0) ** 2)), np.exp(logp)

    # CG's preconditioner: the inverse of Böhning's bound on the Hessian, 1/2 (I - 11'/C) (x) Za'Za/n + penalty. z is centred,
    # so Za'Za/n is z'z/n beside a 1 for the bias, and the bound is diagonal in its eigenvectors and those of I - 11'/C.
    k, c = z.shape[1], targets.shape[1]
    values, vectors = np.linalg.eigh(z.T @ z / n)
    gram_vectors = np.zeros((k + 1, k + 1))
    gram_vectors[:k, :k], gram_vectors[k, k] = vectors, 1.0
    gram_values = np.r_[np.clip(values, 0, None), 1.0]
    class_vectors = np.linalg.eigh(np.eye(c) - 1.0 / c)[1]  # eigenvalue 0 for the all-ones direction (first), 1 for the rest
    class_values = np.r_[0.0, np.ones(c - 1)]
    bound = 0.5 * gram_values[:, None] * class_values[None] + penalty

    def bound_inverse(v: np.ndarray) -> np.ndarray:
        return gram_vectors @ ((gram_vectors.T @ v @ class_vectors) / bound) @ class_vectors.T

    theta = theta0.copy()
    loss, p = objective(theta)
    for _ in range(NEWTON_STEPS):
        grad = za.T @ (p - targets) / n + penalty * (theta - theta0)

        def hessian_times(v: np.ndarray, p: np.ndarray = p) -> np.ndarray:
            u = za @ v
            return za.T @ (p * (u - np.sum(p * u, axis=1, keepdims=True))) / n + penalty * v

        step = _conjugate_gradients(hessian_times, grad, bound_inverse)
        size = 1.0
        while True:  # backtracking: a full Newton step can overshoot far from the optimum
            candidate = theta - size * step
            new_loss, new_p = objective(candidate)
            if new_loss <= loss or size < 1e-6:
                break
            size /= 2
        theta, p, moved, loss = candidate, new_p, loss - new_loss, new_loss
        if moved < NEWTON_TOLERANCE:
            break
    return theta[:-1], theta[-1]


def _conjugate_gradients(
    times: Callable[[np.ndarray], np.ndarray], b: np.ndarray, precondition: Callable[[np.ndarray], np.ndarray],
    steps: int = CG_STEPS, tolerance: float = CG_TOLERANCE,
) -> np.ndarray:
    """An approximate solution of ``times(x) = b`` for a symmetric positive definite operator, with a preconditioner (an approximate inverse)."""
    x = np.zeros_like(b)
    r = b.copy()
    u = precondition(r)
    d = u.copy()
    ru = float(np.sum(r * u))
    stop = tolerance**2 * float(np.sum(b * b))
    for _ in range(steps):
        hd = times(d)
        alpha = ru / float(np.sum(d * hd))
        x += alpha * d
        r -= alpha * hd
        if float(np.sum(r * r)) <= stop:
            break
        u = precondition(r)
        ru, previous = float(np.sum(r * u)), ru
        d = u + (ru / previous) * d
    return x
