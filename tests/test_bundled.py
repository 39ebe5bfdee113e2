"""The models shipped inside the package: cards match files, and the default still scores what its card says."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgecxr import load_model
from edgecxr.cli import main
from edgecxr.core.card import read_card, sha256_of
from edgecxr.core.registry import DEFAULT_MODEL, MODELS_DIR, bundled_models
from edgecxr.evaluation.evaluate import evaluate
from edgecxr.evaluation.manifest import read_manifest

RELEASE_1_2 = {"resnet18-int8", "resnet18-float32", "mlp12-int8", "mlp12-float32"}  # re-released together as 1.2.0
PRUNED = "resnet18-pruned-int8"  # issue 26: the first pruned model that passed the release gate
EXPECTED = RELEASE_1_2 | {PRUNED}


def test_expected_models_are_bundled():
    assert {p.stem for p in bundled_models()} == EXPECTED
    assert bundled_models()[0].stem == DEFAULT_MODEL


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_card_matches_file(name):
    path = MODELS_DIR / f"{name}.tflite"
    card = read_card(path)
    assert card.name == name and card.file == path.name
    assert card.sha256 == sha256_of(path)
    assert card.size_bytes == path.stat().st_size
    assert card.labels == ("COVID", "Normal", "Pneumonia")
    assert card.verification.passed is True
    assert "Not a medical device" in card.intended_use
    model = load_model(name)
    assert model.output_details["shape"][-1] == 3
    assert tuple(model.input_details["shape"][1:3]) == card.preprocessing.size
    if name.endswith("int8"):
        assert card.input.dtype == "int8" and card.output.dtype == "int8"


def test_default_model_is_int8_resnet():
    model = load_model()
    assert model.name == "resnet18-int8"
    assert model.card.family == "resnet18"


def test_models_command_lists_bundled():
    result = CliRunner().invoke(main, ["models", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert {r["name"] for r in rows} == EXPECTED
    assert [r["name"] for r in rows if r["default"]] == [DEFAULT_MODEL]
    assert {r["name"] for r in rows if r["heatmap"]} == {"resnet18-int8", "resnet18-float32", PRUNED}
    assert all(r["temperature"] == read_card(MODELS_DIR / f"{r['name']}.tflite").temperature.value for r in rows)


@pytest.mark.slow  # 5-13 s each: 905 test and 274 external films through the runtime
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bundled_model_reproduces_card_metrics_on_shared_test_split(name, shared_data):
    """Every bundled card's test metrics, and the gate quantities it was bundled on, come out of the shared test split again."""
    model = load_model(name)
    manifest = read_manifest(shared_data / "cxr3" / "manifest.csv")
    report = evaluate(model, shared_data / "cxr3" / "test", manifest=manifest)
    card = model.card.test_metrics
    assert report["errors"] == []
    assert report["n"] == card["n"] == 905
    assert report["accuracy"] == pytest.approx(card["accuracy"], abs=0.002)
    assert report["macro_f1"] == pytest.approx(card["macro_f1"], abs=0.002)
    diff = np.abs(np.array(report["confusion_matrix"]) - np.array(card["confusion_matrix"]))
    assert diff.max() <= 2
    # per source too (the README quotes them): every test image is listed, each source as in the card
    assert report["manifest"] == {"listed": 905, "unlisted": [], "missing": []}
    assert list(report["per_source"]) == list(card["per_source"])
    for source, metrics in card["per_source"].items():
        assert report["per_source"][source]["n"] == metrics["n"]
        assert report["per_source"][source]["accuracy"] == pytest.approx(metrics["accuracy"], abs=2 / metrics["n"])  # 2 images, as above
    gate = {(c.key, c.scope): c.reached for c in model.card.gate.checks}
    assert report["macro_f1"] == pytest.approx(gate[("macro_f1", None)], abs=0.002)
    assert report["abnormal_auc"] == pytest.approx(gate[("abnormal_auc", None)], abs=0.002)
    for label in model.labels:
        assert report["per_class"][label]["recall"] == pytest.approx(gate[("sensitivity", label)], abs=2 / 301)
    external = evaluate(model, shared_data / "cxr3-plus" / "external")  # report-only films: reproduced, never trained on
    assert external["n"] == 274 and external["per_class"]["Normal"]["recall"] == pytest.approx(gate[("external_called_normal", None)], abs=2 / 274)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_bundled_model_passed_the_release_gate(name):
    from edgecxr.evaluation.targets import gate

    card = read_card(MODELS_DIR / f"{name}.tflite")
    spec = gate()
    assert card.gate is not None and card.gate.passed and card.gate.name == spec.name and card.gate.failed == []
    assert card.gate.reference.startswith(f"{spec.reference[card.family]} 1.2.0 (bundled")
    keys = {c.key for c in card.gate.checks}
    assert keys == {r.key for r in (*spec.quantization, *spec.decisions)}  # every check applied, none skipped
    assert sum(c.key == "sensitivity" for c in card.gate.checks) == len(card.labels)
    if card.pruning is not None:
        int8 = read_card(MODELS_DIR / f"{card.family}-int8.tflite")
        assert card.gzip_bytes <= spec.pruned_max_gzip_vs_int8 * int8.gzip_bytes


