"""The card facts inside a .tflite: read back from the committed fixtures, and a card that disagrees refused."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_LABELS, copy_model
from edgecxr.core.card import ModelError, read_card, write_card
from edgecxr.core.cardparts import Temperature
from edgecxr.core.embedded import METADATA_NAME, embedded_facts, read_metadata
from edgecxr.core.model import load_model
from edgecxr.core.registry import MODELS_DIR


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


def test_logits_model_probabilities_are_the_softmax_of_its_logits(tiny_models, tmp_path):
    """What the runtime returns is softmax(dequantized int8 logits / T) in float: not limited to the output's steps."""
    path = copy_model(tiny_models["int8"], tmp_path)
    write_card(path, replace(read_card(path), temperature=Temperature(1.7)))
    model = load_model(path)
    assert model.card.output_kind == "logits" and model.temperature == 1.7
    rng = np.random.default_rng(0)
    detail = model.output_details
    scale, zero = detail["quantization"]
    for _ in range(5):
        x = rng.random((32, 32, 1), np.float32)
        probs = model.predict_preprocessed(x)
        model.interpreter.set_tensor(model.input_details["index"], model.quantize_input(x[None]))
        model.interpreter.invoke()
        logits = (model.interpreter.get_tensor(detail["index"])[0].astype(np.float64) - zero) * scale
        expected = np.exp(logits / 1.7 - (logits / 1.7).max())
        np.testing.assert_allclose(probs, expected / expected.sum(), atol=1e-6)


def test_malformed_offsets_are_errors_not_missing_facts(tiny_models):
    flat = bytearray(tiny_models["int8"].read_bytes())
    root = int.from_bytes(flat[0:4], "little")
    flat[root:root + 4] = (root + 8).to_bytes(4, "little", signed=True)  # vtable before the start of the file
    with pytest.raises(ValueError, match="unreadable flatbuffer metadata"):
        embedded_facts(bytes(flat))


def without_facts(model: Path, tmp_path: Path) -> Path:
    """A copy of ``model`` whose facts entry is renamed in place (same length: the flatbuffer stays valid), as in a file
    converted before facts were embedded; its card is rewritten for the new sha256 and the old output kind."""
    path = copy_model(model, tmp_path)
    flat = path.read_bytes()
    assert flat.count(METADATA_NAME.encode()) == 1
    path.write_bytes(flat.replace(METADATA_NAME.encode(), b"x" * len(METADATA_NAME)))
    assert embedded_facts(path.read_bytes()) is None
    write_card(path, replace(read_card(path), output_kind="probabilities"))
    return path


def test_a_logits_card_on_a_file_without_facts_is_refused(tmp_path):
    """A file converted before facts were embedded cannot claim logits (its outputs would be read wrongly)."""
    path = without_facts(MODELS_DIR / "mlp12-int8.tflite", tmp_path)
    load_model(path)
    write_card(path, replace(read_card(path), output_kind="logits"))
    with pytest.raises(ModelError, match="carries no edgecxr facts"):
        load_model(path)


def test_bundled_classifiers_carry_their_cards_facts():
    for name in ("resnet18-int8", "resnet18-float32", "mlp12-int8", "mlp12-float32"):
        card = read_card(MODELS_DIR / f"{name}.tflite")
        facts = embedded_facts((MODELS_DIR / f"{name}.tflite").read_bytes())
        assert facts == {"labels": list(card.labels), "preprocessing": card.preprocessing.to_dict(), "output_kind": "logits"}


def test_without_facts_the_output_count_still_guards_the_labels(tmp_path):
    path = without_facts(MODELS_DIR / "mlp12-int8.tflite", tmp_path)
    write_card(path, replace(read_card(path), labels=("a", "b"), output=None))  # the card's own output block would catch it first
    with pytest.raises(ModelError, match="3 outputs but its card lists 2 labels"):
        load_model(path)
