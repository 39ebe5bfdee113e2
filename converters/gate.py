"""The release gate, measured: is a converted variant faithful to its own float model, and are its decisions as good as the reference's?

The rules are data (``gates`` in ``edgecxr/evaluation/targets.json``, :func:`edgecxr.targets.gate`). A variant is
measured through the runtime on the test split (and the report-only ``external`` split, which is
never used to train, calibrate or select, only reported on); the quantization check compares it with its own float
model (the Keras model, pruned or narrowed, it was converted from); the decision checks compare
it with the family's reference (the bundled ``resnet18-float32`` for every ResNet variant), or with
the run's own float32 model when no bundled reference has the run's labels and preprocessing.
The share of the external films called Normal is measured and reported on the card beside the
reference's value, never gated: a gate on it would select on the split that stands for the next clinic.
The result is the card's ``gate`` block (:class:`edgecxr.cardparts.Gate`).

    python -m converters.gate MODEL.tflite [MODEL.tflite ...] --own-float FLOAT32.tflite \\
        --data ../shared/data/cxr3 --external ../shared/data/cxr3-plus [--write]

gates models converted before the gate existed (the bundled ones): each against ``--own-float``
(the float model it was converted from); ``--write`` records the result in its card.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters.verify import tflite_probabilities
from edgecxr.core.card import ModelCard, ModelError, read_card, write_card
from edgecxr.core.cardparts import Gate, GateCheck, GateReport, Verification
from edgecxr.core.model import Model
from edgecxr.core.preprocess import PreprocessSpec
from edgecxr.core.registry import MODELS_DIR
from edgecxr.core.site import ABNORMAL, NORMAL, target_positives, target_scores
from edgecxr.evaluation.metrics import classification_report
from edgecxr.evaluation.operating import auc
from edgecxr.evaluation.targets import gate as gate_spec
from training.data import DatasetError, Split
from training.multiroot import load_report_split, load_roots

EXTERNAL = "external"  # the report-only split of another hospital's films


@dataclass(frozen=True)
class Reference:
    """The model a variant's decisions are compared with: what it is, its test probabilities and its gate quantities."""

    description: str
    probs: np.ndarray
    quantities: dict[str, Any]


@dataclass
class Gating:
    """What every variant of one conversion is gated on."""

    external: np.ndarray | None  # the preprocessed report-only films (None: none found)
    reference: Reference | None = None  # None until the run's own float32 is measured, when no bundled reference applies


def agreement(probs: np.ndarray, other: np.ndarray) -> float:
    """Share of films on which two models' top-1 classes agree."""
    return round(float(np.mean(probs.argmax(1) == other.argmax(1))), 4)


def decision_quantities(
    probs: np.ndarray, y: np.ndarray, labels: Sequence[str], ece_after: float | None, external: np.ndarray | None,
) -> dict[str, Any]:
    """The quantities the gate's decision rules name, from test probabilities ``probs`` (true classes ``y``), the test ECE
    after temperature and the probabilities on the external films; abnormal AUC and the external share only for models
    with a Normal class (None: not measured)."""
    report = classification_report(y, probs.argmax(1), list(labels))
    out: dict[str, Any] = {
        "macro_f1": round(report["macro_f1"], 4),
        "sensitivity": {label: round(report["per_class"][label]["recall"], 4) for label in labels},
        "ece_after_temperature": ece_after,
    }
    if NORMAL in labels:
        area = auc(target_scores(probs, list(labels), ABNORMAL), target_positives(list(y), list(labels), ABNORMAL))
        out["abnormal_auc"] = None if area is None else round(area, 4)
        normal = list(labels).index(NORMAL)
        out["external_called_normal"] = None if external is None or not len(external) else round(float(np.mean(external.argmax(1) == normal)), 4)
    return out


def result(probs: np.ndarray, own_float: np.ndarray, own_float_name: str, quantities: dict[str, Any], reference: Reference) -> Gate:
    """The gate of a variant with test probabilities ``probs``, its own float model's ``own_float`` and its ``quantities``."""
    spec = gate_spec()
    reached = {"agreement_with_own_float": agreement(probs, own_float), **quantities}
    checks = tuple(GateCheck(**c) for c in spec.check(reached, reference.quantities))
    reported = tuple(GateReport(**r) for r in spec.report(reached, reference.quantities)) or None  # never decides `passed`
    return Gate(spec.name, reference.description, own_float_name, agreement(probs, reference.probs), checks, all(c.met for c in checks), reported)


