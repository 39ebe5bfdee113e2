"""How often the ``noise`` check fires on real films and on generated noise, before and after the pixel-scale measure.

    python -m benchmarks.noise_check [--data ../shared/data] [--out benchmarks/results/noise_check]

*Before* is the check as it was (the 64 x 64 view's texture above ``NOISE_LAPLACIAN``), *after*
the check as it is (that, or the pixel noise above ``NOISE_SIGMA``; :mod:`edgecxr.core.checks`). Real
films: the cxr3 and cxr3-plus test splits, cxr3-fullres (all held out when the thresholds were
chosen on train + val) and, reported only, cxr3-plus external. Generated: uniform and Gaussian
noise drawn per pixel at 128 to 4096 px. Writes ``results.json`` and ``report.md``; neither holds
a pixel of any film.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from edgecxr.core.checks import CHECK_SIZE, NOISE_LAPLACIAN, NOISE_SIGMA, check_view, pixel_noise
from edgecxr.core.imageio import LoadedImage, from_array, load_image
from edgecxr.core.inputs import find_images
from edgecxr.evaluation.benchmark import platform_info
from edgecxr.evaluation.provenance import invocation, record

REPO = Path(__file__).resolve().parents[1]
FILM_SETS = {"cxr3 test": "cxr3/test", "cxr3-plus test": "cxr3-plus/test", "cxr3-fullres": "cxr3-fullres", "cxr3-plus external (report only)": "cxr3-plus/external"}
SIZES = (128, 256, 512, 1024, 2048, 4096)


def measures(image: LoadedImage) -> tuple[float, float]:
    """(texture of the 64 px view, pixel noise) of one image, as the check reads them."""
    view = check_view(image.pixels)
    return float(np.abs(cv2.Laplacian(view, cv2.CV_32F)).mean()), pixel_noise(image.pixels)


def summary(values: list[tuple[float, float]]) -> dict:
    texture, noise = np.array([v[0] for v in values]), np.array([v[1] for v in values])
    before = texture > NOISE_LAPLACIAN
    after = before | (noise > NOISE_SIGMA)
    return {
        "n": len(values), "flagged_before": int(before.sum()), "flagged_after": int(after.sum()),
        "texture_max": round(float(texture.max()), 4), "pixel_noise_max": round(float(noise.max()), 4),
        "pixel_noise_p99": round(float(np.percentile(noise, 99)), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.noise_check", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="the shared data folder")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "noise_check")
    args = parser.parse_args(argv)
    films = {}
    for name, sub in FILM_SETS.items():
        films[name] = summary([measures(load_image(f)) for f in find_images(args.data / sub)])
    rng = np.random.default_rng(0)
    generated = {}
    for size in SIZES:
        for kind, image in (
            ("uniform noise", rng.integers(0, 256, (size, size), dtype=np.uint8)),
            ("gaussian noise (sd 40 of 255)", np.clip(np.round(rng.normal(128, 40, (size, size))), 0, 255).astype(np.uint8)),
        ):
            generated[f"{kind} {size} px"] = summary([measures(from_array(image))])
    report = {
        "record": record(invocation("python -m benchmarks.noise_check", argv)),
        "platform": platform_info(),
        "thresholds": {"noise_laplacian": NOISE_LAPLACIAN, "check_size": CHECK_SIZE, "noise_sigma": NOISE_SIGMA},
        "films": films, "generated": generated,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [
        "# The noise check before and after the pixel-scale measure",
        "",
        f"Before: texture of the {CHECK_SIZE} px view > {NOISE_LAPLACIAN}. After: that, or pixel noise (film centre, read resolution) > {NOISE_SIGMA}.",
        f"`{report['record']['command']}`, {report['record']['utc_time']}, on {report['platform']['machine']} {report['platform']['cpu']} ({report['platform']['cpus']} cpus).",
        "",
        "| images | n | flagged before | flagged after | texture max | pixel noise p99 | pixel noise max |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in {**films, **generated}.items():
        lines.append(f"| {name} | {s['n']} | {s['flagged_before']} | {s['flagged_after']} | {s['texture_max']} | {s['pixel_noise_p99']} | {s['pixel_noise_max']} |")
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
