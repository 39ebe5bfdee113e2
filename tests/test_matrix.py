"""benchmarks/matrix.py end to end on the tiny models: JSON, Markdown and plot."""
from __future__ import annotations

import json

import cv2
import numpy as np

from benchmarks.matrix import THREADS, main


def test_matrix_writes_results_report_and_plot(tiny_models, tmp_path):
    data = tmp_path / "test"
    for label, value in (("dark", 10), ("bright", 200)):
        (data / label).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(data / label / f"{i}.png"), np.random.default_rng(i).integers(value, value + 20, (32, 32), dtype=np.uint8))
    out = tmp_path / "out"
    assert main(["--models", str(tiny_models["int8"].parent), "--data", str(data), "--out", str(out), "--runs", "3", "--warmup", "1"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["latency"]) == 2 * len(THREADS) * 2  # two models x threads x XNNPACK on/off
    assert {(r["model"], r["threads"], r["xnnpack"]) for r in results["latency"]} == {
        (m, t, x) for m in ("tiny-int8", "tiny-float32") for t in THREADS for x in (True, False)
    }
    assert all(r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] for r in results["latency"])
    acc = results["accuracy"]["tiny-int8"]
    assert acc["n"] == 4 and acc["accuracy"] == 1.0
    report = (out / "report.md").read_text()
    assert "| tiny-int8 | 1.0000 | " in report and results["platform"]["machine"] in report
    assert (out / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"
