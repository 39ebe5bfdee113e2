"""Latency, memory and accuracy of every model variant against the full float models, in one run.

    python -m benchmarks.matrix --models DIR [--models DIR ...] [--keras RUN_DIR ...] \\
        --data ../shared/data/cxr3/test --out benchmarks/results/NAME
    python -m benchmarks.matrix --from-results benchmarks/results/NAME/results.json [--measure-cold-start --data DIR]

For each ``.tflite`` in the given folders: latency (``edgecxr.evaluation.benchmark.measure``, each in its
own process) for threads {1, 2, 4} x XNNPACK {on, off}, and accuracy / macro-F1 / per-class
sensitivity overall and per source on the test split. The Keras full model of each run folder is
timed too, and so is a cold ``edgecxr predict IMAGE`` (a fresh process, spawn to exit) for every
bundled model. The issue's targets are computed from these numbers. Writes ``results.json``,
``report.md`` and ``tradeoff.png``; ``--from-results`` re-renders them from a ``results.json``
without remeasuring (``--measure-cold-start`` then remeasures only the cold start). A ``notes.md``
in the output folder (hand-written analysis) is included in the report under "Why".
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import edgecxr
from edgecxr.core.card import gzip_size, read_card
from edgecxr.core.cardparts import Verification
from edgecxr.core.families import VARIANTS
from edgecxr.core.inputs import find_images
from edgecxr.core.model import load_model
from edgecxr.core.registry import DEFAULT_MODEL, bundled_models
from edgecxr.evaluation.benchmark import measure_in_child, percentile, platform_info
from edgecxr.evaluation.evaluate import evaluate
from edgecxr.evaluation.macs import macs
from edgecxr.evaluation.manifest import Manifest, ManifestError, read_manifest
from edgecxr.evaluation.provenance import invocation, record, repo_relative, utc_now
from edgecxr.evaluation.targets import targets as edgecxr_targets

THREADS = (1, 2, 4)
ROW_ORDER = (*VARIANTS, "keras")  # within a family: the registry's variants, then the Keras full model
# The issue's targets: int8 vs float32 of the same family, and a cold `edgecxr predict`.
SIMD_FLAGS = {  # /proc/cpuinfo flags that decide how fast int8 kernels can be
    "x86_64": ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"),
    "aarch64": ("asimd", "asimddp", "i8mm"),
}
# Run by a small Python process: spawns the command, waits, prints "wall_s exit_code maxrss_kb".
# Spawned from the (large) harness itself, ru_maxrss would report the harness's own high-water
# mark (Linux copies it at exec), so the spawner must be smaller than what it measures (~10 MB).
# ru_maxrss is in kB (Linux).
SPAWN_AND_WAIT = """\
import os, sys, time
start = time.perf_counter()
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - start, os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def cpu_features() -> dict[str, bool]:
    """Which of the SIMD features that matter for int8 this CPU has (empty when unknown)."""
    wanted = SIMD_FLAGS.get(platform.machine(), ())
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return {}
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith(("flags", "Features"))), [])
    return {f: f in flags for f in wanted}


def row_order(row: dict) -> tuple[str, int]:
    """Sort key of a result row (its ``family`` and ``variant``, from the card): family, then variant in
    :data:`ROW_ORDER` (unknown variants last)."""
    variant = row["variant"]
    return row["family"] or "", ROW_ORDER.index(variant) if variant in ROW_ORDER else len(ROW_ORDER)


def card_fields(path: Path) -> dict[str, Any]:
    """The ``family`` and ``variant`` of a model, from its card."""
    card = read_card(path)
    return {"family": card.family, "variant": card.variant}


def split_manifest(data: Path) -> Manifest | None:
    """The manifest beside the split folder ``data`` (``data/../manifest.csv``), or None when there is none."""
    path = data.parent / "manifest.csv"
    return read_manifest(path) if path.is_file() else None


def accuracy_by_source(path: Path, data: Path, manifest: Manifest | None = None, external: Path | None = None) -> dict:
    """Metrics of one model on ``data`` (a split folder), overall and per manifest source, with its file's size, gzip
    size and MACs (:mod:`edgecxr.evaluation.macs`, counted from the file: older cards do not record them); with ``external`` (a split
    folder from a hospital nothing was trained on, reported only) the share of its films called each label."""
    model = load_model(path)
    report = evaluate(model, data, manifest=manifest)
    verification = model.card.verification
    report["agreement_with_float32"] = verification.agreement_with_float32 if isinstance(verification, Verification) else None
    if external is not None:
        outside = evaluate(model, external, manifest=split_manifest(external))
        called = np.asarray(outside["confusion_matrix"]).sum(axis=0) / max(outside["n"], 1)
        report["external"] = {"data": repo_relative(external), "n": outside["n"],
                              "called": {label: round(float(c), 4) for label, c in zip(outside["labels"], called)}}
    report["gzip_bytes"], report["size_bytes"], report["macs"] = gzip_size(path.read_bytes()), path.stat().st_size, macs(path)
    return {**report, **card_fields(path)}


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
        "family": model.name, "variant": "keras",  # a family's builder names its Keras model after it
    }


