"""Shared fixtures: paths to the shared data, and the committed tiny .tflite pair (tests/fixtures)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"  # the tiny models, written by tests/make_tiny.py
TINY_LABELS = ["dark", "bright", "striped"]
TINY_SPEC = {"color": "grayscale", "crop": "none", "size": [32, 32], "interpolation": "area", "scale": "0-1", "clahe": False}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"{SHARED_DATA} is missing: tests need ../shared beside the checkout"
    return SHARED_DATA


def toy_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A separable 3-class toy set of preprocessed 32x32 images: dark, bright, striped."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.uniform(0.0, 0.25, (n, 32, 32, 1)).astype(np.float32)
    x[y == 1] += 0.6
    for column in (0, 16):  # two 4-px bands: a pattern, but no busier than a chest film
        x[y == 2, :, column : column + 4] = 1.0
    return np.clip(x, 0, 1), y


def toy_u8(cls: int, seed: int = 0, size: tuple[int, int] = (64, 64)) -> np.ndarray:
    """A uint8 toy image of class ``cls``: the 32x32 toy pattern scaled to ``size`` (64x64 doubles every pixel)."""
    x, _ = toy_images(3, seed=seed)
    img = np.round(x[cls, :, :, 0] * 255.0).astype(np.uint8)
    return cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def write_png(path, cls: int, seed: int = 0):
    """Write the 64x64 toy image of class ``cls`` to ``path`` (folders made as needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), toy_u8(cls, seed))
    return path


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    """The committed tiny CNN as float32 and int8 ``.tflite`` with cards: {variant: path} (see tests/make_tiny.py).

    Its last feature map is exported as a second output, so heatmaps work on it; the Keras model
    lies beside the files as ``tiny.keras``, its probabilities on ``toy_images(30)`` as
    ``keras_probs.npy``. Tests read these files and never write beside them.
    """
    return {variant: FIXTURES / f"tiny-{variant}.tflite" for variant in ("float32", "int8")}
