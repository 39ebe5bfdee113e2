"""The lung model's conversion: ``python -m converters.lungs RUN --out DIR [--bundle]``.

RUN is a ``python -m training.lungs`` run folder (``model.keras`` + ``run.json``). Writes
``lungs-float32.tflite`` and ``lungs-int8.tflite`` (full integer, ``TFLITE_BUILTINS_INT8``, int8
input and output, calibrated on training films), each with a card. Each is loaded back through
the runtime (:class:`edgecxr.lungs.LungModel`) and segments every val film of ``lungmask`` at its
own size: Dice / IoU against the ground truth, overall and per source, and the int8 masks' Dice
against the float32 masks. float32 must match the Keras model; int8 must match float32. A model
that fails is moved to ``DIR/rejected/`` and the command exits 1. ``--bundle`` copies a verified
int8 model and its card into ``edgecxr/models/``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import converters  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import numpy as np
import tf_keras as keras

from converters.build import _io
from converters.quantize import convert, representative_images
from edgecxr.card import gzip_size, write_card
from edgecxr.lungs import LungModel, dice, mask_at_size, segmentation_report
from edgecxr.registry import LUNG_MODEL, MODELS_DIR
from training import lung_data

MODEL_VERSION = "1.0.0"
VARIANTS = ("float32", "int8")
TARGET_DICE = 0.95  # the project's target on lungmask val


@dataclass(frozen=True)
class Gates:
    """float32 TFLite vs Keras: max |probability difference| in the frame; int8 vs float32: mean and worst mask Dice, val Dice drop."""

    keras_max_abs_diff: float = 1e-3
    min_mean_dice_vs_float32: float = 0.98
    min_dice_vs_float32: float = 0.90
    max_dice_drop: float = 0.01


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m converters.lungs", description="Convert a lung U-Net run into verified float32 and int8 .tflite models with cards.")
    parser.add_argument("run", type=Path, help="training run folder (model.keras, run.json)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the .tflite files and cards")
    parser.add_argument("--data", type=Path, help="lungmask root (default: the run's)")
    parser.add_argument("--calibration", type=int, default=300, help="training films used to calibrate int8")
    parser.add_argument("--bundle", action="store_true", help=f"copy a verified int8 model into the package as {LUNG_MODEL}")
    args = parser.parse_args(argv)
    if not (args.run / "model.keras").is_file() or not (args.run / "run.json").is_file():
        print(f"error: {args.run}: not a finished lung training run (needs model.keras and run.json)", file=sys.stderr)
        return 2
    try:
        cards = build(args.run, args.out, args.data, args.calibration, Gates())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [v for v, c in cards.items() if not c["verification"]["passed"]]
    if args.bundle and "int8" not in failed:
        for suffix in (".tflite", ".json"):
            shutil.copy2(args.out / f"{LUNG_MODEL}{suffix}", MODELS_DIR / f"{LUNG_MODEL}{suffix}")
        print(f"bundled {LUNG_MODEL} in {MODELS_DIR}")
    if failed:
        print(f"error: verification failed for {', '.join(failed)} (moved to {args.out / 'rejected'})", file=sys.stderr)
        return 1
    return 0


def build(run: Path, out: Path, data_root: Path | None, n_calibration: int, gates: Gates) -> dict[str, dict]:
    """Convert, verify and write both variants; returns {variant: card}."""
    info = json.loads((run / "run.json").read_text())
    spec = info["preprocessing"]
    model = keras.models.load_model(run / "model.keras", compile=False)
    data = lung_data.load_lungmask(data_root or info["dataset"]["root"], spec)
    train, val = data["train"], data["val"]
    calibration = representative_images(train.x, n_calibration)
    keras_prob = model.predict(val.x, batch_size=16, verbose=0)[..., 0]
    keras_masks = [mask_at_size(p, m.shape, spec) for p, m in zip(keras_prob, val.masks)]
    out.mkdir(parents=True, exist_ok=True)
    cards, reference = {}, None
    for variant in VARIANTS:
        flat = convert(model, variant, calibration)
        path = out / f"lungs-{variant}.tflite"
        path.write_bytes(flat)
        card = _card(variant, info, model, flat, n_calibration, len(train.x))
        write_card(path, card)
        runtime = LungModel(path)
        prob = np.stack([runtime.probability(x) for x in val.x])
        masks = [mask_at_size(p, m.shape, spec) for p, m in zip(prob, val.masks)]
        report = segmentation_report(masks, val.masks, val.sources)
        if variant == "float32":
            diff = float(np.max(np.abs(prob - keras_prob)))
            agree = [dice(a, b) for a, b in zip(masks, keras_masks)]
            verification = {
                "keras_max_abs_probability_diff": round(diff, 6),
                "mask_dice_vs_keras_mean": round(float(np.mean(agree)), 4),
                "passed": diff <= gates.keras_max_abs_diff,
            }
            reference = (masks, report)
        else:
            ref_masks, ref_report = reference
            agree = [dice(a, b) for a, b in zip(masks, ref_masks)]
            drop = ref_report["dice_mean"] - report["dice_mean"]
            verification = {
                "mask_dice_vs_float32_mean": round(float(np.mean(agree)), 4),
                "mask_dice_vs_float32_min": round(float(np.min(agree)), 4),
                "val_dice_drop_vs_float32": round(drop, 4),
                "passed": bool(np.mean(agree) >= gates.min_mean_dice_vs_float32 and np.min(agree) >= gates.min_dice_vs_float32 and drop <= gates.max_dice_drop),
            }
        verification["gates"] = vars(gates)
        verification["films"] = f"lungmask val ({len(val.files)} films), masks at each film's own size"
        card["metrics"] = {"val": report, "target_dice": TARGET_DICE, "target_met": report["dice_mean"] >= TARGET_DICE}
        if variant != "float32":
            card["metrics"]["float32_val"] = reference[1]
        card["verification"] = verification
        card["input"], card["output"] = _io(runtime.input_details), _io(runtime.output_details)
        write_card(path, card)
        if not verification["passed"]:
            (out / "rejected").mkdir(exist_ok=True)
            for f in (path, path.with_suffix(".json")):
                shutil.move(str(f), out / "rejected" / f.name)
        cards[variant] = card
        per_source = ", ".join(f"{s} {m['dice_mean']:.4f}" for s, m in report["per_source"].items())
        print(f"{path.name}: {len(flat) / 1e6:.2f} MB, val Dice {report['dice_mean']:.4f} ({per_source}), {'PASSED' if verification['passed'] else 'FAILED'} {verification}")
    return cards


def portable_command(command: str) -> str:
    """``command`` with every absolute path cut to its last part (a card never names a machine's folders)."""
    return " ".join(Path(token).name if token.startswith("/") else token for token in command.split())


def _card(variant: str, info: dict, model: keras.Model, flat: bytes, n_calibration: int, n_train: int) -> dict:
    widths = info["config"]["widths"]
    size = info["preprocessing"]["size"]
    return {
        "name": f"lungs-{variant}",
        "version": MODEL_VERSION,
        "family": "lungs",
        "variant": variant,
        "task": "segmentation",
        "architecture": (
            f"U-Net, grayscale {size[0]}x{size[1]} input, {len(widths) - 1} levels of two 3x3 conv + BN + ReLU "
            f"({'/'.join(map(str, widths[:-1]))} channels, max-pool), bottleneck {widths[-1]}, nearest upsampling + skip "
            f"concatenation, 1x1 conv + sigmoid; {model.count_params():,} parameters"
        ),
        "labels": ["background", "lung"],
        "output_meaning": "one channel: probability that the pixel of the preprocessed frame is lung field; the runtime stretches it back over the input and thresholds it at 0.5",
        "preprocessing": info["preprocessing"],
        "gzip_bytes": gzip_size(flat),
        "calibration": {"images": min(n_calibration, n_train), "split": "train"} if variant == "int8" else None,
        "training": {
            "command": portable_command(info["command"]),
            "data": "lungmask (openist adult normals with OpenIST lung labels; ieee COVID films with V7 Labs / GeneralBlockchain lung masks)",
            "dataset_manifest_sha256": info["dataset"]["manifest_sha256"],
            "counts": info["dataset"]["counts"],
            "versions": info["versions"],
        },
        "notes": (
            "The openist films are also the cxr3-plus external test films: a classifier pipeline that uses this lung model "
            "has seen that hospital's films through it. Masks of diseased lungs include opacified lung field."
        ),
        "intended_use": (
            "Research and software testing only. Not a medical device. Outlines the lung fields of a frontal chest "
            "radiograph (for lung crops, heatmap lung shares and a 'no lung fields found' input check); not for "
            "measuring lung size or disease."
        ),
    }


if __name__ == "__main__":
    sys.exit(main())
