"""Model cards: the typed, versioned JSON sidecar that makes a ``.tflite`` self-describing.

A card sits beside its model as ``<name>.json``. :func:`read_card` reads it into a
:class:`ModelCard`, made of the parts in :mod:`edgecxr.core.cardparts`, and validates it completely
(types, ranges, labels, shapes, dtypes, sha256s and how the parts fit together); any problem is
one :class:`ModelError` line naming the file and the field. :func:`write_card` writes a card with the model file's name, size and sha256.

Schema 2 (``"schema_version": 2``) is schema 1 (cards without ``schema_version``) plus
``schema_version`` and ``changelog``; schema 3 adds ``output_kind`` (``probabilities``: the output
tensor holds softmax probabilities; ``logits``: it holds logits and the runtime applies the
softmax, with the temperature, at full resolution). Cards of schemas 1 and 2 are still read (as version 1.0.0, the only
version the converter wrote then, when they name none). A model's ``version`` is bumped whenever
its content changes: the ``.tflite`` or what the card tells the runtime (labels, preprocessing,
temperature, heatmap weights). Each bump adds a ``changelog`` entry ``{version, date, change}``
(:func:`release` does both).
"""
from __future__ import annotations

import dataclasses
import datetime
import gzip
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgecxr.core import families
from edgecxr.core import fields as f
from edgecxr.core.cardparts import (
    TRAINING_FILMS,
    Calibration,
    Cam,
    ChangelogEntry,
    IntendedFilms,
    Pruning,
    SegmentationVerification,
    Temperature,
    TensorSpec,
    Training,
    Verification,
    semver,
)
from edgecxr.core.checks import DEFAULT_PROFILE, PROFILES
from edgecxr.core.embedded import EmbeddedError, embedded_facts
from edgecxr.core.fields import FieldError
from edgecxr.core.preprocess import PreprocessSpec

SCHEMA_VERSION = 3
OUTPUT_KINDS = ("probabilities", "logits")  # what a classifier's output tensor holds
INTENDED_USE = (
    "Research and software testing only. Not a medical device; not for diagnosis, triage or any "
    "clinical decision. Trained on public data sets with known confounders (see metrics per source)."
)


class ModelError(Exception):
    """A model or card that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class ModelCard:
    """A model's card. ``metrics`` ({split: report}) and ``targets`` ({name: status}) stay plain data.

    ``file``, ``size_bytes`` and ``sha256`` are None until :func:`write_card` fills them in.
    """

    name: str
    labels: tuple[str, ...]  # in output order
    preprocessing: PreprocessSpec
    checks: str = DEFAULT_PROFILE  # the input-check profile that fits the films it was trained on (edgecxr.core.checks.PROFILES)
    output_kind: str = "probabilities"  # what the output tensor holds: OUTPUT_KINDS
    version: str = "1.0.0"
    changelog: tuple[ChangelogEntry, ...] = ()
    family: str | None = None
    variant: str | None = None
    architecture: str | None = None
    gzip_bytes: int | None = None
    macs: int | None = None  # multiply-accumulates per inference, from the layer shapes (edgecxr.evaluation.macs)
    pruning: Pruning | None = None
    calibration: Calibration | None = None
    training: Training | None = None
    cam: Cam | None = None
    temperature: Temperature | None = None
    metrics: Mapping[str, Mapping[str, Any]] | None = None
    verification: Verification | SegmentationVerification | None = None  # which one: the family's task
    input: TensorSpec | None = None
    output: TensorSpec | None = None
    targets: Mapping[str, Mapping[str, Any]] | None = None
    file: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    intended_use: str = INTENDED_USE
    intended_films: IntendedFilms | None = None  # which films, by their header (None: the bundled models' TRAINING_FILMS)
    notes: str | None = None  # free text: what the output means, caveats of the data

    @property
    def films(self) -> IntendedFilms:
        """The films the model is meant to read: its ``intended_films``, or the bundled models' training films."""
        return self.intended_films or TRAINING_FILMS

    @property
    def test_metrics(self) -> Mapping[str, Any]:
        """The metrics on the test split (empty when the card has none)."""
        return (self.metrics or {}).get("test", {})

    @classmethod
    def from_dict(cls, data: Any, source: str | os.PathLike) -> ModelCard:
        """Validate plain card data completely (schema 1, 2 or 3); ModelError naming ``source`` and the field."""
        try:
            return _parse(data)
        except ValueError as exc:  # FieldError, and PreprocessSpec's own
            raise ModelError(f"{source}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON data, in schema :data:`SCHEMA_VERSION`; ``macs``, ``pruning`` and ``cam`` are left out when absent."""
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "version": self.version,
            "changelog": [dataclasses.asdict(e) for e in self.changelog],
            "family": self.family,
            "variant": self.variant,
            "architecture": self.architecture,
            "labels": list(self.labels),
            "preprocessing": self.preprocessing.to_dict(),
            "checks": self.checks,
            "output_kind": self.output_kind,
            "gzip_bytes": self.gzip_bytes,
        }
        if self.macs is not None:
            out["macs"] = self.macs
        if self.pruning is not None:
            out["pruning"] = self.pruning.to_dict()
        out["calibration"] = dataclasses.asdict(self.calibration) if self.calibration else None
        out["training"] = self.training.to_dict() if self.training else None
        if self.cam is not None:
            out["cam"] = self.cam.to_dict()
        out.update({
            "temperature": self.temperature.to_dict() if self.temperature else None,
            "metrics": _plain(self.metrics),
            "verification": self.verification.to_dict() if self.verification else None,
            "input": self.input.to_dict() if self.input else None,
            "output": self.output.to_dict() if self.output else None,
            "targets": _plain(self.targets),
            "file": self.file,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "intended_use": self.intended_use,
        })
        if self.intended_films is not None:
            out["intended_films"] = self.intended_films.to_dict()
        if self.notes is not None:
            out["notes"] = self.notes
        return out


