"""Leave one source out: trained without a source, how are that source's films classified?

    python -m benchmarks.loso --runs RUNS --data ../shared/data/cxr3 --data ../shared/data/cxr3-plus \\
        --recipes baseline plus_nih --hold-out rsna bimcv kermany --epochs 8 --input-size 96 --width 16 \\
        --out benchmarks/results/generalization

For each recipe (a row of :mod:`training.ablation`, trained by its :func:`training.ablation.train_row`
with the same flags) and each held-out source S, a SHORT schedule is trained with
``--hold-out S`` into ``RUNS/<S>/<recipe>`` (a finished run is skipped, an interrupted one resumed).
Every finished run under ``RUNS`` is then measured (Keras, the run's ``best.keras``, through
:func:`edgecxr.evaluation.metrics.classification_report`): sensitivity per class on ALL films of S across
train, val and test of every ``--data`` root (none of them was trained or selected on), which
class the missed ones were called, the run's in-distribution test macro-F1 on the cxr3 test films
of the remaining sources, and the share of the report-only ``external`` films (all Normal) called
Normal. Writes ``OUT/loso.json`` and ``OUT/loso.md``; a ``loso_notes.md`` in ``OUT``
(hand-written reading) is included in ``loso.md``.

One seed and a short schedule per run: the numbers compare recipes with each other, they are not
what a fully trained model would reach.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from edgecxr.evaluation.benchmark import platform_info
from edgecxr.evaluation.provenance import invocation, record
from training.ablation import ALL_ROWS, files_under, train_row
from training.data import DatasetError

RECIPES = ("baseline", "plus_nih")
SOURCES = ("rsna", "bimcv", "kermany")
EXTERNAL = "external"


def run_dir(runs: Path, source: str, recipe: str) -> Path:
    return runs / source / recipe


def schedule_flags(source: str, input_size: int, width: int) -> list[str]:
    """The ``python -m training`` flags a LOSO run adds to its recipe's (BatchNorm momentum 0.9: a short schedule's
    running averages must catch up within a few hundred steps)."""
    return ["--hold-out", source, "--input-size", str(input_size), "--width", str(width), "--bn-momentum", "0.9"]


def measure(run: Path, source: str, roots: Sequence[str], cache: dict) -> dict[str, Any]:
    """One (recipe, held-out source) run's measurements; see the module docstring."""
    import tf_keras as keras

    from edgecxr.evaluation.metrics import classification_report

    info = json.loads((run / "run.json").read_text())
    history = json.loads((run / "history.json").read_text())
    labels = info["labels"]
    if source not in info["config"].get("hold_out", []):
        raise SystemExit(f"error: {run / 'run.json'}: the run does not hold out {source!r}")
    splits, external = _films(roots, info["preprocessing"], labels, cache)
    model = keras.models.load_model(run / "best.keras")

    def predict(x: np.ndarray) -> np.ndarray:
        return np.argmax(model.predict(x, batch_size=128, verbose=0), axis=1) if len(x) else np.zeros(0, np.int64)

    held_y, held_pred, held_n = [], [], {}
    for name, split in splits.items():
        mask = np.array([s == source for s in split.sources], dtype=bool)
        held_n[name] = int(mask.sum())
        held_y.append(split.y[mask])
        held_pred.append(predict(split.x[mask]))
    held = classification_report(np.concatenate(held_y), np.concatenate(held_pred), labels)
    test = splits["test"]
    rest = files_under(test.files, roots[0]) & np.array([s != source for s in test.sources], dtype=bool)
    in_dist = classification_report(test.y[rest], predict(test.x[rest]), labels)
    ext = predict(external.x)
    seconds = history.get("epoch_seconds", [])
    return {
        "recipe": run.name,
        "held_out": source,
        "labels": labels,
        "epochs": len(history["loss"]),
        "input_size": info["preprocessing"]["size"][0],
        "width": info["config"].get("width"),
        "held_out_train_val_films_removed": info["dataset"].get("held_out", {}).get("films"),
        "training_films": dict(zip(labels, info["dataset"]["counts"]["train"])),
        "seconds_per_epoch": round(float(np.mean(seconds)), 1) if seconds else None,
        "training_seconds": round(float(np.sum(seconds)), 1) if seconds else None,
        # wall clock from run.json (written once the films are decoded) to metrics.json (after the final evaluation)
        "wall_seconds": round((run / "metrics.json").stat().st_mtime - datetime.fromisoformat(info["utc_time"]).timestamp()),
        "resumed": bool(info.get("resumed_with")),
        "held_out_films": {**held_n, "all": held["n"]},
        "held_out_sensitivity": {
            label: {
                "recall": c["recall"],
                "n": c["support"],
                "called": dict(zip(labels, held["confusion_matrix"][i])),
            }
            for i, (label, c) in enumerate(held["per_class"].items())
            if c["support"]
        },
        "in_distribution_test": {"n": in_dist["n"], "macro_f1": in_dist["macro_f1"]},
        EXTERNAL: {"n": int(len(ext)), "called": {label: round(float(np.mean(ext == i)), 4) for i, label in enumerate(labels)}},
    }


