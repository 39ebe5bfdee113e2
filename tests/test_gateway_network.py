"""``edgecxr listen`` from outside, as a PACS engineer tests it: DCMTK's echoscu and storescu, a real Orthanc, dciodvfy.

One listener with a low association limit and idle timeout takes films from a default storescu
(which proposes every storage class it knows: one audit line for all the refused ones), a film
whose pixel data is corrupt (acknowledged, then answered with a "not analysable" report), a film
sent again under the same UID with other pixels (a new instance with a warning), and a JPEG
Lossless SV1 film (decoded with imagecodecs; one cut short is reported corrupt), a JPEG Lossless
film of another predictor (refused at association, said in one line), a hand film and a lateral view
(acknowledged, not classified: a "not analysable" report saying they are outside the intended use). Idle connections are dropped with
a reason. The results land in Orthanc in one SR and one SC series per study, and every result
type passes dciodvfy without an error. A second listener forwards under a wrong called AE title:
Orthanc rejects it for good, and edgecxr says so once and stops retrying.
"""
from __future__ import annotations

import io
import socket
import subprocess
import time

import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless, generate_uid

from clinic import CR, DX, Listener, Orthanc, dcmtk, dicom_errors, events, free_port, make_certificates, send, wait_for, wrap
from conftest import toy_u8

pytestmark = [pytest.mark.clinic, pytest.mark.slow]


def content_texts(ds) -> list[str]:
    out = []
    for item in getattr(ds, "ContentSequence", []):
        if getattr(item, "ValueType", "") == "TEXT":
            out.append(str(item.TextValue))
        if getattr(item, "ValueType", "") == "CODE":
            out.append(str(item.ConceptCodeSequence[0].CodeMeaning))
        out += content_texts(item)
    return out


@pytest.fixture()
def orthanc(tmp_path):
    server = Orthanc(tmp_path / "orthanc")
    yield server.start()
    server.stop()


