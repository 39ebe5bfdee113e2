"""Provenance of a record: which code, command, libraries and model files made it, and when.

:func:`record` gives ``command``, ``git``, ``versions``, ``utc_time`` and, when model files are
given, ``models`` ({path: sha256}); training runs, model cards and the committed benchmark
reports store it. TensorFlow-free: git is asked through a subprocess, and TensorFlow and tf_keras
are reported only when the process has already imported them.

Paths never appear as absolute machine paths. :func:`repo_relative` writes a path inside the
checkout relative to its root (``runs/resnet18``), a path in a folder beside the checkout as the
relative path typed from the checkout root (``../shared/data/cxr3``, the layout the README
documents), and any other path as ``<outside-repo>/<folder>/<name>``: enough to tell two files
apart, nothing about where the machine keeps them. Relative paths are taken from the current
directory, as the command that was typed did.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgecxr.core.card import sha256_of

REPO_ROOT = Path(__file__).resolve().parents[2]  # the checkout holding this package
OUTSIDE_REPO = "<outside-repo>"
# Reported only when already imported: recording must not import TensorFlow into a runtime process.
IMPORTED_ONLY = {"tensorflow": "tensorflow", "tf_keras": "tf_keras", "tensorflow_model_optimization": "tfmot"}


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (``2026-11-23T14:38:46+00:00``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def repo_relative(path: str | os.PathLike, cwd: str | os.PathLike | None = None, root: Path = REPO_ROOT) -> str:
    """``path`` (relative ones taken from ``cwd``, default the current directory) without machine parts; see the module docstring."""
    given = Path(os.path.abspath(Path(cwd or os.getcwd(), path)))
    # As written first (a ../shared that is a symlink is still beside the checkout), then with links followed.
    for full in (given, given.resolve()):
        rel = Path(os.path.relpath(full, root))
        ups = rel.parts.count("..")
        beside = ups == 1 and root.parent != Path(root.anchor)  # a sibling folder; not when the checkout sits at /
        if ups == 0 or beside:
            return rel.as_posix()
    return "/".join((OUTSIDE_REPO, *given.parts[1:][-2:]))


def command_line(argv: Sequence[str], cwd: str | os.PathLike | None = None) -> str:
    """The command ``argv`` as one line, every path in it (a token, or ``--opt=VALUE``, with a ``/``) made repo-relative."""
    def one(token: str) -> str:
        option, sep, value = token.partition("=") if token.startswith("-") else ("", "", token)
        return f"{option}{sep}{repo_relative(value, cwd)}" if "/" in value else token

    return " ".join(one(t) for t in argv)


def git_state(root: Path = REPO_ROOT) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the checkout at ``root``; None when it is not a git checkout (or git is missing)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=30).stdout

    try:
        top, commit = git("rev-parse", "--show-toplevel", "HEAD").split()
        if Path(top).resolve() != root.resolve():  # a repository around an installed package is not this one
            return None
        return {"commit": commit, "dirty": bool(git("status", "--porcelain").strip())}
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def versions() -> dict[str, str]:
    """Versions of Python, numpy, OpenCV and the TFLite interpreter package (keyed by its name, e.g. ``ai_edge_litert``);
    of TensorFlow, tf_keras and tfmot only if already imported."""
    import cv2
    import numpy as np

    from edgecxr.core.interpreter import interpreter_package, interpreter_version

    out = {"python": platform.python_version(), "numpy": np.__version__, "opencv": cv2.__version__}
    package = interpreter_package()
    if package:
        out[package] = interpreter_version(package)
    for module, key in IMPORTED_ONLY.items():
        if module in sys.modules:
            out[key] = str(getattr(sys.modules[module], "__version__", "unknown"))
    return out


def invocation(prog: str, args: Sequence[str] | None = None) -> list[str]:
    """The command a ``main(argv)`` runs as: ``prog`` (e.g. ``python -m training``) and ``args``, default ``sys.argv[1:]``."""
    return [prog, *(sys.argv[1:] if args is None else args)]


def record(argv: Sequence[str], models: Iterable[str | os.PathLike] = ()) -> dict[str, Any]:
    """``command`` (repo-relative), ``git``, ``versions``, ``utc_time`` and, for ``models`` given, ``models`` {path: sha256}."""
    out: dict[str, Any] = {"command": command_line(argv), "git": git_state(), "versions": versions(), "utc_time": utc_now()}
    paths = list(models)
    if paths:
        out["models"] = {repo_relative(p): sha256_of(p) for p in paths}
    return out
