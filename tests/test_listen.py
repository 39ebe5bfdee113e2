"""``edgecxr listen`` as a process, with pynetdicom's SCU sending films and a real Orthanc receiving the results.

Every film is a made-up patient's; the PHI checks look for their names and IDs in everything
edgecxr writes (audit log, stdout, stderr, file names).
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
import threading

import cv2
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEGLossless, RLELossless

from clinic import CT, DX, Listener, Orthanc, events, free_port, send, wait_for, wrap
from conftest import child_env, toy_u8
from edgecxr.clinic.instances import transfer_syntaxes

pytestmark = pytest.mark.clinic

PATIENTS = [("Quuxworth^Zebediah", "ZQ-100001"), ("PLIMSOLL ARAMINTA", "AP-200002"), ("Vandersnoot^Ottoline^B", "OV-300003")]


def phi_free(listener: Listener, secrets: list[str]) -> None:
    """None of ``secrets`` in the audit log, stdout, stderr or any file name of the store (nor any source UID in clear)."""
    texts = {"audit": (listener.store / "audit.jsonl").read_text(), "stdout": listener.out.read_text(), "stderr": listener.err.read_text()}
    names = "\n".join(str(p.relative_to(listener.store)) for p in listener.store.rglob("*"))
    for secret in secrets:
        for where, text in {**texts, "file names": names}.items():
            assert secret not in text, f"{secret!r} appears in {where}"
            for part in secret.replace("^", " ").split():
                assert len(part) < 4 or part not in text, f"{part!r} appears in {where}"


def study_of(orthanc: Orthanc, study_uid: str) -> list[pydicom.Dataset]:
    """The instances Orthanc holds in the study ``study_uid``, read back from their files."""
    found = orthanc.post("/tools/lookup", study_uid)
    (study,) = [f for f in found if f["Type"] == "Study"]
    instances = orthanc.get(f"/studies/{study['ID']}/instances")
    return [pydicom.dcmread(io.BytesIO(orthanc.get(f"/instances/{i['ID']}/file"))) for i in instances]


@pytest.fixture()
def listen():
    """Start ``Listener(store, port, *args)``; every listener a test started is killed at its end if still running."""
    started: list[Listener] = []

    def start(store, port, *args):
        started.append(Listener(store, port, *args).start())
        return started[-1]

    yield start
    for listener in started:
        listener.close()


@pytest.fixture()
def orthanc(tmp_path):
    server = Orthanc(tmp_path / "orthanc", edgecxr_port=free_port())
    yield server.start()
    server.stop()


@pytest.mark.slow
def test_films_go_through_edgecxr_into_orthanc_as_sr_and_sc_in_their_study(tmp_path, listen, orthanc, shared_data):
    films = [sorted((shared_data / "cxr3" / "test" / label).glob("*.png"))[3] for label in ("COVID", "Normal", "Pneumonia")]
    listener = listen(tmp_path / "store", orthanc.edgecxr_port, "--forward", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}")
    from pynetdicom import AE, VerificationPresentationContexts

    ae = AE(ae_title="TESTSCU")
    ae.requested_contexts = VerificationPresentationContexts
    assoc = ae.associate("127.0.0.1", listener.port, ae_title="EDGECXR")
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    assert orthanc.post("/modalities/edgecxr/echo", {}) == {}  # edgecxr as a destination of the PACS: README's set-up

    sources = [wrap(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), name, pid) for f, (name, pid) in zip(films, PATIENTS)]
    assert send(listener.port, sources) == [0x0000] * 3
    wait_for(lambda: len(events(listener.audit(), "sent")) == 3, 120, "three results sent to Orthanc")

    predicted = subprocess.run([sys.executable, "-m", "edgecxr", "predict", "--json", *map(str, films)], capture_output=True, text=True, env=child_env(), timeout=120)
    labels = [json.loads(line)["label"] for line in predicted.stdout.splitlines()]
    for source, label in zip(sources, labels):
        results = {str(ds.Modality): ds for ds in study_of(orthanc, source.StudyInstanceUID)}
        assert set(results) == {"SR", "OT"}  # the Structured Report and the Secondary Capture, no more
        sr, sc = results["SR"], results["OT"]
        assert str(sr.PatientName) == str(source.PatientName) and sr.PatientID == source.PatientID
        evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
        assert evidence.ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        findings = [i for i in _walk(sr.ContentSequence) if getattr(i, "ValueType", "") == "CODE" and i.ConceptNameCodeSequence[0].CodeMeaning == "Finding"]
        assert [f.ConceptCodeSequence[0].CodeMeaning for f in findings] == [label]
    # The README's Orthanc set-up: a film stored in Orthanc is routed to edgecxr and its results come back into its study.
    routed = wrap(cv2.imread(str(films[0]), cv2.IMREAD_GRAYSCALE), "Routed^Rosalind", "RR-400004")
    buffer = io.BytesIO()
    routed.save_as(buffer, enforce_file_format=True)
    orthanc.post("/instances", buffer.getvalue())
    wait_for(lambda: listener.key(routed.SOPInstanceUID) in events(listener.audit(), "sent"), 120, "the routed film's results sent back")
    wait_for(lambda: len(study_of(orthanc, routed.StudyInstanceUID)) == 3, 30, "film, SR and SC in the routed film's study")
    assert sorted(str(ds.Modality) for ds in study_of(orthanc, routed.StudyInstanceUID)) == ["DX", "OT", "SR"]
    sources.append(routed)
    labels.append(labels[0])

    audit = listener.audit()
    classified = {r["key"]: r for r in audit if r["event"] == "classified"}
    assert sorted(classified) == sorted(listener.key(s.SOPInstanceUID) for s in sources)
    assert sorted(r["label"] for r in classified.values()) == sorted(labels)
    assert all(len(r["model_sha256"]) == 64 and 0 <= r["abnormal_score"] <= 1 for r in classified.values())
    assert listener.terminate() == 0
    identifiers = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")
    phi_free(listener, [str(s.get(keyword)) for s in sources for keyword in identifiers])


def _toy_film(i: int, size: int = 64) -> pydicom.Dataset:
    return wrap(toy_u8(i % 3, seed=i, size=(size, size)), f"Toy^Patient{i:04d}", f"TP-{i:06d}")


@pytest.mark.slow
def test_kill_9_mid_batch_then_restart_classifies_and_sends_every_acknowledged_film_once(tmp_path, listen, orthanc, tiny_models):
    forward = ("--forward", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}", "--model", str(tiny_models["int8"]))
    listener = listen(tmp_path / "store", free_port(), *forward)
    films = [_toy_film(i, size=512) for i in range(40)]  # 512 px: each Secondary Capture takes a while, so work is pending at the kill
    acknowledged: list[str] = []
    from pynetdicom import AE

    ae = AE(ae_title="TESTSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 180  # as send(): a loaded machine answers slowly
    ae.add_requested_context(DX)
    assoc = ae.associate("127.0.0.1", listener.port, ae_title="EDGECXR")
    for ds in films:
        status = assoc.send_c_store(ds) if assoc.is_established else None
        if not status or "Status" not in status:  # the listener is gone
            break
        assert status.Status == 0x0000
        acknowledged.append(listener.key(ds.SOPInstanceUID))
        if len(acknowledged) == 25:
            listener.kill()
    assert len(acknowledged) == 25
    assert len(events(listener.audit(), "classified")) < 25  # the kill left work behind
    listen(tmp_path / "store", listener.port, *forward)
    wait_for(lambda: set(acknowledged) <= set(events(listener.audit(), "sent")), 120, "every acknowledged film's results sent")
    audit = listener.audit()
    classified, sent = events(audit, "classified"), events(audit, "sent")
    assert len(classified) == len(set(classified)) and set(acknowledged) <= set(classified)  # once each
    assert len(sent) == len(set(sent)) and set(sent) == set(classified)
    assert len(orthanc.instances()) == 2 * len(classified)  # one SR and one SC each, none twice
    for key in acknowledged:
        record = json.loads((tmp_path / "store" / "classified" / f"{key}.json").read_text())
        assert record["results"] == [f"{key}.sr.dcm", f"{key}.sc.dcm"]


@pytest.mark.slow
def test_results_wait_on_disk_while_the_pacs_is_down_and_arrive_when_it_is_up(tmp_path, listen, tiny_models):
    orthanc = Orthanc(tmp_path / "orthanc")  # not started yet: its DICOM port refuses connections
    listener = listen(tmp_path / "store", free_port(), "--forward", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}", "--retry", "0.2",
                        "--model", str(tiny_models["int8"]))
    films = [_toy_film(i) for i in range(3)]
    assert send(listener.port, films) == [0x0000] * 3
    keys = [listener.key(ds.SOPInstanceUID) for ds in films]

    def failed_twice() -> bool:
        failures = [r["key"] for r in listener.audit() if r["event"] == "failed" and r["stage"] == "send"]
        return all(failures.count(k) >= 2 for k in keys)

    wait_for(failed_twice, 60, "each result's send to fail twice")
    assert sorted(p.stem for p in (tmp_path / "store" / "outbox").iterdir()) == sorted(keys)
    assert events(listener.audit(), "sent") == []
    orthanc.start()
    try:
        wait_for(lambda: sorted(events(listener.audit(), "sent")) == sorted(keys), 60, "the queued results to be delivered")
        assert len(orthanc.instances()) == 6
        assert list((tmp_path / "store" / "outbox").iterdir()) == []
        failure = next(r for r in listener.audit() if r["event"] == "failed")
        assert failure["reason"].startswith(f"association with ORTHANC@127.0.0.1:{orthanc.dicom_port} not established")
        assert listener.terminate() == 0
    finally:
        orthanc.stop()


def test_malformed_films_are_refused_with_their_status_and_the_receiver_keeps_going(tmp_path, listen, tiny_models):
    listener = listen(tmp_path / "store", free_port(), "--model", str(tiny_models["int8"]))
    no_pixels, huge, truncated, corrupt_rle, good = (_toy_film(i) for i in range(5))
    del no_pixels.PixelData
    huge.Rows = huge.Columns = 60000
    truncated.PixelData = truncated.PixelData[:10]
    corrupt_rle.file_meta.TransferSyntaxUID = RLELossless
    corrupt_rle.PixelData = encapsulate([b"\x01\x00\x00\x00" + b"\x00" * 60 + b"not rle at all"])
    assert send(listener.port, [no_pixels, huge, truncated]) == [0xA900, 0xA900, 0xA900]  # never acceptable: none is 0xA700 (retry)
    from pynetdicom import AE

    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(DX, RLELossless)
    assoc = ae.associate("127.0.0.1", listener.port, ae_title="EDGECXR")
    assert assoc.send_c_store(corrupt_rle).Status == 0x0000  # the header is fine: stored, then it fails to decode
    assoc.release()
    for syntax, cls in ((ExplicitVRLittleEndian, CT), (JPEGLossless, DX)):  # a class we do not take; a syntax we cannot decode
        assert syntax == "1.2.840.10008.1.2.1" or syntax not in transfer_syntaxes()
        ae = AE(ae_title="TESTSCU")
        ae.add_requested_context(cls, syntax)
        assoc = ae.associate("127.0.0.1", listener.port, ae_title="EDGECXR")
        assert not assoc.is_established  # pynetdicom's SCU aborts an association without an accepted context
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(DX)
    assert ae.associate("127.0.0.1", listener.port, ae_title="NOTEDGECXR").is_rejected  # the called AE title must be ours
    assert send(listener.port, [good, good]) == [0x0000, 0x0000]  # the same instance twice: acknowledged, classified once
    wait_for(lambda: len(events(listener.audit(), "classified")) == 1 and len(events(listener.audit(), "failed")) == 1, 60, "the good film classified")
    audit = listener.audit()
    rejected = [(r["key"], r.get("status"), r["reason"]) for r in audit if r["event"] == "rejected"]
    assert rejected == [
        (listener.key(no_pixels.SOPInstanceUID), "0xA900", "the dataset has no pixel data"),
        (listener.key(huge.SOPInstanceUID), "0xA900", "the header claims 60000x60000 pixels, more than 64,000,000; refusing to decode"),
        (listener.key(truncated.SOPInstanceUID), "0xA900", "the pixel data holds 10 bytes, fewer than a 64x64 image needs"),
        (None, None, "not accepted: CT Image Storage (in the transfer syntaxes proposed)"),
        (None, None, "not accepted: Digital X-Ray Image Storage - For Presentation (in the transfer syntaxes proposed)"),
        (None, None, "association rejected: the called AE title is not ours"),
    ]
    (failed,) = [r for r in audit if r["event"] == "failed"]
    assert failed["key"] == listener.key(corrupt_rle.SOPInstanceUID) and failed["stage"] == "classify"
    assert failed["reason"] == "cannot decode DICOM pixel data (RLE Lossless); the compressed pixel data is corrupt or incomplete"
    assert failed["results"] == [f"{failed['key']}.sr.dcm"]  # a "not analysable" report, so the PACS hears of it
    assert events(audit, "classified") == [listener.key(good.SOPInstanceUID)]
    assert [r.get("duplicate") for r in audit if r["event"] == "received" and r["key"] == listener.key(good.SOPInstanceUID)] == [None, True]
    assert listener.terminate() == 0
    phi_free(listener, [f"Toy^Patient{i:04d}" for i in range(5)] + [f"TP-{i:06d}" for i in range(5)])


@pytest.mark.slow
def test_four_concurrent_associations_of_fifty_films_give_two_hundred_results_once_each(tmp_path, listen, tiny_models):
    listener = listen(tmp_path / "store", free_port(), "--model", str(tiny_models["int8"]))
    batches = [[_toy_film(100 * b + i) for i in range(50)] for b in range(4)]
    statuses: dict[int, list[int | None]] = {}
    threads = [threading.Thread(target=lambda b=b: statuses.__setitem__(b, send(listener.port, batches[b]))) for b in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [statuses[b] for b in range(4)] == [[0x0000] * 50] * 4
    assert listener.terminate() == 0  # SIGTERM right away: the queued films are classified before it exits
    audit = listener.audit()
    expected = sorted(listener.key(ds.SOPInstanceUID) for batch in batches for ds in batch)
    assert sorted(events(audit, "received")) == expected
    assert sorted(events(audit, "classified")) == expected
    results = [json.loads(line) for line in (tmp_path / "store" / "results.jsonl").read_text().splitlines()]
    assert sorted(r["key"] for r in results) == expected
    assert len(list((tmp_path / "store" / "results").iterdir())) == 400


def _walk(items):
    for item in items:
        yield item
        yield from _walk(getattr(item, "ContentSequence", []))


def test_a_stopped_listener_starts_again_on_its_store_and_refuses_a_second_one(tmp_path, listen, tiny_models):
    store = tmp_path / "store"
    first = listen(store, free_port(), "--model", str(tiny_models["int8"]))
    second = subprocess.run([sys.executable, "-m", "edgecxr", "listen", "--port", str(free_port()), "--store", str(store), "--model", str(tiny_models["int8"])],
                            capture_output=True, text=True, env=child_env(), timeout=120)
    assert second.returncode == 2
    assert second.stderr.strip().splitlines()[-1] == f"error: --store: {store}: the store is in use by another edgecxr process"
    assert first.terminate() == 0
    bad = subprocess.run([sys.executable, "-m", "edgecxr", "listen", "--store", str(store), "--forward", "PACS@host"], capture_output=True, text=True, env=child_env(), timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --forward: 'PACS@host' is not AET@host:port")


def test_a_taken_port_is_one_error_line_and_never_said_to_be_listened_on(tmp_path, tiny_models):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "edgecxr", "listen", "--host", "127.0.0.1", "--port", str(port), "--store", str(tmp_path / "store"),
                               "--model", str(tiny_models["int8"])], capture_output=True, text=True, env=child_env(), timeout=120)
    assert done.returncode == 2 and "listening as" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: --port {port}: cannot listen (")
