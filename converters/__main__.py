"""Command line: ``python -m converters RUN_DIR --out OUT_DIR [--bundle]``."""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from converters.build import ALL_VARIANTS, ConvertConfig, build
from converters.verify import Thresholds
from training.data import DatasetError
from edgecxr.registry import MODELS_DIR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m converters",
        description="Convert a training run (RUN_DIR/best.keras + run.json) into verified .tflite variants with model cards.",
    )
    parser.add_argument("run", type=Path, help="training run folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for the .tflite files and cards")
    parser.add_argument("--variants", default=",".join(ALL_VARIANTS), help=f"comma-separated subset of {','.join(ALL_VARIANTS)}")
    parser.add_argument("--data", type=Path, help="dataset root (default: the run's)")
    parser.add_argument("--calibration", type=int, default=300, help="training images used to calibrate int8")
    parser.add_argument("--sparsity", type=float, default=0.5, help="pruning target sparsity")
    parser.add_argument("--prune-epochs", type=int, default=2)
    parser.add_argument("--min-agreement", type=float, default=Thresholds.min_agreement, help="top-1 agreement with float32 required")
    parser.add_argument("--max-f1-drop", type=float, default=Thresholds.max_macro_f1_drop, help="largest macro-F1 drop allowed")
    parser.add_argument("--bundle", action="store_true", help="copy the int8 and float32 models into the package (edgecxr/models/)")
    args = parser.parse_args(argv)
    variants = tuple(v for v in args.variants.split(",") if v)
    unknown = set(variants) - set(ALL_VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}")
    if not (args.run / "best.keras").is_file() or not (args.run / "run.json").is_file():
        print(f"error: {args.run}: not a training run folder (needs best.keras and run.json)", file=sys.stderr)
        return 2
    cfg = ConvertConfig(
        args.run, args.out, variants, args.data, args.calibration, args.sparsity, args.prune_epochs,
        Thresholds(args.min_agreement, args.max_f1_drop),
    )
    try:
        cards = build(cfg)
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [v for v, c in cards.items() if not c["verification"]["passed"]]
    if args.bundle:
        for variant in ("int8", "float32"):
            if variant in cards and variant not in failed:
                name = cards[variant]["name"]
                for suffix in (".tflite", ".json"):
                    shutil.copy2(args.out / f"{name}{suffix}", MODELS_DIR / f"{name}{suffix}")
                print(f"bundled {name} in {MODELS_DIR}")
    if failed:
        print(f"error: verification failed for {', '.join(failed)} (moved to {args.out / 'rejected'})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