# Keys a card must have, per schema; every other key may be missing or null.
_REQUIRED = {
    1: ("name", "labels", "preprocessing", "sha256"),
    2: ("schema_version", "name", "version", "labels", "preprocessing", "file", "size_bytes", "sha256"),
    3: ("schema_version", "name", "version", "labels", "preprocessing", "output_kind", "file", "size_bytes", "sha256"),
}
_NEW_IN = {"changelog": 2, "output_kind": 3}  # keys a card of an older schema does not have
_KEYS = ("schema_version", *(x.name for x in dataclasses.fields(ModelCard)))


def _parse(data: Any) -> ModelCard:
    if not isinstance(data, dict):
        raise FieldError("a model card must be a JSON object")
    schema = data.get("schema_version", 1)
    if type(schema) is not int or schema not in _REQUIRED:
        raise FieldError(f"schema_version {schema!r} is not one this edgecxr reads ({', '.join(map(str, _REQUIRED))}); upgrade edgecxr")
    missing = [k for k in _REQUIRED[schema] if k not in data]
    if missing:
        raise FieldError(f"model card lacks {', '.join(missing)}")
    f.obj(data, "model card", [k for k in _KEYS if _NEW_IN.get(k, 1) <= schema])
    get = data.get
    card = ModelCard(
        name=f.string(data["name"], "name"),
        labels=_labels(data["labels"]),
        preprocessing=PreprocessSpec.from_dict(data["preprocessing"]),
        checks=_profile(get("checks", DEFAULT_PROFILE)),
        output_kind=_output_kind(get("output_kind", "probabilities")),
        version=semver(get("version", "1.0.0"), "version"),
        changelog=tuple(ChangelogEntry.from_dict(e, f"changelog[{i}]") for i, e in enumerate(f.array(get("changelog", []), "changelog"))),
        family=f.optional(f.string, get("family"), "family"),
        variant=f.optional(f.string, get("variant"), "variant"),
        architecture=f.optional(f.string, get("architecture"), "architecture"),
        gzip_bytes=f.optional(f.integer, get("gzip_bytes"), "gzip_bytes", 0),
        macs=f.optional(f.integer, get("macs"), "macs", 0),
        pruning=f.optional(Pruning.from_dict, get("pruning"), "pruning"),
        calibration=f.optional(Calibration.from_dict, get("calibration"), "calibration"),
        training=f.optional(Training.from_dict, get("training"), "training"),
        cam=f.optional(Cam.from_dict, get("cam"), "cam"),
        temperature=f.optional(Temperature.from_dict, get("temperature"), "temperature"),
        metrics=f.optional(_metrics, get("metrics"), "metrics"),
        verification=f.optional(_verification_reader(get("family")), get("verification"), "verification"),
        input=f.optional(TensorSpec.from_dict, get("input"), "input"),
        output=f.optional(TensorSpec.from_dict, get("output"), "output"),
        targets=f.optional(_targets, get("targets"), "targets"),
        file=f.optional(f.string, get("file"), "file"),
        size_bytes=f.optional(f.integer, get("size_bytes"), "size_bytes", 0),
        sha256=f.sha256(data["sha256"], "sha256"),
        intended_use=f.string(get("intended_use", INTENDED_USE), "intended_use"),
        intended_films=f.optional(IntendedFilms.from_dict, get("intended_films"), "intended_films"),
        notes=f.optional(f.string, get("notes"), "notes"),
    )
    _check_parts_fit(card)
    return card


