"""The models bundled in the package (``edgecxr/models/``) and how names resolve to files."""
from __future__ import annotations

import os
from pathlib import Path

from edgecxr.core.card import ModelError, read_card, verify_file
from edgecxr.core.site import installed_summary

MODELS_DIR = Path(__file__).parents[1] / "models"
DEFAULT_MODEL = "resnet18-int8"
LUNG_MODEL = "lungs-int8"  # the bundled lung-field model (edgecxr.core.lungs); not a classifier


def bundled_models() -> list[Path]:
    """The bundled classifier ``.tflite`` files, default first (the lung model is loaded by :mod:`edgecxr.core.lungs`)."""
    files = sorted(p for p in MODELS_DIR.glob("*.tflite") if p.stem != LUNG_MODEL)
    return sorted(files, key=lambda p: p.stem != DEFAULT_MODEL)


def resolve(name: str | os.PathLike | None) -> Path:
    """A bundled model's name (``resnet18-int8``), a ``.tflite`` path, or None for the default."""
    if name is None:
        name = DEFAULT_MODEL
    candidate = MODELS_DIR / f"{name}.tflite"
    if isinstance(name, str) and os.sep not in name and not name.endswith(".tflite") and candidate.is_file():
        return candidate
    path = Path(name)
    if path.suffix == ".tflite" or path.exists():
        return path
    known = ", ".join(p.stem for p in bundled_models()) or "none"
    raise ModelError(f"{name}: not a bundled model (bundled: {known}) nor a .tflite file")


def describe(path: Path) -> dict:
    """A model's card summary for ``edgecxr models``, once the file is checked against its card (ModelError otherwise)."""
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    card = read_card(path)
    verify_file(path, card)
    return {
        "name": card.name,
        "path": str(path),
        "bundled": path.parent == MODELS_DIR,
        "default": path.parent == MODELS_DIR and path.stem == DEFAULT_MODEL,
        "family": card.family,
        "variant": card.variant,
        "labels": list(card.labels),
        "input": card.input.to_dict() if card.input else None,
        "preprocessing": card.preprocessing.to_dict(),
        "size_bytes": card.size_bytes,
        "sha256": card.sha256,
        "test_accuracy": card.test_metrics.get("accuracy"),
        "test_macro_f1": card.test_metrics.get("macro_f1"),
        "heatmap": card.cam is not None,
        "temperature": card.temperature.value if card.temperature else None,
        "site_profile": installed_summary(card),
    }
