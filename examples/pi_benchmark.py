"""Benchmark the bundled models on this board and compare with the committed x86-64 numbers.

Runs ``edgecxr benchmark --json`` (every bundled model, each in its own process) and prints, per
model, the median latency here beside the x86-64 median at the same thread count (XNNPACK on) from
``benchmarks/results/x86_64-2cpu/results.json``, and the int8 / float32 ratio on both machines:
the ratio carries over between machines better than absolute times do.

    python examples/pi_benchmark.py [--threads 4] [--runs 50] [--compare results.json] [--model M]...
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from edgecxr.core.card import read_card

DEFAULT_COMPARE = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "x86_64-2cpu" / "results.json"


def measure(threads: int, runs: int, models: list[str]) -> dict:
    """``edgecxr benchmark --json``, each result with its model's ``family`` and ``variant`` from the card."""
    cmd = [sys.executable, "-m", "edgecxr", "benchmark", "--json", "--threads", str(threads), "--runs", str(runs)]
    for m in models:
        cmd += ["--model", m]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: edgecxr benchmark failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    report = json.loads(done.stdout)
    for row in report["results"]:
        card = read_card(row["path"])
        row.update(family=card.family, variant=card.variant)
    return report


def reference_rows(path: Path, threads: int) -> list[dict]:
    """The latency rows (model, family, variant, p50_ms) of a matrix results.json at ``threads`` with XNNPACK on; [] if there is none."""
    if not path.is_file():
        return []
    return [r for r in json.loads(path.read_text()).get("latency", []) if r["threads"] == threads and r["xnnpack"]]


def int8_ratios(rows: list[dict]) -> dict[str, float]:
    """{family: int8 p50 / float32 p50} for each family with both variants among ``rows``."""
    p50 = {(r["family"], r["variant"]): r["p50_ms"] for r in rows}
    return {family: p50[family, "int8"] / p50[family, "float32"] for family, variant in p50 if variant == "int8" and (family, "float32") in p50}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=4, help="interpreter threads (a Pi 4/5 has 4 cores)")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--compare", type=Path, default=DEFAULT_COMPARE, help="a results.json of benchmarks.matrix to compare with")
    parser.add_argument("--model", action="append", default=[], help="model to measure (default: every bundled model)")
    args = parser.parse_args(argv)
    report = measure(args.threads, args.runs, args.model)
    here = {r["model"]: r["p50_ms"] for r in report["results"]}
    reference = reference_rows(args.compare, args.threads)
    there = {r["model"]: r["p50_ms"] for r in reference}
    platform = report["platform"]
    print(f"this board: {platform['machine']} {platform['cpu']}, {args.threads} threads; reference: {args.compare.name if there else 'none'}")
    for model, p50 in here.items():
        ref = f"{there[model]:8.2f} ms" if model in there else "       –   "
        rss = next(r["peak_rss_mb"] for r in report["results"] if r["model"] == model)
        print(f"{model:<22} p50 {p50:8.2f} ms   x86-64 {ref}   peak RSS {rss:.0f} MB")
    for family, ratio in int8_ratios(report["results"]).items():
        ref_ratio = int8_ratios(reference).get(family)
        print(f"{family}: int8 / float32 p50 = {ratio:.2f} here" + (f", {ref_ratio:.2f} on x86-64" if ref_ratio else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
