"""What a cheaper stem buys before any training: MACs and int8 latency of the ResNet with each stem, against the bundled int8 model.

    python -m benchmarks.stems --data ../shared/data/cxr3 --out benchmarks/results/pruning [--rounds 3] [--runs 200]

Each stem of :data:`edgecxr.families.RESNET_STEMS` is built untrained at the bundled model's input
size and width (random initial weights: the int8 kernels' time does not depend on the values),
converted to int8 as the ``int8`` variant is (calibrated on real training films), and timed with
the bundled ``resnet18-int8`` through :func:`edgecxr.benchmark.measure_in_child` (a fresh process
each, synthetic input, XNNPACK on) at 1 and 2 threads; the models take turns over ``--rounds``
rounds and each p50 is the median of the rounds' p50s, so load from other jobs falls on all alike.
MACs are counted from each file's layer shapes (:func:`edgecxr.macs.macs`). No accuracy: the
stems are untrained here (``python -m training ... --stem KIND`` trains one). Writes ``stems.json``
and ``stems.md`` to ``--out``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.header import write_report
from edgecxr.core.card import ModelCard, write_card
from edgecxr.core.families import RESNET_STEMS
from edgecxr.core.model import load_model
from edgecxr.evaluation.benchmark import measure_in_child, platform_info
from edgecxr.evaluation.macs import macs
from edgecxr.evaluation.provenance import invocation, record

THREADS = (1, 2)
BASELINE = "resnet18-int8"


def stem_model(kind: str, baseline: ModelCard, calibration: Any, folder: Path) -> Path:
    """The untrained ResNet with stem ``kind`` as an int8 ``.tflite`` with a card in ``folder``."""
    from converters.embed import embed_facts
    from converters.quantize import convert, exported
    from training.models import build_resnet18

    width = baseline.cam.feature_map.shape[-1] // 8 if baseline.cam and baseline.cam.feature_map else 32
    model = build_resnet18(baseline.preprocessing.size[0], len(baseline.labels), width=width, stem=kind)
    card = ModelCard(f"resnet18-stem-{kind}", baseline.labels, baseline.preprocessing, output_kind="logits", family="resnet18", variant="int8",
                     architecture=f"untrained ResNet-18-style, stem {RESNET_STEMS[kind]}; {model.count_params():,} parameters")
    flat = embed_facts(convert(exported(model), "int8", calibration), card.to_dict())
    path = folder / f"{card.name}.tflite"
    path.write_bytes(flat)
    write_card(path, card)
    return path


def latencies(paths: list[Path], rounds: int, runs: int) -> list[dict[str, float]]:
    """Per model, {threads: median over ``rounds`` of the p50 ms of ``runs`` runs}; the models take turns."""
    p50s: list[dict[str, list[float]]] = [{} for _ in paths]
    for _ in range(rounds):
        for i, path in enumerate(paths):
            for threads in THREADS:
                p50s[i].setdefault(f"{threads}t", []).append(measure_in_child(str(path), runs=runs, warmup=10, threads=threads)["p50_ms"])
    return [{k: round(statistics.median(v), 3) for k, v in m.items()} for m in p50s]


def markdown(results: dict[str, Any]) -> str:
    p, m = results["provenance"], results["machine"]
    base = results["models"][0]
    lines = [
        "# Stems: MACs and int8 latency before training", "",
        f"Measured {p['utc_time']} with `{p['command']}` on {m['machine']}, {m['cpu']}, {m['cpus']} CPUs, {m['interpreter']} "
        f"{m['interpreter_version']}, XNNPACK on; load average {results['load_before']} before, {results['load_after']} after (other jobs "
        f"shared the CPUs). p50: median over {results['rounds']} rounds of the p50 of {results['runs']} runs, each model in its own "
        "process, synthetic input, models taking turns. The stem rows are untrained (random weights, int8 calibrated on real "
        "training films): timing and MACs only, no accuracy. x86 only: emulated ARM runs give no timing.", "",
        "| model | stem | MACs | p50 ms 1 thread | p50 ms 2 threads | speed-up 1 / 2 threads |", "|---|---|---|---|---|---|",
    ]
    for r in results["models"]:
        speed = " / ".join(f"{base['p50_ms'][k] / r['p50_ms'][k]:.2f}x" for k in ("1t", "2t"))
        lines.append(f"| {r['model']} | {r['stem']} | {r['macs'] / 1e6:.1f} M | {r['p50_ms']['1t']:.3f} | {r['p50_ms']['2t']:.3f} | {speed} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stems", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset root with a train split (int8 calibration films)")
    parser.add_argument("--out", type=Path, required=True, help="folder for stems.json and stems.md")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds, models taking turns (default 3)")
    parser.add_argument("--runs", type=int, default=200, help="timed runs per model, thread count and round (default 200)")
    parser.add_argument("--calibration", type=int, default=300, help="training films int8 is calibrated on")
    args = parser.parse_args(argv)
    from converters.quantize import representative_images
    from training.data import DatasetError
    from training.multiroot import load_roots

    baseline = load_model(BASELINE)
    try:
        train = load_roots([args.data], baseline.card.preprocessing.to_dict(), splits=("train",)).splits["train"]
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    calibration = representative_images(train.x, args.calibration)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [baseline.path, *(stem_model(kind, baseline.card, calibration, Path(tmp)) for kind in RESNET_STEMS)]
        load_before = [round(v, 2) for v in os.getloadavg()]
        timed = latencies(paths, args.rounds, args.runs)
        load_after = [round(v, 2) for v in os.getloadavg()]
        rows = [
            {"model": f"{BASELINE} {baseline.card.version} (bundled, trained)" if i == 0 else f"untrained, stem {kind}", "stem": kind,
             "macs": macs(path), "size_bytes": path.stat().st_size, "p50_ms": t}
            for i, (path, kind, t) in enumerate(zip(paths, ["7x7", *RESNET_STEMS], timed))
        ]
    results = {
        "provenance": record(invocation("python -m benchmarks.stems", argv)), "machine": platform_info(),
        "load_before": load_before, "load_after": load_after, "rounds": args.rounds, "runs": args.runs, "models": rows,
    }
    write_report(args.out, results, markdown, "stems")
    return 0


if __name__ == "__main__":
    sys.exit(main())
