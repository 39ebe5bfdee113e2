"""How the tool does at its site, per ISO week and site profile: films read, share flagged, and on films with a
confirmed outcome sensitivity, specificity and yield.

The *profile* of a film is what decided its refer: the model and version, and the site profile's
operating points and head as its result record names them (``no site profile`` without one), so
a week in which the site recalibrated shows one row per profile.

A film is *flagged* when its site profile said refer (without a profile: when its label is not
Normal). Among films with a lab-confirmed positive or negative outcome ("not done" counts for
neither): sensitivity = flagged positives / positives, specificity = unflagged negatives /
negatives, yield = flagged positives / flagged films with an outcome. A ratio without a
denominator is None (an empty cell). Each share and ratio comes with its counts and a 95% Wilson
score interval (``<name>_low``, ``<name>_high``), which stays honest on the small weeks of a
small clinic (1 of 1 is 100%, 95% CI 21-100%).
"""
from __future__ import annotations

import csv
import io
import math
from datetime import datetime
from typing import Any

COLUMNS = ("week", "profile", "read", "flagged", "share_flagged", "with_outcome", "positive", "negative",
           "true_positive", "false_negative", "true_negative", "false_positive", "sensitivity", "specificity", "yield")
RATIOS = ("share_flagged", "sensitivity", "specificity", "yield")
INTERVALS = tuple(f"{r}_{end}" for r in RATIOS for end in ("low", "high"))
Z95 = 1.959963984540054


def weekly(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict (:data:`COLUMNS`, intervals and counts) per ISO week and profile that has films, newest week first;
    ``rows`` from :meth:`Index.read` (time, flagged, outcome, and the record's profile from :func:`profile_of`)."""
    weeks: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        year, week, _ = datetime.fromisoformat(row["time"]).isocalendar()
        w = weeks.setdefault((f"{year}-W{week:02d}", row.get("profile") or ""), {c: 0 for c in COLUMNS[2:]})
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
    for name, profile in sorted(weeks, key=lambda k: (k[0], k[1]), reverse=True):
        w = weeks[(name, profile)]
        flagged_known = w["true_positive"] + w["false_positive"]
        fractions = {"share_flagged": (w["flagged"], w["read"]), "sensitivity": (w["true_positive"], w["positive"]),
                     "specificity": (w["true_negative"], w["negative"]), "yield": (w["true_positive"], flagged_known)}
        row = {"week": name, "profile": profile, **{k: w[k] for k in COLUMNS[2:4]}, "share_flagged": _ratio(w["flagged"], w["read"]),
               **{k: w[k] for k in COLUMNS[5:12]}, **{k: _ratio(*fractions[k]) for k in RATIOS[1:]}}
        for k in RATIOS:
            row[f"{k}_low"], row[f"{k}_high"] = wilson(*fractions[k])
        row["counts"] = fractions
        out.append(row)
    return out


def profile_of(record: dict[str, Any]) -> str:
    """What decided a result's refer, as text: model and version, and the site profile's operating points and head."""
    model = f"{record.get('model') or 'unknown model'} {record.get('model_version') or ''}".strip()
    points = record.get("operating_point") or []
    if not points:
        return f"{model}, no site profile"
    refer = " or ".join(f"{op.get('for')} ≥ {float(op.get('threshold', 0)):.4f}" for op in points)
    return f"{model}, refer at {refer}, {'site' if record.get('head') == 'site' else 'bundled'} head"


def wilson(successes: int, n: int) -> tuple[float | None, float | None]:
    """The 95% Wilson score interval of ``successes`` out of ``n``; (None, None) when ``n`` is 0."""
    if not n:
        return None, None
    p = successes / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def as_csv(table: list[dict[str, Any]]) -> str:
    """The weekly table as CSV, one header line, ratios to 4 decimals, empty cells for None."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=(*COLUMNS, *INTERVALS), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in table:
        writer.writerow({k: ("" if v is None else f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None
