"""Provenance records (edgecxr/evaluation/provenance.py) and no absolute machine paths in committed results."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgecxr.core.card import sha256_of
from edgecxr.evaluation.provenance import OUTSIDE_REPO, REPO_ROOT, command_line, git_state, record, repo_relative

REPO = Path(__file__).resolve().parents[1]
# Committed result folders that must hold no machine path. edgecxr/models joins them once the
# bundled cards' training commands are migrated (issue 17, branch `card`).
COMMITTED_RESULTS = ("benchmarks/results", "training/results", "edgecxr/models")
MACHINE_PATH = re.compile(r"/(work|root|home)/")
# A folder two levels away from the checkout, wherever the checkout is (tmp_path may sit right beside it).
FAR = REPO_ROOT.parent.parent / "edgecxr-elsewhere" / "scratch"


@pytest.mark.train  # checkout tools: edgecxr imported from the checkout, as the train install is
def test_record_has_every_key_and_the_model_sha256():
    model = REPO / "edgecxr" / "models" / "mlp12-int8.tflite"
    rec = record(["python -m benchmarks.trust", "--data", str(FAR / "data"), "--model", str(model)], models=[model])
    assert set(rec) == {"command", "git", "versions", "utc_time", "models"}
    assert rec["command"] == (f"python -m benchmarks.trust --data {OUTSIDE_REPO}/{FAR.name}/data "
                              "--model edgecxr/models/mlp12-int8.tflite")
    assert rec["models"] == {"edgecxr/models/mlp12-int8.tflite": sha256_of(model)}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", rec["utc_time"])
    versions = rec["versions"]
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))
    assert {"numpy", "opencv"} <= set(versions) and ("ai_edge_litert" in versions or "tflite_runtime" in versions)
    assert "models" not in record(["x"])


@pytest.mark.train  # checkout tools: edgecxr imported from the checkout, as the train install is
def test_git_state_is_this_checkout_or_none(tmp_path):
    state = git_state()
    if (REPO / ".git").exists():
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        assert set(state) == {"commit", "dirty"} and state["commit"] == head and isinstance(state["dirty"], bool)
    assert git_state(tmp_path) is None  # not a checkout


def test_paths_are_repo_relative_and_never_absolute():
    assert repo_relative(REPO_ROOT / "runs" / "resnet18") == "runs/resnet18"
    assert repo_relative(REPO_ROOT) == "."
    assert repo_relative(REPO_ROOT.parent / "shared" / "data" / "cxr3") == "../shared/data/cxr3"  # beside the checkout (a link too)
    assert repo_relative("/home/alice/scans/run7/best.keras") == f"{OUTSIDE_REPO}/run7/best.keras"
    assert repo_relative("runs/x", cwd=FAR) == f"{OUTSIDE_REPO}/runs/x"  # relative paths are taken from where the command ran
    line = command_line(["python -m training", "data/cxr3", f"--out={FAR}/run", "--lr", "3e-4", "--init-from", str(REPO_ROOT / "r")], cwd=FAR)
    assert line == f"python -m training {OUTSIDE_REPO}/data/cxr3 --out={OUTSIDE_REPO}/{FAR.name}/run --lr 3e-4 --init-from r"
    assert not any(token.startswith("/") or "=/" in token for token in line.split())


def test_a_checkout_at_the_filesystem_root_keeps_other_folders_out():
    assert repo_relative("/home/alice/data", root=Path("/edgecxr")) == f"{OUTSIDE_REPO}/alice/data"
    assert repo_relative("/edgecxr/runs/a", root=Path("/edgecxr")) == "runs/a"


@pytest.mark.parametrize("folder", COMMITTED_RESULTS)
def test_committed_results_hold_no_machine_paths(folder):
    files = [p for p in sorted((REPO / folder).rglob("*")) if p.suffix in (".json", ".md", ".csv", ".txt")]
    assert files
    found = [f"{p.relative_to(REPO)}: {m.group(0)}" for p in files for m in [MACHINE_PATH.search(p.read_text())] if m]
    assert found == []


def test_a_recorded_command_is_made_repo_relative_as_the_converter_does():
    """converters/build.py passes run.json's command through command_line, taking it as typed at the checkout root."""
    old = f"python -m training ../shared/data/cxr3 --out {REPO_ROOT.parent}/runs/mlp12-64 --family mlp12 --lr 3e-4"
    expected = "python -m training ../shared/data/cxr3 --out ../runs/mlp12-64 --family mlp12 --lr 3e-4"
    assert command_line(old.split(), cwd=REPO_ROOT) == expected
    assert command_line(expected.split(), cwd=REPO_ROOT) == expected  # a new record stays as it is
