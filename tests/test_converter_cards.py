"""converters/cards.py: the converter's one card-building function, and bundling that keeps a model's version history."""
from __future__ import annotations

import datetime
import os
import shutil
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from conftest import TINY_LABELS, toy_images
from edgecxr.core.card import read_card, write_card
from edgecxr.core.cardparts import Temperature
from edgecxr.core.families import FAMILIES, Family
from edgecxr.core.model import Model

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
pytestmark = pytest.mark.train  # the converter imports TensorFlow: imported inside the tests

if TYPE_CHECKING:
    from converters.cards import Source

INFO = {
    "command": "python -m training data --out run-7",
    "config": {"width": 8},
    "preprocessing": {"size": [32, 32]},
    "dataset": {"manifest_sha256": None, "counts": {"train": [100, 100, 100]}},
    "versions": {"python": "3.11.7"},
}


@pytest.fixture()
def tiny(tiny_models, monkeypatch):
    """The tiny test CNN (conftest) as a registered family, with its Keras model."""
    import tf_keras as keras

    family = Family("tiny", "tiny CNN on {height}x{width}, stem {stem}; {params:,} parameters", 32, True, "conftest:none")
    monkeypatch.setitem(FAMILIES, "tiny", family)
    return keras.models.load_model(tiny_models["int8"].parent / "tiny.keras")


def source(tmp_path) -> Source:
    from converters.cards import Source

    return Source(INFO, tmp_path / "run-7", TINY_LABELS, 30, datetime.date(2026, 12, 1))


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_model_card_before_and_after_measuring(tiny, tiny_models, tmp_path, variant):
    from converters.cards import Measured, model_card
    from converters.verify import compare, tflite_probabilities
    from edgecxr.evaluation.macs import macs

    x, y = toy_images(30)
    path = tmp_path / f"tiny-{variant}.tflite"
    shutil.copy(tiny_models[variant], path)
    flat = path.read_bytes()

    loadable = write_card(path, model_card(source(tmp_path), tiny, variant, flat))
    assert (loadable.name, loadable.family, loadable.variant, loadable.version) == (f"tiny-{variant}", "tiny", variant, "1.0.0")
    assert loadable.changelog[0].change == "converted from training run run-7" and loadable.changelog[0].date == "2026-12-01"
    assert loadable.architecture == f"tiny CNN on 32x32, stem 8; {tiny.count_params():,} parameters"
    assert (loadable.calibration is not None) == (variant == "int8")
    assert loadable.metrics is loadable.verification is loadable.input is loadable.cam.feature_map is loadable.macs is None

    runtime = Model(path)
    probs = tflite_probabilities(runtime, x)
    metrics, verification = compare(probs, probs, y, TINY_LABELS, [""] * len(y), passed=True)
    measured = Measured(runtime, metrics, verification, Temperature(1.2))
    card = write_card(path, model_card(source(tmp_path), tiny, variant, flat, measured=measured))
    assert card.input.dtype == card.output.dtype == ("int8" if variant == "int8" else "float32")
    assert card.input.shape == (1, 32, 32, 1) and card.output.shape == (1, 3)
    assert card.cam.feature_map.shape == (1, 15, 15, 8) and len(card.cam.weights) == 8
    assert card.test_metrics == metrics and card.verification.passed
    assert card.macs == macs(path) > 0  # counted from the converted file's layer shapes
    assert card.targets == {}  # no targets set for this family
    assert read_card(path) == card and Model(path).temperature == 1.2


def test_bundling_continues_the_version_history(tiny, tiny_models, tmp_path, monkeypatch):
    import converters.bundling as cli
    from converters.cards import model_card

    out, bundled = tmp_path / "out", tmp_path / "models"
    out.mkdir()
    bundled.mkdir()
    monkeypatch.setattr(cli, "MODELS_DIR", bundled)
    path = out / "tiny-float32.tflite"
    shutil.copy(tiny_models["float32"], path)
    flat = path.read_bytes()
    write_card(path, model_card(source(tmp_path), tiny, "float32", flat))

    cli.bundle(path, "first bundle")
    first = read_card(bundled / path.name)
    assert first.version == "1.0.0" and [e.change for e in first.changelog] == ["first bundle"]
    cli.bundle(path, "same model again")  # nothing changed: no new version
    assert read_card(bundled / path.name).changelog == first.changelog

    write_card(path, replace(read_card(path), temperature=Temperature(1.4)))  # what the runtime answers changes
    cli.bundle(path, "calibrated")
    second = read_card(bundled / path.name)
    assert second.version == "1.1.0" and [e.version for e in second.changelog] == ["1.0.0", "1.1.0"]
    assert second.changelog[-1].change == "calibrated"
    assert (bundled / path.name).read_bytes() == flat


def test_a_run_that_held_sources_out_is_never_bundled(tmp_path, capsys):
    """A leave-one-source-out run is an experiment: --bundle refuses it before anything is converted."""
    import json

    from converters.__main__ import main

    run = tmp_path / "loso-run"
    run.mkdir()
    (run / "best.keras").write_bytes(b"not read")
    (run / "run.json").write_text(json.dumps({"config": {"hold_out": ["rsna"]}}))
    with pytest.raises(SystemExit) as exit_:
        main([str(run), "--out", str(tmp_path / "out"), "--bundle"])
    assert exit_.value.code == 2
    assert "held sources out of training (rsna): an experiment, not bundled" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        main([str(run), "--out", str(tmp_path / "out"), "--sparsity", "1.5"])
    assert "--sparsity must be between 0 and 1" in capsys.readouterr().err
