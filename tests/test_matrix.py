"""benchmarks/matrix.py: end to end on the tiny models, re-rendering, targets, cold start and row order."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from benchmarks.matrix import THREADS, cold_start, main, pareto_front, row_order, targets
from edgecxr.core.card import sha256_of
from edgecxr.core.registry import DEFAULT_MODEL, bundled_models
from edgecxr.evaluation.macs import macs
from edgecxr.evaluation.provenance import repo_relative
from edgecxr.evaluation.targets import Target


@pytest.fixture(scope="module")
def two_class_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("matrix") / "test"
    for label, value in (("dark", 10), ("bright", 200)):
        (data / label).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(data / label / f"{i}.png"), np.random.default_rng(i).integers(value, value + 20, (32, 32), dtype=np.uint8))
    return data


@pytest.mark.train  # matplotlib, for tradeoff.png
def test_matrix_writes_results_report_and_plot(tiny_models, two_class_data, tmp_path):
    out = tmp_path / "out"
    args = ["--models", str(tiny_models["int8"].parent), "--data", str(two_class_data), "--out", str(out)]
    external = tmp_path / "external"  # a split folder holding one class, as cxr3-plus/external holds only Normal films
    shutil.copytree(two_class_data / "bright", external / "bright")
    assert main([*args, "--external", str(external), "--runs", "3", "--warmup", "1", "--cold-runs", "1"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["latency"]) == 2 * len(THREADS) * 2  # two models x threads x XNNPACK on/off
    assert {(r["model"], r["threads"], r["xnnpack"]) for r in results["latency"]} == {
        (m, t, x) for m in ("tiny-int8", "tiny-float32") for t in THREADS for x in (True, False)
    }
    assert all(r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] for r in results["latency"])
    acc = results["accuracy"]["tiny-int8"]
    assert acc["n"] == 4 and acc["accuracy"] == 1.0
    assert acc["external"]["n"] == 2 and acc["external"]["data"] == repo_relative(external)
    assert acc["external"]["called"]["bright"] == 1.0 and sum(acc["external"]["called"].values()) == 1.0
    assert acc["gzip_bytes"] > 0 and acc["size_bytes"] == tiny_models["int8"].stat().st_size
    assert acc["macs"] == macs(tiny_models["int8"]) > 0 and f"| {acc['macs'] / 1e6:.1f} M |" in (out / "report.md").read_text()
    assert [m["model"] for m in results["cold_start"]["models"]] == [p.stem for p in bundled_models()]
    assert results["cold_start"]["image"] == repo_relative(two_class_data / "bright" / "0.png")  # first in sorted order
    assert results["provenance"]["models"] == {repo_relative(p): sha256_of(p) for p in tiny_models.values()}
    assert {r["path"] for r in results["latency"]} == set(results["provenance"]["models"])  # no absolute machine paths
    # tiny: 6 p50 ratios, size, accuracy; then wall and RSS per bundled model
    assert len(results["targets"]) == 6 + 2 + 2 * len(bundled_models())
    assert all(set(t) == {"name", "scope", "op", "target", "reached", "met", "margin"} for t in results["targets"])
    report = (out / "report.md").read_text()
    assert "| tiny-int8 | 1.0000 | " in report and results["platform"]["machine"] in report
    assert report.index("| tiny-float32 | 1.0000") < report.index("| tiny-int8 | 1.0000")  # float32 row first
    assert "## Targets" in report and "## Cold start" in report
    assert "There is no QAT int8 variant" not in report  # conclusions are written by people, in notes.md
    assert (out / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"

    # re-rendering from results.json gives the same report without measuring, plus a notes.md when present
    again = tmp_path / "again"
    again.mkdir()
    (again / "notes.md").write_text("Hand-written analysis.\n")
    assert main(["--from-results", str(out / "results.json"), "--out", str(again)]) == 0
    rerendered = (again / "report.md").read_text()
    assert rerendered.replace("\n\nHand-written analysis.", "") == report
    assert json.loads((again / "results.json").read_text()) == results


def test_from_results_needs_no_models_but_cold_start_needs_data(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--from-results", str(tmp_path / "results.json"), "--measure-cold-start"])
    assert "--measure-cold-start needs --from-results and --data" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--data", str(tmp_path)])
    assert "required unless --from-results" in capsys.readouterr().err


def named(model: str, **fields) -> dict:
    """A result row of ``model`` (FAMILY-VARIANT), with the family and variant its card would give."""
    family, variant = model.split("-", 1)
    return {"model": model, "family": family, "variant": variant, **fields}


def latency_row(model: str, threads: int, xnnpack: bool, p50: float, size: int) -> dict:
    return named(model, threads=threads, xnnpack=xnnpack, p50_ms=p50, size_bytes=size)


def test_targets_met_and_missed_with_exact_margins():
    results = {
        "latency": [
            latency_row("a-float32", 1, True, 10.0, 1000), latency_row("a-float32", 1, False, 10.0, 1000),
            latency_row("a-int8", 1, True, 4.0, 350), latency_row("a-int8", 1, False, 6.0, 350),
            latency_row("a-pruned-int8", 1, True, 1.0, 100),  # not the int8 variant: ignored
            latency_row("b-float32", 1, True, 5.0, 500),  # no int8 in family b: no targets
        ],
        "accuracy": {"a-float32": named("a-float32", accuracy=0.900), "a-int8": named("a-int8", accuracy=0.885)},
        "cold_start": {"models": [
            {"model": "m-int8", "default": True, "wall_median_s": 0.5, "rss_max_mb": 160.0},
            {"model": "m-float32", "default": False, "wall_median_s": 0.8, "rss_max_mb": 149.9},
        ]},
    }
    got = [(t["scope"], t["reached"], t["met"], t["margin"]) for t in targets(results)]
    assert got == [
        ("a, 1 thread, XNNPACK on", 0.4, True, 0.1),
        ("a, 1 thread, XNNPACK off", 0.6, False, -0.1),
        ("a", 0.35, False, -0.05),  # size ratio
        ("a", -1.5, False, -0.5),  # accuracy points: lost 1.5 where 1 is allowed
        ("m-int8 (default)", 0.5, True, 0.3),
        ("m-int8 (default)", 160.0, False, -10.0),
        ("m-float32", 0.8, False, 0.0),  # strictly below 0.8 s is required
        ("m-float32", 149.9, True, 0.1),
    ]
    results["accuracy"]["a-int8"]["accuracy"] = 0.95  # a gain is met
    assert targets(results)[3]["met"] is True and targets(results)[3]["margin"] == 6.0


def test_check_boundaries():
    assert Target("k", "x", "<=", 0.5).check(0.5, "s")["met"] is True
    assert Target("k", "x", "<", 0.5).check(0.5, "s")["met"] is False
    assert Target("k", "x", ">=", -1.0).check(-1.0, "s")["met"] is True


def test_rows_sort_by_family_then_variant():
    names = ["resnet18-keras", "mlp12-int8", "resnet18-pruned-int8", "resnet18-int8", "resnet18-float16",
             "resnet18-dynamic", "resnet18-float32", "mlp12-keras", "mlp12-float32", "resnet18-odd"]
    assert [r["model"] for r in sorted(map(named, names), key=row_order)] == [
        "mlp12-float32", "mlp12-int8", "mlp12-keras", "resnet18-float32", "resnet18-float16", "resnet18-dynamic",
        "resnet18-int8", "resnet18-pruned-int8", "resnet18-keras", "resnet18-odd",
    ]


def test_rows_carry_family_and_variant_from_the_card_not_the_name(tiny_models, two_class_data, tmp_path):
    import shutil
    from dataclasses import replace

    from benchmarks.matrix import accuracy_by_source, card_fields
    from edgecxr.core.card import read_card, write_card

    path = tmp_path / "renamed.tflite"  # a file name that says nothing
    shutil.copy(tiny_models["int8"], path)
    write_card(path, replace(read_card(tiny_models["int8"]), family="other"))
    assert card_fields(path) == {"family": "other", "variant": "int8"}
    report = accuracy_by_source(path, two_class_data)
    assert (report["family"], report["variant"], report["n"]) == ("other", "int8", 4)


@pytest.mark.slow
def test_cold_start_of_the_bundled_default(two_class_data):
    cold = cold_start(two_class_data, runs=2)
    default = next(m for m in cold["models"] if m["default"])
    assert default["model"] == DEFAULT_MODEL and default["args"] == []
    assert len(default["wall_s"]) == len(default["rss_mb"]) == 2
    assert 0 < default["wall_median_s"] <= default["wall_max_s"] < 60
    assert 10 < default["rss_median_mb"] <= default["rss_max_mb"] < 2000
    assert default["answer"].startswith(f"{two_class_data / 'bright' / '0.png'}: ")
    assert cold["package"].endswith("edgecxr") and cold["command"].endswith("edgecxr")


def test_pareto_front_keeps_only_unbeaten_points():
    points = [(5.0, 0.80), (1.0, 0.70), (2.0, 0.69), (3.0, 0.85), (4.0, 0.84), (1.0, 0.60)]
    assert pareto_front(points) == [(1.0, 0.70), (3.0, 0.85)]
    assert pareto_front([]) == []
