"""TensorFlow stays off the fast paths: an unknown family is refused before TF loads, the trust report without --keras (with --reference)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_LABELS, write_png
from edgecxr.core.card import sha256_of
from edgecxr.evaluation.provenance import repo_relative

REPO = Path(__file__).resolve().parents[1]
# Printed by each child after its work: the TensorFlow modules it imported.
TF_MODULES = 'print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras")))'


def run_python(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_unknown_family_is_refused_with_the_list(capsys):
    from edgecxr.core.families import names
    from training.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["data", "--out", "run", "--family", "vgg"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'vgg'" in err and all(f"'{name}'" in err for name in names("classification")) and "'lungs'" not in err


@pytest.mark.train  # the report's plots need matplotlib (train extra)
def test_trust_report_without_keras_imports_no_tensorflow(tiny_models, tmp_path):
    data, out = tmp_path / "data", tmp_path / "trust"
    for split, n in (("train", 1), ("test", 4)):
        for cls, label in enumerate(TINY_LABELS):
            for i in range(n):
                write_png(data / split / label / f"{i}.png", cls, seed=i)
    model, reference = tiny_models["int8"], tiny_models["float32"]
    script = "\n".join([
        "import sys",
        "import benchmarks.trust as trust",
        "trust.WRONG_INPUTS_PER_KIND = 3  # a small sample: this checks what is imported, not the report",
        f"code = trust.main(['--model', {str(model)!r}, '--reference', {str(reference)!r}, '--data', {str(data)!r}, '--out', {str(out)!r}])",
        "assert code == 0, code",
        TF_MODULES,
    ])
    done = run_python(script)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "[]"
    report = json.loads((out / "trust.json").read_text())
    assert report["test_images"] == 12
    provenance = report["provenance"]
    assert provenance["models"] == {repo_relative(model): sha256_of(model), repo_relative(reference): sha256_of(reference)}
    assert report["heatmaps"]["vs_reference_cam"]["images"] == 12 and report["heatmaps"]["vs_reference_cam"]["p5"] > 0.9
    assert provenance["command"].startswith(f"python -m benchmarks.trust --model {repo_relative(model)} --reference {repo_relative(reference)} --data ")
    assert "tensorflow" not in provenance["versions"] and provenance["utc_time"]
