"""Metrics (`classification_report`) and the ``edgecxr evaluate`` command on toy class folders."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import TINY_LABELS, write_png
from edgecxr.cli import main
from edgecxr.evaluate import evaluate, labelled_files
from edgecxr.metrics import classification_report, confusion_matrix
from edgecxr.model import Model

REPORT_KEYS = {"accuracy", "macro_f1", "labels", "per_class", "confusion_matrix", "n"}


def make_dataset(root, per_class: int = 2, mislabelled: bool = True):
    """``root/<label>/*.png`` toy images, plus (optionally) a bright image filed under dark/."""
    for cls, label in enumerate(TINY_LABELS):
        for i in range(per_class):
            write_png(root / label / f"{label}_{i}.png", cls, seed=10 * cls + i)
    if mislabelled:
        write_png(root / "dark" / "zz_actually_bright.png", 1, seed=99)
    return root


# Expected for make_dataset(per_class=2, mislabelled=True): 7 images, the bright one in dark/
# is predicted bright, so dark recall 2/3 and bright precision 2/3.
EXPECTED_CM = [[2, 1, 0], [0, 2, 0], [0, 0, 2]]
EXPECTED_PER_CLASS = {
    "dark": {"precision": 1.0, "recall": 0.6667, "f1": 0.8, "support": 3},
    "bright": {"precision": 0.6667, "recall": 1.0, "f1": 0.8, "support": 2},
    "striped": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2},
}
EXPECTED_ACCURACY = 0.8571  # 6 / 7
EXPECTED_MACRO_F1 = 0.8667  # (0.8 + 0.8 + 1.0) / 3


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def model_path(tiny_models) -> str:
    return str(tiny_models["int8"])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("toy_data") / "data")


# --- classification_report ---------------------------------------------------------------------


def test_confusion_matrix_rows_true_columns_predicted():
    cm = confusion_matrix([0, 0, 1, 2], [1, 1, 1, 0], 3)
    assert cm.tolist() == [[0, 2, 0], [0, 1, 0], [1, 0, 0]]
    assert cm.dtype == np.int64


def test_report_hand_computed():
    labels = ["a", "b", "c"]
    # a: 3 true, 2 right, 1 called b; b: 2 true, 1 right, 1 called c; c: 1 true, right.
    report = classification_report([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], labels)
    assert set(report) == REPORT_KEYS
    assert report["labels"] == labels
    assert report["n"] == 6
    assert report["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert report["accuracy"] == 0.6667
    assert report["per_class"] == {
        "a": {"precision": 1.0, "recall": 0.6667, "f1": 0.8, "support": 3},
        "b": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2},
        "c": {"precision": 0.5, "recall": 1.0, "f1": 0.6667, "support": 1},
    }
    assert report["macro_f1"] == 0.6556  # (0.8 + 0.5 + 0.6667) / 3
    # JSON-serialisable as-is (plain ints and floats, no numpy scalars)
    assert json.loads(json.dumps(report)) == report


def test_report_perfect():
    report = classification_report([0, 1, 2, 2], [0, 1, 2, 2], ["x", "y", "z"])
    assert report["accuracy"] == 1.0
    assert report["macro_f1"] == 1.0
    assert report["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 0, 2]]
    assert [c["support"] for c in report["per_class"].values()] == [1, 1, 2]
    assert all(c["precision"] == c["recall"] == c["f1"] == 1.0 for c in report["per_class"].values())


def test_report_zero_support_class_left_out_of_macro_f1():
    # c never occurs but is predicted once: its precision/recall/F1 are 0 and it does not drag macro-F1.
    report = classification_report([0, 0, 0, 1], [0, 0, 2, 1], ["a", "b", "c"])
    assert report["n"] == 4
    assert report["accuracy"] == 0.75
    assert report["confusion_matrix"] == [[2, 0, 1], [0, 1, 0], [0, 0, 0]]
    assert report["per_class"]["a"] == {"precision": 1.0, "recall": 0.6667, "f1": 0.8, "support": 3}
    assert report["per_class"]["b"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert report["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert report["macro_f1"] == 0.9  # (0.8 + 1.0) / 2, not (0.8 + 1.0 + 0.0) / 3


def test_report_class_never_predicted_has_zero_precision():
    report = classification_report([0, 1, 1], [0, 0, 0], ["a", "b"])
    assert report["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert report["per_class"]["a"] == {"precision": 0.3333, "recall": 1.0, "f1": 0.5, "support": 1}
    assert report["macro_f1"] == 0.25
    assert report["accuracy"] == 0.3333


def test_report_empty():
    report = classification_report([], [], ["a", "b"])
    assert report["n"] == 0
    assert report["accuracy"] == 0.0
    assert report["macro_f1"] == 0.0
    assert report["confusion_matrix"] == [[0, 0], [0, 0]]
    assert all(c["support"] == 0 for c in report["per_class"].values())


# --- the Python API ----------------------------------------------------------------------------


def test_labelled_files_order_and_filtering(tmp_path):
    root = make_dataset(tmp_path / "d", per_class=1, mislabelled=False)
    (root / "dark" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    (root / "stray.png").write_bytes(b"")  # not in a class folder: ignored
    items = labelled_files(root, TINY_LABELS)
    # folders in sorted order (bright, dark, striped), each class index from the model's labels
    assert [(p.relative_to(root).as_posix(), i) for p, i in items] == [
        ("bright/bright_0.png", 1),
        ("dark/dark_0.png", 0),
        ("striped/striped_0.png", 2),
    ]


def test_evaluate_api_with_progress(model_path, dataset):
    model = Model(model_path)
    ticks = []
    report = evaluate(model, dataset, progress=ticks.append)
    assert ticks == [1] * 7
    assert report["model"] == "tiny-int8"
    assert report["errors"] == []
    assert report["confusion_matrix"] == EXPECTED_CM
    assert report["accuracy"] == EXPECTED_ACCURACY


# --- edgecxr evaluate --------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["int8", "float32"])
def test_evaluate_json(runner, tiny_models, dataset, variant):
    result = runner.invoke(main, ["evaluate", str(dataset), "--model", str(tiny_models[variant]), "--json"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert len(result.stdout.splitlines()) == 1
    report = json.loads(result.stdout)
    assert set(report) == REPORT_KEYS | {"model", "errors"}
    assert report["model"] == f"tiny-{variant}"
    assert report["errors"] == []
    assert report["labels"] == TINY_LABELS
    assert report["n"] == 7
    assert report["confusion_matrix"] == EXPECTED_CM
    assert report["accuracy"] == EXPECTED_ACCURACY
    assert report["macro_f1"] == EXPECTED_MACRO_F1
    assert report["per_class"] == EXPECTED_PER_CLASS


def test_evaluate_human(runner, model_path, dataset):
    result = runner.invoke(main, ["evaluate", str(dataset), "-m", model_path])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    out = result.stdout
    lines = out.splitlines()
    assert lines[0] == f"model tiny-int8 on 7 images: accuracy {EXPECTED_ACCURACY:.4f}, macro-F1 {EXPECTED_MACRO_F1:.4f}"
    assert "macro-F1" in out
    assert "confusion matrix (rows true, columns predicted):" in out
    split = [line.split() for line in lines]
    # per-class rows: class precision recall f1 support
    assert ["dark", "1.0000", "0.6667", "0.8000", "3"] in split
    assert ["bright", "0.6667", "1.0000", "0.8000", "2"] in split
    assert ["striped", "1.0000", "1.0000", "1.0000", "2"] in split
    # confusion matrix: a header of labels, then one row per true class
    cm_at = lines.index("confusion matrix (rows true, columns predicted):")
    assert split[cm_at + 1] == TINY_LABELS
    for i, (label, row) in enumerate(zip(TINY_LABELS, EXPECTED_CM)):
        assert split[cm_at + 2 + i] == [label, *map(str, row)]
    assert len(lines) == cm_at + 2 + len(TINY_LABELS)


def test_evaluate_unreadable_image(runner, model_path, tmp_path):
    root = make_dataset(tmp_path / "data")
    corrupt = root / "bright" / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    empty = root / "striped" / "empty.jpg"
    empty.write_bytes(b"")
    result = runner.invoke(main, ["evaluate", str(root), "-m", model_path, "--json"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    err = result.stderr.splitlines()
    assert len(err) == 2
    assert all(line.startswith("error: ") for line in err)
    assert any(line.startswith(f"error: {corrupt}: ") and "not a readable image" in line for line in err)
    assert f"error: {empty}: file is empty" in err
    report = json.loads(result.stdout)
    assert report["n"] == 7  # the two unreadable files are left out
    assert report["confusion_matrix"] == EXPECTED_CM
    assert report["accuracy"] == EXPECTED_ACCURACY
    assert len(report["errors"]) == 2
    assert f"{empty}: file is empty" in report["errors"]


def test_evaluate_unreadable_image_human(runner, model_path, tmp_path):
    root = make_dataset(tmp_path / "data", mislabelled=False)
    corrupt = root / "dark" / "broken.bmp"
    corrupt.write_bytes(b"BM not really")
    result = runner.invoke(main, ["evaluate", str(root), "-m", model_path])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {corrupt}: ")
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout.startswith("model tiny-int8 on 6 images: accuracy 1.0000, macro-F1 1.0000")


def test_evaluate_all_unreadable(runner, model_path, tmp_path):
    (tmp_path / "data" / "dark").mkdir(parents=True)
    (tmp_path / "data" / "dark" / "a.png").write_bytes(b"")
    result = runner.invoke(main, ["evaluate", str(tmp_path / "data"), "-m", model_path, "--json"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    report = json.loads(result.stdout)
    assert report["n"] == 0
    assert report["accuracy"] == 0.0
    assert report["macro_f1"] == 0.0


def test_evaluate_subset_of_classes(runner, model_path, tmp_path):
    root = tmp_path / "data"
    write_png(root / "striped" / "s.png", 2)
    write_png(root / "dark" / "d.png", 0)
    result = runner.invoke(main, ["evaluate", str(root), "-m", model_path, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == 2
    assert report["confusion_matrix"] == [[1, 0, 0], [0, 0, 0], [0, 0, 1]]
    assert report["per_class"]["bright"]["support"] == 0
    assert report["macro_f1"] == 1.0  # bright has no support: not averaged in


def test_evaluate_unknown_class_folder(runner, model_path, tmp_path):
    root = make_dataset(tmp_path / "data", per_class=1, mislabelled=False)
    write_png(root / "cats" / "c.png", 0)
    result = runner.invoke(main, ["evaluate", str(root), "-m", model_path, "--json"])
    assert result.exit_code == 2
    assert result.stdout == ""
    err = result.stderr.splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: ")
    assert "cats" in err[0]
    assert "not labels of the model" in err[0]
    assert "Traceback" not in result.output


def test_evaluate_no_images(runner, model_path, tmp_path):
    (tmp_path / "data" / "dark").mkdir(parents=True)
    (tmp_path / "data" / "dark" / "notes.txt").write_text("x")
    result = runner.invoke(main, ["evaluate", str(tmp_path / "data"), "-m", model_path])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert "no images found" in result.stderr
    assert "Traceback" not in result.output


def test_evaluate_data_is_a_file(runner, model_path, tmp_path):
    image = write_png(tmp_path / "x.png", 0)
    result = runner.invoke(main, ["evaluate", str(image), "-m", model_path])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "DATA_DIR" in result.stderr
    assert str(image) in result.stderr
    assert "Traceback" not in result.output


def test_evaluate_data_missing(runner, model_path, tmp_path):
    result = runner.invoke(main, ["evaluate", str(tmp_path / "absent"), "-m", model_path])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.output


def test_evaluate_unknown_model(runner, dataset):
    result = runner.invoke(main, ["evaluate", str(dataset), "-m", "no-such-model"])
    assert result.exit_code == 2
    assert result.stdout == ""
    err = result.stderr.splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: no-such-model: not a bundled model")


def test_evaluate_help(runner):
    result = runner.invoke(main, ["evaluate", "--help"])
    assert result.exit_code == 0
    for option in ("--model", "-m", "--json", "--threads", "DATA_DIR"):
        assert option in result.stdout
