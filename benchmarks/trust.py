"""Trust report: where the device's heatmaps look, how calibrated its probabilities are, and when its
odd-input checks fire.

    python -m benchmarks.trust --model resnet18-int8 --reference resnet18-float32 \
        --data ../shared/data/cxr3 --fullres ../shared/data/cxr3-fullres \
        --out benchmarks/results/trust [--keras RUN_DIR] [--examples 4]

Heatmaps: where the predicted class's map peaks and how much of its mass lies in a fixed lung
prior and in the lung fields the bundled lung model finds on each film (per class of correct
predictions, checked against the ``generalization`` lung-share target; the measures are
:mod:`benchmarks.heatmaps`, shared with the external-validity report); with ``--reference`` (a
TFLite export of the same Keras model, e.g. ``resnet18-float32``) or ``--keras`` (its training run)
how closely the device map follows the float model's.

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

from benchmarks.heatmaps import lung_mask_in_frame, lung_model, lung_share, map_agreement, mass_fractions, peak_cell, peak_fields
from edgecxr.core.calibration import expected_calibration_error, negative_log_likelihood, reliability_bins
from edgecxr.core.cam import normalise, overlay
from edgecxr.core.card import ModelError
from edgecxr.core.checks import input_checks
from edgecxr.core.imageio import ImageError, load_image
from edgecxr.core.inputs import find_images
from edgecxr.core.model import Model, load_model
from edgecxr.core.regions import BORDER, CORNER, LUNG_PRIOR, region_masks
from edgecxr.core.registry import DEFAULT_MODEL
from edgecxr.evaluation.provenance import invocation, record
from edgecxr.evaluation.targets import targets

WRONG_INPUTS_PER_KIND = 40


def heatmaps_in_frame(model: Model, x: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(raw low-resolution CAMs, normalised CAMs mapped onto the input frame) of ``classes[i]`` for ``x[i]``."""
    frame_shape = x.shape[1:3]
    raw = np.stack([model.class_activation_map(img, int(c)) for img, c in zip(x, classes)])
    frame = np.stack([normalise(cv2.resize(m.astype(np.float32), (frame_shape[1], frame_shape[0]), interpolation=cv2.INTER_LINEAR)) for m in raw])
    return raw, frame


def group_means(records: list[dict], key: str, fields: tuple[str, ...]) -> dict[str, dict]:
    """Mean of ``fields`` over the records sharing each value of ``key``, with the count."""
    out = {}
    for value in sorted({r[key] for r in records}):
        members = [r for r in records if r[key] == value]
        out[value] = {"n": len(members), **{f: round(float(np.mean([r[f] for r in members])), 4) for f in fields}}
    return out


def content_free(model: Model, test_x: np.ndarray) -> dict[str, dict]:
    """What the model says, and where its map peaks, for inputs with no anatomy in them."""
    rng = np.random.default_rng(0)
    shape = test_x.shape[1:]
    inputs = {
        "mean of the test films": test_x.mean(0),
        "uniform grey": np.full(shape, 0.5, np.float32),
        "uniform noise": rng.uniform(0, 1, shape).astype(np.float32),
    }
    out = {}
    for name, x in inputs.items():
        label = int(np.argmax(model.predict_preprocessed(x)))
        out[name] = {"predicted": model.labels[label], "peak_cell_row_col": peak_cell(model.class_activation_map(x, label))}
    return out


