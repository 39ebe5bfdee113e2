"""Finding the image files to work on: the one image-suffix filter of the CLI, evaluation, training and benchmarks."""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from edgecxr.imageio import IMAGE_SUFFIXES


def find_images(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Image files of ``paths`` (one path or several), in the order given.

    A file is taken as given, whatever its suffix (its reader says whether it is an image); a
    folder gives every file below it, recursively, whose suffix is one of
    :data:`edgecxr.imageio.IMAGE_SUFFIXES` (any case), in sorted order.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(path)
    return found


def class_folders(root: str | os.PathLike) -> list[str]:
    """Names of the sub-folders of ``root`` (one per class), sorted; hidden ones are left out."""
    return sorted(d.name for d in Path(root).iterdir() if d.is_dir() and not d.name.startswith("."))
