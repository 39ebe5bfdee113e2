"""Model cards: writing, reading (complete validation, schema 1 migration), round trips, hashing, verification."""
from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import replace

import pytest

from edgecxr.core.card import INTENDED_USE, SCHEMA_VERSION, ModelCard, ModelError, card_path_for, read_card, release, sha256_of, verify_file, write_card
from edgecxr.core.cardparts import (
    BeforeAfter,
    Calibration,
    Cam,
    ChangelogEntry,
    Deltas,
    Gate,
    GateCheck,
    GateReport,
    Pruning,
    Quantization,
    Temperature,
    TensorSpec,
    Training,
    Verification,
)
from edgecxr.core.preprocess import PreprocessSpec
from edgecxr.core.registry import MODELS_DIR

BASE_CARD = ModelCard(name="toy", labels=("a", "b", "c"), preprocessing=PreprocessSpec(size=(32, 32)))


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
    written_card = write_card(model_file, BASE_CARD)
    card_path = card_path_for(model_file)
    assert card_path == model_file.with_suffix(".json")
    written = json.loads(card_path.read_text())
    assert written["schema_version"] == SCHEMA_VERSION == 4
    assert written["file"] == "toy-int8.tflite" == written_card.file
    assert written["size_bytes"] == model_file.stat().st_size == 2564 == written_card.size_bytes
    assert written["sha256"] == hashlib.sha256(model_file.read_bytes()).hexdigest() == written_card.sha256
    assert written["name"] == "toy"
    assert written["labels"] == ["a", "b", "c"]
    assert written["preprocessing"] == PreprocessSpec(size=(32, 32)).to_dict()  # written complete
    assert written["intended_use"] == INTENDED_USE
    assert card_path.read_text().endswith("\n")


def test_write_card_does_not_mutate_its_argument(model_file):
    before = BASE_CARD.to_dict()
    written = write_card(model_file, BASE_CARD)
    assert BASE_CARD.to_dict() == before
    assert BASE_CARD.sha256 is None and written.sha256 == sha256_of(model_file)


def test_write_card_overwrites_stale_identity_but_keeps_intended_use(model_file):
    stale = replace(BASE_CARD, file="old.tflite", size_bytes=1, sha256="0" * 64, intended_use="custom text")
    write_card(model_file, stale)
    written = json.loads(card_path_for(model_file).read_text())
    assert written["file"] == model_file.name
    assert written["size_bytes"] == model_file.stat().st_size
    assert written["sha256"] == sha256_of(model_file)
    assert written["intended_use"] == "custom text"


def test_write_card_follows_file_changes(model_file):
    first = write_card(model_file, BASE_CARD).sha256
    model_file.write_bytes(b"different contents")
    write_card(model_file, BASE_CARD)
    second = json.loads(card_path_for(model_file).read_text())
    assert second["sha256"] != first
    assert second["sha256"] == hashlib.sha256(b"different contents").hexdigest()
    assert second["size_bytes"] == len(b"different contents")


def test_write_card_refuses_an_invalid_card_and_writes_nothing(model_file):
    with pytest.raises(ModelError, match=r"temperature\.value must be > 0"):
        write_card(model_file, replace(BASE_CARD, temperature=Temperature(0.0)))
    assert not card_path_for(model_file).exists()


def write_schema1(model_file, **fields) -> None:
    """A card as edgecxr wrote them before schema 2: no schema_version, no changelog."""
    card = {"name": "toy", "labels": ["a", "b", "c"], "preprocessing": {"size": [32, 32]},
            "file": model_file.name, "size_bytes": model_file.stat().st_size, "sha256": sha256_of(model_file), **fields}
    card_path_for(model_file).write_text(json.dumps(card))


