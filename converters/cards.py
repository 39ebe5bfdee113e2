"""The card of one converted variant, built in one function from the run record and what was measured.

:func:`model_card` is called twice per variant: before measuring, for a card the runtime can load
the model with, and after, with the tensors the runtime reports and the verification results.
"""
from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tf_keras as keras

from converters.quantize import has_feature_map
from edgecxr.core.card import ModelCard, gzip_size
from edgecxr.core.cardparts import TRAINING_FILMS, Calibration, Cam, ChangelogEntry, Gate, Pruning, Temperature, TensorSpec, Training, Verification
from edgecxr.core.checks import DEFAULT_PROFILE
from edgecxr.core.families import RESNET_STEMS
from edgecxr.core.families import family as family_of
from edgecxr.core.families import variant as variant_of
from edgecxr.core.model import Model
from edgecxr.core.preprocess import PreprocessSpec
from edgecxr.evaluation.macs import macs
from edgecxr.evaluation.provenance import REPO_ROOT, command_line
from edgecxr.evaluation.targets import model_targets


@dataclass(frozen=True)
class Source:
    """What every variant of one conversion shares."""

    info: dict[str, Any]  # the run's run.json
    run: Path
    labels: Sequence[str]
    calibration_images: int  # training images int8 quantization is calibrated on
    day: datetime.date  # of the conversion, for the changelog
    checks: str = DEFAULT_PROFILE  # the input-check profile for the films the model was trained on


@dataclass(frozen=True)
class Measured:
    """A variant loaded back through the runtime and run on the test split."""

    runtime: Model
    test: dict[str, Any]  # the test-split metrics report
    verification: Verification
    temperature: Temperature | None  # None without a validation split to fit it on
    gate: Gate | None = None  # the release gate (converters.gate)


def architecture(info: dict[str, Any], model: keras.Model) -> str:
    """The card's architecture line of ``model`` trained by the run ``info`` (run.json); its stem named when not the 7x7 one."""
    spec = PreprocessSpec.from_dict(info["preprocessing"])
    stem = info["config"].get("stem", "7x7")
    described = family_of(model.name).describe(*spec.size, model.count_params(), info["config"].get("width"))
    return described + (f"; stem: {RESNET_STEMS[stem]}" if stem != "7x7" else "")


def model_card(source: Source, model: keras.Model, variant: str, flat: bytes, pruning: Pruning | None = None, measured: Measured | None = None) -> ModelCard:
    """The card of ``model`` (the Keras model converted, pruned or not) as ``variant`` with ``.tflite`` bytes ``flat``."""
    family, info = family_of(model.name), source.info
    spec = PreprocessSpec.from_dict(info["preprocessing"])
    runtime = measured.runtime if measured else None
    return ModelCard(
        name=f"{family.name}-{variant}",
        labels=tuple(source.labels),
        preprocessing=spec,
        checks=source.checks,
        output_kind="logits",  # converters.quantize.exported
        changelog=(ChangelogEntry("1.0.0", source.day.isoformat(), f"converted from training run {source.run.name}"),),
        family=family.name,
        variant=variant,
        architecture=architecture(info, model),
        gzip_bytes=gzip_size(flat),
        macs=macs(runtime.path) if runtime else None,
        pruning=pruning,
        calibration=Calibration(source.calibration_images, "train") if variant_of(variant).quantization == "int8" else None,
        training=Training(  # a command recorded before paths were made repo-relative is made so here
            command=command_line(info["command"].split(), cwd=REPO_ROOT),
            dataset_manifest_sha256=info["dataset"]["manifest_sha256"],
            counts={k: tuple(v) for k, v in info["dataset"]["counts"].items()},
            versions=info["versions"],
            git=info.get("git"),
            utc_time=info.get("utc_time"),
        ),
        cam=cam_part(model, runtime.feature_details if runtime else None),
        temperature=measured.temperature if measured else None,
        metrics={"test": measured.test} if measured else None,
        verification=measured.verification if measured else None,
        gate=measured.gate if measured else None,
        input=TensorSpec.from_details(runtime.input_details) if runtime else None,
        output=TensorSpec.from_details(runtime.output_details) if runtime else None,
        targets=model_targets(family.name, measured.test) if measured else None,
        intended_films=TRAINING_FILMS,  # cxr3's films: what listen and watch route to the model
    )


def cam_part(model: keras.Model, feature_map: dict[str, Any] | None = None) -> Cam | None:
    """The classifier's dense weights (features x classes) the runtime needs for heatmaps, if the model has a feature map.

    ``feature_map`` is the interpreter's description of the exported feature-map tensor, once known.
    """
    if not has_feature_map(model):
        return None
    kernel, bias = model.get_layer("classifier").get_weights()
    return Cam(
        feature_layer="features",
        weights=tuple(tuple(row) for row in np.round(kernel, 6).tolist()),
        bias=tuple(np.round(bias, 6).tolist()),
        feature_map=TensorSpec.from_details(feature_map) if feature_map else None,
    )

