"""Site profiles: the operating points a site chose on its own films (``edgecxr calibrate``), read, checked and applied.

A profile is a JSON file made for one model, named by its card's name and sha256; a model whose
sha256 differs (another model, or a new release of the same one) refuses it. It holds the
temperature refitted on the site's films (shrunk toward the card's by their number), which then replaces the card's, and one operating point
per target: ``"abnormal"`` (score ``1 - p(Normal)``, every non-Normal film a positive) or one of
the model's labels (score ``p(label)``). A film is referred when any target's score is at or
above its threshold. The rest of the file (ROC points, the metrics at each threshold with their
intervals, the sample's class counts, warnings) is the report behind those choices.

A profile made by ``edgecxr adapt`` (schema 2) may also hold a ``head``: the site's own classifier
head over the model's pooled feature map (:mod:`edgecxr.core.head`), which then replaces the card's dense
layer, with ``temperature`` as its temperature; and ``adaptation``, the cross-validated report
behind it (:mod:`edgecxr.evaluation.adapt`). A head is refused unless the model has the feature output it
names, of the same width. Schema 1 profiles (``calibrate`` before heads) are still read.

``edgecxr calibrate --install`` copies a profile to ``<config>/sites/<model name>.json``, where
``<config>`` is ``$EDGECXR_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/edgecxr``, else
``~/.config/edgecxr``; the command line (and ``load_model(site=True)``) then use it by default.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from edgecxr.core import fields as f
from edgecxr.core.card import ModelCard, ModelError
from edgecxr.core.head import Head

NORMAL = "Normal"  # the label whose complement is the abnormality score
ABNORMAL = "abnormal"  # the target "any label but Normal"
KIND = "edgecxr site profile"
SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
CONFIG_ENV = "EDGECXR_CONFIG_DIR"
PROFILE_KEYS = (
    "kind", "schema_version", "model", "created", "sample", "temperature", "operating_points", "warnings", "bootstrap", "head", "adaptation",
)
HEAD_KEYS = ("labels", "feature", "mean", "scale", "weights", "bias", "shrinkage", "films")
FEATURE_KEYS = ("output", "pooling", "width")
POOLING = "mean"  # a head reads the feature map averaged over its rows and columns, as the card's dense layer does
POINT_KEYS = (
    "for", "target_sensitivity", "threshold", "n_positive", "n_negative", "tp", "fn", "tn", "fp",
    "sensitivity", "specificity", "ppv", "npv", "flagged", "auc", "per_source", "roc",
)


class SiteError(ModelError):
    """A site profile that cannot be used (unreadable, malformed, or made for another model); names the file."""


@dataclass(frozen=True)
class OperatingPoint:
    """Refer a film when the score of ``target`` is at or above ``threshold`` (chosen for ``target_sensitivity``)."""

    target: str  # "abnormal" or a label; the JSON key is "for"
    threshold: float
    target_sensitivity: float

    def to_dict(self) -> dict[str, Any]:
        return {"for": self.target, "threshold": self.threshold, "target_sensitivity": self.target_sensitivity}


@dataclass(frozen=True)
class SiteProfile:
    """A profile as the runtime uses it; ``data`` is the whole JSON object."""

    path: Path
    model: str
    sha256: str
    temperature: float
    points: tuple[OperatingPoint, ...]
    counts: Mapping[str, int]
    data: Mapping[str, Any]
    head: Head | None = None  # the site's own head (``edgecxr adapt``); None: the card's dense layer
    feature_output: str | None = None  # the card's feature layer the head reads

    @property
    def head_name(self) -> str:
        """Which head gives this profile's probabilities: ``"site"`` or ``"bundled"`` (every result says it)."""
        return "site" if self.head is not None else "bundled"

    def check(self, card: ModelCard) -> None:
        """SiteError unless this profile was made for the model of ``card`` and every label it names is one of the model's."""
        if card.sha256 != self.sha256:
            raise SiteError(
                f"{self.path}: made for model {self.model} (sha256 {self.sha256[:12]}...), not for {card.name} {card.version} "
                f"(sha256 {(card.sha256 or 'unknown')[:12]}...): run edgecxr {'adapt' if self.head is not None else 'calibrate'} again for this model"
            )
        unknown = sorted({p.target for p in self.points if p.target != ABNORMAL} - set(card.labels)) + sorted(set(self.counts) - set(card.labels))
        if unknown:
            raise SiteError(f"{self.path}: names labels {unknown} that model {card.name} does not have ({', '.join(card.labels)})")
        if NORMAL not in card.labels and any(p.target == ABNORMAL for p in self.points):
            raise SiteError(f"{self.path}: has an '{ABNORMAL}' operating point but model {card.name} has no '{NORMAL}' label")
        if self.head is not None:
            self._check_head(card, self.head)

    def _check_head(self, card: ModelCard, head: Head) -> None:
        fm = card.cam.feature_map if card.cam is not None else None
        if fm is None or card.cam is None:
            raise SiteError(f"{self.path}: has a site head, but model {card.name} has no feature output for it to read")
        if self.feature_output != card.cam.feature_layer or int(fm.shape[-1]) != len(head.mean):
            raise SiteError(
                f"{self.path}: its head reads {len(head.mean)} features of output {self.feature_output!r}, but model {card.name} has "
                f"{int(fm.shape[-1])} features of output {card.cam.feature_layer!r}: run edgecxr adapt again for this model"
            )
        unknown = sorted(set(head.labels) - set(card.labels))
        if unknown:
            raise SiteError(f"{self.path}: its head names labels {unknown} that model {card.name} does not have ({', '.join(card.labels)})")
        for p in self.points:
            try:
                check_target(p.target, head.labels)
            except ValueError as exc:
                raise SiteError(f"{self.path}: operating point {p.target!r} does not fit its head: {exc}") from None

    def decide(self, probs: np.ndarray, labels: Sequence[str]) -> bool:
        """Whether a film with class probabilities ``probs`` (label order) is referred: any target at or above its threshold."""
        return any(float(target_scores(probs[None], labels, p.target)[0]) >= p.threshold for p in self.points)


