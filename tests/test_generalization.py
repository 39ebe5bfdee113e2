"""The external-validity report on a small copy of the shared splits: sources, cells, external share, targets."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.generalization import cells, content_free_images, films_of, main
from edgecxr import load_model
from edgecxr.evaluation.targets import targets


def small_copy(source_root: Path, target_root: Path, per_cell: int) -> list[dict[str, str]]:
    """``per_cell`` films of every (split, label, source) of ``source_root``'s test/external splits, with their manifest rows."""
    with (source_root / "manifest.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] in ("test", "external")]
    kept: list[dict[str, str]] = []
    seen: dict[tuple[str, str, str], int] = {}
    for row in rows:
        key = (row["split"], row["label"], row["source"])
        if seen.get(key, 0) < per_cell:
            seen[key] = seen.get(key, 0) + 1
            (target_root / row["file"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source_root / row["file"], target_root / row["file"])
            kept.append(row)
    with (target_root / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(kept[0]))
        writer.writeheader()
        writer.writerows(kept)
    return kept


@pytest.fixture(scope="module")
def roots(shared_data, tmp_path_factory) -> list[Path]:
    base = tmp_path_factory.mktemp("gen")
    small_copy(shared_data / "cxr3", base / "cxr3", 3)
    small_copy(shared_data / "cxr3-plus", base / "cxr3-plus", 5)
    return [base / "cxr3", base / "cxr3-plus"]


def test_films_come_with_their_manifest_source(roots):
    labels = ["COVID", "Normal", "Pneumonia"]
    test = films_of(roots, "test", labels)
    assert {f.source for f in test} == {"bimcv", "hannover", "ieee", "kermany", "nih", "rsna"}
    assert sum(f.source == "nih" and labels[f.truth] == "Normal" for f in test) == 5  # from cxr3-plus
    external = films_of(roots, "external", labels)
    assert len(external) == 5 and {f.source for f in external} == {"openist"} and {f.truth for f in external} == {1}


def test_cells_counts_and_recalls():
    report = {"per_source": {"a": {"per_class": {"X": {"recall": 0.5, "support": 4}, "Y": {"recall": 0.0, "support": 0}}}}}
    assert cells(report) == {"a/X": {"recall": 0.5, "n": 4}}


def test_content_free_images_have_no_anatomy_and_right_types():
    kinds = content_free_images(n=4)
    assert set(kinds) == {"nearly uniform", "uniform noise", "gradient", "colour scene"}
    assert all(len(v) == 4 for v in kinds.values())
    assert kinds["colour scene"][0].ndim == 3 and kinds["gradient"][0].shape == (256, 256)


@pytest.mark.train  # the plot needs matplotlib, from the train extra
def test_report_end_to_end(roots, tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "loso.md").write_text("# Leave one source out\n")  # written by python -m benchmarks.loso; linked
    assert main(["--data", str(roots[0]), "--data", str(roots[1]), "--out", str(out)]) == 0
    results = json.loads((out / "generalization.json").read_text())
    (section,) = results["models"]
    model = load_model()
    assert section["model"] == model.name and section["sha256"] == model.card.sha256
    # external share called Normal, recomputed by predicting the five external films directly
    external = sorted((roots[1] / "external" / "Normal").glob("*.png"))
    called = np.mean([model.predict(f).label == "Normal" for f in external])
    assert section["external"] == {"n": 5, "called": {**section["external"]["called"], "Normal": round(float(called), 4)}}
    assert sum(section["external"]["called"].values()) == pytest.approx(1.0, abs=1e-3)
    nih = sorted((roots[1] / "test" / "Normal").glob("*.png"))
    assert section["cells"]["nih/Normal"] == {"n": 5, "recall": round(float(np.mean([model.predict(f).label == "Normal" for f in nih])), 4)}
    assert section["test"]["n"] == sum(c["n"] for c in section["cells"].values())
    assert {t["name"] for t in section["targets"]} <= {t.name for t in targets("generalization")}
    assert all(set(t) == {"name", "scope", "op", "target", "reached", "met", "margin"} for t in section["targets"])
    report = (out / "report.md").read_text()
    assert "| nih/Normal | 5 |" in report and "external called Normal" in report
    assert results["loso"] == "loso.md" and "## Leave one source out" in report and "[loso.md](loso.md)" in report
    assert (out / "cells.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_root_is_one_line_error(tmp_path, capsys):
    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path}: no manifest.csv (the sources come from it)"
