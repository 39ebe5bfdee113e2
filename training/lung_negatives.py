"""Generated frames with no lung fields, trained with an empty mask so the U-Net can answer "none".

A U-Net trained on chest films alone paints lung-shaped blobs on anything (noise, gradients,
photos): its "no lung fields found" answer would mean nothing. These negatives teach it to leave
the mask empty when there is no chest. Kinds (gray, drawn with numpy / OpenCV at random sizes, then
preprocessed by the card's spec like a real input): white / Gaussian noise, optionally blurred to
any grain size; smooth random surfaces; random filled ellipses, rectangles and lines; real
training films with their tiles shuffled (chest texture, no chest anatomy); and real training films
inverted (a negative film: the classifiers cannot read one, and the ``negative_film`` check alone
misses some). Deliberately *not*
generated here, so the benchmark's catch rate on them is held out: checkerboards, stripes, text,
colour scenes (``benchmarks/nonxray.py`` has them).
"""
from __future__ import annotations

import cv2
import numpy as np

from edgecxr.core.preprocess import SpecLike, preprocess


def negative_frames(n: int, spec: SpecLike, films: np.ndarray, seed: int = 1234) -> np.ndarray:
    """``n`` preprocessed (H, W, 1) frames without lungs; ``films`` are preprocessed training films to shuffle."""
    rng = np.random.default_rng(seed)
    makers = (_noise, _surface, _shapes, lambda r, h, w: _shuffled_film(r, films), lambda r, h, w: _inverted_film(r, films))
    out = []
    for i in range(n):
        h, w = (int(v) for v in rng.integers(128, 512, 2))
        image = makers[i % len(makers)](rng, h, w)
        out.append(preprocess(image, spec))
    return np.stack(out).astype(np.float32)


def _noise(rng, h, w) -> np.ndarray:
    img = rng.normal(0.0, 1.0, (h, w)) if rng.uniform() < 0.5 else rng.uniform(-1.7, 1.7, (h, w))
    if rng.uniform() < 0.6:
        sigma = float(rng.uniform(0.5, 20.0))
        img = cv2.GaussianBlur(img, (0, 0), sigma)
        img /= img.std() or 1.0
    return _to_unit(rng.uniform(0.2, 0.8) + rng.uniform(0.02, 0.3) * img)


def _surface(rng, h, w) -> np.ndarray:
    """A smooth random surface (a low-order polynomial of x and y), from flat to steep."""
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    c = rng.normal(0, 1, 6)
    z = c[0] * xx + c[1] * yy + c[2] * xx * yy + c[3] * xx**2 + c[4] * yy**2 + c[5]
    z = (z - z.min()) / (np.ptp(z) or 1.0)
    lo, hi = sorted(rng.uniform(0, 1, 2))
    return _to_unit(lo + (hi - lo) * z + rng.normal(0, rng.uniform(0, 0.03), (h, w)))


def _shapes(rng, h, w) -> np.ndarray:
    img = np.full((h, w), rng.uniform(0, 1), np.float32)
    for _ in range(int(rng.integers(2, 20))):
        value = float(rng.uniform(0, 1))
        center = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        kind = rng.integers(0, 3)
        if kind == 0:
            axes = (int(rng.uniform(3, w / 3)), int(rng.uniform(3, h / 3)))
            cv2.ellipse(img, center, axes, float(rng.uniform(0, 180)), 0, 360, value, -1)
        elif kind == 1:
            cv2.rectangle(img, center, (int(rng.uniform(0, w)), int(rng.uniform(0, h))), value, -1)
        else:
            cv2.line(img, center, (int(rng.uniform(0, w)), int(rng.uniform(0, h))), value, int(rng.integers(1, 10)))
    if rng.uniform() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 6.0)))
    return _to_unit(img)


def _inverted_film(rng, films: np.ndarray) -> np.ndarray:
    """A training film as a negative (inverted): a chest, but not a film the classifiers can read (the negative_film check's case)."""
    film = 1.0 - films[rng.integers(len(films))][:, :, 0]
    return _to_unit(film ** float(np.exp(rng.uniform(np.log(0.6), np.log(1.6)))))


def _shuffled_film(rng, films: np.ndarray) -> np.ndarray:
    """A training film cut into 4x4 to 8x8 tiles, shuffled and flipped at random."""
    film = films[rng.integers(len(films))][:, :, 0]
    tiles = int(rng.choice([4, 8]))
    side = film.shape[0] // tiles
    cells = [film[r * side : (r + 1) * side, c * side : (c + 1) * side] for r in range(tiles) for c in range(tiles)]
    order = rng.permutation(len(cells))
    cells = [np.rot90(cells[i], int(rng.integers(4))) for i in order]
    rows = [np.hstack(cells[r * tiles : (r + 1) * tiles]) for r in range(tiles)]
    return _to_unit(np.vstack(rows))


def _to_unit(img: np.ndarray) -> np.ndarray:
    return np.clip(img, 0.0, 1.0).astype(np.float32)
