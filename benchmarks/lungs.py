"""The lung model's report: Dice per source, timings, and the "no lung fields found" check.

    python -m benchmarks.lungs --models DIR [--data ../shared/data] --out benchmarks/results/lungs

``DIR`` holds ``lungs-float32.tflite`` and ``lungs-int8.tflite`` with their cards (the output of
``python -m converters.lungs``). Everything runs through the runtime (:class:`edgecxr.core.lungs.LungModel`
on the files themselves, masks at each film's own size):

- Dice / IoU on ``lungmask`` val, overall and per source, float32 and int8, on every film and on
  the films whose masks outline the lung fields (:data:`edgecxr.core.lungs.NOT_LUNG_OUTLINES`), and int8 vs float32;
- per-film time of :meth:`LungModel.segment` (preprocess, invoke, mask back at the film's size);
- the "no lung fields found" rule (:func:`edgecxr.core.lungs.lung_fields_found`, int8 model, on the frame
  ``Model.predict`` of the default classifier gives it, :func:`check_frame`): the
  quantiles of what it reads on the train + val films (where its bounds were chosen), its false
  alarms on every shared chest film (``cxr3`` all splits, ``cxr3-plus`` all splits including
  ``external``, ``cxr3-fullres``, ``lungmask``), and its catch rate on generated non-X-ray images
  (:mod:`benchmarks.nonxray`; seed 0 was looked at while choosing the bounds, seed 1 is reported).

Writes ``results.json`` and ``report.md``; paths in them are relative to the data folder.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.header import write_report
from benchmarks.nonxray import non_xray_images
from edgecxr.core.imageio import ImageError, from_array, load_image
from edgecxr.core.interpreter import interpreter_module, interpreter_version
from edgecxr.core.lungs import NO_LUNGS, NOT_LUNG_OUTLINES, LungModel, dice, lung_fields_found, lung_outline, lung_source, mask_features, segmentation_report
from edgecxr.core.model import load_model
from edgecxr.core.preprocess import PreprocessSpec, preprocess

REPO = Path(__file__).resolve().parents[1]
FIT_GROUPS = ("cxr3/train", "cxr3/val", "cxr3-plus/train", "cxr3-plus/val", "lungmask/train", "lungmask/val")
QUANTILES = (0.0, 0.001, 0.005, 0.01, 0.05, 0.5)
# Which generated kinds resemble the negatives the model was trained on (training/lung_negatives.py).
SIMILAR_TRAINING_NEGATIVES = {
    "blank": "flat surfaces", "nearly blank": "flat surfaces, faint noise", "uniform noise": "noise", "gaussian noise": "noise",
    "salt and pepper": "no", "1/f cloud texture": "blurred noise", "linear gradient": "polynomial surfaces",
    "radial gradient": "polynomial surfaces", "checkerboard": "no", "stripes": "no", "colour scene": "no",
    "colour shapes": "random shapes (gray)", "smooth colour field": "blurred noise (gray)", "text page": "no",
    "text slide (light on dark)": "no",
}


def chest_films(data: Path) -> list[tuple[str, str]]:
    """(group, path relative to ``data``) of every shared chest film; group is ``collection/split``."""
    films = []
    for collection, column in (("cxr3", "file"), ("cxr3-plus", "file"), ("cxr3-fullres", "file"), ("lungmask", "image")):
        with (data / collection / "manifest.csv").open(newline="") as fh:
            for row in csv.DictReader(fh):
                films.append((f"{collection}/{row.get('split') or 'all'}", f"{collection}/{row[column]}"))
    return films


def dice_section(models: dict[str, LungModel], data: Path) -> dict:
    """Dice / IoU on lungmask val per variant, int8 vs float32 mask Dice, and segment() timings."""
    import cv2

    with (data / "lungmask" / "manifest.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "val"]
    truth = [np.asarray(cv2.imread(str(data / "lungmask" / r["mask"]), cv2.IMREAD_GRAYSCALE)) > 127 for r in rows]
    images = [load_image(data / "lungmask" / r["image"]) for r in rows]
    sources = [r["source"] for r in rows]
    keep = [i for i, r in enumerate(rows) if lung_outline(r)]
    out: dict[str, Any] = {}
    masks: dict[str, list[np.ndarray]] = {}
    for variant, model in models.items():
        model.segment(images[0])  # warm-up
        times, masks[variant] = [], []
        for image in images:
            start = time.perf_counter()
            masks[variant].append(model.segment(image).mask)
            times.append((time.perf_counter() - start) * 1000.0)
        out[variant] = {
            "val": segmentation_report(masks[variant], truth, sources),
            "val_lung_outlines": segmentation_report([masks[variant][i] for i in keep], [truth[i] for i in keep], [sources[i] for i in keep]),
            "segment_ms": {"mean": round(float(np.mean(times)), 2), "p50": round(float(np.median(times)), 2), "p90": round(float(np.percentile(times, 90)), 2)},
            "size_bytes": model.path.stat().st_size,
            "card_val_dice": (model.card.metrics or {})["val"]["dice_mean"],
        }
    agree = [dice(a, b) for a, b in zip(masks["int8"], masks["float32"])]
    out["int8_vs_float32"] = {"dice_mean": round(float(np.mean(agree)), 4), "dice_min": round(float(np.min(agree)), 4)}
    return out


def check_frame(model: LungModel, pixels: np.ndarray) -> np.ndarray:
    """The lung frame ``Model.predict`` of the default classifier gives the check: resized from the classifier's whole-film input where it can."""
    return preprocess(lung_source(pixels, preprocess(pixels, classifier_spec()), model.spec.size), model.spec)


