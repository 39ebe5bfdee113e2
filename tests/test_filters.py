"""Filter pruning (converters.narrow): the narrow network equals the masked wide one, residual channels stay consistent; MACs; the shipping rule."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.filters import verdict
from conftest import tiny_card
from edgecxr.core.card import ModelError, read_card, write_card


def _wide(seed: int = 0, stem: str = "7x7"):
    """A small ResNet (width 8, 32x32) with random weights and BatchNorm statistics, so every channel matters differently."""
    import tf_keras as keras

    from training.models import build_resnet18

    keras.utils.set_random_seed(seed)
    model = build_resnet18(32, 3, width=8, stem=stem)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.2, n), rng.normal(0, 0.2, n), rng.uniform(0.5, 2.0, n)])
    return model


@pytest.mark.train
@pytest.mark.parametrize("stem, keep, keep_stage", [("7x7", 0.5, 1.0), ("7x7", 0.5, 0.5), ("7x7", 0.75, 0.75), ("s2d", 0.5, 1.0), ("3x3", 0.5, 0.5)])
def test_narrow_network_equals_the_wide_one_with_removed_channels_masked(stem, keep, keep_stage):
    from converters.narrow import kept_channels, masked_copy, narrow_model, stem_kind

    wide = _wide(stem=stem)
    kept = kept_channels(wide, keep, keep_stage)
    narrow = narrow_model(wide, kept)
    assert stem_kind(wide) == stem_kind(narrow) == stem
    if stem != "7x7":  # a two-conv stem's first conv is kept whole, and stem_conv reads all of it
        assert narrow.get_layer("stem0_conv").filters == wide.get_layer("stem0_conv").filters == len(kept["stem0"])
    x = np.random.default_rng(1).uniform(0, 1, (6, 32, 32, 1)).astype(np.float32)
    masked, unmasked = masked_copy(wide, kept).predict(x, verbose=0), wide.predict(x, verbose=0)
    np.testing.assert_allclose(narrow.predict(x, verbose=0), masked, atol=1e-6)
    assert np.abs(masked - unmasked).max() > 1e-3  # the masking removed something
    assert narrow.count_params() < wide.count_params()
    assert narrow.get_layer("features").output.shape[-1] == len(kept["stage4"])
    assert narrow.get_layer("stage2_block1_a_conv").filters == len(kept["stage2_block1"]) == round(16 * keep)
    assert narrow.get_layer("stem_conv").filters == len(kept["stage1"]) == round(8 * keep_stage)


@pytest.mark.train
def test_residual_channels_are_pruned_alike_across_every_add():
    """Every tensor meeting at a stage's Add keeps the same channels: in the masked model the removed ones are 0 in all of them."""
    import tf_keras as keras

    from converters.narrow import channel_groups, kept_channels, masked_copy

    wide = _wide()
    kept = kept_channels(wide, 0.5, 0.5)
    assert channel_groups(wide)["stage1"] == ["stem_conv", "stage1_block1_b_conv", "stage1_block2_b_conv"]
    assert channel_groups(wide)["stage2"] == ["stage2_block1_b_conv", "stage2_block1_proj_conv", "stage2_block2_b_conv"]
    masked = masked_copy(wide, kept)
    adds = [layer for layer in masked.layers if isinstance(layer, keras.layers.Add)]
    assert len(adds) == 8
    probe = keras.Model(masked.input, [t for layer in adds for t in (*layer.input, layer.output)])
    values = probe.predict(np.random.default_rng(2).uniform(0, 1, (4, 32, 32, 1)).astype(np.float32), verbose=0)
    for i, layer in enumerate(adds):
        stage = layer.name.split("_")[0]
        removed = np.setdiff1d(np.arange(values[3 * i].shape[-1]), kept[stage])
        assert len(removed) == values[3 * i].shape[-1] // 2
        for tensor in values[3 * i: 3 * i + 3]:  # both inputs and the sum
            assert np.all(tensor[..., removed] == 0)
            assert np.abs(tensor[..., kept[stage]]).max() > 0


@pytest.mark.train
def test_filters_are_ranked_by_l1_norm_times_batchnorm_scale():
    from converters.narrow import filter_importance, kept_channels

    wide = _wide()
    conv, bn = wide.get_layer("stage3_block2_a_conv"), wide.get_layer("stage3_block2_a_bn")
    kernel = conv.get_weights()[0]
    gamma, beta, mean, var = bn.get_weights()
    gamma[:] = 1.0
    gamma[5] = 100.0  # filter 5 made the most important, filter 7 worthless
    kernel[..., 7] = 0
    conv.set_weights([kernel])
    bn.set_weights([gamma, beta, mean, var])
    score = filter_importance(wide, "stage3_block2_a_conv")
    assert np.argmax(score) == 5 and score[7] == 0
    kept = kept_channels(wide, 0.5)["stage3_block2"]
    assert 5 in kept and 7 not in kept and len(kept) == 16
    assert list(kept_channels(wide, 0.5)["stage3"]) == list(range(32))  # keep_stage 1: residual channels left alone
    with pytest.raises(ValueError, match="keep ratios"):
        kept_channels(wide, 0.0)


