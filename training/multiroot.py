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

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from edgecxr.core.inputs import class_folders
from edgecxr.core.preprocess import SpecLike, as_spec
from edgecxr.evaluation.manifest import Manifest
from training.data import SPLITS, Dataset, DatasetError, Split, _images_of, dataset_manifest, decode_pairs, list_images

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
            extra = sorted(set(class_folders(root / split)) - set(labels))
            if extra:
                raise DatasetError(f"{root / split}: class folder(s) {extra} are not labels of {roots[0]} {labels}")
            pairs.setdefault(split, []).extend(_images_of(root / split, labels))
    for items in pairs.values():
        assert not any(_split_of(path) in REPORT_ONLY_SPLITS for path, _ in items), "a report-only split was listed"
    _check_consistency([Path(r) for r in roots], pairs)
    return labels, pairs


def load_roots(
    roots: Sequence[str | os.PathLike],
    spec: SpecLike,
    workers: int = 4,
    verbose: bool = True,
    splits: Sequence[str] = TRAINING_SPLITS,
) -> Dataset:
    """Decode the training splits (or only ``splits`` of them) of all ``roots`` into one :class:`Dataset`.

    The dataset is named after the first root; only a load of the ``train`` split requires one.
    """
    folders = [Path(r) for r in roots]
    if not set(splits) <= set(TRAINING_SPLITS):
        raise ValueError(f"load_roots reads only {TRAINING_SPLITS}; report-only splits load with load_report_split")
    labels, pairs = list_roots(folders)
    pairs = {s: v for s, v in pairs.items() if s in splits}
    data = decode_pairs(folders[0], labels, pairs, manifests_of(folders), as_spec(spec), workers, verbose, need_train="train" in splits)
    assert set(data.splits) <= set(TRAINING_SPLITS), f"unexpected splits {sorted(data.splits)}"
    return data


def load_report_split(root: str | os.PathLike, split: str, labels: Sequence[str], spec: SpecLike, workers: int = 4) -> Split:
    """One report-only split (e.g. ``cxr3-plus/external``), for measuring a finished model; never for training."""
    root = Path(root)
    if split not in REPORT_ONLY_SPLITS:
        raise ValueError(f"{split!r} is not a report-only split {REPORT_ONLY_SPLITS}; training splits load with load_roots")
    folder = root / split
    if not folder.is_dir():
        raise DatasetError(f"{folder}: split folder does not exist")
    pairs = {split: _images_of(folder, list(labels))}
    data = decode_pairs(root, list(labels), pairs, manifests_of([root]), as_spec(spec), workers, verbose=False, need_train=False)
    if split not in data.splits:
        raise DatasetError(f"{folder}: no readable image of the labels {list(labels)}")
    return data.splits[split]


def manifests_of(roots: Sequence[Path]) -> list[Manifest]:
    """The manifests of ``roots`` that have one, in root order."""
    return [m for m in map(dataset_manifest, roots) if m is not None]


def manifest_digests(roots: Sequence[Path]) -> dict[str, str | None]:
    """``str(root)`` -> sha256 of its ``manifest.csv`` (None without one)."""
    return {str(root): (m.sha256 if (m := dataset_manifest(Path(root))) else None) for root in roots}


def require_manifest(roots: Sequence[Path], sha256: str | None) -> None:
    """DatasetError unless one of ``roots`` has the manifest with ``sha256`` (a model's record of the data it was trained on)."""
    if not sha256:
        raise DatasetError(f"{roots[0]}: the model records no dataset manifest to check these roots against")
    if sha256 not in manifest_digests(roots).values():
        raise DatasetError(f"none of {', '.join(map(str, roots))} has the manifest the model was trained on ({sha256[:12]}…)")


def _split_of(path: Path) -> str:
    return path.parent.parent.name


def _check_consistency(roots: list[Path], pairs: Mapping[str, list[tuple[Path, str]]]) -> None:
    """Folder split/class agree with the manifests; no patient group or image hash in two splits."""
    manifests = manifests_of(roots)
    seen: dict[tuple[str, str], str] = {}
    for split, items in pairs.items():
        for path, label in items:
            row = next((r for m in manifests if (r := m.get(path))), None)
            if row is None:
                continue
            if row.split and row.split != split:
                raise DatasetError(f"{path}: in folder {split}/ but its manifest says split {row.split!r}")
            if row.label and row.label != label:
                raise DatasetError(f"{path}: in class folder {label}/ but its manifest says label {row.label!r}")
            for key, value in (("patient_group", row.patient_group), ("sha256", row.extra.get("sha256", ""))):
                if value:
                    other = seen.setdefault((key, value), split)
                    if other != split:
                        raise DatasetError(f"{path}: {key} {value!r} is in splits {other} and {split}")
