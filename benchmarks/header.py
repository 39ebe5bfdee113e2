"""The head every benchmark's results.json starts with: provenance, the machine, the model measured."""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from edgecxr.core import registry
from edgecxr.core.card import read_card
from edgecxr.evaluation.benchmark import platform_info
from edgecxr.evaluation.provenance import invocation, record


def model_run_header(command: str, argv: Sequence[str] | None, model: str | os.PathLike | None) -> tuple[dict[str, Any], str]:
    """(``provenance``, ``platform`` and ``model`` {name, version, sha256} of a run of ``command``, the model's path)."""
    model_path = registry.resolve(model)
    card = read_card(model_path)
    header = {
        "provenance": record(invocation(command, argv), models=[model_path]),
        "platform": platform_info(),
        "model": {"name": card.name, "version": card.version, "sha256": card.sha256},
    }
    return header, str(model_path)
