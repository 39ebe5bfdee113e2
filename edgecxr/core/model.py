"""The Python API: :func:`load_model` and :class:`Model.predict` returning a :class:`Prediction`."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecxr.core import registry
from edgecxr.core.calibration import LOGITS_FLOOR, PROBABILITY_FLOOR, apply_temperature, softmax
from edgecxr.core.cam import class_activation_map, heatmap_shape, normalise
from edgecxr.core.card import ModelError
from edgecxr.core.checks import PROFILES, Check, input_checks, refuse_blank
from edgecxr.core.imageio import ImageSource, LoadedImage, as_loaded, load_image
from edgecxr.core.interpreter import VerifiedModel, dequantize, dims, quantize
from edgecxr.core.lungs import load_lung_model, lung_fields, lung_model_for, spec_box
from edgecxr.core.preprocess import Box, preprocess, scale_box, to_original
from edgecxr.core.site import NORMAL, SiteSource, resolve_site

TIE_DECIMALS = 3  # probabilities are shown to 3 decimals; labels equal at that precision are a tie


@dataclass
class Prediction:
    """One image's answer; :meth:`to_dict` is the JSON line ``edgecxr predict --json`` prints."""

    label: str
    probabilities: dict[str, float]
    latency_ms: float  # all model work on the decoded film: lung pass, preprocessing, classifier, checks, heatmap (not the decode)
    model: str
    file: str | None = None
    checks: list[Check] = field(default_factory=list)
    # (H, W) float32 in [0, 1] over the input image when asked for; at most HEATMAP_MAX_SIDE px long
    heatmap: np.ndarray | None = None
    # the class the heatmap shows: the predicted one, or for a Normal call the most likely abnormal class (heatmap_class)
    heatmap_label: str | None = None
    # with a heatmap: the lung fields the lung model found, bool at the heatmap's shape (None when it found none)
    lungs: np.ndarray | None = None
    # with a site profile: whether any target's score reached its threshold, and those operating points
    refer: bool | None = None
    operating_point: list[dict[str, Any]] | None = None
    head: str = "bundled"  # which classifier head gave the probabilities: "site" (a site profile's) or "bundled" (the card's)
    # latency_ms by stage, in the order run: "lungs" (the lung model's pass), "classifier" (preprocessing and invoke), "checks", "heatmap"
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        """The messages of the checks that fired, for people."""
        return [c.message for c in self.checks]

    @property
    def tied(self) -> list[str]:
        """The labels sharing the top probability as it is shown (to :data:`TIE_DECIMALS`) when there are several, else [].

        ``label`` is then the first of them in the card's order: the model does not tell them apart.
        """
        top = round(max(self.probabilities.values()), TIE_DECIMALS)
        tied = [k for k, v in self.probabilities.items() if round(v, TIE_DECIMALS) == top]
        return tied if len(tied) > 1 else []

    @property
    def abnormal_score(self) -> float | None:
        """1 - p(Normal), calibrated: how likely the film is not normal; None for a model without a Normal label."""
        return 1.0 - self.probabilities[NORMAL] if NORMAL in self.probabilities else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "model": self.model,
            "label": self.label,
            "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
            "latency_ms": round(self.latency_ms, 3),
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            "warnings": self.warnings,
            "checks": [c.to_dict() for c in self.checks],
            "abnormal_score": None if self.abnormal_score is None else round(self.abnormal_score, 6),
            "tied": self.tied,
            "head": self.head,
            **({"heatmap_label": self.heatmap_label} if self.heatmap_label is not None else {}),
            **({"refer": self.refer, "operating_point": self.operating_point} if self.refer is not None else {}),
        }


