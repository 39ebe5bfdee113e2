"""Latency, memory and accuracy of every model variant against the full float models, in one run.

    python -m benchmarks.matrix --models DIR [--models DIR ...] [--keras RUN_DIR ...] \\
        --data ../shared/data/cxr3/test --out benchmarks/results/NAME

For each ``.tflite`` in the given folders: latency (``edgecxr.benchmark.measure``, each in its
own process) for threads {1, 2, 4} x XNNPACK {on, off}, and accuracy / macro-F1 / per-class
sensitivity overall and per source on the test split. The Keras full model of each run folder is
timed too. Writes ``results.json``, ``report.md`` and ``tradeoff.png``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from edgecxr.benchmark import measure_in_child, percentile, platform_info
from edgecxr.evaluate import labelled_files, predict_labelled
from edgecxr.model import load_model
from training.data import read_sources
from training.report import split_metrics

THREADS = (1, 2, 4)


def accuracy_by_source(path: Path, data: Path) -> dict:
    """Metrics of one model on ``data`` (a split folder), overall and per manifest source."""
    model = load_model(path)
    files, y_true, y_pred, errors = predict_labelled(model, labelled_files(data, model.labels))
    sources = read_sources(data.parent)  # the manifest sits beside the split folders
    report = split_metrics(np.array(y_true), np.array(y_pred), model.labels, [sources.get(str(f), "") for f in files])
    report["errors"] = errors
    return report


def keras_latency(run: Path, runs: int, warmup: int) -> dict:
    """Latency of the Keras full model (float32, TensorFlow on CPU), batch 1."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tf_keras as keras

    start = time.perf_counter()
    model = keras.models.load_model(run / "best.keras")
    init_ms = (time.perf_counter() - start) * 1000
    x = np.random.default_rng(0).random((1, *model.input_shape[1:]), dtype=np.float32)
    times = []
    for i in range(warmup + runs):
        t = time.perf_counter()
        model.predict_on_batch(x)
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1000)
    return {
        "model": f"{model.name}-keras", "dtype": "float32", "init_ms": round(init_ms, 1),
        "p50_ms": round(percentile(times, 50), 3), "p90_ms": round(percentile(times, 90), 3),
        "p99_ms": round(percentile(times, 99), 3), "mean_ms": round(float(np.mean(times)), 3),
        "size_bytes": (run / "best.keras").stat().st_size, "threads": "tf default", "xnnpack": None,
    }


def run_matrix(model_dirs: list[Path], keras_runs: list[Path], data: Path, runs: int, warmup: int) -> dict:
    paths = sorted(p for d in model_dirs for p in d.glob("*.tflite"))
    latency = []
    for i, path in enumerate(paths):
        for threads in THREADS:
            for xnnpack in (True, False):
                print(f"[{i + 1}/{len(paths)}] {path.name} threads={threads} xnnpack={xnnpack}", file=sys.stderr, flush=True)
                latency.append(measure_in_child(str(path), runs=runs, warmup=warmup, threads=threads, xnnpack=xnnpack))
    accuracy = {}
    for path in paths:
        print(f"accuracy of {path.name}", file=sys.stderr, flush=True)
        accuracy[path.stem] = accuracy_by_source(path, data)
    keras_rows = [keras_latency(r, runs, warmup) for r in keras_runs]
    return {"platform": platform_info(), "data": str(data), "runs": runs, "warmup": warmup,
            "latency": latency, "keras": keras_rows, "accuracy": accuracy}


def markdown(results: dict) -> str:
    p = results["platform"]
    lines = [
        "# edgecxr benchmark", "",
        f"Machine: {p['machine']}, {p['cpu']}, {p['cpus']} CPUs, {p['system']}; Python {p['python']}; "
        f"{p['interpreter']} {p['interpreter_version']}. {results['runs']} timed runs after {results['warmup']} warm-up runs, "
        "each model in its own process; peak RSS is that process's.", "",
        "## Accuracy on the test split", "",
        "| model | accuracy | macro-F1 | " + " | ".join(f"sens. {l}" for l in next(iter(results["accuracy"].values()))["labels"]) + " |",
        "|---|---|---|" + "---|" * len(next(iter(results["accuracy"].values()))["labels"]),
    ]
    for name, a in results["accuracy"].items():
        sens = " | ".join(f"{a['per_class'][l]['recall']:.3f}" for l in a["labels"])
        lines.append(f"| {name} | {a['accuracy']:.4f} | {a['macro_f1']:.4f} | {sens} |")
    lines += ["", "## Latency (batch 1, ms)", "",
              "| model | dtype | MB | gzip MB | threads | XNNPACK | init | first | p50 | p90 | p99 | peak RSS MB |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["latency"]:
        lines.append(
            f"| {r['model']} | {r['dtype']} | {r['size_bytes'] / 1e6:.2f} | {r['gzip_bytes'] / 1e6:.2f} | {r['threads']} | "
            f"{'on' if r['xnnpack'] else 'off'} | {r['init_ms']:.1f} | {r['first_ms']:.2f} | {r['p50_ms']:.2f} | "
            f"{r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['peak_rss_mb']:.0f} |"
        )
    for k in results["keras"]:
        lines.append(f"| {k['model']} | float32 | {k['size_bytes'] / 1e6:.2f} | – | {k['threads']} | – | {k['init_ms']:.0f} | – | "
                     f"{k['p50_ms']:.2f} | {k['p90_ms']:.2f} | {k['p99_ms']:.2f} | – |")
    lines += ["", "## Accuracy per source (test split)", ""]
    for name, a in results["accuracy"].items():
        per = ", ".join(f"{s} {v['accuracy']:.3f} (n={v['n']})" for s, v in a.get("per_source", {}).items())
        lines.append(f"- **{name}**: {per}")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for r in results["latency"]:
        if r["threads"] == 2 and r["xnnpack"]:
            acc = results["accuracy"][Path(r["path"]).stem]["macro_f1"]
            ax.scatter(r["p50_ms"], acc, s=20 + r["size_bytes"] / 1e5)
            ax.annotate(f"{r['model']} ({r['size_bytes'] / 1e6:.1f} MB)", (r["p50_ms"], acc), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency, ms (2 threads, XNNPACK; log scale)")
    ax.set_ylabel("test macro-F1")
    ax.set_title("accuracy vs latency (marker area ~ file size)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.matrix", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, action="append", required=True, help="folder of .tflite + cards (repeatable)")
    parser.add_argument("--keras", type=Path, action="append", default=[], help="training run folder whose best.keras to time (repeatable)")
    parser.add_argument("--data", type=Path, required=True, help="test split: one folder per class")
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json, report.md, tradeoff.png")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be >= 1 and --warmup >= 0")
    for d in [*args.models, *args.keras, args.data]:
        if not d.is_dir():
            parser.error(f"{d}: not a folder")
    results = run_matrix(args.models, args.keras, args.data, args.runs, args.warmup)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "report.md").write_text(markdown(results))
    plot(results, args.out / "tradeoff.png")
    print(f"wrote {args.out}/results.json, report.md, tradeoff.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
