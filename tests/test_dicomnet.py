"""The parts of edgecxr listen / watch in-process: store, journal, header checks, the DICOM results; the predict path without them."""
from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys

import numpy as np
import pydicom
import pytest
from pydicom.uid import UID

from clinic import CT, DX, wrap
from conftest import child_env, toy_u8, write_png
from edgecxr import load_model
from edgecxr.clinic import instances
from edgecxr.clinic.journal import Journal, read_lines
from edgecxr.clinic.store import Store, StoreError
from edgecxr.core.imageio import MAX_PIXELS, load_image

pytestmark = pytest.mark.clinic


def test_keys_are_salted_per_store_and_the_salt_stays(tmp_path):
    a = Store(tmp_path / "a")
    salt = (tmp_path / "a" / "salt").read_bytes().strip()
    assert len(salt) == 64
    assert a.key("1.2.3") == hashlib.sha256(salt + b"1.2.3").hexdigest()
    with Store(tmp_path / "b") as b:
        assert b.key("1.2.3") != a.key("1.2.3")
    with pytest.raises(StoreError, match="in use by another edgecxr process"):
        Store(tmp_path / "a")
    a.close()  # releases its lock
    a.close()
    with Store(tmp_path / "a") as again:
        assert again.salt == salt
    Store(tmp_path / "b").close()  # closed at the end of its block


def test_atomic_write_leaves_no_partial_file(tmp_path):
    with Store(tmp_path / "s") as store:
        target = store.write_bytes(store.path("received", "k", ".dcm"), b"abc")
        assert target.read_bytes() == b"abc"
        assert list((tmp_path / "s" / "tmp").iterdir()) == []
        assert store.received("k") == target and store.known("k") and store.pending() == ["k"]


