"""The release gate as data: targets.json's rules, each check failing on its own, the external share reported but never
gated, the card's gate block, the bundling choice."""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from edgecxr.core.card import ModelCard
from edgecxr.core.cardparts import Deltas, Gate, GateCheck, GateReport, Verification
from edgecxr.core.preprocess import PreprocessSpec
from edgecxr.evaluation.targets import Reported, gate

REFERENCE: dict[str, Any] = {  # a reference's quantities, as converters.gate.decision_quantities gives them
    "macro_f1": 0.8874, "sensitivity": {"COVID": 0.8977, "Normal": 0.8771, "Pneumonia": 0.887},
    "abnormal_auc": 0.97, "ece_after_temperature": None, "external_called_normal": 0.566,
}
GOOD = {**REFERENCE, "agreement_with_own_float": 0.99, "ece_after_temperature": 0.02}


def checks(reached: dict) -> dict[tuple[str, str | None], bool]:
    return {(c["key"], c.get("scope")): c["met"] for c in gate().check(reached, REFERENCE)}


def test_the_gate_is_read_from_the_targets_file():
    spec = gate()
    assert spec.reference == {"resnet18": "resnet18-float32", "mlp12": "mlp12-float32"}
    assert [(r.key, r.op, r.value) for r in spec.quantization] == [("agreement_with_own_float", ">=", 0.98)]
    assert {r.key: (r.op, r.value, r.relative) for r in spec.decisions} == {
        "macro_f1": (">=", -0.01, True), "sensitivity": (">=", -0.02, True), "abnormal_auc": (">=", -0.01, True),
        "ece_after_temperature": ("<=", 0.03, False),
    }
    assert spec.reported == (Reported("external_called_normal", "external films called Normal"),)  # report-only split: never gated
    assert spec.pruned_max_gzip_vs_int8 == 0.6
    assert [r.text() for r in spec.decisions][0] == "test macro-F1 >= reference - 0.01"


def test_a_variant_as_good_as_the_reference_passes_every_check():
    result = checks(GOOD)
    assert len(result) == 7 and all(result.values())  # agreement, macro-F1, 3 sensitivities, AUC, ECE (the external share is reported)


@pytest.mark.parametrize("change, failing", [
    ({"agreement_with_own_float": 0.9799}, ("agreement_with_own_float", None)),
    ({"macro_f1": 0.8773}, ("macro_f1", None)),  # 0.0101 below
    ({"sensitivity": {**REFERENCE["sensitivity"], "COVID": 0.8776}}, ("sensitivity", "COVID")),  # 0.0201 below
    ({"abnormal_auc": 0.9599}, ("abnormal_auc", None)),
    ({"ece_after_temperature": 0.0301}, ("ece_after_temperature", None)),
])
def test_each_check_fails_on_its_own(change, failing):
    result = checks({**GOOD, **change})
    assert [k for k, met in result.items() if not met] == [failing]


@pytest.mark.parametrize("external", [0.2, None])  # far below the reference's 0.566, or not measured
def test_the_external_share_is_reported_never_gated(external):
    """``external`` stands for the next clinic: the gate records its value beside the reference's, and it decides nothing."""
    reached = {**GOOD, "external_called_normal": external}
    result = checks(reached)
    assert len(result) == 7 and all(result.values()) and ("external_called_normal", None) not in result
    assert gate().report(reached, REFERENCE) == [{"key": "external_called_normal", "name": "external films called Normal", "reached": external, "reference": 0.566}]
    assert [k for k, met in checks({**reached, "macro_f1": 0.8773}).items() if not met] == [("macro_f1", None)]  # a decision check still fails


def test_limits_are_inclusive_and_relative_to_the_reference():
    at_limits = {**GOOD, "agreement_with_own_float": 0.98, "macro_f1": 0.8774, "abnormal_auc": 0.96, "ece_after_temperature": 0.03,
                 "sensitivity": {"COVID": 0.8777, "Normal": 0.8571, "Pneumonia": 0.867}}
    assert all(checks(at_limits).values())
    found = {(c["key"], c.get("scope")): c for c in gate().check(at_limits, REFERENCE)}
    assert found[("macro_f1", None)]["target"] == 0.8774 and found[("macro_f1", None)]["reference"] == 0.8874
    assert "reference" not in found[("ece_after_temperature", None)]


