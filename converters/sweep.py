"""Pruning sweep: ``python -m converters.sweep RUN --sparsity 0.3 --sparsity 0.5 ... --models DIR --out RESULTS``.

Converts the run's float32 (the reference) and plain int8 (the size reference), then a pruned
int8 variant per target sparsity, then prune-preserving QAT (``pqat-int8``) at the best sparsity
and plain QAT (``qat-int8``), each through the converter's own path (:func:`converters.build.convert_variant`:
fine-tune, convert, verify against float32). Per row: the sparsity in the Keras kernels and in the
int8 flatbuffer, file and gzip size, test macro-F1, agreement, the gates and the bundling rule
(:func:`converters.build.meets_bundling_rule`). ``RESULTS/sweep.json`` and ``sweep.md`` are rewritten
after every row, and a rerun keeps the rows it already has (a resumable sweep). ``--bundle`` copies
the smallest pruned or PQAT variant meeting the rule into the package.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from converters import prune as pruning
from converters.__main__ import add_fine_tuning, fine_tuning
from converters.build import ConvertConfig, bundle, bundled_variants, convert_variant, held_out_sources, meets_bundling_rule, prepare
from edgecxr.core.card import ModelCard
from edgecxr.core.cardparts import Verification
from edgecxr.core.families import VARIANTS
from edgecxr.evaluation.benchmark import platform_info
from edgecxr.evaluation.provenance import invocation, record
from training.data import DatasetError

COLUMNS = ("row", "target", "keras sparsity", "int8 sparsity", "MB", "gzip MB", "gzip / int8", "macro-F1", "agreement", "gates", "bundle rule", "s")


def row(name: str, card: ModelCard, path: Path, int8: ModelCard | None, seconds: float) -> dict[str, Any]:
    """One sweep row from a converted variant's card and its ``.tflite`` at ``path`` (or ``path``'s ``rejected/`` twin)."""
    flat = (path if path.is_file() else path.parent / "rejected" / path.name).read_bytes()
    v = card.verification
    assert isinstance(v, Verification)
    p = card.pruning
    return {
        "row": name, "variant": card.variant,
        "target_sparsity": p.target_sparsity if p else None,
        "keras_sparsity": p.sparsity if p else None,
        "int8_sparsity": round(pruning.flatbuffer_sparsity(flat), 4),
        "size_bytes": len(flat), "gzip_bytes": card.gzip_bytes,
        "gzip_vs_int8": round(card.gzip_bytes / int8.gzip_bytes, 3) if int8 and card.gzip_bytes and int8.gzip_bytes else None,
        "macro_f1": round(card.test_metrics["macro_f1"], 4), "macro_f1_delta": v.deltas_to_float32.macro_f1,
        "agreement": v.agreement_with_float32, "gates": v.passed,
        "bundle_rule": meets_bundling_rule(card, int8) if int8 and p else None,
        "pruning": p.to_dict() if p else None, "seconds": round(seconds),
    }


def markdown(results: dict[str, Any]) -> str:
    """The sweep as a Markdown table with its command and machine."""
    def cell(r: dict[str, Any]) -> list[str]:
        def pct(x: float | None) -> str:
            return "" if x is None else f"{100 * x:.1f}%"
        rule = {None: "", True: "pass", False: "fail"}[r["bundle_rule"]]
        return [
            r["row"], pct(r["target_sparsity"]), pct(r["keras_sparsity"]), pct(r["int8_sparsity"]), f"{r['size_bytes'] / 1e6:.2f}",
            f"{r['gzip_bytes'] / 1e6:.2f}", "" if r["gzip_vs_int8"] is None else f"{r['gzip_vs_int8']:.2f}", f"{r['macro_f1']:.4f}",
            f"{100 * r['agreement']:.1f}%", "pass" if r["gates"] else "fail", rule, str(r["seconds"]),
        ]
    p, m = results["provenance"], results["platform"]
    lines = [
        f"# Pruning sweep: {results['run']}", "",
        f"`{p['command']}` — {p['utc_time']}, {m['cpu']} ({m['cpus']} CPUs, shared with other training jobs), git {(p['git'] or {}).get('commit', '?')[:7]}", "",
        f"Fine-tuning: {results['fine_tuning']}. Gates: agreement >= 97%, macro-F1 drop <= 0.02; bundle rule: agreement >= 98%, "
        "macro-F1 within 0.01 of float32, gzip <= 0.6x int8. s: wall seconds of the row (fine-tune + convert + verify).", "",
        "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(cell(r)) + " |" for r in results["rows"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m converters.sweep",
        description="Prune a training run at several sparsities (then PQAT at the best one, and QAT), convert each to int8, "
        "verify against float32 and tabulate sparsity, size, macro-F1 and agreement.",
    )
    parser.add_argument("run", type=Path, help="training run folder (best.keras + run.json)")
    parser.add_argument("--sparsity", type=float, action="append", required=True, help="target sparsity, repeatable")
    parser.add_argument("--models", type=Path, required=True, help="folder for the converted .tflite files and cards")
    parser.add_argument("--out", type=Path, required=True, help="folder for sweep.json and sweep.md")
    parser.add_argument("--pqat-sparsity", type=float, help="sparsity for pqat-int8 (default: the best pruned row: bundle rule, then agreement)")
    parser.add_argument(
        "--bundle", action="store_true",
        help="copy the smallest (gzip) pruned or PQAT variant that meets the bundling rule into the package (edgecxr/models/)",
    )
    parser.add_argument("--skip", action="append", default=[], choices=("pqat", "qat"), help="leave out pqat-int8 or qat-int8")
    add_fine_tuning(parser)
    args = parser.parse_args(argv)
    if not (args.run / "best.keras").is_file() or not (args.run / "run.json").is_file():
        print(f"error: {args.run}: not a training run folder (needs best.keras and run.json)", file=sys.stderr)
        return 2
    if any(not 0 < s < 1 for s in args.sparsity) or (args.pqat_sparsity is not None and not 0 < args.pqat_sparsity < 1):
        parser.error("--sparsity and --pqat-sparsity must be between 0 and 1 (e.g. 0.5)")
    if args.bundle and held_out_sources(args.run):
        parser.error(f"{args.run}: held sources out of training ({', '.join(held_out_sources(args.run))}): an experiment, not bundled")
    cfg = ConvertConfig(args.run, args.models, **fine_tuning(args))
    try:
        conversion = prepare(cfg)
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "sweep.json"
    done = {r["row"]: r for r in json.loads(json_path.read_text())["rows"]} if json_path.is_file() else {}
    settings = fine_tuning(args)
    results: dict[str, Any] = {
        "provenance": record(invocation("python -m converters.sweep", argv)), "platform": platform_info(),
        "run": args.run.name, "fine_tuning": settings, "rows": [],
    }
    cards: dict[str, ModelCard] = {}

    def step(name: str, variant: str, sparsity: float = 0.0) -> None:
        if name in done and variant not in ("float32", "int8"):  # the references are converted again: later rows need them
            results["rows"].append(done[name])
        else:
            out = args.models / name
            started = time.monotonic()
            card = convert_variant(conversion, dataclasses.replace(cfg, out=out, sparsity=sparsity), variant)
            cards[name] = card
            results["rows"].append(row(name, card, out / f"{card.name}.tflite", cards.get("int8"), time.monotonic() - started))
        json_path.write_text(json.dumps(results, indent=2) + "\n")
        (args.out / "sweep.md").write_text(markdown(results))

    step("float32", "float32")
    step("int8", "int8")
    for s in args.sparsity:
        step(f"pruned-{round(100 * s)}", "pruned-int8", s)
    pruned = [r for r in results["rows"] if r["variant"] == "pruned-int8"]
    if "pqat" not in args.skip:
        best = args.pqat_sparsity or max(pruned, key=lambda r: (bool(r["bundle_rule"]), r["agreement"], r["target_sparsity"]))["target_sparsity"]
        step(f"pqat-{round(100 * best)}", "pqat-int8", best)
    if "qat" not in args.skip:
        step("qat", "qat-int8")
    references: dict[str, ModelCard] = {name: cards[name] for name in ("float32", "int8") if name in cards}

    def qualifies(r: dict[str, Any]) -> bool:  # the rule python -m converters --bundle applies, row by row (rows share a variant)
        return r["row"] in cards and VARIANTS[r["variant"]].pruned and bundled_variants({**references, r["variant"]: cards[r["row"]]}) == [r["variant"]]

    passing = [r for r in results["rows"] if qualifies(r)]
    if args.bundle and passing:
        best = min(passing, key=lambda r: r["gzip_bytes"])
        bundle(args.models / best["row"] / f"{conversion.model.name}-{best['variant']}.tflite", f"{best['row']} of python -m converters.sweep on training run {args.run.name}")
    elif args.bundle:
        print("no pruned variant meets the bundling rule: nothing bundled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
