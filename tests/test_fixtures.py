"""The committed tiny models in tests/fixtures: consistent with their Keras model, and what tests/make_tiny.py builds."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, TINY_LABELS, TINY_SPEC, toy_images
from edgecxr import load_model
from edgecxr.core.card import read_card
from edgecxr.core.preprocess import PreprocessSpec

INT8_TOLERANCE = 0.05  # measured 0.03 between the int8 model and Keras on the toy images
REBUILD_TOLERANCE = 0.05  # TensorFlow promises no bit-identical training across machines and versions


def toy_probabilities(path: Path, n: int) -> np.ndarray:
    model = load_model(path)
    return np.stack([model.predict_preprocessed(img, calibrated=False) for img in toy_images(n)[0]])


def test_committed_models_give_their_keras_probabilities(tiny_models):
    keras_probs = np.load(FIXTURES / "keras_probs.npy")
    _, y = toy_images(len(keras_probs))
    assert keras_probs.shape == (30, 3)
    np.testing.assert_array_equal(keras_probs.argmax(axis=1), y)  # the tiny model learnt the toy set
    float32 = toy_probabilities(tiny_models["float32"], len(keras_probs))
    np.testing.assert_allclose(float32, keras_probs, atol=1e-4)
    int8 = toy_probabilities(tiny_models["int8"], len(keras_probs))
    np.testing.assert_allclose(int8, keras_probs, atol=INT8_TOLERANCE)
    np.testing.assert_array_equal(int8.argmax(axis=1), y)


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_committed_cards_describe_the_tiny_models(tiny_models, variant):
    card = read_card(tiny_models[variant])
    assert (card.name, card.family, card.variant) == (f"tiny-{variant}", "tiny", variant)
    assert list(card.labels) == TINY_LABELS and card.preprocessing == PreprocessSpec.from_dict(TINY_SPEC)
    assert np.shape(card.cam.weights) == (8, 3) and np.shape(card.cam.bias) == (3,)
    model = load_model(tiny_models[variant])
    assert model.has_heatmap and list(model.feature_details["shape"]) == [1, 15, 15, 8]
    assert sum(p.stat().st_size for p in FIXTURES.iterdir()) < 64_000  # a few KB each


def structure(path: Path) -> dict:
    """What must not change when the tiny models are rebuilt: the card without its numbers, the tensors' shapes and dtypes."""
    card = json.loads(path.with_suffix(".json").read_text())
    cam = card.pop("cam")
    for key in ("sha256", "size_bytes"):
        card.pop(key)
    model = load_model(path)
    assert model.feature_details is not None  # every tiny fixture has a heatmap
    tensors = {kind: (list(d["shape"]), np.dtype(d["dtype"]).name) for kind, d in
               (("input", model.input_details), ("output", model.output_details), ("features", model.feature_details))}
    return {"card": card, "cam": (cam["feature_layer"], np.shape(cam["weights"]), np.shape(cam["bias"])), "tensors": tensors}


@pytest.mark.train
def test_make_tiny_rebuilds_the_committed_models(tiny_models, tmp_path):
    from make_tiny import N_REFERENCE, make_tiny

    fresh = make_tiny(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in FIXTURES.iterdir())
    keras_probs = np.load(FIXTURES / "keras_probs.npy")
    fresh_keras = np.load(tmp_path / "keras_probs.npy")
    np.testing.assert_allclose(fresh_keras, keras_probs, atol=REBUILD_TOLERANCE)
    np.testing.assert_array_equal(fresh_keras.argmax(axis=1), keras_probs.argmax(axis=1))
    for variant, path in tiny_models.items():
        assert structure(fresh[variant]) == structure(path)
        committed, rebuilt = toy_probabilities(path, N_REFERENCE), toy_probabilities(fresh[variant], N_REFERENCE)
        np.testing.assert_allclose(rebuilt, committed, atol=REBUILD_TOLERANCE)
        np.testing.assert_array_equal(rebuilt.argmax(axis=1), committed.argmax(axis=1))
