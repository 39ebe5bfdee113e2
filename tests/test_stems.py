"""The ResNet's stems: each reaches the same feature map as the 7x7 stem, with fewer MACs, and converts to int8; the stems benchmark's target."""
from __future__ import annotations

import pytest

from benchmarks.stems import accuracy, markdown, stem_of, verdict
from conftest import toy_images
from edgecxr.core.card import ModelCard
from edgecxr.core.cardparts import Gate, GateCheck, GateReport
from edgecxr.core.families import RESNET_STEMS
from edgecxr.core.preprocess import PreprocessSpec


@pytest.mark.train
def test_every_stem_gives_the_same_feature_map_with_fewer_macs(tmp_path):
    from converters.quantize import convert, exported
    from edgecxr.evaluation.macs import macs
    from training.models import build_resnet18

    x, _ = toy_images(20)
    counted, shapes = {}, {}
    for kind in RESNET_STEMS:
        model = build_resnet18(32, 3, width=8, stem=kind)
        shapes[kind] = tuple(model.get_layer("features").output.shape[1:])
        assert model.get_layer("stem_conv").filters == 8  # the first stage's residual width, as converters.narrow expects
        path = tmp_path / f"{kind}.tflite"
        path.write_bytes(convert(exported(model), "int8", x))
        counted[kind] = macs(path)
    assert set(shapes.values()) == {(1, 1, 64)}  # 32 px in, 1/32 of the side out, 8 * 8 channels
    assert counted["3x3"] < counted["7x7"] and counted["s2d"] < counted["7x7"]
    assert "stem0_conv" in {layer.name for layer in build_resnet18(32, 3, width=8, stem="3x3").layers}


@pytest.mark.train
def test_an_unknown_stem_is_refused():
    from training.models import build_resnet18

    with pytest.raises(ValueError, match=r"unknown stem '5x5'; choose from \('7x7', '3x3', 's2d'\)"):
        build_resnet18(32, 3, stem="5x5")


def _card(architecture: str, passed: bool) -> ModelCard:
    checks = (
        GateCheck("agreement_with_own_float", "agreement", ">=", 0.98, True, 0.99),
        GateCheck("macro_f1", "test macro-F1", ">=", 0.8774, passed, 0.8901 if passed else 0.8702, None, 0.8874),
        GateCheck("sensitivity", "sensitivity", ">=", 0.8571, True, 0.88, "Normal", 0.8771),
        GateCheck("abnormal_auc", "AUC", ">=", 0.9598, True, 0.9712, None, 0.9698),
    )
    reported = (GateReport("external_called_normal", "external", 0.6021, 0.5657),)  # reported on the card, not gated
    return ModelCard("resnet18-int8", ("COVID", "Normal", "Pneumonia"), PreprocessSpec(size=(128, 128)), architecture=architecture,
                     gate=Gate("decision-level 1", "ref", "own", 0.95, checks, passed, reported))


def _row(ms1: float, ms2: float, card: ModelCard | None) -> dict:
    return {"model": "m", "stem": "s2d", "trained": card is not None, "macs": 40e6, "gzip_bytes": 2048, "p50_ms": {"1t": ms1, "2t": ms2},
            **(accuracy(card) if card else {})}


def test_a_trained_stem_meets_the_target_only_twice_as_fast_at_both_thread_counts_with_its_gate_passed():
    passing, failing = _card(f"ResNet; stem: {RESNET_STEMS['s2d']}", True), _card("ResNet", False)
    assert stem_of(passing) == "s2d" and stem_of(failing) == "7x7"
    assert accuracy(passing) == {"gate": "decision-level 1", "gate_passed": True, "failed": [], "macro_f1": 0.8901,
                                 "abnormal_auc": 0.9712, "external_called_normal": 0.6021}
    assert accuracy(failing)["failed"] == ["macro_f1 0.8702 (needs >= 0.8774)"]
    base = _row(1.0, 1.2, passing)
    fast = verdict(_row(0.5, 0.6, passing), base)
    assert fast == {"speedup": {"1t": 2.0, "2t": 2.0}, "meets_target": True}
    assert not verdict(_row(0.5, 0.61, passing), base)["meets_target"]  # 1.97x at 2 threads
    assert not verdict(_row(0.4, 0.5, failing), base)["meets_target"]  # fast, gate failed
    assert not verdict(_row(0.4, 0.5, None), base)["meets_target"]  # untrained: no accuracy, no target
    rows = [{**base, "verdict": verdict(base, base)}, {**_row(0.4, 0.5, failing), "verdict": verdict(_row(0.4, 0.5, failing), base),
                                                       "architecture": "ResNet", "notes": None}]
    results = {"provenance": {"utc_time": "t", "command": "c"}, "rounds": 3, "runs": 10, "load_before": [1], "load_after": [1], "models": rows,
               "machine": {"machine": "x86_64", "cpu": "cpu", "cpus": "2", "interpreter": "ai_edge_litert", "interpreter_version": "2"}}
    table = markdown(results)
    assert "| 1.000 | 1.200 | 1.00x / 1.00x | 0.8901 | 0.9712 | 0.6021 | passed | baseline |" in table
    assert "| 2.50x / 2.40x | 0.8702 | 0.9712 | 0.6021 | **failed**: macro_f1 0.8702 (needs >= 0.8774) | misses |" in table
