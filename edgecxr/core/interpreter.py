"""Finding a TFLite interpreter without importing TensorFlow unless nothing else is there, and opening a model on it.

What every model of the runtime (the classifiers' :class:`~edgecxr.core.model.Model`, the lung
model) does with an interpreter lives here: :func:`open_verified` (the card checked against the
file, then an interpreter), :func:`quantize` / :func:`dequantize` (tensors in their own units).

Order: ``ai_edge_litert`` (LiteRT), then ``tflite_runtime``, then ``tensorflow.lite`` as a
last resort (a machine with the ``train`` extra only). The one line LiteRT prints on stderr when
the first interpreter of a process is built (:data:`XNNPACK_INFO`) is held back; anything else it
prints then is passed on.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgecxr.core.card import ModelCard, ModelError, read_card, verify_file
from edgecxr.core.quiet import native_stderr

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


def open_verified(path: Path, threads: int | None = None, xnnpack: bool = True) -> tuple[ModelCard, Any]:
    """The card of the ``.tflite`` at ``path``, checked against the file, and an interpreter for it; ModelError otherwise."""
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    card = read_card(path)
    verify_file(path, card)
    try:
        return card, make_interpreter(str(path), threads=threads, xnnpack=xnnpack)
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"{path}: not a valid TFLite model ({exc})") from None


class VerifiedModel:
    """A ``.tflite`` opened through :func:`open_verified`: its ``path``, checked ``card``, ``interpreter`` and input tensor.

    The classifier (:class:`edgecxr.core.model.Model`) and the lung model
    (:class:`edgecxr.core.lungs.LungModel`) both start here and check their own outputs.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None, xnnpack: bool = True) -> None:
        self.path = Path(path)
        self.card, self.interpreter = open_verified(self.path, threads, xnnpack)
        self._input: dict[str, Any] = self.interpreter.get_input_details()[0]
        self._output: dict[str, Any] = {}  # the output tensor the model reads, set by the subclass

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def input_details(self) -> dict[str, Any]:
        """The interpreter's description of the input tensor (shape, dtype, quantization)."""
        return self._input

    @property
    def output_details(self) -> dict[str, Any]:
        """The description of the output tensor the model reads (class probabilities, or the lung probability)."""
        return self._output


def quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Float values to a tensor's dtype, with its own scale and zero point when it is quantized."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def dequantize(tensor: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """A tensor in float32, using its own scale and zero point when it is quantized."""
    if np.dtype(detail["dtype"]).kind == "f":
        return tensor.astype(np.float32)
    scale, zero = detail["quantization"]
    return (tensor.astype(np.float32) - zero) * scale
