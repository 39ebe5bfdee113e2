"""Training the lung-field U-Net on ``lungmask``: ``python -m training.lungs DATA --out RUN``.

Loss: soft Dice + binary cross-entropy. Adam with cosine decay over a fixed number of epochs; the
model of the last epoch is the run's model (``model.keras``), so the val split that reports Dice
does not also pick the checkpoint (``best.keras``, by val Dice, is kept for comparison only).
Every epoch writes ``last.keras``, ``state.json`` and ``history.json``; ``--resume`` continues
from them. ``run.json`` records the command, config, spec, manifest sha256 and versions;
``metrics.json`` holds val Dice / IoU at the films' own sizes, overall and per source.
Films whose masks do not outline the lung fields (:data:`edgecxr.core.lungs.NOT_LUNG_OUTLINES`)
are left out of training; ``metrics.json`` reports val on every film and on the lung-field masks
(``val_lung_outlines``). ``--distill-from TFLITE --distill-films N`` adds N unlabelled films of the ``cxr3`` / ``cxr3-plus``
train splits with the teacher's probability maps as soft targets (:func:`training.lung_data.teacher_targets`);
``--init-from`` starts from an earlier run's weights. ``--negatives N`` adds N generated frames without lungs, with empty masks, to the training set
(:mod:`training.lung_negatives`), so the model can answer "no lung fields" on what is not a chest.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from edgecxr.core.lungs import LUNG_SPEC, NOT_LUNG_OUTLINES, mask_at_size, segmentation_report  # noqa: E402
from edgecxr.core.preprocess import PreprocessSpec  # noqa: E402
from training import lung_data  # noqa: E402
from training.lung_negatives import negative_frames  # noqa: E402
from training.unet import UNET_WIDTHS, build_unet  # noqa: E402


@keras.saving.register_keras_serializable(package="edgecxr")
def dice_bce_loss(y_true, y_pred):
    """Soft Dice loss per image (mean over the batch) plus pixel-wise binary cross-entropy."""
    axes = (1, 2, 3)
    inter = tf.reduce_sum(y_true * y_pred, axis=axes)
    total = tf.reduce_sum(y_true, axis=axes) + tf.reduce_sum(y_pred, axis=axes)
    dice = (2.0 * inter + 1.0) / (total + 1.0)
    bce = tf.reduce_mean(keras.losses.binary_crossentropy(y_true, y_pred), axis=(1, 2))
    return (1.0 - dice) + bce


@keras.saving.register_keras_serializable(package="edgecxr")
def dice_metric(y_true, y_pred):
    """Dice of the 0.5-thresholded mask and the 0.5-thresholded target, per image, in the model frame."""
    t = tf.cast(y_true > 0.5, tf.float32)
    p = tf.cast(y_pred > 0.5, tf.float32)
    inter = tf.reduce_sum(t * p, axis=(1, 2, 3))
    total = tf.reduce_sum(t, axis=(1, 2, 3)) + tf.reduce_sum(p, axis=(1, 2, 3))
    return (2.0 * inter + 1.0) / (total + 1.0)


def predict_masks(model: keras.Model, split: lung_data.LungSplit, spec) -> list[np.ndarray]:
    """The Keras model's uint8 0/255 masks at each film's own size, by the runtime's resize rule."""
    probs = model.predict(split.x, batch_size=16, verbose=0)[..., 0]
    return [mask_at_size(p, m.shape, spec) for p, m in zip(probs, split.masks)]


