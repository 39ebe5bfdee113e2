"""The typed parts of a model card, each read from JSON with errors that name its field.

Tensors (:class:`TensorSpec`), calibration (:class:`Temperature`), heatmap weights (:class:`Cam`),
the float32 comparison (:class:`Verification`; segmentation models: :class:`SegmentationVerification`), the release gate
(:class:`Gate`), pruning, int8 calibration images, training
provenance and changelog entries: frozen dataclasses that :class:`edgecxr.core.card.ModelCard` is made of.
"""
from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import numpy as np

from edgecxr.core import fields as f
from edgecxr.core.fields import FieldError, Record, dict_of

DTYPES = ("float32", "float16", "int8", "uint8", "int16", "int32")
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def semver(value: Any, field: str) -> str:
    """A version MAJOR.MINOR.PATCH."""
    if not isinstance(value, str) or not _VERSION.fullmatch(value):
        raise FieldError(f"{field} must be MAJOR.MINOR.PATCH (e.g. 1.0.0), got {value!r}")
    return value


def _date(value: Any, field: str) -> str:
    try:
        datetime.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise FieldError(f"{field} must be a date YYYY-MM-DD, got {f.shown(value)}") from None
    return value


def _shape(value: Any, field: str) -> tuple[int, ...]:
    return tuple(f.integer(v, f"{field}[{i}]", minimum=1) for i, v in enumerate(f.array(value, field, 1)))


def _dtype(value: Any, field: str) -> str:
    if value not in DTYPES:
        raise FieldError(f"{field} must be one of {DTYPES}, got {f.shown(value)}")
    return value


def _numbers(value: Any, field: str) -> tuple[float, ...]:
    return tuple(f.number(v, f"{field}[{i}]") for i, v in enumerate(f.array(value, field, 1)))


def _table(value: Any, field: str) -> tuple[tuple[float, ...], ...]:
    rows = tuple(_numbers(row, f"{field}[{i}]") for i, row in enumerate(f.array(value, field, 1)))
    if len({len(row) for row in rows}) != 1:
        raise FieldError(f"{field} must be a features x classes table (rows of one length)")
    return rows


def _counts(value: Any, field: str) -> tuple[int, ...]:
    return tuple(f.integer(n, f"{field}[{i}]", minimum=0) for i, n in enumerate(f.array(value, field)))


def _bounded(minimum: float | None = None, maximum: float | None = None, above: float | None = None) -> Callable[[Any, str], float]:
    return partial(f.number, minimum=minimum, maximum=maximum, above=above)


def _at_least(minimum: int) -> Callable[[Any, str], int]:
    return partial(f.integer, minimum=minimum)


_FRACTION = _bounded(0, 1)
_DELTA = _bounded(-1, 1)


@dataclass(frozen=True)
class Quantization(Record):
    scale: float
    zero_point: int

    _readers = {"scale": _bounded(above=0), "zero_point": f.integer}


@dataclass(frozen=True)
class TensorSpec(Record):
    """A tensor of the model: shape, dtype and (integer tensors) its quantization."""

    shape: tuple[int, ...]
    dtype: str
    quantization: Quantization | None = None

    _readers = {"shape": _shape, "dtype": _dtype, "quantization": Quantization.from_dict}

    @classmethod
    def from_dict(cls, data: Any, field: str) -> TensorSpec:
        spec = super().from_dict(data, field)
        if spec.quantization is not None and spec.dtype.startswith("float"):
            raise FieldError(f"{field}.quantization must be null for a {spec.dtype} tensor")
        return spec

    @classmethod
    def from_details(cls, detail: Mapping[str, Any]) -> TensorSpec:
        """The spec of an interpreter tensor (``get_input_details()`` and the like)."""
        scale, zero = detail["quantization"]
        return cls(
            tuple(int(v) for v in detail["shape"]),
            np.dtype(detail["dtype"]).name,
            Quantization(float(scale), int(zero)) if scale else None,
        )

    def to_dict(self) -> dict[str, Any]:
        q = self.quantization
        return {"shape": list(self.shape), "dtype": self.dtype, "quantization": dataclasses.asdict(q) if q else None}


