"""Predict every X-ray under a folder and write one CSV row per file.

Shows the core of the Python API: load a model once, call ``model.predict(path)`` per file,
and keep going when a file cannot be read (``ImageError``). Research use only, not a diagnosis.

    python examples/folder_to_csv.py SCANS_DIR OUT.csv [--model NAME_OR_PATH]

Columns: file, label, one probability column per class (the model's labels), latency_ms,
warnings (joined with "; "), error. A file that cannot be read gets a row with only file and
error filled in. Prints "N ok / M failed" and exits with status 1 if any file failed.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from edgecxr import ImageError, ModelError, find_images, load_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scans", type=Path, help="folder of images (searched recursively)")
    parser.add_argument("out", type=Path, help="CSV file to write")
    parser.add_argument("--model", help="bundled model name or path to a .tflite (default: the bundled default)")
    args = parser.parse_args(argv)

    if not args.scans.is_dir():
        parser.error(f"{args.scans}: not a folder")
    try:
        model = load_model(args.model)  # load once: this is the slow part
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    columns = ["file", "label", *model.labels, "latency_ms", "warnings", "error"]
    ok = failed = 0
    with args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for path in find_images(args.scans):  # recursively, sorted, as `edgecxr predict` finds them
            try:
                p = model.predict(path)
            except ImageError as exc:  # unreadable file: record it and carry on
                writer.writerow({"file": str(path), "error": exc.reason})
                print(f"error: {exc}", file=sys.stderr)
                failed += 1
                continue
            writer.writerow({
                "file": str(path),
                "label": p.label,
                **{label: f"{prob:.6f}" for label, prob in p.probabilities.items()},
                "latency_ms": f"{p.latency_ms:.3f}",
                "warnings": "; ".join(p.warnings),
                "error": "",
            })
            ok += 1

    print(f"{ok} ok / {failed} failed -> {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
