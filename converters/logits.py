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
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from converters.build import KERAS_PARITY_TOLERANCE, measure
from converters.bundling import bundle
from converters.embed import embed_facts
from converters.gate import Gating, external_films
from converters.verify import tflite_probabilities
from edgecxr.core.card import ModelCard, ModelError, gzip_size, read_card, write_card
from edgecxr.core.cardparts import TensorSpec, Verification
from edgecxr.core.model import Model
from edgecxr.evaluation.macs import macs
from edgecxr.evaluation.targets import model_targets
from training.data import DatasetError
from training.multiroot import load_roots, require_manifest


def strip_softmax(flat: bytes) -> bytes:
    """``flat`` with the SOFTMAX op that produces a model output removed; that output is now the op's input (the logits).

    The signature's output is remapped to the same tensor, so inputs, outputs and their order stay as they were.
    Refused (ValueError) unless there is exactly one such op, with beta 1, whose output nothing else reads and
    whose input is not already an output.
    """
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flat))
    graph = model.subgraphs[0]
    softmax = [
        i for i, op in enumerate(graph.operators)
        if builtin_code(model.operatorCodes[op.opcodeIndex]) == schema.BuiltinOperator.SOFTMAX and op.outputs[0] in graph.outputs
    ]
    if len(softmax) != 1:
        raise ValueError(f"expected one SOFTMAX op producing a model output, found {len(softmax)}")
    op = graph.operators.pop(softmax[0])
    probabilities, logits = int(op.outputs[0]), int(op.inputs[0])
    if op.builtinOptions is not None and getattr(op.builtinOptions, "beta", 1.0) != 1.0:
        raise ValueError(f"the SOFTMAX op scales its input by beta {op.builtinOptions.beta}: its input is not the logits")
    if any(probabilities in other.inputs for other in graph.operators):
        raise ValueError("the SOFTMAX output also feeds other ops: dropping it would leave them without input")
    if logits in graph.outputs:
        raise ValueError("the SOFTMAX input is already a model output")
    graph.outputs = [logits if t == probabilities else int(t) for t in graph.outputs]
    for signature in model.signatureDefs or []:
        if signature.subgraphIndex == 0:
            for output in signature.outputs:
                if output.tensorIndex == probabilities:
                    output.tensorIndex = logits
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def builtin_code(code: schema.OperatorCodeT) -> int:
    """The builtin operator of an operator code (the schema keeps small codes in the deprecated field too)."""
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def relogit(paths: Sequence[Path], roots: Sequence[Path], out: Path) -> list[tuple[Path, ModelCard]]:
    """Strip, embed, measure and verify every model of ``paths`` (the first is the float32 reference): (file written, card), in order.

    Each card is the old one with ``output_kind`` ``logits`` and everything measured replaced; each model is held to
    the release gate (:mod:`converters.gate`) with the re-released float32 model as its own float model and reference
    (the float32 model itself: against the file it replaces), the external films of ``roots`` that have them.
    """
    cards = [read_card(p) for p in paths]  # each file is checked against its card's sha256 when it is loaded below
    reference_card = cards[0]
    for path, card in zip(paths, cards):
        if card.family != reference_card.family or card.labels != reference_card.labels or card.preprocessing != reference_card.preprocessing:
            raise ValueError(f"{path}: not of {paths[0]}'s family, labels and preprocessing")
        if card.output_kind != "probabilities":
            raise ValueError(f"{path}: already outputs logits")
        if out.resolve() == path.parent.resolve():
            raise ValueError(f"{path}: --out is its own folder; the re-released file would replace it")
    if reference_card.variant != "float32":
        raise ValueError(f"{paths[0]}: the first model must be the float32 model of the others' family")
    require_manifest(roots, reference_card.training.dataset_manifest_sha256 if reference_card.training else None)
    data = load_roots(roots, reference_card.preprocessing.to_dict(), splits=("val", "test"))
    if data.labels != list(reference_card.labels):
        raise ValueError(f"{roots[0]}: its labels {data.labels} differ from the model's {list(reference_card.labels)}")
    test, val = data.splits["test"], data.splits.get("val")
    gating = Gating(external_films(roots, data.labels, reference_card.preprocessing))
    out.mkdir(parents=True, exist_ok=True)
    results: list[tuple[Path, ModelCard]] = []
    reference = None
    for path, old in zip(paths, cards):
        before = tflite_probabilities(Model(path), test.x)
        facts = dataclasses.replace(old, output_kind="logits")
        flat = embed_facts(strip_softmax(path.read_bytes()), facts.to_dict())
        target = out / path.name
        target.write_bytes(flat)
        write_card(target, dataclasses.replace(facts, gzip_bytes=gzip_size(flat)))  # what the runtime needs to load it
        own_float, own_name = (before, f"{old.name} {old.version}") if reference is None else (reference, f"the re-released {reference_card.name}")
        probs, measured = measure(Model(target), test, val, reference, data.labels, gating, own_float, own_name)
        verification = measured.verification
        changed = float(np.max(np.abs(probs - before)))
        if reference is None:  # the float32 model: its probabilities must be what the old file gave
            verification = dataclasses.replace(  # the Keras comparison of the old file still holds: the same computation
                verification, passed=verification.passed and changed <= KERAS_PARITY_TOLERANCE,
                keras_max_abs_probability_diff=old.verification.keras_max_abs_probability_diff if isinstance(old.verification, Verification) else None,
            )
            reference = probs
        card = write_card(target, dataclasses.replace(
            facts, gzip_bytes=gzip_size(flat), macs=macs(target), temperature=measured.temperature, metrics={"test": measured.test},
            verification=verification, gate=measured.gate, output=TensorSpec.from_details(measured.runtime.output_details),
            targets=model_targets(old.family, measured.test) if old.family and old.targets is not None else None,
        ))
        results.append((target, card))
        print(
            f"{target.name}: labels as the old file on {np.mean(probs.argmax(1) == before.argmax(1)):.2%} of test films, "
            f"max |uncalibrated probability change| {changed:.2e}, distinct top probabilities {len(np.unique(before.max(1)))} -> "
            f"{len(np.unique(probs.max(1)))}, test macro-F1 {measured.test['macro_f1']:.4f}, "
            f"agreement {verification.agreement_with_float32:.4f}, {'PASSED' if verification.passed else 'FAILED'}"
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m converters.logits",
        description="Re-release converted classifiers as logits models: drop the final softmax, embed the card facts, re-measure and verify.",
    )
    parser.add_argument("models", type=Path, nargs="+", help="the family's float32 .tflite first, then the models to re-release beside it")
    parser.add_argument("--data", type=Path, action="append", required=True, help="dataset root the models were trained on (repeatable)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the re-released .tflite files and cards")
    parser.add_argument("--bundle", action="store_true", help="when every model passes, copy them into the package (edgecxr/models/), next version")
    parser.add_argument("--change", help="with --bundle: the changelog entry (default: what this re-release changes)",
                        default="Outputs logits: the final softmax op is dropped and the runtime applies softmax and temperature "
                        "in float; labels, preprocessing and output kind embedded in the .tflite; temperature refitted and metrics re-measured.")
    args = parser.parse_args(argv)
    try:
        released = relogit(args.models, args.data, args.out)
    except (DatasetError, ModelError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [(path, card) for path, card in released if not isinstance(card.verification, Verification) or not card.verification.passed]
    if failed:  # a family is released whole or not at all: the others were verified against its float32 model
        rejected = args.out / "rejected"
        rejected.mkdir(exist_ok=True)
        for path, _ in failed:
            for f in (path, path.with_suffix(".json")):
                shutil.move(str(f), rejected / f.name)
        print(f"error: verification failed for {', '.join(c.name for _, c in failed)} (moved to {rejected}); nothing bundled", file=sys.stderr)
        return 1
    if args.bundle:
        for path, _ in released:
            bundle(path, args.change)
    return 0


if __name__ == "__main__":
    sys.exit(main())
