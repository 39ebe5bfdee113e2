"""Do emulated ARM boards give the same answers as x86-64? Parity of every bundled model, and EMULATED timings.

    python -m benchmarks.arm.parity --board aarch64 BOARD TWIN [--board armv7l BOARD TWIN] \\
        [--data ../shared/data/cxr3/test] [--per-class 10] [--runs 3] [--out DIR]

BOARD and TWIN are ``edgecxr`` commands made by ``make_env.sh``: the board's install run under
qemu-user, and this checkout on x86-64 with the board's package versions. Every model whose card
is in ``edgecxr/models/`` predicts the same fixed images (``--per-class`` per class folder, evenly
spaced in name order) on the board, on its twin and on this machine's own Python. A board passes
when it lists the same bundled models (names and sha256) as the checkout and, for every model and
image, its label equals both x86-64 labels and its probabilities are within the tolerance of its
twin's, and of this machine's when both run the same interpreter build (see :func:`tolerance`).
Writes ``results.json`` and ``report.md`` to ``--out``; exits 1 naming every difference.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

from edgecxr.core.card import ModelCard, read_card
from edgecxr.core.inputs import find_images
from edgecxr.evaluation.provenance import invocation, record

REPO = Path(__file__).resolve().parents[2]
FLOAT_TOLERANCE = 1e-4
INT8_STEPS = 8
LOGIT_STEPS = 2
JSON_ROUNDING = 1e-6  # `predict --json` rounds probabilities to 6 decimals


def pick_images(data: Path, per_class: int) -> list[Path]:
    """``per_class`` images from each class folder of ``data``, evenly spaced in sorted name order."""
    picked = []
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        files = find_images(folder)
        picked += [files[i * len(files) // per_class] for i in range(min(per_class, len(files)))]
    return picked


def bundled_cards(repo: Path = REPO) -> dict[str, ModelCard]:
    """The model cards of the checkout's bundled classifiers, by model name (the lung model has no `predict`)."""
    from edgecxr.core.registry import LUNG_MODEL

    return {p.stem: read_card(p) for p in sorted((repo / "edgecxr" / "models").glob("*.tflite")) if p.stem != LUNG_MODEL}


def tolerance(card: ModelCard) -> float:
    """Largest allowed probability difference between two runs of the same interpreter build.

    Float outputs: 1e-4. x86 and NEON kernels sum float32 products in another order, which moves
    probabilities by ~1e-6; 1e-4 leaves room for that and is far below any difference that matters.
    Quantized outputs: x86 and ARM kernels may round an intermediate int8 activation one step
    apart, and the layers after it carry that on. A probability output: INT8_STEPS steps of it
    (measured up to 4 on a few images for the ResNet, none for the MLP). A logits output (what
    the converter exports now): LOGIT_STEPS steps of every logit, as probabilities after the
    card's temperature T: k steps of size s move a softmax probability by at most k * s / (2 T)
    (0.051 for the ResNet, 0.061 for the MLP). Measured for release 1.2.0: at most 0.0127 vs the
    twin (armv7l ResNet, what one step of one logit does near p = 0.5), 0.0001 on aarch64.
    Labels must match exactly whatever the tolerance.
    """
    step = output_step(card)
    if not step:
        return FLOAT_TOLERANCE
    if card.output_kind == "logits":
        temperature = card.temperature.value if card.temperature else 1.0
        return LOGIT_STEPS * step / (2 * temperature) + JSON_ROUNDING
    return INT8_STEPS * step + JSON_ROUNDING


def output_step(card: ModelCard) -> float | None:
    """The output's quantization step, in probabilities or logits as the card's ``output_kind`` says (None for a float output)."""
    quantization = card.output.quantization if card.output else None
    return quantization.scale if quantization else None


def compare(reference: list[dict], answers: list[dict], tol: float | None) -> dict:
    """Compare two ``predict --json`` outputs image by image.

    Returns ``n``, ``labels_equal``, ``max_abs_diff``, ``images_differing`` (any probability
    off by more than the JSON rounding) and ``problems`` (one line per difference):
    a missing or failed image, a different label, or (unless ``tol`` is None) a probability
    further than ``tol`` from the reference's.
    """
    by_file = {a.get("file"): a for a in answers}
    problems, labels_equal, differing, max_diff = [], 0, 0, 0.0
    for ref in reference:
        name = Path(ref["file"]).name
        got = by_file.get(ref["file"])
        if got is None or "error" in got:
            problems.append(f"{name}: {got['error'] if got else 'no answer'}")
            continue
        if got["label"] == ref["label"]:
            labels_equal += 1
        else:
            problems.append(f"{name}: label {got['label']} != {ref['label']}")
        probs = got["probabilities"]
        diff = max(abs(probs[k] - p) if k in probs else float("inf") for k, p in ref["probabilities"].items())
        max_diff = max(max_diff, diff)
        differing += diff > JSON_ROUNDING
        if tol is not None and diff > tol:
            problems.append(f"{name}: probabilities differ by {diff:.6f} > {tol:.6f}")
    return {"n": len(reference), "labels_equal": labels_equal, "max_abs_diff": round(max_diff, 6),
            "images_differing": differing, "problems": problems}