SiteSource = Union[str, os.PathLike, bool, None, SiteProfile]


def check_target(target: str, labels: Sequence[str]) -> None:
    """ValueError unless a model with ``labels`` can score ``target``."""
    if target == ABNORMAL and NORMAL not in labels:
        raise ValueError(f"the model has no '{NORMAL}' label, so no abnormality score (labels: {', '.join(labels)}): name one of its labels as the target")
    if target != ABNORMAL and target not in labels:
        raise ValueError(f"'{target}' is neither '{ABNORMAL}' nor a label of the model ({', '.join(labels)})")


def target_scores(probs: np.ndarray, labels: Sequence[str], target: str) -> np.ndarray:
    """The score of ``target`` for each row of ``probs`` (N, C), in float64: ``1 - p(Normal)`` for abnormal, else ``p(target)``."""
    check_target(target, labels)
    labels = list(labels)
    if target == ABNORMAL:
        return 1.0 - probs[:, labels.index(NORMAL)].astype(np.float64)
    return probs[:, labels.index(target)].astype(np.float64)


def target_positives(y: np.ndarray | Sequence[int], labels: Sequence[str], target: str) -> np.ndarray:
    """Which films (true class indices ``y``) are positives for ``target``: not Normal for abnormal, else of that label."""
    y = np.asarray(y, dtype=np.int64)
    return y != list(labels).index(NORMAL) if target == ABNORMAL else y == list(labels).index(target)


def read_profile(path: str | os.PathLike) -> SiteProfile:
    """Read and check a profile file; SiteError (``"<file>: <reason>"``) for anything that is not a usable profile."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SiteError(f"{path}: site profile does not exist") from None
    except IsADirectoryError:
        raise SiteError(f"{path}: site profile is a folder, not a JSON file") from None
    except OSError as exc:
        raise SiteError(f"{path}: site profile cannot be read ({exc.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SiteError(f"{path}: not a JSON file") from None
    try:
        d = f.obj(data, "profile", PROFILE_KEYS, ("kind", "schema_version", "model", "temperature", "operating_points"))
        if d["kind"] != KIND:
            raise f.FieldError(f"kind must be {KIND!r}, got {f.shown(d['kind'])}: not a site profile")
        if f.integer(d["schema_version"], "schema_version") not in READABLE_SCHEMAS:
            raise f.FieldError(f"schema_version {d['schema_version']} is not one this edgecxr reads ({', '.join(map(str, READABLE_SCHEMAS))})")
        model = f.obj(d["model"], "model", ("name", "version", "sha256"), ("name", "sha256"))
        temperature = f.obj(d["temperature"], "temperature", ("value", "card", "fitted", "films", "weight", "nll_before", "nll_after"), ("value",))
        sample = f.obj(d.get("sample", {}), "sample", ("counts", "unreadable"))
        points = tuple(_point(p, f"operating_points[{i}]") for i, p in enumerate(f.array(d["operating_points"], "operating_points", 1)))
        temperature_value = f.number(temperature["value"], "temperature.value", above=0)
        head, feature_output = read_head(d["head"], temperature_value) if d.get("head") is not None else (None, None)
        if d.get("adaptation") is not None:
            f.mapping(d["adaptation"], "adaptation")
        return SiteProfile(
            path=path,
            model=f.string(model["name"], "model.name"),
            sha256=f.sha256(model["sha256"], "model.sha256"),
            temperature=temperature_value,
            points=points,
            counts=f.dict_of(lambda v, k: f.integer(v, k, 0), sample.get("counts", {}), "sample.counts"),
            data=d,
            head=head,
            feature_output=feature_output,
        )
    except f.FieldError as exc:
        raise SiteError(f"{path}: {exc}") from None


def _point(value: Any, field: str) -> OperatingPoint:
    p = f.obj(value, field, POINT_KEYS, ("for", "target_sensitivity", "threshold"))
    return OperatingPoint(
        target=f.string(p["for"], f"{field}.for"),
        threshold=f.number(p["threshold"], f"{field}.threshold", 0.0, 1.0),
        target_sensitivity=f.number(p["target_sensitivity"], f"{field}.target_sensitivity", above=0.0, maximum=1.0),
    )


def read_head(value: Any, temperature: float) -> tuple[Head, str]:
    """A profile's ``head`` (see :data:`HEAD_KEYS`) and the feature output it reads; FieldError for anything malformed."""
    h = f.obj(value, "head", HEAD_KEYS, ("labels", "feature", "mean", "scale", "weights", "bias"))
    feature = f.obj(h["feature"], "head.feature", FEATURE_KEYS, FEATURE_KEYS)
    if feature["pooling"] != POOLING:
        raise f.FieldError(f"head.feature.pooling must be {POOLING!r}, got {f.shown(feature['pooling'])}")
    width = f.integer(feature["width"], "head.feature.width", 1)
    labels = tuple(f.string(l, f"head.labels[{i}]") for i, l in enumerate(f.array(h["labels"], "head.labels", 2)))
    if len(set(labels)) != len(labels):
        raise f.FieldError(f"head.labels names a label twice: {list(labels)}")

    rows = f.array(h["weights"], "head.weights", width)
    if len(rows) != width:
        raise f.FieldError(f"head.weights must have {width} rows (head.feature.width), got {len(rows)}")
    weights = np.array([_numbers(r, f"head.weights[{i}]", len(labels)) for i, r in enumerate(rows)], np.float64)
    scale = np.array(_numbers(h["scale"], "head.scale", width), np.float64)
    if not (scale > 0).all():
        raise f.FieldError(f"head.scale must be > 0 everywhere, got {f.shown(float(scale.min()))}")
    mean, bias = np.array(_numbers(h["mean"], "head.mean", width)), np.array(_numbers(h["bias"], "head.bias", len(labels)))
    head = Head(labels, mean, scale, weights, bias, temperature)
    return head, f.string(feature["output"], "head.feature.output")


