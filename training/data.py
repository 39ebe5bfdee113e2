"""Reading a one-folder-per-class dataset into memory, preprocessed once with the runtime's code.

Layouts understood:

- ``root/{train,val,test}/{class}/<image>`` — the splits are given (``../shared/data/cxr3``);
- ``root/{class}/<image>`` — a split is made: by ``patient_group`` when ``root/manifest.csv``
  has that column (no patient in two splits), else by file name; 70 / 15 / 15, deterministic.

``root/manifest.csv`` (optional, read by :func:`edgecxr.evaluation.manifest.read_manifest`) has a ``file``
column relative to ``root``; its ``source`` column, when present, is kept so metrics can be
reported per source.
"""
from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np

from edgecxr.core.imageio import ImageError, load_image
from edgecxr.core.inputs import class_folders, find_images
from edgecxr.core.lungs import spec_box
from edgecxr.core.preprocess import PreprocessSpec, SpecLike, as_spec, preprocess
from edgecxr.evaluation.manifest import Manifest, ManifestError, read_manifest

SPLITS = ("train", "val", "test")


class DatasetError(Exception):
    """A dataset folder that cannot be trained on; the message says why."""


@dataclass
class Split:
    """One split held in memory: images ``x`` (N, H, W, 1) float32 and labels ``y`` (N,)."""

    x: np.ndarray
    y: np.ndarray
    files: list[str]
    sources: list[str]


@dataclass
class Dataset:
    root: Path
    labels: list[str]
    splits: dict[str, Split]
    skipped: list[str] = field(default_factory=list)  # "<file>: <reason>" of unreadable images
    manifest_sha256: str | None = None


def list_images(root: Path) -> tuple[list[str], dict[str, list[tuple[Path, str]]]]:
    """Find the class folders and the (file, class) pairs of each split, without decoding."""
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder does not exist")
    given = [s for s in SPLITS if (root / s).is_dir()]
    if given:
        if "train" not in given:
            raise DatasetError(f"{root}: has {given} split folders but no train/")
        labels = class_folders(root / "train")
        pairs = {s: _images_of(root / s, labels) for s in given}
    else:
        labels = class_folders(root)
        pairs = _split_by_group(_images_of(root, labels), dataset_manifest(root))
    if len(labels) < 2:
        raise DatasetError(f"{root}: found {len(labels)} class folder(s) {labels}; need at least two")
    if not pairs.get("train"):
        raise DatasetError(f"{root}: no images found in the training split")
    return labels, pairs


def load_dataset(root: str | os.PathLike, spec: SpecLike, workers: int = 4, verbose: bool = True) -> Dataset:
    """Decode and preprocess every image of every split once, in parallel; skip unreadable ones."""
    spec = as_spec(spec)
    root = Path(root)
    labels, pairs = list_images(root)
    manifest = dataset_manifest(root)
    return decode_pairs(root, labels, pairs, [manifest] if manifest else [], spec, workers, verbose)


def decode_pairs(
    root: Path,
    labels: list[str],
    pairs: Mapping[str, list[tuple[Path, str]]],
    manifests: Sequence[Manifest],
    spec: PreprocessSpec,
    workers: int = 4,
    verbose: bool = True,
    need_train: bool = True,
) -> Dataset:
    """Decode listed (file, class) pairs per split into a :class:`Dataset` named after ``root``.

    Sources come from the first of ``manifests`` that lists a file; the dataset's manifest hash is
    the first manifest's (``root``'s own).
    """
    skipped: list[str] = []
    splits = {}
    for name, items in pairs.items():
        if not items:
            continue
        arrays = _decode_all([p for p, _ in items], spec, workers, f"decoding {name}" if verbose else None)
        keep = [i for i, a in enumerate(arrays) if not isinstance(a, str)]
        skipped += [arrays[i] for i in range(len(items)) if isinstance(arrays[i], str)]
        if not keep:
            continue
        files = [str(items[i][0]) for i in keep]
        splits[name] = Split(
            x=np.stack([arrays[i] for i in keep]),
            y=np.array([labels.index(items[i][1]) for i in keep], dtype=np.int64),
            files=files,
            sources=[next((row.source for m in manifests if (row := m.get(f))), "") for f in files],
        )
    if need_train and "train" not in splits:
        raise DatasetError(f"{root}: none of the training images could be read")
    if skipped and verbose:
        print(f"skipped {len(skipped)} unreadable image(s):")
        for line in skipped[:20]:
            print(f"  {line}")
    return Dataset(root, labels, splits, skipped, manifests[0].sha256 if manifests else None)


def dataset_manifest(root: Path) -> Manifest | None:
    """``root/manifest.csv``, or None when there is none; a manifest that cannot be read raises DatasetError."""
    path = root / "manifest.csv"
    if not path.is_file():
        return None
    try:
        return read_manifest(path)
    except ManifestError as exc:
        raise DatasetError(str(exc)) from None


def _images_of(folder: Path, labels: list[str]) -> list[tuple[Path, str]]:
    out = []
    for label in labels:
        cls = folder / label
        if cls.is_dir():
            out += [(f, label) for f in find_images(cls)]
    return out


def _split_by_group(items: list[tuple[Path, str]], manifest: Manifest | None) -> dict[str, list[tuple[Path, str]]]:
    """70/15/15 split by a stable hash of the patient group (or the file name)."""
    out: dict[str, list[tuple[Path, str]]] = {s: [] for s in SPLITS}
    for path, label in items:
        row = manifest.get(path) if manifest else None
        key = row.patient_group if row and row.patient_group else path.name
        bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100
        out["train" if bucket < 70 else "val" if bucket < 85 else "test"].append((path, label))
    return out


def _decode_all(paths: list[Path], spec: PreprocessSpec, workers: int, title: str | None) -> list:
    """Preprocessed arrays, or an error string for each file that could not be read."""

    def one(path: Path):
        try:
            pixels = load_image(path, spec.decode_min_side).pixels
            return preprocess(pixels, spec, spec_box(pixels, spec))
        except ImageError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        arrays = pool.map(one, paths)
        if title is None:
            return list(arrays)
        with click.progressbar(arrays, length=len(paths), label=title, file=sys.stdout) as bar:  # no TensorFlow here
            return list(bar)
