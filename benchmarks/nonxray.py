"""Generated images that are not chest X-rays, for measuring the "no lung fields found" check.

:func:`non_xray_images` draws, with numpy and OpenCV only, a fixed number of images per kind:
blank and nearly blank frames, uniform / Gaussian / salt-and-pepper noise, 1/f "cloud" texture,
linear and radial gradients, checkerboards and stripes, synthetic colour scenes (sky, ground,
sun, houses, trees), random colour shapes, smooth colour fields, text pages and text slides.
Sizes vary (150 to 640 px a side). Gray images are uint8 (H, W); colour ones uint8 (H, W, 3) in
RGB order, as :func:`edgecxr.core.imageio.from_array` takes them. A seed gives the same set every time:
the rule is designed on one seed and reported on another.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

SIZES = ((256, 256), (300, 400), (480, 640), (200, 150), (512, 512), (360, 270))
WORDS = "the lung model must say when an image holds no chest film at all report page patient invoice menu chapter".split()


def non_xray_images(seed: int, per_kind: int = 6) -> list[tuple[str, np.ndarray]]:
    """(kind, image) pairs: ``per_kind`` images of each kind in :data:`KINDS`."""
    rng = np.random.default_rng(seed)
    out = []
    for kind, make in KINDS.items():
        for i in range(per_kind):
            h, w = SIZES[(i + seed) % len(SIZES)]
            out.append((kind, make(rng, h, w)))
    return out


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _blank(rng, h, w):
    return np.full((h, w), int(rng.integers(0, 256)), np.uint8)


def _nearly_blank(rng, h, w):
    return _u8(rng.uniform(20, 235) + rng.normal(0, 1.5, (h, w)))


def _uniform_noise(rng, h, w):
    return _u8(rng.uniform(0, 256, (h, w)))


def _gaussian_noise(rng, h, w):
    return _u8(rng.normal(rng.uniform(60, 190), rng.uniform(10, 60), (h, w)))


def _salt_pepper(rng, h, w):
    img = np.full((h, w), int(rng.integers(60, 200)), np.uint8)
    hits = rng.uniform(size=(h, w))
    img[hits < 0.05] = 0
    img[hits > 0.95] = 255
    return img


def _cloud(rng, h, w):
    """1/f noise: the spectrum of natural images, without any object in it."""
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    amplitude = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / max(h, w)) ** rng.uniform(1.0, 2.0)
    field = np.real(np.fft.ifft2(amplitude * np.exp(2j * np.pi * rng.uniform(size=(h, w)))))
    field = (field - field.min()) / (np.ptp(field) or 1.0)
    return _u8(field * 255)


def _linear_gradient(rng, h, w):
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    t = np.cos(angle) * xx / w + np.sin(angle) * yy / h
    t = (t - t.min()) / (np.ptp(t) or 1.0)
    lo, hi = sorted(rng.uniform(0, 255, 2))
    return _u8(lo + (hi - lo) * t)


def _radial_gradient(rng, h, w):
    cy, cx = rng.uniform(0.2, 0.8, 2) * (h, w)
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(yy - cy, xx - cx)
    r = r / r.max()
    return _u8(255 * (r if rng.uniform() < 0.5 else 1 - r))


def _checkerboard(rng, h, w):
    cell = int(rng.integers(6, 80))
    yy, xx = np.mgrid[0:h, 0:w]
    lo, hi = sorted(rng.integers(0, 256, 2))
    return np.where(((yy // cell) + (xx // cell)) % 2 == 0, lo, hi).astype(np.uint8)


def _stripes(rng, h, w):
    period = rng.uniform(8, 90)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    t = np.cos(angle) * xx + np.sin(angle) * yy
    return _u8(127.5 + 127.5 * np.sin(2 * np.pi * t / period))


def _colour(rng) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in rng.integers(0, 256, 3))
    return r, g, b


def _scene(rng, h, w):
    """A drawn outdoor scene: sky gradient, ground, sun, houses with roofs, trees."""
    img = np.zeros((h, w, 3), np.uint8)
    horizon = int(h * rng.uniform(0.45, 0.7))
    sky_top, sky_low = np.array([rng.integers(30, 120), rng.integers(80, 180), 255]), np.array([200, 220, 255])
    for y in range(horizon):
        img[y] = sky_top + (sky_low - sky_top) * y / horizon
    img[horizon:] = (int(rng.integers(40, 120)), int(rng.integers(110, 190)), int(rng.integers(30, 90)))
    cv2.circle(img, (int(rng.uniform(0.1, 0.9) * w), int(rng.uniform(0.05, 0.3) * h)), int(rng.uniform(0.04, 0.1) * w), (255, 230, 80), -1)
    for _ in range(int(rng.integers(1, 4))):
        x0 = int(rng.uniform(0, 0.8) * w)
        bw, bh = int(rng.uniform(0.1, 0.2) * w), int(rng.uniform(0.1, 0.25) * h)
        cv2.rectangle(img, (x0, horizon - bh), (x0 + bw, horizon + 5), _colour(rng), -1)
        roof = np.array([[x0 - 5, horizon - bh], [x0 + bw + 5, horizon - bh], [x0 + bw // 2, horizon - bh - bh // 2]], np.int32)
        cv2.fillPoly(img, [roof], (int(rng.integers(120, 200)), 40, 30))
    for _ in range(int(rng.integers(1, 5))):
        tx = int(rng.uniform(0, 1) * w)
        cv2.rectangle(img, (tx - 4, horizon - 30), (tx + 4, horizon + 10), (90, 60, 30), -1)
        cv2.ellipse(img, (tx, horizon - 40), (int(rng.integers(15, 35)), int(rng.integers(20, 45))), 0, 0, 360, (30, int(rng.integers(90, 160)), 40), -1)
    return cv2.GaussianBlur(img, (3, 3), 0)


def _shapes(rng, h, w):
    img = np.full((h, w, 3), _colour(rng), np.uint8)
    for _ in range(int(rng.integers(5, 25))):
        kind = rng.integers(0, 3)
        p = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        if kind == 0:
            cv2.circle(img, p, int(rng.uniform(5, min(h, w) / 4)), _colour(rng), -1)
        elif kind == 1:
            cv2.rectangle(img, p, (int(rng.uniform(0, w)), int(rng.uniform(0, h))), _colour(rng), -1)
        else:
            cv2.line(img, p, (int(rng.uniform(0, w)), int(rng.uniform(0, h))), _colour(rng), int(rng.integers(1, 8)))
    return img


def _smooth_colour(rng, h, w):
    return cv2.resize(rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)


def _text(rng, h, w, dark: bool):
    img = np.full((h, w), 20 if dark else 245, np.uint8)
    scale = rng.uniform(0.4, 0.9)
    step = int(30 * scale) + 6
    for y in range(step, h - 4, step):
        line = " ".join(rng.choice(WORDS, 12))
        cv2.putText(img, line, (int(rng.integers(4, 20)), y), cv2.FONT_HERSHEY_SIMPLEX, scale, 235 if dark else 15, 1, cv2.LINE_AA)
    return img


KINDS: dict[str, Callable] = {
    "blank": _blank,
    "nearly blank": _nearly_blank,
    "uniform noise": _uniform_noise,
    "gaussian noise": _gaussian_noise,
    "salt and pepper": _salt_pepper,
    "1/f cloud texture": _cloud,
    "linear gradient": _linear_gradient,
    "radial gradient": _radial_gradient,
    "checkerboard": _checkerboard,
    "stripes": _stripes,
    "colour scene": _scene,
    "colour shapes": _shapes,
    "smooth colour field": _smooth_colour,
    "text page": lambda rng, h, w: _text(rng, h, w, dark=False),
    "text slide (light on dark)": lambda rng, h, w: _text(rng, h, w, dark=True),
}
