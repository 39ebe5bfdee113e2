"""A training run folder recovered from a float32 classifier ``.tflite``, for models whose Keras file is gone.

The bundled ResNet-18 and MLP-12 were converted from runs whose folders were not kept, so nothing
could be converted again (other variants, pruning, quantization-aware training). A float32
``.tflite`` still holds every weight: the Keras model of the card's family is built at the card's
input size (the ResNet's width read from its stem convolution) and given those weights, found by
the Keras layer names TFLite keeps in its tensor names. TFLite folds each BatchNormalization into
the convolution before it; the BatchNormalization layers get back statistics measured on training
films (mean and variance of the folded convolution's output) with a scale and offset that leave
the function unchanged, so fine-tuning sees normalised activations (the kernels are the folded
ones, so weight decay and gradients scale differently from the original training).

    python -m converters.recover FLOAT32.tflite --data ROOT --out RUN_DIR

Writes ``RUN_DIR/best.keras`` and ``RUN_DIR/run.json`` (the card's training record and the recorded
training command's settings, plus ``recovered_from``), which ``python -m converters`` reads like any
run. Refused unless the Keras model gives the ``.tflite``'s probabilities on the test split within
:data:`PARITY_TOLERANCE`.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import tf_keras as keras
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from converters.logits import builtin_code
from converters.verify import tflite_probabilities
from edgecxr.core.card import ModelError
from edgecxr.core.families import family as family_of
from edgecxr.core.model import Model
from edgecxr.evaluation.provenance import repo_relative
from training.__main__ import make_parser
from training.data import DatasetError
from training.multiroot import load_roots, manifest_digests, require_manifest

PARITY_TOLERANCE = 1e-4  # max |probability difference| on the test split, Keras vs the .tflite
# converters.quantize.exported copies the classifier's weights into a Dense named "logits"; older exports kept "classifier".
EXPORTED_LAYERS = {"logits": "classifier"}
STATISTICS_IMAGES = 1024  # training films the BatchNormalization statistics are measured on
RUN_ONLY_OPTIONS = ("data", "roots", "out", "resume", "init_from", "freeze_backbone", "strategy", "workers")  # about one run, not the model


def tflite_weights(flat: bytes, layers: Iterable[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Keras layer name -> (kernel in Keras layout, bias) of every CONV_2D and FULLY_CONNECTED op of a float32 ``.tflite``.

    The layer is the one of ``layers`` named by a path part of the weight tensor's name
    (``resnet18/stage1_block1_a_conv/Conv2D``); a weight tensor naming none or several, or two ops naming one
    layer, is a ValueError.
    """
    names = set(layers)
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flat))
    graph = model.subgraphs[0]
    kinds = {schema.BuiltinOperator.CONV_2D: (1, 2, 3, 0), schema.BuiltinOperator.FULLY_CONNECTED: (1, 0)}  # OHWI -> HWIO, OI -> IO
    weights: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for op in graph.operators:
        kind = builtin_code(model.operatorCodes[op.opcodeIndex])
        if kind not in kinds:
            continue
        tensor = graph.tensors[op.inputs[1]].name.decode()
        parts = {EXPORTED_LAYERS.get(part, part) for name in tensor.split(";") for part in name.split("/")}
        matches = parts & names
        if len(matches) != 1 or next(iter(matches)) in weights:
            raise ValueError(f"weight tensor {tensor!r} names {sorted(matches) or 'no layer'} of the model (or a layer named twice)")
        kernel = _array(model, graph.tensors[op.inputs[1]])
        has_bias = len(op.inputs) > 2 and op.inputs[2] >= 0  # the converter leaves out an all-zero bias
        bias = _array(model, graph.tensors[op.inputs[2]]) if has_bias else np.zeros(kernel.shape[0], np.float32)
        weights[matches.pop()] = (kernel.transpose(kinds[kind]), bias)
    return weights


def _array(model: Any, tensor: Any) -> np.ndarray:
    if tensor.type != schema.TensorType.FLOAT32:
        raise ValueError(f"tensor {tensor.name.decode()} is not float32: recover from the float32 model")
    return np.frombuffer(bytes(model.buffers[tensor.buffer].data), np.float32).reshape(tensor.shape).copy()


def rebuild(model: keras.Model, weights: dict[str, tuple[np.ndarray, np.ndarray]]) -> keras.Model:
    """``model`` (the family built as the run's command set it) given ``weights`` (:func:`tflite_weights`); each
    BatchNormalization after a convolution as identity plus the folded offset. ValueError when a layer and the weights do not fit."""
    by_name = {layer.name: layer for layer in model.layers}
    unused = set(weights) - {layer.name for layer in model.layers if layer.weights}
    if unused:
        raise ValueError(f"weights for layers the model does not have: {sorted(unused)}")
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) or not layer.weights:
            continue
        if layer.name not in weights:
            raise ValueError(f"layer {layer.name} has no weights in the .tflite")
        kernel, bias = weights[layer.name]
        try:
            if isinstance(layer, keras.layers.Conv2D):  # no bias of its own: the folded BatchNormalization after it takes it
                layer.set_weights([kernel])
                bn = by_name.get(layer.name.removesuffix("_conv") + "_bn")
                if not isinstance(bn, keras.layers.BatchNormalization):
                    raise ValueError(f"convolution {layer.name} has no BatchNormalization {layer.name.removesuffix('_conv')}_bn after it")
                bn.set_weights([np.ones_like(bias), bias, np.zeros_like(bias), np.full_like(bias, 1 - bn.epsilon)])
            else:
                layer.set_weights([kernel, bias])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"layer {layer.name}: the .tflite's weights do not fit ({exc})") from None
    return model