def _task(family: Any) -> str:
    """The task of a registered family; cards of other families (test models) are classifiers."""
    return families.FAMILIES[family].task if isinstance(family, str) and family in families.FAMILIES else "classification"


def _verification_reader(family: Any) -> Callable[[Any, str], Verification | SegmentationVerification]:
    """The verification part of the family's task."""
    return SegmentationVerification.from_dict if _task(family) == "segmentation" else Verification.from_dict


def _check_parts_fit(card: ModelCard) -> None:
    """Cross-field checks: the parts of one card describe the same model."""
    n = len(card.labels)
    if _task(card.family) == "segmentation":  # one sigmoid channel: the probability of labels[1], per pixel
        if n != 2:
            raise FieldError(f"a segmentation model has two labels (background, foreground), got {n}")
        if card.output is not None and (card.output.shape[-1] != 1 or card.output.shape[1:3] != card.preprocessing.size):
            raise FieldError(f"output.shape {list(card.output.shape)} is not one channel at preprocessing size {list(card.preprocessing.size)}")
    elif card.output is not None and card.output.shape[-1] != n:
        raise FieldError(f"output.shape {list(card.output.shape)} does not fit {n} labels")
    if card.input is not None and len(card.input.shape) == 4 and card.input.shape[1:3] != card.preprocessing.size:
        raise FieldError(f"input.shape {list(card.input.shape)} does not fit preprocessing size {list(card.preprocessing.size)}")
    if card.cam is not None and (len(card.cam.weights[0]) != n or len(card.cam.bias) != n):
        raise FieldError(f"cam.weights and cam.bias must have one column per label ({n})")
    if card.changelog:
        versions = [_version_key(e.version) for e in card.changelog]
        if versions != sorted(set(versions)):
            raise FieldError("changelog versions must increase from entry to entry")
        if card.changelog[-1].version != card.version:
            raise FieldError(f"version {card.version} is not the changelog's last ({card.changelog[-1].version})")


def _labels(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) < 2:
        raise FieldError(f"labels must be a list of at least two names, got {f.shown(value)}")
    for i, label in enumerate(value):
        f.string(label, f"labels[{i}]")
    repeated = sorted({x for x in value if value.count(x) > 1})
    if repeated:
        raise FieldError(f"labels must be unique; repeated: {repeated}")
    return tuple(value)


def _profile(value: Any) -> str:
    if value not in PROFILES:
        raise FieldError(f"checks must name a check profile ({', '.join(PROFILES)}), got {f.shown(value)}")
    return value


def _output_kind(value: Any) -> str:
    if value not in OUTPUT_KINDS:
        raise FieldError(f"output_kind must be one of {', '.join(OUTPUT_KINDS)}, got {f.shown(value)}")
    return value


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def _report(value: Any, field: str) -> Mapping[str, Any]:
    """One metrics report (plain data): an object whose accuracy and macro-F1 lie in [0, 1], per source too."""
    d = f.mapping(value, field)
    for key in ("accuracy", "macro_f1"):
        f.optional(f.number, d.get(key), f"{field}.{key}", 0, 1)
    f.optional(f.integer, d.get("n"), f"{field}.n", 0)
    for source, report in (f.optional(f.mapping, d.get("per_source"), f"{field}.per_source") or {}).items():
        _report(report, f"{field}.per_source.{source}")
    return d


def _metrics(value: Any, field: str) -> Mapping[str, Mapping[str, Any]]:
    d = f.mapping(value, field)
    return {split: _report(report, f"{field}.{split}") for split, report in d.items()}