class Model(VerifiedModel):
    """A verified ``.tflite`` model with its card, ready to predict; with a site profile (:mod:`edgecxr.core.site`), also refer / no refer.

    ``site``: a profile or its path (refused when made for another model), True for the profile
    installed for this model if there is one, None for none. A profile's temperature replaces the card's,
    and a profile's site head (``edgecxr adapt``) replaces the card's dense layer: its probabilities,
    label and heatmap then come from the site head.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None, xnnpack: bool = True, site: SiteSource = None) -> None:
        super().__init__(path, threads, xnnpack)
        self.site = resolve_site(site, self.card)
        self._output, self._features = _split_outputs(self.interpreter.get_output_details(), self.path)
        n_out = int(self._output["shape"][-1])
        if n_out != len(self.labels):
            raise ModelError(f"{self.path}: model has {n_out} outputs but its card lists {len(self.labels)} labels")
        spec = self.card.preprocessing
        if tuple(self._input["shape"][1:3]) != spec.size:
            raise ModelError(f"{self.path}: input shape {dims(self._input)} does not match card size {list(spec.size)}")
        self._cam_weights = self._read_cam_weights()
        self.head = self.site.head if self.site else None
        if self.head is not None:  # the heatmap shows the evidence the site head weighs: logits = pooled @ (W / scale) + const
            self._cam_weights = self.head.cam_weights(self.labels).astype(np.float32)
        self.temperature = self.site.temperature if self.site else self.card.temperature.value if self.card.temperature else 1.0
        # is the model input the whole film, area-resized? (the checks reuse it)
        self._whole_film_area = spec.crop == "none" and not spec.clahe and spec.interpolation == "area"
        self.check_profile = self.card.checks  # which input checks apply to this model's films
        if spec.crop == "lungs":
            try:  # a spec made for another lung model is refused here, not per image
                lung_model_for(spec.lung_model)
            except ModelError as exc:
                raise ModelError(f"{self.path}: {exc}") from None

    @property
    def labels(self) -> list[str]:
        return list(self.card.labels)

    def read(self, path: str | os.PathLike) -> LoadedImage:
        """An image file decoded as this model's card says (a large JPEG at a reduced size: the spec's ``decode_min_side``).

        What :meth:`predict` does with a path; read a file with :func:`edgecxr.core.imageio.load_image` instead for a picture of
        the film at its own size (``predict`` given that reads a JPEG again by the card's rule).
        """
        return load_image(path, self.card.preprocessing.decode_min_side)

    @property
    def feature_details(self) -> dict[str, Any] | None:
        """The feature-map output tensor's description (heatmap models only)."""
        return self._features

    @property
    def has_heatmap(self) -> bool:
        """Whether this model exports a feature map and its card the dense weights a heatmap needs."""
        return self._cam_weights is not None

    def predict(self, image: ImageSource, heatmap: bool = False) -> Prediction:
        """Predict one image: a file path (any supported format, DICOM included), a loaded image or a numpy array.

        A file is decoded as the card says (:meth:`read`). The heatmap and ``lungs`` are over the image passed
        (a loaded image's ``pixels``; for a path, the film as the model read it: a large JPEG's reduced decode).
        Probabilities are temperature-calibrated when the card holds a temperature. With
        ``heatmap=True`` the prediction carries an activation map over the input image (ModelError
        for a model without one, such as MLP-12): of the predicted class, or for a Normal call of
        the most likely abnormal class (``heatmap_label`` says which), and the lung fields it is
        shown in (``lungs``; :func:`edgecxr.core.picture.result_picture` draws both).
        """
        if heatmap and not self.has_heatmap:
            raise ModelError(f"{self.name}: no heatmap available ({self.card.family or 'this'} model has no spatial feature map)")
        loaded, file = as_loaded(image, self.card.preprocessing.decode_min_side)
        refuse_blank(loaded, file)
        spec = self.card.preprocessing
        lung_check = "no_lungs" in PROFILES[self.check_profile]
        clock = _Stopwatch()
        lungs = None
        if spec.crop == "lungs":  # the crop's lung pass comes first, and serves the check and the heatmap's bounds too
            lungs = lung_fields(loaded.pixels, spec.lung_model)
            clock.lap("lungs")
        box = lungs.box() if lungs is not None else spec_box(loaded.pixels, spec)
        x = preprocess(loaded.pixels, spec, box)
        probs, features = self._run(x, features=heatmap)
        clock.lap("classifier")
        if lungs is None and (lung_check or heatmap):  # for the check and the heatmap's bounds, from the classifier's whole-film input when it is one
            lungs = lung_fields(loaded.pixels, None, x if self._whole_film_area else None)
            clock.lap("lungs")
        best = int(np.argmax(probs))
        checks = input_checks(loaded, x if self._whole_film_area else None, self.check_profile)
        if lungs is not None and lung_check:
            checks += lungs.checks()
        clock.lap("checks")
        heat, shown, fields = None, None, None
        if heatmap:
            shown = self.heatmap_class(probs)
            over = image.pixels.shape if isinstance(image, LoadedImage) else loaded.pixels.shape  # the image the caller holds
            heat = self._heatmap(features, shown, loaded.pixels.shape, box, over)
            if not heat.any():
                checks.append(Check("empty_heatmap", f"heatmap is empty: no positive evidence for {self.labels[shown]} anywhere in the image"))
            fields = lungs.mask(heat.shape) if lungs is not None and lungs.found else None
            clock.lap("heatmap")
        return Prediction(
            label=self.labels[best],
            probabilities={label: float(p) for label, p in zip(self.labels, probs)},
            latency_ms=clock.total(),
            model=self.name,
            file=file,
            checks=checks,
            heatmap=heat,
            heatmap_label=None if shown is None else self.labels[shown],
            lungs=fields,
            refer=self.site.decide(probs, self.labels) if self.site else None,
            operating_point=[p.to_dict() for p in self.site.points] if self.site else None,
            head=self.site.head_name if self.site else "bundled",
            timings_ms=clock.laps,
        )

    def heatmap_class(self, probs: np.ndarray) -> int:
        """The class a heatmap shows for probabilities ``probs``: the predicted one, or for a Normal call the most likely other class.

        A map of the evidence for Normal says little to a reader; the one of the abnormal class the
        model rates highest shows what it weighed against it.
        """
        best = int(np.argmax(probs))
        others = [i for i, label in enumerate(self.labels) if label != NORMAL]
        if self.labels[best] != NORMAL or not others:
            return best
        return max(others, key=lambda i: float(probs[i]))

    def bundled_outputs(self, image: ImageSource) -> tuple[np.ndarray, np.ndarray]:
        """The card head's raw softmax (label order) and the pooled feature map (K,) of one image: what a site head is fitted on.

        ModelError for a model without a feature output (MLP-12). No input checks, no site head.
        """
        if self._features is None:
            raise ModelError(f"{self.name}: no feature output ({self.card.family or 'this'} model has no feature map for a site head to read)")
        loaded, file = as_loaded(image, self.card.preprocessing.decode_min_side)
        refuse_blank(loaded, file)
        spec = self.card.preprocessing
        x = preprocess(loaded.pixels, spec, spec_box(loaded.pixels, spec))
        self.interpreter.set_tensor(self._input["index"], self.quantize_input(x[None]))
        self.interpreter.invoke()
        raw = self.output_probabilities(self.interpreter.get_tensor(self._output["index"])[0], calibrated=False)
        return raw, pooled(dequantize(self.interpreter.get_tensor(self._features["index"])[0], self._features))

    def probabilities(self, image: ImageSource, calibrated: bool = True) -> np.ndarray:
        """Class probabilities (label order) of one image, without the input checks; the raw softmax if not ``calibrated``."""
        loaded, file = as_loaded(image, self.card.preprocessing.decode_min_side)
        refuse_blank(loaded, file)
        spec = self.card.preprocessing
        return self.predict_preprocessed(preprocess(loaded.pixels, spec, spec_box(loaded.pixels, spec)), calibrated)

    def lungs(self, image: ImageSource) -> np.ndarray:
        """The lung fields of ``image`` from the bundled lung model: uint8 0/255 at the input's size (see :mod:`edgecxr.core.lungs`)."""
        return load_lung_model().lungs(image)

    def predict_preprocessed(self, x: np.ndarray, calibrated: bool = True) -> np.ndarray:
        """Class probabilities for one preprocessed (H, W, 1) float image (raw softmax if not ``calibrated``)."""
        return self._run(x, calibrated, features=False)[0]

    def class_activation_map(self, x: np.ndarray, class_index: int) -> np.ndarray:
        """The raw (h, w) activation map of ``class_index`` for one preprocessed image, from the model's own feature map."""
        if not self.has_heatmap:
            raise ModelError(f"{self.name}: no heatmap available")
        return self._cam(self._run(x, features=True)[1], class_index)

    def _run(self, x: np.ndarray, calibrated: bool = True, features: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        self.interpreter.set_tensor(self._input["index"], self.quantize_input(x[None]))
        self.interpreter.invoke()
        if self.head is not None:
            assert self._features is not None, "resolve_site refuses a head for a model without a feature output"
            fmap = dequantize(self.interpreter.get_tensor(self._features["index"])[0], self._features)
            return self.head.probabilities(pooled(fmap)[None], self.labels, calibrated)[0], fmap if features else None
        probs = self.output_probabilities(self.interpreter.get_tensor(self._output["index"])[0], calibrated)
        if not features or self._features is None:
            return probs, None
        return probs, dequantize(self.interpreter.get_tensor(self._features["index"])[0], self._features)

    def _cam(self, features: np.ndarray | None, class_index: int) -> np.ndarray:
        assert features is not None and self._cam_weights is not None, "callers check has_heatmap"
        return class_activation_map(features, self._cam_weights, class_index)

    def _heatmap(self, features: np.ndarray | None, class_index: int, shape: tuple[int, int], box: Box, over: tuple[int, int]) -> np.ndarray:
        """The heatmap over an image of shape ``over`` (``box``: the crop over the ``shape`` image the model read)."""
        cam = self._cam(features, class_index)
        out_shape = heatmap_shape(over)
        return normalise(to_original(cam, out_shape, self.card.preprocessing, scale_box(box, shape, out_shape)))

    def _read_cam_weights(self) -> np.ndarray | None:
        cam = self.card.cam
        if cam is None or self._features is None:
            return None
        weights = np.asarray(cam.weights, np.float32)
        expected = (int(self._features["shape"][-1]), len(self.labels))
        if weights.shape != expected:
            raise ModelError(f"{self.path}: card's heatmap weights have shape {weights.shape}, model needs {expected}")
        return weights

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Float input in model units to the input tensor's dtype, with its own scale and zero point."""
        return quantize(x, self._input)

    def output_probabilities(self, y: np.ndarray, calibrated: bool = True) -> np.ndarray:
        """The output tensor as class probabilities, temperature-calibrated unless not ``calibrated``.

        A ``logits`` model's output goes through the softmax here, in float, so an int8 model's
        probabilities are not limited to the int8 output's steps; a ``probabilities`` model's
        output is dequantized and renormalised. Calibration is :meth:`recalibrated`.
        """
        raw = softmax(dequantize(y, self._output)) if self.card.output_kind == "logits" else self.dequantize_output(y)
        return self.recalibrated(raw, self.temperature) if calibrated else raw

    def recalibrated(self, raw: np.ndarray, temperature: float) -> np.ndarray:
        """Uncalibrated probabilities (…, C) of this model as it gives them at ``temperature``.

        For a ``logits`` model that is the softmax of the logits divided by ``temperature``; a
        ``probabilities`` model's int8 zeros are floored at :data:`edgecxr.core.calibration.PROBABILITY_FLOOR` first.
        """
        if temperature == 1.0:
            return raw
        return apply_temperature(raw, temperature, LOGITS_FLOOR if self.card.output_kind == "logits" else PROBABILITY_FLOOR)

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        """A ``probabilities`` output tensor to probabilities that sum to 1."""
        y = np.clip(dequantize(y, self._output), 0.0, None)
        total = float(y.sum())
        return y / total if total > 0 else np.full_like(y, 1.0 / len(y))


def load_model(name: str | os.PathLike | None = None, threads: int | None = None, xnnpack: bool = True, site: SiteSource = None) -> Model:
    """The bundled default model, a bundled model by name, or a ``.tflite`` path with its card beside it.

    ``site``: a site profile's path (``edgecxr calibrate --out``), True for the one installed for
    this model if any, None for none (see :class:`Model`).
    """
    return Model(registry.resolve(name), threads=threads, xnnpack=xnnpack, site=site)


def pooled(feature_map: np.ndarray) -> np.ndarray:
    """A (h, w, K) feature map averaged over its rows and columns: the (K,) input of the dense head (global average pooling)."""
    return feature_map.reshape(-1, feature_map.shape[-1]).mean(axis=0)


class _Stopwatch:
    """Milliseconds per named stage since the previous lap (or since it was made)."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps[stage] = self.laps.get(stage, 0.0) + (now - self.last) * 1000.0
        self.last = now

    def total(self) -> float:
        return (self.last - self.started) * 1000.0


def _split_outputs(details: list[dict[str, Any]], path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(class-probability output, feature-map output or None): told apart by rank, not by order."""
    probs = [d for d in details if len(d["shape"]) == 2]
    maps = [d for d in details if len(d["shape"]) == 4]
    if len(probs) != 1 or len(maps) > 1 or len(probs) + len(maps) != len(details):
        raise ModelError(f"{path}: expected one (1, classes) output and at most one feature map, got shapes {[dims(d) for d in details]}")
    return probs[0], (maps[0] if maps else None)