def external_films(roots: Sequence[Path], labels: Sequence[str], spec: dict[str, Any] | PreprocessSpec) -> np.ndarray | None:
    """The preprocessed films of every root's report-only ``external`` split (None when no root has one)."""
    splits = [load_report_split(root, EXTERNAL, labels, spec) for root in roots if (Path(root) / EXTERNAL).is_dir()]
    return np.concatenate([s.x for s in splits]) if splits else None


def bundled_reference(family: str, labels: Sequence[str], spec: PreprocessSpec, test: Split, external: np.ndarray | None) -> Reference | None:
    """The family's reference from the gate (a bundled model), measured on ``test`` and ``external``; None when the gate
    names none for ``family`` or it has other labels or preprocessing than the run's."""
    name = gate_spec().reference.get(family)
    path = MODELS_DIR / f"{name}.tflite"
    if name is None or not path.is_file():
        return None
    model = Model(path)
    # how a JPEG file is decoded (decode_min_side) does not enter: the gate measures preprocessed arrays
    if list(model.labels) != list(labels) or dataclasses.replace(model.card.preprocessing, decode_min_side=None) != dataclasses.replace(spec, decode_min_side=None):
        return None
    probs = tflite_probabilities(model, test.x)
    ext = tflite_probabilities(model, external) if external is not None else None
    description = f"{model.name} {model.card.version} (bundled, sha256 {model.card.sha256[:12]})"  # type: ignore[index]
    return Reference(description, probs, decision_quantities(probs, test.y, labels, None, ext))


def summary(g: Gate) -> str:
    """One line: passed or the failed checks with their numbers, then the reported quantities (not gated)."""
    reported = "".join(
        f"; reported, not gated: {r.name} {'not measured' if r.reached is None else r.reached}{'' if r.reference is None else f' (reference {r.reference})'}"
        for r in g.reported or ()
    )
    if g.passed:
        return f"gate {g.name}: passed{reported}"
    failed = ", ".join(f"{c.name}{f' ({c.scope})' if c.scope else ''} {c.reached} (needs {c.op} {c.target})" for c in g.failed)
    return f"gate {g.name}: FAILED on {failed}{reported}"


def gate_existing(paths: Sequence[Path], own_float: Path, roots: Sequence[Path], external_roots: Sequence[Path], write: bool) -> list[ModelCard]:
    """Gate converted models against their own float model ``own_float``; with ``write`` record each result in its card."""
    from converters.build import measure  # build imports this module

    float_model = Model(own_float)
    spec = float_model.card.preprocessing
    data = load_roots(list(roots), spec.to_dict(), splits=("val", "test"))
    test, val = data.splits["test"], data.splits.get("val")
    labels = list(float_model.labels)
    if data.labels != labels:
        raise ValueError(f"{roots[0]}: its labels {data.labels} differ from the model's {labels}")
    external = external_films(external_roots, labels, spec)
    family = float_model.card.family or ""
    gating = Gating(external, bundled_reference(family, labels, spec, test, external))
    float_probs = tflite_probabilities(float_model, test.x)
    cards = []
    for path in paths:
        model = Model(path)
        if model.card.labels != float_model.card.labels or model.card.preprocessing != spec:
            raise ValueError(f"{path}: not of {own_float}'s labels and preprocessing")
        _, measured = measure(model, test, val, float_probs, labels, gating, float_probs, f"{float_model.name} {float_model.card.version}")
        assert measured.gate is not None
        card = model.card
        old = card.verification
        if isinstance(old, Verification):  # everything else on the card stays as it was measured at conversion
            card = dataclasses.replace(card, verification=dataclasses.replace(old, passed=old.passed and measured.gate.passed))
        card = dataclasses.replace(card, gate=measured.gate)
        if write:
            card = write_card(path, card)
        print(f"{path.name}: {summary(measured.gate)}; agreement with the reference {measured.gate.agreement_with_reference:.4f}")
        cards.append(card)
    return cards


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m converters.gate", description=__doc__.split("\n\n")[0])
    parser.add_argument("models", type=Path, nargs="+", help="converted .tflite files with their cards")
    parser.add_argument("--own-float", type=Path, required=True, help="the float32 .tflite the models were converted from")
    parser.add_argument("--data", type=Path, action="append", required=True, help="dataset root with val and test splits (repeatable)")
    parser.add_argument("--external", type=Path, action="append", default=[], help="dataset root with a report-only external/ split (repeatable)")
    parser.add_argument("--write", action="store_true", help="record the gate in each model's card")
    args = parser.parse_args(argv)
    try:
        for path in (args.own_float, *args.models):
            read_card(path)
        cards = gate_existing(args.models, args.own_float, args.data, args.external or args.data, args.write)
    except (DatasetError, ModelError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if all(c.gate and c.gate.passed for c in cards) else 1


if __name__ == "__main__":
    sys.exit(main())
