"""The project's targets as data (``targets.json`` beside this module) and the one evaluator of them.

A target names a measured quantity (``key``), a comparison and a limit. The converter checks the
``model`` group against a model's test metrics and writes the result into its card; the benchmark
matrix checks the ``matrix`` group against its measurements. Reports print the numbers and
met/missed; why a target is missed is written by people, in each report's ``notes.md``. The
``gates`` entry is the release gate (:func:`gate`): the checks a converted variant must pass to be
kept and bundled, and the quantities it only reports (never gated on), measured by :mod:`converters.gate`.
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
    if group not in data or group in ("about", "gates"):
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


@dataclass(frozen=True)
class GateRule:
    """One check of the release gate: ``reached op value`` (``relative``: ``reached op reference + value``)."""

    key: str
    name: str
    op: str
    value: float
    relative: bool = False

    def text(self) -> str:
        """The rule in words, e.g. ``test macro-F1 >= reference - 0.01``."""
        return f"{self.name} {self.op} " + (f"reference {'-' if self.value < 0 else '+'} {abs(self.value):g}" if self.relative else f"{self.value:g}")

    def limit(self, reference: float | None) -> float | None:
        """The limit ``reached`` is held to (None: a relative rule without the reference's value)."""
        if not self.relative:
            return self.value
        return None if reference is None else round(reference + self.value, 4)


@dataclass(frozen=True)
class Reported:
    """A quantity the release gate measures and records beside the reference's value, but never holds a variant to."""

    key: str
    name: str


@dataclass(frozen=True)
class GateSpec:
    """The release gate of :data:`TARGETS_FILE` (``gates``): every converted classifier variant is held to it."""

    name: str
    reference: Mapping[str, str]  # family -> the bundled model its variants are compared with
    quantization: tuple[GateRule, ...]  # the converted file against its own float model
    decisions: tuple[GateRule, ...]  # on the test split
    reported: tuple[Reported, ...]  # measured and recorded, never gated (external_called_normal: the report-only external split)
    pruned_max_gzip_vs_int8: float  # a pruned variant is bundled only at most this gzip size of the plain int8 model's

    def check(self, reached: Mapping[str, Any], reference: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every rule whose quantity applies (a key of ``reached``; ``sensitivity``: one check per class) against ``reached``,
        relative rules against ``reference``'s value. A quantity that applies but was not measured (None) fails.
        Returns dicts of :class:`edgecxr.cardparts.GateCheck`'s fields."""
        out = []
        for rule in (*self.quantization, *self.decisions):
            if rule.key not in reached:
                continue
            value = reached[rule.key]
            scoped = value.items() if isinstance(value, Mapping) else [(None, value)]
            for scope, got in scoped:
                ref = reference.get(rule.key)
                ref = ref.get(scope) if isinstance(ref, Mapping) else ref
                limit = rule.limit(ref)
                if limit is None:
                    raise ValueError(f"gate {self.name!r}: the reference has no {rule.key}{f' for {scope}' if scope else ''}")
                met = got is not None and Target(rule.key, rule.name, rule.op, limit).check(got)["met"]
                check = {"key": rule.key, "name": rule.name, "op": rule.op, "target": limit, "met": bool(met), "reached": got}
                if scope is not None:
                    check["scope"] = scope
                if rule.relative:
                    check["reference"] = ref
                out.append(check)
        return out

    def report(self, reached: Mapping[str, Any], reference: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every reported quantity that applies (a key of ``reached``; None: not measured) with ``reference``'s value when it
        has one. Returns dicts of :class:`edgecxr.cardparts.GateReport`'s fields."""
        out = []
        for quantity in self.reported:
            if quantity.key in reached:
                row = {"key": quantity.key, "name": quantity.name, "reached": reached[quantity.key]}
                if reference.get(quantity.key) is not None:
                    row["reference"] = reference[quantity.key]
                out.append(row)
        return out


@cache
def gate() -> GateSpec:
    """The release gate from :data:`TARGETS_FILE`."""
    data = json.loads(TARGETS_FILE.read_text())["gates"]

    def rules(group: str) -> tuple[GateRule, ...]:
        out = []
        for row in data[group]:
            if row["op"] not in _OPS:
                raise ValueError(f"{TARGETS_FILE.name}: gate rule {row['name']!r} has op {row['op']!r}, not one of {_OPS}")
            out.append(GateRule(row["key"], row["name"], row["op"], float(row["value"]), bool(row.get("relative", False))))
        return tuple(out)

    reported = tuple(Reported(row["key"], row["name"]) for row in data["reported"])
    return GateSpec(data["name"], dict(data["reference"]), rules("quantization"), rules("decisions"), reported, float(data["bundle"]["pruned_max_gzip_vs_int8"]))
