"""The conversion pipeline: a training run folder → verified ``.tflite`` variants with cards.

For each variant the model is converted, written with a card, loaded back through the runtime
(:class:`edgecxr.Model`, so the same input quantization and output dequantization a user gets),
run on the test split and compared with the float32 model. A variant that fails its thresholds is
moved to ``OUT/rejected/`` and the pipeline reports failure.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tf_keras as keras

from converters import prune as pruning
from converters.quantize import convert, representative_images, with_feature_map
from converters.verify import Thresholds, compare, tflite_probabilities
from edgecxr.calibration import apply_temperature, expected_calibration_error, fit_temperature, negative_log_likelihood
from edgecxr.card import gzip_size, write_card
from edgecxr.model import Model
from edgecxr.provenance import REPO_ROOT, command_line
from training import augment
from training.data import load_dataset

ALL_VARIANTS = ("float32", "float16", "dynamic", "int8", "pruned-int8")
MODEL_VERSION = "1.0.0"
# The project's targets on the shared test split; a card states whether its model meets them.
TARGETS = {"resnet18": {"macro_f1": 0.95, "covid_sensitivity": 0.95}, "mlp12": {"macro_f1": 0.85}}
KERAS_PARITY_TOLERANCE = 1e-3  # float32 TFLite vs Keras, max |probability difference| on the test split


@dataclass
class ConvertConfig:
    run: Path
    out: Path
    variants: tuple[str, ...] = ALL_VARIANTS
    data: Path | None = None  # default: the run's dataset
    calibration: int = 300
    sparsity: float = 0.5
    prune_epochs: int = 2
    thresholds: Thresholds = field(default_factory=Thresholds)


def build(cfg: ConvertConfig) -> dict[str, dict]:
    """Convert and verify every variant; returns {variant: card}."""
    info = json.loads((cfg.run / "run.json").read_text())
    model = keras.models.load_model(cfg.run / "best.keras")
    family = model.name
    data = load_dataset(cfg.data or info["dataset"]["root"], info["preprocessing"])
    if data.labels != info["labels"]:
        raise ValueError(f"dataset labels {data.labels} differ from the model's {info['labels']}")
    if "test" not in data.splits:
        raise ValueError(f"{data.root}: no test split to verify the conversions on")
    train, test, val = data.splits["train"], data.splits["test"], data.splits.get("val")
    calibration = representative_images(train.x, cfg.calibration)
    cfg.out.mkdir(parents=True, exist_ok=True)

    keras_probs = model.predict(test.x, batch_size=64, verbose=0)
    reference = None
    cards = {}
    for variant in ("float32", *[v for v in cfg.variants if v != "float32"]):
        source_model, extra = model, {}
        if variant == "pruned-int8":
            source_model, extra = _pruned(model, data, cfg, info)
        flat = convert(with_feature_map(source_model), "int8" if variant.endswith("int8") else variant, calibration)
        path = cfg.out / f"{family}-{variant}.tflite"
        path.write_bytes(flat)
        card = _base_card(family, variant, info, model, data, cfg, flat, extra)
        card.update(cam_card(source_model))
        write_card(path, card)
        runtime_model = Model(path)
        probs = tflite_probabilities(runtime_model, test.x)
        if val is not None:
            card["temperature"] = _temperature(tflite_probabilities(runtime_model, val.x), val.y, probs, test.y)
        if reference is None:
            reference = probs
        card.update(compare(probs, reference, test.y, data.labels, test.sources, cfg.thresholds))
        if variant == "float32":  # the reference itself must match the Keras model it came from
            diff = float(np.max(np.abs(probs - keras_probs)))
            card["verification"]["keras_max_abs_probability_diff"] = round(diff, 6)
            card["verification"]["passed"] = diff <= KERAS_PARITY_TOLERANCE
        card["metrics"] = {"test": card["metrics"]}
        card["input"], card["output"] = _io(runtime_model.input_details), _io(runtime_model.output_details)
        if runtime_model.feature_details is not None:
            card["cam"]["feature_map"] = _io(runtime_model.feature_details)
        card["targets"] = targets_status(family, card["metrics"]["test"])
        write_card(path, card)
        if not card["verification"]["passed"]:
            rejected = cfg.out / "rejected"
            rejected.mkdir(exist_ok=True)
            for f in (path, path.with_suffix(".json")):
                shutil.move(str(f), rejected / f.name)
        cards[variant] = card
        v = card["verification"]
        print(
            f"{path.name}: {len(flat) / 1e6:.2f} MB, test macro-F1 {card['metrics']['test']['macro_f1']:.4f}, "
            f"agreement {v['agreement_with_float32']:.4f}, {'PASSED' if v['passed'] else 'FAILED'}"
        )
    return cards


def targets_status(family: str, test: dict) -> dict:
    """The family's targets, the values reached, and whether each is met."""
    reached = {"macro_f1": test["macro_f1"], "covid_sensitivity": test["per_class"].get("COVID", {}).get("recall")}
    out = {}
    for key, target in TARGETS.get(family, {}).items():
        value = reached[key]
        out[key] = {"target": target, "reached": value, "met": value is not None and value >= target}
    return out