def test_read_card_fills_preprocessing_defaults(model_file):
    write_schema1(model_file)
    card = read_card(model_file)
    assert card.preprocessing == PreprocessSpec(size=(32, 32))
    assert card.preprocessing.crop == "none"
    assert card.preprocessing.interpolation == "area"
    assert card.preprocessing.scale == "0-1"
    assert card.preprocessing.clahe is False
    assert (card.preprocessing.clahe_clip_limit, card.preprocessing.clahe_tile_grid) == (2.0, 8)
    assert card.labels == ("a", "b", "c")
    assert card.sha256 == sha256_of(model_file)


def test_read_card_empty_preprocessing_gets_full_default(model_file):
    write_schema1(model_file, preprocessing={})
    assert read_card(model_file).preprocessing == PreprocessSpec()


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
    assert card.sha256[:12] in str(info.value)


def test_read_card_missing(model_file):
    with pytest.raises(ModelError, match="no model card found") as info:
        read_card(model_file)
    assert "toy-int8.json" in str(info.value)


def test_read_card_invalid_json(model_file):
    card_path_for(model_file).write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        read_card(model_file)


@pytest.mark.parametrize(
    "schema, key",
    [(2, k) for k in ("name", "labels", "preprocessing", "sha256", "version", "file", "size_bytes")]
    + [(1, k) for k in ("name", "labels", "preprocessing", "sha256")],
)
def test_read_card_missing_required_key(model_file, schema, key):
    write_card(model_file, BASE_CARD) if schema == 2 else write_schema1(model_file)
    path = card_path_for(model_file)
    card = json.loads(path.read_text())
    del card[key]
    path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match=f"lacks {key}"):
        read_card(model_file)


@pytest.mark.parametrize("labels", [["only"], "a,b,c", []])
def test_read_card_bad_labels(model_file, labels):
    write_schema1(model_file, labels=labels)
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
        ({"clahe": True, "clahe_clip_limit": 0}, "clahe_clip_limit"),
    ],
)
def test_read_card_bad_preprocessing(model_file, spec, message):
    write_schema1(model_file, preprocessing=spec)
    with pytest.raises(ModelError) as info:
        read_card(model_file)
    assert message in str(info.value)
    assert str(card_path_for(model_file)) in str(info.value)


# --- complete validation: each bad field is one ModelError line naming the file and the field ---

INT8 = {"shape": [1, 3], "dtype": "int8", "quantization": {"scale": 0.5, "zero_point": -128}}
GATE = {"name": "decision-level 1", "reference": "ref", "own_float": "own", "agreement_with_reference": 0.95, "passed": True,
        "checks": [{"key": "macro_f1", "name": "test macro-F1", "op": ">=", "target": 0.87, "met": True, "reached": 0.88}]}