def heatmap_section(model: Model, test, raw_probs: np.ndarray, keras_run: Path | None, reference: Model | None = None) -> tuple[dict, np.ndarray]:
    labels = model.labels
    pred = raw_probs.argmax(1)  # temperature never changes the winner
    raw, frame = heatmaps_in_frame(model, test.x, pred)
    masks = {k: v for k, v in region_masks(*test.x.shape[1:3]).items() if k != "spine"}
    lungs = lung_model()
    fields: tuple[str, ...] = ("lungs", "border", "corners", "peak_top_row", "peak_central")
    records = [
        {
            "predicted": labels[pred[i]], "correct": bool(pred[i] == test.y[i]), "source": test.sources[i] or "unknown",
            **mass_fractions(heat, masks), **peak_fields(raw[i]),
        }
        for i, heat in enumerate(frame)
    ]
    if lungs is not None:  # the lung fields the bundled lung model finds, in the model's input frame
        fields += ("lung_share", "lung_area")
        for r, f, heat in zip(records, test.files, frame):
            in_lungs = lung_mask_in_frame(lungs, model.read(f), model.card.preprocessing, heat.shape)
            r.update(lung_share=lung_share(heat, in_lungs), lung_area=float(in_lungs.mean()))
    h, w = raw.shape[1:]
    by_class = group_means([r for r in records if r["correct"]], "predicted", fields)
    section = {
        "lung_prior": {"ellipses_cx_cy_rx_ry": LUNG_PRIOR, "border_band": BORDER, "corner_square": CORNER},
        "area_fractions": {name: round(float(m.mean()), 4) for name, m in masks.items()},
        "chance": {"peak_top_row": round(1 / h, 4), "peak_central": round((h - 2) * (w - 2) / (h * w), 4)},
        "feature_map": list(raw.shape[1:]),
        "overall": group_means([{**r, "all": "all"} for r in records], "all", fields)["all"],
        "by_predicted_class_correct_only": by_class,
        "by_source": group_means(records, "source", fields),
        "content_free": content_free(model, test.x),
    }
    if lungs is not None:
        section["lung_fields"] = {
            "lung_model": {"name": lungs.name, "version": lungs.card.version, "sha256": lungs.card.sha256},
            "targets": lung_share_targets(model, by_class),
        }
    if reference is not None:
        section["vs_reference_cam"] = reference_agreement(reference, test.x, pred, raw)
    if keras_run is not None:
        section["int8_vs_float_gradcam"] = gradcam_agreement(keras_run, model, test.x, pred, raw)
    means = np.stack([frame[(pred == c) & (pred == test.y)].mean(0) for c in range(len(labels))])
    return section, means


def lung_share_targets(model: Model, by_class: dict[str, dict]) -> list[dict]:
    """The ``generalization`` target on the lung share of correct COVID predictions, checked on this test split."""
    covid = by_class.get("COVID", {}).get("lung_share")
    return [t.check(covid, model.name) for t in targets("generalization")
            if t.key == "cam_lung_share_covid" and t.applies_to(model.card.family or "") and covid is not None]


def check_reference(model: Model, reference: Model) -> None:
    """ValueError unless ``reference`` gives maps comparable with ``model``'s: a heatmap, the same labels, input, map and dense weights."""
    if not reference.has_heatmap:
        raise ValueError(f"{reference.path}: has no heatmap")
    ours, theirs = model.card.cam, reference.card.cam
    assert ours is not None and theirs is not None and model.feature_details and reference.feature_details  # both have heatmaps
    if reference.labels != model.labels or reference.card.preprocessing != model.card.preprocessing:
        raise ValueError(f"{reference.path}: its labels or preprocessing differ from {model.name}'s")
    same_map = tuple(reference.feature_details["shape"]) == tuple(model.feature_details["shape"])
    if not same_map or not np.allclose(np.asarray(theirs.weights), np.asarray(ours.weights), atol=1e-5):
        raise ValueError(f"{reference.path}: its feature map or heatmap weights differ from {model.name}'s: not converted from the same model")


def reference_agreement(reference: Model, x: np.ndarray, pred: np.ndarray, device_maps: np.ndarray) -> dict:
    """Per image, the device CAM against the CAM of a reference TFLite model (e.g. the float32 export of the same
    Keras model) for the same class: rank correlation and same hottest cell (:func:`benchmarks.heatmaps.map_agreement`)."""
    maps = np.stack([reference.class_activation_map(img, int(c)) for img, c in zip(x, pred)])
    return {"reference": f"{reference.name} {reference.card.version}", "sha256": reference.card.sha256, **map_agreement(device_maps, maps)}


