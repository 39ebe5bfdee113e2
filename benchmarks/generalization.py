"""External-validity report: how models do on sources and a hospital they were not tuned on.

    python -m benchmarks.generalization --model resnet18-int8 [--model PATH ...] \\
        --data ../shared/data/cxr3 --data ../shared/data/cxr3-plus \\
        --out benchmarks/results/generalization

For each model (through the runtime, as a user gets it): sensitivity per source x class on the
test splits of every ``--data`` root (with each root's manifest for the sources), macro-F1 and
COVID sensitivity on them together, the share of the ``external`` split (a hospital nothing else
comes from; reported, never used to train, calibrate or select) called Normal, content-free inputs
(generated: nearly uniform, noise, gradients, colour scenes) called COVID, and for models with a
heatmap the share of heatmap mass inside the lung fields (found by the bundled lung model) and how
often the heatmap peaks in the top row. The ``generalization`` targets of ``edgecxr/evaluation/targets.json``
are checked for each model. Writes ``generalization.json``, ``report.md`` and ``cells.png``; a
``notes.md`` in the output folder (hand-written analysis) is included under "Why", and an
``ablation.md`` there (the training ablation, written by ``python -m training.ablation``) is linked, and so is
a ``loso.md`` (leave one source out, written by ``python -m benchmarks.loso``).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.heatmaps import film_lung_mask, in_frame, lung_model, lung_share, peak_fields
from edgecxr.core.cam import normalise
from edgecxr.core.card import ModelError
from edgecxr.core.imageio import ImageError, load_image
from edgecxr.core.lungs import spec_box
from edgecxr.core.model import Model, load_model
from edgecxr.core.preprocess import preprocess
from edgecxr.core.registry import MODELS_DIR
from edgecxr.evaluation.evaluate import labelled_files
from edgecxr.evaluation.manifest import ManifestError, read_manifest
from edgecxr.evaluation.metrics import classification_report
from edgecxr.evaluation.provenance import invocation, record
from edgecxr.evaluation.targets import targets

MIN_CELL = 30  # films a source x class cell needs on test to count for the worst-cell target
EXTERNAL = "external"


@dataclass(frozen=True)
class Film:
    path: Path
    truth: int  # index into the model's labels
    source: str
    split: str


def films_of(roots: list[Path], split: str, labels: list[str]) -> list[Film]:
    """The films of ``split`` under every root that has it, with the source its root's manifest gives."""
    out = []
    for root in roots:
        folder = root / split
        if not folder.is_dir():
            continue
        manifest = read_manifest(root / "manifest.csv", required=("source",))
        for path, truth in labelled_files(folder, labels):
            row = manifest.get(path)
            out.append(Film(path, truth, row.source if row else "", split))
    return out


