"""``edgecxr.core.inputs``: the one image filter (find_images, scan_images and what it skips) and class folders, as every caller sees them."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from conftest import TINY_LABELS, toy_u8, write_png
from edgecxr.cli import main
from edgecxr.core.imageio import IMAGE_SUFFIXES, load_image
from edgecxr.core.inputs import DICOMDIR, EMPTY_FOLDER, NOT_AN_IMAGE, Skipped, class_folders, find_images, scan_images
from edgecxr.evaluation.evaluate import labelled_files
from test_imageio import write_dicom
from training.data import list_images


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_find_images_folders_recursive_sorted_by_suffix(tmp_path):
    scans = tmp_path / "scans"
    for name in ("b.png", "a.JPG", "sub/c.dcm", "sub/deeper/d.TIFF", "e.jpeg", "f.bmp", "g.tif", "notes.txt", "scan.nii", "noext"):
        touch(scans / name)
    (scans / "folder.png").mkdir()  # a folder named like an image is not a file
    found = [p.relative_to(scans).as_posix() for p in find_images([scans])]
    assert found == ["a.JPG", "b.png", "e.jpeg", "f.bmp", "g.tif", "sub/c.dcm", "sub/deeper/d.TIFF"]
    assert {Path(f).suffix.lower() for f in found} == set(IMAGE_SUFFIXES)


def test_find_images_keeps_the_order_given_and_files_as_given(tmp_path):
    one, two = touch(tmp_path / "one" / "z.png").parent, touch(tmp_path / "two" / "a.png").parent
    touch(tmp_path / "one" / "y.png")
    text = touch(tmp_path / "report.txt")
    missing = tmp_path / "absent.png"
    found = find_images([str(two), text, one, missing])
    # a file named on the command line is kept whatever its suffix (or whether it exists): its reader reports it
    assert found == [two / "a.png", text, one / "y.png", one / "z.png", missing]
    assert find_images(str(one)) == find_images([one]) == [one / "y.png", one / "z.png"]  # one path alone works too
    assert find_images([]) == []


def test_class_folders_sorted_without_hidden_or_files(tmp_path):
    for name in ("Pneumonia", "COVID", ".cache", "Normal"):
        (tmp_path / name).mkdir()
    touch(tmp_path / "manifest.csv")
    assert class_folders(tmp_path) == ["COVID", "Normal", "Pneumonia"]


def test_training_and_evaluate_list_the_same_test_files(shared_data):
    root = shared_data / "cxr3"
    labels, pairs = list_images(root)
    evaluated = labelled_files(root / "test", labels)
    assert len(evaluated) == 905  # the data README's test split: 303 + 301 + 301
    assert [(p, labels[i]) for p, i in evaluated] == pairs["test"]
    assert [p for p, _ in evaluated] == [p for label in labels for p in find_images(root / "test" / label)]


# --- folder scans that report what they pass over (issue 12) ------------------------------------


def pacs_export(root: Path) -> list[Path]:
    """A CD/PACS layout: DICOM files without a suffix under DICOM/ST000/SE000, and the CD's DICOMDIR."""
    (root / "DICOM" / "ST000" / "SE000").mkdir(parents=True)
    images = [write_dicom(root / "DICOM" / "ST000" / "SE000" / name, toy_u8(cls).astype(np.uint16) * 257) for cls, name in enumerate(("IM000001", "IM000002"))]
    write_dicom(root / "DICOMDIR", None)  # an index: Part 10 file (DICM marker), no pixel data
    return images


def test_dicom_found_by_content_and_the_dicomdir_skipped_with_its_reason(tmp_path):
    images = pacs_export(tmp_path / "cd")
    touch(tmp_path / "cd" / "DICOM" / "ST000" / "SE000" / "README")
    found = scan_images(tmp_path / "cd")
    assert found.files == images
    assert [(s.path.name, s.reason) for s in found.skipped] == [("README", NOT_AN_IMAGE), ("DICOMDIR", DICOMDIR)]  # in walk order
    cd = tmp_path / "cd"
    assert found.summary() == f"skipped: 2 (1 {NOT_AN_IMAGE}: {cd / 'DICOM' / 'ST000' / 'SE000' / 'README'}; 1 {DICOMDIR}: {cd / 'DICOMDIR'})"
    assert [load_image(p).format for p in found.files] == ["dicom", "dicom"]


def test_symlinked_folders_followed_once_loops_and_dangling_links_reported(tmp_path):
    scans = tmp_path / "scans"
    write_png(tmp_path / "elsewhere" / "b.png", 1)
    write_png(scans / "a.png", 0)
    (scans / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (scans / "linked-again").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (scans / "loop").symlink_to(scans, target_is_directory=True)
    (scans / "gone.png").symlink_to(tmp_path / "absent.png")
    (scans / "self").symlink_to(scans / "self")
    os.mkfifo(scans / "pipe.png")
    found = scan_images([scans])
    assert found.files == [scans / "a.png", scans / "linked" / "b.png"]
    again = "folder already read (a symbolic link back to it or to another folder read)"
    assert {s.path.name: s.reason for s in found.skipped} == {
        "gone.png": "dangling symbolic link",
        "linked-again": again,
        "loop": again,
        "pipe.png": "not a regular file (FIFO)",
        "self": "cannot read (Too many levels of symbolic links)",
    }


def test_each_folder_without_images_is_named(tmp_path):
    (tmp_path / "scan.png").mkdir()  # a folder named like an image, with nothing inside
    write_png(tmp_path / "full" / "a.png", 0)
    found = scan_images([tmp_path / "scan.png", tmp_path / "full"])
    assert found.files == [tmp_path / "full" / "a.png"]
    assert found.skipped == [Skipped(tmp_path / "scan.png", EMPTY_FOLDER)]


def test_predict_reports_skipped_entries_and_names_an_empty_folder(tiny_models, tmp_path):
    runner, model = CliRunner(), str(tiny_models["int8"])
    images = pacs_export(tmp_path / "cd")
    result = runner.invoke(main, ["predict", "--json", "-m", model, str(tmp_path / "cd")])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0] == {"file": str(tmp_path / "cd" / "DICOMDIR"), "skipped": DICOMDIR}
    assert [(r["file"], r["label"]) for r in records[1:]] == [(str(images[0]), TINY_LABELS[0]), (str(images[1]), TINY_LABELS[1])]
    assert result.stderr.splitlines() == [f"skipped: 1 (1 {DICOMDIR}: {tmp_path / 'cd' / 'DICOMDIR'})"]
    (tmp_path / "empty.png").mkdir()
    result = runner.invoke(main, ["predict", "-m", model, str(tmp_path / "empty.png")])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [f"skipped: 1 (1 {EMPTY_FOLDER}: {tmp_path / 'empty.png'})", f"error: no image files in {tmp_path / 'empty.png'}"]


def test_skipped_line_names_a_few_files_per_reason_then_counts(tmp_path):
    for i in range(5):
        touch(tmp_path / f"note{i}.txt")
    touch(tmp_path / "bad\nname.txt")
    (tmp_path / "gone.png").symlink_to(tmp_path / "absent.png")
    found = scan_images(tmp_path)
    assert found.summary() == (
        f"skipped: 8 (6 {NOT_AN_IMAGE}: {tmp_path / 'bad'}\\nname.txt, {tmp_path / 'note0.txt'}, {tmp_path / 'note1.txt'} and 3 more; "
        f"1 dangling symbolic link: {tmp_path / 'gone.png'}; 1 {EMPTY_FOLDER}: {tmp_path})"
    )
    assert "\n" not in found.summary()  # one line, whatever the names hold
