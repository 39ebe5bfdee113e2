"""The ``edgecxr`` command: predict and models, through click's runner and a real subprocess; the clinic commands without their extra."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import TINY_LABELS, child_env, write_png
from edgecxr.cli import CLINIC_HELP, main
from edgecxr.core.registry import LUNG_MODEL, MODELS_DIR, bundled_models

# A sitecustomize that makes the clinic extra's packages unimportable in a child Python, as on an install without the extra.
NO_CLINIC = '''import sys


class NoClinic:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"pynetdicom", "highdicom", "flask", "waitress"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, NoClinic())
'''
PREDICTION_KEYS = {"file", "model", "label", "probabilities", "latency_ms", "timings_ms", "warnings", "checks", "abnormal_score", "tied", "head"}



def run_subprocess(*args: str, cwd) -> subprocess.CompletedProcess:
    env = child_env()
    return subprocess.run(
        [sys.executable, "-c", "from edgecxr.cli import main; main()", *args],
        cwd=str(cwd),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# --- predict -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", range(3))
def test_predict_one_file_human(runner, model_path, tmp_path, cls):
    image = write_png(tmp_path / f"scan_{cls}.png", cls, seed=cls)
    result = runner.invoke(main, ["predict", "--model", model_path, str(image)])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith(f"{image}: {TINY_LABELS[cls]}  (")
    assert f"scan_{cls}.png" in line
    assert line.endswith(" ms")
    for label in TINY_LABELS:
        assert label in line


def test_predict_human_shows_warnings(runner, model_path, tmp_path):
    image = tmp_path / "tiny.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (40, 130)).astype(np.uint8))
    result = runner.invoke(main, ["predict", "-m", model_path, str(image)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3  # a tiny, long image: two warnings
    assert lines[0].startswith(f"{image}: ")
    assert lines[1].startswith("  warning: very small image (130x40 px)")
    assert lines[2].startswith("  warning: extreme aspect ratio (130x40)")


def test_predict_json_one_file(runner, model_path, tmp_path):
    image = write_png(tmp_path / "bright.png", 1)
    result = runner.invoke(main, ["predict", "--json", "--model", model_path, str(image)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert set(record) == PREDICTION_KEYS
    assert record["file"] == str(image)
    assert record["model"] == "tiny-int8"
    assert record["label"] == "bright"
    assert list(record["probabilities"]) == TINY_LABELS
    assert abs(sum(record["probabilities"].values()) - 1.0) < 1e-5
    assert record["latency_ms"] > 0
    assert record["warnings"] == []


def test_predict_json_folder_with_failures(runner, model_path, tmp_path):
    folder = tmp_path / "batch"
    good = [
        write_png(folder / "a_dark.png", 0),
        write_png(folder / "sub" / "b_bright.png", 1),
        write_png(folder / "sub" / "deeper" / "c_striped.png", 2),
    ]
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    empty = folder / "sub" / "empty.jpg"
    empty.write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub" / "readme.txt").write_text("ignored too")

    result = runner.invoke(main, ["predict", "--json", "--model", model_path, str(folder)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output

    lines = result.stdout.splitlines()
    assert len(lines) == 7
    records = [json.loads(line) for line in lines]
    skipped, records = records[:2], records[2:]  # what the scan passed over comes first
    reason = "not an image file (no image suffix, no DICOM marker)"
    assert skipped == [{"file": str(folder / "notes.txt"), "skipped": reason}, {"file": str(folder / "sub" / "readme.txt"), "skipped": reason}]
    by_file = {r["file"]: r for r in records}
    assert set(by_file) == {str(p) for p in [*good, corrupt, empty]}
    assert not any(r["file"].endswith(".txt") for r in records)

    expected_labels = dict(zip(map(str, good), TINY_LABELS))
    for file, label in expected_labels.items():
        record = by_file[file]
        assert set(record) == PREDICTION_KEYS
        assert record["label"] == label
        assert record["model"] == "tiny-int8"
        assert abs(sum(record["probabilities"].values()) - 1.0) < 1e-5
    for bad in (corrupt, empty):
        record = by_file[str(bad)]
        assert set(record) == {"file", "error"}
        assert isinstance(record["error"], str) and record["error"]
    assert by_file[str(empty)]["error"] == "file is empty"
    assert "not a readable image" in by_file[str(corrupt)]["error"]

    # files come out in sorted path order
    assert [r["file"] for r in records] == sorted(r["file"] for r in records)

    err_lines = result.stderr.splitlines()
    assert err_lines[0] == f"skipped: 2 (2 {reason}: {folder / 'notes.txt'}, {folder / 'sub' / 'readme.txt'})"
    err_lines = err_lines[1:]
    assert len(err_lines) == 2
    assert f"error: {corrupt}: " in result.stderr
    assert f"error: {empty}: file is empty" in err_lines
    assert all(line.startswith("error: ") for line in err_lines)


def test_predict_human_folder_with_failure_keeps_going(runner, model_path, tmp_path):
    write_png(tmp_path / "one.png", 0)
    write_png(tmp_path / "two.png", 2)
    (tmp_path / "bad.bmp").write_bytes(b"BM not really")
    result = runner.invoke(main, ["predict", "-m", model_path, str(tmp_path)])
    assert result.exit_code == 1
    out = result.stdout.splitlines()
    assert len(out) == 2
    assert out[0].startswith(f"{tmp_path / 'one.png'}: dark")
    assert out[1].startswith(f"{tmp_path / 'two.png'}: striped")
    assert result.stderr.startswith(f"error: {tmp_path / 'bad.bmp'}: ")
    assert len(result.stderr.splitlines()) == 1


def test_predict_missing_file(runner, model_path, tmp_path):
    missing = tmp_path / "nowhere.png"
    result = runner.invoke(main, ["predict", "--model", model_path, str(missing)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"error: {missing}: no such file\n"
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_predict_missing_file_json(runner, model_path, tmp_path):
    missing = tmp_path / "nowhere.png"
    good = write_png(tmp_path / "good.png", 1)
    result = runner.invoke(main, ["predict", "--json", "-m", model_path, str(missing), str(good)])
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0] == {"file": str(missing), "error": "no such file"}
    assert records[1]["file"] == str(good)
    assert records[1]["label"] == "bright"
    assert len(records) == 2
    assert result.stderr == f"error: {missing}: no such file\n"


def test_predict_folder_without_images(runner, model_path, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    result = runner.invoke(main, ["predict", "-m", model_path, str(tmp_path)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"skipped: 2 (1 not an image file (no image suffix, no DICOM marker): {tmp_path / 'notes.txt'}; 1 folder holds no image files: {tmp_path})",
        f"error: no image files in {tmp_path}",
    ]


def test_predict_nonexistent_model(runner, tmp_path):
    image = write_png(tmp_path / "x.png", 0)
    missing_model = tmp_path / "absent.tflite"
    result = runner.invoke(main, ["predict", "--model", str(missing_model), str(image)])
    assert result.exit_code == 2
    assert result.stdout == ""
    err = result.stderr.splitlines()
    assert len(err) == 1
    assert err[0] == f"error: {missing_model}: no such model file"
    assert "Traceback" not in result.output


def test_predict_unknown_model_name(runner, tmp_path):
    image = write_png(tmp_path / "x.png", 0)
    result = runner.invoke(main, ["predict", "--model", "no-such-model", str(image)])
    assert result.exit_code == 2
    err = result.stderr.splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: no-such-model: not a bundled model")


def test_predict_tampered_model(runner, tiny_models, tmp_path):
    model = tmp_path / "tampered.tflite"
    data = bytearray(tiny_models["int8"].read_bytes())
    data[-10] ^= 0xFF
    model.write_bytes(bytes(data))
    model.with_suffix(".json").write_text(tiny_models["int8"].with_suffix(".json").read_text())
    image = write_png(tmp_path / "x.png", 0)
    result = runner.invoke(main, ["predict", "-m", str(model), str(image)])
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert "sha256" in result.stderr
    assert result.stdout == ""


def test_predict_with_a_segmentation_model_names_its_shape_in_plain_numbers(runner, tmp_path):
    lungs = MODELS_DIR / f"{LUNG_MODEL}.tflite"  # issue 12: the message printed [[np.int32(1), np.int32(128), ...]]
    result = runner.invoke(main, ["predict", "-m", str(lungs), str(write_png(tmp_path / "x.png", 0))])
    assert result.exit_code == 2
    assert result.stderr == f"error: {lungs}: expected one (1, classes) output and at most one feature map, got shapes [[1, 64, 64, 1]]\n"


def test_predict_bad_option(runner, model_path, tmp_path):
    image = write_png(tmp_path / "x.png", 0)
    result = runner.invoke(main, ["predict", "--model", model_path, "--bogus", str(image)])
    assert result.exit_code == 2
    assert "No such option" in result.stderr
    assert "--bogus" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("threads", ["0", "-1", "many"])
def test_predict_bad_threads(runner, model_path, tmp_path, threads):
    image = write_png(tmp_path / "x.png", 0)
    result = runner.invoke(main, ["predict", "--model", model_path, "--threads", threads, str(image)])
    assert result.exit_code == 2
    assert "Invalid value for '--threads'" in result.stderr
    assert result.stdout == ""


def test_predict_threads_one(runner, model_path, tmp_path):
    image = write_png(tmp_path / "x.png", 2)
    result = runner.invoke(main, ["predict", "--model", model_path, "--threads", "1", str(image)])
    assert result.exit_code == 0, result.output
    assert f"{image}: striped" in result.stdout


def test_predict_without_paths(runner, model_path):
    result = runner.invoke(main, ["predict", "--model", model_path])
    assert result.exit_code == 2
    assert "Missing argument" in result.stderr


def test_unknown_command(runner):
    result = runner.invoke(main, ["frobnicate"])
    assert result.exit_code == 2
    assert "No such command" in result.stderr


# --- models ------------------------------------------------------------------------------------


def test_models_json_with_extra_model(runner, tiny_models):
    result = runner.invoke(main, ["models", "--model", str(tiny_models["int8"]), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert isinstance(rows, list)
    tiny = [r for r in rows if r["name"] == "tiny-int8"]
    assert len(tiny) == 1
    row = tiny[0]
    assert row["labels"] == TINY_LABELS
    assert row["path"] == str(tiny_models["int8"])
    assert row["bundled"] is False
    assert row["default"] is False
    assert row["family"] == "tiny"
    assert row["variant"] == "int8"
    assert row["preprocessing"]["size"] == [32, 32]
    assert row["size_bytes"] == tiny_models["int8"].stat().st_size
    assert len(row["sha256"]) == 64
    assert row["test_accuracy"] is None
    assert row["test_macro_f1"] is None


def test_models_json_two_extras(runner, tiny_models):
    result = runner.invoke(main, ["models", "-m", str(tiny_models["int8"]), "-m", str(tiny_models["float32"]), "--json"])
    assert result.exit_code == 0, result.output
    names = [r["name"] for r in json.loads(result.stdout)]
    assert names[-2:] == ["tiny-int8", "tiny-float32"]


def test_models_human_with_extra_model(runner, tiny_models):
    result = runner.invoke(main, ["models", "--model", str(tiny_models["float32"])])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "tiny-float32" in line]
    assert len(lines) == 1
    assert "32x32" in lines[0]
    assert "labels: dark, bright, striped" in lines[0]
    assert "no test metrics" in lines[0]


def test_models_extra_without_card(runner, tiny_models, tmp_path):
    orphan = tmp_path / "orphan.tflite"
    orphan.write_bytes(tiny_models["int8"].read_bytes())
    result = runner.invoke(main, ["models", "--json", "-m", str(orphan)])
    assert result.exit_code == 2
    assert "error: " in result.stderr
    assert "no model card found" in result.stderr
    rows = json.loads(result.stdout)
    assert all(r["path"] != str(orphan) for r in rows)
    assert "Traceback" not in result.output


# --- help --------------------------------------------------------------------------------------


def test_predict_help_names_its_options_and_they_run(runner, model_path, tmp_path):
    result = runner.invoke(main, ["predict", "--help"])
    assert result.exit_code == 0
    for option in ("--model", "-m", "--json", "--threads", "PATH..."):
        assert option in result.stdout
    assert "DICOM" in result.stdout
    film = write_png(tmp_path / "bright.png", 1)
    result = runner.invoke(main, ["predict", "-m", model_path, "--threads", "1", "--json", str(film)])
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout)
    assert line["file"] == str(film) and line["label"] in TINY_LABELS and abs(sum(line["probabilities"].values()) - 1) < 1e-4


def test_models_help_names_its_options_and_they_run(runner, model_path):
    result = runner.invoke(main, ["models", "--help"])
    assert result.exit_code == 0
    for option in ("--model", "-m", "--json", "repeatable"):
        assert option in result.stdout
    result = runner.invoke(main, ["models", "-m", model_path, "--json"])
    assert result.exit_code == 0, result.output
    assert str(model_path) in result.stdout and all(label in result.stdout for label in TINY_LABELS)


def test_main_help_lists_commands(runner):
    for flag in ("--help", "-h"):
        result = runner.invoke(main, [flag])
        assert result.exit_code == 0
        assert "predict" in result.stdout
        assert "models" in result.stdout
        assert "not a medical device" in result.stdout


# --- the real command in a subprocess ----------------------------------------------------------


def test_subprocess_predict_json(model_path, tmp_path):
    folder = tmp_path / "in"
    write_png(folder / "a.png", 0)
    write_png(folder / "nested" / "b.png", 2)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    proc = run_subprocess("predict", "--json", "--model", model_path, str(folder), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 3
    assert {r["file"]: r.get("label") for r in records} == {
        str(folder / "a.png"): "dark",
        str(folder / "nested" / "b.png"): "striped",
        str(folder / "broken.jpg"): None,
    }
    broken = next(r for r in records if r["file"].endswith("broken.jpg"))
    assert set(broken) == {"file", "error"}
    assert set(next(r for r in records if r["file"].endswith("a.png"))) == PREDICTION_KEYS
    # no progress bar when stderr is not a terminal: only the one error line
    assert [line for line in proc.stderr.splitlines() if line.startswith("error: ")] == [
        f"error: {folder / 'broken.jpg'}: {broken['error']}"
    ]


def test_subprocess_predict_human_success(model_path, tmp_path):
    image = write_png(tmp_path / "chest.png", 1)
    proc = run_subprocess("predict", "-m", model_path, str(image), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{image}: bright  (")
    assert "Traceback" not in proc.stderr


def test_subprocess_usage_errors(model_path, tmp_path):
    image = write_png(tmp_path / "chest.png", 1)
    proc = run_subprocess("predict", "--model", str(tmp_path / "absent.tflite"), str(image), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip() == f"error: {tmp_path / 'absent.tflite'}: no such model file"
    proc = run_subprocess("predict", "--threads", "0", "-m", model_path, str(image), cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_subprocess_missing_input(model_path, tmp_path):
    proc = run_subprocess("predict", "-m", model_path, str(tmp_path / "gone.dcm"), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"error: {tmp_path / 'gone.dcm'}: no such file"]  # nothing else: no LiteRT INFO line
    assert proc.stdout == ""


@pytest.fixture()
def without_clinic(tmp_path) -> dict[str, str]:
    """The environment of a child Python in which pynetdicom, highdicom, Flask and waitress cannot be imported."""
    (tmp_path / "no-clinic").mkdir()
    (tmp_path / "no-clinic" / "sitecustomize.py").write_text(NO_CLINIC)
    env = child_env()
    env["PYTHONPATH"] = f"{tmp_path / 'no-clinic'}{os.pathsep}{env['PYTHONPATH']}"
    done = subprocess.run([sys.executable, "-c", "import flask"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "No module named 'flask'" in done.stderr, "the blocker did not load"
    return env


@pytest.mark.parametrize("command", ["listen", "watch", "serve"])
def test_clinic_commands_without_the_clinic_extra_print_one_error_line(command, without_clinic, model_path, tmp_path):
    args = [command, *([str(tmp_path)] if command == "watch" else []), "--store", str(tmp_path / "store"), "--model", model_path]
    proc = subprocess.run([sys.executable, "-m", "edgecxr", *args], cwd=tmp_path, env=without_clinic, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"error: {CLINIC_HELP}"] and "Traceback" not in proc.stderr
    assert proc.stdout == "" and not (tmp_path / "store").exists()


def test_models_unknown_name_is_one_line_error(runner):
    result = runner.invoke(main, ["models", "--model", "nosuchmodel"])
    assert result.exit_code == 2
    assert "error: nosuchmodel: not a bundled model" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_signed_tiff_fails_alone_and_batch_goes_on(runner, model_path, tmp_path):
    cv2.imwrite(str(tmp_path / "a_signed.tif"), np.arange(4096, dtype=np.int16).reshape(64, 64))
    write_png(tmp_path / "b_ok.png", 0)
    result = runner.invoke(main, ["predict", "--json", "-m", model_path, str(tmp_path)])
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0] == {"file": str(tmp_path / "a_signed.tif"), "error": "unsupported pixel type int16"}
    assert lines[1]["label"] == TINY_LABELS[0]


def test_version(runner):
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and "edgecxr" in result.stdout


def test_models_flags_a_tampered_or_missing_model(runner, tiny_models, tmp_path):
    model = tmp_path / "tampered.tflite"
    data = bytearray(tiny_models["int8"].read_bytes())
    data[-10] ^= 0xFF
    model.write_bytes(bytes(data))
    model.with_suffix(".json").write_text(tiny_models["int8"].with_suffix(".json").read_text())
    gone = tmp_path / "gone.tflite"
    gone.with_suffix(".json").write_text(tiny_models["int8"].with_suffix(".json").read_text())
    result = runner.invoke(main, ["models", "--model", str(model), "--model", str(gone), "--json"])
    assert result.exit_code == 2
    assert {r["name"] for r in json.loads(result.stdout)} == {p.stem for p in bundled_models()}  # the bundled ones still listed
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"error: {model}: sha256 ") and "does not match its card" in lines[0]
    assert lines[1] == f"error: {gone}: no such model file"
