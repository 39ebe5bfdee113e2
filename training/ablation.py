"""The de-confounding ablation: cumulative training rows, each measured the same way.

``python -m training.ablation run --out-root RUNS --data CXR3 --data CXR3_PLUS [--epochs 10]``
trains the cumulative rows of :data:`ROWS` one after another (a finished row is skipped, an
interrupted one continues with ``--resume``; ``--rows NAME...`` picks rows, including the
one-change :data:`VARIANTS`), measures each finished row and rewrites ``RUNS/ablation.json`` and
``RUNS/ablation.md``. ``python -m training.ablation report ...`` only measures and writes.

Every row is measured by :func:`measure` (Keras, the run's ``best.keras`` and, when the run
selected on the worst cell, also its ``best_loss.keras``) on the test splits of all roots with
:func:`edgecxr.evaluation.metrics.classification_report`: cxr3
test macro-F1 and COVID sensitivity, the combined test's recall per source x class, ``nih`` Normal
recall, and the share of the report-only ``external`` films (all Normal) called Normal and called
COVID. ``external`` is read by :func:`training.multiroot.load_report_split`, only here.

A row's measure is **kept** when, against the row it is compared with (the cumulative row before
it; a variant names its own), it helps on ``external`` or ``nih``
Normal (+0.02 / +0.05, about 5 and 2 films) without the other falling by as much, and does not hurt
in distribution (cxr3 test macro-F1 down by at most 0.01, COVID sensitivity by at most 0.02). One
seed per row: differences of a film or two are noise.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# (name, measure, python -m training flags, row it is compared with); cumulative rows, then variants.
ROWS: tuple[tuple[str, str, tuple[str, ...], str | None], ...] = (
    ("baseline", "today's recipe, cxr3 only, selection on val loss", (), None),
    ("plus_nih", "+ cxr3-plus nih Normals, selection on the worst val cell", ("--select", "worst"), "baseline"),
    ("balanced", "+ source x class balanced sampling (sqrt)", ("--select", "worst", "--balance", "sqrt"), "plus_nih"),
    ("scanner", "+ scanner-style augmentation", ("--select", "worst", "--balance", "sqrt", "--scanner-aug"), "balanced"),
    ("markers", "+ synthetic markers", ("--select", "worst", "--balance", "sqrt", "--scanner-aug", "--markers"), "scanner"),
    (
        "adversarial", "+ source-adversarial head (0.3)",
        ("--select", "worst", "--balance", "sqrt", "--scanner-aug", "--markers", "--adversarial", "0.3"), "markers",
    ),
)
# Variants run only when named with --rows: the measures after plus_nih without balanced sampling
# (which lost external films in the cumulative rows), each against the variant before it.
VARIANTS: tuple[tuple[str, str, tuple[str, ...], str | None], ...] = (
    ("nobal_scanner", "plus_nih + scanner-style augmentation (no balanced sampling)", ("--select", "worst", "--scanner-aug"), "plus_nih"),
    ("nobal_markers", "+ synthetic markers (no balanced sampling)", ("--select", "worst", "--scanner-aug", "--markers"), "nobal_scanner"),
    (
        "nobal_adversarial", "+ source-adversarial head (0.3) (no balanced sampling)",
        ("--select", "worst", "--scanner-aug", "--markers", "--adversarial", "0.3"), "nobal_markers",
    ),
)
VARIANTS += (("lungcrop", "plus_nih + lung-field crop (preprocessing crop: lungs)", ("--select", "worst", "--crop", "lungs"), "plus_nih"),)
ALL_ROWS = ROWS + VARIANTS
MIN_TEST_CELL = 30  # the target: every source x class with >= 30 test films >= 0.85
HELPS = {"external_normal": 0.02, "nih_normal": 0.05}
HURTS = {"cxr3_macro_f1": 0.01, "cxr3_covid_sensitivity": 0.02}


def row_command(name: str, roots: Sequence[str], out_root: Path, epochs: int, extra: Sequence[str] = ()) -> list[str]:
    """The ``python -m training`` arguments of one row (the baseline reads only the first root)."""
    flags = {n: f for n, _, f, _ in ALL_ROWS}[name]
    data = roots[:1] if name == "baseline" else roots
    args = [a for r in data for a in ("--data", str(r))]
    return [*args, "--out", str(out_root / name), "--epochs", str(epochs), "--patience", str(epochs), *flags, *extra]


def measure(run_dir: Path, roots: Sequence[str], cache: dict) -> dict:
    """One row's measurements of ``run_dir``'s selected checkpoint(s); see the module docstring."""
    import tf_keras as keras

    from edgecxr.evaluation.metrics import classification_report
    from training.selection import cell_names, cell_recalls

    info = json.loads((run_dir / "run.json").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    test, external = _eval_sets(roots, info["preprocessing"], info["labels"], cache)
    labels = info["labels"]
    select = info["config"].get("select", "loss")
    key = "val_worst_recall" if select == "worst" else "val_loss"
    values = history[key]
    epoch = int(np.argmax(values) if select == "worst" else np.argmin(values)) + 1
    cells_path = run_dir / "cells.json"
    val_cells = {c["epoch"]: c for c in json.loads(cells_path.read_text())} if cells_path.exists() else {}
    out = {
        "row": run_dir.name,
        "epochs": len(history["loss"]),
        "select": select,
        "selected_epoch": epoch,
        "selected_val_worst_cell": val_cells.get(epoch, {}).get("worst_cell"),
        "selected_val_worst_recall": val_cells.get(epoch, {}).get("recalls", {}).get(val_cells.get(epoch, {}).get("worst_cell")),
        "n_roots": len(info["dataset"].get("roots") or [info["dataset"]["root"]]),
    }
    if history.get("epoch_seconds"):
        out["seconds_per_epoch"] = round(float(np.mean(history["epoch_seconds"])), 1)
    checkpoints = {"selected": (run_dir / "best.keras", epoch)}
    if (run_dir / "best_loss.keras").exists():
        checkpoints["by_val_loss"] = (run_dir / "best_loss.keras", int(np.argmin(history["val_loss"])) + 1)
    for name, (path, at) in checkpoints.items():
        model = keras.models.load_model(path)
        pred = {k: np.argmax(model.predict(s.x, batch_size=64, verbose=0), axis=1) for k, s in (("test", test), ("external", external))}
        combined = classification_report(test.y, pred["test"], labels, test.sources)
        cxr3 = test.in_first
        cxr3_report = classification_report(test.y[cxr3], pred["test"][cxr3], labels)
        cells = cell_names(test.y, test.sources, labels)
        recalls = cell_recalls(test.y, pred["test"], cells, min_n=1)
        big = cell_recalls(test.y, pred["test"], cells, min_n=MIN_TEST_CELL)
        worst = min(big, key=lambda cell: big[cell])
        ext_pred = np.asarray(pred["external"])
        out[name] = {
            "checkpoint": path.name,
            "epoch": at,
            "cxr3_macro_f1": cxr3_report["macro_f1"],
            "cxr3_accuracy": cxr3_report["accuracy"],
            "cxr3_covid_sensitivity": cxr3_report["per_class"]["COVID"]["recall"],
            "test_macro_f1": combined["macro_f1"],
            "test_covid_sensitivity": combined["per_class"]["COVID"]["recall"],
            "nih_normal": recalls.get("nih/Normal"),
            "external_normal": round(float(np.mean(ext_pred == labels.index("Normal"))), 4),
            "external_covid": round(float(np.mean(ext_pred == labels.index("COVID"))), 4),
            "external_n": int(len(ext_pred)),
            "worst_test_cell": worst,
            "worst_test_cell_recall": big[worst],
            "test_cell_recall": recalls,
            "test_cell_n": {k: int(v) for k, v in zip(*np.unique(cells, return_counts=True))},
        }
    return out


class _TestSet:
    def __init__(self, x, y, sources, in_first):
        self.x, self.y, self.sources, self.in_first = x, y, sources, in_first


def _eval_sets(roots: Sequence[str], spec: dict, labels: list[str], cache: dict):
    """The test splits of all roots (one set) and the report-only external split, decoded once per spec."""
    from training.multiroot import load_report_split, load_roots

    key = json.dumps(spec, sort_keys=True)
    if key not in cache:
        data = load_roots(roots, spec, verbose=False, splits=("test",))
        if data.labels != labels:
            raise SystemExit(f"error: {roots[0]}: labels {data.labels} differ from the run's {labels}")
        split = data.splits["test"]
        in_first = files_under(split.files, roots[0])
        external = load_report_split(roots[-1], "external", labels, spec)
        cache[key] = (_TestSet(split.x, split.y, split.sources, in_first), external)
    return cache[key]


def files_under(files: Sequence[str], root: str | Path) -> np.ndarray:
    """Which ``files`` lie inside ``root`` (``cxr3-plus/x.png`` is not inside ``cxr3``)."""
    root = Path(root)
    return np.array([root in Path(f).parents for f in files], dtype=bool)


def kept(row: dict, previous: dict | None, checkpoint: str = "selected") -> str:
    """``kept`` / ``not kept`` with the reason, against the previous row (its ``checkpoint``, else the selected one)."""
    if previous is None:
        return "reference"
    a, b = previous.get(checkpoint, previous["selected"]), row.get(checkpoint, row["selected"])
    delta = {k: (b[k] or 0.0) - (a[k] or 0.0) for k in (*HELPS, *HURTS)}
    helps = any(delta[k] >= t for k, t in HELPS.items()) and all(delta[k] > -t for k, t in HELPS.items())
    hurts = [k for k, t in HURTS.items() if delta[k] < -t]
    text = ", ".join(f"{k} {delta[k]:+.3f}" for k in (*HELPS, *HURTS))
    if helps and not hurts:
        return f"kept ({text})"
    return f"not kept ({'hurts ' + ', '.join(hurts) if hurts else 'no clear gain on external/nih'}; {text})"


def write_tables(rows: list[dict], out_root: Path, schedule: str) -> None:
    """``ablation.json`` (one object per row) and ``ablation.md`` (the table)."""
    order = [n for n, _, _, _ in ALL_ROWS]
    rows = sorted(rows, key=lambda r: order.index(r["row"]))
    desc = {n: d for n, d, _, _ in ALL_ROWS}
    against = {n: a for n, _, _, a in ALL_ROWS}
    by_name = {r["row"]: r for r in rows}
    for row in rows:
        row["measure"] = desc[row["row"]]
        row["compared_with"] = against[row["row"]]
        ref = by_name.get(against[row["row"]])
        missing = against[row["row"]] is not None and ref is None
        row["verdict"] = "compared row missing" if missing else kept(row, ref)
        row["verdict_by_val_loss"] = "compared row missing" if missing else kept(row, ref, "by_val_loss")
    (out_root / "ablation.json").write_text(json.dumps({"schedule": schedule, "rows": rows}, indent=1) + "\n")
    head = (
        "| row | measure | selected epoch (criterion, val worst cell) | cxr3 test macro-F1 | cxr3 COVID sens. | cxr3+plus test macro-F1 "
        f"| worst test cell (≥{MIN_TEST_CELL}) | nih Normal test | external called Normal | external called COVID | s/epoch | verdict |"
    )
    lines = [f"Schedule: {schedule}.", "", head, "|" + "---|" * 12]
    for r in rows:
        s = r["selected"]
        cell = f"{r['selected_val_worst_cell']} {r['selected_val_worst_recall']:.3f}" if r.get("selected_val_worst_cell") else "-"
        lines.append(
            f"| {r['row']} | {r['measure']} | {r['selected_epoch']}/{r['epochs']} ({r['select']}, {cell}) | {s['cxr3_macro_f1']:.3f} "
            f"| {s['cxr3_covid_sensitivity']:.3f} | {s['test_macro_f1']:.3f} | {s['worst_test_cell']} {s['worst_test_cell_recall']:.3f} "
            f"| {_num(s['nih_normal'])} | {s['external_normal']:.3f} | {s['external_covid']:.3f} | {r.get('seconds_per_epoch', '-')} | {r['verdict']} |"
        )
    if any("by_val_loss" in r for r in rows):
        lines += ["", "The same runs' lowest-val-loss checkpoint (the baseline selects it anyway), with the verdict on these:", "",
                  "| row | epoch | cxr3 test macro-F1 | cxr3 COVID sens. | cxr3+plus test macro-F1 | worst test cell | nih Normal test "
                  "| external called Normal | external called COVID | verdict |", "|" + "---|" * 10]
        for r in rows:
            s = r.get("by_val_loss", r["selected"])
            lines.append(
                f"| {r['row']} | {s.get('epoch', r['selected_epoch'])}/{r['epochs']} | {s['cxr3_macro_f1']:.3f} | {s['cxr3_covid_sensitivity']:.3f} "
                f"| {s['test_macro_f1']:.3f} | {s['worst_test_cell']} {s['worst_test_cell_recall']:.3f} | {_num(s['nih_normal'])} "
                f"| {s['external_normal']:.3f} | {s['external_covid']:.3f} | {r['verdict_by_val_loss']} |"
            )
    cells = sorted({c for r in rows for c in r["selected"]["test_cell_recall"]})
    if rows:
        n = rows[-1]["selected"]["test_cell_n"]
        lines += ["", "Test recall per source x class (selected checkpoints; n films):", "",
                  "| cell | n | " + " | ".join(r["row"] for r in rows) + " |", "|---|---|" + "---|" * len(rows)]
        for c in cells:
            lines.append(f"| {c} | {n.get(c, '-')} | " + " | ".join(_num(r["selected"]["test_cell_recall"].get(c)) for r in rows) + " |")
    (out_root / "ablation.md").write_text("\n".join(lines) + "\n")


def _num(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _measure_all(out_root: Path, roots: Sequence[str], schedule: str, cache: dict) -> None:
    rows = []
    for name, _, _, _ in ALL_ROWS:
        run = out_root / name
        if not (run / "metrics.json").exists():
            continue
        cached = run / "ablation_row.json"
        if cached.exists() and cached.stat().st_mtime >= (run / "metrics.json").stat().st_mtime:
            rows.append(json.loads(cached.read_text()))
            continue
        row = measure(run, roots, cache)
        cached.write_text(json.dumps(row, indent=1) + "\n")
        rows.append(row)
    write_tables(rows, out_root, schedule)


def train_row(name: str, roots: Sequence[str], out_root: Path, epochs: int, extra: Sequence[str]) -> int:
    run = out_root / name
    state = run / "state.json"
    if (run / "metrics.json").exists() and state.exists() and json.loads(state.read_text())["epochs_done"] >= epochs:
        return 0
    args = row_command(name, roots, out_root, epochs, extra)
    if (run / "last.keras").exists():
        args.append("--resume")
    run.mkdir(parents=True, exist_ok=True)
    with (out_root / f"{name}.log").open("a") as log:
        log.write(f"\n$ python -m training {' '.join(args)}\n")
        log.flush()
        return subprocess.call([sys.executable, "-m", "training", *args], stdout=log, stderr=subprocess.STDOUT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.ablation", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("run", "report"))
    parser.add_argument("--out-root", type=Path, required=True, help="folder of the row run folders (outside the repo)")
    parser.add_argument("--data", action="append", required=True, help="dataset roots: cxr3 first, then cxr3-plus (its external split is report-only)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rows", nargs="*", help="only these rows (default: the cumulative rows, in order; variants only by name)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more python -m training options for every row")
    args = parser.parse_args(argv)
    schedule = f"{args.epochs} epochs, cosine decay from 1e-3, batch 32, ResNet-18-style width 32 at 128x128, seed 0, one run per row"
    if args.extra:
        schedule += f", with {' '.join(args.extra)}"
    args.out_root.mkdir(parents=True, exist_ok=True)
    cache: dict = {}
    if args.action == "run":
        for name, _, _, _ in ALL_ROWS:
            if (name not in args.rows) if args.rows else (name not in {n for n, _, _, _ in ROWS}):
                continue
            code = train_row(name, args.data, args.out_root, args.epochs, args.extra)
            if code != 0:
                print(f"error: row {name} exited {code}; see {args.out_root / (name + '.log')}", file=sys.stderr)
                return 1
            _measure_all(args.out_root, args.data, schedule, cache)
    _measure_all(args.out_root, args.data, schedule, cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