@pytest.mark.train
def test_macs_of_a_small_model_match_a_hand_count(tmp_path):
    import tensorflow as tf
    import tf_keras as keras
    from tf_keras import layers

    from edgecxr.evaluation.macs import macs

    inputs = keras.Input((16, 16, 2))
    x = layers.Conv2D(8, 3, padding="same")(inputs)  # 16*16*8 outputs x 3*3*2
    x = layers.DepthwiseConv2D(3, padding="same")(x)  # 16*16*8 outputs x 3*3
    x = layers.Conv2D(4, 3, strides=2, padding="same")(x)  # 8*8*4 outputs x 3*3*8
    x = layers.Flatten()(x)
    outputs = layers.Dense(3)(x)  # 256 x 3
    path = tmp_path / "small.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, outputs)).convert())
    assert macs(path) == 16 * 16 * 8 * 9 * 2 + 16 * 16 * 8 * 9 + 8 * 8 * 4 * 9 * 8 + 256 * 3


def test_macs_of_the_bundled_resnet_are_its_layer_shapes():
    from edgecxr.core.registry import MODELS_DIR
    from edgecxr.evaluation.macs import macs

    # the stem 7x7 on 64x64, the stages on 32x32 down to 4x4 (the pooled stem is 32x32: stage s has side 32 / 2^s)
    stages = sum(
        (32 // 2**s) ** 2 * w * 9 * (w // 2 if s and i == 0 else w) + (32 // 2**s) ** 2 * w * 9 * w
        + ((32 // 2**s) ** 2 * w * (w // 2) if s and i == 0 else 0)
        for s, w in enumerate((32, 64, 128, 256)) for i in range(2)
    )
    assert macs(MODELS_DIR / "resnet18-int8.tflite") == 64 * 64 * 32 * 49 + stages + 256 * 3
    assert macs(MODELS_DIR / "resnet18-float32.tflite") == macs(MODELS_DIR / "resnet18-int8.tflite")


def test_cards_carry_macs_and_old_cards_without_them_stay_readable(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(b"model")
    assert write_card(path, tiny_card("int8")).macs is None
    assert "macs" not in read_card(path).to_dict()  # an old card: no key, read as None
    assert write_card(path, tiny_card("int8", macs=1234)).macs == 1234
    assert read_card(path).macs == 1234
    card = read_card(path).to_dict()
    path.with_suffix(".json").write_text(json.dumps({**card, "macs": -1}))
    with pytest.raises(ModelError, match="macs must be a whole number >= 0"):
        read_card(path)


def _row(ms1: float, ms2: float, f1: float, external: float, macs: int, gate: str | None = "decision-level 1") -> dict:
    return {
        "p50_ms": {"1t_xnnpack": ms1, "2t_xnnpack": ms2, "1t_builtin": 2 * ms1}, "test_macro_f1": f1, "external_called_normal": external,
        "macs": macs, "gate": gate,
    }


def test_shipping_rule_needs_speed_at_both_thread_counts_and_the_release_gate_passed():
    """Accuracy is the release gate's (on the card, against the reference); the differences to int8 are reported beside it."""
    base = _row(1.2, 1.0, 0.8885, 0.566, 145_000_000)
    ok = verdict(_row(0.7, 0.6, 0.8800, 0.550, 40_000_000), base)
    assert ok["passes"] and ok["speedup"]["1t_xnnpack"] == pytest.approx(1.714, abs=1e-3) and ok["macs_ratio"] == 3.625
    assert ok["macro_f1_drop"] == 0.0085 and ok["external_drop"] == 0.016
    assert not verdict(_row(0.7, 0.9, 0.8885, 0.566, 40_000_000), base)["passes"]  # not 1.5x at 2 threads
    assert not verdict(_row(0.7, 0.6, 0.8885, 0.566, 40_000_000, gate=None), base)["passes"]  # fast, but its card has no passed gate


@pytest.mark.train
def test_commands_send_the_narrow_variant_to_its_own_command_and_refuse_a_non_run(tmp_path, capsys):
    from converters.__main__ import main as convert_main
    from converters.filters import main as filters_main

    with pytest.raises(SystemExit) as exit_info:
        convert_main([str(tmp_path), "--out", str(tmp_path / "out"), "--variants", "int8,filter-pruned-int8"])
    assert exit_info.value.code == 2 and "made by python -m converters.filters" in capsys.readouterr().err
    assert filters_main([str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path}: not a training run folder (needs best.keras and run.json)\n"
    with pytest.raises(SystemExit):
        filters_main([str(tmp_path), "--out", str(tmp_path / "out"), "--keep", "0"])
    assert "--keep and --keep-stage must be in (0, 1]" in capsys.readouterr().err