BAD_FIELDS = [
    ({"temperature": {"value": 0}}, "temperature.value"),
    ({"temperature": {"value": -1}}, "temperature.value"),
    ({"temperature": {"value": "hot"}}, "temperature.value"),
    ({"temperature": {"value": float("inf")}}, "temperature.value"),
    ({"temperature": {"value": 1.5, "fited_on": "val"}}, "temperature has unknown keys ['fited_on']"),
    ({"temperature": {"value": 1.5, "ece_test": {"before": 0.1}}}, "temperature.ece_test lacks after"),
    ({"labels": ["a", "b", "a"]}, "labels must be unique; repeated: ['a']"),
    ({"labels": [1, 2, 3]}, "labels[0]"),
    ({"labels": ["a", "", "c"]}, "labels[1]"),
    ({"name": ""}, "name"),
    ({"name": 7}, "name"),
    ({"output": {"shape": [], "dtype": "float32"}}, "output.shape"),
    ({"output": {"shape": [1, 0, 3], "dtype": "float32"}}, "output.shape[1]"),
    ({"output": {"shape": [1, "3"], "dtype": "float32"}}, "output.shape[1]"),
    ({"output": {"shape": [1, 1.5], "dtype": "float32"}}, "output.shape[1]"),
    ({"output": {"shape": "1x3", "dtype": "float32"}}, "output.shape"),
    ({"output": {"shape": [1, 3], "dtype": "float64"}}, "output.dtype"),
    ({"output": {"shape": [1, 3], "dtype": "float32", "quantization": {"scale": 0.5, "zero_point": 0}}}, "output.quantization must be null"),
    ({"output": {**INT8, "quantization": {"scale": 0, "zero_point": -128}}}, "output.quantization.scale"),
    ({"output": {**INT8, "shape": [1, 4]}}, "output.shape [1, 4] does not fit 3 labels"),
    ({"input": {"shape": [1, 64, 64, 1], "dtype": "float32"}}, "input.shape [1, 64, 64, 1] does not fit preprocessing size [32, 32]"),
    ({"sha256": "abc"}, "sha256"),
    ({"sha256": "A" * 64}, "sha256"),
    ({"size_bytes": -1}, "size_bytes"),
    ({"gzip_bytes": 1.5}, "gzip_bytes"),
    ({"version": "1.0"}, "version must be MAJOR.MINOR.PATCH"),
    ({"changelog": [{"version": "1.0.0", "date": "23 Nov 2026", "change": "first"}]}, "changelog[0].date"),
    ({"changelog": [{"version": "1.0.0", "date": "2026-11-23"}]}, "changelog[0] lacks change"),
    ({"changelog": [{"version": "0.9.0", "date": "2026-11-23", "change": "first"}]}, "version 1.0.0 is not the changelog's last (0.9.0)"),
    ({"version": "1.1.0", "changelog": [{"version": "1.1.0", "date": "2026-11-23", "change": "b"}, {"version": "1.0.0", "date": "2026-11-23", "change": "a"}]},
     "changelog versions must increase"),
    ({"temprature": {"value": 1.5}}, "model card has unknown keys ['temprature']"),
    ({"schema_version": 5}, "schema_version 5"),
    ({"schema_version": "2"}, "schema_version '2'"),
    ({"cam": {"feature_layer": "features", "weights": [[0.1, 0.2, 0.3], [0.1]], "bias": [0, 0, 0]}}, "cam.weights must be a features x classes table"),
    ({"cam": {"feature_layer": "features", "weights": [[0.1, 0.2]], "bias": [0, 0]}}, "cam.weights and cam.bias must have one column per label (3)"),
    ({"cam": {"feature_layer": "features", "weights": [[0.1, "x", 0.3]], "bias": [0, 0, 0]}}, "cam.weights[0][1]"),
    ({"cam": {"feature_layer": "features", "weights": [[0.1, 0.2, 0.3]], "bias": [0, 0, 0],
              "feature_map": {"shape": [1, 4, 4, 8], "dtype": "float32"}}}, "cam.weights has 1 rows but cam.feature_map has 8 channels"),
    ({"calibration": {"images": 0, "split": "train"}}, "calibration.images"),
    ({"pruning": {"target_sparsity": 1.5, "sparsity": 0.5, "fine_tune_epochs": 2}}, "pruning.target_sparsity"),
    ({"verification": {"agreement_with_float32": 2, "max_abs_probability_diff": 0, "passed": True,
                       "deltas_to_float32": {"accuracy": 0, "macro_f1": 0, "sensitivity": {}},
                       "thresholds": {"min_agreement": 0.97, "max_macro_f1_drop": 0.02}}}, "verification.agreement_with_float32"),
    ({"verification": {"agreement_with_float32": 1, "max_abs_probability_diff": 0, "passed": "yes",
                       "deltas_to_float32": {"accuracy": 0, "macro_f1": 0, "sensitivity": {}},
                       "thresholds": {"min_agreement": 0.97, "max_macro_f1_drop": 0.02}}}, "verification.passed"),
    ({"metrics": {"test": {"accuracy": 1.5}}}, "metrics.test.accuracy"),
    ({"metrics": {"test": {"accuracy": 0.5, "per_source": {"nih": {"macro_f1": -0.1}}}}}, "metrics.test.per_source.nih.macro_f1"),
    ({"targets": {"macro_f1": {"target": 0.95, "reached": 0.9, "met": "no"}}}, "targets.macro_f1.met"),
    ({"training": {"command": "python -m training", "dataset_manifest_sha256": "xyz", "counts": {}, "versions": {}}},
     "training.dataset_manifest_sha256"),
    ({"training": {"command": "python -m training", "dataset_manifest_sha256": None, "counts": {"train": [1, -2]}, "versions": {}}},
     "training.counts.train[1]"),
    ({"intended_use": ""}, "intended_use"),
    ({"gate": {**GATE, "reported": [{"key": "external_called_normal", "name": "external", "reached": "0.5"}]}}, "gate.reported[0].reached"),
    ({"gate": {**GATE, "reported": [{"key": "external_called_normal", "name": "external", "met": True}]}}, "gate.reported[0] has unknown keys ['met']"),
    ({"gate": {**GATE, "reported": []}}, "gate.reported must be a list of at least 1"),
]


