"""How fast the whole path is next to the model itself, measured side by side in one run.

    python -m benchmarks.speed [--data ../shared/data] [--out benchmarks/results/speed]

Three ratios, each of medians taken in the same process, interleaved, so a busy shared machine
moves both sides alike:

- **lung model vs classifier**: a bare ``invoke()`` of the bundled lung model and of the bundled
  default classifier (one thread each, same input every call); target <= 0.5.
- **predict path**: per ``cxr3-fullres`` film, :meth:`edgecxr.Model.predict` of the file (decode,
  every default check, the lung pass) against a plain full-size ``cv2.imread`` of the same file
  plus one bare classifier invoke; median over the films of each, target <= 1.5. The
  predictions' ``timings_ms`` give the breakdown.
- **benchmark overhead**: ``edgecxr benchmark``'s timed call (:func:`edgecxr.evaluation.benchmark.measure`,
  in its own process as the command runs it) against a bare invoke of the same model with the
  same threads, also in a fresh process; p50 against p50, target <= 1.2.

Writes ``results.json`` and ``report.md`` (machine, load average, model sha256s).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.header import write_report
from edgecxr.core.interpreter import make_interpreter
from edgecxr.core.lungs import load_lung_model
from edgecxr.core.model import load_model
from edgecxr.core.registry import DEFAULT_MODEL, resolve
from edgecxr.evaluation.benchmark import measure_in_child, platform_info

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"lungs_vs_classifier_invoke": 0.5, "predict_vs_imread_plus_invoke": 1.5, "benchmark_vs_bare_invoke": 1.2}


def bare(path: Path, threads: int = 1) -> Callable[[], None]:
    """A bare ``invoke()`` of the model at ``path`` on a fixed input (zeros), ready to call."""
    interpreter = make_interpreter(str(path), threads=threads)
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    interpreter.invoke()
    return interpreter.invoke


def ms(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000.0


def invoke_section(rounds: int, per_round: int) -> dict[str, Any]:
    """Bare invoke of the lung model and of the default classifier, alternating rounds."""
    lungs, classifier = bare(load_lung_model().path), bare(resolve(DEFAULT_MODEL))
    times: dict[str, list[float]] = {"lungs": [], "classifier": []}
    for _ in range(rounds):
        for name, call in (("lungs", lungs), ("classifier", classifier)):
            times[name] += [ms(call) for _ in range(per_round)]
    p50 = {k: statistics.median(v) for k, v in times.items()}
    return {"p50_ms": {k: round(v, 3) for k, v in p50.items()}, "calls": rounds * per_round, "ratio": round(p50["lungs"] / p50["classifier"], 3)}


def predict_section(data: Path, repeats: int) -> dict[str, Any]:
    """Per film: median of ``repeats`` of Model.predict(file) and of cv2.imread(file) + one bare invoke, alternating."""
    with (data / "cxr3-fullres" / "manifest.csv").open(newline="") as fh:
        films = [data / "cxr3-fullres" / r["file"] for r in csv.DictReader(fh)]
    model = load_model()
    invoke = model.interpreter.invoke  # the model's own interpreter and threads: what predict invokes
    model.predict(films[0])
    rows: list[dict[str, Any]] = []
    for film in films:
        predict_ms, plain_ms, stages = [], [], []
        for _ in range(repeats):
            name = str(film)
            plain_ms.append(ms(lambda: cv2.imread(name)) + ms(invoke))  # noqa: B023  (called here, in this iteration)
            start = time.perf_counter()
            p = model.predict(film)
            predict_ms.append((time.perf_counter() - start) * 1000.0)
            stages.append({**p.timings_ms, "latency_ms": p.latency_ms})
        h, w = np.asarray(cv2.imread(str(film), cv2.IMREAD_UNCHANGED)).shape[:2]
        rows.append({
            "file": str(film.relative_to(data)), "size": [w, h],
            "predict_ms": round(statistics.median(predict_ms), 3), "imread_plus_invoke_ms": round(statistics.median(plain_ms), 3),
            "stages_ms": {k: round(statistics.median(s[k] for s in stages), 3) for k in stages[0]},
            "checks": [c.code for c in p.checks],
        })
    predict, plain = statistics.median(r["predict_ms"] for r in rows), statistics.median(r["imread_plus_invoke_ms"] for r in rows)
    stage_names = list(rows[0]["stages_ms"])
    return {
        "films": len(rows), "repeats": repeats, "model": model.name,
        "median_predict_ms": round(predict, 3), "median_imread_plus_invoke_ms": round(plain, 3), "ratio": round(predict / plain, 3),
        "median_stages_ms": {k: round(statistics.median(r["stages_ms"][k] for r in rows), 3) for k in stage_names},
        "per_film": rows,
    }


def bare_invoke_p50(path: str, runs: int) -> float:
    """p50 of ``runs`` bare invokes (one thread) after 5 warm-up calls, in this process."""
    invoke = bare(Path(path))
    for _ in range(5):
        invoke()
    return statistics.median(ms(invoke) for _ in range(runs))


def benchmark_section(rounds: int, runs: int) -> dict[str, Any]:
    """``edgecxr benchmark``'s p50 (threads 1, its own process, as the command runs it) against a bare invoke's p50
    (threads 1, also in a fresh process of its own), alternating rounds."""
    path = str(resolve(DEFAULT_MODEL))
    command, plain = [], []
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        for _ in range(rounds):
            command.append(measure_in_child(path, runs=runs, warmup=5, threads=1)["p50_ms"])
            plain.append(pool.submit(bare_invoke_p50, path, runs).result())
    p50, bare_p50 = statistics.median(command), statistics.median(plain)
    return {"model": Path(path).stem, "runs": runs, "rounds": rounds, "benchmark_p50_ms": round(p50, 3), "bare_p50_ms": round(bare_p50, 3), "ratio": round(p50 / bare_p50, 3)}


def markdown(report: dict[str, Any]) -> str:
    inv, pred, bench = report["invoke"], report["predict"], report["benchmark"]
    ok = {k: "meets" if report["ratios"][k] <= TARGETS[k] else "**misses**" for k in TARGETS}
    p = report["platform"]
    lines = [
        "# Speed of the whole path",
        "",
        f"Measured {report['when']} on {p['machine']} ({p['cpu']}, {p['cpus']} CPUs, load average {report['load_average']}), "
        f"{p['interpreter']} {p['interpreter_version']}. Regenerate: `python -m benchmarks.speed`. Every ratio is of medians taken "
        "in the same run, the two sides alternating.",
        "",
        "Models: " + ", ".join(f"`{name}` (sha256 `{sha[:16]}…`)" for name, sha in report["models"].items()) + ".",
        "",
        "| what | measured | against | ratio | target |",
        "|---|---|---|---|---|",
        f"| lung model invoke | {inv['p50_ms']['lungs']:.3f} ms | classifier invoke {inv['p50_ms']['classifier']:.3f} ms | "
        f"{inv['ratio']:.2f} | <= {TARGETS['lungs_vs_classifier_invoke']} ({ok['lungs_vs_classifier_invoke']}) |",
        f"| `Model.predict(file)`, default checks, median of {pred['films']} `cxr3-fullres` films | {pred['median_predict_ms']:.2f} ms | "
        f"`cv2.imread` + one invoke {pred['median_imread_plus_invoke_ms']:.2f} ms | {pred['ratio']:.2f} | "
        f"<= {TARGETS['predict_vs_imread_plus_invoke']} ({ok['predict_vs_imread_plus_invoke']}) |",
        f"| `edgecxr benchmark` p50 ({bench['model']}, 1 thread) | {bench['benchmark_p50_ms']:.3f} ms | bare invoke p50 {bench['bare_p50_ms']:.3f} ms | "
        f"{bench['ratio']:.2f} | <= {TARGETS['benchmark_vs_bare_invoke']} ({ok['benchmark_vs_bare_invoke']}) |",
        "",
        "Bare invokes: one thread, the same input every call. `Model.predict` uses the bundled models as `load_model()` gives them "
        "(default threads); its bare invoke is its own interpreter's. `latency_ms` (all model work on the decoded film) median "
        "stages over the films: " + ", ".join(f"{k} {v:.2f} ms" for k, v in pred["median_stages_ms"].items()) + ". "
        "The rest of `predict`'s time is the decode (`edgecxr.core.imageio.load_image`).",
        "",
        "| film | size | predict ms | imread + invoke ms | lungs | classifier | checks | checks fired |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in pred["per_film"]:
        s = r["stages_ms"]
        lines.append(
            f"| `{r['file']}` | {r['size'][0]}x{r['size'][1]} | {r['predict_ms']:.2f} | {r['imread_plus_invoke_ms']:.2f} | "
            f"{s['lungs']:.2f} | {s['classifier']:.2f} | {s['checks']:.2f} | {', '.join(r['checks']) or '-'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed", description="Lung model vs classifier, predict path vs decode + invoke, benchmark overhead: one run.")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="the shared data folder (needs cxr3-fullres)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "speed")
    parser.add_argument("--repeats", type=int, default=5, help="predict / imread repeats per film")
    args = parser.parse_args(argv)
    model, lungs = load_model(), load_lung_model()
    report: dict[str, Any] = {
        "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform_info(),
        "python": platform.python_version(),
        "models": {model.name: model.card.sha256, lungs.name: lungs.card.sha256},
        "invoke": invoke_section(rounds=10, per_round=100),
        "predict": predict_section(args.data, args.repeats),
        "benchmark": benchmark_section(rounds=5, runs=300),
    }
    report["ratios"] = {
        "lungs_vs_classifier_invoke": report["invoke"]["ratio"],
        "predict_vs_imread_plus_invoke": report["predict"]["ratio"],
        "benchmark_vs_bare_invoke": report["benchmark"]["ratio"],
    }
    report["load_average"] = [round(v, 2) for v in os.getloadavg()]
    write_report(args.out, report, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