@dataclass(frozen=True)
class BeforeAfter(Record):
    before: float
    after: float

    _readers = {"before": _bounded(0), "after": _bounded(0)}


@dataclass(frozen=True)
class Temperature(Record):
    """Temperature scaling of the probabilities (``p ∝ p_raw^(1/value)``) and how it was fitted."""

    value: float
    fitted_on: str | None = None
    images: int | None = None
    nll_val: BeforeAfter | None = None
    ece_test: BeforeAfter | None = None

    _readers = {"value": _bounded(above=0), "fitted_on": f.string, "images": _at_least(1), "nll_val": BeforeAfter.from_dict, "ece_test": BeforeAfter.from_dict}

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None or k == "value"}


@dataclass(frozen=True)
class Cam(Record):
    """What the runtime needs for heatmaps: the classifier's dense weights over the exported feature map."""

    feature_layer: str
    weights: tuple[tuple[float, ...], ...]  # features x classes
    bias: tuple[float, ...]
    feature_map: TensorSpec | None = None  # the feature-map output of the .tflite

    _readers = {"feature_layer": f.string, "weights": _table, "bias": _numbers, "feature_map": TensorSpec.from_dict}

    @classmethod
    def from_dict(cls, data: Any, field: str) -> Cam:
        cam = super().from_dict(data, field)
        if cam.feature_map is not None and cam.feature_map.shape[-1] != len(cam.weights):
            raise FieldError(f"{field}.weights has {len(cam.weights)} rows but {field}.feature_map has {cam.feature_map.shape[-1]} channels")
        return cam

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"feature_layer": self.feature_layer, "weights": [list(r) for r in self.weights], "bias": list(self.bias)}
        if self.feature_map is not None:
            out["feature_map"] = self.feature_map.to_dict()
        return out


@dataclass(frozen=True)
class Thresholds(Record):
    """The agreement-with-float32 rule cards converted before the release gate (:class:`Gate`) were verified with; read, never written."""

    min_agreement: float
    max_macro_f1_drop: float

    _readers = {"min_agreement": _FRACTION, "max_macro_f1_drop": _FRACTION}
    _required = ("min_agreement", "max_macro_f1_drop")


@dataclass(frozen=True)
class Deltas(Record):
    """This variant's test metrics minus the float32 model's."""

    accuracy: float
    macro_f1: float
    sensitivity: Mapping[str, float]  # per label

    _readers = {"accuracy": _DELTA, "macro_f1": _DELTA, "sensitivity": partial(dict_of, _DELTA)}


@dataclass(frozen=True)
class DecodeCheck(Record):
    """The model with its spec's reduced JPEG decode (``decode_min_side``) against the same model decoding in full, on full-size JPEG films.

    ``passed``: labels agree on at least ``min_agreement`` of the films and every film's input checks fire the same.
    """

    films: int
    agreement: float  # share of films with the same label
    max_abs_probability_diff: float
    same_checks: bool  # every film's input checks fired the same
    min_agreement: float
    passed: bool

    _readers = {
        "films": partial(f.integer, minimum=1), "agreement": _FRACTION, "max_abs_probability_diff": _FRACTION, "same_checks": f.boolean,
        "min_agreement": _FRACTION, "passed": f.boolean,
    }