@pytest.mark.parametrize("fields, message", BAD_FIELDS)
def test_every_bad_field_is_one_line_naming_file_and_field(model_file, fields, message):
    write_card(model_file, BASE_CARD)
    path = card_path_for(model_file)
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))
    with pytest.raises(ModelError) as info:
        read_card(model_file)
    text = str(info.value)
    assert "\n" not in text and len(text) < 300
    assert text.startswith(f"{path}: ")
    assert message in text


def test_schema1_card_must_not_carry_a_changelog(model_file):
    write_schema1(model_file, changelog=[])
    with pytest.raises(ModelError, match=r"unknown keys \['changelog'\]"):
        read_card(model_file)


# --- schema 1 migration and round trips ---


def schema1_of(card: dict) -> dict:
    """A current card as it was before schema 2 (what the bundled cards were before they were migrated)."""
    old = {k: v for k, v in card.items() if k not in ("schema_version", "changelog", "output_kind", "gate")}
    old["version"] = card["changelog"][0]["version"]
    old["preprocessing"] = {k: v for k, v in card["preprocessing"].items() if not k.startswith("clahe_")}
    return old


@pytest.mark.parametrize("name", ["resnet18-int8", "mlp12-float32"])
def test_schema1_card_is_migrated_on_read(name):
    current = json.loads((MODELS_DIR / f"{name}.json").read_text())
    migrated = ModelCard.from_dict(schema1_of(current), "old.json")
    assert migrated.version == "1.0.0" and migrated.changelog == ()
    # schema 1 knew only probabilities, and no gate
    assert migrated.to_dict() == {**{k: v for k, v in current.items() if k != "gate"}, "version": "1.0.0", "changelog": [], "output_kind": "probabilities"}


