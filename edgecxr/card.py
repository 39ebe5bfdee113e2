"""Model cards: the JSON sidecar that makes a ``.tflite`` self-describing, and its checks.

A card sits beside its model as ``<name>.json`` and holds: ``name``, ``version``, ``family``,
``variant``, ``architecture``, ``labels`` (in output order), ``input``/``output`` (shape, dtype,
quantization scale/zero point), ``preprocessing`` (the spec :func:`edgecxr.preprocess.preprocess`
runs), ``metrics``, ``training_data``, ``file``, ``sha256``, ``size_bytes`` and ``intended_use``.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from edgecxr.preprocess import validate_spec

REQUIRED_KEYS = ("name", "labels", "preprocessing", "sha256")
INTENDED_USE = (
    "Research and software testing only. Not a medical device; not for diagnosis, triage or any "
    "clinical decision. Trained on public data sets with known confounders (see metrics per source)."
)


class ModelError(Exception):
    """A model or card that cannot be used; the message names the file and the problem."""


def card_path_for(model_path: str | os.PathLike) -> Path:
    return Path(model_path).with_suffix(".json")


def gzip_size(data: bytes) -> int:
    """Bytes of ``data`` gzipped at level 9: the download size, where pruning's zeros show."""
    return len(gzip.compress(data, 9))


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_card(model_path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate the card of ``model_path`` (not yet checked against the model file)."""
    path = card_path_for(model_path)
    if not path.is_file():
        raise ModelError(f"{model_path}: no model card found (expected {path.name} beside it)")
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: model card is not valid JSON ({exc})") from None
    missing = [k for k in REQUIRED_KEYS if k not in card]
    if missing:
        raise ModelError(f"{path}: model card lacks {', '.join(missing)}")
    if not isinstance(card["labels"], list) or len(card["labels"]) < 2:
        raise ModelError(f"{path}: model card labels must be a list of at least two names")
    try:
        card["preprocessing"] = validate_spec(card["preprocessing"])
    except ValueError as exc:
        raise ModelError(f"{path}: {exc}") from None
    return card


def verify_file(model_path: str | os.PathLike, card: dict[str, Any]) -> None:
    """Refuse a model file whose sha256 differs from the card's."""
    actual = sha256_of(model_path)
    if actual != card["sha256"]:
        raise ModelError(
            f"{model_path}: sha256 {actual[:12]}… does not match its card ({card['sha256'][:12]}…); "
            "the model file was changed or corrupted"
        )


def write_card(model_path: str | os.PathLike, card: dict[str, Any]) -> Path:
    """Write ``card`` beside ``model_path`` with the file's current name, size and sha256."""
    model_path = Path(model_path)
    card = {
        **card,
        "file": model_path.name,
        "size_bytes": model_path.stat().st_size,
        "sha256": sha256_of(model_path),
    }
    card.setdefault("intended_use", INTENDED_USE)
    path = card_path_for(model_path)
    path.write_text(json.dumps(card, indent=2) + "\n")
    return path