def run(cmd: list[str], *args: str) -> str:
    """Run an ``edgecxr`` command and return its stdout; RuntimeError with its stderr if it fails."""
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=REPO, env=_host_env())
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[-1]} {args[0]} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def benchmark(cmd: list[str], runs: int) -> dict:
    """``edgecxr benchmark --json`` of every bundled model, one thread, one warm-up run (without local paths)."""
    result = json.loads(run(cmd, "benchmark", "--json", "--runs", str(runs), "--warmup", "1", "--threads", "1"))
    for r in result["results"]:
        r.pop("path")
    return result


def predict(cmd: list[str], model: str, files: list[Path]) -> list[dict]:
    """``edgecxr predict --json`` of ``files`` with ``model``, one thread: one dict per image."""
    out = run(cmd, "predict", "--json", "--threads", "1", "--model", model, *map(str, files))
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _host_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def check_board(board: list[str], twin: list[str], host: list[str], host_platform: dict,
                files: list[Path], cards: dict[str, ModelCard], runs: int, host_answers: dict) -> dict:
    """Parity of one board against its twin and this machine; see the module docstring."""
    bench = benchmark(board, runs)
    platform = bench["platform"]
    same_build = (platform["interpreter"], platform["interpreter_version"]) == (host_platform["interpreter"], host_platform["interpreter_version"])
    listed = {m["name"]: m["sha256"] for m in json.loads(run(board, "models", "--json"))}
    problems = [] if listed == {n: c.sha256 for n, c in cards.items()} else [f"bundled models differ from the checkout's: {sorted(listed)}"]
    models = {}
    for model, card in cards.items():
        if model not in host_answers:
            host_answers[model] = predict(host, model, files)
        answers = predict(board, model, files)
        tol = tolerance(card)
        vs_twin = compare(predict(twin, model, files), answers, tol)
        vs_host = compare(host_answers[model], answers, tol if same_build else None)
        step = output_step(card)
        models[model] = {"tolerance": round(tol, 7), "output_step": step, "vs_twin": vs_twin, "vs_host": vs_host,
                         "host_tolerance_applied": same_build,
                         "problems": [f"vs x86-64 twin: {p}" for p in vs_twin.pop("problems")]
                         + [f"vs x86-64 host: {p}" for p in vs_host.pop("problems")]}
    return {"platform": platform, "models": models, "benchmark": bench["results"], "problems": problems}


