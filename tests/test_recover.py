"""Recovering a Keras model from a float32 classifier ``.tflite`` (``converters.recover``)."""
from __future__ import annotations

import numpy as np
import pytest

from edgecxr.core.registry import MODELS_DIR

pytestmark = pytest.mark.train


def _trained_like_resnet():
    """A narrow ResNet-18 of the registry with BatchNormalization statistics and scales far from identity."""
    from training.models import build_resnet18

    model = build_resnet18(32, 3, width=4)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if layer.name.endswith("_bn"):
            n = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 0.5, n), rng.normal(0, 0.3, n), rng.uniform(0.2, 3, n)])
    return model


def test_the_rebuilt_model_computes_what_the_tflite_computes():
    import tf_keras as keras

    from converters.quantize import convert, exported
    from converters.recover import rebuild, restore_statistics, tflite_weights

    x = np.random.default_rng(1).uniform(0, 1, (48, 32, 32, 1)).astype(np.float32)
    original = _trained_like_resnet()
    from training.models import build_resnet18

    weights = tflite_weights(convert(exported(original), "float32"), (layer.name for layer in original.layers))
    assert weights["stem_conv"][0].shape == (7, 7, 1, 4) and weights["classifier"][0].shape == (32, 3)
    assert len(weights) == sum(1 for layer in original.layers if layer.name.endswith("_conv")) + 1
    rebuilt = rebuild(build_resnet18(32, 3, width=4), weights)
    assert np.abs(rebuilt.predict(x, verbose=0) - original.predict(x, verbose=0)).max() < 1e-5
    restore_statistics(rebuilt, x, batch_size=20)  # batches of 20, 20 and 8 films
    assert np.abs(rebuilt.predict(x, verbose=0) - original.predict(x, verbose=0)).max() < 1e-5  # the function is kept
    # ... and the statistics are the films': in training mode (batch statistics) the answers barely move
    bn = rebuilt.get_layer("stem_bn")
    assert not np.allclose(bn.get_weights()[2], 0)
    probe = keras.Model(rebuilt.input, rebuilt.get_layer("stem_bn").output)
    trained_mode, inference_mode = probe(x, training=True).numpy(), probe(x, training=False).numpy()
    assert np.abs(trained_mode - inference_mode).max() < 1e-3


def test_only_a_float32_model_is_recovered(tmp_path, capsys):
    from converters.recover import main

    assert main([str(MODELS_DIR / "resnet18-int8.tflite"), "--data", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    assert "recover from a float32 classifier with a training record, not int8" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_weights_that_do_not_fit_the_model_are_refused():
    from converters.quantize import convert, exported
    from converters.recover import rebuild, tflite_weights
    from training.models import build_resnet18

    flat = convert(exported(build_resnet18(32, 3, width=4)), "float32")
    names = [layer.name for layer in build_resnet18(32, 3, width=4).layers]
    with pytest.raises(ValueError, match="names no layer of the model"):
        tflite_weights(flat, [n for n in names if n != "stem_conv"])
    with pytest.raises(ValueError, match="stem_conv: the .tflite's weights do not fit"):
        rebuild(build_resnet18(32, 3, width=8), tflite_weights(flat, names))
