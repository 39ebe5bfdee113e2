"""The noise / content checks give the same answer for the same content at any pixel count (128 to 4096 px).

Images are made in code: noise is drawn per pixel at each size; blank, nearly blank and textured
images are drawn at fixed fractions of the frame, so they are the same picture at every size. The
real films of the cxr3 test split and cxr3-fullres (held out from choosing the thresholds) must
stay unflagged.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgecxr.core.checks import NOISE_SIGMA, input_checks, pixel_noise
from edgecxr.core.imageio import from_array, load_image
from edgecxr.core.inputs import find_images

SIZES = (128, 256, 512, 1024, 2048, 4096)


def codes(image: np.ndarray) -> list[str]:
    return [c.code for c in input_checks(from_array(image))]


def drawn(kind: str, size: int) -> np.ndarray:
    """A picture defined in fractions of the frame (the same at every size), as uint8 (size, size)."""
    return np.ascontiguousarray(np.broadcast_to(_drawn(kind, size), (size, size)))


def _drawn(kind: str, size: int) -> np.ndarray:
    yy, xx = (np.arange(size, dtype=np.float32)[:, None] + 0.5) / size, (np.arange(size, dtype=np.float32)[None, :] + 0.5) / size
    if kind == "nearly blank":
        return np.clip(np.round(128 + 1.2 * np.sin(2 * np.pi * 3 * xx)), 0, 255).astype(np.uint8)
    if kind == "stripes":
        return np.round(127.5 + 100 * np.sin(2 * np.pi * 6 * (xx + 0.5 * yy))).astype(np.uint8)
    if kind == "checkerboard":
        return np.where((np.floor(xx * 8) + np.floor(yy * 8)) % 2 == 0, 60, 190).astype(np.uint8)
    if kind == "cloud":  # 1/f texture drawn once at 64 px and stretched: the same cloud at every size
        small = np.random.default_rng(7).normal(0, 1, (64, 64)).astype(np.float32)
        field = cv2.resize(cv2.GaussianBlur(small, (0, 0), 3), (size, size), interpolation=cv2.INTER_CUBIC)
        return np.clip(np.round(128 + 400 * field), 0, 255).astype(np.uint8)
    if kind == "phantom":  # a chest-like frame: bright mediastinum, two dark lung fields, soft ribs
        lungs = np.exp(-(((xx - 0.33) / 0.13) ** 2 + ((yy - 0.45) / 0.27) ** 2)) + np.exp(-(((xx - 0.67) / 0.13) ** 2 + ((yy - 0.45) / 0.27) ** 2))
        ribs = 0.08 * np.sin(2 * np.pi * 9 * yy) * (lungs > 0.3)
        return np.clip(np.round(255 * (0.75 - 0.45 * lungs + ribs)), 0, 255).astype(np.uint8)
    raise ValueError(kind)


@pytest.mark.parametrize("size", SIZES)
def test_noise_is_flagged_at_every_size(size):
    rng = np.random.default_rng(size)
    uniform = rng.integers(0, 256, (size, size), dtype=np.uint8)
    gaussian = np.clip(np.round(rng.normal(128, 40, (size, size))), 0, 255).astype(np.uint8)
    salt = np.full((size, size), 128, np.uint8)
    hits = rng.uniform(size=(size, size))
    salt[hits < 0.1], salt[hits > 0.9] = 0, 255
    for name, image in (("uniform", uniform), ("gaussian", gaussian), ("salt and pepper", salt)):
        assert "noise" in codes(image), f"{name} noise at {size} px not flagged"
    assert pixel_noise(from_array(uniform).pixels) > 3 * NOISE_SIGMA  # 0.29, or 0.15 for a 4096 px image read at 2048


@pytest.mark.parametrize("kind", ["nearly blank", "stripes", "checkerboard", "cloud", "phantom"])
def test_drawn_content_gets_the_same_checks_at_every_size(kind):
    found = {size: codes(drawn(kind, size)) for size in SIZES}
    assert len({tuple(c) for c in found.values()}) == 1, found
    if kind in ("cloud", "phantom", "nearly blank"):
        assert "noise" not in found[SIZES[0]]
    if kind == "nearly blank":
        assert found[SIZES[0]] == ["nearly_uniform"]


def test_blank_is_nearly_uniform_at_every_size():
    for size in SIZES:
        assert codes(np.full((size, size), 90, np.uint8)) == ["nearly_uniform"]


def test_faint_noise_on_a_film_is_not_flagged_but_strong_noise_is():
    film = drawn("phantom", 1024).astype(np.float32)
    rng = np.random.default_rng(3)
    assert "noise" not in codes(np.clip(film + rng.normal(0, 2, film.shape), 0, 255).astype(np.uint8))  # 2 of 255 grey levels
    assert "noise" in codes(np.clip(film + rng.normal(0, 30, film.shape), 0, 255).astype(np.uint8))


def test_real_held_out_films_are_not_flagged_as_noise(shared_data):
    files = sorted(find_images(shared_data / "cxr3" / "test"))[::6] + sorted(find_images(shared_data / "cxr3-fullres"))
    assert len(files) > 150
    flagged = [str(f) for f in files if any(c.code == "noise" for c in input_checks(load_image(f)))]
    assert flagged == []