def _temperature(val_probs: np.ndarray, val_y: np.ndarray, test_probs: np.ndarray, test_y: np.ndarray) -> dict:
    """Temperature scaling fitted on the validation split, with NLL (val) and ECE (test) before and after."""
    t = fit_temperature(val_probs, val_y)
    return {
        "value": round(t, 4),
        "fitted_on": "val",
        "images": int(len(val_y)),
        "nll_val": {"before": round(negative_log_likelihood(val_probs, val_y), 4), "after": round(negative_log_likelihood(apply_temperature(val_probs, t), val_y), 4)},
        "ece_test": {"before": round(expected_calibration_error(test_probs, test_y), 4), "after": round(expected_calibration_error(apply_temperature(test_probs, t), test_y), 4)},
    }


def cam_card(model: keras.Model) -> dict:
    """The classifier's dense weights (features × classes) the runtime needs for heatmaps, if the model has a feature map."""
    if with_feature_map(model) is model:
        return {}
    kernel, bias = model.get_layer("classifier").get_weights()
    return {"cam": {"feature_layer": "features", "weights": np.round(kernel, 6).tolist(), "bias": np.round(bias, 6).tolist()}}


def _pruned(model: keras.Model, data, cfg: ConvertConfig, info: dict) -> tuple[keras.Model, dict]:
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
    return pruned, {"pruning": {"target_sparsity": cfg.sparsity, "sparsity": round(pruning.sparsity_of(pruned), 4), "fine_tune_epochs": cfg.prune_epochs}}


def _base_card(family, variant, info, model, data, cfg, flat: bytes, extra: dict) -> dict:
    size = info["preprocessing"]["size"]
    return {
        "name": f"{family}-{variant}",
        "version": MODEL_VERSION,
        "family": family,
        "variant": variant,
        "architecture": _architecture(family, model, size, info),
        "labels": data.labels,
        "preprocessing": info["preprocessing"],
        "gzip_bytes": gzip_size(flat),
        **extra,
        "calibration": {"images": min(cfg.calibration, len(data.splits["train"].x)), "split": "train"} if variant.endswith("int8") else None,
        "training": {  # the run's provenance; a command recorded before paths were made repo-relative is made so here
            "command": command_line(info["command"].split(), cwd=REPO_ROOT),
            "git": info.get("git"),
            "utc_time": info.get("utc_time"),
            "dataset_manifest_sha256": info["dataset"]["manifest_sha256"],
            "counts": info["dataset"]["counts"],
            "versions": info["versions"],
        },
    }


def _architecture(family: str, model: keras.Model, size, info) -> str:
    params = model.count_params()
    if family == "resnet18":
        width = info["config"].get("width")
        return (
            f"ResNet-18-style CNN, grayscale {size[0]}x{size[1]} input, stem width {width} "
            f"(stages {width}/{2 * width}/{4 * width}/{8 * width}), GAP + softmax; {params:,} parameters"
        )
    return f"MLP-12: 12 dense ReLU layers (512→32) on the flattened {size[0]}x{size[1]} image; {params:,} parameters"


def _io(detail: dict) -> dict:
    """A tensor's shape, dtype and quantization, as the card records them."""
    scale, zero = detail["quantization"]
    q = {"scale": float(scale), "zero_point": int(zero)} if scale else None
    return {"shape": [int(v) for v in detail["shape"]], "dtype": np.dtype(detail["dtype"]).name, "quantization": q}