def test_the_pruned_model_says_how_it_was_made():
    card = read_card(MODELS_DIR / f"{PRUNED}.tflite")
    p = card.pruning
    assert p.method == "magnitude" and 0.6 <= p.target_sparsity <= 0.8 and p.fine_tune_epochs >= 1
    assert p.int8_sparsity == pytest.approx(p.sparsity, abs=0.01) and p.min_pruned_weights == 10000
    assert p.distillation is not None and p.batchnorm == "frozen" and p.augmented is not None
    assert card.gate.own_float == "the magnitude Keras model it was converted from"
    assert card.changelog[0].version == "1.0.0" and "converters.sweep" in card.changelog[0].change


def test_full_size_originals_agree_with_their_downscaled_copies(shared_data):
    """Real full-resolution files (PNG/JPEG, gray/RGB, up to 2200 px) load, and the default model
    says the same about them as about the 256-px copies it was tested on."""
    import csv
    from pathlib import Path

    model = load_model()
    root = shared_data / "cxr3-fullres"
    rows = list(csv.DictReader((root / "manifest.csv").open()))
    assert len(rows) >= 28
    same = 0
    for row in rows:
        original = model.predict(root / row["file"])
        copy = model.predict(shared_data / "cxr3" / "test" / Path(row["file"]).with_suffix(".png"))
        assert abs(sum(original.probabilities.values()) - 1) < 1e-5
        same += original.label == copy.label
    assert same / len(rows) >= 0.9


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bundled_models_are_calibrated_and_resnets_have_heatmaps(name):
    model = load_model(name)
    t = model.card.temperature
    assert t.fitted_on == "val" and t.images == 906
    assert model.temperature == t.value != 1.0
    assert t.ece_test.after < t.ece_test.before
    assert t.nll_val.after <= t.nll_val.before
    assert model.has_heatmap == name.startswith("resnet18")


def test_default_heatmap_on_a_real_full_size_film(shared_data):
    from edgecxr.core.cam import heatmap_shape
    from edgecxr.core.imageio import load_image

    path = sorted((shared_data / "cxr3-fullres").rglob("*.jp*g"))[0]
    image = load_image(path)
    p = load_model().predict(image, heatmap=True)
    assert p.heatmap.shape == heatmap_shape(image.pixels.shape) and p.heatmap.dtype == np.float32
    h, w = image.pixels.shape
    assert abs(p.heatmap.shape[1] / p.heatmap.shape[0] - w / h) < 0.01
    assert p.heatmap.max() == pytest.approx(1.0) and p.heatmap.min() >= 0.0


def test_default_calibration_reproduces_the_card_on_the_shared_test_split(shared_data):
    """ECE before and after the card's temperature, recomputed through the runtime, match the card."""
    from edgecxr.core.calibration import expected_calibration_error
    from edgecxr.core.imageio import load_image
    from edgecxr.core.preprocess import preprocess
    from edgecxr.evaluation.evaluate import labelled_files

    model = load_model()
    items = labelled_files(shared_data / "cxr3" / "test", model.labels)
    raw = np.stack([model.predict_preprocessed(preprocess(load_image(f).pixels, model.card.preprocessing), calibrated=False) for f, _ in items])
    y = np.array([label for _, label in items])
    ece = model.card.temperature.ece_test
    assert expected_calibration_error(raw, y) == pytest.approx(ece.before, abs=0.002)
    assert expected_calibration_error(model.recalibrated(raw, model.temperature), y) == pytest.approx(ece.after, abs=0.002)


@pytest.mark.parametrize("name", sorted(RELEASE_1_2))
def test_bundled_cards_carry_their_version_history(name):
    """A card's version is its changelog's last entry; versions rise; the releases that added a temperature (and, for the
    ResNets, the heatmap output) and logits are in the history of a model that has them."""
    card = read_card(MODELS_DIR / f"{name}.tflite")
    versions = [tuple(int(v) for v in e.version.split(".")) for e in card.changelog]
    assert card.changelog[0].version == "1.0.0" and card.version == card.changelog[-1].version
    assert versions == sorted(set(versions)) and [e.date for e in card.changelog] == sorted(e.date for e in card.changelog)
    changes = " ".join(e.change for e in card.changelog[1:])
    assert ("temperature" in changes) == (card.temperature is not None)
    assert ("feature map" in changes) == name.startswith("resnet18")
    assert ("logits" in changes) == (card.output_kind == "logits")


def test_default_probabilities_have_real_resolution(shared_data):
    """1.2.0 outputs logits: no more int8 probability steps (1.1.0 gave 148 distinct top probabilities on the 905 test
    films, many exactly 0.994, and ties such as Normal 0.474 / Pneumonia 0.474)."""
    from edgecxr.evaluation.evaluate import labelled_files

    model = load_model()
    assert model.card.output_kind == "logits"
    files = [f for f, _ in labelled_files(shared_data / "cxr3" / "test", model.labels)]
    probs = np.stack([model.probabilities(f) for f in files])
    top = np.sort(probs, axis=1)
    _, counts = np.unique(np.round(top[:, -1], 6), return_counts=True)
    assert counts.max() <= 3 and len(counts) >= 0.95 * len(files)  # 875 distinct values on 905 films when written (1.1.0: 148)
    # two logits on the same int8 step (0.078) still tie, but rarely (4 of the 905 test films when written)
    assert np.sum(top[:, -1] - top[:, -2] <= 1e-6) <= 0.01 * len(files)
