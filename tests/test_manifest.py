"""``edgecxr.evaluation.manifest``: the one manifest reader, its errors, the shared manifests, and training's use of it."""
from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from conftest import write_png
from edgecxr.evaluation.manifest import Manifest, ManifestError, read_manifest
from training.data import DatasetError, load_dataset

HEADER = "file,label,split,source,subclass,patient_group,age_group,license,sha256"


def write_manifest(path, *rows: str, header: str = HEADER):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_typed_rows_keyed_by_resolved_path(tmp_path):
    path = write_manifest(
        tmp_path / "data" / "manifest.csv",
        'test/COVID/a.png,COVID,test,ieee,,p1,adult,"CC BY 4.0, see site",abc',
        "test/Normal/b.png,Normal,test,kermany,,p2,pediatric,,",
    )
    manifest = read_manifest(path)
    assert isinstance(manifest, Manifest)
    assert manifest.path == path
    assert manifest.columns == tuple(HEADER.split(","))
    assert manifest.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert list(manifest.rows) == [(tmp_path / "data" / "test" / "COVID" / "a.png").resolve(), (tmp_path / "data" / "test" / "Normal" / "b.png").resolve()]
    row = manifest.get(tmp_path / "data" / "test" / "Normal" / ".." / "COVID" / "a.png")  # any spelling of the path
    assert (row.file, row.label, row.split, row.source, row.subclass, row.patient_group, row.age_group) == (
        "test/COVID/a.png", "COVID", "test", "ieee", "", "p1", "adult",
    )
    assert row.extra == {"license": "CC BY 4.0, see site", "sha256": "abc"}
    assert manifest.get(tmp_path / "data" / "test" / "COVID" / "other.png") is None
    assert manifest.sources([tmp_path / "data/test/Normal/b.png", tmp_path / "elsewhere.png"]) == ["kermany", ""]
    assert [r.file for r in manifest.under(tmp_path / "data" / "test" / "Normal")] == ["test/Normal/b.png"]
    assert len(manifest.under(tmp_path / "data")) == 2 and manifest.under(tmp_path / "other") == []


def test_only_file_is_required_unless_asked(tmp_path):
    path = write_manifest(tmp_path / "manifest.csv", "a/1.png,g1", header="file,patient_group")
    row = read_manifest(path).get(tmp_path / "a" / "1.png")
    assert (row.patient_group, row.source, row.label) == ("g1", "", "")
    with pytest.raises(ManifestError, match=r"manifest.csv: no 'source' column \(columns: file, patient_group\)$"):
        read_manifest(path, required=("source",))


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "manifest does not exist"),
        (b"", "manifest is empty (no header row)"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a CSV text file"),
        (b"image,mask\nx.png,y.png\n", "no 'file' column (columns: image, mask)"),
        (b"file,source\na.png,x\n,y\n", "line 3: empty 'file'"),
        (b"file,source\na.png,x\nsub/../a.png,y\n", "line 3: sub/../a.png is listed twice"),
    ],
)
def test_errors_name_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "manifest.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    assert str(info.value) == f"{path}: {message}"
    assert isinstance(info.value, ValueError)


def test_a_folder_is_not_a_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest is a folder, not a CSV file"):
        read_manifest(tmp_path)


def test_shared_manifest_matches_the_data_readme(shared_data):
    manifest = read_manifest(shared_data / "cxr3" / "manifest.csv", required=("source", "split"))
    assert len(manifest.rows) == 6021
    assert Counter(r.split for r in manifest.rows.values()) == {"train": 4210, "val": 906, "test": 905}
    assert {r.source for r in manifest.rows.values()} <= {"bimcv", "web", "cxnet", "hannover", "ieee", "kermany", "rsna", "nih"}
    test = manifest.under(shared_data / "cxr3" / "test")
    assert len(test) == 905 and all(r.split == "test" and r.path.is_file() for r in test)


def test_training_reads_sources_and_hash_through_the_reader(tmp_path):
    root = tmp_path / "ds"
    rows = []
    for split in ("train", "test"):
        for cls, label in enumerate(("a", "b")):
            for i in range(2):
                write_png(root / split / label / f"{i}.png", cls, seed=i)
                rows.append(f"{split}/{label}/{i}.png,{label},{split},site{i}")
    write_manifest(root / "manifest.csv", *rows[:-1], header="file,label,split,source")  # the last test image is not listed
    data = load_dataset(root, {"size": [16, 16]}, workers=1, verbose=False)
    assert data.manifest_sha256 == hashlib.sha256((root / "manifest.csv").read_bytes()).hexdigest()
    assert data.splits["train"].sources == ["site0", "site1", "site0", "site1"]
    assert data.splits["test"].sources == ["site0", "site1", "site0", ""]
    (root / "manifest.csv").write_text("file,source\na/0.png,x\na/0.png,y\n")
    with pytest.raises(DatasetError, match="is listed twice"):
        load_dataset(root, {"size": [16, 16]}, workers=1, verbose=False)
