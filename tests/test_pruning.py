"""Pruned and quantization-aware variants: sparsity survives stripping and int8 conversion, failing variants are not bundled."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import toy_images
from edgecxr.core.card import ModelCard, read_card
from edgecxr.core.cardparts import Deltas, Thresholds, Verification
from edgecxr.core.families import VARIANTS

pytestmark = pytest.mark.train  # tfmot and TensorFlow: imported inside the tests


def toy_batches(n: int = 96):
    from training import augment

    x, y = toy_images(n)
    return x, augment.eval_pipeline(x, np.eye(3, dtype=np.float32)[y], 16)


def test_sparsity_is_present_after_stripping_and_in_the_int8_flatbuffer():
    from converters import prune as pruning
    from converters.quantize import convert, exported
    from training.models import build_resnet18

    x, batches = toy_batches()
    model = build_resnet18(32, 3, width=4)
    plain = pruning.flatbuffer_sparsity(convert(exported(model), "int8", x[:20]))
    pruning.freeze_batchnorm(model)
    pruned = pruning.prune(model, batches, steps_per_epoch=6, sparsity=0.6, epochs=2, lr=1e-3)
    assert not any("prune" in layer.name for layer in pruned.layers)  # stripped: plain Keras layers
    assert pruning.sparsity_of(pruned) == pytest.approx(0.6, abs=0.01)
    assert plain < 0.05
    assert 0.59 <= pruning.flatbuffer_sparsity(convert(exported(pruned), "int8", x[:20])) <= 0.65  # a few more round to zero

    # prune-preserving QAT keeps the zeros through fine-tuning and conversion; its float copy holds the same weights
    qat = pruning.quantize_aware(exported(pruned), batches, epochs=1, lr=1e-3, preserve_sparsity=True)
    assert 0.59 <= pruning.flatbuffer_sparsity(convert(qat, "int8", x[:20])) <= 0.65
    copy = pruning.float_copy(qat, pruned)
    assert pruning.sparsity_of(copy) == pytest.approx(pruning.sparsity_of(pruned), abs=0.005)
    assert [w.shape for w in copy.weights] == [w.shape for w in pruned.weights]


def test_small_layers_can_stay_dense():
    from converters import prune as pruning
    from training.models import build_resnet18

    _, batches = toy_batches()
    pruned = pruning.prune(build_resnet18(32, 3, width=4), batches, steps_per_epoch=6, sparsity=0.5, epochs=1, min_weights=1000)
    for layer in pruned.layers:
        if hasattr(layer, "kernel"):
            zeros = float(np.mean(layer.kernel.numpy() == 0))
            assert zeros == pytest.approx(0.5, abs=0.01) if layer.kernel.numpy().size >= 1000 else zeros == 0.0, layer.name
    assert np.sum(pruned.get_layer("classifier").kernel.numpy() == 0) == 0


def card_with(agreement: float, f1_delta: float, gzip_bytes: int) -> ModelCard:
    from conftest import TINY_LABELS
    from edgecxr.core.preprocess import PreprocessSpec

    verification = Verification(agreement, 0.1, Deltas(0.0, f1_delta, {}), Thresholds(), passed=agreement >= 0.97 and f1_delta >= -0.02)
    return ModelCard("m", tuple(TINY_LABELS), PreprocessSpec(size=(32, 32)), gzip_bytes=gzip_bytes, verification=verification)


def test_bundling_rule_is_stricter_than_the_gates():
    from converters.build import meets_bundling_rule

    int8 = card_with(0.999, 0.0, 1000)
    assert meets_bundling_rule(card_with(0.985, -0.005, 600), int8)
    assert card_with(0.975, -0.005, 500).verification.passed  # passes the gates ...
    assert not meets_bundling_rule(card_with(0.975, -0.005, 500), int8)  # ... not the rule: agreement
    assert not meets_bundling_rule(card_with(0.99, -0.015, 500), int8)  # macro-F1 more than a point down
    assert not meets_bundling_rule(card_with(0.99, 0.0, 700), int8)  # download not small enough


def test_variant_under_the_gates_is_rejected_and_not_bundled(trained_run, tmp_path, monkeypatch):
    import converters.build as build
    from converters.__main__ import main

    bundled = tmp_path / "models"
    bundled.mkdir()
    monkeypatch.setattr(build, "MODELS_DIR", bundled)
    out = tmp_path / "out"
    code = main([
        str(trained_run.out), "--data", str(trained_run.data), "--out", str(out), "--variants", "int8,pruned-int8", "--sparsity", "0.95", "--prune-epochs", "1",
        "--lr", "1e-2", "--min-agreement", "1.0", "--bundle",
    ])
    assert code == 1
    card = read_card(out / "rejected" / "resnet18-pruned-int8.tflite")
    assert card.verification.passed is False and card.verification.agreement_with_float32 < 1.0
    assert card.pruning.method == "magnitude" and card.pruning.target_sparsity == 0.95
    assert card.pruning.int8_sparsity >= 0.9 and card.pruning.distillation == 0.8 and card.pruning.batchnorm == "frozen"
    assert not (out / "resnet18-pruned-int8.tflite").exists()
    assert {p.name for p in bundled.glob("*.tflite")} <= {"resnet18-float32.tflite", "resnet18-int8.tflite"}
    assert "resnet18-pruned-int8.tflite" not in {p.name for p in bundled.iterdir()}


def test_pruning_card_part_reads_old_and_new_cards():
    from edgecxr.core.cardparts import Pruning

    old = Pruning.from_dict({"target_sparsity": 0.5, "sparsity": 0.4987, "fine_tune_epochs": 2}, "pruning")
    assert old.method is None and old.to_dict() == {"target_sparsity": 0.5, "sparsity": 0.4987, "fine_tune_epochs": 2}
    new = dataclasses.replace(old, method="magnitude+pqat", int8_sparsity=0.5, learning_rate=1e-4, distillation=0.9, batchnorm="frozen")
    assert Pruning.from_dict(new.to_dict(), "pruning") == new
    assert [v for v, spec in VARIANTS.items() if spec.qat] == ["pqat-int8", "qat-int8"]
