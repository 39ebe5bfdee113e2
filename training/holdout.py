"""Holding sources out of training (``python -m training --hold-out SOURCE``, repeatable).

A held-out source's films leave the ``train`` and ``val`` splits after decoding (the source of a
film is its manifest row's, as for balanced sampling and the val cells); ``test`` keeps them, so
the run's metrics show the source as one it never saw. Used by the leave-one-source-out benchmark
(:mod:`benchmarks.loso`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from training.data import Dataset, DatasetError, Split
from training.multiroot import manifests_of

HELD_OUT_SPLITS = ("train", "val")


def hold_out(data: Dataset, sources: Sequence[str]) -> tuple[Dataset, dict[str, int]]:
    """``data`` without the films of ``sources`` in :data:`HELD_OUT_SPLITS`, and how many films left each split.

    A source found in no train or val film, or one whose removal leaves a class without training
    films, is a :class:`DatasetError`.
    """
    held = set(sources)
    _check_known(held, {s for name in HELD_OUT_SPLITS if name in data.splits for s in data.splits[name].sources}, data.root)
    splits: dict[str, Split] = {}
    removed: dict[str, int] = {}
    for name, split in data.splits.items():
        if name not in HELD_OUT_SPLITS:
            splits[name] = split
            continue
        keep = np.array([s not in held for s in split.sources], dtype=bool)
        removed[name] = int((~keep).sum())
        if keep.any():
            splits[name] = Split(split.x[keep], split.y[keep], [f for f, k in zip(split.files, keep) if k], [s for s, k in zip(split.sources, keep) if k])
    train = splits.get("train")
    missing = [label for i, label in enumerate(data.labels) if train is None or not (train.y == i).any()]
    if missing:
        raise DatasetError(f"{data.root}: holding out {sorted(held)} leaves class(es) {missing} with no training film")
    return replace(data, splits=splits), removed


def check_sources(roots: Sequence[Path], sources: Sequence[str]) -> None:
    """DatasetError for a source no train or val row of the roots' manifests has: checked before any film is decoded."""
    present = {row.source for manifest in manifests_of(roots) for row in manifest.rows.values() if row.split in HELD_OUT_SPLITS}
    _check_known(set(sources), present, roots[0])


def _check_known(held: set[str], present: set[str], root: Path) -> None:
    unknown = sorted(held - present)
    if unknown:
        raise DatasetError(f"{root}: --hold-out source(s) {unknown} are in no train or val film's manifest row (sources: {sorted(present)})")
