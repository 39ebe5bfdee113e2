"""The lung model's conversion: ``python -m converters.lungs RUN --out DIR [--bundle]``.

RUN is a ``python -m training.lungs`` run folder (``model.keras`` + ``run.json``). Writes
``lungs-float32.tflite`` and ``lungs-int8.tflite`` (full integer, ``TFLITE_BUILTINS_INT8``, int8
input and output, calibrated on training films), each with a card. Each is loaded back through
the runtime (:class:`edgecxr.core.lungs.LungModel`) and segments every val film of ``lungmask`` at its
own size: Dice / IoU against the ground truth, overall and per source, and the int8 masks' Dice
against the float32 masks. float32 must match the Keras model; int8 must match float32. A model
that fails is moved to ``DIR/rejected/`` and the command exits 1. ``--bundle`` copies a verified
int8 model and its card into ``edgecxr/models/`` (a new version when what it answers changed).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import tf_keras as keras

import converters  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from converters.embed import embed_facts
from converters.quantize import convert, representative_images
from edgecxr.core.card import ModelCard, gzip_size, read_card, release, write_card
from edgecxr.core.cardparts import Calibration, ChangelogEntry, SegmentationGates, SegmentationVerification, TensorSpec, Training
from edgecxr.core.families import family as family_of
from edgecxr.core.lungs import LungModel, dice, mask_at_size, segmentation_report
from edgecxr.core.preprocess import PreprocessSpec
from edgecxr.core.registry import LUNG_MODEL, MODELS_DIR
from edgecxr.evaluation.provenance import REPO_ROOT, command_line
from edgecxr.evaluation.targets import model_targets
from training import lung_data

VARIANTS = ("float32", "int8")
LABELS = ("background", "lung")
NOTES = (
    "Output: one channel, the probability that the pixel of the preprocessed frame is lung field; the runtime stretches it "
    "back over the input and thresholds it at 0.5. Training data: lungmask (openist adult normals with OpenIST lung labels; "
    "ieee COVID films with V7 Labs lung masks; the GeneralBlockchain masks outline the whole thorax and were left out of "
    "training, and val_lung_outlines reports Dice without them). The openist films are also the cxr3-plus external test "
    "films: a classifier pipeline that uses this lung model has seen that hospital's films through it. Masks of diseased "
    "lungs include opacified lung field."
)
INTENDED_USE = (
    "Research and software testing only. Not a medical device. Outlines the lung fields of a frontal chest "
    "radiograph (for lung crops, heatmap lung shares and a 'no lung fields found' input check); not for "
    "measuring lung size or disease."
)


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
        cards = build(args.run, args.out, args.data, args.calibration, SegmentationGates())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [v for v, c in cards.items() if not (c.verification and c.verification.passed)]
    if args.bundle and "int8" not in failed:
        target = MODELS_DIR / f"{LUNG_MODEL}.tflite"
        previous = read_card(target) if target.with_suffix(".json").is_file() else None
        shutil.copy2(args.out / target.name, target)
        card = write_card(target, release(cards["int8"], previous, f"converted from training run {args.run.name}", datetime.date.today()))
        print(f"bundled {LUNG_MODEL} {card.version} in {MODELS_DIR}")
    if failed:
        print(f"error: verification failed for {', '.join(failed)} (moved to {args.out / 'rejected'})", file=sys.stderr)
        return 1
    return 0


def build(run: Path, out: Path, data_root: Path | None, n_calibration: int, gates: SegmentationGates) -> dict[str, ModelCard]:
    """Convert, verify and write both variants; returns {variant: card}."""
    info = json.loads((run / "run.json").read_text())
    spec = PreprocessSpec.from_dict(info["preprocessing"])
    model = keras.models.load_model(run / "model.keras", compile=False)
    data = lung_data.load_lungmask(data_root or info["dataset"]["root"], spec)
    train, val = data["train"].lung_outlines(), data["val"]
    outlines = [i for i, o in enumerate(val.outlines) if o]
    calibration = representative_images(train.x, n_calibration)
    keras_prob = model.predict(val.x, batch_size=16, verbose=0)[..., 0]
    keras_masks = [mask_at_size(p, m.shape, spec) for p, m in zip(keras_prob, val.masks)]
    films = f"lungmask val ({len(val.files)} films), masks at each film's own size"
    out.mkdir(parents=True, exist_ok=True)
    cards: dict[str, ModelCard] = {}
    ref_masks: list[np.ndarray] = []
    ref_report: dict[str, Any] = {}
    ref_lung_report: dict[str, Any] = {}
    for variant in VARIANTS:
        flat = embed_facts(convert(model, variant, calibration), lung_card(run, info, model.count_params(), variant, b"", 0).to_dict())
        path = out / f"lungs-{variant}.tflite"
        path.write_bytes(flat)
        card = write_card(path, lung_card(run, info, model.count_params(), variant, flat, min(n_calibration, len(train.x))))
        runtime = LungModel(path)
        prob = np.stack([runtime.probability(x) for x in val.x])
        masks = [mask_at_size(p, m.shape, spec) for p, m in zip(prob, val.masks)]
        report = segmentation_report(masks, val.masks, val.sources)
        lung_report = segmentation_report([masks[i] for i in outlines], [val.masks[i] for i in outlines], [val.sources[i] for i in outlines])
        if variant == "float32":
            diff = float(np.max(np.abs(prob - keras_prob)))
            verification = SegmentationVerification(
                passed=diff <= gates.keras_max_abs_diff, gates=gates, films=films,
                keras_max_abs_probability_diff=round(diff, 6),
                mask_dice_vs_keras_mean=round(float(np.mean([dice(a, b) for a, b in zip(masks, keras_masks)])), 4),
            )
            ref_masks, ref_report, ref_lung_report = masks, report, lung_report
        else:
            agree = [dice(a, b) for a, b in zip(masks, ref_masks)]
            drop = ref_report["dice_mean"] - report["dice_mean"]
            verification = SegmentationVerification(
                passed=bool(np.mean(agree) >= gates.min_mean_dice_vs_float32 and np.min(agree) >= gates.min_dice_vs_float32 and drop <= gates.max_dice_drop),
                gates=gates, films=films,
                mask_dice_vs_float32_mean=round(float(np.mean(agree)), 4),
                mask_dice_vs_float32_min=round(float(np.min(agree)), 4),
                val_dice_drop_vs_float32=round(drop, 4),
            )
        card = write_card(path, dataclasses.replace(
            card,
            metrics={
                "val": report, "val_lung_outlines": lung_report,
                **({} if variant == "float32" else {"float32_val": ref_report, "float32_val_lung_outlines": ref_lung_report}),
            },
            targets=model_targets("lungs", lung_report),
            verification=verification,
            input=TensorSpec.from_details(runtime.input_details),
            output=TensorSpec.from_details(runtime.output_details),
        ))
        if not verification.passed:
            (out / "rejected").mkdir(exist_ok=True)
            for f in (path, path.with_suffix(".json")):
                shutil.move(str(f), out / "rejected" / f.name)
        cards[variant] = card
        per_source = ", ".join(f"{s} {m['dice_mean']:.4f}/{m['dice_min']:.4f}" for s, m in lung_report["per_source"].items())
        print(
            f"{path.name}: {len(flat) / 1e6:.2f} MB, val Dice {report['dice_mean']:.4f}, lung-field masks {lung_report['dice_mean']:.4f} "
            f"(mean/min {per_source}), {'PASSED' if verification.passed else 'FAILED'} {verification.to_dict()}"
        )
    return cards


def lung_card(run: Path, info: dict[str, Any], params: int, variant: str, flat: bytes, calibration_images: int) -> ModelCard:
    """The card of the lung model of run ``run`` (its ``run.json`` is ``info``) as ``variant`` with ``.tflite`` bytes ``flat``, before measuring."""
    family = family_of("lungs")
    spec = PreprocessSpec.from_dict(info["preprocessing"])
    return ModelCard(
        name=f"lungs-{variant}",
        labels=LABELS,
        preprocessing=spec,
        changelog=(ChangelogEntry("1.0.0", datetime.date.today().isoformat(), f"converted from training run {run.name}"),),
        family=family.name,
        variant=variant,
        architecture=family.describe(
            *spec.size, params, widths=info["config"]["widths"],
            decoder="3x3 conv at the coarser level, then nearest upsampling" if info["config"].get("conv_then_upsample") else "nearest upsampling",
        ),
        gzip_bytes=gzip_size(flat),
        calibration=Calibration(calibration_images, "train") if variant == "int8" else None,
        training=Training(
            command=command_line(info["command"].split(), cwd=REPO_ROOT),
            dataset_manifest_sha256=info["dataset"]["manifest_sha256"],
            counts={split: (n,) for split, n in info["dataset"]["counts"].items()},  # films per split
            versions=info["versions"],
            git=info.get("git"),
            utc_time=info.get("utc_time"),
        ),
        intended_use=INTENDED_USE,
        notes=NOTES,
    )


if __name__ == "__main__":
    sys.exit(main())
