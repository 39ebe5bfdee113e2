"""The models bundled in the package (``edgecxr/models/``), how names resolve to files, and how their card numbers are shown.

:func:`shown_numbers` is the one rounding rule of the bundled-models table (README, docs) and of
``edgecxr models``: metrics to 3 decimals and sizes to 0.1 MB, halves rounded up from the value as the
card stores it (0.8885 -> 0.889; binary floating point would print 0.888).
"""
from __future__ import annotations

import os
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from edgecxr.core.card import ModelCard, ModelError, read_card, verify_file
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
    """A model's card summary for ``edgecxr models``, once the file is checked against its card (ModelError otherwise).

    The summary fields, the numbers as the models table shows them (``shown``, :func:`shown_numbers`)
    and ``card``: the whole card, every field (changelog, metrics, verification, intended use...).
    """
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    card = read_card(path)
    verify_file(path, card)
    return {
        "name": card.name,
        "version": card.version,
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
        "shown": shown_numbers(card),
        "card": card.to_dict(),
    }


def decimals(value: float, places: int) -> str:
    """``value`` to ``places`` decimals, a half rounded up, from its shortest decimal form (``repr``): 0.8885 -> 0.889."""
    return str(Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def shown_numbers(card: ModelCard) -> dict[str, Any]:
    """A card's numbers as the bundled-models table and ``edgecxr models`` print them ("-" where the card has none).

    ``size`` (MB, 1 decimal, with the gzip download's in MB, 2 decimals, when the card has it), ``accuracy``, ``macro_f1`` and ``sensitivity`` per label (3 decimals)
    on the test split, and ``agreement`` with float32 (percent, 1 decimal) for a quantized model.
    """
    test = card.test_metrics
    per_class = test.get("per_class", {})
    agreement = getattr(card.verification, "agreement_with_float32", None) if card.variant != "float32" else None
    return {
        "size": f"{decimals((card.size_bytes or 0) / 1e6, 1)} MB" + (f" ({decimals(card.gzip_bytes / 1e6, 2)} MB gzip)" if card.gzip_bytes else ""),
        "accuracy": decimals(test["accuracy"], 3) if "accuracy" in test else "-",
        "macro_f1": decimals(test["macro_f1"], 3) if "macro_f1" in test else "-",
        "sensitivity": {label: decimals(per_class[label]["recall"], 3) if label in per_class else "-" for label in card.labels},
        "agreement": f"{decimals(100 * agreement, 1)}%" if agreement is not None else "-",
    }


def release() -> dict[str, str]:
    """The version of each bundled model (classifiers, default first, then the lung model), from their cards."""
    return {p.stem: read_card(p).version for p in [*bundled_models(), MODELS_DIR / f"{LUNG_MODEL}.tflite"] if p.is_file()}
