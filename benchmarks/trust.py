"""Trust report: where the device's heatmaps look, how calibrated its probabilities are, and when its
odd-input checks fire.

    python -m benchmarks.trust --model resnet18-int8 --keras RUN_DIR --data ../shared/data/cxr3 \
        --fullres ../shared/data/cxr3-fullres --out benchmarks/results/trust [--examples 4]

Writes ``trust.json``, ``report.md``, ``mean_heatmaps.png`` and ``reliability.png`` (none of them
holds a pixel of any X-ray); with ``--examples`` also overlays on real test images into
``OUT/examples/``, which stay on the machine that made them (the data may not be copied into the
repository).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import cv2
import numpy as np

from edgecxr.calibration import apply_temperature, expected_calibration_error, negative_log_likelihood
from edgecxr.cam import normalise, overlay
from edgecxr.checks import input_warnings
from edgecxr.imageio import ImageError, load_image
from edgecxr.model import Model, load_model
from edgecxr.regions import BORDER, CORNER, LUNG_PRIOR, region_masks

WRONG_INPUTS_PER_KIND = 40


def mass_fractions(heat: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, float]:
    """The share of a heatmap's (non-negative) mass inside each region."""
    total = float(heat.sum())
    return {name: float(heat[mask].sum()) / total if total > 0 else 0.0 for name, mask in masks.items()}


