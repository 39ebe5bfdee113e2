"""The pictures a study page shows, as PNG: the film as received (or at full size, or windowed), and the result
picture (heatmap over the film).

Browsers show neither DICOM nor TIFF, so the film is decoded with :func:`edgecxr.core.imageio.load_image`
and written as a PNG at most :data:`edgecxr.core.picture.MAX_SIDE` px long; the result
picture is the worker's, from the result writer that holds it (:mod:`edgecxr.clinic.writers`). Both are made
once and kept in ``STORE/web/previews/`` by key.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edgecxr.clinic.store import Store, received_file
from edgecxr.clinic.writers import png, writer_of
from edgecxr.core.imageio import load_image
from edgecxr.core.picture import MAX_SIDE


def film_png(source_root: Path, key: str, full: bool = False, center: int = 50, width: int = 100) -> bytes | None:
    """The received film of ``key`` as PNG bytes (at most MAX_SIDE px long unless ``full``), or None when the store has
    no film for it. ``center`` and ``width`` (percent of the film's range as read, 8 or 16 bits alike) window it:
    (50, 100) shows it as read, a narrower width shows more contrast over a part of the range."""
    path = received_file(source_root, key)
    if path is None:
        return None
    pixels = load_image(path).pixels
    if (center, width) != (50, 100):
        low = center / 100 - width / 200
        pixels = np.clip((pixels - low) / (width / 100), 0, 1)
    scale = MAX_SIDE / max(pixels.shape)
    if scale < 1 and not full:
        pixels = cv2.resize(pixels, (max(1, round(pixels.shape[1] * scale)), max(1, round(pixels.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    return png(np.clip(np.round(pixels * 255), 0, 255).astype(np.uint8))


def result_png(source_root: Path, files: list[str]) -> bytes | None:
    """The result picture among a record's ``results`` files as PNG bytes, or None when there is none."""
    folder = source_root / "results"
    for name in files:
        if Path(name).name != name:  # record files are names in results/, never paths
            continue
        writer = writer_of(name)
        if writer is not None and writer.picture_png is not None and (folder / name).is_file():
            return writer.picture_png(folder / name)
    return None


def cached(store: Store, name: str, make: Callable[[], bytes | None]) -> bytes | None:
    """``previews/<name>`` of the upload store, made by ``make()`` the first time (None is not kept)."""
    path = store.root / "previews" / name
    if path.is_file():
        return path.read_bytes()
    data = make()
    if data is not None:
        path.parent.mkdir(exist_ok=True)
        store.write_bytes(path, data)
    return data
