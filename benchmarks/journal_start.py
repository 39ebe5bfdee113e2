"""How long a journal takes to open, and the memory it takes, on a log with many rotated files kept (the default).

    python -m benchmarks.journal_start [--pairs 40000] [--segments 8] [--before TREE] [--repeats 3] [--out benchmarks/results/journal]

Makes a scratch ``audit.jsonl`` in a temporary folder: ``--pairs`` lines (a ``received`` and a
``classified`` line per made-up film key, shaped as the gateway writes them) in ``--segments``
rotated files and a live one, with no ``.keys`` file (the store as an earlier version left it).
Each start is ``Journal(path, rotation=Rotation())`` in a fresh process, which prints the seconds
the constructor took and its peak RSS above the RSS before it (VmHWM), and checks that the journal
knows a line of the oldest file. The current code's first start covers the rotated files (reads
them once, writes ``audit.jsonl.keys``); its later starts read the keys and the live file. With
``--before TREE`` (a folder holding the ``edgecxr`` package of an earlier version, e.g. from
``git archive <rev> edgecxr | tar -x -C TREE``) the same starts of that code run alternately with
the current code's, each on its own copy of the log. Writes ``results.json`` and ``report.md``
into ``--out``, naming the machine.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from benchmarks.header import write_report
from edgecxr.clinic.journal import STAMP
from edgecxr.evaluation.benchmark import platform_info
from edgecxr.evaluation.provenance import invocation, record

REPO = Path(__file__).resolve().parents[1]

# One start in this child: the constructor's seconds and its memory (peak RSS above the RSS before it), as one JSON line.
CHILD = """
import json, sys, time
from edgecxr.clinic.journal import Journal, Rotation
from edgecxr.evaluation.benchmark import _peak_rss_mb
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
before = rss_mb()
start = time.perf_counter()
journal = Journal(sys.argv[1], rotation=Rotation())
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "memory_mb": _peak_rss_mb() - before, "knows_oldest": not journal.once("received", sys.argv[2])}))
"""


def key(i: int) -> str:
    return hashlib.sha256(f"film {i}".encode()).hexdigest()


def make_log(folder: Path, pairs: int, parts: int) -> Path:
    """``audit.jsonl`` with ``pairs`` lines in ``parts`` rotated files and a live one (no ``.keys``); its path."""
    folder.mkdir(parents=True)
    path, films = folder / "audit.jsonl", pairs // 2
    per_part = -(-films // (parts + 1))
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for part in range(parts + 1):
        lines: list[dict[str, Any]] = []
        for i in range(part * per_part, min(films, (part + 1) * per_part)):
            when = (start + timedelta(seconds=i)).isoformat(timespec="milliseconds")
            lines.append({"time": when, "event": "received", "key": key(i), "sop_class": "Digital X-Ray Image Storage - For Presentation",
                          "calling_ae": "ORTHANC"})
            lines.append({"time": when, "event": "classified", "key": key(i), "model_sha256": hashlib.sha256(b"model").hexdigest(),
                          "label": "Normal", "abnormal_score": round(i % 997 / 997, 4), "refer": False, "warnings": []})
        rotated = start + timedelta(days=part + 1)
        name = path if part == parts else folder / f"audit.jsonl.{rotated.strftime(STAMP)}000Z"
        name.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def start(tree: Path, path: Path) -> dict:
    """One start of the journal at ``path`` with the ``edgecxr`` package in ``tree``, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(REPO)])}  # tree first: its edgecxr.clinic.journal
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), key(0)], capture_output=True, text=True, env=env, cwd=path.parent,
                          timeout=600, check=True)  # cwd: "-c" puts it first on sys.path
    return json.loads(proc.stdout.splitlines()[-1])


def summary(runs: list[dict]) -> dict:
    seconds = sorted(r["seconds"] for r in runs)
    return {"runs": len(runs), "median_s": round(seconds[len(seconds) // 2], 3), "min_s": round(seconds[0], 3),
            "memory_mb": round(max(r["memory_mb"] for r in runs), 1), "dedup": all(r["knows_oldest"] for r in runs)}


def report(results: dict) -> str:
    info = results["platform"]
    lines = [
        f"# Journal start on {results['pairs']} pairs in {results['segments']} rotated files and the live one",
        "",
        f"Machine: {info['machine']}, {info['cpu']} ({info['cpus']} CPUs), {info['system']}, Python {info['python']}. "
        f"Produced by `{results['provenance']['command']}`; each start in a fresh process, "
        "the runs of both versions alternating. Memory: peak RSS above the RSS before the constructor.",
        "",
        "| start | runs | median s | min s | memory MB | knows the oldest line |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in results["results"].items():
        lines.append(f"| {name} | {row['runs']} | {row['median_s']} | {row['min_s']} | {row['memory_mb']} | {row['dedup']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.journal_start", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=40000)
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--before", type=Path, help="a folder with the edgecxr package of an earlier version, measured alongside")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "journal")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        after = make_log(Path(tmp) / "after", args.pairs, args.segments)
        before = Path(tmp) / "before" / "audit.jsonl"
        shutil.copytree(after.parent, before.parent)
        first = start(REPO, after)  # covers the rotated files: once, after an upgrade
        runs: dict[str, list[dict]] = {"before": [], "after": []}
        for _ in range(args.repeats):
            if args.before:
                runs["before"].append(start(args.before, before))
            runs["after"].append(start(REPO, after))
    results = {**({"before (every rotated file parsed)": summary(runs["before"])} if args.before else {}),
               "after, first start (rotated files covered)": summary([first]),
               "after (keys and live file)": summary(runs["after"])}
    write_report(args.out, {"provenance": record(invocation("python -m benchmarks.journal_start", argv)), "platform": platform_info(),
                            "pairs": args.pairs, "segments": args.segments, "results": results}, report)


if __name__ == "__main__":
    main()
