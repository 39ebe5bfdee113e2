"""The conversion pipeline: a training run folder → verified ``.tflite`` variants with cards.

For each variant the model is converted, written with a card, loaded back through the runtime
(:class:`edgecxr.Model`, so the same input quantization and output dequantization a user gets),
run on the test split and compared with the float32 model. A variant that fails its thresholds is
moved to ``OUT/rejected/`` and the pipeline reports failure.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tf_keras as keras

from converters import prune as pruning
from converters.cards import Measured, Source, model_card
from converters.embed import embed_facts
from converters.quantize import convert, exported, representative_images
from converters.verify import compare, tflite_probabilities
from edgecxr.calibration import expected_calibration_error, fit_temperature, negative_log_likelihood
from edgecxr.card import ModelCard, read_card, release, write_card
from edgecxr.cardparts import BeforeAfter, Pruning, Temperature, Thresholds
from edgecxr.checks import DEFAULT_PROFILE
from edgecxr.families import VARIANTS
from edgecxr.model import Model
from edgecxr.provenance import REPO_ROOT
from edgecxr.registry import MODELS_DIR
from training import augment
from training.data import Split
from training.multiroot import load_roots

FILTER_PRUNED = "filter-pruned-int8"  # a narrower network, made by python -m converters.filters rather than here
CONVERTED = tuple(v for v in VARIANTS if v != FILTER_PRUNED)  # the variants build() makes
KERAS_PARITY_TOLERANCE = 1e-3  # float32 TFLite vs Keras, max |probability difference| on the test split


@dataclass
class ConvertConfig:
    run: Path
    out: Path
    variants: tuple[str, ...] = CONVERTED
    data: tuple[Path, ...] = ()  # dataset roots; default: the run's (all of them)
    calibration: int = 300
    sparsity: float = 0.5
    prune_epochs: int = 2
    thresholds: Thresholds = field(default_factory=Thresholds)
    checks: str = DEFAULT_PROFILE  # input-check profile written into the cards


def build(cfg: ConvertConfig) -> dict[str, ModelCard]:
    """Convert and verify every variant; returns {variant: card}."""
    info = json.loads((cfg.run / "run.json").read_text())
    model = keras.models.load_model(cfg.run / "best.keras")
    data = load_roots(list(cfg.data or run_roots(info)), info["preprocessing"])
    if data.labels != info["labels"]:
        raise ValueError(f"dataset labels {data.labels} differ from the model's {info['labels']}")
    if "test" not in data.splits:
        raise ValueError(f"{data.root}: no test split to verify the conversions on")
    train, test, val = data.splits["train"], data.splits["test"], data.splits.get("val")
    calibration = representative_images(train.x, cfg.calibration)
    source = Source(info, cfg.run, data.labels, len(calibration), datetime.date.today(), cfg.checks)
    cfg.out.mkdir(parents=True, exist_ok=True)

    keras_probs = model.predict(test.x, batch_size=64, verbose=0)
    reference = None
    cards = {}
    for variant in ("float32", *[v for v in cfg.variants if v != "float32"]):
        source_model, pruned = _pruned(model, data, cfg, info) if VARIANTS[variant].pruned else (model, None)
        flat = embed_facts(convert(exported(source_model), variant, calibration), model_card(source, source_model, variant, b"").to_dict())
        path = cfg.out / f"{source_model.name}-{variant}.tflite"
        path.write_bytes(flat)
        write_card(path, model_card(source, source_model, variant, flat, pruned))  # what the runtime needs to load it
        probs, measured = measure(Model(path), test, val, reference, data.labels, cfg.thresholds)
        if reference is None:
            reference = probs
        if variant == "float32":  # the reference itself must match the Keras model it came from
            diff = float(np.max(np.abs(probs - keras_probs)))
            verification = dataclasses.replace(measured.verification, keras_max_abs_probability_diff=round(diff, 6), passed=diff <= KERAS_PARITY_TOLERANCE)
            measured = dataclasses.replace(measured, verification=verification)
        metrics, verification = measured.test, measured.verification
        card = write_card(path, model_card(source, source_model, variant, flat, pruned, measured))
        if not verification.passed:
            rejected = cfg.out / "rejected"
            rejected.mkdir(exist_ok=True)
            for f in (path, path.with_suffix(".json")):
                shutil.move(str(f), rejected / f.name)
        cards[variant] = card
        print(
            f"{path.name}: {len(flat) / 1e6:.2f} MB, test macro-F1 {metrics['macro_f1']:.4f}, "
            f"agreement {verification.agreement_with_float32:.4f}, {'PASSED' if verification.passed else 'FAILED'}"
        )
    return cards


def run_roots(info: dict) -> list[str]:
    """The dataset roots a run was trained on (``dataset.roots`` of a multi-root run); run.json records them relative to the checkout."""
    return [str(REPO_ROOT / root) for root in (info["dataset"].get("roots") or [info["dataset"]["root"]])]


def measure(
    model: Model, test: Split, val: Split | None, reference: np.ndarray | None, labels: Sequence[str], thresholds: Thresholds,
) -> tuple[np.ndarray, Measured]:
    """``model`` (a converted variant loaded through the runtime) on the test split: its uncalibrated probabilities, and
    its metrics, verification against the float32 ``reference`` probabilities (itself when None) and validation-fitted temperature."""
    probs = tflite_probabilities(model, test.x)
    temperature = _temperature(model, tflite_probabilities(model, val.x), val.y, probs, test.y) if val is not None else None
    metrics, verification = compare(probs, probs if reference is None else reference, test.y, labels, test.sources, thresholds)
    return probs, Measured(model, metrics, verification, temperature)


def _temperature(model: Model, val_probs: np.ndarray, val_y: np.ndarray, test_probs: np.ndarray, test_y: np.ndarray) -> Temperature:
    """Temperature scaling fitted on the validation split, with NLL (val) and ECE (test) before and after (as ``model`` applies it)."""
    t = fit_temperature(val_probs, val_y, model.recalibrated)
    return Temperature(
        value=round(t, 4),
        fitted_on="val",
        images=int(len(val_y)),
        nll_val=BeforeAfter(round(negative_log_likelihood(val_probs, val_y), 4), round(negative_log_likelihood(model.recalibrated(val_probs, t), val_y), 4)),
        ece_test=BeforeAfter(round(expected_calibration_error(test_probs, test_y), 4), round(expected_calibration_error(model.recalibrated(test_probs, t), test_y), 4)),
    )


def _pruned(model: keras.Model, data, cfg: ConvertConfig, info: dict) -> tuple[keras.Model, Pruning]:
    train, val = data.splits["train"], data.splits.get("val")
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    steps = int(np.ceil(len(train.x) / 32))
    config = info["config"]  # fine-tune as the model was trained: same augmentation and class weights
    pruned = pruning.prune(
        clone,
        augment.train_pipeline(train.x, train.y, 32, seed=1, hflip=config.get("hflip", False), geometric=config.get("geometric", True)),
        steps,
        sparsity=cfg.sparsity,
        epochs=cfg.prune_epochs,
        validation=augment.eval_pipeline(val.x, val.y, 64) if val is not None else None,
        class_weight=augment.class_weights(train.y, len(data.labels)),
    )
    return pruned, Pruning(cfg.sparsity, round(pruning.sparsity_of(pruned), 4), cfg.prune_epochs)


def bundle(model_path: Path, change: str) -> None:
    """Copy a converted model into the package; its card continues the bundled model's version history."""
    target = MODELS_DIR / model_path.name
    previous = read_card(target) if target.with_suffix(".json").is_file() else None
    shutil.copy2(model_path, target)
    card = write_card(target, release(read_card(model_path), previous, change, datetime.date.today()))
    print(f"bundled {card.name} {card.version} in {MODELS_DIR}")
