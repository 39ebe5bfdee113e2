"""Leave one source out: ``--hold-out`` takes a source's films out of train and val, and
``python -m benchmarks.loso`` trains, skips finished runs and measures on the held-out films."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from conftest import REPO  # noqa: E402
from test_recipe import LABELS, SPEC, make_root  # noqa: E402
from training.data import DatasetError  # noqa: E402
from training.holdout import hold_out  # noqa: E402
from training.multiroot import load_roots  # noqa: E402

COUNTS = {"train": 8, "val": 4, "test": 3}


def loso_roots(tmp_path: Path) -> tuple[Path, Path]:
    """A main root whose sources ``alpha`` and ``beta`` both have every class, and a further root (``gamma`` dark, external ``delta``)."""
    main = {(split, source, label): n for split, n in COUNTS.items() for source in ("alpha", "beta") for label in LABELS}
    plus = {("train", "gamma", "dark"): 6, ("val", "gamma", "dark"): 3, ("test", "gamma", "dark"): 2, ("external", "delta", "dark"): 5}
    return make_root(tmp_path / "main", main), make_root(tmp_path / "plus", plus, seed=1)


def test_hold_out_leaves_train_and_val_and_keeps_test(tmp_path):
    main, plus = loso_roots(tmp_path)
    data = load_roots([main, plus], SPEC, verbose=False)
    held, removed = hold_out(data, ["beta", "gamma"])
    assert removed == {"train": 8 * 3 + 6, "val": 4 * 3 + 3}
    assert set(held.splits["train"].sources) == set(held.splits["val"].sources) == {"alpha"}
    assert len(held.splits["train"].y) == 8 * 3 and held.splits["train"].x.shape == (24, 32, 32, 1)
    assert sorted(set(held.splits["train"].y.tolist())) == [0, 1, 2]
    assert all(Path(f).name.startswith("alpha-") for f in held.splits["train"].files)
    assert held.splits["test"] is data.splits["test"]  # test keeps the held-out films: they are what LOSO measures
    assert len(data.splits["train"].y) == 8 * 6 + 6  # the input is not changed
    with pytest.raises(DatasetError, match=r"source\(s\) \['delta'\] are in no train or val film"):
        hold_out(data, ["delta"])  # external only: never loaded for training, so not a training source
    with pytest.raises(DatasetError, match=r"leaves class\(es\) \['bright', 'dark', 'striped'\] with no training film"):
        hold_out(data, ["alpha", "beta", "gamma"])


@pytest.mark.train
def test_loso_trains_without_the_source_measures_its_films_and_skips_finished_runs(tmp_path, monkeypatch):
    from benchmarks import loso
    from training.train import TrainConfig, train

    monkeypatch.chdir(REPO)  # the runs are `python -m training` subprocesses of the checkout
    main, plus = loso_roots(tmp_path)
    runs, out = tmp_path / "runs", tmp_path / "report"
    argv = ["--runs", str(runs), "--data", str(main), "--data", str(plus), "--out", str(out),
            "--recipes", "baseline", "--hold-out", "beta", "--epochs", "1", "--input-size", "32", "--width", "8"]
    assert loso.main(argv) == 0
    run = runs / "beta" / "baseline"
    info = json.loads((run / "run.json").read_text())
    assert info["config"]["hold_out"] == ["beta"] and info["config"]["bn_momentum"] == 0.9 and info["preprocessing"]["size"] == [32, 32]
    assert info["dataset"]["held_out"] == {"sources": ["beta"], "films": {"train": 24, "val": 12}}
    assert info["dataset"]["counts"]["train"] == [8, 8, 8] and info["dataset"]["counts"]["test"] == [6, 6, 6]
    cells = json.loads((run / "cells.json").read_text())
    assert set(cells[0]["recalls"]) == {"alpha/bright", "alpha/dark", "alpha/striped"}  # val without beta
    result = json.loads((out / "loso.json").read_text())
    (row,) = result["runs"]
    assert (row["recipe"], row["held_out"], row["epochs"], row["input_size"], row["width"]) == ("baseline", "beta", 1, 32, 8)
    assert row["held_out_films"] == {"train": 24, "val": 12, "test": 9, "all": 45}
    assert set(row["held_out_sensitivity"]) == set(LABELS)
    for label, c in row["held_out_sensitivity"].items():
        assert c["n"] == 15 and sum(c["called"].values()) == 15
        assert c["recall"] == pytest.approx(c["called"][label] / 15, abs=1e-4)
    assert row["in_distribution_test"]["n"] == 9  # alpha's cxr3-like test films; gamma's root is not the first
    assert row["external"]["n"] == 5 and sum(row["external"]["called"].values()) == pytest.approx(1.0, abs=1e-3)
    assert row["training_films"] == {"bright": 8, "dark": 8, "striped": 8} and row["training_seconds"] > 0 and row["wall_seconds"] >= 0 and not row["resumed"]
    text = (out / "loso.md").read_text()
    assert "| beta | baseline | dark (15) |" in text and "| beta/striped (15) | " in text and "What this cannot tell" in text and "1 epochs" in text
    finished = (run / "metrics.json").stat().st_mtime
    log = (runs / "beta" / "baseline.log").read_text()
    (out / "loso_notes.md").write_text("Hand-written reading.\n")
    assert loso.main(argv) == 0  # finished: not trained again, measured from its cache
    assert (run / "metrics.json").stat().st_mtime == finished and (runs / "beta" / "baseline.log").read_text() == log
    assert json.loads((out / "loso.json").read_text())["runs"] == [row]
    assert (out / "loso.md").read_text().endswith("## Reading\n\nHand-written reading.\n")
    with pytest.raises(DatasetError, match=r"holds out \['beta'\]; resume it with the same --hold-out, not \[\]"):
        train(TrainConfig(data=main, out=run, resume=True, epochs=2))
