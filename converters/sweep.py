"""Pruning sweep: ``python -m converters.sweep RUN --sparsity 0.3 --sparsity 0.5 ... --models DIR --out RESULTS``.

Converts the run's float32 (the reference) and plain int8 (the size reference), then a pruned
int8 variant per target sparsity, then prune-preserving QAT (``pqat-int8``) at the best sparsity
and plain QAT (``qat-int8``), each through the converter's own path (:func:`converters.build.convert_variant`:
fine-tune, convert, verify against float32). Per row: the sparsity in the Keras kernels and in the
int8 flatbuffer, file and gzip size, the release gate's quantities (:mod:`converters.gate`: agreement
with its own float model; test macro-F1, each class's sensitivity, abnormal AUC, ECE after temperature,
external films called Normal, against the reference) and whether it passed, agreement with the
reference (reported), and whether it may be bundled (passed, and a pruned variant's gzip size within
the gate's limit of the int8 model's, :func:`converters.build.shrinks_download`). ``RESULTS/sweep.json``
and ``sweep.md`` are rewritten after every row, and a rerun keeps the rows it already has (a
resumable sweep). ``--bundle`` copies the smallest pruned or PQAT variant that may be bundled into the package.
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
from converters.__main__ import add_external, add_fine_tuning, fine_tuning
from converters.build import ConvertConfig, bundled_variants, convert_variant, held_out_sources, passed, prepare, shrinks_download
from converters.bundling import bundle
from edgecxr.core.card import ModelCard
from edgecxr.core.cardparts import Verification
from edgecxr.evaluation.benchmark import platform_info
from edgecxr.evaluation.provenance import invocation, record
from edgecxr.evaluation.targets import gate
from training.data import DatasetError

COLUMNS = (
    "row", "target", "int8 sparsity", "gzip MB", "gzip / int8", "agreement own float", "macro-F1", "lowest sensitivity", "abnormal AUC",
    "ECE after T", "external called Normal", "agreement with reference", "gate", "bundle", "s",
)


def row(name: str, card: ModelCard, path: Path, int8: ModelCard | None, seconds: float) -> dict[str, Any]:
    """One sweep row from a converted variant's card and its ``.tflite`` at ``path`` (or ``path``'s ``rejected/`` twin)."""
    flat = (path if path.is_file() else path.parent / "rejected" / path.name).read_bytes()
    v, g = card.verification, card.gate
    assert isinstance(v, Verification) and g is not None
    p = card.pruning
    reached = g.values  # checked and reported (cards gated before list the external share among the checks)
    return {
        "row": name, "variant": card.variant,
        "target_sparsity": p.target_sparsity if p else None,
        "keras_sparsity": p.sparsity if p else None,
        "int8_sparsity": round(pruning.flatbuffer_sparsity(flat), 4),
        "size_bytes": len(flat), "gzip_bytes": card.gzip_bytes,
        "gzip_vs_int8": round(card.gzip_bytes / int8.gzip_bytes, 3) if int8 and card.gzip_bytes and int8.gzip_bytes else None,
        "macro_f1": round(card.test_metrics["macro_f1"], 4), "macro_f1_delta": v.deltas_to_float32.macro_f1,
        "sensitivity": {c.scope: c.reached for c in g.checks if c.key == "sensitivity"},
        "abnormal_auc": reached.get(("abnormal_auc", None)), "ece_after_temperature": reached.get(("ece_after_temperature", None)),
        "external_called_normal": reached.get(("external_called_normal", None)),
        "agreement_own_float": reached.get(("agreement_with_own_float", None)), "agreement_with_float32": v.agreement_with_float32,
        "agreement_with_reference": g.agreement_with_reference, "gate": g.passed,
        "gate_failed": [f"{c.name}{f' ({c.scope})' if c.scope else ''}" for c in g.failed],
        "bundle_rule": passed(card) and shrinks_download(card, int8) if int8 and p and p.target_sparsity else None,
        "pruning": p.to_dict() if p else None, "seconds": round(seconds),
    }


def markdown(results: dict[str, Any]) -> str:
    """The sweep as a Markdown table with its command and machine."""
    def cell(r: dict[str, Any]) -> list[str]:
        def pct(x: float | None) -> str:
            return "" if x is None else f"{100 * x:.1f}%"

        def num(x: float | None) -> str:
            return "–" if x is None else f"{x:.4f}"
        rule = {None: "", True: "yes", False: "no"}[r["bundle_rule"]]
        lowest = min(r["sensitivity"].items(), key=lambda kv: kv[1] if kv[1] is not None else -1.0) if r["sensitivity"] else None
        verdict = "pass" if r["gate"] else "fail: " + ", ".join(r["gate_failed"])
        return [
            r["row"], pct(r["target_sparsity"]), pct(r["int8_sparsity"]), f"{r['gzip_bytes'] / 1e6:.2f}",
            "" if r["gzip_vs_int8"] is None else f"{r['gzip_vs_int8']:.2f}", pct(r["agreement_own_float"]), f"{r['macro_f1']:.4f}",
            f"{lowest[1]:.4f} ({lowest[0]})" if lowest else "–", num(r["abnormal_auc"]), num(r["ece_after_temperature"]),
            num(r["external_called_normal"]), pct(r["agreement_with_reference"]), verdict, rule, str(r["seconds"]),
        ]
    p, m = results["provenance"], results["platform"]
    ref = results.get("reference") or {}
    lines = [
        f"# Pruning sweep: {results['run']}", "",
        f"`{p['command']}` — {p['utc_time']}, {m['cpu']} ({m['cpus']} CPUs, shared with other training jobs), git {(p['git'] or {}).get('commit', '?')[:7]}", "",
        f"Fine-tuning: {results['fine_tuning']}. Gate `{results['gate']}` (edgecxr/evaluation/targets.json `gates`): {'; '.join(results['rules'])}"
        f"{''.join(f'; {name} reported, not gated' for name in results.get('reported', []))}. "
        f"Reference: {ref.get('description', '?')}: {ref.get('quantities', {})}. Bundle: passed and (pruned) gzip <= "
        f"{results['max_gzip_vs_int8']}x int8. s: wall seconds of the row (fine-tune + convert + measure).", "",
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
        help="copy the smallest (gzip) pruned or PQAT variant that passed the release gate with a small enough download into the package (edgecxr/models/)",
    )
    parser.add_argument("--skip", action="append", default=[], choices=("pqat", "qat"), help="leave out pqat-int8 or qat-int8")
    add_fine_tuning(parser)
    add_external(parser)
    args = parser.parse_args(argv)
    if not (args.run / "best.keras").is_file() or not (args.run / "run.json").is_file():
        print(f"error: {args.run}: not a training run folder (needs best.keras and run.json)", file=sys.stderr)
        return 2
    if any(not 0 < s < 1 for s in args.sparsity) or (args.pqat_sparsity is not None and not 0 < args.pqat_sparsity < 1):
        parser.error("--sparsity and --pqat-sparsity must be between 0 and 1 (e.g. 0.5)")
    if args.bundle and held_out_sources(args.run):
        parser.error(f"{args.run}: held sources out of training ({', '.join(held_out_sources(args.run))}): an experiment, not bundled")
    cfg = ConvertConfig(args.run, args.models, external=tuple(args.external), **fine_tuning(args))
    try:
        conversion = prepare(cfg)
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "sweep.json"
    done = {r["row"]: r for r in json.loads(json_path.read_text())["rows"]} if json_path.is_file() else {}
    settings, spec = fine_tuning(args), gate()
    results: dict[str, Any] = {
        "provenance": record(invocation("python -m converters.sweep", argv)), "platform": platform_info(),
        "run": args.run.name, "fine_tuning": settings, "gate": spec.name, "rules": [rule.text() for rule in (*spec.quantization, *spec.decisions)],
        "reported": [quantity.name for quantity in spec.reported],
        "max_gzip_vs_int8": spec.pruned_max_gzip_vs_int8, "reference": None, "rows": [],
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
            reference = conversion.gating.reference
            if reference is not None:
                results["reference"] = {"description": reference.description, "quantities": reference.quantities}
        json_path.write_text(json.dumps(results, indent=2) + "\n")
        (args.out / "sweep.md").write_text(markdown(results))

    step("float32", "float32")
    step("int8", "int8")
    for s in args.sparsity:
        step(f"pruned-{round(100 * s)}", "pruned-int8", s)
    pruned = [r for r in results["rows"] if r["variant"] == "pruned-int8"]
    if "pqat" not in args.skip:
        best = args.pqat_sparsity or max(pruned, key=lambda r: (bool(r["bundle_rule"]), r["target_sparsity"]))["target_sparsity"]
        step(f"pqat-{round(100 * best)}", "pqat-int8", best)
    if "qat" not in args.skip:
        step("qat", "qat-int8")
    references: dict[str, ModelCard] = {name: cards[name] for name in ("float32", "int8") if name in cards}

    def qualifies(r: dict[str, Any]) -> bool:  # the rule python -m converters --bundle applies, row by row (rows share a variant)
        return r["row"] in cards and bundled_variants({**references, r["variant"]: cards[r["row"]]}) == [r["variant"]]

    passing = [r for r in results["rows"] if qualifies(r)]
    if args.bundle and passing:
        best = min(passing, key=lambda r: r["gzip_bytes"])
        bundle(args.models / best["row"] / f"{conversion.model.name}-{best['variant']}.tflite", f"{best['row']} of python -m converters.sweep on training run {args.run.name}")
    elif args.bundle:
        print("no pruned variant passed the gate with a small enough download: nothing bundled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