def test_checks_a_model_has_no_quantity_for_do_not_apply():
    """A model without a Normal class (e.g. MRI sequences) has no abnormal AUC or external Normal share to hold it to."""
    reached = {"agreement_with_own_float": 1.0, "macro_f1": 0.9, "sensitivity": {"a": 0.9, "b": 0.9}, "ece_after_temperature": 0.01}
    result = {(c["key"], c.get("scope")) for c in gate().check(reached, {"macro_f1": 0.9, "sensitivity": {"a": 0.9, "b": 0.91}})}
    assert result == {("agreement_with_own_float", None), ("macro_f1", None), ("sensitivity", "a"), ("sensitivity", "b"), ("ece_after_temperature", None)}
    assert gate().report(reached, {"macro_f1": 0.9}) == []
    with pytest.raises(ValueError, match="reference has no macro_f1"):
        gate().check(reached, {})


@pytest.mark.train  # converters.gate reads datasets through training
def test_decision_quantities_from_probabilities():
    from converters.gate import decision_quantities

    labels = ["COVID", "Normal", "Pneumonia"]
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.1, 0.1, 0.8]])
    external = np.array([[0.1, 0.9, 0.0], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.8, 0.1]])
    q = decision_quantities(probs, y, labels, 0.02, external)
    assert q["sensitivity"] == {"COVID": 0.5, "Normal": 1.0, "Pneumonia": 1.0}
    assert q["external_called_normal"] == 0.75 and q["ece_after_temperature"] == 0.02
    # abnormal = 1 - p(Normal): the Normal films score 0.2 and 0.3, the abnormal ones 0.9, 0.2, 0.8 and 0.9
    assert q["abnormal_auc"] == 0.8125  # 8 pairs: 6 ordered, one tie (0.2 vs 0.2), one reversed (0.2 vs 0.3)
    assert "external_called_normal" not in decision_quantities(probs, y, ["a", "b", "c"], 0.02, None)


@pytest.mark.train  # converters.gate reads datasets through training
def test_a_variant_worse_only_on_external_passes_and_reports_it():
    """Measured end to end from probabilities: a variant calling far fewer external films Normal than the reference passes
    with the share on its gate block; one that also gets a test film wrong fails on macro-F1 (and still reports the share)."""
    from converters.gate import Reference, decision_quantities, result, summary

    labels = ["COVID", "Normal", "Pneumonia"]
    y = np.array([0, 0, 1, 1, 2, 2])
    test = np.eye(3)[y] * 0.8 + 0.1
    normal, covid = [0.1, 0.8, 0.1], [0.8, 0.1, 0.1]
    reference = Reference("ref 1.0.0", test, decision_quantities(test, y, labels, None, np.array([normal] * 4)))
    assert reference.quantities["external_called_normal"] == 1.0
    variant_external = np.array([normal, covid, covid, covid])  # 0.25 called Normal: 0.75 below the reference
    g = result(test, test, "own", decision_quantities(test, y, labels, 0.02, variant_external), reference)
    assert g.passed and g.failed == [] and "external_called_normal" not in {c.key for c in g.checks}
    assert g.reported == (GateReport("external_called_normal", "external films called Normal", 0.25, 1.0),)
    assert summary(g) == "gate decision-level 1: passed; reported, not gated: external films called Normal 0.25 (reference 1.0)"
    assert Gate.from_dict(g.to_dict(), "gate") == g and g.to_dict()["reported"] == [
        {"key": "external_called_normal", "name": "external films called Normal", "reached": 0.25, "reference": 1.0}]
    wrong = test.copy()
    wrong[0] = covid[::-1]  # a COVID test film called Pneumonia
    failed = result(wrong, wrong, "own", decision_quantities(wrong, y, labels, 0.02, variant_external), reference)
    assert not failed.passed and {c.key for c in failed.failed} == {"macro_f1", "sensitivity"} and failed.reported == g.reported
    assert summary(failed).startswith("gate decision-level 1: FAILED on test macro-F1 0.8222 (needs >= 0.99)")