def test_from_outside_with_dcmtk_and_orthanc(tmp_path, orthanc, tiny_models):
    forward = ("--forward", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}", "--retry", "0.2", "--model", str(tiny_models["int8"]))
    listener = Listener(tmp_path / "store", free_port(), *forward, "--max-associations", "3", "--idle-timeout", "3").start()
    try:
        port = str(listener.port)
        assert subprocess.run([dcmtk("echoscu"), "-aec", "EDGECXR", "127.0.0.1", port], capture_output=True, timeout=60).returncode == 0

        study = generate_uid()
        good = wrap(toy_u8(2, seed=1, size=(1500, 1200)), "Outside^Olwen", "OO-1001", study_uid=study)  # larger than the SC may be
        good.IssuerOfPatientID, good.StudyDescription, good.BodyPartExamined = "MADE-UP HOSPITAL", "Chest PA", "CHEST"
        good.ViewPosition, good.PatientAge = "PA", "045Y"
        good.save_as(tmp_path / "good.dcm", enforce_file_format=True)
        sent = subprocess.run([dcmtk("storescu"), "-aec", "EDGECXR", "127.0.0.1", port, str(tmp_path / "good.dcm")], capture_output=True, text=True, timeout=120)
        assert sent.returncode == 0, sent.stderr
        (refused,) = [r for r in listener.audit() if r["event"] == "rejected"]  # one line for the association, not one per class
        assert refused["refused_contexts"] > 20 and "and" in refused["reason"] and refused["calling_ae"] == "STORESCU"

        corrupt = wrap(toy_u8(0, seed=2, size=(64, 64)), "Outside^Olwen", "OO-1001", study_uid=study)
        corrupt.file_meta.TransferSyntaxUID = RLELossless
        corrupt.PixelData = encapsulate([b"\x01\x00\x00\x00" + b"\x00" * 60 + b"not rle at all"])
        changed = wrap(toy_u8(1, seed=3, size=(64, 64)), "Outside^Olwen", "OO-1001", study_uid=study)
        changed.SOPInstanceUID = changed.file_meta.MediaStorageSOPInstanceUID = good.SOPInstanceUID  # the same UID, other pixels
        from pynetdicom import AE

        ae = AE(ae_title="TESTSCU")
        ae.add_requested_context(DX, RLELossless)
        assoc = ae.associate("127.0.0.1", listener.port, ae_title="EDGECXR")
        assert assoc.send_c_store(corrupt).Status == 0x0000  # a fine header: acknowledged, then it fails to decode
        assoc.release()
        assert send(listener.port, [good, changed]) == [0x0000, 0x0000]  # a resend (harmless) and a changed film
        hand, lateral = (wrap(toy_u8(1, seed=6 + i, size=(64, 64)), "Outside^Olwen", "OO-1001", study_uid=study) for i in range(2))
        hand.BodyPartExamined, lateral.BodyPartExamined, lateral.ViewPosition = "HAND", "CHEST", "LL"
        assert send(listener.port, [hand, lateral]) == [0x0000, 0x0000]  # acknowledged: outside the intended use is said in a result
        huge = wrap(toy_u8(0, size=(64, 64)), "Outside^Olwen", "OO-1001")
        huge.Rows = huge.Columns = 60000
        assert send(listener.port, [huge]) == [0xA900]  # never acceptable: not 0xA700, which senders retry

        lossless = tmp_path / "sv1.dcm"  # JPEG Lossless SV1, as many CR/DX archives hold films: DCMTK compresses the 12-bit film
        sixteen = wrap((toy_u8(2, seed=9, size=(96, 96)).astype("uint16") * 16), "Outside^Olwen", "OO-1001", study_uid=study)
        sixteen.BitsStored, sixteen.HighBit = 12, 11
        sixteen.save_as(tmp_path / "twelve.dcm", enforce_file_format=True)
        assert subprocess.run([dcmtk("dcmcjpeg"), "--encode-lossless-sv1", str(tmp_path / "twelve.dcm"), str(lossless)], capture_output=True, timeout=120).returncode == 0
        sv1 = pydicom.dcmread(lossless)
        assert str(sv1.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.70"
        cut = pydicom.dcmread(lossless)
        cut.SOPInstanceUID = cut.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        frame = sv1.PixelData[: len(sv1.PixelData) // 2]
        cut.PixelData = encapsulate([frame[frame.index(b"\xff\xd8") :]])  # the frame cut short: no end-of-image marker
        offered = AE(ae_title="TESTSCU")
        offered.add_requested_context(DX, "1.2.840.10008.1.2.4.70")  # SV1 only: taken (imagecodecs' decoder)
        offered.add_requested_context(CR, "1.2.840.10008.1.2.4.57")  # JPEG Lossless, other predictors: no decoder, refused
        for _ in range(20):  # the associations just released may still count against the limit for a moment
            assoc = offered.associate("127.0.0.1", listener.port, ae_title="EDGECXR")
            if not assoc.is_rejected:
                break
            time.sleep(0.5)
        assert [assoc.send_c_store(ds).Status for ds in (sv1, cut)] == [0x0000, 0x0000]
        assoc.release()

        idle = [socket.create_connection(("127.0.0.1", listener.port)) for _ in range(3)]  # three connections that say nothing
        time.sleep(0.5)
        busy = subprocess.run([dcmtk("echoscu"), "-aec", "EDGECXR", "127.0.0.1", port], capture_output=True, text=True, timeout=60)
        assert busy.returncode != 0  # the limit is reached
        wait_for(lambda: len(events(listener.audit(), "dropped")) == 3, 30, "the idle connections dropped")
        assert subprocess.run([dcmtk("echoscu"), "-aec", "EDGECXR", "127.0.0.1", port], capture_output=True, timeout=60).returncode == 0
        for s in idle:
            s.close()
        quiet = AE(ae_title="QUIETSCU")
        quiet.add_requested_context("1.2.840.10008.1.1")
        silent = quiet.associate("127.0.0.1", listener.port, ae_title="EDGECXR")
        assert silent.is_established
        wait_for(lambda: not silent.is_established, 30, "the silent association aborted by the listener")

        named = (("good", good), ("corrupt", corrupt), ("hand", hand), ("lateral", lateral), ("sv1", sv1), ("cut", cut))
        keys = {name: listener.key(ds.SOPInstanceUID) for name, ds in named}
        wait_for(lambda: len(events(listener.audit(), "sent")) == 7, 120, "the results of seven films sent to Orthanc")
        audit = listener.audit()
        reasons = [r["reason"] for r in audit if r["event"] in ("rejected", "dropped")]
        assert "not accepted: Computed Radiography Image Storage (in the transfer syntaxes proposed)" in reasons, "\n".join(reasons)  # JPEG Lossless, not SV1
        assert "association rejected: 3 associations already open (--max-associations); the sender may retry" in reasons
        assert reasons.count("connection closed: no association request in 3 s (--idle-timeout)") == 3
        assert "association aborted: the peer said nothing for 3 s (--idle-timeout)" in reasons
        (warning,) = [r for r in audit if r["event"] == "warning"]
        assert warning["key"] not in keys.values() and warning["key"] in events(audit, "classified")
        failed = {r["key"]: r for r in audit if r["event"] == "failed"}
        assert sorted(failed) == sorted([keys["corrupt"], keys["hand"], keys["lateral"], keys["cut"]])
        assert failed[keys["cut"]]["reason"].startswith("cannot decode DICOM pixel data (JPEG Lossless, Non-Hierarchical, First-Order Prediction")
        assert failed[keys["cut"]]["reason"].endswith("); the compressed pixel data is corrupt or incomplete")
        assert failed[keys["corrupt"]]["reason"].startswith("cannot decode DICOM pixel data (RLE Lossless); the compressed pixel data is corrupt")
        assert (failed[keys["hand"]]["stage"], failed[keys["hand"]]["reason"]) == ("route", "outside the model's intended use: the body part is not CHEST")
        assert failed[keys["lateral"]]["reason"] == "outside the model's intended use: the view is not PA or AP"
        classified = {r["key"]: r for r in audit if r["event"] == "classified"}
        assert keys["sv1"] in classified
        assert classified[keys["good"]]["warnings"] == [] and "the header names no view; analysed as PA/AP" in classified[warning["key"]]["warnings"]
        assert [r.get("duplicate") for r in audit if r["event"] == "received" and r["key"] == keys["good"]] == [None, True]

        found = orthanc.post("/tools/lookup", study)
        (entry,) = [f for f in found if f["Type"] == "Study"]
        results = [pydicom.dcmread(io.BytesIO(orthanc.get(f"/instances/{i['ID']}/file"))) for i in orthanc.get(f"/studies/{entry['ID']}/instances")]
        by_series: dict[int, list] = {}
        for ds in results:
            by_series.setdefault(int(ds.SeriesNumber), []).append(ds)
        assert {n: sorted(str(d.Modality) for d in v) for n, v in by_series.items()} == {9901: ["SR"] * 7, 9902: ["OT"] * 3}
        assert len({d.InstanceNumber for d in by_series[9901]}) == 7
        not_analysable = [d for d in by_series[9901] if "Not analysable" in content_texts(d)]
        said = sorted(t for d in not_analysable for t in content_texts(d) if t.startswith("not analysable: "))
        assert len(said) == 4 and all(t.startswith("not analysable: cannot decode DICOM pixel data") for t in said[:2])
        outside = "not analysable: outside the model's intended use:"
        assert said[2:] == [f"{outside} the body part is not CHEST", f"{outside} the view is not PA or AP"]
        sc = next(d for d in by_series[9902] if d.SourceImageSequence[0].ReferencedSOPInstanceUID == good.SOPInstanceUID)
        assert max(sc.Rows, sc.Columns) <= 1024
        assert (sc.IssuerOfPatientID, sc.StudyDescription, sc.BodyPartExamined) == ("MADE-UP HOSPITAL", "Chest PA", "CHEST")
        for i, ds in enumerate(results):
            path = tmp_path / f"result{i}.dcm"
            ds.save_as(path)
            assert dicom_errors(path) == [], (ds.Modality, dicom_errors(path))
        assert listener.terminate() == 0
    finally:
        listener.close()


def test_a_forward_rejected_for_good_is_said_once_and_not_retried(tmp_path, orthanc, tiny_models):
    listener = Listener(tmp_path / "store", free_port(), "--forward", f"NOTORTHANC@127.0.0.1:{orthanc.dicom_port}", "--retry", "0.2",
                        "--model", str(tiny_models["int8"])).start()
    try:
        assert send(listener.port, [wrap(toy_u8(0, seed=5, size=(64, 64)), "Wrong^Title", "WT-1")]) == [0x0000]
        wait_for(lambda: any(r["event"] == "failed" for r in listener.audit()), 60, "the send to fail")
        time.sleep(2.0)  # ten retry periods
        failures = [r for r in listener.audit() if r["event"] == "failed"]
        assert len(failures) == 1 and failures[0]["permanent"] is True and failures[0]["stage"] == "send"
        assert failures[0]["reason"].startswith(f"NOTORTHANC@127.0.0.1:{orthanc.dicom_port} rejected the association for good (")
        assert orthanc.instances() == []
        assert listener.terminate() == 0
    finally:
        listener.close()


def test_dicom_tls_with_a_self_made_certificate(tmp_path, tiny_models):
    import ssl

    from pynetdicom import AE

    pem = make_certificates(tmp_path)
    listener = Listener(tmp_path / "store", free_port(), "--model", str(tiny_models["int8"]),
                        "--tls-cert", pem["server.crt"], "--tls-key", pem["server.key"], "--tls-ca", pem["ca.crt"]).start()
    try:
        wait_for(lambda: "(TLS)" in listener.err.read_text(), 30, "listen to say it listens with TLS")  # said just after the port opens

        def echo(context: ssl.SSLContext | None) -> bool:
            ae = AE(ae_title="TESTSCU")
            ae.acse_timeout = ae.network_timeout = 10
            ae.add_requested_context("1.2.840.10008.1.1")
            try:
                assoc = ae.associate("127.0.0.1", listener.port, ae_title="EDGECXR", tls_args=(context, "localhost") if context else None)
            except (OSError, ssl.SSLError):
                return False
            ok = assoc.is_established and assoc.send_c_echo().Status == 0x0000
            if assoc.is_established:
                assoc.release()
            return ok

        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=pem["ca.crt"])
        client.load_cert_chain(pem["client.crt"], pem["client.key"])
        assert echo(client)
        assert not echo(None)  # in clear: no association
        anonymous = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=pem["ca.crt"])
        assert not echo(anonymous)  # no client certificate signed by the CA
        tls_echo = subprocess.run([dcmtk("echoscu"), "+tls", pem["client.key"], pem["client.crt"], "+cf", pem["ca.crt"], "-aec", "EDGECXR", "127.0.0.1", str(listener.port)],
                               capture_output=True, text=True, timeout=60)
        assert tls_echo.returncode == 0, tls_echo.stderr
        film = wrap(toy_u8(2, seed=8, size=(64, 64)), "Tls^Tabitha", "TT-1")
        ae = AE(ae_title="TESTSCU")
        ae.add_requested_context(DX)
        assoc = ae.associate("127.0.0.1", listener.port, ae_title="EDGECXR", tls_args=(client, "localhost"))
        assert assoc.send_c_store(film).Status == 0x0000
        assoc.release()
        wait_for(lambda: len(events(listener.audit(), "classified")) == 1, 60, "the film sent over TLS classified")
        assert listener.terminate() == 0
    finally:
        listener.close()