@lru_cache(maxsize=1)
def classifier_spec() -> PreprocessSpec:
    """The bundled default classifier's preprocessing."""
    return load_model().card.preprocessing


def film_features(model: LungModel, data: Path, films: list[tuple[str, str]]) -> list[dict]:
    """What the rule reads on each film (on the frame predict's check reads), and whether it finds lung fields there."""
    records: list[dict[str, Any]] = []
    for group, rel in films:
        try:
            pixels = load_image(data / rel).pixels
        except ImageError as exc:
            records.append({"group": group, "file": rel, "error": exc.reason})
            continue
        frame = check_frame(model, pixels)
        prob = model.probability(frame)
        features = {k: round(v, 5) for k, v in mask_features(prob, frame).items()}
        records.append({"group": group, "file": rel, **features, "found": lung_fields_found(prob, frame)})
    return records


def rule_section(model: LungModel, data: Path) -> dict:
    records = film_features(model, data, chest_films(data))
    ok = [r for r in records if "error" not in r]
    fit = [r for r in ok if r["group"] in FIT_GROUPS]
    groups: dict[str, dict[str, Any]] = {}
    for group in sorted({r["group"] for r in ok}):
        rows = [r for r in ok if r["group"] == group]
        alarms = [r["file"] for r in rows if not r["found"]]
        groups[group] = {"films": len(rows), "false_alarms": len(alarms), "rate": round(len(alarms) / len(rows), 4), "files": alarms}
    alarms_all = sum(g["false_alarms"] for g in groups.values())
    synthetic: dict[str, dict[str, Any]] = {}
    for name, seed in (("design (seed 0)", 0), ("reported (seed 1)", 1)):
        kinds: dict[str, list[bool]] = {}
        for kind, image in non_xray_images(seed):
            frame = check_frame(model, from_array(image).pixels)
            kinds.setdefault(kind, []).append(not lung_fields_found(model.probability(frame), frame))
        synthetic[name] = {
            "per_kind": {k: {"images": len(v), "flagged": int(sum(v))} for k, v in kinds.items()},
            "images": sum(len(v) for v in kinds.values()),
            "flagged": int(sum(sum(v) for v in kinds.values())),
        }
    return {
        "rule": {"flag when any is below": NO_LUNGS},
        "fit_films": {
            "groups": list(FIT_GROUPS), "films": len(fit),
            "quantiles": {k: {str(q): round(float(np.quantile([r[k] for r in fit], q)), 5) for q in QUANTILES} for k in NO_LUNGS},
        },
        "chest_films": {"films": len(ok), "false_alarms": alarms_all, "rate": round(alarms_all / len(ok), 5), "unreadable": [r for r in records if "error" in r], "groups": groups},
        "synthetic": synthetic,
    }


