"""Which received films the model reads, told by their DICOM header: the routing rules of ``listen`` and ``watch``.

The rules are the films the model is meant to read: Modality, BodyPartExamined, ViewPosition and
PatientAge within the card's :class:`edgecxr.core.cardparts.IntendedFilms` (its ``intended_films``, or the
bundled models' training films). ``--rules FILE`` narrows or widens them with a small JSON object
of the same keys, validated whole (one error line naming the key)::

    {"modalities": ["CR", "DX"], "body_parts": ["CHEST"], "views": ["PA", "AP"], "min_age_years": 16, "max_age_years": null}

A film whose header says it is outside them (a lateral view, a hand, a child under the minimum
age) is not classified: it gets a "not analysable" result saying why. A header that says nothing
(the tag missing or empty) is analysed, with a warning naming what was missing. Reasons and
warnings are edgecxr's own words: they name the rule, never the header's value.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any

from pydicom import Dataset

from edgecxr.core.cardparts import IntendedFilms
from edgecxr.core.fields import FieldError

_AGE = re.compile(r"^(\d{3})([DWMY])$")
_DAYS = {"D": 1.0, "W": 7.0, "M": 30.4375, "Y": 365.25}
_TAGS = (("modalities", "Modality", "modality"), ("body_parts", "BodyPartExamined", "body part"), ("views", "ViewPosition", "view"))


class RulesError(Exception):
    """A rules file that cannot be used; ``str()`` names the file and the problem."""


def read_rules(path: str | os.PathLike, defaults: IntendedFilms) -> IntendedFilms:
    """The rules of the JSON file at ``path``, each key missing taken from ``defaults`` (the card's)."""
    try:
        data = json.loads(open(path, encoding="utf-8").read())
    except (OSError, ValueError) as exc:
        raise RulesError(f"{path}: cannot read the rules as JSON ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        if not isinstance(data, dict):
            raise FieldError("the rules must be a JSON object")
        unknown = sorted(set(data) - {x.name for x in dataclasses.fields(IntendedFilms)})
        if unknown:
            raise FieldError(f"unknown keys {unknown}; the rules are {[x.name for x in dataclasses.fields(IntendedFilms)]}")
        rules: IntendedFilms = IntendedFilms.from_dict({**defaults.to_dict(), **data}, "rules")
    except FieldError as exc:
        raise RulesError(f"{path}: {exc}") from None
    return rules


def age_years(value: Any) -> float | None:
    """PatientAge (``nnnD``, ``nnnW``, ``nnnM``, ``nnnY``) in years; None when missing or malformed."""
    m = _AGE.match(str(value or "").strip().upper())
    return int(m[1]) * _DAYS[m[2]] / 365.25 if m else None


def route(header: Dataset, rules: IntendedFilms) -> tuple[str | None, list[str]]:
    """(why the film is outside ``rules``, or None; warnings for what the header did not say)."""
    warnings = []
    for key, keyword, what in _TAGS:
        said = str(header.get(keyword, "") or "").strip().upper()
        allowed = getattr(rules, key)
        if not said:
            warnings.append(f"the header names no {what}; analysed as {'/'.join(allowed)}")
        elif said not in allowed:
            return f"outside the model's intended use: the {what} is not {' or '.join(allowed)}", warnings
    years = age_years(header.get("PatientAge"))
    if years is None:
        warnings.append("the header gives no patient age; analysed as within the model's age range")
    elif years < rules.min_age_years or (rules.max_age_years is not None and years > rules.max_age_years):
        upper = f" to {rules.max_age_years:g}" if rules.max_age_years is not None else " and over"
        return f"outside the model's intended use: the patient's age is not {rules.min_age_years:g}{upper} years", warnings
    return None, warnings
