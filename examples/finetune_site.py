"""Fine-tune a trained edgecxr model on a site's own images, then print the site test metrics.

A thin wrapper over the training package; it runs the same thing as

    python -m training SITE_DATA --init-from BASE_RUN --freeze-backbone --out OUT --epochs 10

SITE_DATA holds SITE_DATA/{train,val,test}/{class}/... (or SITE_DATA/{class}/..., split 70/15/15).
The base run's preprocessing is reused; class folders that differ from the base model's labels
get a new classifier head on the same backbone. By default only the head is trained
(--freeze-backbone); pass --train-all to fine-tune every layer (needs more site images).
Needs the training extra (pip install -e '.[train]') and a source checkout. Run it as

    python examples/finetune_site.py SITE_DATA BASE_RUN OUT [--epochs 10] [--lr 1e-3] [--train-all]

then convert OUT to .tflite with `python -m converters OUT --out OUT/tflite`.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# training/ lives in the source checkout beside examples/ (it is not part of the installed package)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site_data", type=Path, help="the site's dataset: one folder per class")
    parser.add_argument("base_run", type=Path, help="trained run folder (or its best.keras) to start from")
    parser.add_argument("out", type=Path, help="run folder to write")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-all", action="store_true", help="also train the backbone, not only the head")
    args = parser.parse_args(argv)
    if not (args.base_run if args.base_run.is_dir() else args.base_run.parent).joinpath("run.json").is_file():
        parser.error(f"{args.base_run}: not a training run (no run.json)")

    from training.data import DatasetError  # imports TensorFlow: only after argument checks
    from training.train import TrainConfig, train

    cfg = TrainConfig(
        data=args.site_data, out=args.out, init_from=args.base_run, freeze_backbone=not args.train_all,
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, patience=max(3, args.epochs // 3),
    )
    try:
        metrics = train(cfg, [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    test = metrics.get("test")
    if test is None:
        print(f"no test split in {args.site_data}; metrics are in {args.out / 'metrics.json'}")
        return 0
    print(f"site test: n={test['n']}  accuracy {test['accuracy']:.4f}  macro-F1 {test['macro_f1']:.4f}")
    for label, c in test["per_class"].items():
        print(f"  {label:<12} sensitivity {c['recall']:.3f}  precision {c['precision']:.3f}  n={c['support']}")
    print(f"run folder: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
