"""Filter pruning for speed: ``python -m converters.filters RUN --keep 0.5 --epochs N --out DIR``.

The run's ResNet loses whole filters (:mod:`converters.narrow`: ``--keep`` of each block's inner
conv filters, ``--keep-stage`` of each stage's residual channels), is rebuilt narrower, fine-tuned
as it was trained (the run's augmentation and class weights, Adam with cosine decay) on targets
that mix the label with the unpruned model's probabilities (self-distillation,
:func:`training.distill.soft_targets`; ``--distill-alpha 1`` is the labels only), and converted to
int8 like the ``int8`` variant. It is held to the release gate like every variant (faithful to its
own float model, the narrowed Keras model; decisions as good as the family's reference), beside its
own float32 model (written to ``OUT/reference/``), and gets a card with its MACs and how it was made;
a model that fails the gate goes to ``rejected/``. Whether it beats the unpruned int8 model enough to ship is
measured by ``python -m benchmarks.filters``.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tf_keras as keras

from converters import narrow
from converters.__main__ import add_external
from converters.build import FILTER_PRUNED, failed_variants, measure, run_data, run_roots
from converters.cards import Source, architecture, model_card
from converters.embed import embed_facts
from converters.gate import Gating, bundled_reference, external_films, summary
from converters.quantize import convert, exported, representative_images
from edgecxr.core.card import ModelCard, write_card
from edgecxr.core.model import Model
from edgecxr.core.preprocess import PreprocessSpec
from training import augment
from training.data import DatasetError
from training.distill import soft_targets


@dataclass(frozen=True)
class FilterConfig:
    run: Path
    out: Path
    keep: float = 0.5  # of each block's inner (a conv) filters
    keep_stage: float = 1.0  # of each stage's residual channels; 1.0 leaves them alone
    epochs: int = 3
    lr: float = 3e-4
    distill_alpha: float = 0.5  # weight of the label; the rest is the unpruned model's probabilities
    distill_temperature: float = 2.0
    calibration: int = 300
    external: tuple[Path, ...] = ()  # roots with a report-only external/ split for the gate; default: the run's roots that have one


def finetune(model: keras.Model, teacher: keras.Model, data, info: dict, cfg: FilterConfig) -> keras.Model:
    """Fine-tune the narrow ``model`` on the training split as the run was trained, towards the label mixed with ``teacher``'s probabilities."""
    train, val = data.splits["train"], data.splits.get("val")
    n_classes = len(data.labels)
    targets = soft_targets(train.y, teacher.predict(train.x, batch_size=64, verbose=0), cfg.distill_alpha, cfg.distill_temperature)
    steps = int(np.ceil(len(train.x) / 32))
    config = info["config"]
    schedule = keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=max(1, cfg.epochs * steps), alpha=0.02)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(
        augment.train_pipeline(train.x, targets, 32, seed=1, hflip=config.get("hflip", False), geometric=config.get("geometric", True)),
        epochs=cfg.epochs,
        validation_data=augment.eval_pipeline(val.x, np.eye(n_classes, dtype=np.float32)[val.y], 64) if val is not None else None,
        class_weight=augment.class_weights(train.y, n_classes),
        verbose=2,
    )
    return model


