"""Finding a TFLite interpreter without importing TensorFlow unless nothing else is there.

Order: ``ai_edge_litert`` (LiteRT), then ``tflite_runtime``, then ``tensorflow.lite`` as a
last resort (a machine with the ``train`` extra only).
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Any

_CANDIDATES = (
    ("ai_edge_litert", "ai_edge_litert.interpreter"),
    ("tflite_runtime", "tflite_runtime.interpreter"),
    ("tensorflow", "tensorflow.lite.python.interpreter"),
)


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
    interpreter = module.Interpreter(**kwargs)
    interpreter.allocate_tensors()
    return interpreter