class _EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch: ``last.keras``, ``state.json``, ``history.json``; ``best.keras`` on a new best val Dice."""

    def __init__(self, out: Path, history: dict) -> None:
        super().__init__()
        self.out, self.history = out, history

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        held = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a checkpoint is never left half-written
        try:
            for key, value in (logs or {}).items():
                self.history.setdefault(key, []).append(float(value))
            self.history.setdefault("epoch_seconds", []).append(round(time.perf_counter() - self.started, 1))
            if logs and logs.get("val_dice_metric", -1) >= max(self.history["val_dice_metric"]):
                self.model.save(self.out / "best.keras")
            self.model.save(self.out / "last.keras")
            (self.out / "state.json").write_text(json.dumps({"epochs_done": epoch + 1}))
            (self.out / "history.json").write_text(json.dumps(self.history, indent=1))
        finally:
            signal.signal(signal.SIGINT, held)


def train(args: argparse.Namespace, argv: list[str]) -> dict:
    keras.utils.set_random_seed(args.seed)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    resuming = args.resume and (out / "last.keras").exists()
    if not resuming and (out / "last.keras").exists():
        raise ValueError(f"{out}: already holds a run; pass --resume or choose another --out")
    spec = PreprocessSpec.from_dict(json.loads((out / "run.json").read_text())["preprocessing"] if resuming else {**LUNG_SPEC, "size": [args.input_size] * 2})
    data = lung_data.load_lungmask(args.data, spec)
    train_split, val = data["train"].lung_outlines(), data["val"]
    info_path = out / "run.json"
    if resuming:
        info = json.loads(info_path.read_text())
        info.setdefault("resumed_with", []).append(" ".join(argv))
        args.negatives = info["config"].get("negatives", 0)
        args.distill_films = info["config"].get("distill_films", 0)
        args.distill_from = info["config"].get("distill_from")
        args.labelled_repeats = info["config"].get("labelled_repeats", 1)
    else:
        info = {
            "command": " ".join(argv),
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "preprocessing": spec.to_dict(),
            "dataset": {
                "root": str(args.data), "manifest_sha256": lung_data.manifest_sha256(args.data), "counts": {k: len(v.files) for k, v in data.items()},
                "left_out_of_training": {"films": len(data["train"].files) - len(train_split.files), "masks_of": NOT_LUNG_OUTLINES},
            },
            "versions": {"python": platform.python_version(), "tensorflow": tf.__version__, "tf_keras": keras.__version__, "numpy": np.__version__},
        }
    info_path.write_text(json.dumps(info, indent=2))
    x, y = np.concatenate([train_split.x] * args.labelled_repeats), np.concatenate([train_split.y] * args.labelled_repeats)
    if args.negatives:
        negatives = negative_frames(args.negatives, spec, train_split.x, seed=args.seed + 1234)
        x, y = np.concatenate([x, negatives]), np.concatenate([y, np.zeros_like(negatives)])
    if args.distill_from and args.distill_films:
        films = lung_data.distillation_films(args.data.parent, args.data, args.distill_films, args.seed + 29)
        tx, ty = lung_data.teacher_targets(args.distill_from, films, spec)
        x, y = np.concatenate([x, tx]), np.concatenate([y, ty])
        info["distillation"] = {"teacher": str(args.distill_from), "films": len(films), "from": "cxr3 and cxr3-plus train splits, no lungmask film"}
        info_path.write_text(json.dumps(info, indent=2))
    steps = int(np.ceil(len(x) / args.batch_size))
    if resuming:
        model = keras.models.load_model(out / "last.keras")
        initial_epoch = json.loads((out / "state.json").read_text())["epochs_done"]
        print(f"resuming from {out / 'last.keras'} after epoch {initial_epoch}", flush=True)
    else:
        model = build_unet(spec.size[0], widths=tuple(args.widths), up_first=not args.conv_then_upsample)
        if args.init_from:  # warm start: the weights of an earlier run of the same architecture
            model.set_weights(keras.models.load_model(args.init_from, compile=False).get_weights())
        schedule = keras.optimizers.schedules.CosineDecay(args.lr, decay_steps=args.epochs * steps, alpha=0.01)
        model.compile(keras.optimizers.Adam(schedule), loss=dice_bce_loss, metrics=[dice_metric])
        initial_epoch = 0
    history = json.loads((out / "history.json").read_text()) if resuming and (out / "history.json").exists() else {}
    if initial_epoch < args.epochs:
        model.fit(
            lung_data.train_pipeline(x, y, args.batch_size, args.seed + initial_epoch),
            validation_data=lung_data.eval_pipeline(val.x, val.y, 16),
            epochs=args.epochs,
            initial_epoch=initial_epoch,
            callbacks=[_EpochCheckpoint(out, history)],
            verbose=2,
        )
    model.save(out / "model.keras")
    outlines = val.lung_outlines()
    metrics = {
        "val": segmentation_report(predict_masks(model, val, spec), val.masks, val.sources),
        "val_lung_outlines": segmentation_report(predict_masks(model, outlines, spec), outlines.masks, outlines.sources),
        "params": model.count_params(),
    }
    best = keras.models.load_model(out / "best.keras")
    metrics["val_best_checkpoint"] = segmentation_report(predict_masks(best, val, spec), val.masks, val.sources)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.lungs", description="Train the lung-field U-Net on a lungmask-style folder (manifest.csv: image, mask, source, split).",
    )
    parser.add_argument("data", type=Path, help="dataset root, e.g. ../shared/data/lungmask")
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--input-size", type=int, default=LUNG_SPEC["size"][0])
    parser.add_argument("--widths", type=int, nargs="+", default=list(UNET_WIDTHS), help="encoder widths per level, last = bottleneck")
    parser.add_argument("--conv-then-upsample", action="store_true", help="decoder convolves at the coarser level, then upsamples (a quarter of the work)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of the cosine schedule")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--negatives", type=int, default=0, help="generated frames without lungs (empty masks) added to the training set (training/lung_negatives.py)")
    parser.add_argument("--distill-from", type=Path, help="a lung .tflite (with its card) whose masks on --distill-films unlabelled training films are added as soft targets")
    parser.add_argument("--distill-films", type=int, default=0, help="films drawn from the cxr3 / cxr3-plus train splits beside DATA for --distill-from")
    parser.add_argument("--labelled-repeats", type=int, default=1, help="each labelled film this many times per epoch, so --distill-films soft targets do not outweigh the masks")
    parser.add_argument("--init-from", type=Path, help="start from this .keras model's weights (same architecture) instead of random ones")
    parser.add_argument("--resume", action="store_true", help="continue from RUN/last.keras")
    args = parser.parse_args(argv)
    argv = ["python -m training.lungs", *(argv if argv is not None else sys.argv[1:])]
    try:
        metrics = train(args, argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for key in ("val", "val_lung_outlines"):
        v = metrics[key]
        per_source = ", ".join(f"{s} {m['dice_mean']:.4f}/{m['dice_min']:.4f}" for s, m in v["per_source"].items())
        print(f"{key} Dice {v['dice_mean']:.4f} min {v['dice_min']:.4f} (IoU {v['iou_mean']:.4f}); per source mean/min {per_source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
