"""The example scripts in examples/: each run as a user would, in a subprocess."""
from __future__ import annotations

import csv
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO, TINY_LABELS, child_env, make_dataset, write_png

EXAMPLES = REPO / "examples"
CLINIC_LINE = re.compile(r"^\s*(\d+)\. (\S+)  (.*)$")


def run_example(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**child_env(), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(  # not cwd=REPO: a `python -m edgecxr` inside must import the edgecxr under test
        [sys.executable, str(EXAMPLES / script), *args], cwd=EXAMPLES, env=env, capture_output=True, text=True, timeout=timeout
    )


def import_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module



@pytest.fixture()
def scans(tmp_path) -> dict[str, Path]:
    """Three toy images the tiny model gets right (one nested), a corrupt PNG, a tiny noisy image, a text file."""
    files = {label: write_png(tmp_path / "scans" / ("sub" if cls == 2 else "") / f"{label}.png", cls, seed=cls) for cls, label in enumerate(TINY_LABELS)}
    files["corrupt"] = tmp_path / "scans" / "corrupt.png"
    files["corrupt"].write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    files["small"] = tmp_path / "scans" / "small.tif"
    cv2.imwrite(str(files["small"]), np.random.default_rng(0).integers(0, 255, (40, 40)).astype(np.uint8))
    (tmp_path / "scans" / "notes.txt").write_text("not an image")
    return files


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_help_and_docstring(script):
    result = run_example(script, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")
    text = (EXAMPLES / script).read_text()
    assert text.startswith('"""') and f"python examples/{script}" in text
    assert len(text.splitlines()) <= 85
    assert not re.search(r"\._[a-z]", text.replace("__", "")), "examples must not touch private attributes"


def test_folder_to_csv_finds_images_as_the_runtime():
    import edgecxr

    assert import_example("folder_to_csv").find_images is edgecxr.find_images


def test_folder_to_csv(model_path, scans, tmp_path):
    out = tmp_path / "out.csv"
    result = run_example("folder_to_csv.py", str(tmp_path / "scans"), str(out), "--model", model_path)
    assert result.returncode == 1, result.stderr
    assert result.stdout.strip() == f"4 ok / 1 failed -> {out}"
    assert "corrupt.png" in result.stderr and "Traceback" not in result.stderr
    with out.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [dict(zip(header, r)) for r in reader]
    assert header == ["file", "label", *TINY_LABELS, "latency_ms", "warnings", "error"]
    by_file = {Path(r["file"]).name: r for r in rows}
    assert sorted(by_file) == ["bright.png", "corrupt.png", "dark.png", "small.tif", "striped.png"]
    for label in TINY_LABELS:
        row = by_file[f"{label}.png"]
        assert row["label"] == label and row["error"] == "" and row["warnings"] == ""
        probs = [float(row[l]) for l in TINY_LABELS]
        assert abs(sum(probs) - 1) < 1e-3 and max(probs) == float(row[label])
        assert float(row["latency_ms"]) > 0
    bad = by_file["corrupt.png"]
    assert bad["error"] and bad["label"] == "" and all(bad[l] == "" for l in TINY_LABELS)
    assert "very small image" in by_file["small.tif"]["warnings"]

    for name in ("corrupt", "small"):  # a clean folder: everything ok, status 0
        scans[name].unlink()
    result = run_example("folder_to_csv.py", str(tmp_path / "scans"), str(out), "--model", model_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("3 ok / 0 failed")
    assert len(out.read_text().splitlines()) == 4


def test_folder_to_csv_bad_model(tmp_path):
    (tmp_path / "scans").mkdir()
    result = run_example("folder_to_csv.py", str(tmp_path / "scans"), str(tmp_path / "o.csv"), "--model", str(tmp_path / "missing.tflite"))
    assert result.returncode == 2 and "error:" in result.stderr and "Traceback" not in result.stderr


def clinic_rows(stdout: str) -> list[tuple[str, str]]:
    lines = stdout.splitlines()
    rows = [m for m in map(CLINIC_LINE.match, lines) if m]
    assert len(rows) == len(lines), stdout
    assert [int(m.group(1)) for m in rows] == list(range(1, len(rows) + 1))
    return [(Path(m.group(2)).name, m.group(3)) for m in rows]


def test_clinic_app_orders_abnormal_first_and_flags(model_path, scans):
    files = [str(scans[k]) for k in ("dark", "corrupt", "striped", "bright", "small")]
    result = run_example("clinic_app.py", *files, "--model", model_path, "--normal-label", "dark", "--review-below", "0.5")
    assert result.returncode == 1, result.stderr
    rows = clinic_rows(result.stdout)
    names = [name for name, _ in rows]
    assert len(rows) == 5 and names[-1] == "corrupt.png" and rows[-1][1].startswith("ERROR")
    assert names.index("dark.png") > max(names.index("bright.png"), names.index("striped.png"))
    abnormal = [float(re.search(r"abnormal=([\d.]+)", text).group(1)) for _, text in rows[:-1]]
    assert abnormal == sorted(abnormal, reverse=True)
    text = dict(rows)
    for label in TINY_LABELS:
        assert text[f"{label}.png"].startswith(label) and "REVIEW" not in text[f"{label}.png"]
    assert "REVIEW: very small image" in text["small.tif"]

    result = run_example("clinic_app.py", *files[2:4], "--model", model_path, "--normal-label", "dark", "--review-below", "1.01")
    assert result.returncode == 0, result.stderr
    assert all("REVIEW: low confidence" in t for _, t in clinic_rows(result.stdout))


def test_clinic_app_without_normal_label_sorts_by_confidence(model_path, scans):
    result = run_example("clinic_app.py", *(str(scans[k]) for k in TINY_LABELS), "--model", model_path)
    assert result.returncode == 0, result.stderr
    assert "no 'Normal' label" in result.stderr
    p = [float(re.search(r"p=([\d.]+)", t).group(1)) for _, t in clinic_rows(result.stdout)]
    assert len(p) == 3 and p == sorted(p, reverse=True)


def test_clinic_app_triage_api(model_path, scans):
    app = import_example("clinic_app").Triage(model_path, review_below=0.5, normal_label="dark")
    cases = app.triage([str(scans["dark"]), str(scans["corrupt"]), str(scans["bright"])])
    assert [Path(c.file).name for c in cases] == ["bright.png", "dark.png", "corrupt.png"]
    assert cases[0].label == "bright" and cases[0].abnormal > 0.5 and cases[0].review == []
    assert cases[2].error and cases[2].review


@pytest.mark.train
@pytest.mark.slow
def test_finetune_site(trained_run, tmp_path):
    base = trained_run.out
    site = make_dataset(tmp_path / "site", labels=("dark", "bright", "striped", "checked"), per_class=(8, 4, 4))
    out = tmp_path / "out"
    result = run_example("finetune_site.py", str(site), str(base), str(out), "--epochs", "1", "--batch-size", "16")
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"^site test: n=16  accuracy [\d.]+  macro-F1 [\d.]+$", result.stdout, re.M), result.stdout
    for label in ("bright", "checked", "dark", "striped"):
        assert re.search(rf"^  {label} +sensitivity [\d.]+  precision [\d.]+  n=4$", result.stdout, re.M), result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    info = json.loads((out / "run.json").read_text())
    assert metrics["test"]["n"] == 16 and info["labels"] == ["bright", "checked", "dark", "striped"]
    assert info["config"]["freeze_backbone"] is True and info["preprocessing"]["size"] == [32, 32]
    assert (out / "best.keras").is_file()

    result = run_example("finetune_site.py", str(site), str(tmp_path / "nobase"), str(tmp_path / "o2"))
    assert result.returncode == 2 and "not a training run" in result.stderr


def test_explain_heatmap_writes_overlays_and_lung_share(model_path, scans, tmp_path):
    out = tmp_path / "maps"
    files = [str(scans["bright"]), str(scans["corrupt"])]
    result = run_example("explain_heatmap.py", *files, "--out", str(out), "--model", model_path, "--min-lung-share", "1.01")
    assert result.returncode == 1  # the corrupt file
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{scans['bright']}: bright ")
    share = float(re.search(r"lung share (\d\.\d\d)", lines[0]).group(1))
    assert 0.0 < share < 1.0 and "LOOKED OUTSIDE THE LUNGS" in lines[0]  # every share is below 1.01
    picture = cv2.imread(str(out / "bright.heatmap.png"))  # the 64 px film enlarged to 512 px, its text below
    assert picture.shape[1] == 512 and picture.shape[0] > 512
    assert "corrupt.png" in result.stderr


def test_explain_heatmap_lung_share_by_hand():
    module = import_example("explain_heatmap")
    inside, outside = np.zeros((100, 100), np.float32), np.zeros((100, 100), np.float32)
    inside[40:50, 30:38] = 1.0  # the centre of the right lung field (image left)
    outside[:5, :5] = 1.0  # the top-left corner
    assert module.lung_share(inside) == 1.0 and module.lung_share(outside) == 0.0


def test_pi_benchmark_compares_with_a_reference(model_path, tmp_path):
    name = Path(model_path).stem
    reference = tmp_path / "results.json"
    reference.write_text(json.dumps({"latency": [
        {"model": name, "family": "tiny", "variant": "int8", "threads": 2, "xnnpack": True, "p50_ms": 123.0},
        {"model": name, "family": "tiny", "variant": "int8", "threads": 2, "xnnpack": False, "p50_ms": 999.0},
    ]}))
    result = run_example("pi_benchmark.py", "--threads", "2", "--runs", "3", "--model", model_path, "--compare", str(reference))
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith(name))
    assert "x86-64   123.00 ms" in row and "999" not in row
    module = import_example("pi_benchmark")
    rows = [{"family": f, "variant": v, "p50_ms": p50} for f, v, p50 in (("a", "int8", 1.0), ("a", "float32", 4.0), ("b", "int8", 2.0))]
    assert module.int8_ratios(rows) == {"a": 0.25}


def test_calibrate_site_then_screen_a_batch(model_path, scans, tmp_path):
    site = tmp_path / "site"
    for cls, label in enumerate(TINY_LABELS):
        for i in range(4):
            write_png(site / label / f"{label}_{i}.png", cls, seed=50 + 10 * cls + i)
    write_png(site / "bright" / "filed_wrong.png", 0, seed=77)  # a dark film among the bright ones: the threshold must drop for it
    profile = tmp_path / "out" / "site.json"
    result = run_example("calibrate_site.py", str(site), str(tmp_path / "scans"), "--profile", str(profile), "--for", "bright", "--model", model_path)
    assert result.returncode == 1, result.stderr  # the corrupt scan
    assert "only 5 positive films" in result.stderr and "corrupt.png" in result.stderr and "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("bright: refer at score >= ") and lines[1] == f"profile: {profile}"
    assert profile.is_file() and profile.with_name("site.roc.png").is_file() and profile.with_name("site.bright.csv").is_file()
    from edgecxr import load_model

    model = load_model(model_path, site=profile)
    for key in ("dark", "bright", "striped", "small"):
        line = next(line for line in lines if f"  {scans[key]}  " in line)
        assert line.startswith("REFER " if model.predict(scans[key]).refer else "no refer ")
    assert lines[-1].endswith("referred, 1 unreadable")
