"""Operating-point report: a site profile calibrated on one split, measured on the held-out test split and an external hospital.

    python -m benchmarks.operating_point [--model NAME] --data ../shared/data/cxr3 \\
        --external ../shared/data/cxr3-plus --target-sensitivity 0.90 --out benchmarks/results/operating_point

Runs ``edgecxr calibrate``'s code (:func:`edgecxr.evaluation.calibrate.calibrate`) on ``DATA/val`` for the
abnormality score (every non-Normal film a positive) and writes the profile with its ROC plot and
threshold table into the output folder (``site.json``, ``site.roc.png``, ``site.abnormal.csv``).
Then it loads the model with that profile, as a site would, and measures the operating point on
``DATA/test`` and on ``EXTERNAL/external`` (a hospital no film of the other splits comes from:
reported only, never calibrated or selected on) with :func:`edgecxr.evaluation.evaluate.evaluate`, per
source from each root's ``manifest.csv``. Writes ``operating_point.json`` and ``report.md``
(machine, git commit, command; a ``notes.md`` in the folder is included under "Why").
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edgecxr.core.card import ModelError
from edgecxr.core.model import load_model
from edgecxr.core.site import ABNORMAL
from edgecxr.evaluation.benchmark import platform_info
from edgecxr.evaluation.calibrate import calibrate, write_report
from edgecxr.evaluation.evaluate import evaluate
from edgecxr.evaluation.manifest import ManifestError, read_manifest
from edgecxr.evaluation.provenance import invocation, record, repo_relative

EXTERNAL = "external"


def measured(report: dict[str, Any], split: str, root: Path) -> dict[str, Any]:
    """The abnormal operating point of an ``evaluate`` report of a model with the profile, with what the report needs."""
    point = next(p for p in report["site"]["operating_points"] if p["for"] == ABNORMAL)
    return {"split": split, "root": repo_relative(root), "n": report["n"], "errors": len(report["errors"]), "abnormal_auc": report["abnormal_auc"], **point}


def inside(value: float | None, interval: dict[str, Any]) -> bool | None:
    """Whether ``value`` lies in ``interval`` ({"value", "low", "high"}); None when either is undefined."""
    if value is None or interval["low"] is None:
        return None
    return bool(interval["low"] <= value <= interval["high"])


def comparisons(calibration: dict[str, Any], splits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each measured split: its sensitivity and specificity, and whether each lies in the calibration sample's interval."""
    out = []
    for s in splits:
        for metric in ("sensitivity", "specificity"):
            value = s[metric]["value"]
            out.append({"split": s["split"], "metric": metric, "value": value, "calibration": calibration[metric], "inside": inside(value, calibration[metric])})
    return out


def case_mix(calibration: dict[str, Any], test: dict[str, Any]) -> dict[str, Any]:
    """Positive films per source in the calibration sample and in the test split, and the sources only one of them has."""
    def positives(point: dict[str, Any]) -> dict[str, int]:
        return {s: r["n_positive"] for s, r in point.get("per_source", {}).items() if r["n_positive"]}

    cal, tst = positives(calibration), positives(test)
    return {"calibration": cal, "test": tst, "only_calibration": sorted(set(cal) - set(tst)), "only_test": sorted(set(tst) - set(cal))}


def _ci(m: dict[str, Any], percent: bool = False) -> str:
    if m["value"] is None:
        return "–"
    k, d = (100.0, 1) if percent else (1.0, 3)
    return f"{k * m['value']:.{d}f} ({k * m['low']:.{d}f}–{k * m['high']:.{d}f})"