def _films(roots: Sequence[str], spec: dict, labels: list[str], cache: dict):
    """Train, val and test of all roots, and the report-only external split; decoded once per spec."""
    from training.multiroot import load_report_split, load_roots

    key = json.dumps(spec, sort_keys=True)
    if key not in cache:
        data = load_roots(roots, spec, verbose=False)
        if data.labels != labels:
            raise SystemExit(f"error: {roots[0]}: labels {data.labels} differ from the run's {labels}")
        cache[key] = (data.splits, load_report_split(roots[-1], EXTERNAL, labels, spec))
    return cache[key]


def measure_all(runs: Path, roots: Sequence[str], cache: dict) -> list[dict[str, Any]]:
    """The measurements of every finished run under ``runs`` (cached beside each run in ``loso_row.json``)."""
    order = [n for n, _, _, _ in ALL_ROWS]
    out = []
    for metrics in sorted(runs.glob("*/*/metrics.json")):
        run = metrics.parent
        if run.name not in order:
            continue
        cached = run / "loso_row.json"
        if cached.exists() and cached.stat().st_mtime >= metrics.stat().st_mtime:
            out.append(json.loads(cached.read_text()))
            continue
        row = measure(run, run.parent.name, roots, cache)
        cached.write_text(json.dumps(row, indent=1) + "\n")
        out.append(row)
    return sorted(out, key=lambda r: (r["held_out"], order.index(r["recipe"])))


