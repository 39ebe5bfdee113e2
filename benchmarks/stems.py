"""What a cheaper stem buys: MACs, gzip size and int8 latency of the ResNet with each stem, untrained and trained, against the bundled int8 model.

    python -m benchmarks.stems --data ../shared/data/cxr3 --out benchmarks/results/pruning [--model TRAINED.tflite ...] [--rounds 3] [--runs 200]

Each stem of :data:`edgecxr.families.RESNET_STEMS` is built untrained at the bundled model's input
size and width (random initial weights: the int8 kernels' time does not depend on the values),
converted to int8 as the ``int8`` variant is (calibrated on real training films), and timed with
the bundled ``resnet18-int8`` and every trained ``--model`` (converted by ``python -m converters`` or
``converters.filters``, with its card) through :func:`edgecxr.benchmark.measure_in_child` (a fresh
process each, synthetic input, XNNPACK on) at 1 and 2 threads; the models take turns over
``--rounds`` rounds and each p50 is the median of the rounds' p50s, so load from other jobs falls on
all alike. MACs are counted from each file's layer shapes (:func:`edgecxr.macs.macs`). The untrained
rows have no accuracy; a trained row's accuracy and gate are its card's (the release gate of
``edgecxr/evaluation/targets.json``, measured by the converter: test macro-F1, abnormal AUC, the
share of the report-only ``external`` films called Normal). A trained model meets issue 26's target
when it is at least :data:`TARGET_SPEEDUP` times faster than the bundled int8 model at both thread
counts and its gate passed. Writes ``stems.json`` and ``stems.md`` to ``--out``.
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
from edgecxr.core.card import ModelCard, ModelError, gzip_size, write_card
from edgecxr.core.families import RESNET_STEMS
from edgecxr.core.model import Model, load_model
from edgecxr.evaluation.benchmark import measure_in_child, platform_info
from edgecxr.evaluation.macs import macs
from edgecxr.evaluation.provenance import invocation, record, repo_relative

THREADS = (1, 2)
BASELINE = "resnet18-int8"
TARGET_SPEEDUP = 2.0  # issue 26: at 1 and 2 threads, against the bundled int8 model, with the gate passed
GATE_METRICS = ("macro_f1", "abnormal_auc", "external_called_normal")  # the gate quantities a row reports (the external share: reported, not gated)


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


def stem_of(card: ModelCard) -> str:
    """The stem a card's architecture names (the 7x7 one when it names none)."""
    return next((kind for kind, described in RESNET_STEMS.items() if described in (card.architecture or "")), "7x7")


def accuracy(card: ModelCard) -> dict[str, Any]:
    """A converted model's gate from its card: passed, the failed checks, and the reached value of :data:`GATE_METRICS`."""
    gate = card.gate
    if gate is None:
        return {"gate": None, "gate_passed": False, "failed": ["no gate on the card"]}
    reached = {key: value for (key, _), value in gate.values.items() if key in GATE_METRICS}
    failed = [f"{c.key}{f' {c.scope}' if c.scope else ''} {c.reached} (needs {c.op} {c.target})" for c in gate.failed]
    return {"gate": gate.name, "gate_passed": gate.passed, "failed": failed, **reached}


def trained_row(model: Model, latency: dict[str, float], label: str) -> dict[str, Any]:
    card = model.card
    return {
        "model": f"{label} {card.name} {card.version} ({repo_relative(model.path)})", "stem": stem_of(card), "trained": True,
        "macs": card.macs if card.macs is not None else macs(model.path), "size_bytes": model.path.stat().st_size,
        "gzip_bytes": card.gzip_bytes if card.gzip_bytes is not None else gzip_size(model.path.read_bytes()),
        "p50_ms": latency, "architecture": card.architecture, "notes": card.notes, **accuracy(card),
    }


