"""Command line: ``python -m converters RUN_DIR --out OUT_DIR [--bundle]``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from converters.build import CONVERTED, FILTER_PRUNED, ConvertConfig, build, bundled_variants, failed_variants, held_out_sources
from converters.bundling import bundle
from edgecxr.core.checks import DEFAULT_PROFILE, PROFILES
from training.data import DatasetError


def add_fine_tuning(parser: argparse.ArgumentParser) -> None:
    """The options of the fine-tuned variants (pruned, quantization-aware), shared with ``python -m converters.sweep``."""
    parser.add_argument("--prune-epochs", type=int, default=ConvertConfig.prune_epochs, help="fine-tuning epochs while pruning")
    parser.add_argument("--lr", type=float, default=ConvertConfig.lr, help="learning rate of the pruning fine-tune")
    parser.add_argument("--qat-epochs", type=int, default=ConvertConfig.qat_epochs, help="quantization-aware fine-tuning epochs (qat-int8, pqat-int8)")
    parser.add_argument("--qat-lr", type=float, default=ConvertConfig.qat_lr, help="learning rate of quantization-aware fine-tuning")
    parser.add_argument(
        "--distillation", type=float, default=ConvertConfig.distillation,
        help="weight of the float model's own probabilities in the fine-tuning targets, the rest the labels (0: labels only)",
    )
    parser.add_argument("--train-batchnorm", action="store_true", help="let fine-tuning update BatchNormalization (default: statistics fixed)")
    parser.add_argument(
        "--keep-small", type=int, default=ConvertConfig.prune_min_weights, metavar="N",
        help="leave Conv2D and Dense layers with fewer than N kernel weights dense (e.g. 10000: the stem and the classifier)",
    )
    parser.add_argument(
        "--no-augment", action="store_true",
        help="fine-tune on the training films unchanged, where the float model's probabilities were taken (default: the run's augmentation)",
    )


def add_external(parser: argparse.ArgumentParser) -> None:
    """The gate's report-only external films, shared with ``python -m converters.sweep``."""
    parser.add_argument(
        "--external", type=Path, action="append", default=[], metavar="ROOT",
        help="dataset root with a report-only external/ split, for the gate's external check (repeatable; default: the run's "
        "roots that have one; e.g. ../shared/data/cxr3-plus). Never trained, calibrated or selected on",
    )


def fine_tuning(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`ConvertConfig` fields :func:`add_fine_tuning`'s options set."""
    return {
        "prune_epochs": args.prune_epochs, "lr": args.lr, "qat_epochs": args.qat_epochs, "qat_lr": args.qat_lr,
        "distillation": args.distillation, "freeze_batchnorm": not args.train_batchnorm,
        "augment": not args.no_augment, "prune_min_weights": args.keep_small,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m converters",
        description="Convert a training run (RUN_DIR/best.keras + run.json) into verified .tflite variants with model cards.",
    )
    parser.add_argument("run", type=Path, help="training run folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for the .tflite files and cards")
    parser.add_argument(
        "--variants", default=",".join(CONVERTED),
        help=f"comma-separated subset of {','.join(CONVERTED)} (filter-pruned-int8: python -m converters.filters)",
    )
    parser.add_argument(
        "--data", type=Path, action="append", default=[],
        help="dataset root, repeatable (default: every root the run was trained on; test and val splits come from their manifests)",
    )
    parser.add_argument("--calibration", type=int, default=300, help="training images used to calibrate int8")
    parser.add_argument("--sparsity", type=float, default=0.5, help="pruning target sparsity")
    add_fine_tuning(parser)
    add_external(parser)
    parser.add_argument(
        "--checks", choices=tuple(PROFILES), default=DEFAULT_PROFILE,
        help="input-check profile for the cards: chest-xray (default) or generic for models trained on other images",
    )
    parser.add_argument(
        "--bundle", action="store_true",
        help="copy the int8 and float32 models into the package (edgecxr/models/) when they pass the release gate, and each pruned "
        "variant that passes it with a gzip size within the gate's limit of the int8 model's (edgecxr/evaluation/targets.json 'gates'; needs int8 converted too)",
    )
    parser.add_argument(
        "--change", help="with --bundle: the changelog entry of a bundled model whose content changes (default: converted from RUN_DIR's name)",
    )
    args = parser.parse_args(argv)
    variants = tuple(v for v in args.variants.split(",") if v)
    unknown = set(variants) - set(CONVERTED)
    if FILTER_PRUNED in unknown:
        parser.error(f"{FILTER_PRUNED} is a narrower network, made by python -m converters.filters")
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}")
    if not (args.run / "best.keras").is_file() or not (args.run / "run.json").is_file():
        print(f"error: {args.run}: not a training run folder (needs best.keras and run.json)", file=sys.stderr)
        return 2
    if not 0 < args.sparsity < 1:
        parser.error("--sparsity must be between 0 and 1 (e.g. 0.5)")
    if args.bundle and held_out_sources(args.run):
        parser.error(f"{args.run}: held sources out of training ({', '.join(held_out_sources(args.run))}): an experiment, not bundled")
    cfg = ConvertConfig(
        args.run, args.out, variants, tuple(args.data), args.calibration, args.sparsity,
        external=tuple(args.external), checks=args.checks, **fine_tuning(args),
    )
    try:
        cards = build(cfg)
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = failed_variants(cards)
    if args.bundle:
        change = args.change or f"converted from training run {args.run.name}"
        for variant in ("int8", "float32"):
            if variant in cards and variant not in failed:
                bundle(args.out / f"{cards[variant].name}.tflite", change)
        for variant in bundled_variants(cards):
            bundle(args.out / f"{cards[variant].name}.tflite", change)
    if failed:
        print(f"error: verification or the release gate failed for {', '.join(failed)} (moved to {args.out / 'rejected'})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
