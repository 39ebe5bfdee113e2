"""Metrics (`classification_report`) and the ``edgecxr evaluate`` command on toy class folders, with and without a manifest."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import TINY_LABELS, write_png
from edgecxr.cli import main
from edgecxr.core.inputs import DICOMDIR, NOT_AN_IMAGE
from edgecxr.core.model import Model
from edgecxr.evaluation.evaluate import evaluate, labelled_files
from edgecxr.evaluation.manifest import read_manifest
from edgecxr.evaluation.metrics import classification_report, confusion_matrix

REPORT_KEYS = {"accuracy", "macro_f1", "labels", "per_class", "confusion_matrix", "n"}
SCORE_KEYS = {"auc", "abnormal_auc"}  # evaluate adds them to the classification report


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


def test_report_per_source_hand_computed():
    labels = ["a", "b"]
    y_true, y_pred = [0, 0, 1, 1, 0, 1], [0, 1, 1, 1, 0, 0]
    report = classification_report(y_true, y_pred, labels, sources=["x", "x", "x", "y", "", "y"])
    assert {k: v for k, v in report.items() if k != "per_source"} == classification_report(y_true, y_pred, labels)
    assert list(report["per_source"]) == ["x", "y"]  # sorted; the sample without a source counts only overall
    assert report["per_source"]["x"] == classification_report([0, 0, 1], [0, 1, 1], labels)
    assert report["per_source"]["x"]["accuracy"] == 0.6667 and report["per_source"]["x"]["n"] == 3
    assert report["per_source"]["y"]["confusion_matrix"] == [[0, 0], [1, 1]]
    assert report["per_source"]["y"]["accuracy"] == 0.5


def test_report_per_source_left_out_without_sources():
    assert "per_source" not in classification_report([0, 1], [0, 1], ["a", "b"], sources=["", ""])
    assert "per_source" not in classification_report([0, 1], [0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="1 sources for 2 samples"):
        classification_report([0, 1], [0, 1], ["a", "b"], sources=["x"])


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
    assert set(report) == REPORT_KEYS | SCORE_KEYS | {"model", "errors", "skipped"}
    assert report["model"] == f"tiny-{variant}"
    assert report["errors"] == [] and report["skipped"] == []
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


def test_evaluate_reports_what_the_class_folder_scan_skipped(runner, model_path, tmp_path):
    """Issue 12: evaluate passed over non-images, a DICOMDIR and dangling links without a word."""
    root = make_dataset(tmp_path / "data")
    (root / "bright" / "DICOMDIR").write_bytes(b"\x00" * 128 + b"DICM")
    (root / "dark" / "notes.txt").write_text("not an image")
    (root / "striped" / "gone.png").symlink_to(tmp_path / "absent.png")
    skipped = [(root / "bright" / "DICOMDIR", DICOMDIR), (root / "dark" / "notes.txt", NOT_AN_IMAGE), (root / "striped" / "gone.png", "dangling symbolic link")]
    summary = "skipped: 3 (" + "; ".join(f"1 {reason}: {path}" for path, reason in skipped) + ")"
    result = runner.invoke(main, ["evaluate", str(root), "-m", model_path, "--json"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [summary]
    report = json.loads(result.stdout)
    assert report["skipped"] == [{"file": str(path), "skipped": reason} for path, reason in skipped]
    assert (report["n"], report["confusion_matrix"]) == (7, EXPECTED_CM)  # the same films as without them
    human = runner.invoke(main, ["evaluate", str(root), "-m", model_path])
    assert human.exit_code == 0 and human.stderr.splitlines() == [summary]
    assert human.stdout.startswith(f"model tiny-int8 on 7 images: accuracy {EXPECTED_ACCURACY:.4f}")
    assert evaluate(Model(model_path), root)["skipped"] == report["skipped"]  # the API reports them too


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


def test_evaluate_help_names_its_options_and_they_run(runner, model_path, tmp_path):
    result = runner.invoke(main, ["evaluate", "--help"])
    assert result.exit_code == 0
    for option in ("--model", "-m", "--json", "--threads", "DATA_DIR"):
        assert option in result.stdout
    for cls, label in enumerate(TINY_LABELS):
        write_png(tmp_path / label / "a.png", cls)
    result = runner.invoke(main, ["evaluate", "-m", model_path, "--threads", "1", "--json", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == 3 and report["labels"] == TINY_LABELS and 0.0 <= report["accuracy"] <= 1.0


# --- edgecxr evaluate --manifest -----------------------------------------------------------------

SITES = {  # file under the data folder -> source; striped/striped_1.png is left out of the manifest
    "dark/dark_0.png": "siteA", "dark/dark_1.png": "siteA", "bright/bright_0.png": "siteA",
    "dark/zz_actually_bright.png": "siteA", "bright/bright_1.png": "siteB", "striped/striped_0.png": "siteB",
}


@pytest.fixture(scope="module")
def sited(tmp_path_factory):
    """(data folder, manifest beside it) in the split layout: rows for six of the seven images, a missing file and one elsewhere."""
    root = tmp_path_factory.mktemp("sited")
    data = make_dataset(root / "test")
    rows = [f"test/{f},{f.split('/')[0]},test,{s}" for f, s in SITES.items()]
    rows += ["test/dark/gone.png,dark,test,siteA", "train/dark/elsewhere.png,dark,train,siteC"]
    (root / "manifest.csv").write_text("\n".join(["file,label,split,source", *rows]) + "\n")
    return data, root / "manifest.csv"


def test_evaluate_manifest_per_source_matches_a_direct_computation(runner, model_path, sited):
    data, manifest = sited
    result = runner.invoke(main, ["evaluate", str(data), "-m", model_path, "--manifest", str(manifest), "--json"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    report = json.loads(result.stdout)
    assert set(report) == REPORT_KEYS | SCORE_KEYS | {"model", "errors", "skipped", "per_source", "manifest"}
    # the overall numbers are those without a manifest
    assert report["confusion_matrix"] == EXPECTED_CM and report["accuracy"] == EXPECTED_ACCURACY and report["n"] == 7
    model = Model(model_path)
    for source in ("siteA", "siteB"):
        files = [f for f, s in SITES.items() if s == source]
        truth = [TINY_LABELS.index(f.split("/")[0]) for f in files]
        pred = [TINY_LABELS.index(model.predict(data / f).label) for f in files]
        assert report["per_source"][source] == classification_report(truth, pred, TINY_LABELS)
    assert list(report["per_source"]) == ["siteA", "siteB"]  # siteC has no image here
    site_a, site_b = report["per_source"]["siteA"], report["per_source"]["siteB"]
    assert (site_a["n"], site_a["accuracy"], site_a["confusion_matrix"]) == (4, 0.75, [[2, 1, 0], [0, 1, 0], [0, 0, 0]])
    assert (site_b["n"], site_b["accuracy"], site_b["macro_f1"]) == (2, 1.0, 1.0)
    assert report["manifest"] == {
        "listed": 6,
        "unlisted": [str(data / "striped" / "striped_1.png")],  # counted overall, in no source
        "missing": [str(data / "dark" / "gone.png")],  # listed under the data folder, not there; train/ is not counted
    }
    assert evaluate(model, data, manifest=read_manifest(manifest)) == report  # the API gives the same


def test_evaluate_manifest_human_table_shows_sources(runner, model_path, sited):
    data, manifest = sited
    result = runner.invoke(main, ["evaluate", str(data), "-m", model_path, "--manifest", str(manifest)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"model tiny-int8 on 7 images: accuracy {EXPECTED_ACCURACY:.4f}, macro-F1 {EXPECTED_MACRO_F1:.4f}"
    at = lines.index("per source (recall of each class):")
    assert lines[at + 1].split() == ["source", "n", "accuracy", "macro-F1", *TINY_LABELS]
    # siteA: dark 2 of 3 right, bright 1 of 1, no striped image ("-"); macro-F1 (0.8 + 0.6667) / 2
    assert lines[at + 2].split() == ["siteA", "4", "0.7500", "0.7333", "0.6667", "1.0000", "-"]
    assert lines[at + 3].split() == ["siteB", "2", "1.0000", "1.0000", "-", "1.0000", "1.0000"]
    assert lines[at + 5] == f"manifest: lists 6 of the 7 images read; 1 not listed (counted overall, in no source); 1 listed under {data} not found"
    assert lines[at + 6:] == [f"  unlisted: {data / 'striped' / 'striped_1.png'}", f"  missing: {data / 'dark' / 'gone.png'}"]


def test_evaluate_manifest_beside_or_inside_data_changes_nothing_without_the_option(runner, model_path, sited, tmp_path):
    data, _ = sited  # the split layout: a manifest.csv in DATA_DIR's parent
    plain = make_dataset(tmp_path / "plain")
    (plain / "manifest.csv").write_text("file,source\ndark/dark_0.png,siteA\n")  # and one inside DATA_DIR
    for folder in (data, plain):
        for extra in ([], ["--json"]):
            result = runner.invoke(main, ["evaluate", str(folder), "-m", model_path, *extra])
            assert result.exit_code == 0 and result.stderr == ""
            assert "per source" not in result.stdout and "manifest" not in result.stdout
    report = json.loads(result.stdout)
    assert set(report) == REPORT_KEYS | SCORE_KEYS | {"model", "errors", "skipped"}


def test_evaluate_manifest_with_unreadable_images_keeps_exit_1(runner, model_path, tmp_path):
    data = make_dataset(tmp_path / "data", mislabelled=False)
    broken = data / "dark" / "broken.png"
    broken.write_bytes(b"")
    (tmp_path / "m.csv").write_text("file,source\ndata/dark/broken.png,siteA\ndata/dark/dark_0.png,siteA\n")
    result = runner.invoke(main, ["evaluate", str(data), "-m", model_path, "--manifest", str(tmp_path / "m.csv"), "--json"])
    assert result.exit_code == 1
    assert result.stderr == f"error: {broken}: file is empty\n"
    report = json.loads(result.stdout)
    assert report["n"] == 6 and report["per_source"]["siteA"]["n"] == 1  # the unreadable one is in no metric
    assert report["manifest"] == {"listed": 1, "unlisted": [str(data / f) for f in (
        "bright/bright_0.png", "bright/bright_1.png", "dark/dark_1.png", "striped/striped_0.png", "striped/striped_1.png")], "missing": []}


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("absent.csv", None, "manifest does not exist"),
        ("scan.png", "png", "not a CSV text file"),
        ("no_source.csv", "file,label\ndark/dark_0.png,dark\n", "no 'source' column (columns: file, label)"),
        ("no_file.csv", "image,source\ndark/dark_0.png,siteA\n", "no 'file' column (columns: image, source)"),
    ],
)
def test_evaluate_bad_manifest_is_one_error_line_and_exit_2(runner, model_path, dataset, tmp_path, name, content, message):
    path = tmp_path / name
    if content == "png":
        write_png(path, 0)
    elif content is not None:
        path.write_text(content)
    for extra in ([], ["--json"]):
        result = runner.invoke(main, ["evaluate", str(dataset), "-m", model_path, "--manifest", str(path), *extra])
        assert result.exit_code == 2
        assert result.stdout == ""
        assert result.stderr == f"error: {path}: {message}\n"


def test_evaluate_help_names_the_manifest_and_it_runs(runner, model_path, sited):
    result = runner.invoke(main, ["evaluate", "--help"])
    assert "--manifest CSV" in result.stdout and "per_source" in result.stdout
    data, manifest = sited
    result = runner.invoke(main, ["evaluate", "-m", model_path, "--manifest", str(manifest), "--json", str(data)])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)["per_source"]) == set(SITES.values())
