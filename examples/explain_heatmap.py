"""Show where the model looked: a heatmap overlay per X-ray and a flag when it looked outside the lungs.

The bundled ResNet models compute a class activation map on the device from their own int8
feature map. This script saves the overlay for each file and measures the share of the heatmap
that falls inside a fixed lung-field prior (``edgecxr.core.regions``): a low share means the answer
rests on something other than the lungs (borders, labels, the neck), so a human should look.
Research use only.

    python examples/explain_heatmap.py FILE... --out DIR [--model NAME_OR_PATH] [--min-lung-share 0.25]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgecxr import ImageError, ModelError, load_image, load_model
from edgecxr.core.picture import PictureWriter, result_picture
from edgecxr.core.regions import region_masks


def lung_share(heatmap) -> float:
    """The share of the heatmap's mass inside the lung prior (the prior is in fractions of the frame)."""
    lungs = region_masks(*heatmap.shape)["lungs"]
    total = float(heatmap.sum())
    return float(heatmap[lungs].sum()) / total if total > 0 else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="X-ray image files")
    parser.add_argument("--out", type=Path, required=True, help="folder for the pictures (heatmap inside the lung fields, colour bar, call)")
    parser.add_argument("--model", help="a model with heatmaps (default: the bundled default model)")
    parser.add_argument("--min-lung-share", type=float, default=0.25, help="flag a heatmap with less of its mass in the lungs")
    args = parser.parse_args(argv)
    try:
        model = load_model(args.model)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not model.has_heatmap:
        print(f"error: {model.name} has no heatmap; use a resnet18 model", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    writer, failed = PictureWriter.heatmaps(args.out), 0
    for file in args.files:
        try:
            image = load_image(file)
            p = model.predict(image, heatmap=True)
        except ImageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        assert p.heatmap is not None  # predict(heatmap=True) sets it
        target = writer.write(Path(file), result_picture(image.pixels, p, p.lungs))  # <stem>.heatmap.png, any file name
        share = lung_share(p.heatmap)
        flag = "  LOOKED OUTSIDE THE LUNGS: review" if share < args.min_lung_share else ""
        print(f"{file}: {p.label} {p.probabilities[p.label]:.2f}, lung share {share:.2f} -> {target}{flag}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