def test_schema2_card_has_no_output_kind(model_file):
    write_card(model_file, BASE_CARD)
    data = json.loads(model_file.with_suffix(".json").read_text())
    data["schema_version"] = 2
    model_file.with_suffix(".json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"unknown keys \['output_kind'\]"):
        read_card(model_file)
    del data["output_kind"]
    model_file.with_suffix(".json").write_text(json.dumps(data))
    assert read_card(model_file).output_kind == "probabilities"


def test_schema1_card_without_a_version_is_1_0_0(model_file):
    write_schema1(model_file)
    card = read_card(model_file)
    assert card.version == "1.0.0" and card.changelog == ()
    assert card.to_dict()["schema_version"] == SCHEMA_VERSION


@pytest.mark.parametrize("path", sorted(MODELS_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_bundled_cards_round_trip_exactly(path):
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    card = ModelCard.from_dict(data, path)
    assert card.to_dict() == data
    assert list(card.to_dict()) == list(data)  # and in the same key order
    assert ModelCard.from_dict(card.to_dict(), path) == card


def test_a_card_with_every_part_round_trips(model_file):
    q = Quantization(0.00390625, -128)
    full = replace(
        BASE_CARD,
        version="1.1.0",
        changelog=(ChangelogEntry("1.0.0", "2026-11-23", "first"), ChangelogEntry("1.1.0", "2026-11-24", "heatmap output")),
        family="resnet18", variant="pruned-int8", architecture="a small CNN", gzip_bytes=100,
        pruning=Pruning(0.5, 0.4987, 2),
        calibration=Calibration(300, "train"),
        training=Training("python -m training data --out run", "c" * 64, {"train": (10, 11, 12)}, {"python": "3.11.7"}),
        cam=Cam("features", ((0.1, -0.2, 0.3), (0.0, 0.5, -0.5)), (0.01, 0.02, 0.03), TensorSpec((1, 4, 4, 2), "int8", Quantization(0.05, -128))),
        temperature=Temperature(1.57, "val", 906, BeforeAfter(0.29, 0.26), BeforeAfter(0.05, 0.011)),
        metrics={"test": {"accuracy": 0.9, "macro_f1": 0.89, "n": 905, "per_source": {"nih": {"accuracy": 0.5}}}},
        verification=Verification(0.999, 0.07, Deltas(0.001, 0.001, {"a": 0.0, "b": 0.003, "c": 0.0}), True),
        gate=Gate("decision-level 1", "resnet18-float32 1.2.0", "the magnitude Keras model", 0.95, (
            GateCheck("agreement_with_own_float", "agreement", ">=", 0.98, True, 0.99),
            GateCheck("sensitivity", "sensitivity", ">=", 0.87, False, 0.86, "b", 0.89),
        ), False, (GateReport("external_called_normal", "external films called Normal", None, 0.52),)),
        input=TensorSpec((1, 32, 32, 1), "int8", Quantization(1 / 255, -128)),
        output=TensorSpec((1, 3), "int8", q),
        targets={"macro_f1": {"target": 0.95, "reached": 0.89, "met": False}},
    )
    written = write_card(model_file, full)
    again = read_card(model_file)
    assert again == written and again.to_dict() == written.to_dict()
    assert again.cam.feature_map.quantization == Quantization(0.05, -128)
    assert again.test_metrics["n"] == 905


def test_a_gate_from_before_the_external_share_was_reported_reads_as_written(model_file):
    """Cards gated while external_called_normal was a decision check list it among their checks and have no ``reported``."""
    external = {"key": "external_called_normal", "name": "external films called Normal", "op": ">=", "target": 0.5457, "met": True,
                "reached": 0.5657, "reference": 0.5657}
    write_card(model_file, BASE_CARD)
    path = card_path_for(model_file)
    path.write_text(json.dumps({**json.loads(path.read_text()), "gate": {**GATE, "checks": [*GATE["checks"], external]}}))
    gate = read_card(model_file).gate
    assert gate.reported is None and gate.checks[-1] == GateCheck(**external) and "reported" not in gate.to_dict()
    assert gate.values == {("macro_f1", None): 0.88, ("external_called_normal", None): 0.5657}


# --- versions: bumped whenever the content changes ---


def test_release_bumps_the_version_only_when_the_content_changes(model_file):
    day = datetime.date(2026, 12, 1)
    first = release(write_card(model_file, BASE_CARD), None, "first release", day)
    assert first.version == "1.0.0" and first.changelog == (ChangelogEntry("1.0.0", "2026-12-01", "first release"),)
    same = release(replace(first, version="1.0.0", changelog=(), architecture="reworded"), first, "no-op", day)
    assert same.version == "1.0.0" and same.changelog == first.changelog
    warmer = release(replace(first, temperature=Temperature(1.5)), first, "calibrated", datetime.date(2026, 12, 2))
    assert warmer.version == "1.1.0"
    assert warmer.changelog == (*first.changelog, ChangelogEntry("1.1.0", "2026-12-02", "calibrated"))
    write_card(model_file, warmer)
    assert read_card(model_file).version == "1.1.0"
