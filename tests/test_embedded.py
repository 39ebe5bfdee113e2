"""The card facts inside a .tflite: read back from the committed fixtures, and a card that disagrees refused."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from conftest import TINY_LABELS, copy_model
from edgecxr.card import ModelError, read_card, write_card
from edgecxr.embedded import METADATA_NAME, embedded_facts, read_metadata
from edgecxr.model import load_model


def test_fixture_holds_the_cards_facts(tiny_models):
    flat = tiny_models["int8"].read_bytes()
    assert METADATA_NAME in read_metadata(flat)
    assert "min_runtime_version" in read_metadata(flat)  # the converter's own entries stay
    card = read_card(tiny_models["int8"])
    assert embedded_facts(flat) == {"labels": list(TINY_LABELS), "preprocessing": card.preprocessing.to_dict(), "output_kind": "logits"}


def test_labels_in_another_order_are_refused(tiny_models, tmp_path):
    """Same labels, same count, another order: only the embedded facts can tell."""
    path = copy_model(tiny_models["int8"], tmp_path)
    card = read_card(path)
    write_card(path, replace(card, labels=tuple(reversed(card.labels)), cam=None))
    with pytest.raises(ModelError, match="disagrees with the model file on labels"):
        load_model(path)


def test_output_kind_edited_is_refused(tiny_models, tmp_path):
    path = copy_model(tiny_models["float32"], tmp_path)
    data = json.loads(path.with_suffix(".json").read_text())
    write_card(path, replace(read_card(path), output_kind="probabilities"))
    assert json.loads(path.with_suffix(".json").read_text())["output_kind"] != data["output_kind"]
    with pytest.raises(ModelError, match="on output_kind"):
        load_model(path)


def test_not_a_flatbuffer_holds_no_facts():
    assert embedded_facts(b"\x00" * 64) is None


def test_truncated_metadata_is_an_error(tiny_models):
    flat = tiny_models["int8"].read_bytes()
    with pytest.raises(ValueError, match="unreadable flatbuffer metadata"):
        embedded_facts(flat[: len(flat) // 3])


def test_logits_model_probabilities_have_full_resolution(tiny_models):
    """An int8 logits output gives probabilities between the int8 steps, and calibrated rows still sum to 1."""
    model = load_model(tiny_models["int8"])
    assert model.card.output_kind == "logits"
    rng = np.random.default_rng(0)
    probs = np.stack([model.predict_preprocessed(rng.random((32, 32, 1), np.float32)) for _ in range(20)])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    steps = probs / model.output_details["quantization"][0]
    assert np.abs(steps - np.round(steps)).max() > 0.05  # not multiples of the output scale
