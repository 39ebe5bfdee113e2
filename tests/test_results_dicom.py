"""The result objects as made without highdicom, checked with highdicom and dciodvfy; the workers' group commit.

Every result type (SR, "not analysable" SR, Secondary Capture of a chest film and of a paired body part) passes
dciodvfy (dicom3tools) without an error, reads back with highdicom, and keeps the film's patient and study
attributes as the film has them (its character set included). The listener's own path never imports highdicom.
Several workers on one store classify every film once; every record names results that are on disk.
"""
from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
import threading

import numpy as np
import pydicom
import pytest

from clinic import dcmtk, wrap
from conftest import child_env, toy_u8
from edgecxr import load_model
from edgecxr.clinic.journal import Journal, read_lines
from edgecxr.clinic.store import Store
from edgecxr.core.imageio import load_image

pytestmark = pytest.mark.clinic


def dicom_errors(path) -> list[str]:
    """The Error lines of dciodvfy on the file at ``path``."""
    done = subprocess.run([dcmtk("dciodvfy"), str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture(scope="module")
def made(tiny_models, tmp_path_factory):
    """A film of a made-up patient with the attributes results keep, its prediction, and the model's identity."""
    from edgecxr.clinic.results import ModelIdentity

    model = load_model(tiny_models["int8"])
    source = wrap(toy_u8(2, size=(96, 80)), "Müller^Zoë", "MZ-1001")
    source.SpecificCharacterSet = "ISO_IR 100"  # the names above in Latin-1
    source.IssuerOfPatientID, source.StudyDescription, source.BodyPartExamined, source.PatientAge = "MADE-UP HOSPITAL", "Chest PA", "CHEST", "045Y"
    path = tmp_path_factory.mktemp("film") / "film.dcm"
    source.save_as(path, enforce_file_format=True)
    loaded = load_image(path)
    prediction = model.predict(loaded, heatmap=True)
    return pydicom.dcmread(path, stop_before_pixels=True), loaded, prediction, ModelIdentity(model.name, model.card.version, model.card.sha256 or "")


def _saved(ds: pydicom.Dataset, path) -> pydicom.Dataset:
    ds.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


def test_every_result_type_passes_dciodvfy_and_keeps_the_film_patient_and_study(made, tmp_path):
    from edgecxr.clinic.results import not_analysable_report, picture, secondary_capture, structured_report

    header, loaded, prediction, identity = made
    rgb = picture(loaded.pixels, prediction, identity)
    hand = copy.deepcopy(header)
    hand.BodyPartExamined = "HAND"  # a paired body part the film gives no side of: Laterality present, empty
    results = {
        "sr": structured_report(header, prediction, identity),
        "not analysable": not_analysable_report(header, "outside the model's intended use: the body part is not CHEST", identity),
        "sc": secondary_capture(header, rgb, identity),
        "sc of a hand": secondary_capture(hand, rgb, identity),
    }
    for name, ds in results.items():
        path = tmp_path / f"{name.replace(' ', '-')}.dcm"
        back = _saved(ds, path)
        assert dicom_errors(path) == [], (name, dicom_errors(path))
        assert str(back.PatientName) == "Müller^Zoë" and back.PatientID == "MZ-1001" and back.SpecificCharacterSet == "ISO_IR 100"
        assert (back.IssuerOfPatientID, back.StudyDescription, back.PatientAge) == ("MADE-UP HOSPITAL", "Chest PA", "045Y")
        assert (back.StudyInstanceUID, back.AccessionNumber, back.StudyDate) == (header.StudyInstanceUID, header.AccessionNumber, header.StudyDate)
        assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID and back.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    sr, na, sc, hand_sc = (pydicom.dcmread(tmp_path / f"{n}.dcm") for n in ("sr", "not-analysable", "sc", "sc-of-a-hand"))
    assert (sr.SeriesNumber, sc.SeriesNumber) == (9901, 9902) and sr.SeriesInstanceUID == na.SeriesInstanceUID != sc.SeriesInstanceUID
    assert sc.BodyPartExamined == "CHEST" and "Laterality" not in sc and "BodyPartExamined" not in sr  # an SR's series has no body part
    assert hand_sc.BodyPartExamined == "HAND" and "Laterality" in hand_sc and hand_sc.Laterality in ("", None)
    assert (sc.Rows, sc.Columns, sc.SamplesPerPixel) == (*rgb.shape[:2], 3) and np.array_equal(sc.pixel_array, rgb)


def test_the_reports_read_back_with_highdicom_as_tid_1500(made, tmp_path, tiny_models):
    import highdicom as hd

    from edgecxr.clinic.results import not_analysable_report, structured_report

    header, _, prediction, identity = made
    report = hd.sr.Comprehensive3DSR.from_dataset(_saved(structured_report(header, prediction, identity), tmp_path / "sr.dcm"))
    (group,) = report.content.get_image_measurement_groups()
    assert group.finding_type.meaning == prediction.label and group.tracking_identifier == "edgecxr classification"
    assert {m.name.meaning: m.value for m in group.get_measurements()} == {
        f"Probability of {label}": pytest.approx(p, abs=1e-6) for label, p in prediction.probabilities.items()
    }
    assert [m.unit.value for m in group.get_measurements()] == ["1"] * len(prediction.probabilities)
    (source,) = group.source_images
    assert source.referenced_sop_instance_uid == header.SOPInstanceUID
    observer = report.content.get_observer_contexts()
    assert [o.observer_type.meaning for o in observer] == ["Device"]
    refused = hd.sr.Comprehensive3DSR.from_dataset(_saved(not_analysable_report(header, "why", identity), tmp_path / "na.dcm"))
    (group,) = refused.content.get_image_measurement_groups()
    assert group.finding_type.meaning == "Not analysable" and group.get_measurements() == []


def _plain_bytes(ds: pydicom.Dataset) -> bytes:
    """``ds`` written as pydicom writes a dataset made from scratch: a deep copy with no shared item and no item said
    to be in the file's transfer syntax already (so every item is looked over for elements of ambiguous VR)."""
    plain = copy.deepcopy(ds)
    stack = [plain]
    while stack:
        item = stack.pop()
        for element in item:
            if element.VR == "SQ":
                for child in element.value:
                    child.set_original_encoding(None, None)
                    stack.append(child)
    buffer = io.BytesIO()
    plain.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_reports_sharing_the_model_items_are_written_as_made_from_scratch(made):
    """The SR's shared items (codes, the model's content items) and its items written as they are give the bytes a
    report made from scratch gives, and making a second report (another film, another finding) changes no byte of
    the first."""
    from edgecxr.clinic.results import not_analysable_report, structured_report
    from edgecxr.clinic.writers import _dicom_bytes

    header, _, prediction, identity = made
    report = structured_report(header, prediction, identity)
    first = _dicom_bytes(report)
    assert first == _plain_bytes(report)
    other = copy.deepcopy(header)
    other.SOPInstanceUID, other.SpecificCharacterSet = pydicom.uid.generate_uid(), "ISO_IR 192"
    second = not_analysable_report(other, "a reason", identity)
    assert _dicom_bytes(second) == _plain_bytes(second) != first
    assert _dicom_bytes(report) == first
    assert identity.name.encode() in first and b"sha256:" + identity.sha256.encode() in first


def test_the_worker_path_never_imports_highdicom(tiny_models, tmp_path):
    film = wrap(toy_u8(1, size=(64, 64)), "Import^Check", "IC-1")
    film.save_as(tmp_path / "film.dcm", enforce_file_format=True)
    code = (
        "import sys, pydicom\nfrom edgecxr import load_model\nfrom edgecxr.clinic.service import Service\n"
        f"service = Service({str(tmp_path / 'store')!r}, load_model({str(tiny_models['int8'])!r}), None, 'EDGECXR', 1.0)\n"
        f"data = open({str(tmp_path / 'film.dcm')!r}, 'rb').read()\n"
        "key = service.store.key(str(pydicom.dcmread(__import__('io').BytesIO(data)).SOPInstanceUID))\n"
        "service.store.write_bytes(service.store.path('received', key, '.dcm'), data)\n"
        "service.start(); service.stop()\n"
        "print(service.counts()['classified'], sorted(m for m in sys.modules if m.split('.')[0] == 'highdicom'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "1 []"


def test_a_group_commit_puts_every_staged_file_in_place_whole_and_leaves_nothing_behind(tmp_path):
    with Store(tmp_path / "s") as store:
        files = [(store.path("results", f"k{i}", ".sr.dcm"), bytes([i]) * (1000 + i)) for i in range(20)]
        results = [store.stage(path, data) for path, data in files]
        outbox = [store.stage(store.path("outbox", "k0", ".json"), b"{}\n")]
        assert not any(path.exists() for path, _ in files) and len(list((tmp_path / "s" / "tmp").iterdir())) == 21  # staged only
        store.commit([results, outbox])
        assert [p.read_bytes() for p, _ in files] == [data for _, data in files] and store.path("outbox", "k0", ".json").read_bytes() == b"{}\n"
        assert list((tmp_path / "s" / "tmp").iterdir()) == []
        first, second = store.stage(store.path("results", "k1", ".sc.dcm"), b"x"), store.stage(tmp_path / "s" / "nowhere" / "k2.json", b"y")
        with pytest.raises(FileNotFoundError):  # a folder that is not there: the error, and what is left stays staged
            store.commit([[first], [second]])
        assert store.path("results", "k1", ".sc.dcm").read_bytes() == b"x" and second[0].exists()  # the first step is done
        (tmp_path / "s" / "nowhere").mkdir()
        store.commit([[first], [second]])  # again: the rest is done
        assert (tmp_path / "s" / "nowhere" / "k2.json").read_bytes() == b"y" and list((tmp_path / "s" / "tmp").iterdir()) == []
        syncing = _fsync_threads()
        assert 1 <= len(syncing) <= 8  # the store's own fsync threads, kept for the next commit
        store.commit([[store.stage(store.path("results", f"m{i}", ".sr.dcm"), b"z") for i in range(20)]])
        assert syncing <= _fsync_threads() and len(_fsync_threads()) <= 8
    assert not _fsync_threads()  # closing the store ends them


def _fsync_threads() -> set[int | None]:
    return {t.ident for t in threading.enumerate() if t.name.startswith("edgecxr-fsync")}


def test_a_journal_writes_a_batch_of_lines_each_once(tmp_path):
    echoed: list[dict] = []
    log = Journal(tmp_path / "audit.jsonl", echo=echoed.append)
    log.once("received", "k1")
    lines = [("received", "k1", {}), ("classified", "k1", {"label": "dark"}), ("classified", "k2", {"label": "bright"}), ("classified", "k2", {"label": "x"})]
    assert log.once_many(lines) == 2
    assert log.once_many(lines) == 0
    written = [(r["event"], r["key"], r.get("label")) for r in read_lines(tmp_path / "audit.jsonl")]
    assert written == [("received", "k1", None), ("classified", "k1", "dark"), ("classified", "k2", "bright")]
    assert [r["key"] for r in echoed] == ["k1", "k1", "k2"]
    assert not Journal(tmp_path / "audit.jsonl").once("classified", "k2")  # read back at start


def test_three_workers_classify_every_film_once_each_record_naming_its_results(tiny_models, tmp_path):
    from edgecxr.clinic.service import Service

    service = Service(tmp_path / "store", load_model(tiny_models["int8"]), None, "EDGECXR", 1.0, workers=3)
    assert service.worker.workers == 3
    films = [wrap(toy_u8(i % 3, seed=i, size=(64, 64)), f"Many^Workers{i:02d}", f"MW-{i:03d}") for i in range(24)]
    hand = films[-1]
    hand.BodyPartExamined = "HAND"  # a failure among the results: its not-analysable report, through the same commits
    for ds in films:
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        service.store.write_bytes(service.store.path("received", service.store.key(ds.SOPInstanceUID), ".dcm"), buffer.getvalue())
    service.start()
    service.stop()
    audit = read_lines(tmp_path / "store" / "audit.jsonl")
    classified = [r["key"] for r in audit if r["event"] == "classified"]
    failed = [r for r in audit if r["event"] == "failed"]
    keys = [service.store.key(ds.SOPInstanceUID) for ds in films]
    assert sorted(classified) == sorted(keys[:-1]) and len(classified) == len(set(classified))
    assert [(r["key"], r["stage"], r["results"]) for r in failed] == [(keys[-1], "route", [f"{keys[-1]}.sr.dcm"])]
    for key, ds in zip(keys[:-1], films):
        record = json.loads((tmp_path / "store" / "classified" / f"{key}.json").read_text())
        assert record["results"] == [f"{key}.sr.dcm", f"{key}.sc.dcm"]
        sr = pydicom.dcmread(tmp_path / "store" / "results" / f"{key}.sr.dcm")
        assert sr.PatientID == ds.PatientID and sr.CurrentRequestedProcedureEvidenceSequence[0].StudyInstanceUID == ds.StudyInstanceUID
    lines = read_lines(tmp_path / "store" / "results.jsonl")
    assert sorted(r["key"] for r in lines) == sorted(keys[:-1])
    assert service.counts() == {"received": 24, "pending": 0, "classified": 23, "failed": 1, "to_send": 0}
    assert list((tmp_path / "store" / "tmp").iterdir()) == []


def test_a_film_whose_results_cannot_be_staged_fails_and_the_workers_go_on(tiny_models, tmp_path, monkeypatch):
    """Staging that fails for another reason than the store (a bug) fails that film with a reason; no thread stops."""
    from edgecxr.clinic import worker
    from edgecxr.clinic.service import Service

    service = Service(tmp_path / "store", load_model(tiny_models["int8"]), None, "EDGECXR", 1.0, workers=2)
    films = [wrap(toy_u8(i % 3, seed=40 + i, size=(64, 64)), f"Stage^Bug{i}", f"SB-{i}") for i in range(4)]
    keys = [service.store.key(ds.SOPInstanceUID) for ds in films]
    stage = worker.Outcome.stage

    def broken(self, store):
        if self.key == keys[1] and any(event == "classified" for event, _, _ in self.audit):
            raise ValueError("a bug in staging")
        return stage(self, store)

    monkeypatch.setattr(worker.Outcome, "stage", broken)
    for ds in films:
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        service.store.write_bytes(service.store.path("received", service.store.key(ds.SOPInstanceUID), ".dcm"), buffer.getvalue())
    service.start()
    assert service.worker.alive
    service.stop()
    audit = read_lines(tmp_path / "store" / "audit.jsonl")
    assert sorted(r["key"] for r in audit if r["event"] == "classified") == sorted(keys[:1] + keys[2:])
    failed = [r for r in audit if r["event"] == "failed"]
    assert [(r["key"], r["reason"], r["results"]) for r in failed] == [(keys[1], "unexpected error while writing its results", [f"{keys[1]}.sr.dcm"])]
    assert service.counts()["pending"] == 0
