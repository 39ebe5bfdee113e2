"""How the tool does at its site, per ISO week: films read, share flagged, and on films with a confirmed outcome
sensitivity, specificity and yield.

A film is *flagged* when its site profile said refer (without a profile: when its label is not
Normal). Among films with a lab-confirmed positive or negative outcome ("not done" counts for
neither): sensitivity = flagged positives / positives, specificity = unflagged negatives /
negatives, yield = flagged positives / flagged films with an outcome. A ratio without a
denominator is None (an empty cell).
"""
from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

COLUMNS = ("week", "read", "flagged", "share_flagged", "with_outcome", "positive", "negative",
           "true_positive", "false_negative", "true_negative", "false_positive", "sensitivity", "specificity", "yield")


def weekly(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict (:data:`COLUMNS`) per ISO week that has films, newest week first; ``rows`` from :meth:`Index.read`."""
    weeks: dict[str, dict[str, Any]] = {}
    for row in rows:
        year, week, _ = datetime.fromisoformat(row["time"]).isocalendar()
        w = weeks.setdefault(f"{year}-W{week:02d}", {c: 0 for c in COLUMNS[1:]})
        flagged, outcome = bool(row["flagged"]), row["outcome"]
        w["read"] += 1
        w["flagged"] += flagged
        if outcome in ("positive", "negative"):
            w["with_outcome"] += 1
            w[outcome] += 1
            kind = {("positive", True): "true_positive", ("positive", False): "false_negative",
                    ("negative", False): "true_negative", ("negative", True): "false_positive"}[(outcome, flagged)]
            w[kind] += 1
    out = []
    for name in sorted(weeks, reverse=True):
        w = weeks[name]
        flagged_known = w["true_positive"] + w["false_positive"]
        out.append({
            "week": name, **{k: w[k] for k in COLUMNS[1:3]}, "share_flagged": _ratio(w["flagged"], w["read"]),
            **{k: w[k] for k in COLUMNS[4:11]},
            "sensitivity": _ratio(w["true_positive"], w["positive"]),
            "specificity": _ratio(w["true_negative"], w["negative"]),
            "yield": _ratio(w["true_positive"], flagged_known),
        })
    return out


def as_csv(table: list[dict[str, Any]]) -> str:
    """The weekly table as CSV, one header line, ratios to 4 decimals, empty cells for None."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({k: ("" if v is None else f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None