def gated_card(variant: str, passed: bool, gzip_bytes: int) -> ModelCard:
    checks = (GateCheck("macro_f1", "test macro-F1", ">=", 0.8774, passed, 0.88 if passed else 0.87, None, 0.8874),)
    verification = Verification(0.99, 0.1, Deltas(0.0, 0.0, {}), passed)
    return ModelCard(f"resnet18-{variant}", ("COVID", "Normal", "Pneumonia"), PreprocessSpec(size=(128, 128)), variant=variant,
                     gzip_bytes=gzip_bytes, verification=verification, gate=Gate("decision-level 1", "ref", "own", 0.95, checks, passed))


def test_the_gate_block_reads_back_from_a_card():
    g = gated_card("pruned-int8", True, 1).gate
    assert Gate.from_dict(g.to_dict(), "gate") == g and g.failed == []
    failed = gated_card("pruned-int8", False, 1).gate
    assert [c.key for c in failed.failed] == ["macro_f1"]
    with pytest.raises(ValueError, match=r"gate.checks\[0\].met"):
        Gate.from_dict({**g.to_dict(), "checks": [{**g.checks[0].to_dict(), "met": "yes"}]}, "gate")


@pytest.mark.train
def test_only_pruned_variants_that_passed_and_shrink_the_download_are_bundled():
    from converters.build import bundled_variants, failed_variants

    int8, reference = gated_card("int8", True, 1000), gated_card("float32", True, 4000)
    cards = {"float32": reference, "int8": int8, "pruned-int8": gated_card("pruned-int8", True, 600), "qat-int8": gated_card("qat-int8", True, 990)}
    assert bundled_variants(cards) == ["pruned-int8"]  # QAT passed, but does not shrink the download
    assert bundled_variants({**cards, "pruned-int8": gated_card("pruned-int8", True, 601)}) == []  # 0.601x
    assert bundled_variants({**cards, "pruned-int8": gated_card("pruned-int8", False, 500)}) == []  # failed the gate
    assert failed_variants({**cards, "pruned-int8": gated_card("pruned-int8", False, 500)}) == ["pruned-int8"]
    unverified = dataclasses.replace(reference, verification=dataclasses.replace(reference.verification, passed=False))
    assert bundled_variants({**cards, "float32": unverified}) == []  # the run's float32 does not match its Keras model
    no_gate = dataclasses.replace(cards["pruned-int8"], gate=None)
    assert bundled_variants({**cards, "pruned-int8": no_gate}) == [] and failed_variants({"pruned-int8": no_gate}) == ["pruned-int8"]


@pytest.mark.train
def test_a_training_runs_spec_finds_the_bundled_reference_whatever_its_jpeg_decode():
    """A run's spec has no decode_min_side; the bundled reference's has (release 1.3.0): the gate measures arrays, so it still applies."""
    from converters.gate import bundled_reference
    from edgecxr.core.card import read_card
    from edgecxr.core.registry import resolve
    from training.data import Split

    card = read_card(resolve("resnet18-float32"))
    assert card.preprocessing.decode_min_side is not None
    rng = np.random.default_rng(0)
    test = Split(rng.uniform(0, 1, (6, 128, 128, 1)).astype(np.float32), np.arange(6) % 3, [f"f{i}" for i in range(6)], ["s"] * 6)
    run_spec = dataclasses.replace(card.preprocessing, decode_min_side=None)
    reference = bundled_reference("resnet18", list(card.labels), run_spec, test, None)
    assert reference is not None and reference.description.startswith(f"resnet18-float32 {card.version} (bundled")
    other = dataclasses.replace(run_spec, size=(96, 96))
    assert bundled_reference("resnet18", list(card.labels), other, test, None) is None