@dataclass(frozen=True)
class Verification(Record):
    """The variant compared with the run's float32 model on the test split (reported), and whether it passed.

    ``passed``: the card's :class:`Gate` passed (float32: and it matches the Keras model); cards from before the gate
    passed the old agreement rule in ``thresholds``.
    """

    agreement_with_float32: float
    max_abs_probability_diff: float
    deltas_to_float32: Deltas
    passed: bool
    thresholds: Thresholds | None = None  # cards from before the gate only
    keras_max_abs_probability_diff: float | None = None  # float32 only
    reduced_decode: DecodeCheck | None = None  # a spec with decode_min_side: its check on full-size JPEG films

    _readers = {
        "agreement_with_float32": _FRACTION, "max_abs_probability_diff": _FRACTION, "deltas_to_float32": Deltas.from_dict,
        "thresholds": Thresholds.from_dict, "passed": f.boolean, "keras_max_abs_probability_diff": _FRACTION,
        "reduced_decode": DecodeCheck.from_dict,
    }

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class GateCheck(Record):
    """One check of the release gate: ``reached op target`` is met; ``target`` is the reference's value plus the
    targets file's offset for a relative check (``reference``: the reference's value)."""

    key: str
    name: str
    op: str
    target: float
    met: bool
    reached: float | None = None  # None: not measured (fails)
    scope: str | None = None  # the class, for per-class checks
    reference: float | None = None

    _readers = {
        "key": f.string, "name": f.string, "op": f.string, "target": f.number, "met": f.boolean, "reached": f.number,
        "scope": f.string, "reference": f.number,
    }
    _required = ("key", "name", "op", "target", "met")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None or k == "reached"}


def _checks(value: Any, field: str) -> tuple[GateCheck, ...]:
    return tuple(GateCheck.from_dict(c, f"{field}[{i}]") for i, c in enumerate(f.array(value, field, 1)))


@dataclass(frozen=True)
class Gate(Record):
    """The release gate a variant was held to (``name``: the gate of ``edgecxr/evaluation/targets.json``) and how it did."""

    name: str
    reference: str  # the model the decisions were compared with
    own_float: str  # the float model the quantization check compared with
    agreement_with_reference: float  # reported, not gated
    checks: tuple[GateCheck, ...]
    passed: bool

    _readers = {
        "name": f.string, "reference": f.string, "own_float": f.string, "agreement_with_reference": _FRACTION,
        "checks": _checks, "passed": f.boolean,
    }

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "checks": [c.to_dict() for c in self.checks]}

    @property
    def failed(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.met]


@dataclass(frozen=True)
class SegmentationGates(Record):
    """A segmentation variant fails verification outside these bounds.

    float32 TFLite vs Keras: max |probability difference| in the frame; any other variant vs
    float32: mean and worst mask Dice, and the val Dice drop.
    """

    keras_max_abs_diff: float = 1e-3
    min_mean_dice_vs_float32: float = 0.98
    min_dice_vs_float32: float = 0.90
    max_dice_drop: float = 0.01

    _readers = {"keras_max_abs_diff": _FRACTION, "min_mean_dice_vs_float32": _FRACTION, "min_dice_vs_float32": _FRACTION, "max_dice_drop": _FRACTION}
    _required = ("keras_max_abs_diff", "min_mean_dice_vs_float32", "min_dice_vs_float32", "max_dice_drop")


@dataclass(frozen=True)
class SegmentationVerification(Record):
    """A segmentation variant's masks checked against the float32 model's (float32: against Keras) on ``films``."""

    passed: bool
    gates: SegmentationGates
    films: str  # which films, at which size
    mask_dice_vs_float32_mean: float | None = None  # the variants other than float32
    mask_dice_vs_float32_min: float | None = None
    val_dice_drop_vs_float32: float | None = None
    keras_max_abs_probability_diff: float | None = None  # float32 only
    mask_dice_vs_keras_mean: float | None = None

    _readers = {
        "passed": f.boolean, "gates": SegmentationGates.from_dict, "films": f.string,
        "mask_dice_vs_float32_mean": _FRACTION, "mask_dice_vs_float32_min": _FRACTION, "val_dice_drop_vs_float32": _DELTA,
        "keras_max_abs_probability_diff": _FRACTION, "mask_dice_vs_keras_mean": _FRACTION,
    }

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Pruning(Record):
    """How a fine-tuned variant was made (pruned, quantization-aware, or both); cards before 1.3 have the first three fields only."""

    target_sparsity: float
    sparsity: float  # measured over the Conv2D and Dense kernels of the Keras model after strip_pruning
    fine_tune_epochs: int
    method: str | None = None  # "magnitude" (prune + fine-tune), "magnitude+pqat" (then prune-preserving QAT) or "qat"
    int8_sparsity: float | None = None  # zero int8 weights of the CONV_2D and FULLY_CONNECTED weight tensors in the .tflite
    learning_rate: float | None = None  # of the pruning fine-tune
    qat_learning_rate: float | None = None
    distillation: float | None = None  # weight of the float model's own probabilities in the fine-tuning targets (0: labels only)
    batchnorm: str | None = None  # "frozen" (inference statistics kept) or "trained" during fine-tuning
    augmented: bool | None = None  # fine-tuned on the run's augmentation (else on the films unchanged)
    min_pruned_weights: int | None = None  # Conv2D/Dense layers with fewer kernel weights were left dense

    _readers = {
        "target_sparsity": _FRACTION, "sparsity": _FRACTION, "fine_tune_epochs": _at_least(0), "method": f.string,
        "int8_sparsity": _FRACTION, "learning_rate": _bounded(above=0), "qat_learning_rate": _bounded(above=0), "distillation": _FRACTION, "batchnorm": f.string,
        "augmented": f.boolean, "min_pruned_weights": _at_least(0),
    }
    _required = ("target_sparsity", "sparsity", "fine_tune_epochs")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Calibration(Record):
    """The images int8 quantization was calibrated on."""

    images: int
    split: str

    _readers = {"images": _at_least(1), "split": f.string}