def _numbers(value: Any, field: str, length: int) -> list[float]:
    """``value`` as exactly ``length`` finite numbers."""
    values = f.array(value, field, length)
    if len(values) != length:
        raise f.FieldError(f"{field} must hold {length} numbers, got {len(values)}")
    return [f.number(v, f"{field}[{i}]") for i, v in enumerate(values)]


def head_to_dict(head: Head, feature_output: str, shrinkage: float, films: int) -> dict[str, Any]:
    """A head as a profile's ``head`` object (its temperature goes in the profile's ``temperature``)."""
    return {
        "labels": list(head.labels),
        "feature": {"output": feature_output, "pooling": POOLING, "width": int(len(head.mean))},
        "mean": [float(v) for v in head.mean],
        "scale": [float(v) for v in head.scale],
        "weights": [[float(v) for v in row] for row in head.weights],
        "bias": [float(v) for v in head.bias],
        "shrinkage": float(shrinkage),
        "films": int(films),
    }


def write_profile(data: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a profile object (as :func:`edgecxr.evaluation.calibrate.calibrate` builds it) to ``path``; return the path."""
    path = Path(path)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def config_dir() -> Path:
    """edgecxr's per-user configuration folder (see the module docstring)."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "edgecxr"


def installed_path(model_name: str) -> Path:
    """Where the installed profile of the model named ``model_name`` (its card's name) lives, whether or not there is one."""
    return config_dir() / "sites" / f"{re.sub(r'[^A-Za-z0-9._-]', '_', model_name)}.json"


def install_profile(profile: SiteProfile) -> Path:
    """Copy ``profile``'s file to where it becomes the default for its model; return the installed path."""
    target = installed_path(profile.model)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.resolve() != profile.path.resolve():
        shutil.copyfile(profile.path, target)
    return target


def resolve_site(site: SiteSource, card: ModelCard) -> SiteProfile | None:
    """The profile ``site`` names for the model of ``card``, checked: a profile, a path, True (the installed one, if any) or None/False (none)."""
    if site is None or site is False:
        return None
    if site is True:
        path = installed_path(card.name)
        if not path.exists():
            return None
        profile = read_profile(path)
    else:
        profile = site if isinstance(site, SiteProfile) else read_profile(site)
    profile.check(card)
    return profile


def installed_summary(card: ModelCard) -> dict[str, Any] | None:
    """What ``edgecxr models`` says of the profile installed for the model of ``card``: None, or its path with its
    ``operating_points`` and ``created``, or with ``error`` when it does not fit the model (another release, say)."""
    path = installed_path(card.name)
    if not path.exists():
        return None
    try:
        profile = read_profile(path)
        profile.check(card)
    except SiteError as exc:
        return {"path": str(path), "error": str(exc)}
    return {
        "path": str(path), "created": profile.data.get("created"), "temperature": profile.temperature, "head": profile.head_name,
        "operating_points": [p.to_dict() for p in profile.points],
    }