def gradcam_agreement(keras_run: Path, model: Model, x: np.ndarray, pred: np.ndarray, device_maps: np.ndarray) -> dict:
    """Spearman rank correlation, per image, between the device CAM and Grad-CAM on the float Keras model,
    and how often both put their hottest cell in the same place."""
    import tf_keras as keras

    from training.gradcam import grad_cam

    keras_model = keras.models.load_model(keras_run / "best.keras")
    assert model.card.cam is not None  # only heatmap models get here
    kernel, card_weights = keras_model.get_layer("classifier").get_weights()[0], np.asarray(model.card.cam.weights)
    if kernel.shape != card_weights.shape or not np.allclose(kernel, card_weights, atol=1e-5):
        raise ValueError(f"{keras_run}: its classifier weights differ from {model.name}'s card: not the model it was converted from")
    return map_agreement(device_maps, grad_cam(keras_model, x, pred))


def calibration_section(model: Model, test, raw: np.ndarray) -> tuple[dict, np.ndarray]:
    calibrated = model.recalibrated(raw, model.temperature)
    return {
        "temperature": model.temperature,
        "fitted_on": model.card.temperature.fitted_on if model.card.temperature else None,
        "test_ece": {"before": round(expected_calibration_error(raw, test.y), 4), "after": round(expected_calibration_error(calibrated, test.y), 4)},
        "test_nll": {"before": round(negative_log_likelihood(raw, test.y), 4), "after": round(negative_log_likelihood(calibrated, test.y), 4)},
    }, calibrated


