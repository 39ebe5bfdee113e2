"""``edgecxr.inputs``: the one image-suffix filter (find_images) and class folders, as every caller sees them."""
from __future__ import annotations

from pathlib import Path

from edgecxr.evaluate import labelled_files
from edgecxr.imageio import IMAGE_SUFFIXES
from edgecxr.inputs import class_folders, find_images
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
