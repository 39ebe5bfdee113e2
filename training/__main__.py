"""Command line: ``python -m training [DATA_DIR] [--data ROOT]... --out RUN_DIR [options]``."""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from edgecxr.core.families import FAMILIES, names
from edgecxr.evaluation.provenance import invocation
from training.data import DatasetError
from training.recipe import BALANCE


def make_parser() -> argparse.ArgumentParser:
    """The training command's options (also read back from a run's recorded command: :mod:`converters.recover`)."""
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train an edgecxr model on one-folder-per-class datasets "
        "(root/{train,val,test}/{class}/... or root/{class}/...); several roots train together.",
    )
    parser.add_argument("data", type=Path, nargs="?", help="dataset root folder (the same as a first --data)")
    parser.add_argument(
        "--data", dest="roots", type=Path, action="append", default=[],
        help="a dataset root, repeatable; the first root (positional or --data) gives the labels, "
        "further roots' class folders are a subset (e.g. --data cxr3 --data cxr3-plus)",
    )
    parser.add_argument("--out", type=Path, required=True, help="run folder to write (model, metrics, plots)")
    classifiers = names("classification")  # segmentation families train with their own command (python -m training.lungs)
    parser.add_argument("--family", choices=classifiers, default="resnet18", help="model family (default resnet18)")
    sizes = ", ".join(f"{FAMILIES[n].input_size} {n}" for n in classifiers)
    parser.add_argument("--input-size", type=int, help=f"input side in pixels (default {sizes})")
    parser.add_argument(
        "--crop", choices=("none", "center-square", "lungs"), default="none",
        help="preprocessing crop: the whole film (default), its centred square, or the lung fields' box from the bundled lung model",
    )
    parser.add_argument("--width", type=int, default=32, help="resnet18 first-stage width (default 32)")
    parser.add_argument("--bn-momentum", type=float, default=0.99, help="BatchNorm running-average momentum (0.9 for small data)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of the cosine schedule")
    parser.add_argument("--patience", type=int, default=6, help="early-stopping patience on val loss")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hflip", action="store_true", help="augment with horizontal flips (off for CXR)")
    parser.add_argument(
        "--no-geometric", dest="geometric", action="store_false",
        help="intensity augmentation only (no crops/rotations); suits mlp12",
    )
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.keras")
    parser.add_argument("--init-from", type=Path, help="fine-tune from this run folder or .keras model")
    parser.add_argument("--freeze-backbone", action="store_true", help="with --init-from: train only the head")
    parser.add_argument(
        "--strategy", choices=("default", "mirrored", "multiworker"), default="default",
        help="tf.distribute strategy: one device, all local GPUs, or workers from TF_CONFIG",
    )
    parser.add_argument("--workers", type=int, default=4, help="threads decoding images")
    parser.add_argument(
        "--balance", choices=BALANCE, default="none",
        help="source x class balanced sampling: every class equally often, its cells evenly (cells) or by sqrt(size) (sqrt)",
    )
    parser.add_argument("--scanner-aug", action="store_true", help="scanner-style augmentation (gamma, window, blur/sharpen, noise, JPEG, resampling, borders)")
    parser.add_argument("--markers", action="store_true", help="burn synthetic text, letters, arrows and boxes into films of all classes")
    parser.add_argument(
        "--adversarial", type=float, default=0.0, metavar="LAMBDA",
        help="source-adversarial head with gradient reversal of this strength (0: off; e.g. 0.3)",
    )
    parser.add_argument(
        "--select", choices=("loss", "worst"), default="loss",
        help="best.keras by lowest val loss, or by the highest recall of the worst source x class val cell (>= 10 films)",
    )
    parser.add_argument(
        "--hold-out", action="append", default=[], metavar="SOURCE",
        help="leave this source's films (the manifests' source column) out of train and val, repeatable; test keeps them "
        "(leave-one-source-out: python -m benchmarks.loso)",
    )
    parser.add_argument(
        "--teacher", type=Path,
        help="distil from this classifier .tflite (with its card): targets mix its soft outputs with the labels (training.distill)",
    )
    parser.add_argument("--distill-alpha", type=float, default=0.5, help="with --teacher: weight of the hard label (default 0.5)")
    parser.add_argument("--distill-temperature", type=float, default=2.0, help="with --teacher: softening of the teacher's probabilities (default 2)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.freeze_backbone and not args.init_from:
        parser.error("--freeze-backbone needs --init-from")
    roots = ([args.data] if args.data else []) + args.roots
    if not roots:
        parser.error("give a dataset root (DATA_DIR or --data ROOT)")

    from training.train import TrainConfig, train

    options = {k: v for k, v in vars(args).items() if k not in ("data", "roots")}
    cfg = TrainConfig(data=roots[0], more_data=roots[1:], **options)
    # Ctrl+C must reach the checkpointing handler even when started in the background, where the
    # shell makes the process ignore SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        metrics = train(cfg, invocation("python -m training", argv))
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    for split, m in metrics.items():
        print(f"{split}: accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
