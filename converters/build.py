"""The conversion pipeline: a training run folder → verified ``.tflite`` variants with cards.

For each variant the model is converted, written with a card, loaded back through the runtime
(:class:`edgecxr.Model`, so the same input quantization and output dequantization a user gets),
run on the test split (and the report-only external films) and held to the release gate
(:mod:`converters.gate`: faithful to its own float model, decisions as good as the reference's).
A variant that fails the gate is moved to ``OUT/rejected/`` and the pipeline reports failure.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tf_keras as keras

from converters import prune as pruning
from converters.cards import Measured, Source, model_card
from converters.embed import embed_facts
from converters.gate import Gating, Reference, bundled_reference, decision_quantities, external_films, summary
from converters.gate import result as gate_result
from converters.quantize import convert, exported, representative_images
from converters.verify import compare, tflite_probabilities
from edgecxr.core.calibration import expected_calibration_error, fit_temperature, negative_log_likelihood
from edgecxr.core.card import ModelCard, write_card
from edgecxr.core.cardparts import BeforeAfter, Pruning, Temperature, Verification
from edgecxr.core.checks import DEFAULT_PROFILE
from edgecxr.core.families import VARIANTS
from edgecxr.core.families import family as family_of
from edgecxr.core.model import Model
from edgecxr.core.preprocess import PreprocessSpec
from edgecxr.evaluation.provenance import REPO_ROOT
from edgecxr.evaluation.targets import gate as gate_spec
from training import augment
from training.data import Dataset, Split
from training.distill import soft_targets
from training.holdout import hold_out
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
    external: tuple[Path, ...] = ()  # roots with a report-only external/ split for the gate; default: the run's roots that have one
    checks: str = DEFAULT_PROFILE  # input-check profile written into the cards
    lr: float = 1e-4  # pruning's fine-tuning learning rate
    qat_epochs: int = 2
    qat_lr: float = 1e-5
    distillation: float = 0.8  # weight of the float model's own probabilities in the fine-tuning targets (0: labels only)
    freeze_batchnorm: bool = True  # BatchNormalization statistics fixed while fine-tuning
    augment: bool = True  # fine-tune on the run's augmentation (else on the films unchanged)
    prune_min_weights: int = 0  # Conv2D/Dense layers with fewer kernel weights stay dense


@dataclass
class Conversion:
    """What every variant converted from one run shares: the Keras model, the data, the card source, the float32 reference."""

    model: keras.Model
    info: dict
    data: Any  # training.multiroot's dataset: labels and splits
    source: Source
    calibration: np.ndarray
    keras_probs: np.ndarray  # the Keras model on the test split
    gating: Gating  # the external films and the gate's reference
    reference: np.ndarray | None = None  # the float32 .tflite on the test split, once converted
    pruned: dict[float, keras.Model] = field(default_factory=dict)  # pruned and stripped models by target sparsity
    teacher: np.ndarray | None = None  # the Keras model's probabilities on the training films, once needed


def build(cfg: ConvertConfig) -> dict[str, ModelCard]:
    """Convert and verify every variant; returns {variant: card}."""
    conversion = prepare(cfg)
    return {variant: convert_variant(conversion, cfg, variant) for variant in ("float32", *[v for v in cfg.variants if v != "float32"])}


def prepare(cfg: ConvertConfig) -> Conversion:
    """Load the run's model and data and predict the test split with Keras; float32 must be the first variant converted."""
    info = json.loads((cfg.run / "run.json").read_text())
    model = keras.models.load_model(cfg.run / "best.keras")
    data = run_data(cfg.run, info, cfg.data)
    if "test" not in data.splits:
        raise ValueError(f"{data.root}: no test split to verify the conversions on")
    calibration = representative_images(data.splits["train"].x, cfg.calibration)
    source = Source(info, cfg.run, data.labels, len(calibration), datetime.date.today(), cfg.checks)
    test, spec = data.splits["test"], PreprocessSpec.from_dict(info["preprocessing"])
    external = external_films([Path(r) for r in cfg.external or cfg.data or run_roots(info)], data.labels, spec)
    gating = Gating(external, bundled_reference(family_of(model.name).name, data.labels, spec, test, external))
    return Conversion(model, info, data, source, calibration, model.predict(test.x, batch_size=64, verbose=0), gating)