def markdown(report: dict) -> str:
    d, r = report["dice"], report["no_lung_fields"]
    lines = [
        "# Lung-field model (`lungs`)",
        "",
        f"Measured {report['when']} on {report['platform']['machine']} ({report['platform']['cpus']} CPUs), {report['platform']['interpreter']} "
        f"{report['platform']['interpreter_version']}, through the runtime (`edgecxr.core.lungs.LungModel`), masks at each film's own size. "
        "Regenerate: `python -m benchmarks.lungs --models DIR --out benchmarks/results/lungs`.",
        "",
        "## Dice on `lungmask` val (100 films)",
        "",
        "| variant, films | size | Dice mean | median | min | IoU | openist Dice mean / min (n) | ieee Dice mean / min (n) | segment p50 / p90 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for variant in ("float32", "int8"):
        for films, key in (("lung-field masks", "val_lung_outlines"), ("every film", "val")):
            v = d[variant][key]
            ps = v["per_source"]
            lines.append(
                f"| {variant}, {films} | {d[variant]['size_bytes'] / 1e6:.2f} MB | {v['dice_mean']:.4f} | {v['dice_median']:.4f} | {v['dice_min']:.4f} | "
                f"{v['iou_mean']:.4f} | {ps['openist']['dice_mean']:.4f} / {ps['openist']['dice_min']:.4f} ({ps['openist']['n']}) | "
                f"{ps['ieee']['dice_mean']:.4f} / {ps['ieee']['dice_min']:.4f} ({ps['ieee']['n']}) | "
                f"{d[variant]['segment_ms']['p50']:.1f} / {d[variant]['segment_ms']['p90']:.1f} |"
            )
    outlined = d["int8"]["val_lung_outlines"]["n"]
    lines += [
        "",
        f"Lung-field masks: the {outlined} val films whose masks outline the lung fields. The other "
        f"{d['int8']['val']['n'] - outlined} are `ieee` films whose masks (the "
        + ", ".join(f"{k} project's) outline {v}" for k, v in NOT_LUNG_OUTLINES.items())
        + "; the model is not trained on them and is not meant to draw that.",
        "",
        f"int8 masks against float32 masks: Dice mean {d['int8_vs_float32']['dice_mean']:.4f}, worst film {d['int8_vs_float32']['dice_min']:.4f}. "
        "The val split is the one the project's target (Dice >= 0.95) is stated on; the model is the last epoch of a fixed "
        "schedule, so val did not pick the checkpoint.",
        "",
        "## \"No lung fields found\"",
        "",
        "Rule (int8 model, `edgecxr.core.lungs.lung_fields_found`): flag an image when its predicted mask covers less than "
        f"{NO_LUNGS['fraction']:.0%} of the frame, or its second-largest lung region less than {NO_LUNGS['second_component']:.1%} "
        f"(a chest film has two lungs), or the preprocessed frame's mean absolute Laplacian (texture) is below {NO_LUNGS['texture']} "
        "(very smooth images, where the model can still draw lung-shaped blobs). "
        f"The bounds were chosen on the {r['fit_films']['films']} train + val films ({', '.join(r['fit_films']['groups'])}); "
        "quantiles of what the rule reads there:",
        "",
        "| feature | " + " | ".join(f"q{q}" for q in r["fit_films"]["quantiles"]["fraction"]) + " | bound |",
        "|---|" + "---|" * (len(QUANTILES) + 1),
    ]
    for k, qs in r["fit_films"]["quantiles"].items():
        lines.append(f"| {k} | " + " | ".join(f"{v:.4f}" for v in qs.values()) + f" | {NO_LUNGS[k]} |")
    c = r["chest_films"]
    lines += ["", f"**False alarms on shared chest films: {c['false_alarms']} of {c['films']} ({c['rate']:.2%})** (target <= 0.5%).", ""]
    lines += ["| films | n | flagged | rate |", "|---|---|---|---|"]
    for g, v in c["groups"].items():
        note = " (reporting only)" if g == "cxr3-plus/external" else ""
        lines.append(f"| {g}{note} | {v['films']} | {v['false_alarms']} | {v['rate']:.2%} |")
    flagged = [f for v in c["groups"].values() for f in v["files"]]
    if flagged:
        lines += ["", "Flagged films: " + ", ".join(f"`{f}`" for f in flagged)]
    for name, s in r["synthetic"].items():
        lines += ["", f"**Generated non-X-ray images, {name}: {s['flagged']} of {s['images']} flagged.**", ""]
        lines += ["| kind | images | flagged | similar training negatives |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['images']} | {v['flagged']} | {SIMILAR_TRAINING_NEGATIVES.get(k, 'no')} |" for k, v in s["per_kind"].items()]
    lines += [
        "",
        "Blank (constant) images are also refused outright by the runtime (`ImageError`, nothing to segment); "
        "they are counted here on the model's output for completeness.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lungs", description="Dice per source, timings and the no-lung-fields check of the lung model.")
    parser.add_argument("--models", type=Path, required=True, help="folder with lungs-float32.tflite and lungs-int8.tflite (+ cards)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="the shared data folder")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "lungs")
    args = parser.parse_args(argv)
    models = {v: LungModel(args.models / f"lungs-{v}.tflite") for v in ("float32", "int8")}
    package, _ = interpreter_module()
    report = {
        "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": {
            "machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(), "interpreter": package,
            "interpreter_version": interpreter_version(package), "load_average": [round(v, 2) for v in os.getloadavg()],
        },
        "models": {v: {"name": m.name, "sha256": m.card.sha256} for v, m in models.items()},
        "dice": dice_section(models, args.data),
        "no_lung_fields": rule_section(models["int8"], args.data),
    }
    write_report(args.out, report, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