def wrong_inputs(test_files: list[Path], seed: int = 0) -> dict[str, tuple[str, list[np.ndarray]]]:
    """Deliberately wrong inputs, made in memory, each with the warning meant to catch it.

    Inverted films use every test film; the other kinds a sample of :data:`WRONG_INPUTS_PER_KIND`.
    """
    rng = np.random.default_rng(seed)
    n = WRONG_INPUTS_PER_KIND
    sample = [load_image(test_files[i]).pixels for i in rng.choice(len(test_files), n, replace=False)]  # the same draws as choosing from the list
    smooth_colour = [cv2.resize(rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8), (400, 300), interpolation=cv2.INTER_CUBIC) for _ in range(n)]
    return {
        "colour photograph (smooth colour field)": ("colour", smooth_colour),
        "constant image": ("refused", [np.full((256, 256), v, np.float32) for v in rng.uniform(0, 1, n)]),
        "nearly uniform image": ("nearly_uniform", [np.clip(rng.normal(v, 0.005, (256, 256)), 0, 1).astype(np.float32) for v in rng.uniform(0.1, 0.9, n)]),
        "tiny X-ray (longest side 48 px)": ("small_image", [cv2.resize(x, (48, max(8, round(48 * x.shape[0] / x.shape[1]))), interpolation=cv2.INTER_AREA) for x in sample]),
        "strip cut from an X-ray (4:1)": ("extreme_aspect", [x[x.shape[0] // 2 - x.shape[1] // 8 : x.shape[0] // 2 + x.shape[1] // 8, :] for x in sample]),
        "negative X-ray (every test film inverted)": ("negative_film", [1.0 - load_image(f).pixels for f in test_files]),
        "uniform noise": ("noise", [rng.uniform(0, 1, (256, 256)).astype(np.float32) for _ in range(n)]),
    }


def checks_section(model: Model, test_files: list[Path], fullres_files: list[Path]) -> dict:
    """How often each odd-input check fires on real X-rays (false alarms) and on the wrong inputs meant for it."""
    real = {}
    for name, files in (("held-out test split", test_files), ("full-resolution originals", fullres_files)):
        fired: dict[str, list[str]] = {}
        for f in files:
            for check in input_checks(model.read(f), profile=model.check_profile):
                fired.setdefault(check.code, []).append(f.name)
        real[name] = {"images": len(files), "fired": {k: len(v) for k, v in fired.items()}, "files": fired}
    wrong = {}
    for name, (expected, images) in wrong_inputs(test_files).items():
        caught, refused = 0, 0
        labels: dict[str, int] = {}
        for image in images:
            try:
                p = model.predict(image)
            except ImageError:
                refused += 1
                continue
            caught += expected in {c.code for c in p.checks}
            labels[p.label] = labels.get(p.label, 0) + 1
        wrong[name] = {"images": len(images), "expected": expected, "caught": caught + (refused if expected == "refused" else 0), "refused": refused, "predicted": labels}
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
        ax.set_title(f"{label} (correct)")
        ax.axis("off")
    fig.suptitle("Mean heatmap of correctly predicted films, model input frame (white: lung prior)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_reliability(raw: np.ndarray, calibrated: np.ndarray, y: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for probs, name in ((raw, "before"), (calibrated, "after temperature scaling")):
        confidence, accuracy, _ = zip(*reliability_bins(probs, y))
        ax.plot(confidence, accuracy, "o-", label=f"{name} (ECE {expected_calibration_error(probs, y):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("confidence (15 equal-width bins, as the ECE)")
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
            assert p.heatmap is not None  # predict(heatmap=True) sets it
            name = f"{model.labels[c]}-{test.sources[i]}-{Path(test.files[i]).stem}-pred-{p.label}.png"
            cv2.imwrite(str(out / name), overlay(loaded.pixels, p.heatmap))


def markdown(report: dict) -> str:
    h, c, k = report["heatmaps"], report["calibration"], report["checks"]
    area, chance = h["area_fractions"], h["chance"]
    rows, cols = h["feature_map"]
    lines = [
        f"# Trust report: {report['model']}",
        "",
        f"Shared test split, {report['test_images']} images. Heatmaps are the class activation maps of the predicted "
        f"class, computed on the device from the model's own int8 feature map: {rows}x{cols} cells (a stride of "
        f"{report['input_size'] // rows} px at the {report['input_size']}-px input; each cell's receptive field covers most of the "
        "image), stretched back over the frame. A map this coarse can tell the centre of the film from its edges and not "
        "much more.",
        "",
        "## Does the int8 heatmap match the float model's?",
        "",
    ]
    if "vs_reference_cam" in h:
        r = h["vs_reference_cam"]
        lines.append(
            f"Per image, between the device's CAM and the CAM of `{r['reference']}` (a TFLite export of the same Keras model, "
            f"same dense weights, run through the same runtime) for the class {report['model']} predicted ({r['images']} images): "
            f"Spearman rank correlation of the pre-ReLU maps median **{r['median']}**, 5th percentile {r['p5']} "
            f"({r['share_at_least_0.9'] * 100:.1f}% of images at ≥ 0.9); the same hottest cell in {r['same_peak_cell'] * 100:.1f}% "
            "of images. This measures what int8 quantization does to the map, not whether the map is right."
        )
    if "int8_vs_float_gradcam" in h:
        g = h["int8_vs_float_gradcam"]
        lines += [""] if "vs_reference_cam" in h else []
        lines.append(
            f"Per image, between the device's int8 CAM and Grad-CAM of the float Keras model ({g['images']} images): Spearman "
            f"rank correlation of the pre-ReLU maps median **{g['median']}**, 5th percentile {g['p5']} "
            f"({g['share_at_least_0.9'] * 100:.1f}% of images at ≥ 0.9); the same hottest cell in {g['same_peak_cell'] * 100:.1f}% "
            "of images. For a GAP + dense head Grad-CAM is the CAM divided by the number of cells, so this measures only what "
            "int8 quantization of the feature map and the export do to the map, not whether the map is right."
        )
    if "vs_reference_cam" not in h and "int8_vs_float_gradcam" not in h:
        lines.append("Not measured in this run (neither `--reference` nor `--keras` given).")
    lines += [
        "",
        "## Where the heatmaps point",
        "",
        f"**Hottest cell**: *top row* = the peak is in the top row of the {rows}x{cols} map (chance {chance['peak_top_row']:.2f}); "
        f"*central* = in the {(rows - 2) * (cols - 2)} central cells, the ones the lung prior covers, which also hold the heart "
        f"and mediastinum (chance {chance['peak_central']:.2f}). **Mass**: share of the map inside the **lungs** (a fixed "
        f"two-ellipse prior fitted by eye to the mean training image, `edgecxr/core/regions.py`; a population prior, not a "
        f"segmentation), the outer {int(BORDER * 100)}% **border** band and the four {int(CORNER * 100)}% **corner** squares where "
        f"text markers usually sit; a flat map would give {area['lungs']:.2f}, {area['border']:.2f} and {area['corners']:.2f}. "
        "Classes are the predicted ones, correct predictions only; sources count every image.",
        "",
    ]
    with_lungs = "lung_fields" in h
    lines += [
        "| group | n | peak in top row | peak central | mass in lungs | border | corners |" + (" lung share (lung model) | flat map |" if with_lungs else ""),
        "|---|---|---|---|---|---|---|" + ("---|---|" if with_lungs else ""),
    ]
    groups = [("all", h["overall"])]
    groups += [(f"{name} (correct)", g) for name, g in h["by_predicted_class_correct_only"].items()]
    groups += [(f"source {name}", g) for name, g in h["by_source"].items()]
    for name, g in groups:
        lung = f" {g['lung_share']:.2f} | {g['lung_area']:.2f} |" if with_lungs else ""
        lines.append(f"| {name} | {g['n']} | {g['peak_top_row']:.2f} | {g['peak_central']:.2f} | {g['lungs']:.2f} | {g['border']:.2f} | {g['corners']:.2f} |{lung}")
    free = "; ".join(f"{name}: {v['predicted']}, peak at row {v['peak_cell_row_col'][0]}, column {v['peak_cell_row_col'][1]}" for name, v in h["content_free"].items())
    if with_lungs:
        lines += ["", *lung_share_paragraph(h)]
    lines += [
        "",
        f"Inputs with no anatomy, for comparison (what the model says and where its map peaks): {free}.",
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
        "The noise and negative-film thresholds were chosen on the train and val films (see `edgecxr/core/checks.py`); the "
        "others were set by hand. False alarms on held-out real chest X-rays (every warning here is a false alarm):",
        "",
    ]
    for name, r in k["real"].items():
        fired = ", ".join(f"{kind}: {n} ({', '.join(r['files'][kind])})" for kind, n in r["fired"].items()) or "none"
        lines.append(f"- {name} ({r['images']} images): {fired}")
    lines += [
        "",
        "Deliberately wrong inputs, made in memory by the report; *caught* counts the warning meant for the kind (or the refusal):",
        "",
        "| input | n | meant to be caught by | caught | predicted as |",
        "|---|---|---|---|---|",
    ]
    for name, w in k["wrong"].items():
        pred = ", ".join(f"{label} {n}" for label, n in sorted(w["predicted"].items())) or "–"
        lines.append(f"| {name} | {w['images']} | {w['expected']} | {w['caught']} ({w['caught'] / w['images']:.0%}) | {pred} |")
    lines += [
        "",
        "There is no check for a lateral view: the shared data holds none to set a threshold on. A warning does not change "
        "the answer: the wrong inputs still get a label.",
        "",
    ]
    return "\n".join(lines)


def lung_share_paragraph(h: dict) -> list[str]:
    """The lung-share part of the report: what was measured, the target, and the lung model's caveat."""
    lf, by_class = h["lung_fields"], h["by_predicted_class_correct_only"]
    shares = ", ".join(f"{label} {g['lung_share']:.2f}" for label, g in by_class.items())
    lines = [
        f"**Lung share** (last two columns): the share of the map's mass inside the lung fields that the bundled lung model "
        f"`{lf['lung_model']['name']} {lf['lung_model']['version']}` finds on each film, mapped into the model's input frame "
        f"(`benchmarks/heatmaps.py`, the same measure as the external-validity report); *flat map* is the lung fields' share of "
        f"the frame, what a map spread evenly would give. Correct predictions: {shares}.",
    ]
    for t in lf["targets"]:
        result = f"met, {t['margin']:g} to spare" if t["met"] else f"**missed by {-t['margin']:g}**"
        lines.append(f"Target ({t['name']}, `edgecxr/evaluation/targets.json`): {t['op']} {t['target']:g}; reached {t['reached']:g} on this test split, {result}.")
    lines.append(
        "Caveat: the lung model was trained on `lungmask`, whose `openist` films are the films of `cxr3-plus/external` and "
        "whose `ieee` COVID films are `cxr3` films, many of them in this test split: it has seen some of the films it outlines "
        "here, and its masks are a model's, not a radiologist's."
    )
    return [" ".join(lines)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trust", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="bundled model name or .tflite path (needs a heatmap)")
    parser.add_argument("--reference", help="bundled model name or .tflite path of a reference converted from the same Keras model "
                        "(e.g. resnet18-float32), for the heatmap comparison without Keras")
    parser.add_argument("--keras", type=Path, help="training run folder of the float model, for the Grad-CAM comparison")
    parser.add_argument("--data", type=Path, required=True, help="dataset root with a test split (and manifest.csv for sources)")
    parser.add_argument("--fullres", type=Path, help="folder of full-resolution originals to count false alarms on")
    parser.add_argument("--out", type=Path, required=True, help="folder for trust.json, report.md and the plots")
    parser.add_argument("--examples", type=int, default=0, help="overlays per class written to OUT/examples/ (not for committing)")
    args = parser.parse_args(argv)

    from training.data import DatasetError, load_dataset

    try:
        model = load_model(args.model)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not model.has_heatmap:
        print(f"error: {model.name} has no heatmap", file=sys.stderr)
        return 2
    reference = None
    if args.reference:
        try:
            reference = load_model(args.reference)
            check_reference(model, reference)
        except (ModelError, ValueError) as exc:
            print(f"error: --reference: {exc}", file=sys.stderr)
            return 2
    try:
        test = load_dataset(args.data, model.card.preprocessing).splits["test"]
    except (DatasetError, KeyError) as exc:
        print(f"error: {args.data}: no usable test split ({exc})", file=sys.stderr)
        return 2
    raw_probs = np.stack([model.predict_preprocessed(img, calibrated=False) for img in test.x])
    try:
        heat, means = heatmap_section(model, test, raw_probs, args.keras, reference)
    except (ValueError, OSError) as exc:  # a --keras run that is missing or not this model's source
        print(f"error: --keras: {exc}", file=sys.stderr)
        return 2
    calibration, calibrated = calibration_section(model, test, raw_probs)
    fullres = find_images(args.fullres) if args.fullres else []
    report = {
        "model": model.name,
        "provenance": record(invocation("python -m benchmarks.trust", argv),
                             models=[model.path, *([reference.path] if reference else []), *([args.keras / "best.keras"] if args.keras else [])]),
        "test_images": int(len(test.y)),
        "input_size": int(test.x.shape[1]),
        "heatmaps": heat,
        "calibration": calibration,
        "checks": checks_section(model, [Path(f) for f in test.files], fullres),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "trust.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "report.md").write_text(markdown(report))
    plot_mean_heatmaps(means, model.labels, args.out / "mean_heatmaps.png")
    plot_reliability(raw_probs, calibrated, test.y, args.out / "reliability.png")
    if args.examples:
        write_examples(model, test, args.out / "examples", args.examples)
    print(f"wrote {args.out}/trust.json, report.md, mean_heatmaps.png, reliability.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