def report(results: dict) -> str:
    """The markdown summary committed beside results.json."""
    host = results["host"]["platform"]
    lines = [
        "# edgecxr on ARM: parity with x86-64, and EMULATED timings", "",
        f"{results['date']}, `bash benchmarks/arm/check.sh`. Boards are Debian bookworm userlands run by **qemu-user on "
        f"x86-64** ({host['cpu']}); x86-64 reference: Python {host['python']}, {host['interpreter']} {host['interpreter_version']}. "
        f"{len(results['files'])} test images ({results['per_class']} per class of `{results['data']}`) per model.", "",
        "## Parity", "",
        "*twin*: this checkout on x86-64 with the board's package versions; *host*: this machine's own environment. "
        "*images ≠*: images with any probability further apart than the JSON rounding (1e-6). Labels must be equal to "
        "both; probabilities within the tolerance of the twin's, and of the host's when it runs the same interpreter build: "
        "1e-4 for float32; for int8, 2 quantization steps of every logit as a probability (`tolerance()` in `benchmarks/arm/parity.py` says why).", "",
        "| board | interpreter | model | labels = twin | images ≠ twin | max \\|Δp\\| vs twin | labels = host | images ≠ host | max \\|Δp\\| vs host | tolerance |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for board, r in results["boards"].items():
        p = r["platform"]
        for model, m in r["models"].items():
            t, h = m["vs_twin"], m["vs_host"]
            lines.append(f"| {board} | {p['interpreter']} {p['interpreter_version']} | {model} | {t['labels_equal']}/{t['n']} | "
                         f"{t['images_differing']} | {t['max_abs_diff']:.6f} | {h['labels_equal']}/{h['n']} | {h['images_differing']} | "
                         f"{h['max_abs_diff']:.6f} | {m['tolerance']:.6f}{'' if m['host_tolerance_applied'] else ' (twin only)'} |")
    failures = [f"{b}: {p}" for b, r in results["boards"].items() for p in r["problems"]]
    failures += [f"{b} {m}: {p}" for b, r in results["boards"].items() for m, x in r["models"].items() for p in x["problems"]]
    lines += ["", "Result: " + ("**passed**" if results["passed"] else "**FAILED**: " + "; ".join(failures)), "",
        "## Latency — EMULATED, not board timings", "",
        f"`edgecxr benchmark --runs {results['runs']} --warmup 1 --threads 1`, synthetic input. The ARM columns are "
        "qemu-user translating ARM code on this x86-64 machine: they say nothing about a Raspberry Pi's speed, "
        "only that the command runs. Peak RSS on ARM includes qemu's own memory.", "",
        "| model | dtype | x86-64 host p50 ms | " + " | ".join(f"{b} EMULATED p50 ms | {b} EMULATED peak RSS MB" for b in results["boards"]) + " |",
        "|---|---|---|" + "---|---|" * len(results["boards"]),
    ]
    for h in results["host"]["benchmark"]:
        cells = []
        for r in results["boards"].values():
            b = next(x for x in r["benchmark"] if x["model"] == h["model"])
            cells.append(f"{b['p50_ms']:.1f} | {b['peak_rss_mb']:.0f}")
        lines.append(f"| {h['model']} | {h['dtype']} | {h['p50_ms']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.arm.parity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--board", nargs=3, action="append", required=True, metavar=("NAME", "BOARD", "TWIN"),
                        help="a board's name and its two edgecxr launchers from make_env.sh (repeatable)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cxr3" / "test")
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3, help="timed benchmark runs per model (emulation is slow)")
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json and report.md")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        parser.error(f"{args.data}: not a folder")
    files, cards = pick_images(args.data, args.per_class), bundled_cards()
    host = [sys.executable, "-m", "edgecxr"]
    host_bench = benchmark(host, args.runs)
    host_answers: dict[str, list] = {}
    boards = {}
    for name, board, twin in args.board:
        print(f"[{name}] predicting {len(files)} images with {len(cards)} models (emulated: a few minutes)", file=sys.stderr)
        try:
            boards[name] = check_board([board], [twin], host, host_bench["platform"], files, cards, args.runs, host_answers)
        except RuntimeError as exc:
            print(f"error: [{name}] {exc}", file=sys.stderr)
            return 1
    results = {
        "date": datetime.date.today().isoformat(),
        "provenance": record(invocation("python -m benchmarks.arm.parity", argv),
                             models=[REPO / "edgecxr" / "models" / f"{name}.tflite" for name in cards]),
        "data": os.path.relpath(args.data, REPO), "per_class": args.per_class, "runs": args.runs,
        "files": [str(f.relative_to(args.data)) for f in files],
        "host": {"platform": host_bench["platform"], "benchmark": host_bench["results"]},
        "boards": boards,
        "passed": not any(b["problems"] or any(m["problems"] for m in b["models"].values()) for b in boards.values()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "report.md").write_text(report(results))
    passed = failed = 0
    for name, b in boards.items():
        for p in b["problems"]:
            print(f"error: [{name}] {p}", file=sys.stderr)
        failed += len(b["problems"])
        for model, m in b["models"].items():
            print(f"[{name}] {model}: max |dp| {m['vs_twin']['max_abs_diff']:.6f} vs twin, {m['vs_host']['max_abs_diff']:.6f} vs host "
                  f"(tolerance {m['tolerance']:.6f}); labels {m['vs_host']['labels_equal']}/{m['vs_host']['n']} equal", file=sys.stderr)
            for p in m["problems"]:
                print(f"error: [{name}] {model} {p}", file=sys.stderr)
            passed, failed = passed + (not m["problems"]), failed + bool(m["problems"])
    print(f"wrote {args.out}/results.json and report.md", file=sys.stderr, flush=True)
    print(f"parity: {passed} passed, {failed} failed")  # one check per board and model
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
