"""Pruned and quantization-aware variants: sparsity survives stripping and int8 conversion, variants failing the gate are not bundled."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import toy_images
from edgecxr.core.card import read_card
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


def test_variant_failing_the_gate_is_rejected_and_not_bundled(trained_run, tmp_path, monkeypatch):
    """With a gate no model can pass (agreement with its own float model >= 101%), every variant is rejected and nothing is bundled; with
    the real gate the tiny run's own float32 (its reference: the bundled ResNet has other labels) and int8 pass and are kept."""
    import json

    import converters.bundling as bundling
    import edgecxr.evaluation.targets as targets
    from converters.__main__ import main

    bundled = tmp_path / "models"
    bundled.mkdir()
    monkeypatch.setattr(bundling, "MODELS_DIR", bundled)
    data = json.loads(targets.TARGETS_FILE.read_text())
    data["gates"]["quantization"][0]["value"] = 1.01  # agreement with its own float model above 100%
    impossible = tmp_path / "targets.json"
    impossible.write_text(json.dumps(data))
    monkeypatch.setattr(targets, "TARGETS_FILE", impossible)
    targets.gate.cache_clear()
    out = tmp_path / "out"
    try:
        code = main([
            str(trained_run.out), "--data", str(trained_run.data), "--out", str(out), "--variants", "int8,pruned-int8", "--sparsity", "0.5",
            "--prune-epochs", "1", "--bundle",
        ])
    finally:
        monkeypatch.undo()  # the real targets file again
        targets.gate.cache_clear()
    assert code == 1
    for variant in ("float32", "int8", "pruned-int8"):
        card = read_card(out / "rejected" / f"resnet18-{variant}.tflite")
        assert card.verification.passed is False and card.gate.passed is False
        # the impossible check fails every variant; a briefly trained model's int8 may also miss a decision check by chance
        failed = {c.key: c for c in card.gate.failed}
        assert "agreement_with_own_float" in failed and failed["agreement_with_own_float"].target == 1.01
        assert card.gate.reference.startswith("the run's own float32 model")
        assert not (out / f"resnet18-{variant}.tflite").exists()
    card = read_card(out / "rejected" / "resnet18-pruned-int8.tflite")
    assert card.pruning.method == "magnitude" and card.pruning.target_sparsity == 0.5 and card.gate.own_float.startswith("the magnitude Keras model")
    assert card.pruning.int8_sparsity >= 0.45 and card.pruning.distillation == 0.8 and card.pruning.batchnorm == "frozen"
    assert list(bundled.iterdir()) == []

    out = tmp_path / "real"
    assert main([str(trained_run.out), "--data", str(trained_run.data), "--out", str(out), "--variants", "int8"]) == 0
    card = read_card(out / "resnet18-int8.tflite")
    assert card.gate.passed and card.gate.name == targets.gate().name and card.gate.own_float == "the run's Keras model"
    keys = {c.key for c in card.gate.checks}
    assert keys == {"agreement_with_own_float", "macro_f1", "sensitivity", "ece_after_temperature"}  # no Normal class: no AUC, no external


def test_pruning_card_part_reads_old_and_new_cards():
    from edgecxr.core.cardparts import Pruning

    old = Pruning.from_dict({"target_sparsity": 0.5, "sparsity": 0.4987, "fine_tune_epochs": 2}, "pruning")
    assert old.method is None and old.to_dict() == {"target_sparsity": 0.5, "sparsity": 0.4987, "fine_tune_epochs": 2}
    new = dataclasses.replace(old, method="magnitude+pqat", int8_sparsity=0.5, learning_rate=1e-4, distillation=0.9, batchnorm="frozen")
    assert Pruning.from_dict(new.to_dict(), "pruning") == new
    assert [v for v, spec in VARIANTS.items() if spec.qat] == ["pqat-int8", "qat-int8"]