def content_free_images(n: int = 20, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Generated inputs with no anatomy: each a kind of image a chest-film model may be handed by mistake."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, 256, dtype=np.float32)

    def scene() -> np.ndarray:  # a colour photograph stand-in: a smooth field with a few filled shapes
        img = cv2.resize(rng.uniform(0, 255, (4, 6, 3)).astype(np.uint8), (360, 270), interpolation=cv2.INTER_CUBIC)
        for _ in range(4):
            centre = (int(rng.integers(0, 360)), int(rng.integers(0, 270)))
            cv2.circle(img, centre, int(rng.integers(15, 80)), tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
        return img

    return {
        "nearly uniform": [np.clip(rng.normal(v, 0.005, (256, 256)), 0, 1).astype(np.float32) for v in rng.uniform(0.1, 0.9, n)],
        "uniform noise": [rng.uniform(0, 1, (256, 256)).astype(np.float32) for _ in range(n)],
        "gradient": [np.outer(ramp, np.ones(256, np.float32)) if i % 2 else np.outer(np.ones(256, np.float32), ramp) ** (0.5 + i / n) for i in range(n)],
        "colour scene": [scene() for _ in range(n)],
    }


def measure_films(model: Model, films: list[Film], lung_masks: dict[Path, np.ndarray] | None) -> list[dict[str, Any]]:
    """One record per readable film: truth, prediction, and (heatmap models) where the heatmap's mass lies."""
    spec = model.card.preprocessing
    out = []
    for film in films:
        try:
            pixels = model.read(film.path).pixels
        except ImageError:
            continue
        box = spec_box(pixels, spec)
        x = preprocess(pixels, spec, box)
        probs = model.predict_preprocessed(x)
        pred = int(np.argmax(probs))
        rec: dict[str, Any] = {"truth": film.truth, "pred": pred, "source": film.source, "split": film.split}
        if model.has_heatmap:
            raw = model.class_activation_map(x, pred)
            heat = normalise(cv2.resize(raw.astype(np.float32), (x.shape[1], x.shape[0]), interpolation=cv2.INTER_LINEAR))  # over the model frame
            rec.update(peak_fields(raw))
            if lung_masks is not None and film.path in lung_masks:
                rec["lung_share"] = lung_share(heat, in_frame(lung_masks[film.path], box, x.shape[:2]))
        out.append(rec)
    return out


def cells(report: dict[str, Any]) -> dict[str, dict[str, float | int]]:
    """Sensitivity (recall) and film count of every source x class cell with films, from a report with ``per_source``."""
    out = {}
    for source, rep in report.get("per_source", {}).items():
        for label, c in rep["per_class"].items():
            if c["support"]:
                out[f"{source}/{label}"] = {"recall": c["recall"], "n": c["support"]}
    return out


def model_section(model: Model, roots: list[Path], lung_masks: dict[Path, np.ndarray] | None) -> dict[str, Any]:
    labels = model.labels
    test = measure_films(model, films_of(roots, "test", labels), lung_masks)
    report = classification_report([r["truth"] for r in test], [r["pred"] for r in test], labels, [r["source"] for r in test])
    cell = cells(report)
    big = {k: v for k, v in cell.items() if v["n"] >= MIN_CELL}
    worst = min(big, key=lambda k: big[k]["recall"]) if big else None
    external = [r for r in measure_films(model, films_of(roots, EXTERNAL, labels), None)]
    called = {label: round(float(np.mean([r["pred"] == i for r in external])), 4) for i, label in enumerate(labels)} if external else {}
    free = {}
    lungs = lung_model()
    for kind, images in content_free_images().items():
        preds = [model.predict(img) for img in images]
        free[kind] = {"n": len(preds), "called_covid": round(float(np.mean([p.label == "COVID" for p in preds])), 4)}
        if lungs is not None:  # the bundled lung model's "no lung fields found" rule
            free[kind]["flagged_no_lungs"] = round(float(np.mean([not lungs.segment(img).found for img in images])), 4)
    section: dict[str, Any] = {
        "model": model.name, "version": model.card.version, "sha256": model.card.sha256, "family": model.card.family,
        "label": model_label(model),
        "test": {k: report[k] for k in ("n", "accuracy", "macro_f1")}, "covid_sensitivity": report["per_class"].get("COVID", {}).get("recall"),
        "cells": cell, "worst_cell": {"cell": worst, **big[worst]} if worst else None,
        "nih_normal": cell.get("nih/Normal", {}).get("recall"),
        "external": {"n": len(external), "called": called},
        "content_free": free,
    }
    if model.has_heatmap:
        correct = [r for r in test if r["truth"] == r["pred"]]
        section["heatmap"] = {
            label: {
                "n": len(group := [r for r in correct if r["pred"] == i]),
                "peak_top_row": round(float(np.mean([r["peak_top_row"] for r in group])), 4) if group else None,
                "lung_share": round(float(np.mean([r["lung_share"] for r in group if "lung_share" in r])), 4)
                if any("lung_share" in r for r in group) else None,
            }
            for i, label in enumerate(labels)
        }
    section["targets"] = check_targets(section)
    return section


def quantities(section: dict[str, Any]) -> dict[str, float | None]:
    """The quantities the ``generalization`` targets name, from one model's section."""
    free = section["content_free"]
    heat = section.get("heatmap", {})
    return {
        "external_called_normal": section["external"]["called"].get("Normal"),
        "nih_normal_sensitivity": section["nih_normal"],
        "macro_f1": section["test"]["macro_f1"],
        "covid_sensitivity": section["covid_sensitivity"],
        "worst_cell_sensitivity": section["worst_cell"]["recall"] if section["worst_cell"] else None,
        "content_free_called_covid": max(v["called_covid"] for v in free.values()) if free else None,
        "content_free_flagged": min(v["flagged_no_lungs"] for v in free.values()) if free and all("flagged_no_lungs" in v for v in free.values()) else None,
        "cam_lung_share_covid": heat.get("COVID", {}).get("lung_share"),
    }


def check_targets(section: dict[str, Any]) -> list[dict[str, Any]]:
    reached = quantities(section)
    out = []
    for t in targets("generalization"):
        value = reached.get(t.key)
        if t.applies_to(section["family"] or "") and value is not None:
            out.append(t.check(value, section["model"]))
    return out


def lung_masks_for(roots: list[Path], labels: list[str]) -> dict[Path, np.ndarray] | None:
    """The lung-field mask (uint8 0/255 at the size the film is read at) of every test film, by the bundled lung model."""
    lungs = lung_model()
    if lungs is None:
        return None
    return {film.path: film_lung_mask(lungs, load_image(film.path)) for film in films_of(roots, "test", labels)}


def model_label(model: Model) -> str:
    """How the report names a model: name and version, and for a model that is not bundled the folder it was read from."""
    label = f"{model.name} {model.card.version}"
    return label if model.path.parent == MODELS_DIR else f"{label} ({model.path.parent.name})"


def markdown(results: dict[str, Any], notes: str | None) -> str:
    sections = results["models"]
    names = [s.get("label", f"{s['model']} {s['version']}") for s in sections]
    heat_labels = dict.fromkeys(label for s in sections for label in s.get("heatmap", {}))  # the cards' labels, in their order
    lines = [
        "# External validity", "",
        f"Measured {results['provenance']['utc_time']} with `{results['provenance']['command']}`. Test splits of "
        f"{', '.join(results['roots'])}; `{EXTERNAL}` is a hospital no training film comes from (reported only).", "",
        "## Targets", "", "| model | target | limit | reached | result |", "|---|---|---|---|---|",
    ]
    for name, s in zip(names, sections):
        for t in s["targets"]:
            result = f"met, {t['margin']:g} to spare" if t["met"] else f"**missed by {-t['margin']:g}**"
            lines.append(f"| {name} | {t['name']} | {t['op']} {t['target']:g} | {t['reached']:g} | {result} |")
    lines += ["", "## Summary", "", "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    rows = [
        ("test films", lambda s: str(s["test"]["n"])), ("test macro-F1", lambda s: f"{s['test']['macro_f1']:.3f}"),
        ("test COVID sensitivity", lambda s: f"{s['covid_sensitivity']:.3f}"),
        ("nih Normal sensitivity", lambda s: f"{s['nih_normal']:.3f}" if s["nih_normal"] is not None else "–"),
        ("worst cell (>= 30 films)", lambda s: f"{s['worst_cell']['cell']} {s['worst_cell']['recall']:.3f}" if s["worst_cell"] else "–"),
        (f"{EXTERNAL} called Normal", lambda s: f"{s['external']['called'].get('Normal', float('nan')):.3f} (n={s['external']['n']})"),
        (f"{EXTERNAL} called COVID", lambda s: f"{s['external']['called'].get('COVID', float('nan')):.3f}"),
        *[(f"content-free '{kind}' called COVID / flagged no lung fields", lambda s, k=kind: _free_cell(s["content_free"][k])) for kind in sections[0]["content_free"]],
        *[(f"correct {label}: heatmap peak in top row / lung share", lambda s, c=label: _heat_cell(s, c)) for label in heat_labels],
    ]
    for title, cell in rows:
        lines.append(f"| {title} | " + " | ".join(cell(s) for s in sections) + " |")
    keys = sorted({k for s in sections for k in s["cells"]})
    lines += ["", "## Sensitivity per source x class (test)", "", "| cell | n | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for k in keys:
        n = next(s["cells"][k]["n"] for s in sections if k in s["cells"])
        lines.append(f"| {k} | {n} | " + " | ".join(f"{s['cells'][k]['recall']:.3f}" if k in s["cells"] else "–" for s in sections) + " |")
    if results.get("ablation"):
        lines += ["", "## Training ablation", "", f"The recipes tried, measured on their Keras models: [{results['ablation']}]({results['ablation']})."]
    if results.get("loso"):
        lines += ["", "## Leave one source out", "", f"Recipes trained without one source, measured on its films (short schedule): [{results['loso']}]({results['loso']})."]
    if notes:
        lines += ["", "## Why", "", notes.strip()]
    return "\n".join(lines) + "\n"


def _free_cell(free: dict[str, Any]) -> str:
    flagged = free.get("flagged_no_lungs")
    return f"{free['called_covid']:.2f} / " + (f"{flagged:.2f}" if flagged is not None else "–")


def _heat_cell(section: dict[str, Any], label: str) -> str:
    h = section.get("heatmap", {}).get(label)
    if not h or h["peak_top_row"] is None:
        return "–"
    return f"{h['peak_top_row']:.2f} / " + (f"{h['lung_share']:.2f}" if h["lung_share"] is not None else "–")


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections = results["models"]
    keys = sorted({k for s in sections for k in s["cells"] if s["cells"][k]["n"] >= MIN_CELL})
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(keys) + 2), 4.5))
    width = 0.8 / len(sections)
    for i, s in enumerate(sections):
        ax.bar(np.arange(len(keys)) + i * width, [s["cells"].get(k, {}).get("recall", 0) for k in keys], width, label=s.get("label", s["model"]))
    ax.axhline(0.85, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, keys, rotation=35, ha="right")
    ax.set_ylabel("sensitivity (test)")
    ax.set_ylim(0, 1)
    ax.set_title(f"per source x class, cells with >= {MIN_CELL} films; dashed: target 0.85")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.generalization", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=[], help="bundled model name or .tflite path (repeatable; default: the bundled default)")
    parser.add_argument("--data", type=Path, action="append", required=True, help="dataset root with test/ (and external/) split folders and manifest.csv (repeatable)")
    parser.add_argument("--out", type=Path, required=True, help="folder for generalization.json, report.md, cells.png")
    args = parser.parse_args(argv)
    try:
        models = [load_model(m) for m in (args.model or [None])]
        for root in args.data:
            if not (root / "manifest.csv").is_file():
                raise ManifestError(f"{root}: no manifest.csv (the sources come from it)")
    except (ModelError, ManifestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with_heatmap = [m for m in models if m.has_heatmap]
    masks = lung_masks_for(args.data, with_heatmap[0].labels) if with_heatmap else None  # every test film's, computed once
    sections = [model_section(m, args.data, masks) for m in models]
    results = {
        "provenance": record(invocation("python -m benchmarks.generalization", argv), [m.path for m in models]),
        "roots": [str(r) for r in args.data], "min_cell": MIN_CELL, "models": sections,
        "ablation": "ablation.md" if (args.out / "ablation.md").is_file() else None,
        "loso": "loso.md" if (args.out / "loso.md").is_file() else None,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    notes = args.out / "notes.md"
    (args.out / "generalization.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "report.md").write_text(markdown(results, notes.read_text() if notes.is_file() else None))
    plot(results, args.out / "cells.png")
    print(f"wrote {args.out}/generalization.json, report.md, cells.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
