"""Finding a TFLite interpreter without importing TensorFlow unless nothing else is there.

Order: ``ai_edge_litert`` (LiteRT), then ``tflite_runtime``, then ``tensorflow.lite`` as a
last resort (a machine with the ``train`` extra only). The one line LiteRT prints on stderr when
the first interpreter of a process is built (:data:`XNNPACK_INFO`) is held back; anything else it
prints then is passed on.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

from edgecxr.quiet import native_stderr

_CANDIDATES = (
    ("ai_edge_litert", "ai_edge_litert.interpreter"),
    ("tflite_runtime", "tflite_runtime.interpreter"),
    ("tensorflow", "tensorflow.lite.python.interpreter"),
)
XNNPACK_INFO = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


def interpreter_module() -> tuple[str, Any]:
    """(package name, module holding ``Interpreter``) of the first interpreter that imports."""
    for package, module in _CANDIDATES:
        try:
            return package, importlib.import_module(module)
        except ImportError:
            continue
    raise ImportError("no TFLite interpreter found: pip install ai-edge-litert (or tflite-runtime)")


def interpreter_package() -> str | None:
    """The package :func:`interpreter_module` would use, found without importing it (None if there is none)."""
    return next((package for package, _ in _CANDIDATES if importlib.util.find_spec(package)), None)


def interpreter_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in (package.replace("_", "-"), package, "tensorflow-cpu"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "unknown"


def make_interpreter(model_path: str, threads: int | None = None, xnnpack: bool = True) -> Any:
    """An allocated interpreter for ``model_path``; ``xnnpack=False`` disables the default delegate."""
    _, module = interpreter_module()
    kwargs: dict[str, Any] = {"model_path": model_path, "num_threads": threads}
    if not xnnpack:
        kwargs["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        with native_stderr() as said:  # the delegate is made, and its INFO line printed, by the constructor or allocate_tensors
            interpreter = module.Interpreter(**kwargs)
            interpreter.allocate_tensors()
    finally:  # also for a model LiteRT refuses: what it said about it is shown
        _pass_on(said.text)
    return interpreter


def dims(detail: dict[str, Any]) -> list[int]:
    """A tensor's shape from the interpreter (an array of numpy ints) as plain ints, as messages print it: ``[1, 128, 128, 1]``."""
    return [int(v) for v in detail["shape"]]


def _pass_on(text: str) -> None:
    """Write what the interpreter printed on stderr back to stderr, without LiteRT's XNNPACK INFO line."""
    kept = [line for line in text.splitlines(keepends=True) if line.strip() != XNNPACK_INFO]
    if kept and sys.stderr is not None:
        sys.stderr.write("".join(kept))
