"""Is a filter-pruned int8 model worth shipping? Latency, MACs and accuracy against the plain int8 model, in one run.

    python -m benchmarks.filters --baseline resnet18-int8 --model DIR/resnet18-filter-pruned-int8.tflite [--model ...] \\
        --data ../shared/data/cxr3 --data ../shared/data/cxr3-plus --out benchmarks/results/pruning

Every model (the baseline first) is timed through :func:`edgecxr.evaluation.benchmark.measure_in_child`
(a fresh process each, synthetic input) at 1 and 2 threads with XNNPACK on, and at 1 thread
with it off for comparison; the models take turns over ``--rounds`` rounds and each setting's
p50 is the median of the rounds' p50s, so load from other jobs falls on all of them alike.
MACs are the card's (else counted, :func:`edgecxr.evaluation.macs.macs`), test macro-F1 the card's, and the
external measure is the generalization report's: the share of the ``external`` films called
Normal (:func:`benchmarks.generalization.measure_films`). A candidate passes when it is at
least :data:`MIN_SPEEDUP` times faster than the baseline at both thread counts with XNNPACK on
and its card records the release gate passed (``edgecxr/evaluation/targets.json`` ``gates``, measured by the
converter: its decisions as good as the family's reference's); the macro-F1 and external
differences to the baseline are reported beside it. Writes ``filters.json`` and ``filters.md`` to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks.generalization import EXTERNAL, films_of, measure_films
from edgecxr.core.card import ModelError
from edgecxr.core.model import Model, load_model
from edgecxr.core.registry import DEFAULT_MODEL
from edgecxr.evaluation.benchmark import measure_in_child, platform_info
from edgecxr.evaluation.macs import macs
from edgecxr.evaluation.provenance import invocation, record, repo_relative

MIN_SPEEDUP = 1.5
SETTINGS = ((1, True), (2, True), (1, False))  # (threads, XNNPACK)


def setting_name(threads: int, xnnpack: bool) -> str:
    return f"{threads}t_{'xnnpack' if xnnpack else 'builtin'}"


def latencies(models: list[Model], rounds: int, runs: int) -> list[dict[str, float]]:
    """Per model, {setting: median over ``rounds`` of the p50 ms of ``runs`` timed runs}; the models take turns."""
    p50s: list[dict[str, list[float]]] = [{} for _ in models]
    for _ in range(rounds):
        for i, model in enumerate(models):
            for threads, xnnpack in SETTINGS:
                result = measure_in_child(str(model.path), runs=runs, warmup=10, threads=threads, xnnpack=xnnpack)
                p50s[i].setdefault(setting_name(threads, xnnpack), []).append(result["p50_ms"])
    return [{k: round(statistics.median(v), 3) for k, v in m.items()} for m in p50s]


def external_called_normal(model: Model, roots: list[Path]) -> tuple[float, int]:
    """Share of the ``external`` films called Normal (the generalization report's measure) and how many films."""
    records = measure_films(model, films_of(roots, EXTERNAL, list(model.labels)), None)
    normal = model.labels.index("Normal")
    return round(sum(r["pred"] == normal for r in records) / len(records), 4), len(records)


def row(model: Model, latency: dict[str, float], roots: list[Path]) -> dict[str, Any]:
    external, n = external_called_normal(model, roots)
    return {
        "model": model.name, "version": model.card.version, "path": repo_relative(model.path), "sha256": model.card.sha256,
        "architecture": model.card.architecture, "macs": model.card.macs if model.card.macs is not None else macs(model.path),
        "size_bytes": model.card.size_bytes, "gzip_bytes": model.card.gzip_bytes,
        "test_macro_f1": model.card.test_metrics["macro_f1"], "external_called_normal": external, "external_n": n,
        "p50_ms": latency, "notes": model.card.notes,
        "gate": model.card.gate.name if model.card.gate and model.card.gate.passed else None,
    }


def verdict(candidate: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """Whether a filter-pruned model is worth shipping: fast enough, and its card's gate passed; with the differences to the baseline."""
    speedup = {k: round(baseline["p50_ms"][k] / v, 3) for k, v in candidate["p50_ms"].items()}
    on = [speedup[setting_name(t, x)] for t, x in SETTINGS if x]
    f1_drop = round(baseline["test_macro_f1"] - candidate["test_macro_f1"], 4)
    external_drop = round(baseline["external_called_normal"] - candidate["external_called_normal"], 4)
    return {
        "speedup": speedup, "macs_ratio": round(baseline["macs"] / candidate["macs"], 3),
        "macro_f1_drop": f1_drop, "external_drop": external_drop,
        "passes": min(on) >= MIN_SPEEDUP and candidate.get("gate") is not None,
    }


def markdown(results: dict[str, Any]) -> str:
    p, m = results["provenance"], results["machine"]
    rows = results["models"]
    lines = [
        "# Filter pruning: speed against the plain int8 model", "",
        f"Measured {p['utc_time']} with `{p['command']}` on {m['machine']}, {m['cpu']}, {m['cpus']} CPUs, {m['system']}, "
        f"{m['interpreter']} {m['interpreter_version']}; load average {results['load_before']} before, {results['load_after']} after "
        f"(other jobs shared the CPUs). p50 latency: median over {results['rounds']} rounds of the p50 of {results['runs']} runs, "
        "each model in its own process, synthetic input, models taking turns.", "",
        f"Rule: ship when >= {MIN_SPEEDUP}x faster than the plain int8 model at 1 and 2 threads with XNNPACK on and the card records "
        f"the release gate passed (edgecxr/evaluation/targets.json `gates`: decisions as good as the reference's; `{EXTERNAL}` reported, not gated).", "",
        "| model | MACs | p50 ms 1 thread | p50 ms 2 threads | p50 ms 1 thread, XNNPACK off | test macro-F1 | external called Normal | size / gzip KB | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        v = r.get("verdict")
        cells = {k: f"{ms:.3f}" + (f" ({v['speedup'][k]:.2f}x)" if v else "") for k, ms in r["p50_ms"].items()}
        verdict_text = "baseline" if v is None else ("**passes**" if v["passes"] else "fails") + (
            f": MACs / {v['macs_ratio']:.2f}, macro-F1 {-v['macro_f1_drop']:+.4f}, external {-v['external_drop']:+.4f}, "
            f"gate {r.get('gate') or 'not passed'}"
        )
        lines.append(
            f"| {r['model']} {r['version']} ({r['path']}) | {r['macs'] / 1e6:.1f} M | {cells['1t_xnnpack']} | {cells['2t_xnnpack']} | "
            f"{cells['1t_builtin']} | {r['test_macro_f1']:.4f} | {r['external_called_normal']:.3f} (n={r['external_n']}) | "
            f"{r['size_bytes'] / 1024:.0f} / {r['gzip_bytes'] / 1024:.0f} | {verdict_text} |"
        )
    lines += ["", "How each candidate was made (its card's notes):", ""]
    lines += [f"- `{r['path']}`: {r['architecture']}. {r['notes']}" for r in rows[1:]]
    notes = results.get("notes")
    if notes:
        lines += ["", "## Why", "", notes.strip()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.filters", description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=DEFAULT_MODEL, help=f"the plain int8 model: bundled name or .tflite path (default {DEFAULT_MODEL})")
    parser.add_argument("--model", action="append", required=True, help="filter-pruned candidate .tflite with its card (repeatable)")
    parser.add_argument("--data", type=Path, action="append", required=True, help="dataset root with an external/ split and manifest.csv (repeatable)")
    parser.add_argument("--out", type=Path, required=True, help="folder for filters.json and filters.md (a filters_notes.md there is included under Why)")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds, models taking turns (default 3)")
    parser.add_argument("--runs", type=int, default=200, help="timed runs per model, setting and round (default 200)")
    args = parser.parse_args(argv)
    try:
        models = [load_model(m) for m in (args.baseline, *args.model)]
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not any((root / EXTERNAL).is_dir() for root in args.data):
        print(f"error: none of {', '.join(map(str, args.data))} has an {EXTERNAL}/ split", file=sys.stderr)
        return 2
    load_before = [round(v, 2) for v in os.getloadavg()]
    timed = latencies(models, args.rounds, args.runs)
    load_after = [round(v, 2) for v in os.getloadavg()]
    rows = [row(m, t, args.data) for m, t in zip(models, timed)]
    for r in rows[1:]:
        r["verdict"] = verdict(r, rows[0])
    notes = args.out / "filters_notes.md"
    results = {
        "provenance": record(invocation("python -m benchmarks.filters", argv), [m.path for m in models]),
        "machine": platform_info(), "load_before": load_before, "load_after": load_after,
        "rounds": args.rounds, "runs": args.runs, "rule": {"min_speedup": MIN_SPEEDUP, "gate": "passed (card)"},
        "models": rows, "notes": notes.read_text() if notes.is_file() else None,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "filters.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "filters.md").write_text(markdown(results))
    for r in rows[1:]:
        print(f"{r['path']}: {'passes' if r['verdict']['passes'] else 'fails'} {r['verdict']}")
    print(f"wrote {args.out}/filters.json, filters.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
