"""Bundling a converted model: copying it into the package with the next version of its card.

    from converters.bundling import bundle

The conversion (:mod:`converters.build`), the sweep, the logits re-export and the facts embedder
(:mod:`converters.embed`) all bundle through :func:`bundle`; it needs neither TensorFlow nor Keras.
"""
from __future__ import annotations

import datetime
import shutil
from pathlib import Path

from edgecxr.core.card import read_card, release, write_card
from edgecxr.core.registry import MODELS_DIR


def bundle(model_path: Path, change: str) -> None:
    """Copy a converted model into the package; its card continues the bundled model's version history."""
    target = MODELS_DIR / model_path.name
    previous = read_card(target) if target.with_suffix(".json").is_file() else None
    shutil.copy2(model_path, target)
    card = write_card(target, release(read_card(model_path), previous, change, datetime.date.today()))
    print(f"bundled {card.name} {card.version} in {MODELS_DIR}")