def markdown(results: dict[str, Any], notes: str | None) -> str:
    rows = results["runs"]
    plat = results["platform"]
    names = " / ".join(rows[0]["labels"]) if rows else ""
    lines = [
        "# Leave one source out", "",
        f"Measured {results['provenance']['utc_time']} with `{results['provenance']['command']}`.", "",
        f"Schedule: {results['schedule']}. Machine: {plat['cpu']}, {plat['cpus']} CPUs, shared with other jobs "
        "(s/epoch: training plus the val pass; run wall-clock: from the decoded films to the written metrics, i.e. "
        f"without decoding and start-up, about half a minute more per run). {len(rows)} runs, "
        f"{sum(r['wall_seconds'] for r in rows) / 60:.0f} min of run wall-clock in all.", "",
        "Each run was trained without one source's films (train and val, `--hold-out SOURCE`) and is measured on **all** "
        "films of that source (train, val and test of every root: none was trained or selected on), per class: the "
        "sensitivity and what the films were called. In-distribution: macro-F1 on the cxr3 test films of the remaining "
        f"sources. `{EXTERNAL}`: share of the 274 report-only adult Normals called Normal.", "",
        f"| held out | recipe | class (films) | held-out sensitivity | called {names} | in-dist. test macro-F1 (n) "
        f"| {EXTERNAL} called Normal | training films {names} | epochs | s/epoch | run wall-clock s |",
        "|" + "---|" * 11,
    ]
    for r in rows:
        for label, c in r["held_out_sensitivity"].items():
            called = " / ".join(str(n) for n in c["called"].values())
            films = " / ".join(str(n) for n in r["training_films"].values())
            lines.append(
                f"| {r['held_out']} | {r['recipe']} | {label} ({c['n']}) | **{c['recall']:.3f}** | {called} "
                f"| {r['in_distribution_test']['macro_f1']:.3f} ({r['in_distribution_test']['n']}) | {r[EXTERNAL]['called'].get('Normal', float('nan')):.3f} | {films} "
                f"| {r['epochs']} | {_num(r['seconds_per_epoch'])} | {r['wall_seconds']}{' (resumed)' if r['resumed'] else ''} |"
            )
    recipes = list(dict.fromkeys(r["recipe"] for r in rows))
    cell = {(r["held_out"], label, r["recipe"]): c for r in rows for label, c in r["held_out_sensitivity"].items()}
    lines += ["", "Held-out sensitivity side by side:", "", "| held-out source/class (films) | " + " | ".join(recipes) + " |",
              "|---|" + "---|" * len(recipes)]
    for source, label in dict.fromkeys((s, lab) for s, lab, _ in cell):
        n = next(c["n"] for (s, lab, _), c in cell.items() if (s, lab) == (source, label))
        lines.append(f"| {source}/{label} ({n}) | " + " | ".join(
            f"{cell[(source, label, rec)]['recall']:.3f}" if (source, label, rec) in cell else "-" for rec in recipes) + " |")
    lines += [
        "", "## What this cannot tell", "",
        "- One seed and a short schedule per run, at a smaller input and width than the bundled models: the numbers compare "
        "recipes with each other under the same schedule; they are not what a fully trained model reaches, and differences "
        "of a few points are within what another seed would change.",
        "- In `cxr3` source and class are confounded (every adult Normal is `rsna`, `kermany` is all pediatric, `bimcv` all "
        "COVID): holding a source out also removes most of a class's examples of one kind of patient, so a low held-out "
        "sensitivity mixes \"a new hospital\" with \"a kind of film the class never had\".",
        "- Sensitivity is measured on the held-out source's own classes only: a one-class source (`rsna` Normal, `bimcv` "
        "COVID) says how its films are called, not how often other classes are called its class.",
    ]
    if notes:
        lines += ["", "## Reading", "", notes.strip()]
    return "\n".join(lines) + "\n"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loso", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="folder of the run folders, RUNS/<source>/<recipe> (outside the repo)")
    parser.add_argument("--data", action="append", required=True, help="dataset roots: cxr3 first, then cxr3-plus (its external split is report-only)")
    parser.add_argument("--out", type=Path, required=True, help="folder for loso.json and loso.md")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=[n for n, _, _, _ in ALL_ROWS], help=f"ablation rows to train (default {' '.join(RECIPES)})")
    parser.add_argument("--hold-out", nargs="+", default=list(SOURCES), metavar="SOURCE", help=f"sources to hold out, one run each (default {' '.join(SOURCES)})")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--input-size", type=int, default=96)
    parser.add_argument("--width", type=int, default=16, help="resnet18 first-stage width")
    parser.add_argument("--report-only", action="store_true", help="train nothing: measure the finished runs and write the report")
    args = parser.parse_args(argv)
    schedule = (
        f"{args.epochs} epochs, cosine decay from 1e-3, batch 32, ResNet-18-style width {args.width} at "
        f"{args.input_size}x{args.input_size}, BatchNorm momentum 0.9, seed 0, no early stopping, one run per recipe and held-out source"
    )
    if not args.report_only:
        for source in args.hold_out:
            for recipe in args.recipes:
                started = time.monotonic()
                code = train_row(recipe, args.data, args.runs / source, args.epochs, schedule_flags(source, args.input_size, args.width))
                if code != 0:
                    print(f"error: {recipe} without {source} exited {code}; see {args.runs / source / (recipe + '.log')}", file=sys.stderr)
                    return 1
                print(f"{recipe} without {source}: done ({time.monotonic() - started:.0f} s)", flush=True)
    try:
        rows = measure_all(args.runs, args.data, {})
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = {
        "provenance": record(invocation("python -m benchmarks.loso", argv)),
        "platform": platform_info(),
        "schedule": schedule,
        "roots": list(args.data),
        "runs": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    notes = args.out / "loso_notes.md"
    (args.out / "loso.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "loso.md").write_text(markdown(results, notes.read_text() if notes.is_file() else None))
    print(f"wrote {args.out}/loso.json, loso.md ({len(rows)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
