"""Model cards: writing, reading (with preprocessing defaults), hashing and verification."""
from __future__ import annotations

import hashlib
import json

import pytest

from edgecxr.card import (
    INTENDED_USE,
    ModelError,
    card_path_for,
    read_card,
    sha256_of,
    verify_file,
    write_card,
)
from edgecxr.preprocess import DEFAULT_SPEC

BASE_CARD = {"name": "toy", "labels": ["a", "b", "c"], "preprocessing": {"size": [32, 32]}}


@pytest.fixture()
def model_file(tmp_path):
    path = tmp_path / "toy-int8.tflite"
    path.write_bytes(bytes(range(256)) * 10 + b"tail")
    return path


def test_card_path_is_json_beside_model(tmp_path):
    assert card_path_for(tmp_path / "m.tflite") == tmp_path / "m.json"
    assert card_path_for("dir/resnet18-int8.tflite").name == "resnet18-int8.json"


def test_sha256_of_matches_hashlib(model_file):
    assert sha256_of(model_file) == hashlib.sha256(model_file.read_bytes()).hexdigest()


def test_sha256_of_large_file_spanning_blocks(tmp_path):
    # sha256_of reads 1 MiB blocks; a file of 2.5 MiB exercises several reads and a partial one.
    path = tmp_path / "big.bin"
    data = bytes(range(251)) * ((5 << 19) // 251 + 1)
    path.write_bytes(data)
    assert len(data) > (2 << 20)
    assert sha256_of(path) == hashlib.sha256(data).hexdigest()


def test_sha256_of_empty_file(tmp_path):
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    assert sha256_of(path) == hashlib.sha256(b"").hexdigest()


def test_write_card_records_file_size_and_sha(model_file):
    card_path = write_card(model_file, BASE_CARD)
    assert card_path == model_file.with_suffix(".json")
    written = json.loads(card_path.read_text())
    assert written["file"] == "toy-int8.tflite"
    assert written["size_bytes"] == model_file.stat().st_size == 2564
    assert written["sha256"] == hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert written["name"] == "toy"
    assert written["labels"] == ["a", "b", "c"]
    assert written["preprocessing"] == {"size": [32, 32]}  # written as given; defaults come on read
    assert written["intended_use"] == INTENDED_USE
    assert card_path.read_text().endswith("\n")


def test_write_card_does_not_mutate_its_argument(model_file):
    card = {**BASE_CARD}
    before = json.dumps(card, sort_keys=True)
    write_card(model_file, card)
    assert json.dumps(card, sort_keys=True) == before
    assert "sha256" not in card


def test_write_card_overwrites_stale_identity_but_keeps_intended_use(model_file):
    stale = {**BASE_CARD, "file": "old.tflite", "size_bytes": 1, "sha256": "0" * 64, "intended_use": "custom text"}
    written = json.loads(write_card(model_file, stale).read_text())
    assert written["file"] == model_file.name
    assert written["size_bytes"] == model_file.stat().st_size
    assert written["sha256"] == sha256_of(model_file)
    assert written["intended_use"] == "custom text"


def test_write_card_follows_file_changes(model_file):
    first = json.loads(write_card(model_file, BASE_CARD).read_text())["sha256"]
    model_file.write_bytes(b"different contents")
    second = json.loads(write_card(model_file, BASE_CARD).read_text())
    assert second["sha256"] != first
    assert second["sha256"] == hashlib.sha256(b"different contents").hexdigest()
    assert second["size_bytes"] == len(b"different contents")


def test_read_card_fills_preprocessing_defaults(model_file):
    write_card(model_file, BASE_CARD)
    card = read_card(model_file)
    assert card["preprocessing"] == {**DEFAULT_SPEC, "size": [32, 32]}
    assert card["preprocessing"]["crop"] == "none"
    assert card["preprocessing"]["interpolation"] == "area"
    assert card["preprocessing"]["scale"] == "0-1"
    assert card["preprocessing"]["clahe"] is False
    assert card["labels"] == ["a", "b", "c"]
    assert card["sha256"] == sha256_of(model_file)


def test_read_card_empty_preprocessing_gets_full_default(model_file):
    write_card(model_file, {**BASE_CARD, "preprocessing": {}})
    assert read_card(model_file)["preprocessing"] == DEFAULT_SPEC


def test_read_then_verify_passes_for_untouched_file(model_file):
    write_card(model_file, BASE_CARD)
    verify_file(model_file, read_card(model_file))  # no exception


def test_verify_file_rejects_changed_file(model_file):
    write_card(model_file, BASE_CARD)
    card = read_card(model_file)
    data = bytearray(model_file.read_bytes())
    data[100] ^= 0xFF
    model_file.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256") as info:
        verify_file(model_file, card)
    assert str(model_file) in str(info.value)
    assert card["sha256"][:12] in str(info.value)


def test_read_card_missing(model_file):
    with pytest.raises(ModelError, match="no model card found") as info:
        read_card(model_file)
    assert "toy-int8.json" in str(info.value)


def test_read_card_invalid_json(model_file):
    card_path_for(model_file).write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        read_card(model_file)


@pytest.mark.parametrize("key", ["name", "labels", "preprocessing", "sha256"])
def test_read_card_missing_required_key(model_file, key):
    path = write_card(model_file, BASE_CARD)
    card = json.loads(path.read_text())
    del card[key]
    path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match=f"lacks {key}"):
        read_card(model_file)


@pytest.mark.parametrize("labels", [["only"], "a,b,c", []])
def test_read_card_bad_labels(model_file, labels):
    write_card(model_file, {**BASE_CARD, "labels": labels})
    with pytest.raises(ModelError, match="labels must be a list of at least two"):
        read_card(model_file)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"crop": "weird"}, "crop 'weird'"),
        ({"size": [32]}, "size must be"),
        ({"colour": "grayscale"}, "unknown preprocessing keys"),
        ({"scale": "imagenet"}, "scale 'imagenet'"),
        ({"interpolation": "nearest"}, "interpolation 'nearest'"),
    ],
)
def test_read_card_bad_preprocessing(model_file, spec, message):
    path = write_card(model_file, {**BASE_CARD, "preprocessing": spec})
    with pytest.raises(ModelError) as info:
        read_card(model_file)
    assert message in str(info.value)
    assert str(path) in str(info.value)