def test_journal_writes_once_per_event_and_key_and_survives_a_torn_line(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = Journal(path)
    assert log.once("received", "k1", via="test")
    assert not log.once("received", "k1", via="test")
    log.write("failed", "k1", reason="x")
    log.write("failed", "k1", reason="y")
    del log
    with open(path, "ab") as fh:
        fh.write(b'{"time": "2026')  # a crash in the middle of a line
    log = Journal(path)
    assert not log.once("received", "k1")
    assert log.once("classified", "k1", label="COVID")
    lines = read_lines(path)
    assert [(r["event"], r["key"]) for r in lines] == [("received", "k1"), ("failed", "k1"), ("failed", "k1"), ("classified", "k1")]
    assert lines[-1]["time"].endswith("+00:00") and lines[-1]["label"] == "COVID"


def _film(sop_class: str = DX) -> pydicom.Dataset:
    return wrap(np.full((64, 64), 7, np.uint8), "Test^Patient", "T0001", sop_class=sop_class)


def test_header_checks_give_the_standard_statuses():
    good = _film()
    assert instances.refusal(good) is None
    no_pixels = _film()
    del no_pixels.PixelData
    assert instances.refusal(no_pixels) == (0xA900, "the dataset has no pixel data")
    huge = _film()
    huge.Rows = huge.Columns = 60000
    status, reason = instances.refusal(huge)
    assert status == 0xA900 and "60000x60000" in reason and f"{MAX_PIXELS:,}" in reason
    truncated = _film()
    truncated.PixelData = truncated.PixelData[:100]
    assert instances.refusal(truncated) == (0xA900, "the pixel data holds 100 bytes, fewer than a 64x64 image needs")
    assert instances.refusal(_film(sop_class=CT))[0] == 0xA900
    assert instances.refusal(good, sop_class_uid=CT)[1] == "the dataset's SOP class differs from the one the request names"
    no_uid = _film()
    del no_uid.SOPInstanceUID
    assert instances.refusal(no_uid) == (0xC000, "the dataset has no SOP Instance UID")
    assert "Test^Patient" not in repr([instances.refusal(d) for d in (no_pixels, huge, truncated, no_uid)])


def test_transfer_syntaxes_are_the_decodable_ones_uncompressed_first():
    syntaxes = instances.transfer_syntaxes()
    compressed = [UID(s).is_compressed for s in syntaxes]
    assert compressed == sorted(compressed) and not compressed[0]
    assert {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"} <= set(syntaxes)
    assert "1.2.840.10008.1.2.5" in syntaxes  # RLE Lossless: pydicom's own decoder
    assert "1.2.840.10008.1.2.4.57" not in syntaxes  # JPEG Lossless needs pylibjpeg, which the clinic extra does not bring


@pytest.fixture(scope="module")
def tiny_results(tiny_models, tmp_path_factory):
    """The SR and SC of the tiny model on one small striped toy film of a made-up patient whose name has no caret."""
    from edgecxr.clinic.results import ModelIdentity, picture, secondary_capture, structured_report

    model = load_model(tiny_models["int8"])
    source = wrap(toy_u8(2, size=(48, 96)), "ZEBEDIAH QUUXWORTH", "ZQ-554433")  # under 64 px high: a warning
    path = tmp_path_factory.mktemp("film") / "film.dcm"
    source.save_as(path, enforce_file_format=True)
    loaded = load_image(path)
    prediction = model.predict(loaded, heatmap=True)
    identity = ModelIdentity(model.name, model.card.version, model.card.sha256 or "")
    header = pydicom.dcmread(path, stop_before_pixels=True)
    return source, prediction, identity, structured_report(header, prediction, identity), secondary_capture(header, picture(loaded.pixels, prediction, identity), identity)


def _roundtrip(ds: pydicom.Dataset) -> pydicom.Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def test_structured_report_holds_the_result_in_the_film_study_referencing_it(tiny_results):
    import highdicom as hd

    source, prediction, identity, sr, _ = tiny_results
    sr = _roundtrip(sr)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34" and sr.Modality == "SR"
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.SeriesInstanceUID != source.SeriesInstanceUID
    assert str(sr.PatientName) == "ZEBEDIAH QUUXWORTH" and sr.PatientID == "ZQ-554433"  # the film's own values, byte for byte
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert evidence.ReferencedSOPInstanceUID == source.SOPInstanceUID
    report = hd.sr.Comprehensive3DSR.from_dataset(sr)
    group = report.content.get_image_measurement_groups()
    assert len(group) == 1
    (source_image,) = group[0].source_images
    assert source_image.referenced_sop_instance_uid == source.SOPInstanceUID
    assert group[0].finding_type.meaning == prediction.label == "striped"
    assert group[0].get_qualitative_evaluations() == []  # refer yes/no only with a site profile
    measured = {m.name.meaning: m.value for m in group[0].get_measurements()}
    assert measured == {f"Probability of {label}": pytest.approx(p, abs=1e-6) for label, p in prediction.probabilities.items()}
    texts = [str(getattr(i, "TextValue", "")) for i in _walk(group[0][0].ContentSequence)]  # TID 4019 algorithm, comments
    assert identity.name in texts and identity.version in texts and f"sha256:{identity.sha256}" in texts
    assert "research use - not a diagnosis" in texts
    assert [t for t in texts if t.startswith("warning: ")] == [f"warning: {w}" for w in prediction.warnings] and prediction.warnings


def test_secondary_capture_is_the_burned_in_picture_referencing_the_film(tiny_results):
    source, prediction, identity, sr, sc = tiny_results
    sc = _roundtrip(sc)
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and sc.PhotometricInterpretation == "RGB" and sc.BurnedInAnnotation == "YES"
    assert sc.StudyInstanceUID == source.StudyInstanceUID and sc.SeriesInstanceUID not in (source.SeriesInstanceUID, sr.SeriesInstanceUID)
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert str(sc.PatientName) == "ZEBEDIAH QUUXWORTH" and list(sc.PatientOrientation) == ["L", "F"]
    pixels = sc.pixel_array
    assert pixels.shape[1] == 768 and pixels.shape[0] > 384  # the 96x48 film enlarged to 768x384, the text band below
    band = pixels[384:]
    assert band.max() == 255 and (band[..., 0] > band[..., 2]).any()  # white text and the orange notice
    heat = pixels[:384].astype(int)
    assert np.abs(heat[..., 0] - heat[..., 2]).max() > 50  # the heatmap's colours over the gray film


def test_result_uids_follow_the_source_and_the_model(tiny_results):
    from edgecxr.clinic.results import ModelIdentity, structured_report

    source, prediction, identity, sr, sc = tiny_results
    header = wrap(toy_u8(2, size=(48, 96)), "A^B", "1")
    header.SOPInstanceUID, header.StudyInstanceUID, header.SeriesInstanceUID = source.SOPInstanceUID, source.StudyInstanceUID, source.SeriesInstanceUID
    again = structured_report(header, prediction, identity)
    assert again.SOPInstanceUID == sr.SOPInstanceUID and again.SeriesInstanceUID == sr.SeriesInstanceUID
    other = structured_report(header, prediction, ModelIdentity(identity.name, identity.version, "0" * 64))
    assert other.SOPInstanceUID != sr.SOPInstanceUID
    assert len({sr.SOPInstanceUID, sc.SOPInstanceUID, sr.SeriesInstanceUID, sc.SeriesInstanceUID}) == 4


def test_predict_imports_neither_pynetdicom_nor_highdicom(tiny_models, tmp_path):
    image = write_png(tmp_path / "x.png", 1)
    code = (
        "import sys\nfrom edgecxr.cli import main\n"
        f"sys.argv = ['edgecxr', 'predict', '--json', '--model', {str(tiny_models['int8'])!r}, {str(image)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pynetdicom', 'highdicom') or m.startswith('edgecxr.clinic.dicomnet')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    first, last = done.stdout.splitlines()[0], done.stdout.splitlines()[-1]
    assert json.loads(first)["label"] == "bright"
    assert last == "[]"


def _walk(items):
    for item in items:
        yield item
        yield from _walk(getattr(item, "ContentSequence", []))


def test_with_a_site_profile_the_worker_puts_refer_in_the_report_the_picture_and_the_audit(tiny_models, tmp_path):
    from edgecxr.clinic.results import ModelIdentity, text_lines
    from edgecxr.clinic.service import Service
    from edgecxr.core.card import read_card

    card = read_card(tiny_models["int8"])
    profile = tmp_path / "site.json"
    profile.write_text(json.dumps({
        "kind": "edgecxr site profile", "schema_version": 1, "model": {"name": card.name, "sha256": card.sha256},
        "temperature": {"value": 1.0}, "operating_points": [{"for": "striped", "threshold": 0.5, "target_sensitivity": 0.9}],
    }))
    service = Service(tmp_path / "store", load_model(tiny_models["int8"], site=profile), None, "EDGECXR", 1.0)
    films = {cls: wrap(toy_u8(cls, size=(96, 96)), "Refer^Test", f"RT-{cls}") for cls in (0, 2)}  # dark: no refer; striped: refer
    for ds in films.values():
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        service.store.write_bytes(service.store.path("received", service.store.key(ds.SOPInstanceUID), ".dcm"), buffer.getvalue())
    service.start()
    service.stop()
    striped = load_model(tiny_models["int8"], site=profile).predict(toy_u8(2, size=(96, 96)))
    assert text_lines(striped, ModelIdentity("tiny", "1", "x"))[2:] == ["refer: YES (site threshold striped >= 0.500)", "RESEARCH USE - NOT A DIAGNOSIS"]
    classified = {r["key"]: r for r in read_lines(tmp_path / "store" / "audit.jsonl") if r["event"] == "classified"}
    for cls, ds in films.items():
        key = service.store.key(ds.SOPInstanceUID)
        assert classified[key]["refer"] is (cls == 2) and classified[key]["label"] == ("striped" if cls == 2 else "dark")
        assert "abnormal_score" in classified[key] and classified[key]["abnormal_score"] is None  # no Normal label
        sr = pydicom.dcmread(tmp_path / "store" / "results" / f"{key}.sr.dcm")
        refer = [i for i in _walk(sr.ContentSequence) if getattr(i, "ConceptNameCodeSequence", [None])[0] is not None
                 and i.ConceptNameCodeSequence[0].CodeValue == "REFER"]
        assert [r.ConceptCodeSequence[0].CodeMeaning for r in refer] == ["Yes" if cls == 2 else "No"]
        texts = [str(getattr(i, "TextValue", "")) for i in _walk(sr.ContentSequence)]
        assert "refer when the striped score is at or above 0.5000 (chosen for sensitivity 0.9)" in texts
    assert service.counts() == {"received": 2, "pending": 0, "classified": 2, "failed": 0, "to_send": 0}


def test_the_writer_registry_names_each_result_file_once_and_what_goes_to_the_pacs():
    from pydicom.uid import Comprehensive3DSRStorage, SecondaryCaptureImageStorage

    from edgecxr.clinic.writers import WRITERS, sent, sop_classes, writer_of

    assert len({w.suffix for w in WRITERS}) == len(WRITERS)
    for dicom in (True, False):  # one picture for the page whatever the film
        assert sum(w.picture_png is not None for w in WRITERS if w.dicom == dicom) == 1
    assert sent(["k.sr.dcm", "k.sc.dcm", "k.png", "k.txt"]) == ["k.sr.dcm", "k.sc.dcm"]
    assert sop_classes() == [Comprehensive3DSRStorage, SecondaryCaptureImageStorage]
    assert writer_of("k.txt") is None and writer_of("k.sc.dcm") is WRITERS[1]


def test_a_result_record_reads_back_as_written_and_its_audit_line_holds_no_file_or_probabilities(tiny_models):
    from edgecxr.clinic.record import ResultRecord
    from edgecxr.clinic.results import ModelIdentity

    prediction = load_model(tiny_models["int8"]).predict(toy_u8(1))
    record = ResultRecord.of("k" * 64, prediction, ModelIdentity("tiny", "1.0.0", "a" * 64), ["k.png"])
    assert ResultRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    assert record.audit() == {"model_sha256": "a" * 64, "label": prediction.label, "abnormal_score": None, "warnings": prediction.warnings}
    line = record.line("ward/film.png")
    assert line["file"] == "ward/film.png" and line["probabilities"] == record.prediction["probabilities"] and "key" not in line
    assert line["results"] == ["k.png"] and line["model_version"] == "1.0.0"


def test_secondary_capture_says_which_class_a_normal_calls_map_shows():
    from edgecxr.clinic.results import ModelIdentity, text_lines
    from edgecxr.core.model import Prediction

    normal = Prediction("Normal", {"COVID": 0.1, "Normal": 0.65, "Pneumonia": 0.25}, 1.0, "m", heatmap=np.ones((4, 4), np.float32), heatmap_label="Pneumonia")
    assert "heatmap: evidence for Pneumonia, the most likely abnormal class" in text_lines(normal, ModelIdentity("m", "1", "x"))
    covid = Prediction("COVID", {"COVID": 0.7, "Normal": 0.2, "Pneumonia": 0.1}, 1.0, "m", heatmap=np.ones((4, 4), np.float32), heatmap_label="COVID")
    assert not any(line.startswith("heatmap:") for line in text_lines(covid, ModelIdentity("m", "1", "x")))