def filter_prune(cfg: FilterConfig) -> dict[str, ModelCard]:
    """Prune, fine-tune, convert to float32 (the reference) and int8 and verify; returns {variant: card}."""
    info = json.loads((cfg.run / "run.json").read_text())
    wide = keras.models.load_model(cfg.run / "best.keras")
    if wide.name != "resnet18":
        raise ValueError(f"{cfg.run}: filter pruning needs a resnet18 run, this one is {wide.name}")
    data = run_data(cfg.run, info)
    if "test" not in data.splits:
        raise ValueError(f"{data.root}: no test split to verify the conversion on")
    kept = narrow.kept_channels(wide, cfg.keep, cfg.keep_stage)
    print(f"keeping {narrow.describe(kept, wide)}")
    pruned = finetune(narrow.narrow_model(wide, kept), wide, data, info, cfg)
    train, test, val = data.splits["train"], data.splits["test"], data.splits.get("val")
    calibration = representative_images(train.x, cfg.calibration)
    source = Source(info, cfg.run, data.labels, len(calibration), datetime.date.today())
    cfg.out.mkdir(parents=True, exist_ok=True)
    spec = PreprocessSpec.from_dict(info["preprocessing"])
    external = external_films([Path(r) for r in cfg.external or run_roots(info)], data.labels, spec)
    gating = Gating(external, bundled_reference(wide.name, data.labels, spec, test, external))
    own_float = pruned.predict(test.x, batch_size=64, verbose=0)
    described = (
        f"{architecture(info, wide)}, filter-pruned to "
        f"{narrow.describe(kept, wide)}; {pruned.count_params():,} parameters"
    )
    notes = (
        f"Filter-pruned (python -m converters.filters): filters ranked by L1 norm x BatchNorm scale |gamma|/sqrt(var+eps); "
        f"kept {cfg.keep:g} of each block's inner conv filters and {cfg.keep_stage:g} of each stage's residual channels "
        f"(the same channels in every tensor meeting at the stage's Adds); fine-tuned {cfg.epochs} epochs (Adam {cfg.lr:g}, cosine decay, "
        f"the run's augmentation and class weights) on {cfg.distill_alpha:g} x label + {1 - cfg.distill_alpha:g} x the unpruned "
        f"model's probabilities at temperature {cfg.distill_temperature:g}; filter-pruned-int8 is it in full-integer int8, "
        f"verified against its own float32 model."
    )
    reference = None
    cards = {}
    # the narrow network's own float32 model is the reference its int8 model is verified against
    for variant, folder in (("float32", cfg.out / "reference"), (FILTER_PRUNED, cfg.out)):
        folder.mkdir(parents=True, exist_ok=True)
        flat = embed_facts(convert(exported(pruned), variant, calibration), model_card(source, pruned, variant, b"").to_dict())
        path = folder / f"{pruned.name}-{variant}.tflite"
        path.write_bytes(flat)
        write_card(path, model_card(source, pruned, variant, flat))
        probs, measured = measure(Model(path), test, val, reference, data.labels, gating, own_float, "the filter-pruned Keras model it was converted from")
        reference = probs if reference is None else reference
        card = write_card(path, dataclasses.replace(model_card(source, pruned, variant, flat, None, measured), architecture=described, notes=notes))
        assert measured.gate is not None
        if not measured.verification.passed:
            (folder / "rejected").mkdir(exist_ok=True)
            for f in (path, path.with_suffix(".json")):
                shutil.move(str(f), folder / "rejected" / f.name)
        cards[variant] = card
        print(
            f"{path.name}: {len(flat) / 1e6:.2f} MB, {card.macs:,} MACs, test macro-F1 {measured.test['macro_f1']:.4f}, "
            f"agreement with its float32 {measured.verification.agreement_with_float32:.4f}, {summary(measured.gate)}"
        )
    return cards


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m converters.filters",
        description="Remove whole filters from a resnet18 run's model, rebuild it narrower, fine-tune it (with self-distillation from "
        "the unpruned model), convert it to int8 as filter-pruned-int8 and verify it against its own float32 model.",
    )
    parser.add_argument("run", type=Path, help="training run folder of a resnet18 (best.keras + run.json)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the .tflite files and cards")
    parser.add_argument("--keep", type=float, default=FilterConfig.keep, help="share of each block's inner conv filters kept (default 0.5)")
    parser.add_argument(
        "--keep-stage", type=float, default=FilterConfig.keep_stage,
        help="share of each stage's residual channels kept, the same in every tensor meeting at its Adds (default 1: none removed)",
    )
    parser.add_argument("--epochs", type=int, default=FilterConfig.epochs, help="fine-tuning epochs")
    parser.add_argument("--lr", type=float, default=FilterConfig.lr, help="fine-tuning learning rate (Adam, cosine decay)")
    parser.add_argument("--distill-alpha", type=float, default=FilterConfig.distill_alpha, help="weight of the label against the unpruned model's probabilities")
    parser.add_argument("--distill-temperature", type=float, default=FilterConfig.distill_temperature, help="softening of the unpruned model's probabilities")
    parser.add_argument("--calibration", type=int, default=FilterConfig.calibration, help="training images used to calibrate int8")
    add_external(parser)
    args = parser.parse_args(argv)
    if not (0 < args.keep <= 1 and 0 < args.keep_stage <= 1):
        parser.error("--keep and --keep-stage must be in (0, 1]")
    if not (args.run / "best.keras").is_file() or not (args.run / "run.json").is_file():
        print(f"error: {args.run}: not a training run folder (needs best.keras and run.json)", file=sys.stderr)
        return 2
    cfg = FilterConfig(
        args.run, args.out, args.keep, args.keep_stage, args.epochs, args.lr, args.distill_alpha, args.distill_temperature, args.calibration,
        tuple(args.external),
    )
    try:
        cards = filter_prune(cfg)
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = failed_variants(cards)
    if failed:
        print(f"error: the release gate failed for {', '.join(failed)} (moved to {args.out / 'rejected'})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
