"""The head every benchmark's results.json starts with (provenance, the machine, the model measured), and how a report is written."""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
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


def write_report(out: Path, results: dict[str, Any], markdown: Callable[[dict[str, Any]], str], stem: str = "") -> None:
    """``results`` as ``OUT/<stem>.json`` and its markdown as ``OUT/<stem>.md`` (``results.json`` and ``report.md`` without a stem), the markdown also printed."""
    text = markdown(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem or 'results'}.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / f"{stem or 'report'}.md").write_text(text)
    print(text)
