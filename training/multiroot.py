"""Training on several dataset roots at once (``--data cxr3 --data cxr3-plus``).

The first root fixes the labels (its ``train/`` class folders); every further root must use the
``root/{split}/{class}/`` layout with class folders that are a subset of them (``cxr3-plus`` has
only ``Normal``). Splits are the folders, checked against each root's ``manifest.csv``: a file
whose manifest row names another split or class, or a ``patient_group`` (or image sha256) found in
two splits across all roots, is a :class:`DatasetError`. Sources come from each root's manifest.

Only :data:`TRAINING_SPLITS` are ever loaded for training, validation and selection. Report-only
splits (:data:`REPORT_ONLY_SPLITS`, i.e. ``cxr3-plus/external``, a hospital that nothing is
trained, calibrated or selected on) are read only by :func:`load_report_split`.
"""
from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from training.data import SPLITS, Dataset, DatasetError, Split, _class_folders, _images_of, decode_pairs, list_images, read_sources

TRAINING_SPLITS = SPLITS
REPORT_ONLY_SPLITS = ("external",)


def list_roots(roots: Sequence[Path]) -> tuple[list[str], dict[str, list[tuple[Path, str]]]]:
    """Labels (of the first root) and the (file, class) pairs of each training split over all roots."""
    if not roots:
        raise DatasetError("no dataset root given")
    labels, pairs = list_images(Path(roots[0]))
    pairs = {s: list(v) for s, v in pairs.items()}
    for root in map(Path, roots[1:]):
        if not root.is_dir():
            raise DatasetError(f"{root}: dataset folder does not exist")
        given = [s for s in TRAINING_SPLITS if (root / s).is_dir()]
        if not given:
            raise DatasetError(f"{root}: a further root needs split folders ({', '.join(TRAINING_SPLITS)})")
        for split in given:
            extra = sorted(set(_class_folders(root / split)) - set(labels))
            if extra:
                raise DatasetError(f"{root / split}: class folder(s) {extra} are not labels of {roots[0]} {labels}")
            pairs.setdefault(split, []).extend(_images_of(root / split, labels))
    for items in pairs.values():
        assert not any(_split_of(path) in REPORT_ONLY_SPLITS for path, _ in items), "a report-only split was listed"
    _check_consistency([Path(r) for r in roots], pairs)
    return labels, pairs


def load_roots(
    roots: Sequence[str | os.PathLike],
    spec: Mapping[str, Any],
    workers: int = 4,
    verbose: bool = True,
    splits: Sequence[str] = TRAINING_SPLITS,
) -> Dataset:
    """Decode the training splits (or only ``splits`` of them) of all ``roots`` into one :class:`Dataset`.

    The dataset is named after the first root; only a load of the ``train`` split requires one.
    """
    roots = [Path(r) for r in roots]
    if not set(splits) <= set(TRAINING_SPLITS):
        raise ValueError(f"load_roots reads only {TRAINING_SPLITS}; report-only splits load with load_report_split")
    labels, pairs = list_roots(roots)
    pairs = {s: v for s, v in pairs.items() if s in splits}
    sources: dict[str, str] = {}
    for root in roots:
        sources.update(read_sources(root))
    data = decode_pairs(roots[0], labels, pairs, sources, spec, workers, verbose, need_train="train" in splits)
    assert set(data.splits) <= set(TRAINING_SPLITS), f"unexpected splits {sorted(data.splits)}"
    return data


def load_report_split(root: str | os.PathLike, split: str, labels: Sequence[str], spec: Mapping[str, Any], workers: int = 4) -> Split:
    """One report-only split (e.g. ``cxr3-plus/external``), for measuring a finished model; never for training."""
    root = Path(root)
    if split not in REPORT_ONLY_SPLITS:
        raise ValueError(f"{split!r} is not a report-only split {REPORT_ONLY_SPLITS}; training splits load with load_roots")
    folder = root / split
    if not folder.is_dir():
        raise DatasetError(f"{folder}: split folder does not exist")
    pairs = {split: _images_of(folder, list(labels))}
    data = decode_pairs(root, list(labels), pairs, read_sources(root), spec, workers, verbose=False, need_train=False)
    if split not in data.splits:
        raise DatasetError(f"{folder}: no readable image of the labels {list(labels)}")
    return data.splits[split]


def manifest_digests(roots: Sequence[Path]) -> dict[str, str | None]:
    """``str(root)`` -> sha256 of its ``manifest.csv`` (None without one)."""
    out = {}
    for root in map(Path, roots):
        manifest = root / "manifest.csv"
        out[str(root)] = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else None
    return out


def _split_of(path: Path) -> str:
    return path.parent.parent.name


def _check_consistency(roots: list[Path], pairs: Mapping[str, list[tuple[Path, str]]]) -> None:
    """Folder split/class agree with the manifests; no patient group or image hash in two splits."""
    rows: dict[str, dict[str, str]] = {}
    for root in roots:
        manifest = root / "manifest.csv"
        if manifest.is_file():
            with manifest.open(newline="") as fh:
                rows.update({str(root / r["file"]): r for r in csv.DictReader(fh) if r.get("file")})
    seen: dict[tuple[str, str], str] = {}
    for split, items in pairs.items():
        for path, label in items:
            row = rows.get(str(path))
            if row is None:
                continue
            if row.get("split") and row["split"] != split:
                raise DatasetError(f"{path}: in folder {split}/ but its manifest says split {row['split']!r}")
            if row.get("label") and row["label"] != label:
                raise DatasetError(f"{path}: in class folder {label}/ but its manifest says label {row['label']!r}")
            for key in ("patient_group", "sha256"):
                if row.get(key):
                    other = seen.setdefault((key, row[key]), split)
                    if other != split:
                        raise DatasetError(f"{path}: {key} {row[key]!r} is in splits {other} and {split}")