def run_data(run: Path, info: dict, roots: Sequence[Path] = ()) -> Dataset:
    """The films a run was trained on (``roots``, default: the run's own), without the sources it held out (``--hold-out``),
    so that calibration, temperature and fine-tuning never see them; labels checked against the run's."""
    data = load_roots(list(roots or run_roots(info)), info["preprocessing"])
    if data.labels != info["labels"]:
        raise ValueError(f"dataset labels {data.labels} differ from the model's {info['labels']}")
    held = info.get("config", {}).get("hold_out") or []
    return hold_out(data, held)[0] if held else data


def held_out_sources(run: Path) -> list[str]:
    """The sources a run held out of training (empty for an ordinary run): such a run is an experiment, never bundled."""
    return list(json.loads((run / "run.json").read_text()).get("config", {}).get("hold_out") or [])


def convert_variant(conversion: Conversion, cfg: ConvertConfig, variant: str) -> ModelCard:
    """Make ``variant`` (fine-tuning it first if the registry says so), write it and its card to ``cfg.out``, verify it
    against float32; a variant that fails is moved to ``cfg.out/rejected/``. Returns its card."""
    c, test, val = conversion, conversion.data.splits["test"], conversion.data.splits.get("val")
    cfg.out.mkdir(parents=True, exist_ok=True)
    card_model, source_model, pruned = _fine_tuned(c, cfg, variant)
    own_float = c.keras_probs if card_model is c.model else card_model.predict(test.x, batch_size=64, verbose=0)
    own_float_name = "the run's Keras model" if card_model is c.model else f"the {pruned.method if pruned else 'fine-tuned'} Keras model it was converted from"
    flat = embed_facts(convert(source_model, variant, c.calibration), model_card(c.source, card_model, variant, b"").to_dict())
    if pruned is not None:
        pruned = dataclasses.replace(pruned, int8_sparsity=round(pruning.flatbuffer_sparsity(flat), 4))
    path = cfg.out / f"{card_model.name}-{variant}.tflite"
    path.write_bytes(flat)
    write_card(path, model_card(c.source, card_model, variant, flat, pruned))  # what the runtime needs to load it
    probs, measured = measure(Model(path), test, val, c.reference, c.data.labels, c.gating, own_float, own_float_name)
    if c.reference is None:
        c.reference = probs
    if variant == "float32":  # the reference itself must match the Keras model it came from
        diff = float(np.max(np.abs(probs - c.keras_probs)))
        verification = dataclasses.replace(
            measured.verification, keras_max_abs_probability_diff=round(diff, 6), passed=measured.verification.passed and diff <= KERAS_PARITY_TOLERANCE,
        )
        measured = dataclasses.replace(measured, verification=verification)
    metrics, verification = measured.test, measured.verification
    card = write_card(path, model_card(c.source, card_model, variant, flat, pruned, measured))
    if not verification.passed:
        rejected = cfg.out / "rejected"
        rejected.mkdir(exist_ok=True)
        for f in (path, path.with_suffix(".json")):
            shutil.move(str(f), rejected / f.name)
    assert measured.gate is not None
    print(
        f"{path.name}: {len(flat) / 1e6:.2f} MB, test macro-F1 {metrics['macro_f1']:.4f}, agreement with float32 "
        f"{verification.agreement_with_float32:.4f}, {summary(measured.gate)}, {'PASSED' if verification.passed else 'FAILED'}", flush=True,
    )
    return card


def passed(card: ModelCard) -> bool:
    """Whether a converted variant passed verification and the release gate (recorded on its card)."""
    return isinstance(card.verification, Verification) and card.verification.passed and card.gate is not None and card.gate.passed


def shrinks_download(card: ModelCard, int8: ModelCard) -> bool:
    """Whether a pruned variant's gzip size is within the gate's bundling limit of the plain ``int8`` model's."""
    limit = gate_spec().pruned_max_gzip_vs_int8
    return card.gzip_bytes is not None and int8.gzip_bytes is not None and card.gzip_bytes <= limit * int8.gzip_bytes


def run_roots(info: dict) -> list[str]:
    """The dataset roots a run was trained on (``dataset.roots`` of a multi-root run); run.json records them relative to the checkout."""
    return [str(REPO_ROOT / root) for root in (info["dataset"].get("roots") or [info["dataset"]["root"]])]