def restore_statistics(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> None:
    """Give every BatchNormalization the mean and variance of its input on ``images``, keeping the function.

    An identity normalisation with offset b becomes mean m, variance v, scale sqrt(v + eps) and
    offset b + m: the same output for every input. Sums are accumulated a batch at a time in float64.
    """
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return
    probe = keras.Model(model.input, [layer.input for layer in norms])
    sums = [np.zeros(layer.input.shape[-1]) for layer in norms]
    squares = [np.zeros(layer.input.shape[-1]) for layer in norms]
    counts = [0] * len(norms)  # values per channel: images x height x width of that layer
    for start in range(0, len(images), batch_size):
        outputs = probe.predict_on_batch(images[start:start + batch_size])
        for i, x in enumerate(outputs if len(norms) > 1 else [outputs]):
            values = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
            sums[i] += values.sum(axis=0)
            squares[i] += (values * values).sum(axis=0)
            counts[i] += values.shape[0]
    for layer, total, square, count in zip(norms, sums, squares, counts):
        mean = total / count
        variance = np.maximum(square / count - mean * mean, 0.0)
        _, bias, _, _ = layer.get_weights()
        layer.set_weights([np.sqrt(variance + layer.epsilon), bias + mean, mean, variance])


def recover(path: Path, roots: list[Path], out: Path) -> dict[str, Any]:
    """Write ``out/best.keras`` and ``out/run.json`` for the float32 model at ``path``; returns the run record."""
    if (out / "best.keras").exists() or (out / "run.json").exists():
        raise ValueError(f"{out}: already holds a run; give a new folder")
    runtime = Model(path)  # checks the file against its card
    card = runtime.card
    if card.variant != "float32" or card.training is None:
        raise ValueError(f"{path}: recover from a float32 classifier with a training record, not {card.variant}")
    require_manifest(roots, card.training.dataset_manifest_sha256)
    try:  # the recorded command, read by the parser that made the run
        recorded = vars(make_parser().parse_args(shlex.split(card.training.command)[3:]))  # after "python -m training"
    except SystemExit:
        raise ValueError(f"{path}: its recorded training command is not one today's `python -m training` takes: {card.training.command}") from None
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in recorded.items() if k not in RUN_ONLY_OPTIONS}
    family = family_of(card.family or "")
    model = family.build(card.preprocessing.size[0], len(card.labels), **settings)
    weights = tflite_weights(path.read_bytes(), (layer.name for layer in model.layers))
    if "width" in family.options and "stem_conv" in weights:  # the ResNet's width is what its stem convolution has
        settings["width"] = int(weights["stem_conv"][0].shape[-1])
        model = family.build(card.preprocessing.size[0], len(card.labels), **settings)
    rebuild(model, weights)
    data = load_roots(roots, card.preprocessing.to_dict())
    rng = np.random.default_rng(0)
    train = data.splits["train"].x
    restore_statistics(model, train[rng.choice(len(train), min(STATISTICS_IMAGES, len(train)), replace=False)])
    test = data.splits["test"].x
    diff = float(np.max(np.abs(model.predict(test, batch_size=64, verbose=0) - tflite_probabilities(runtime, test))))
    if diff > PARITY_TOLERANCE:
        raise ValueError(f"{path}: the rebuilt Keras model differs from it by {diff:.2e} in probability (> {PARITY_TOLERANCE})")
    info: dict[str, Any] = {
        "command": card.training.command,
        "config": settings,
        "labels": list(card.labels),
        "preprocessing": card.preprocessing.to_dict(),
        "dataset": {
            "root": repo_relative(roots[0]), "manifest_sha256": card.training.dataset_manifest_sha256,
            "roots": {repo_relative(root): digest for root, digest in manifest_digests(roots).items()},
            "counts": {k: list(v) for k, v in card.training.counts.items()}, "skipped": [],
        },
        "versions": dict(card.training.versions),
        "git": card.training.git,
        "utc_time": card.training.utc_time,
        "recovered_from": {"file": path.name, "version": card.version, "sha256": card.sha256, "max_abs_probability_diff": diff},
    }
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "best.keras")
    (out / "run.json").write_text(json.dumps(info, indent=1, default=str) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m converters.recover",
        description="Recover a training run folder (best.keras + run.json) from a float32 classifier .tflite and its card.",
    )
    parser.add_argument("model", type=Path, help="the float32 .tflite (its card beside it)")
    parser.add_argument("--data", type=Path, action="append", required=True, help="dataset root the model was trained on (repeatable)")
    parser.add_argument("--out", type=Path, required=True, help="run folder to write")
    args = parser.parse_args(argv)
    try:
        info = recover(args.model, args.data, args.out)
    except (DatasetError, ModelError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: recovered from {args.model.name} {info['recovered_from']['version']}, "
          f"max |probability difference| on test {info['recovered_from']['max_abs_probability_diff']:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