def cold_start(data: Path, runs: int) -> dict[str, Any]:
    """``edgecxr predict IMAGE`` in a fresh process, ``runs`` times per bundled model: wall time and peak RSS.

    IMAGE is the first image of ``data`` in sorted order. The command is the ``edgecxr`` script
    beside ``sys.executable`` (else ``python -m edgecxr``), importing the same ``edgecxr`` as this
    process. Wall time is spawn to exit (interpreter start, imports, model load, decode, answer);
    the OS file cache is warm after the first run.
    """
    image = find_images(data)[0]
    script = Path(sys.executable).with_name("edgecxr")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "edgecxr"]
    package_root = str(Path(edgecxr.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
    load_before = os.getloadavg()
    models = []
    for path in bundled_models():
        args = [] if path.stem == DEFAULT_MODEL else ["--model", path.stem]
        walls, rss = [], []
        for _ in range(runs):
            done = subprocess.run([sys.executable, "-c", SPAWN_AND_WAIT, *command, "predict", *args, str(image)],
                                  capture_output=True, text=True, env=env)
            *answer, last = done.stdout.splitlines() or [""]
            wall, code, maxrss_kb = last.split() if done.returncode == 0 else ("", "", "")
            if code != "0":
                raise RuntimeError(f"cold start of {path.stem} failed: {done.stderr.strip()}")
            walls.append(round(float(wall), 3))
            rss.append(round(int(maxrss_kb) / 1024, 1))
        models.append({
            "model": path.stem, "default": path.stem == DEFAULT_MODEL, "args": args, "answer": "\n".join(answer),
            "wall_s": walls, "rss_mb": rss, "wall_median_s": round(statistics.median(walls), 3),
            "wall_max_s": max(walls), "rss_median_mb": round(statistics.median(rss), 1), "rss_max_mb": max(rss),
        })
    return {
        "measured_at": utc_now(), "load_before": load_before, "load_after": os.getloadavg(),
        "platform": {**platform_info(), "cpu_features": cpu_features()}, "command": " ".join([Path(command[0]).name, *command[1:]]),
        "package": repo_relative(Path(edgecxr.__file__).parent), "image": repo_relative(image), "runs": runs, "models": models,
    }


def run_matrix(model_dirs: list[Path], keras_runs: list[Path], data: Path, runs: int, warmup: int, cold_runs: int,
               command: list[str], external: Path | None = None) -> dict:
    """Measure everything; ``provenance`` records ``command`` and the sha256 of every model measured."""
    started, load_before = utc_now(), os.getloadavg()
    manifest = split_manifest(data)  # read before measuring: a bad one stops the run at once
    cards = {p: card_fields(p) for d in model_dirs for p in d.glob("*.tflite")}
    paths = sorted(cards, key=lambda p: (*row_order(cards[p]), p.stem))
    latency = []
    for i, path in enumerate(paths):
        for threads in THREADS:
            for xnnpack in (True, False):
                print(f"[{i + 1}/{len(paths)}] {path.name} threads={threads} xnnpack={xnnpack}", file=sys.stderr, flush=True)
                row = measure_in_child(str(path), runs=runs, warmup=warmup, threads=threads, xnnpack=xnnpack)
                latency.append({**row, "path": repo_relative(row["path"]), **cards[path]})
    print("cold start", file=sys.stderr, flush=True)
    cold = cold_start(data, cold_runs)
    accuracy = {}
    for path in paths:
        print(f"accuracy of {path.name}", file=sys.stderr, flush=True)
        accuracy[path.stem] = accuracy_by_source(path, data, manifest, external)
    keras_rows = [keras_latency(r, runs, warmup) for r in keras_runs]
    return {"provenance": record(command, models=paths),
            "platform": {**platform_info(), "cpu_features": cpu_features()}, "measured_at": started,
            "load_before": load_before, "load_after": os.getloadavg(), "data": repo_relative(data), "runs": runs, "warmup": warmup,
            "latency": latency, "keras": keras_rows, "accuracy": accuracy, "cold_start": cold}


def targets(results: dict) -> list[dict[str, Any]]:
    """The ``matrix`` targets of ``edgecxr/evaluation/targets.json`` checked against ``results``: int8 vs float32 per
    family (p50 per threads x XNNPACK, size, accuracy), and per bundled model a cold ``edgecxr predict``."""
    goal = {t.key: t for t in edgecxr_targets("matrix")}
    rows = {(r["family"], r["variant"], r["threads"], r["xnnpack"]): r for r in results["latency"]}
    acc = {(a["family"], a["variant"]): a for a in results["accuracy"].values()}
    out = []
    for family in sorted({f for f, v, _, _ in rows if v == "int8"} & {f for f, v, _, _ in rows if v == "float32"}):
        int8 = {k[2:]: r for k, r in rows.items() if k[:2] == (family, "int8")}
        f32 = {k[2:]: r for k, r in rows.items() if k[:2] == (family, "float32")}
        for threads, xnnpack in sorted(int8.keys() & f32.keys(), key=lambda k: (k[0], not k[1])):
            ratio = round(int8[threads, xnnpack]["p50_ms"] / f32[threads, xnnpack]["p50_ms"], 3)
            scope = f"{family}, {threads} thread{'s' * (threads != 1)}, XNNPACK {'on' if xnnpack else 'off'}"
            out.append(goal["int8_float32_p50_ratio"].check(ratio, scope))
        any_int8, any_f32 = next(iter(int8.values())), next(iter(f32.values()))
        out.append(goal["int8_float32_size_ratio"].check(round(any_int8["size_bytes"] / any_f32["size_bytes"], 3), family))
        if (family, "int8") in acc and (family, "float32") in acc:
            delta = round((acc[family, "int8"]["accuracy"] - acc[family, "float32"]["accuracy"]) * 100, 2)
            out.append(goal["int8_minus_float32_accuracy_points"].check(delta, family))
    for m in results.get("cold_start", {}).get("models", []):
        scope = f"{m['model']}{' (default)' if m['default'] else ''}"
        out.append(goal["cold_wall_median_s"].check(m["wall_median_s"], scope))
        out.append(goal["cold_rss_max_mb"].check(m["rss_max_mb"], scope))
    return out


def provenance(block: dict) -> str:
    """When a block of results was measured and how loaded the machine was."""
    loads: list[Any] = [block.get("load_before"), block.get("load_after")]  # JSON lists of 3 floats, or None
    load = ("load average (1/5/15 min) {} before, {} after".format(*("/".join(f"{x:.2f}" for x in v) for v in loads))
            if all(loads) else "load not recorded")
    return f"{block.get('measured_at') or 'a time not recorded'}, {load}"


def _other_machine(matrix: dict, cold: dict | None) -> str:
    """``, on <machine>`` when the cold start was measured on another CPU than the matrix, else nothing."""
    if not cold or (cold.get("cpu"), cold.get("system")) == (matrix.get("cpu"), matrix.get("system")):
        return ""
    return f", on another machine: {cold['machine']}, {cold['cpu']}, {cold['cpus']} CPUs, {cold['system']}"


def markdown(results: dict, notes: str | None = None) -> str:
    p = results["platform"]
    cold = results.get("cold_start")
    labels = next(iter(results["accuracy"].values()))["labels"]
    lines = [
        "# edgecxr benchmark", "",
        f"Machine: {p['machine']}, {p['cpu']}, {p['cpus']} CPUs, {p['system']}; Python {p['python']}; "
        f"{p['interpreter']} {p['interpreter_version']}. {results['runs']} timed runs after {results['warmup']} warm-up runs, "
        "each model in its own process; peak RSS is that process's.", "",
        f"Latency, accuracy and Keras numbers: matrix run at {provenance(results)}. " + (
            "No cold-start numbers." if not cold else "Cold start: "
            + ("a separate run (`--measure-cold-start`), not the matrix run" if cold.get("separate_run") else "the same run")
            + f", at {provenance(cold)}" + _other_machine(p, cold.get("platform")) + "."),
        "", *targets_markdown(results, notes), *cold_markdown(cold),
        "## Accuracy on the test split", "",
        *external_note(results),
        "| model | accuracy | macro-F1 | " + " | ".join(f"sens. {l}" for l in labels) + " | agreement with float32 | external called Normal | gzip MB | MACs |",
        "|---|---|---|" + "---|" * len(labels) + "---|---|---|---|",
    ]
    for name, a in sorted(results["accuracy"].items(), key=lambda kv: row_order(kv[1])):
        sens = " | ".join(f"{a['per_class'][l]['recall']:.3f}" for l in a["labels"])
        agreement = f"{a['agreement_with_float32']:.1%}" if a.get("agreement_with_float32") is not None and a["variant"] != "float32" else "–"
        outside = f"{a['external']['called'].get('Normal', float('nan')):.3f}" if a.get("external") else "–"
        gzip = f"{a['gzip_bytes'] / 1e6:.2f}" if a.get("gzip_bytes") else "–"
        macs = f"{a['macs'] / 1e6:.1f} M" if a.get("macs") else "–"
        lines.append(f"| {name} | {a['accuracy']:.4f} | {a['macro_f1']:.4f} | {sens} | {agreement} | {outside} | {gzip} | {macs} |")
    lines += ["", "## Latency (batch 1, ms)", "",
              "| model | dtype | MB | gzip MB | threads | XNNPACK | init | first | p50 | p90 | p99 | peak RSS MB |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(results["latency"] + results["keras"], key=row_order):
        if r["xnnpack"] is None:  # Keras: TensorFlow, no LiteRT fields
            lines.append(f"| {r['model']} | float32 | {r['size_bytes'] / 1e6:.2f} | – | {r['threads']} | – | {r['init_ms']:.0f} | – | "
                         f"{r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | – |")
        else:
            lines.append(
                f"| {r['model']} | {r['dtype']} | {r['size_bytes'] / 1e6:.2f} | {r['gzip_bytes'] / 1e6:.2f} | {r['threads']} | "
                f"{'on' if r['xnnpack'] else 'off'} | {r['init_ms']:.1f} | {r['first_ms']:.2f} | {r['p50_ms']:.2f} | "
                f"{r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['peak_rss_mb']:.0f} |"
            )
    lines += ["", "## Accuracy per source (test split)", ""]
    for name, a in sorted(results["accuracy"].items(), key=lambda kv: row_order(kv[1])):
        per = ", ".join(f"{s} {v['accuracy']:.3f} (n={v['n']})" for s, v in a.get("per_source", {}).items())
        lines.append(f"- **{name}**: {per}")
    return "\n".join(lines) + "\n"


def external_note(results: dict) -> list[str]:
    """The sentence naming the external films, when the run measured them."""
    outside = next((a["external"] for a in results["accuracy"].values() if a.get("external")), None)
    if not outside:
        return []
    return [f"*external called Normal*: share of the {outside['n']} films of `{outside['data']}` (a hospital no training film "
            "comes from; reported only, never used to train, calibrate or select) the model calls Normal; every label's share is in "
            "results.json (`accuracy.<model>.external.called`).", ""]


def targets_markdown(results: dict, notes: str | None) -> list[str]:
    lines = [
        "## Targets", "",
        "The issue's targets, computed from the numbers below (`targets` in results.json). The issue sets the "
        "latency and size targets for the ResNet-18-style family; other families are listed for comparison. "
        "Ratios are int8 / float32 of p50 latency (same threads and XNNPACK setting) and of file size; "
        "accuracy is int8 minus float32 test accuracy in points (a gain counts as met); the cold start is the "
        "median wall time and the largest peak RSS of the repeated runs."
        + (" The cold-start rows come from the separate cold-start run, all others from the matrix run."
           if results.get("cold_start", {}).get("separate_run") else ""), "",
        "| target | scope | limit | reached | result |", "|---|---|---|---|---|",
    ]
    for t in results["targets"]:
        result = f"met, {t['margin']:g} to spare" if t["met"] else f"**missed by {-t['margin']:g}**"
        lines.append(f"| {t['name']} | {t['scope']} | {t['op']} {t['target']:g} | {t['reached']:g} | {result} |")
    features = results["platform"].get("cpu_features") or results.get("cold_start", {}).get("platform", {}).get("cpu_features")
    if features or notes:
        lines += ["", "### Why"]
    if features:
        lines.append("")
        lines.append(f"Measured: of the SIMD flags that matter for int8, /proc/cpuinfo lists "
                     f"{', '.join(f for f, on in features.items() if on) or 'none'} and lacks "
                     f"{', '.join(f for f, on in features.items() if not on) or 'none'}; {results['platform']['cpus']} CPUs.")
    if notes:
        lines += ["", notes.strip()]
    return lines + [""]


def cold_markdown(cold: dict | None) -> list[str]:
    if not cold:
        return []
    lines = [
        "## Cold start", "",
        f"`{cold['command']} predict [--model NAME] IMAGE` as a user runs it: a fresh process each time, wall time from "
        f"spawn to exit, peak RSS of that process (ru_maxrss), {cold['runs']} runs per model; IMAGE is "
        f"`{Path(cold['image']).name}` (the first test image). The OS file cache is warm after the first run.", "",
        "| model | wall median s | wall max s | peak RSS median MB | peak RSS max MB |", "|---|---|---|---|---|",
    ]
    for m in cold["models"]:
        lines.append(f"| {m['model']}{' (default)' if m['default'] else ''} | {m['wall_median_s']:.3f} | {m['wall_max_s']:.3f} | "
                     f"{m['rss_median_mb']:.0f} | {m['rss_max_mb']:.0f} |")
    return lines + [""]


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both cost (first, lower is better) and accuracy (second, higher is better), by cost."""
    front: list[tuple[float, float]] = []
    for cost, accuracy in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or accuracy > front[-1][1]:
            front.append((cost, accuracy))
    return front


def plot(results: dict, path: Path) -> None:
    """Test macro-F1 against p50 latency (2 threads, XNNPACK) and against gzip size, each with its Pareto front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["latency"] if r["threads"] == 2 and r["xnnpack"]]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, cost, label in ((axes[0], lambda r: r["p50_ms"], "p50 latency, ms (2 threads, XNNPACK; log scale)"),
                            (axes[1], lambda r: r["gzip_bytes"] / 1e6, "gzip size, MB (log scale)")):
        points = []
        for r in rows:
            acc = results["accuracy"][Path(r["path"]).stem]["macro_f1"]
            points.append((cost(r), acc))
            ax.scatter(cost(r), acc, s=25)
            ax.annotate(r["model"], (cost(r), acc), fontsize=7)
        front = pareto_front(points)
        ax.plot([p[0] for p in front], [p[1] for p in front], "k--", lw=0.8, label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test macro-F1")
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle("accuracy vs latency and vs size")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.matrix", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, action="append", default=[], help="folder of .tflite + cards (repeatable)")
    parser.add_argument("--keras", type=Path, action="append", default=[], help="training run folder whose best.keras to time (repeatable)")
    parser.add_argument("--data", type=Path, help="test split: one folder per class")
    parser.add_argument(
        "--external", type=Path,
        help="split folder of films from a hospital nothing was trained on (e.g. ../shared/data/cxr3-plus/external): share called each label, reported only",
    )
    parser.add_argument("--out", type=Path, help="folder for results.json, report.md, tradeoff.png (default with --from-results: its folder)")
    parser.add_argument("--runs", type=int, default=100, help="timed runs per model and setting")
    parser.add_argument("--warmup", type=int, default=10, help="untimed warm-up runs before timing")
    parser.add_argument("--cold-runs", type=int, default=10, help="fresh `edgecxr predict` processes per bundled model")
    parser.add_argument("--from-results", type=Path, help="re-render from this results.json instead of measuring")
    parser.add_argument("--measure-cold-start", action="store_true", help="with --from-results: measure the cold start now (needs --data)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.cold_runs < 1:
        parser.error("--runs and --cold-runs must be >= 1 and --warmup >= 0")
    if args.from_results is None and not (args.models and args.data and args.out):
        parser.error("--models, --data and --out are required unless --from-results is given")
    if args.external and args.from_results:
        parser.error("--external is measured with the models: it cannot be added to --from-results")
    if args.measure_cold_start and not (args.from_results and args.data):
        parser.error("--measure-cold-start needs --from-results and --data")
    for d in [*args.models, *args.keras, *([args.data] if args.data else []), *([args.external] if args.external else [])]:
        if not d.is_dir():
            parser.error(f"{d}: not a folder")
    if args.from_results:
        results = json.loads(args.from_results.read_text())
        if args.measure_cold_start:
            cold = cold_start(args.data, args.cold_runs)
            results["cold_start"] = {**cold, "separate_run": True, "provenance": record(invocation("python -m benchmarks.matrix", argv))}
    else:
        try:
            results = run_matrix(args.models, args.keras, args.data, args.runs, args.warmup, args.cold_runs,
                                 invocation("python -m benchmarks.matrix", argv), args.external)
        except ManifestError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    results["targets"] = targets(results)
    out = args.out or args.from_results.parent
    out.mkdir(parents=True, exist_ok=True)
    notes = out / "notes.md"
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "report.md").write_text(markdown(results, notes.read_text() if notes.is_file() else None))
    plot(results, out / "tradeoff.png")
    print(f"wrote {out}/results.json, report.md, tradeoff.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