def heatmaps_in_frame(model: Model, x: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(raw low-resolution CAMs, normalised CAMs upsampled to the input frame) of ``classes[i]`` for ``x[i]``."""
    height, width = x.shape[1:3]
    raw = np.stack([model.class_activation_map(img, int(c)) for img, c in zip(x, classes)])
    frame = np.stack([normalise(cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR)) for m in raw])
    return raw, frame


def group_means(records: list[dict], key: str, fields: tuple[str, ...]) -> dict[str, dict]:
    """Mean of ``fields`` over the records sharing each value of ``key``, with the count."""
    out = {}
    for value in sorted({r[key] for r in records}):
        members = [r for r in records if r[key] == value]
        out[value] = {"n": len(members), **{f: round(float(np.mean([r[f] for r in members])), 4) for f in fields}}
    return out


def heatmap_section(model: Model, test, labels: list[str], keras_run: Path | None) -> tuple[dict, np.ndarray]:
    probs = np.stack([model.predict_preprocessed(img) for img in test.x])
    pred = probs.argmax(1)
    raw, frame = heatmaps_in_frame(model, test.x, pred)
    masks = {k: v for k, v in region_masks(*test.x.shape[1:3]).items() if k != "spine"}
    records = []
    for i, heat in enumerate(frame):
        peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
        records.append({
            "true": labels[test.y[i]], "source": test.sources[i] or "unknown",
            **mass_fractions(heat, masks), "peak_in_lungs": float(masks["lungs"][peak]),
        })
    fields = ("lungs", "border", "corners", "peak_in_lungs")
    section = {
        "lung_prior": {"ellipses_cx_cy_rx_ry": LUNG_PRIOR, "border_band": BORDER, "corner_square": CORNER},
        "area_fractions": {name: round(float(m.mean()), 4) for name, m in masks.items()},
        "feature_map": list(raw.shape[1:]),
        "overall": group_means([{**r, "all": "all"} for r in records], "all", fields)["all"],
        "by_class": group_means(records, "true", fields),
        "by_source": group_means(records, "source", fields),
    }
    if keras_run is not None:
        section["int8_vs_float_gradcam"] = gradcam_agreement(keras_run, test.x, pred, raw)
    return section, np.stack([frame[test.y == c].mean(0) for c in range(len(labels))])


def gradcam_agreement(keras_run: Path, x: np.ndarray, pred: np.ndarray, device_maps: np.ndarray) -> dict:
    """Spearman rank correlation, per image, between the device CAM and Grad-CAM on the float Keras model."""
    import tf_keras as keras

    from training.gradcam import grad_cam, rank_correlation

    reference = grad_cam(keras.models.load_model(keras_run / "best.keras"), x, pred)
    rho = np.array([rank_correlation(a, b) for a, b in zip(device_maps, reference)])
    return {
        "images": int(len(rho)),
        "median": round(float(np.median(rho)), 4),
        "mean": round(float(np.mean(rho)), 4),
        "p5": round(float(np.percentile(rho, 5)), 4),
        "share_at_least_0.9": round(float(np.mean(rho >= 0.9)), 4),
    }


def calibration_section(model: Model, test) -> tuple[dict, np.ndarray, np.ndarray]:
    raw = np.stack([model.predict_preprocessed(img, calibrated=False) for img in test.x])
    calibrated = apply_temperature(raw, model.temperature)
    return {
        "temperature": model.temperature,
        "fitted_on": model.card.get("temperature", {}).get("fitted_on"),
        "test_ece": {"before": round(expected_calibration_error(raw, test.y), 4), "after": round(expected_calibration_error(calibrated, test.y), 4)},
        "test_nll": {"before": round(negative_log_likelihood(raw, test.y), 4), "after": round(negative_log_likelihood(calibrated, test.y), 4)},
    }, raw, calibrated


def wrong_inputs(test_files: list[Path], seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Deliberately wrong inputs, made in memory: photographs, blanks, tiny or cut X-rays, negatives, noise."""
    rng = np.random.default_rng(seed)
    xrays = [load_image(f).pixels for f in rng.choice(test_files, WRONG_INPUTS_PER_KIND, replace=False)]
    n = WRONG_INPUTS_PER_KIND
    smooth_colour = [cv2.resize(rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8), (400, 300), interpolation=cv2.INTER_CUBIC) for _ in range(n)]
    return {
        "colour photograph (smooth colour field)": smooth_colour,
        "constant image": [np.full((256, 256), v, np.float32) for v in rng.uniform(0, 1, n)],
        "nearly uniform image": [np.clip(rng.normal(v, 0.005, (256, 256)), 0, 1).astype(np.float32) for v in rng.uniform(0.1, 0.9, n)],
        "tiny X-ray (longest side 48 px)": [cv2.resize(x, (48, max(8, round(48 * x.shape[0] / x.shape[1]))), interpolation=cv2.INTER_AREA) for x in xrays],
        "strip cut from an X-ray (4:1)": [x[x.shape[0] // 2 - x.shape[1] // 8 : x.shape[0] // 2 + x.shape[1] // 8, :] for x in xrays],
        "negative X-ray (inverted)": [1.0 - x for x in xrays],
        "uniform noise": [rng.uniform(0, 1, (256, 256)).astype(np.float32) for _ in range(n)],
    }


def checks_section(model: Model, test_files: list[Path], fullres_files: list[Path]) -> dict:
    """How often each odd-input check fires on real X-rays (false alarms) and on wrong inputs."""
    def kinds(warnings: list[str]) -> list[str]:
        return [w.split(" (")[0].split(";")[0] for w in warnings]

    real = {}
    for name, files in (("shared test split", test_files), ("full-resolution originals", fullres_files)):
        fired = {}
        for f in files:
            for kind in kinds(input_warnings(load_image(f))):
                fired.setdefault(kind, []).append(f.name)
        real[name] = {"images": len(files), "fired": {k: len(v) for k, v in fired.items()}, "files": fired}
    wrong = {}
    for name, images in wrong_inputs(test_files).items():
        warned, refused, labels = 0, 0, {}
        for image in images:
            try:
                p = model.predict(image)
            except ImageError:
                refused += 1
                continue
            warned += bool(p.warnings)
            labels[p.label] = labels.get(p.label, 0) + 1
        wrong[name] = {"images": len(images), "warned": warned, "refused": refused, "predicted": labels}
    return {"real": real, "wrong": wrong}


def plot_mean_heatmaps(means: np.ndarray, labels: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse

    height, width = means.shape[1:]
    fig, axes = plt.subplots(1, len(labels), figsize=(3.2 * len(labels), 3.4))
    for ax, label, heat in zip(np.atleast_1d(axes), labels, means):
        ax.imshow(heat, cmap="jet", vmin=0, vmax=1)
        for cx, cy, rx, ry in LUNG_PRIOR:
            ax.add_patch(Ellipse((cx * width, cy * height), 2 * rx * width, 2 * ry * height, fill=False, color="white", lw=1.5))
        ax.set_title(f"true {label}")
        ax.axis("off")
    fig.suptitle("Mean heatmap of the predicted class, model input frame (white: lung prior)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_reliability(raw: np.ndarray, calibrated: np.ndarray, y: np.ndarray, path: Path, bins: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for probs, name in ((raw, "before"), (calibrated, "after temperature scaling")):
        conf, correct = probs.max(1), probs.argmax(1) == y
        which = np.clip((conf * bins).astype(int), 0, bins - 1)
        xs = [conf[which == b].mean() for b in range(bins) if (which == b).any()]
        ys = [correct[which == b].mean() for b in range(bins) if (which == b).any()]
        ax.plot(xs, ys, "o-", label=f"{name} (ECE {expected_calibration_error(probs, y):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_examples(model: Model, test, out: Path, per_class: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for c in range(len(model.labels)):
        for i in rng.choice(np.flatnonzero(test.y == c), per_class, replace=False):
            loaded = load_image(test.files[i])
            p = model.predict(loaded, heatmap=True)
            name = f"{model.labels[c]}-{test.sources[i]}-{Path(test.files[i]).stem}-pred-{p.label}.png"
            cv2.imwrite(str(out / name), overlay(loaded.pixels, p.heatmap))


def markdown(report: dict) -> str:
    h, c, k = report["heatmaps"], report["calibration"], report["checks"]
    area = h["area_fractions"]
    lines = [
        f"# Trust report: {report['model']}",
        "",
        f"Shared test split, {report['test_images']} images. Heatmaps are the class activation maps of the "
        f"predicted class, computed on the device from the model's own int8 feature map ({'x'.join(map(str, h['feature_map']))} "
        "cells, so each cell covers a 32x32 patch of the 128x128 input), upsampled to the input frame.",
        "",
        "## Does the int8 heatmap match Grad-CAM on the float model?",
        "",
    ]
    if "int8_vs_float_gradcam" in h:
        g = h["int8_vs_float_gradcam"]
        lines += [
            f"Spearman rank correlation per image between the device's int8 CAM and Grad-CAM of the float Keras model "
            f"(pre-ReLU maps, {g['images']} images): median **{g['median']}**, mean {g['mean']}, 5th percentile {g['p5']}; "
            f"{g['share_at_least_0.9'] * 100:.1f}% of images at ≥ 0.9. For a GAP + dense head the two are the same map up to "
            "scale, so this measures what int8 quantization and the export do to it.",
        ]
    else:
        lines.append("Not measured in this run (no `--keras` run given).")
    lines += [
        "",
        "## Where the heatmap mass falls",
        "",
        f"Regions of the model frame: **lungs** = a fixed two-ellipse prior (see `edgecxr/regions.py`: "
        f"fitted by eye to the mean of 1053 training images; a population prior, not a segmentation), **border** = the outer "
        f"{int(BORDER * 100)}% band, **corners** = the four {int(CORNER * 100)}% squares where text markers usually sit. A heatmap "
        f"spread evenly would put {area['lungs']:.0%} of its mass in the lungs, {area['border']:.0%} in the border and "
        f"{area['corners']:.0%} in the corners. *peak in lungs* = share of images whose hottest point is inside the prior.",
        "",
        "| group | n | lungs | border | corners | peak in lungs |",
        "|---|---|---|---|---|---|",
    ]
    o = h["overall"]
    lines.append(f"| all | {o['n']} | {o['lungs']:.2f} | {o['border']:.2f} | {o['corners']:.2f} | {o['peak_in_lungs']:.2f} |")
    for title, groups in (("class", h["by_class"]), ("source", h["by_source"])):
        for name, g in groups.items():
            lines.append(f"| {title} {name} | {g['n']} | {g['lungs']:.2f} | {g['border']:.2f} | {g['corners']:.2f} | {g['peak_in_lungs']:.2f} |")
    lines += [
        "",
        "![mean heatmaps](mean_heatmaps.png)",
        "",
        "## Calibration",
        "",
        f"Temperature {c['temperature']} (fitted on the {c['fitted_on']} split, stored in the card, applied by the runtime). "
        f"Test ECE (15 bins) {c['test_ece']['before']} → **{c['test_ece']['after']}**; test NLL {c['test_nll']['before']} → "
        f"{c['test_nll']['after']}. Temperature never changes the predicted class.",
        "",
        "![reliability](reliability.png)",
        "",
        "## Odd-input checks",
        "",
        "False alarms on real chest X-rays (every warning is a false alarm here):",
        "",
    ]
    for name, r in k["real"].items():
        fired = ", ".join(f"{kind}: {n} ({', '.join(r['files'][kind])})" for kind, n in r["fired"].items()) or "none"
        lines.append(f"- {name} ({r['images']} images): {fired}")
    lines += ["", "Deliberately wrong inputs (made in memory by the report):", "", "| input | n | warned | refused | predicted as |", "|---|---|---|---|---|"]
    for name, w in k["wrong"].items():
        pred = ", ".join(f"{label} {n}" for label, n in sorted(w["predicted"].items())) or "–"
        lines.append(f"| {name} | {w['images']} | {w['warned']} | {w['refused']} | {pred} |")
    lines += [
        "",
        "The noise and negative-film thresholds were set on the real X-rays above (see `edgecxr/checks.py`); the "
        "wrong inputs were not used to choose them. There is no check for a lateral view: the shared data holds none "
        "to set a threshold on. A warning does not change the answer: every wrong input still gets a label, mostly "
        "COVID, which is itself a sign of what the model keys on.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trust", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet18-int8", help="bundled model name or .tflite path (needs a heatmap)")
    parser.add_argument("--keras", type=Path, help="training run folder of the float model, for the Grad-CAM comparison")
    parser.add_argument("--data", type=Path, required=True, help="dataset root with a test split (and manifest.csv for sources)")
    parser.add_argument("--fullres", type=Path, help="folder of full-resolution originals to count false alarms on")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--examples", type=int, default=0, help="overlays per class written to OUT/examples/ (not for committing)")
    args = parser.parse_args(argv)

    from training.data import DatasetError, load_dataset

    model = load_model(args.model)
    if not model.has_heatmap:
        print(f"error: {model.name} has no heatmap", file=sys.stderr)
        return 2
    try:
        test = load_dataset(args.data, model.card["preprocessing"]).splits["test"]
    except (DatasetError, KeyError) as exc:
        print(f"error: {args.data}: no usable test split ({exc})", file=sys.stderr)
        return 2
    heat, means = heatmap_section(model, test, model.labels, args.keras)
    calibration, raw, calibrated = calibration_section(model, test)
    fullres = sorted(p for p in args.fullres.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"}) if args.fullres else []
    report = {
        "model": model.name,
        "test_images": int(len(test.y)),
        "heatmaps": heat,
        "calibration": calibration,
        "checks": checks_section(model, [Path(f) for f in test.files], fullres),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "trust.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "report.md").write_text(markdown(report))
    plot_mean_heatmaps(means, model.labels, args.out / "mean_heatmaps.png")
    plot_reliability(raw, calibrated, test.y, args.out / "reliability.png")
    if args.examples:
        write_examples(model, test, args.out / "examples", args.examples)
    print(f"wrote {args.out}/trust.json, report.md, mean_heatmaps.png, reliability.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
