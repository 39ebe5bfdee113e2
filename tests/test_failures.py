"""One error boundary per input: any failure with one file is that file's one line, in every command and the API.

Reproducers of issue 12 built in code: a DICOM whose NumberOfFrames is "ab", a decoder raising
something other than ImageError, a file name that is not UTF-8 with --heatmap, a name with a newline.
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from conftest import TINY_LABELS, child_env, make_dataset, write_png
from edgecxr import load_model
from edgecxr.cli import main
from edgecxr.core.failures import ImageError, as_image_error, per_input, shown
from edgecxr.core.imageio import load_image
from edgecxr.evaluation.evaluate import evaluate
from test_imageio import write_dicom

BAD_NAME = os.fsdecode(b"bad\xffname.png")  # not UTF-8: Python keeps the byte as a surrogate escape


def malformed_dicom(path: Path) -> Path:
    """A DICOM whose NumberOfFrames is "ab" (pydicom keeps the raw text; int() of it raises ValueError)."""
    write_dicom(path, np.arange(64, dtype=np.uint16).reshape(8, 8), PatientName="Doe^Jane")
    ds = pydicom.dcmread(path)
    ds[0x00280008] = RawDataElement(Tag(0x00280008), "IS", 2, b"ab", 0, False, True)
    ds.save_as(path)
    return path



def test_shown_escapes_undecodable_bytes_and_control_characters():
    assert shown("scans/a b.png") == "scans/a b.png"
    assert shown(Path(BAD_NAME)) == "bad\\xffname.png"
    assert shown("two\nlines\t.png") == "two\\nlines\\t.png"
    assert shown("Röntgen.png") == "Röntgen.png"


def test_as_image_error_gives_any_exception_one_line():
    assert as_image_error("a.png", ValueError("invalid literal\nfor int()")).reason == "unexpected error (ValueError: invalid literal for int())"
    assert as_image_error("a.png", MemoryError()).reason == "not enough memory to read it"
    assert as_image_error("a.png", PermissionError(13, "Permission denied")).reason == "cannot read file (Permission denied)"
    same = ImageError("a.png", "broken")
    assert as_image_error("a.png", same) is same
    err = ImageError("two\nlines.png", "broken")
    assert str(err) == "two\\nlines.png: broken" and err.path == "two\nlines.png"
    assert pickle.loads(pickle.dumps(err)).path == "two\nlines.png"


def test_per_input_keeps_going_but_not_past_ctrl_c():
    def work(name: str) -> int:
        if name == "bad":
            raise RuntimeError("boom")
        return len(name)

    out = list(per_input(["a", "bad", "ccc"], work))
    assert [(p, r if isinstance(r, int) else str(r)) for p, r in out] == [("a", 1), ("bad", "bad: unexpected error (RuntimeError: boom)"), ("ccc", 3)]

    def interrupted(name: str) -> int:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        list(per_input(["a"], interrupted))


def test_malformed_dicom_is_an_image_error_naming_the_attribute_not_its_value(tmp_path):
    path = malformed_dicom(tmp_path / "frames.dcm")
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert str(info.value) == f"{path}: DICOM NumberOfFrames is not a whole number"
    assert "Doe" not in str(info.value)


def test_load_image_turns_a_decoder_crash_into_an_image_error(tmp_path, monkeypatch):
    path = write_png(tmp_path / "a.png", 0)
    monkeypatch.setattr("edgecxr.core.imageio._from_pixels", lambda arr, fmt: 1 / 0)
    with pytest.raises(ImageError, match=r"a.png: unexpected error \(ZeroDivisionError: division by zero\)$"):
        load_image(path)


def test_predict_reports_a_non_image_error_as_that_files_line(tiny_models, model_path, tmp_path, monkeypatch):
    folder = tmp_path / "batch"
    good, odd = write_png(folder / "a.png", 0), write_png(folder / "b.png", 1)
    dicom = malformed_dicom(folder / "c.dcm")
    real_predict = load_model(tiny_models["int8"]).predict.__func__

    def predict(self, image, heatmap=False):
        if image.source == str(odd):
            raise RuntimeError("interpreter\nfailed")
        return real_predict(self, image, heatmap)

    monkeypatch.setattr("edgecxr.core.model.Model.predict", predict)
    result = CliRunner().invoke(main, ["predict", "--json", "-m", model_path, str(folder)])
    assert result.exit_code == 1 and result.exception is not None and isinstance(result.exception, SystemExit)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["file"] for r in records] == [str(good), str(odd), str(dicom)]
    assert records[0]["label"] == "dark"
    assert records[1] == {"file": str(odd), "error": "unexpected error (RuntimeError: interpreter failed)"}
    assert records[2] == {"file": str(dicom), "error": "DICOM NumberOfFrames is not a whole number"}
    assert result.stderr.splitlines() == [
        f"error: {odd}: unexpected error (RuntimeError: interpreter failed)",
        f"error: {dicom}: DICOM NumberOfFrames is not a whole number",
    ]


def test_evaluate_and_benchmark_name_the_malformed_dicom_and_keep_the_rest(tiny_models, model_path, tmp_path):
    data = make_dataset(tmp_path / "data", per_class=(1, 1, 3)) / "test"
    bad = malformed_dicom(data / "dark" / "frames.dcm")
    line = f"{bad}: DICOM NumberOfFrames is not a whole number"
    report = evaluate(load_model(model_path), data)
    assert report["errors"] == [line] and report["n"] == 9
    runner = CliRunner()
    result = runner.invoke(main, ["evaluate", str(data), "-m", model_path, "--json"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert json.loads(result.stdout)["errors"] == [line] and result.stderr.splitlines() == [f"error: {line}"]
    result = runner.invoke(main, ["benchmark", "-m", model_path, "--data", str(data), "--runs", "2", "--warmup", "0", "--json"])
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [f"error: {line}"]
    (r,) = json.loads(result.stdout)["results"]
    assert r["errors"] == [line] and r["n_images"] == 9


def test_non_utf8_name_with_heatmap_and_a_newline_name_in_plain_output(model_path, tmp_path):
    """The issue's segfault: cv2.imwrite given a name it cannot encode. Run as a real process, as a crash there is the bug."""
    folder = tmp_path / "b"
    write_png(folder / "bright.png", 1).rename(folder / BAD_NAME)  # cv2.imwrite itself cannot be given that name
    write_png(folder / "two\nlines.png", 2)
    result = subprocess.run(
        [sys.executable, "-m", "edgecxr", "predict", str(folder), "-m", model_path, "--heatmap", str(tmp_path / "hm")],
        env=child_env(), capture_output=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 4, lines  # one result and one heatmap line per image: the newline did not split one
    assert lines[0].startswith(f"{folder}/bad\\xffname.png: bright") and lines[2].startswith(f"{folder}/two\\nlines.png: striped")
    written = sorted(os.listdir(os.fsencode(tmp_path / "hm")))
    assert written == [b"bad\xffname.heatmap.png", b"two\nlines.heatmap.png"]
    assert lines[1] == f"  heatmap: {tmp_path}/hm/bad\\xffname.heatmap.png (evidence for bright)"
    assert TINY_LABELS[1] in lines[0]


def test_ctrl_c_exits_130_with_the_lines_so_far_whole(tiny_models, model_path, tmp_path, monkeypatch):
    files = [write_png(tmp_path / f"{i}.png", i) for i in range(3)]
    real_predict = load_model(tiny_models["int8"]).predict.__func__

    def predict(self, image, heatmap=False):
        if image.source == str(files[1]):
            raise KeyboardInterrupt
        return real_predict(self, image, heatmap)

    monkeypatch.setattr("edgecxr.core.model.Model.predict", predict)
    result = CliRunner().invoke(main, ["predict", "--json", "-m", model_path, *map(str, files)])
    assert result.exit_code == 130
    (line,) = result.stdout.splitlines()
    assert json.loads(line)["file"] == str(files[0])
    assert result.stderr == "error: interrupted\n"


@pytest.mark.parametrize("stdout", ["closed", "broken pipe"])
def test_results_that_cannot_be_written_are_a_failure(model_path, tmp_path, stdout):
    image = write_png(tmp_path / "a.png", 0)
    command = [sys.executable, "-m", "edgecxr", "predict", str(image), "-m", model_path]
    if stdout == "closed":
        result = subprocess.run(" ".join(command) + " >&-", shell=True, env=child_env(), capture_output=False, stderr=subprocess.PIPE, timeout=300)
    else:
        read, write = os.pipe()
        os.close(read)  # the reader is gone before anything is written: every write fails with EPIPE
        result = subprocess.run(command, env=child_env(), stdout=write, stderr=subprocess.PIPE, timeout=300)
        os.close(write)
    assert result.returncode == 1
    errors = [line for line in result.stderr.decode().splitlines() if "XNNPACK" not in line]
    if stdout == "closed":
        assert len(errors) == 1 and errors[0].startswith("error: cannot write results"), errors
    else:  # a reader that has gone wanted no more: nothing to say
        assert errors == []


def test_predict_into_head_ends_quietly(model_path, tmp_path):
    folder = tmp_path / "films"
    for i in range(150):  # many more lines than head takes: the writes after head has gone meet a closed pipe
        write_png(folder / f"{i:03d}.png", i % 3, seed=i)
    err = tmp_path / "stderr"
    result = subprocess.run(
        f"set -o pipefail; {sys.executable} -m edgecxr predict {folder} -m {model_path} 2>{err} | head -1",
        shell=True, executable="/bin/bash", env=child_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.stdout.startswith(f"{folder}/000.png: ") and result.stdout.count("\n") == 1
    assert result.returncode == 1  # edgecxr's status (pipefail): it stopped before its last film
    assert [line for line in err.read_text().splitlines() if "XNNPACK" not in line] == []