def _targets(value: Any, field: str) -> Mapping[str, Mapping[str, Any]]:
    d = f.mapping(value, field)
    for name, status in d.items():
        s = f.obj(status, f"{field}.{name}", ("target", "reached", "met"), required=("target", "reached", "met"))
        f.number(s["target"], f"{field}.{name}.target")
        f.optional(f.number, s["reached"], f"{field}.{name}.reached")
        f.boolean(s["met"], f"{field}.{name}.met")
    return d


def _plain(mapping: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if mapping is None else json.loads(json.dumps(mapping))


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


def read_card(model_path: str | os.PathLike) -> ModelCard:
    """Read and validate the card of ``model_path`` (not yet checked against the model file)."""
    path = card_path_for(model_path)
    if not path.is_file():
        raise ModelError(f"{model_path}: no model card found (expected {path.name} beside it)")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: model card is not valid JSON ({exc})") from None
    return ModelCard.from_dict(data, path)


def verify_file(model_path: str | os.PathLike, card: ModelCard) -> None:
    """Refuse a model file whose sha256 differs from the card's, or whose embedded facts (:mod:`edgecxr.core.embedded`) differ from the card's."""
    flat = Path(model_path).read_bytes()
    actual = hashlib.sha256(flat).hexdigest()
    if actual != card.sha256:
        raise ModelError(
            f"{model_path}: sha256 {actual[:12]}… does not match its card ({(card.sha256 or '')[:12]}…); "
            "the model file was changed or corrupted"
        )
    try:
        facts = embedded_facts(flat)
    except EmbeddedError as exc:
        raise ModelError(f"{model_path}: {exc}") from None
    if facts is None:
        if card.output_kind == "logits":  # every converter that writes logits also embeds the facts
            raise ModelError(f"{model_path}: its card says the output holds logits, but the model file carries no edgecxr facts; the card belongs to another model")
        return
    differ = disagreements(facts, card)
    if differ:
        raise ModelError(f"{model_path}: its card disagrees with the model file on {', '.join(differ)}; the card was edited or belongs to another model")


def write_card(model_path: str | os.PathLike, card: ModelCard) -> ModelCard:
    """Write ``card`` beside ``model_path`` with the file's current name, size and sha256; returns what was written.

    The card is validated as :func:`read_card` would validate it, before anything is written.
    """
    model_path = Path(model_path)
    card = dataclasses.replace(card, file=model_path.name, size_bytes=model_path.stat().st_size, sha256=sha256_of(model_path))
    path = card_path_for(model_path)
    data = card.to_dict()
    ModelCard.from_dict(data, path)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return card


def release(card: ModelCard, previous: ModelCard | None, change: str, date: datetime.date) -> ModelCard:
    """``card`` as the successor of ``previous`` (the card it replaces, if any).

    Unchanged content keeps the previous version and changelog; changed content gets the next
    minor version with ``change`` logged on ``date``; with no previous card it is 1.0.0, first entry ``change``.
    """
    history: tuple[ChangelogEntry, ...]
    if previous is None:
        version, history = "1.0.0", ()
    elif _content(card) == _content(previous):
        return dataclasses.replace(card, version=previous.version, changelog=previous.changelog)
    else:
        major, minor, _ = _version_key(previous.version)
        version, history = f"{major}.{minor + 1}.0", previous.changelog
    entry = ChangelogEntry(version, date.isoformat(), change)
    return dataclasses.replace(card, version=version, changelog=(*history, entry))


def _content(card: ModelCard) -> tuple:
    """What a model answers with: its file and what the card tells the runtime."""
    return card.sha256, card.labels, card.preprocessing, card.output_kind, card.temperature.value if card.temperature else None, card.cam


def disagreements(embedded: Mapping[str, Any], card: ModelCard) -> list[str]:
    """The :data:`FACTS` on which the model file and ``card`` differ, compared as parsed values (a spec key added later compares by its default)."""
    out = []
    if list(embedded.get("labels") or []) != list(card.labels):
        out.append("labels")
    try:
        spec = PreprocessSpec.from_dict(embedded.get("preprocessing") or {})
    except ValueError:
        spec = None
    if spec != card.preprocessing:
        out.append("preprocessing")
    if embedded.get("output_kind", "probabilities") != card.output_kind:
        out.append("output_kind")
    return out
