"""Dropping the final softmax from a converted classifier (``converters.logits``): the logits become the output."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.train


def _softmax_model():
    import tf_keras as keras

    inputs = keras.Input((8,), name="image")
    outputs = keras.layers.Dense(3, activation="softmax", name="classifier")(inputs)
    model = keras.Model(inputs, outputs)
    model.get_layer("classifier").set_weights([np.random.default_rng(0).normal(0, 1, (8, 3)).astype(np.float32), np.array([0.5, -0.2, 0.1], np.float32)])
    return model


def _run(flat: bytes, x: np.ndarray, tmp_path) -> tuple[np.ndarray, dict]:
    from edgecxr.core.interpreter import make_interpreter

    path = tmp_path / f"model{len(list(tmp_path.iterdir()))}.tflite"
    path.write_bytes(flat)
    interpreter = make_interpreter(str(path))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    rows = []
    for row in x:
        q = row if inp["dtype"] == np.float32 else np.round(row / inp["quantization"][0] + inp["quantization"][1]).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], q[None])
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])[0]
        rows.append(y if out["dtype"] == np.float32 else (y.astype(np.float32) - out["quantization"][1]) * out["quantization"][0])
    return np.array(rows), out


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_the_stripped_model_outputs_the_logits(variant, tmp_path):
    from converters.logits import strip_softmax
    from converters.quantize import convert
    from edgecxr.core.calibration import softmax

    model = _softmax_model()
    x = np.random.default_rng(1).uniform(0, 1, (64, 8)).astype(np.float32)
    flat = convert(model, variant, x if variant == "int8" else None)
    probabilities, _ = _run(flat, x, tmp_path)
    logits, out = _run(strip_softmax(flat), x, tmp_path)
    kernel, bias = model.get_layer("classifier").get_weights()
    step = out["quantization"][0] if variant == "int8" else 0.0
    assert np.abs(logits - (x @ kernel + bias)).max() <= max(2 * step, 1e-5)  # the logits, to an int8 step or two
    assert np.abs(softmax(logits) - probabilities).max() <= (0.02 if variant == "int8" else 1e-5)
    assert out["shape"].tolist() == [1, 3]


def test_a_model_without_a_final_softmax_is_refused(tiny_models):
    from converters.logits import strip_softmax

    with pytest.raises(ValueError, match="expected one SOFTMAX op producing a model output, found 0"):
        strip_softmax(tiny_models["int8"].read_bytes())


def test_models_that_already_output_logits_are_not_re_released(tiny_models, tmp_path, capsys):
    from converters.logits import main

    code = main([str(tiny_models["float32"]), str(tiny_models["int8"]), "--data", str(tmp_path), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "already outputs logits" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_facts_are_embedded_into_a_model_that_had_none(tmp_path, capsys):
    """``python -m converters.embed``: the facts land in the file, the outputs stay bit-identical, the card follows the sha256."""
    from converters.embed import identical_outputs, main
    from edgecxr.core.card import read_card
    from edgecxr.core.embedded import embedded_facts
    from edgecxr.core.registry import MODELS_DIR
    from test_embedded import without_facts

    old = without_facts(MODELS_DIR / "mlp12-int8.tflite", tmp_path)
    assert main([str(old), "--out", str(tmp_path / "out")]) == 0
    new = tmp_path / "out" / old.name
    card = read_card(new)  # checks the card's sha256 against the file
    assert embedded_facts(new.read_bytes()) == {"labels": list(card.labels), "preprocessing": card.preprocessing.to_dict(), "output_kind": "probabilities"}
    assert identical_outputs(old, new)
    assert main([str(new), "--out", str(tmp_path / "again")]) == 2
    assert "already carries its facts" in capsys.readouterr().err


def _two_output_flat() -> tuple[bytes, object]:
    """A small CNN exported as the old converter did: a feature map output and softmax probabilities."""
    import tf_keras as keras

    from converters.quantize import convert

    inputs = keras.Input((8, 8, 1), name="image")
    features = keras.layers.Conv2D(4, 3, activation="relu", name="features")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    probs = keras.layers.Dense(3, activation="softmax", name="classifier")(pooled)
    model = keras.Model(inputs, [probs, features])
    return convert(model, "float32"), model


def test_with_a_feature_map_output_the_outputs_keep_their_order_and_signature(tmp_path):
    from converters.logits import strip_softmax
    from edgecxr.core.calibration import softmax
    from edgecxr.core.interpreter import make_interpreter

    flat, model = _two_output_flat()
    (tmp_path / "old.tflite").write_bytes(flat)
    (tmp_path / "new.tflite").write_bytes(strip_softmax(flat))
    old, new = make_interpreter(str(tmp_path / "old.tflite")), make_interpreter(str(tmp_path / "new.tflite"))
    assert [tuple(d["shape"]) for d in new.get_output_details()] == [tuple(d["shape"]) for d in old.get_output_details()]
    x = np.random.default_rng(2).uniform(0, 1, (1, 8, 8, 1)).astype(np.float32)
    old_out = old.get_signature_runner()(image=x)
    new_out = new.get_signature_runner()(image=x)
    assert set(old_out) == set(new_out)  # same signature names, each mapped to the same kind of tensor
    by_rank = {len(v.shape): k for k, v in new_out.items()}
    logits, feature_map = new_out[by_rank[2]], new_out[by_rank[4]]
    assert np.allclose(feature_map, old_out[by_rank[4]])
    assert np.allclose(softmax(logits), old_out[by_rank[2]], atol=1e-6) and not np.allclose(logits, old_out[by_rank[2]])


def test_a_softmax_whose_output_feeds_other_ops_is_refused():
    import tf_keras as keras

    from converters.logits import strip_softmax
    from converters.quantize import convert

    inputs = keras.Input((8,), name="image")
    probs = keras.layers.Dense(3, activation="softmax")(inputs)
    model = keras.Model(inputs, [probs, keras.layers.Lambda(lambda p: 2 * p)(probs)])
    with pytest.raises(ValueError, match="also feeds other ops"):
        strip_softmax(convert(model, "float32"))


def test_embedding_refuses_a_card_that_is_not_the_files_and_its_own_folder(tmp_path, capsys):
    from converters.embed import main
    from edgecxr.core.card import read_card
    from edgecxr.core.registry import MODELS_DIR
    from test_embedded import without_facts

    model = without_facts(MODELS_DIR / "mlp12-int8.tflite", tmp_path)
    assert main([str(model), "--out", str(tmp_path)]) == 2
    assert "--out is its own folder" in capsys.readouterr().err
    card = read_card(model)
    (model.with_suffix(".json")).write_text((model.with_suffix(".json")).read_text().replace(card.sha256 or "", "0" * 64))
    assert main([str(model), "--out", str(tmp_path / "out")]) == 2
    assert "does not match its card" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