def markdown(results: dict[str, Any], notes: str | None) -> str:
    prov, plat, cal = results["provenance"], results["platform"], results["calibration"]
    git = prov["git"] or {}
    splits = [cal, *results["measured"]]
    lines = [
        "# Operating point: calibrated on one split, measured on others", "",
        f"Measured {prov['utc_time']} on {plat['machine']} {plat['cpu']} ({plat['cpus']} cpus), git commit "
        f"`{git.get('commit', 'unknown')}`{' (dirty tree)' if git.get('dirty') else ''}, with `{prov['command']}`.", "",
        f"Model `{results['model']['name']}` {results['model']['version']} (sha256 `{results['model']['sha256'][:12]}…`). "
        f"Profile: `{cal['root']}` ({', '.join(f'{n} {l}' for l, n in results['sample']['counts'].items())}), target sensitivity "
        f"{cal['target_sensitivity']:g} for **abnormal** (score 1 − p(Normal), every non-Normal film a positive); temperature "
        f"{results['temperature']['card']:.4f} (card) → {results['temperature']['value']:.4f} (refitted). "
        f"Threshold **{cal['threshold']:.4f}**. Files: [site.json](site.json), [site.roc.png](site.roc.png), [site.abnormal.csv](site.abnormal.csv).", "",
        "Intervals: 95% stratified bootstrap at the fixed threshold (seeded); they say how sure each sample makes its own number, "
        "not how much the films of another sample may differ. PPV and NPV are at each sample's own share of positives.", "",
        "| split | films (positive / negative) | AUC | sensitivity | specificity | PPV | NPV | % flagged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in splits:
        area = f"{s['abnormal_auc']:.3f}" if s.get("abnormal_auc") is not None else "–"
        lines.append(
            f"| {s['split']} (`{s['root']}`) | {s['n_positive']} / {s['n_negative']} | {area} | {_ci(s['sensitivity'])} | "
            f"{_ci(s['specificity'])} | {_ci(s['ppv'])} | {_ci(s['npv'])} | {_ci(s['flagged'], percent=True)} |"
        )
    lines += ["", "## Against the calibration sample's intervals", "", "| split | metric | reached | calibration interval | inside |", "|---|---|---|---|---|"]
    for c in results["comparisons"]:
        if c["value"] is not None:
            verdict = {True: "yes", False: "**no**", None: "–"}[c["inside"]]
            lines.append(f"| {c['split']} | {c['metric']} | {c['value']:.3f} | {_ci(c['calibration'])} | {verdict} |")
    mix = results["case_mix"]
    lines += [
        "", "## Per source at the threshold", "",
        "| split | source | positive / negative | sensitivity | specificity |", "|---|---|---|---|---|",
    ]
    for s in splits:
        for source, r in s.get("per_source", {}).items():
            lines.append(f"| {s['split']} | {source} | {r['n_positive']} / {r['n_negative']} | {_ci(r['sensitivity'])} | {_ci(r['specificity'])} |")
    lines += [
        "", "## Case mix", "",
        f"Positive films per source, calibration: {', '.join(f'{k} {v}' for k, v in mix['calibration'].items())}; "
        f"test: {', '.join(f'{k} {v}' for k, v in mix['test'].items())}. Only in the calibration sample: "
        f"{', '.join(mix['only_calibration']) or 'none'}; only in test: {', '.join(mix['only_test']) or 'none'}.",
    ]
    if results["warnings"]:
        lines += ["", "## Warnings", "", *[f"- {w}" for w in results["warnings"]]]
    if notes:
        lines += ["", "## Why", "", notes.strip()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.operating_point", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="bundled model name or .tflite path (default: the bundled default)")
    parser.add_argument("--data", type=Path, required=True, help="dataset root with val/ and test/ class folders and manifest.csv (calibrated on val)")
    parser.add_argument("--external", type=Path, help="dataset root with an external/ split and manifest.csv (measured only)")
    parser.add_argument("--target-sensitivity", type=float, default=0.90)
    parser.add_argument("--out", type=Path, required=True, help="folder for site.json (+ .roc.png, .abnormal.csv), operating_point.json, report.md")
    args = parser.parse_args(argv)
    roots = [(args.data, "val"), (args.data, "test")] + ([(args.external, EXTERNAL)] if args.external else [])
    try:
        model = load_model(args.model)
        manifests = {root: read_manifest(root / "manifest.csv", required=("source",)) for root, _ in roots}
        provenance = record(invocation("python -m benchmarks.operating_point", argv), [model.path])  # before anything is written
        args.out.mkdir(parents=True, exist_ok=True)
        result = calibrate(model, args.data / "val", args.target_sensitivity, [ABNORMAL], manifests[args.data])
    except (ModelError, ManifestError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    files = write_report(result, args.out / "site.json")
    sited = load_model(args.model, site=files["profile"])  # as a site runs it
    point = result.profile["operating_points"][0]
    calibration = {"split": "val (calibration)", "root": repo_relative(args.data / "val"), "n": sum(result.profile["sample"]["counts"].values()),
                   "errors": len(result.errors), "abnormal_auc": point["auc"], **{k: v for k, v in point.items() if k != "roc"}}
    splits = [measured(evaluate(sited, root / split, manifest=manifests[root]), split, root / split) for root, split in roots[1:]]
    results = {
        "provenance": provenance,
        "platform": platform_info(),
        "model": result.profile["model"], "sample": result.profile["sample"], "temperature": result.profile["temperature"],
        "calibration": calibration, "measured": splits, "comparisons": comparisons(calibration, splits),
        "case_mix": case_mix(calibration, splits[0]), "warnings": result.warnings,
    }
    notes = args.out / "notes.md"
    (args.out / "operating_point.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "report.md").write_text(markdown(results, notes.read_text() if notes.is_file() else None))
    print(f"wrote {', '.join(str(p) for p in files.values())}, {args.out}/operating_point.json, {args.out}/report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
