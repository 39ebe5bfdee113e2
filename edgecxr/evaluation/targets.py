"""The project's targets as data (``targets.json`` beside this module) and the one evaluator of them.

A target names a measured quantity (``key``), a comparison and a limit. The converter checks the
``model`` group against a model's test metrics and writes the result into its card; the benchmark
matrix checks the ``matrix`` group against its measurements. Reports print the numbers and
met/missed; why a target is missed is written by people, in each report's ``notes.md``.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

TARGETS_FILE = Path(__file__).with_name("targets.json")
_OPS = (">=", "<=", ">", "<")


@dataclass(frozen=True)
class Target:
    """One target: ``reached op value`` is met (e.g. ``macro_f1 >= 0.95``), for ``families`` or all."""

    key: str
    name: str
    op: str
    value: float
    families: tuple[str, ...] | None = None

    def applies_to(self, family: str) -> bool:
        return self.families is None or family in self.families

    def check(self, reached: float, scope: str = "") -> dict[str, Any]:
        """The target against ``reached``: ``met``, and ``margin`` (> 0 room left, < 0 how much it was missed by)."""
        margin = reached - self.value if self.op in (">=", ">") else self.value - reached
        met = margin >= 0 if self.op in (">=", "<=") else margin > 0
        return {"name": self.name, "scope": scope, "op": self.op, "target": self.value, "reached": reached, "met": met, "margin": round(margin, 3)}


@cache
def targets(group: str) -> tuple[Target, ...]:
    """The targets of ``group`` (``model`` or ``matrix``) from :data:`TARGETS_FILE`."""
    data = json.loads(TARGETS_FILE.read_text())
    if group not in data or group == "about":
        raise KeyError(f"{TARGETS_FILE.name} has no target group {group!r}")
    out = []
    for row in data[group]:
        if row["op"] not in _OPS:
            raise ValueError(f"{TARGETS_FILE.name}: target {row['name']!r} has op {row['op']!r}, not one of {_OPS}")
        families = tuple(row["families"]) if "families" in row else None
        out.append(Target(row["key"], row["name"], row["op"], float(row["value"]), families))
    return tuple(out)


def model_quantities(test_metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """The quantities ``model`` targets name, read from a classification report (or a lung model's segmentation report)."""
    covid = test_metrics.get("per_class", {}).get("COVID")
    sources = test_metrics.get("per_source", {})
    return {
        "macro_f1": test_metrics.get("macro_f1"), "covid_sensitivity": covid["recall"] if covid else None, "dice": test_metrics.get("dice_mean"),
        "dice_worst_source": min(s["dice_mean"] for s in sources.values()) if sources and "dice_mean" in test_metrics else None, "dice_worst_film": test_metrics.get("dice_min"),
    }


def model_targets(family: str, test_metrics: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The card's ``targets`` block: {key: {target, reached, met}} for the family's targets with a value."""
    reached = model_quantities(test_metrics)
    out = {}
    for t in targets("model"):
        value = reached.get(t.key)
        if t.applies_to(family) and value is not None:
            out[t.key] = {"target": t.value, "reached": value, "met": t.check(value)["met"]}
    return out
