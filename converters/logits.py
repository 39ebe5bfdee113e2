"""Re-releasing converted classifiers as logits models when their training run is gone.

A classifier converted before the converter exported logits (:func:`converters.quantize.exported`)
ends in a SOFTMAX op, so an int8 model's output steps fall on the probabilities (1/256: the
0.994 / 0.003 ceilings and ties). Without the Keras model it cannot be converted again, but the
SOFTMAX can be dropped from the flatbuffer: the tensor it read (the classifier's logits, with the
int8 scale its calibration gave them) becomes the output, and nothing else in the file changes.

    python -m converters.logits FLOAT32.tflite [OTHER.tflite ...] --data ROOT [--data ROOT ...] --out DIR \\
        [--bundle --change TEXT]

The first model is the reference (the family's float32 model); every model is stripped, gets its
card facts embedded (:func:`converters.embed.embed_facts`), and is measured and verified as the
converter does (:func:`converters.build.measure`: temperature fitted on val, metrics and agreement
with the stripped float32 on test). The float32 model must also give the probabilities its old
file gave (its softmax is now the runtime's); a model that fails is not bundled.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from converters.build import KERAS_PARITY_TOLERANCE, bundle, measure
from converters.embed import embed_facts
from converters.verify import tflite_probabilities
from edgecxr.card import ModelCard, gzip_size, read_card, write_card
from edgecxr.cardparts import TensorSpec, Thresholds
from edgecxr.macs import macs
from edgecxr.model import Model
from edgecxr.targets import model_targets
from training.data import DatasetError
from training.multiroot import load_roots, manifest_digests


def strip_softmax(flat: bytes) -> bytes:
    """``flat`` with the SOFTMAX op that produces a model output removed; that output is now the op's input (the logits).

    The signature's output is remapped to the same tensor, so inputs, outputs and their order stay as they were.
    """
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flat))
    graph = model.subgraphs[0]
    softmax = [
        i for i, op in enumerate(graph.operators)
        if _builtin(model.operatorCodes[op.opcodeIndex]) == schema.BuiltinOperator.SOFTMAX and op.outputs[0] in graph.outputs
    ]
    if len(softmax) != 1:
        raise ValueError(f"expected one SOFTMAX op producing a model output, found {len(softmax)}")
    op = graph.operators.pop(softmax[0])
    probabilities, logits = int(op.outputs[0]), int(op.inputs[0])
    graph.outputs = [logits if t == probabilities else int(t) for t in graph.outputs]
    for signature in model.signatureDefs or []:
        for output in signature.outputs:
            if output.tensorIndex == probabilities:
                output.tensorIndex = logits
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _builtin(code: schema.OperatorCodeT) -> int:
    return max(code.builtinCode, code.deprecatedBuiltinCode)  # the schema keeps small codes in the deprecated field too


def relogit(paths: Sequence[Path], roots: Sequence[Path], out: Path, thresholds: Thresholds | None = None) -> list[ModelCard]:
    """Strip, embed, measure and verify every model of ``paths`` (the first is the float32 reference); cards in order.

    Each card is the old one with ``output_kind`` ``logits`` and everything measured replaced.
    """
    cards = [read_card(p) for p in paths]
    reference_card = cards[0]
    if reference_card.variant != "float32" or any(c.family != reference_card.family for c in cards):
        raise ValueError(f"{paths[0]}: the first model must be the float32 model of the others' family")
    if any(c.output_kind != "probabilities" for c in cards):
        raise ValueError(f"{', '.join(str(p) for p, c in zip(paths, cards) if c.output_kind != 'probabilities')}: already outputs logits")
    _check_data(roots, reference_card)
    data = load_roots(roots, reference_card.preprocessing.to_dict(), splits=("val", "test"))
    test, val = data.splits["test"], data.splits.get("val")
    out.mkdir(parents=True, exist_ok=True)
    results, reference = [], None
    for path, old in zip(paths, cards):
        before = tflite_probabilities(Model(path), test.x)
        facts = dataclasses.replace(old, output_kind="logits")
        flat = embed_facts(strip_softmax(path.read_bytes()), facts.to_dict())
        target = out / path.name
        target.write_bytes(flat)
        write_card(target, dataclasses.replace(facts, gzip_bytes=gzip_size(flat)))  # what the runtime needs to load it
        probs, measured = measure(Model(target), test, val, reference, data.labels, thresholds or Thresholds())
        verification = measured.verification
        if reference is None:  # the float32 model: its probabilities must be what the old file gave
            diff = float(np.max(np.abs(probs - before)))
            verification = dataclasses.replace(  # the Keras comparison of the old file still holds: the same computation
                verification, passed=verification.passed and diff <= KERAS_PARITY_TOLERANCE,
                keras_max_abs_probability_diff=old.verification.keras_max_abs_probability_diff if old.verification else None,
            )
            print(f"{path.name}: max |probability change| from the old file {diff:.2e}")
            reference = probs
        card = write_card(target, dataclasses.replace(
            facts, gzip_bytes=gzip_size(flat), macs=macs(target), temperature=measured.temperature, metrics={"test": measured.test},
            verification=verification, output=TensorSpec.from_details(measured.runtime.output_details),
            targets=model_targets(old.family, measured.test) if old.family and old.targets is not None else None,
        ))
        results.append(card)
        print(
            f"{target.name}: test macro-F1 {old.test_metrics['macro_f1']:.4f} -> {measured.test['macro_f1']:.4f}, "
            f"agreement {verification.agreement_with_float32:.4f}, distinct top probabilities {len(np.unique(before.max(1)))} -> "
            f"{len(np.unique(probs.max(1)))}, {'PASSED' if verification.passed else 'FAILED'}"
        )
    return results


def _check_data(roots: Sequence[Path], card: ModelCard) -> None:
    """The model's test and val splits must come from the data it was trained on: its card names that data's manifest."""
    wanted = card.training.dataset_manifest_sha256 if card.training else None
    if wanted and wanted not in manifest_digests(roots).values():
        raise ValueError(f"none of {', '.join(map(str, roots))} has the manifest the model was trained on ({wanted[:12]}…)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m converters.logits",
        description="Re-release converted classifiers as logits models: drop the final softmax, embed the card facts, re-measure and verify.",
    )
    parser.add_argument("models", type=Path, nargs="+", help="the family's float32 .tflite first, then the models to re-release beside it")
    parser.add_argument("--data", type=Path, action="append", required=True, help="dataset root the models were trained on (repeatable)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the re-released .tflite files and cards")
    parser.add_argument("--bundle", action="store_true", help="copy the models that pass into the package (edgecxr/models/), next version")
    parser.add_argument("--change", default="Outputs logits: the final softmax op is dropped and the runtime applies softmax and temperature "
                        "in float; labels, preprocessing and output kind embedded in the .tflite; temperature refitted and metrics re-measured.")
    args = parser.parse_args(argv)
    try:
        cards = relogit(args.models, args.data, args.out)
    except (DatasetError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [c.name for c in cards if c.verification is None or not c.verification.passed]
    if args.bundle:
        for card in cards:
            if card.name not in failed:
                bundle(args.out / f"{card.name}.tflite", args.change)
    if failed:
        print(f"error: verification failed for {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
