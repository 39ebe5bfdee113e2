"""The Python API: :func:`load_model` and :class:`Model.predict` returning a :class:`Prediction`."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from edgecxr import registry
from edgecxr.card import ModelError, read_card, verify_file
from edgecxr.checks import input_warnings
from edgecxr.imageio import LoadedImage, from_array, load_image
from edgecxr.interpreter import make_interpreter
from edgecxr.preprocess import preprocess

ImageSource = Union[str, os.PathLike, np.ndarray, LoadedImage]


@dataclass
class Prediction:
    """One image's answer; :meth:`to_dict` is the JSON line ``edgecxr predict --json`` prints."""

    label: str
    probabilities: dict[str, float]
    latency_ms: float
    model: str
    file: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "model": self.model,
            "label": self.label,
            "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
            "latency_ms": round(self.latency_ms, 3),
            "warnings": list(self.warnings),
        }


class Model:
    """A verified ``.tflite`` model with its card, ready to predict."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None, xnnpack: bool = True) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: no such model file")
        self.card = read_card(self.path)
        verify_file(self.path, self.card)
        try:
            self.interpreter = make_interpreter(str(self.path), threads=threads, xnnpack=xnnpack)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{self.path}: not a valid TFLite model ({exc})") from None
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        n_out = int(self._output["shape"][-1])
        if n_out != len(self.labels):
            raise ModelError(f"{self.path}: model has {n_out} outputs but its card lists {len(self.labels)} labels")
        height, width = self.card["preprocessing"]["size"]
        if tuple(self._input["shape"][1:3]) != (height, width):
            raise ModelError(f"{self.path}: input shape {list(self._input['shape'])} does not match card size {[height, width]}")

    @property
    def name(self) -> str:
        return str(self.card["name"])

    @property
    def labels(self) -> list[str]:
        return list(self.card["labels"])

    @property
    def input_details(self) -> dict[str, Any]:
        """The interpreter's description of the input tensor (shape, dtype, quantization)."""
        return self._input

    @property
    def output_details(self) -> dict[str, Any]:
        return self._output

    def predict(self, image: ImageSource) -> Prediction:
        """Predict one image: a file path (any supported format, DICOM included) or a numpy array."""
        loaded, file = _as_loaded(image)
        start = time.perf_counter()
        probs = self.predict_preprocessed(preprocess(loaded.pixels, self.card["preprocessing"]))
        latency = (time.perf_counter() - start) * 1000.0
        best = int(np.argmax(probs))
        return Prediction(
            label=self.labels[best],
            probabilities={label: float(p) for label, p in zip(self.labels, probs)},
            latency_ms=latency,
            model=self.name,
            file=file,
            warnings=input_warnings(loaded),
        )

    def predict_preprocessed(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for one preprocessed (H, W, 1) float image."""
        self.interpreter.set_tensor(self._input["index"], self.quantize_input(x[None]))
        self.interpreter.invoke()
        return self.dequantize_output(self.interpreter.get_tensor(self._output["index"])[0])

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Float input in model units to the input tensor's dtype, with its own scale and zero point."""
        dtype = np.dtype(self._input["dtype"])
        if dtype.kind == "f":
            return x.astype(dtype)
        scale, zero = self._input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        """Output tensor to probabilities that sum to 1."""
        if np.dtype(self._output["dtype"]).kind != "f":
            scale, zero = self._output["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        y = np.clip(y.astype(np.float32), 0.0, None)
        total = float(y.sum())
        return y / total if total > 0 else np.full_like(y, 1.0 / len(y))


def load_model(name: str | os.PathLike | None = None, threads: int | None = None, xnnpack: bool = True) -> Model:
    """The bundled default model, a bundled model by name, or a ``.tflite`` path with its card beside it."""
    return Model(registry.resolve(name), threads=threads, xnnpack=xnnpack)


def _as_loaded(image: ImageSource) -> tuple[LoadedImage, str | None]:
    if isinstance(image, LoadedImage):
        return image, None
    if isinstance(image, np.ndarray):
        return from_array(image), None
    return load_image(image), str(image)