def verdict(row: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """A row's speed-up at each thread count against the baseline's and, for a trained row, whether it meets the target."""
    speedup = {k: round(baseline["p50_ms"][k] / v, 3) for k, v in row["p50_ms"].items()}
    meets = row.get("trained", False) and row is not baseline and min(speedup.values()) >= TARGET_SPEEDUP and row.get("gate_passed", False)
    return {"speedup": speedup, "meets_target": bool(meets)}


def latencies(paths: list[Path], rounds: int, runs: int) -> list[dict[str, float]]:
    """Per model, {threads: median over ``rounds`` of the p50 ms of ``runs`` runs}; the models take turns."""
    p50s: list[dict[str, list[float]]] = [{} for _ in paths]
    for _ in range(rounds):
        for i, path in enumerate(paths):
            for threads in THREADS:
                p50s[i].setdefault(f"{threads}t", []).append(measure_in_child(str(path), runs=runs, warmup=10, threads=threads)["p50_ms"])
    return [{k: round(statistics.median(v), 3) for k, v in m.items()} for m in p50s]


def _metric(value: Any) -> str:
    return "" if value is None else f"{value:.4f}"


def markdown(results: dict[str, Any]) -> str:
    p, m = results["provenance"], results["machine"]
    lines = [
        "# Stems: MACs, gzip size and int8 latency, untrained and trained", "",
        f"Measured {p['utc_time']} with `{p['command']}` on {m['machine']}, {m['cpu']}, {m['cpus']} CPUs, {m['interpreter']} "
        f"{m['interpreter_version']}, XNNPACK on; load average {results['load_before']} before, {results['load_after']} after (other jobs "
        f"shared the CPUs). p50: median over {results['rounds']} rounds of the p50 of {results['runs']} runs, each model in its own "
        "process, synthetic input, models taking turns. The untrained rows have random weights (int8 calibrated on real training "
        "films): timing and MACs only, no accuracy. A trained row's accuracy and gate are its card's (the release gate of "
        "edgecxr/evaluation/targets.json, against the bundled resnet18-float32: test macro-F1, abnormal AUC, `external` films called "
        f"Normal). Target (issue 26): >= {TARGET_SPEEDUP:g}x faster than the bundled int8 model at 1 and 2 threads, gate passed. "
        "x86 only: emulated ARM runs give no timing.", "",
        "| model | stem | MACs | gzip KB | p50 ms 1 thread | p50 ms 2 threads | speed-up 1 / 2 threads | test macro-F1 | abnormal AUC "
        "| external called Normal | gate | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(results["models"]):
        v = r["verdict"]
        speed = " / ".join(f"{v['speedup'][k]:.2f}x" for k in ("1t", "2t"))
        if not r.get("trained"):
            gate, target = "", ""
        else:
            gate = "passed" if r["gate_passed"] else "**failed**: " + "; ".join(r["failed"])
            target = "baseline" if i == 0 else "**meets**" if v["meets_target"] else "misses"
        lines.append(
            f"| {r['model']} | {r['stem']} | {r['macs'] / 1e6:.1f} M | {r['gzip_bytes'] / 1024:.0f} | {r['p50_ms']['1t']:.3f} | "
            f"{r['p50_ms']['2t']:.3f} | {speed} | {_metric(r.get('macro_f1'))} | {_metric(r.get('abnormal_auc'))} | "
            f"{_metric(r.get('external_called_normal'))} | {gate} | {target} |"
        )
    made = [r for r in results["models"][1:] if r.get("trained")]
    if made:
        lines += ["", "How each trained model was made (its card):", ""]
        lines += [f"- {r['model']}: {r['architecture']}." + (f" {r['notes']}" if r.get("notes") else "") for r in made]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stems", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset root with a train split (int8 calibration films)")
    parser.add_argument("--out", type=Path, required=True, help="folder for stems.json and stems.md")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds, models taking turns (default 3)")
    parser.add_argument("--runs", type=int, default=200, help="timed runs per model, thread count and round (default 200)")
    parser.add_argument("--calibration", type=int, default=300, help="training films int8 is calibrated on")
    parser.add_argument(
        "--model", type=Path, action="append", default=[], metavar="TFLITE",
        help="a trained int8 model with its card (python -m converters / converters.filters), timed beside the others (repeatable)",
    )
    args = parser.parse_args(argv)
    from converters.quantize import representative_images
    from training.data import DatasetError
    from training.multiroot import load_roots

    baseline = load_model(BASELINE)
    try:
        trained = [load_model(str(path)) for path in args.model]
        train = load_roots([args.data], baseline.card.preprocessing.to_dict(), splits=("train",)).splits["train"]
    except (DatasetError, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    calibration = representative_images(train.x, args.calibration)
    with tempfile.TemporaryDirectory() as tmp:
        untrained = [stem_model(kind, baseline.card, calibration, Path(tmp)) for kind in RESNET_STEMS]
        paths = [baseline.path, *untrained, *(m.path for m in trained)]
        load_before = [round(v, 2) for v in os.getloadavg()]
        timed = latencies(paths, args.rounds, args.runs)
        load_after = [round(v, 2) for v in os.getloadavg()]
        rows = [trained_row(baseline, timed[0], "bundled"), *(
            {"model": f"untrained, stem {kind}", "stem": kind, "trained": False, "macs": macs(path), "size_bytes": path.stat().st_size,
             "gzip_bytes": gzip_size(path.read_bytes()), "p50_ms": t}
            for kind, path, t in zip(RESNET_STEMS, untrained, timed[1:])
        ), *(trained_row(m, t, "trained") for m, t in zip(trained, timed[1 + len(untrained):]))]
    for r in rows:
        r["verdict"] = verdict(r, rows[0])
    results = {
        "provenance": record(invocation("python -m benchmarks.stems", argv), [baseline.path, *(m.path for m in trained)]),
        "machine": platform_info(), "target": {"min_speedup": TARGET_SPEEDUP, "threads": list(THREADS), "gate": "passed (card)"},
        "load_before": load_before, "load_after": load_after, "rounds": args.rounds, "runs": args.runs, "models": rows,
    }
    write_report(args.out, results, markdown, "stems")
    return 0


if __name__ == "__main__":
    sys.exit(main())
