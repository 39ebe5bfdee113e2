"""Which edgecxr the tests exercise: this checkout's in the full suite, the installed package in the runtime tier.

``.ci/run`` sets ``EDGECXR_RUNTIME_TIER=1`` when it runs the board tier (``pytest -m "not train and not
slow and not clinic"``) in a venv holding only the wheel with its test extra, the install a board gets,
and the clinic tests once the clinic extra is added: tested as installed, built from a clean tree.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import edgecxr
from conftest import REPO, child_env

RUNTIME_TIER = os.environ.get("EDGECXR_RUNTIME_TIER") == "1"


def test_the_edgecxr_under_test_is_the_one_this_tier_promises():
    package = Path(edgecxr.__file__).resolve().parent
    if RUNTIME_TIER:
        site = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
        assert package.parent in site, (
            f"the runtime tier imports {package}, not the installed package: run it with the `pytest` "
            "command (`python -m pytest` puts the checkout first on sys.path)"
        )
        assert importlib.util.find_spec("tensorflow") is None, "the runtime tier must run where TensorFlow is not installed"
        checkout = {p.relative_to(REPO / "edgecxr") for p in (REPO / "edgecxr").rglob("*.py")}
        stale = sorted(str(p.relative_to(package)) for p in package.rglob("*.py") if p.relative_to(package) not in checkout)
        assert not stale, f"the installed package holds modules this checkout lacks (built from a stale build/?): {stale}"
    else:
        assert package == REPO / "edgecxr", f"the tests import {package}, not this checkout's edgecxr"


def test_a_child_python_imports_the_same_edgecxr(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import edgecxr; print(edgecxr.__file__)"], cwd=tmp_path, env=child_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).resolve() == Path(edgecxr.__file__).resolve()