def _git(value: Any, field: str) -> dict[str, Any]:
    d = f.obj(value, field, ("commit", "dirty"), required=("commit", "dirty"))
    f.string(d["commit"], f"{field}.commit")
    f.boolean(d["dirty"], f"{field}.dirty")
    return d


@dataclass(frozen=True)
class Training(Record):
    """Where the model came from: the training command, the dataset and the library versions."""

    command: str  # paths repo-relative (edgecxr.evaluation.provenance)
    dataset_manifest_sha256: str | None
    counts: Mapping[str, tuple[int, ...]]  # images per label, per split
    versions: Mapping[str, str]
    git: Mapping[str, Any] | None = None  # {"commit", "dirty"} of the checkout that trained it; None when not recorded
    utc_time: str | None = None  # when the training run started

    _readers = {
        "command": f.string, "dataset_manifest_sha256": f.sha256, "counts": partial(dict_of, _counts),
        "versions": partial(dict_of, f.string), "git": _git, "utc_time": f.string,
    }
    _required = ("command", "counts", "versions")

    def to_dict(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self), "counts": {k: list(v) for k, v in self.counts.items()}, "versions": dict(self.versions),
            "git": dict(self.git) if self.git is not None else None,
        }


@dataclass(frozen=True)
class ChangelogEntry(Record):
    version: str
    date: str  # ISO 8601, YYYY-MM-DD
    change: str

    _readers = {"version": semver, "date": _date, "change": f.string}


def _terms(value: Any, field: str) -> tuple[str, ...]:
    """A list of DICOM defined terms (upper case, as headers give them)."""
    return tuple(f.string(v, f"{field}[{i}]").strip().upper() for i, v in enumerate(f.array(value, field, 1)))


@dataclass(frozen=True)
class IntendedFilms(Record):
    """The films a model is meant to read, as a DICOM header says them: the defaults of ``listen`` and ``watch``'s
    routing rules (:mod:`edgecxr.clinic.routing`). A card without this part is taken to mean :data:`TRAINING_FILMS`."""

    modalities: tuple[str, ...]  # Modality
    body_parts: tuple[str, ...]  # BodyPartExamined
    views: tuple[str, ...]  # ViewPosition
    min_age_years: float  # PatientAge, at least
    max_age_years: float | None = None  # and at most (None: no upper bound)

    _readers = {"modalities": _terms, "body_parts": _terms, "views": _terms, "min_age_years": _bounded(minimum=0), "max_age_years": _bounded(minimum=0)}

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# The bundled models' training films (cxr3: frontal chest radiographs, CR and DX, adults and children from 1 year,
# the Guangzhou set's youngest): what a card without ``intended_films`` is taken to mean.
TRAINING_FILMS = IntendedFilms(modalities=("CR", "DX"), body_parts=("CHEST",), views=("PA", "AP"), min_age_years=1.0)