def measure(
    model: Model, test: Split, val: Split | None, reference: np.ndarray | None, labels: Sequence[str],
    gating: Gating, own_float: np.ndarray, own_float_name: str,
) -> tuple[np.ndarray, Measured]:
    """``model`` (a converted variant loaded through the runtime) on the test split: its uncalibrated probabilities, and
    its metrics, comparison with the float32 ``reference`` probabilities (itself when None), validation-fitted temperature
    and release gate (against ``own_float``, its own float model's test probabilities, and ``gating``'s reference; the
    first model measured without a bundled reference becomes it)."""
    probs = tflite_probabilities(model, test.x)
    temperature = _temperature(model, tflite_probabilities(model, val.x), val.y, probs, test.y) if val is not None else None
    external = tflite_probabilities(model, gating.external) if gating.external is not None else None
    quantities = decision_quantities(probs, test.y, labels, temperature.ece_test.after if temperature and temperature.ece_test else None, external)
    if gating.reference is None:
        gating.reference = Reference("the run's own float32 model (no bundled reference with its labels and preprocessing)", probs, quantities)
    gate = gate_result(probs, own_float, own_float_name, quantities, gating.reference)
    metrics, verification = compare(probs, probs if reference is None else reference, test.y, labels, test.sources, gate.passed)
    return probs, Measured(model, metrics, verification, temperature, gate)


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


def failed_variants(cards: dict[str, ModelCard]) -> list[str]:
    """The variants among ``cards`` that failed verification or the gate (or lack either)."""
    return [v for v, c in cards.items() if not passed(c)]


def bundled_variants(cards: dict[str, ModelCard]) -> list[str]:
    """The fine-tuned variants among ``cards`` to bundle: passed the gate and, pruned, :func:`shrinks_download` against the
    plain int8 card among them (quantization-aware training alone does not shrink it)."""
    int8, reference = cards.get("int8"), cards.get("float32")
    if int8 is None or reference is None or not passed(reference):
        return []  # the run's own float32 must match its Keras model: without it nothing qualifies
    return [v for v, card in cards.items() if VARIANTS[v].pruned and passed(card) and shrinks_download(card, int8)]


def _fine_tuned(c: Conversion, cfg: ConvertConfig, variant: str) -> tuple[keras.Model, keras.Model, Pruning | None]:
    """The model for ``variant``'s card (float weights), the model to convert, and how it was fine-tuned (None: not at all).

    Fine-tuning is as the model was trained (same augmentation, unless ``cfg.augment`` is off, and class weights), against
    targets that mix the labels with the float model's own probabilities on the unaugmented films
    (:func:`training.distill.soft_targets`), so the variant keeps agreeing with it.
    """
    v = VARIANTS[variant]
    if not (v.pruned or v.qat):
        return c.model, exported(c.model), None
    train, n = c.data.splits["train"], len(c.data.labels)
    if c.teacher is None:
        c.teacher = c.model.predict(train.x, batch_size=64, verbose=0)
    targets = soft_targets(train.y, c.teacher, 1.0 - cfg.distillation, 1.0)
    config = c.info["config"]
    if cfg.augment:
        batches = augment.train_pipeline(train.x, targets, 32, seed=1, hflip=config.get("hflip", False), geometric=config.get("geometric", True))
    else:  # the films as the teacher saw them: the targets are then its outputs on exactly these inputs
        batches = augment.eval_pipeline(train.x, targets, 32).shuffle(len(train.x) // 32 + 1, seed=1)
    weights = augment.class_weights(train.y, n)
    model, epochs = c.model, 0
    if v.pruned:
        if cfg.sparsity not in c.pruned:
            clone = keras.models.clone_model(c.model)
            clone.set_weights(c.model.get_weights())
            if cfg.freeze_batchnorm:
                pruning.freeze_batchnorm(clone)
            c.pruned[cfg.sparsity] = pruning.prune(clone, batches, int(np.ceil(len(train.x) / 32)), cfg.sparsity, cfg.prune_epochs, cfg.lr, weights, cfg.prune_min_weights)
        model, epochs = c.pruned[cfg.sparsity], cfg.prune_epochs
    source = exported(model)
    if v.qat:
        if cfg.freeze_batchnorm:
            pruning.freeze_batchnorm(source)
        qat = pruning.quantize_aware(source, batches, cfg.qat_epochs, cfg.qat_lr, weights, preserve_sparsity=v.pruned)
        model, source, epochs = pruning.float_copy(qat, model), qat, epochs + cfg.qat_epochs
    method = ("magnitude+pqat" if v.qat else "magnitude") if v.pruned else "qat"
    return model, source, Pruning(
        cfg.sparsity if v.pruned else 0.0, round(pruning.sparsity_of(model), 4), epochs, method,
        learning_rate=cfg.lr if v.pruned else None, qat_learning_rate=cfg.qat_lr if v.qat else None,
        distillation=cfg.distillation, batchnorm="frozen" if cfg.freeze_batchnorm else "trained",
        augmented=cfg.augment, min_pruned_weights=cfg.prune_min_weights if v.pruned else None,
    )
