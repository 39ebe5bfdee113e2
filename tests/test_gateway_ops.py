"""Running the gateway for months: logs rotated and retired without losing state, one status line, TLS to the PACS, UID root.

- The audit and results logs begin a new file at ``--log-max-mb`` and retire files older than
  ``--keep-days``; every film acknowledged, also one still pending when its lines are retired, is
  classified once, and a restart writes no line again (the retired lines' keys are kept).
- ``listen --check --json`` gives the queue of a worker that is not running and, once a film
  fails, the last error.
- ``--forward-tls-ca`` sends the results over DICOM TLS to a pynetdicom Storage SCP with a
  self-made certificate; a PACS whose certificate another CA signed is refused for good, once,
  with the reason, and a PACS that speaks no TLS is retried.
- ``--uid-root`` puts the results (SR, SC, not-analysable SR) under the site's root, and they
  still pass dciodvfy; a bad root is one error line.
"""
from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import PYDICOM_ROOT_UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from clinic import Listener, dicom_errors, events, free_port, make_certificates, send, wait_for, wrap
from conftest import child_env, toy_u8
from edgecxr.clinic import uids
from edgecxr.clinic.journal import STAMP, Journal, Rotation, read_journal, read_keys, rotated_at, segments

pytestmark = pytest.mark.clinic


def dicom_bytes(ds: pydicom.Dataset) -> bytes:
    import io

    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def age(segment: Path, days: float) -> Path:
    """Rename ``segment`` as if it had been rotated ``days`` earlier than its name says."""
    when = datetime.fromtimestamp(rotated_at(segment), timezone.utc) - timedelta(days=days)
    older = segment.with_name(f"{segment.name.rsplit('.', 1)[0]}.{when.strftime(STAMP)}{segment.name.rsplit('.', 1)[1][15:]}")
    return segment.rename(older)


# --- rotation and retention -------------------------------------------------------------------------------------------

def test_a_journal_rotates_at_its_size_and_knows_every_line_after_a_restart(tmp_path):
    path = tmp_path / "audit.jsonl"
    journal = Journal(path, rotation=Rotation(max_bytes=400))
    for i in range(30):
        assert journal.once("received", f"key{i:02d}", sop_class="Digital X-Ray Image Storage - For Presentation")
    parts = segments(path)
    line = len(path.read_text().splitlines()[0]) + 1
    assert len(parts) >= 5 and all(400 <= p.stat().st_size < 400 + line for p in [*parts]) and path.stat().st_size < 400 + line  # one line past at most
    assert [r["key"] for r in read_journal(path)] == [f"key{i:02d}" for i in range(30)]  # nothing lost, in order
    again = Journal(path, rotation=Rotation(max_bytes=400))  # a restart
    assert not again.once("received", "key00") and not again.once("received", "key29")
    assert len(read_journal(path)) == 30


def test_a_file_beside_the_segments_that_is_not_one_is_not_read(tmp_path):
    """An operator's compressed or renamed copy of a rotated log does not stop a journal from opening, nor is it read as a log."""
    path = tmp_path / "audit.jsonl"
    journal = Journal(path, rotation=Rotation(max_bytes=200))
    for i in range(6):
        journal.once("received", f"key{i}")
    kept = segments(path)
    assert kept
    (tmp_path / f"{kept[0].name}.gz").write_bytes(b"\x1f\x8b\x08\x00 not json")
    (tmp_path / "audit.jsonl.1").write_text("{}\n")
    assert segments(path) == kept
    again = Journal(path, rotation=Rotation(max_bytes=200, keep_days=1))  # opening it also retires: a stray name must not stop that
    assert [r["key"] for r in read_journal(path)] == [f"key{i}" for i in range(6)] and not again.once("received", "key0")


def test_retired_segments_are_deleted_but_their_keys_kept_and_a_new_day_begins_a_new_file(tmp_path):
    path = tmp_path / "audit.jsonl"
    journal = Journal(path, rotation=Rotation(max_bytes=300, keep_days=2))
    for i in range(12):
        journal.once("classified", f"k{i:02d}", label="Normal")
    old = segments(path)[:2]
    kept = segments(path)[2:]
    retired = {r["key"] for segment in old for r in json_lines(segment)}
    aged = [age(segment, 3) for segment in old]  # rotated three days ago: past --keep-days 2
    reopened = Journal(path, rotation=Rotation(max_bytes=300, keep_days=2))  # retires at start
    assert not any(p.exists() for p in aged) and all(p.exists() for p in kept)
    pairs, covered = read_keys(tmp_path / "audit.jsonl.keys")
    assert {("classified", k, None) for k in retired} <= pairs and {p.name for p in [*aged, *kept]} <= covered  # the retired ones covered before they went
    assert all(not reopened.once("classified", k) for k in retired)  # never logged again
    assert {r["key"] for r in read_journal(path)} == {f"k{i:02d}" for i in range(12)} - retired

    daily = tmp_path / "results.jsonl"
    daily.write_text(json.dumps({"time": "2020-01-01T10:00:00.000+00:00", "event": "result", "key": "old"}) + "\n")
    Journal(daily, rotation=Rotation(keep_days=5000)).write("result", "new")  # a line of another UTC day: a new file first
    assert [r["key"] for r in json_lines(daily)] == ["new"] and [r["key"] for r in read_journal(daily)] == ["old", "new"]
    with pytest.raises(ValueError, match="keep_days > 0"):
        Rotation(keep_days=0)


def json_lines(path: Path) -> list[dict]:
    from edgecxr.clinic.journal import read_lines

    return read_lines(path)


def reads(monkeypatch) -> list[str]:
    """The names of the journal files :func:`edgecxr.clinic.journal.read_lines` parses from now on."""
    from edgecxr.clinic import journal

    parsed: list[str] = []
    read_lines = journal.read_lines

    def parse(path):
        parsed.append(Path(path).name)
        return read_lines(path)

    monkeypatch.setattr(journal, "read_lines", parse)
    return parsed


def test_a_restart_reads_the_keys_and_the_live_file_never_a_rotated_one(tmp_path, monkeypatch):
    path = tmp_path / "audit.jsonl"
    journal = Journal(path, rotation=Rotation(max_bytes=300))
    for i in range(20):
        assert journal.once("received", f"key{i:02d}") and journal.once("failed", f"key{i:02d}", stage="classify", reason="bad")
    parts = segments(path)
    assert len(parts) >= 5 and set(read_keys(path.with_name("audit.jsonl.keys"))[1]) == {p.name for p in parts}  # each covered as it was rotated
    parsed = reads(monkeypatch)
    again = Journal(path, rotation=Rotation(max_bytes=300))
    assert parsed == ["audit.jsonl"]  # the live file only: the rotated ones are known from the keys
    assert not any(again.once("received", f"key{i:02d}") or again.once("failed", f"key{i:02d}", stage="classify") for i in range(20))
    for part in parts:  # gone (by hand, say): the keys still know their lines
        part.unlink()
    third = Journal(path)
    live = read_lines_of(path)
    assert not any(third.once("received", f"key{i:02d}") or third.once("failed", f"key{i:02d}", stage="classify") for i in range(20))
    assert third.once("failed", "key00", stage="send")  # another stage is another line
    assert read_lines_of(path) == [*live, ("failed", "key00")]


def test_rotated_files_an_earlier_version_left_uncovered_are_read_once_and_then_covered(tmp_path, monkeypatch):
    path = tmp_path / "audit.jsonl"
    old = tmp_path / "audit.jsonl.20250101T000000000Z"  # rotated by hand, as a version before the keys marks did: no keys
    old.write_text("".join(json.dumps({"time": "2025-01-01T00:00:00.000+00:00", "event": "received", "key": f"k{i}"}) + "\n" for i in range(5)))
    (tmp_path / "audit.jsonl.keys").write_text("received\tgone1\nfailed\tgone1\n")  # the old format: a retired file's pairs, no stage
    parsed = reads(monkeypatch)
    journal = Journal(path)
    assert parsed == [old.name, "audit.jsonl"]
    assert not any(journal.once("received", key) for key in ["gone1"] + [f"k{i}" for i in range(5)])
    assert not journal.once("failed", "gone1", stage="classify")  # an old failed pair without its stage stands for every stage, as before
    pairs, covered = read_keys(tmp_path / "audit.jsonl.keys")
    assert covered == {old.name} and {("received", f"k{i}", None) for i in range(5)} <= pairs
    parsed.clear()
    again = Journal(path)
    assert parsed == ["audit.jsonl"] and not again.once("received", "k4") and again.once("received", "k5")
    assert read_lines_of(path) == [("received", "k5")]  # nothing of the old file written again


def read_lines_of(path: Path) -> list[tuple[str, str]]:
    return [(r["event"], r["key"]) for r in json_lines(path)]


CRASH_AT_COVER = """
import os, sys
from edgecxr.clinic import journal
journal.Journal._cover = lambda self, segment, pairs: os._exit(3)  # the process dies just after a rotation, before the keys
log = journal.Journal(sys.argv[1], rotation=journal.Rotation(max_bytes=300))
for i in range(20):
    log.once("received", f"key{i:02d}")
"""


def test_a_crash_between_a_rotation_and_its_keys_loses_no_pair(tmp_path):
    path = tmp_path / "audit.jsonl"
    crashed = subprocess.run([sys.executable, "-c", CRASH_AT_COVER, str(path)], env=child_env(), capture_output=True, text=True, timeout=60)
    assert crashed.returncode == 3, crashed.stderr
    (segment,) = segments(path)
    written = [k for _, k in read_lines_of(segment)] + [k for _, k in read_lines_of(path)]
    assert len(written) >= 3 and not (tmp_path / "audit.jsonl.keys").exists()
    journal = Journal(path, rotation=Rotation(max_bytes=300))  # the restart covers it
    assert read_keys(tmp_path / "audit.jsonl.keys")[1] == {segment.name}
    for i in range(20):  # the work redone: only the lines not yet written are
        assert journal.once("received", f"key{i:02d}") == (f"key{i:02d}" not in written)
    assert sorted(r["key"] for r in read_journal(path)) == [f"key{i:02d}" for i in range(20)]  # each once

    keys = tmp_path / "audit.jsonl.keys"  # a crash in the middle of a keys write: the last line torn, no mark
    text = keys.read_text()
    cut = text.index("received\tkey10") + len("received\tkey1")
    keys.write_text(text[:cut])
    again = Journal(path, rotation=Rotation(max_bytes=300))
    assert not any(again.once("received", f"key{i:02d}") for i in range(20))
    assert again.once("received", "key1")  # the torn "key1..." was cut off, no pair: a key never written is written
    pairs, covered = read_keys(keys)
    assert ("received", "key1", None) not in pairs and {p.name for p in segments(path)} <= covered  # covered again


def test_a_film_refused_at_receive_and_failing_later_gets_both_failed_lines_once(tmp_path):
    path = tmp_path / "audit.jsonl"
    journal = Journal(path, rotation=Rotation(max_bytes=200))
    journal.write("failed", "k1", stage="receive", reason="the disk is full")
    assert journal.once_many([("failed", "k1", {"stage": "classify", "reason": "cannot decode"})]) == 1
    assert not journal.once("failed", "k1", stage="classify") and journal.once("failed", "k2", stage="classify")
    again = Journal(path, rotation=Rotation(max_bytes=200))  # the receive line rotated away: known from the keys
    assert segments(path) and not again.once("failed", "k1", stage="receive") and not again.once("failed", "k1", stage="classify")
    assert [(r["key"], r["stage"]) for r in read_journal(path)] == [("k1", "receive"), ("k1", "classify"), ("k2", "classify")]


def test_state_survives_rotation_retirement_and_a_restart_and_a_pending_film_is_classified(tmp_path, tiny_models):
    from edgecxr.clinic.service import Service
    from edgecxr.core.model import Model

    model, root = Model(tiny_models["int8"]), tmp_path / "store"
    rotation = Rotation(max_bytes=700, keep_days=1)
    films = [wrap(toy_u8(i % 3, seed=i, size=(64, 64)), f"Rot^Ate{i}", f"RA-{i:04d}") for i in range(8)]

    def receive(service: Service, ds: pydicom.Dataset) -> str:  # as listen's receiver keeps a film
        key = service.store.key(str(ds.SOPInstanceUID))
        service.store.write_bytes(service.store.path("received", key, ".dcm"), dicom_bytes(ds))
        service.audit.once("received", key, sop_class="DX")
        return key

    first = Service(root, model, None, "EDGECXR", 5.0, rotation=rotation).start()
    done = [receive(first, ds) for ds in films[:6]]
    for key in done:
        first.worker.submit(key)
    first.stop()
    pending_service = Service(root, model, None, "EDGECXR", 5.0, rotation=Rotation(max_bytes=1))  # never started: the films wait
    pending = [receive(pending_service, ds) for ds in films[6:]]  # each line in a file of its own
    pending_service.store.close()
    assert len(segments(root / "audit.jsonl")) >= 3 and segments(root / "results.jsonl")
    assert pending[0] in {r["key"] for segment in segments(root / "audit.jsonl") for r in json_lines(segment)}  # to be retired
    for name in ("audit.jsonl", "results.jsonl"):
        for segment in segments(root / name):
            age(segment, 2)  # every rotated file past --keep-days 1, the pending films' received lines among them

    last = Service(root, model, None, "EDGECXR", 5.0, rotation=rotation).start()
    wait_for(lambda: all((root / "classified" / f"{k}.json").exists() for k in pending), 60, "the pending films classified")
    last.stop()
    assert segments(root / "audit.jsonl") == [] or all(rotated_at(s) > time.time() - 86400 for s in segments(root / "audit.jsonl"))
    assert f"received\t{pending[0]}" in (root / "audit.jsonl.keys").read_text().splitlines() and (root / "results.jsonl.keys").exists()
    audit = read_journal(root / "audit.jsonl")
    assert [r for r in audit if r.get("recovered")] == []  # no line of a retired file written again by the restart
    for lines, event in ((audit, "classified"), (read_journal(root / "results.jsonl"), "result")):
        told = Counter(events(lines, event))
        assert set(pending) <= set(told) and set(told) <= set(done + pending) and set(told.values()) == {1}  # each once at most
    for key in done + pending:  # the store itself kept everything
        assert (root / "received" / f"{key}.dcm").exists() and (root / "classified" / f"{key}.json").exists()
        assert (root / "results" / f"{key}.sr.dcm").exists()


def test_the_web_index_misses_no_line_of_a_log_rotated_between_two_reads(tmp_path):
    from edgecxr.clinic.web.index import Filters, Index

    root = tmp_path / "store"
    root.mkdir()
    results = Journal(root / "results.jsonl", rotation=Rotation(max_bytes=500))
    index = Index(tmp_path / "index.sqlite", {"store": root})

    def result(i: int) -> None:
        results.once("result", f"key{i:02d}", label="Normal", abnormal_score=0.1, warnings=[], file=None)

    for i in range(3):
        result(i)
    assert index.sync() == 3
    for i in range(3, 12):  # read by no sync before the file they went to was rotated
        result(i)
    assert segments(root / "results.jsonl")
    assert index.sync() == 9 and index.sync() == 0
    rows, total = index.page(Filters(), 1, 100)
    assert total == 12 and sorted(r["key"] for r in rows) == [f"key{i:02d}" for i in range(12)]


@pytest.mark.slow
def test_listen_rotates_its_logs_and_a_restart_classifies_every_film_once(tmp_path, tiny_models):
    store = tmp_path / "store"
    options = ("--model", str(tiny_models["int8"]), "--log-max-mb", "0.002", "--keep-days", "30")
    films = [wrap(toy_u8(i % 3, seed=40 + i, size=(64, 64)), f"Log^Lines{i}", f"LL-{i:04d}") for i in range(14)]
    listener = Listener(store, free_port(), *options).start()
    try:
        assert send(listener.port, films[:10]) == [0x0000] * 10
        listener.kill()  # kill -9 with films unclassified
    finally:
        listener.close()
    listener = Listener(store, free_port(), *options).start()
    try:
        assert send(listener.port, films[8:]) == [0x0000] * 6  # two resent, four new
        keys = sorted(listener.key(str(ds.SOPInstanceUID)) for ds in films)
        wait_for(lambda: sorted(events(read_journal(store / "audit.jsonl"), "classified")) == keys, 120, "every film classified")
        assert listener.terminate() == 0
    finally:
        listener.close()
    audit = read_journal(store / "audit.jsonl")
    assert len(segments(store / "audit.jsonl")) >= 3 and all(p.stat().st_size < 2 * 2**10 + 1024 for p in segments(store / "audit.jsonl"))
    resent = [listener.key(str(ds.SOPInstanceUID)) for ds in films[8:10]]
    assert sorted(events(audit, "classified")) == keys and sorted(events(audit, "received")) == sorted(keys + resent)  # a resend: duplicate
    assert sorted(r["key"] for r in read_journal(store / "results.jsonl")) == keys


# --- the status line --------------------------------------------------------------------------------------------------

def check_json(store: Path) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, "-m", "edgecxr", "listen", "--check", "--json", "--store", str(store)],
                          capture_output=True, text=True, env=child_env(), timeout=60)
    return done.returncode, json.loads(done.stdout)


def test_check_json_gives_the_queue_of_a_stopped_worker_and_then_the_last_error(tmp_path, tiny_models):
    from edgecxr.clinic.service import Service
    from edgecxr.core.model import Model

    service = Service(tmp_path / "store", Model(tiny_models["int8"]), None, "EDGECXR", 5.0)
    store = service.store
    films = [wrap(toy_u8(i % 3, seed=i, size=(64, 64)), f"Queue^Depth{i}", f"QD-{i:04d}") for i in range(5)]
    films[3].PixelData = films[3].PixelData[: 64 * 10]  # cut short: acknowledged (as if), then not analysable
    for ds in films:
        key = store.key(str(ds.SOPInstanceUID))
        store.write_bytes(store.path("received", key, ".dcm"), dicom_bytes(ds))
        service.worker.submit(key)
    service.write_status()  # what listen does every second; the worker thread is not running
    code, report = check_json(store.root)
    assert code == 1 and report["healthy"] is False
    assert report["status"]["state"] == "worker stopped" and report["status"]["queue"] == 5 and report["status"]["last_error"] is None
    assert report["line"].startswith("worker stopped; 5 films queued, 0 results to send, ") and report["line"].endswith(" MB free; last error: none")

    service.start()
    wait_for(lambda: len(list((store.root / "classified").iterdir())) + len(list((store.root / "failed").iterdir())) == 5, 60, "the five films done")
    service.write_status()
    code, report = check_json(store.root)
    failure = json.loads(next((store.root / "failed").iterdir()).read_text())
    assert code == 0 and report["healthy"] is True and report["status"]["queue"] == 0 and report["status"]["state"] == "ok"
    assert report["status"]["last_error"] == f"a film could not be analysed: {failure['reason']}" and "pixel data" in failure["reason"]
    assert report["line"].endswith(f"; last error: a film could not be analysed: {failure['reason']}")
    service.stop()
    code, report = check_json(store.root)
    assert code == 1 and report == {"healthy": False, "line": f"{store.root}: no edgecxr process serves this store", "status": None}


# --- TLS to the PACS --------------------------------------------------------------------------------------------------

class TlsPacs:
    """A pynetdicom Storage SCP taking edgecxr's result classes over DICOM TLS only (a client certificate of ``ca`` required)."""

    def __init__(self, pem: dict[str, str], tls: bool = True) -> None:
        from pynetdicom import AE, evt

        from edgecxr.clinic.writers import sop_classes

        self.port, self.stored = free_port(), list[str]()
        ae = AE(ae_title="PACS")
        for sop_class in sop_classes():
            ae.add_supported_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        context = None
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pem["ca.crt"])
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_cert_chain(pem["server.crt"], pem["server.key"])
        server = ae.start_server(("127.0.0.1", self.port), block=False, ssl_context=context, evt_handlers=[(evt.EVT_C_STORE, self.on_store)])
        assert server is not None  # block=False returns it
        self.server = server

    def on_store(self, event) -> int:
        self.stored.append(str(event.dataset.SOPClassUID))
        return 0x0000

    def stop(self) -> None:
        self.server.shutdown()


@pytest.mark.slow
def test_results_go_to_the_pacs_over_tls_and_an_untrusted_certificate_is_refused_for_good(tmp_path, tiny_models):
    pem = make_certificates(tmp_path)
    (tmp_path / "other").mkdir()
    other = make_certificates(tmp_path / "other")  # another CA, which did not sign the PACS's certificate
    pacs = TlsPacs(pem)
    forward = ("--model", str(tiny_models["int8"]), "--forward", f"PACS@127.0.0.1:{pacs.port}", "--retry", "0.2")
    good = Listener(tmp_path / "good", free_port(), *forward, "--forward-tls-ca", pem["ca.crt"],
                    "--forward-tls-cert", pem["client.crt"], "--forward-tls-key", pem["client.key"]).start()
    wrong = Listener(tmp_path / "wrong", free_port(), *forward, "--forward-tls-ca", other["ca.crt"],
                     "--forward-tls-cert", other["client.crt"], "--forward-tls-key", other["client.key"]).start()
    try:
        assert "forwarding to PACS@127.0.0.1" in good.err.read_text() and "(TLS)" in good.err.read_text()
        assert send(good.port, [wrap(toy_u8(1, seed=3, size=(64, 64)), "Tls^Forward", "TF-1")]) == [0x0000]
        assert send(wrong.port, [wrap(toy_u8(2, seed=4, size=(64, 64)), "Tls^Wrong", "TW-1")]) == [0x0000]
        wait_for(lambda: len(events(good.audit(), "sent")) == 1, 60, "the results sent over TLS")
        assert sorted(pacs.stored) == sorted(["1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.7"])  # the SR and the SC
        wait_for(lambda: bool(events(wrong.audit(), "failed")), 60, "the send with the wrong CA to fail")
        time.sleep(2.0)  # ten retry periods: not tried again
        failures = [r for r in wrong.audit() if r["event"] == "failed"]
        assert len(failures) == 1 and failures[0]["permanent"] is True and failures[0]["stage"] == "send"
        reason = failures[0]["reason"]  # OpenSSL's own words in the brackets vary with its version
        assert reason.startswith(f"TLS: the certificate of PACS@127.0.0.1:{pacs.port} is not trusted (") and reason.endswith("; see --forward-tls-ca)")
        assert "certificate" in reason[reason.index("("):]
        assert len(pacs.stored) == 2 and events(wrong.audit(), "sent") == []
        outbox = [json.loads(p.read_text()) for p in (tmp_path / "wrong" / "outbox").iterdir()]
        assert len(outbox) == 1 and outbox[0]["next_try"] is None and outbox[0]["stopped"] == failures[0]["reason"]  # kept for a restart
        said = f"last error: results not sent, not retried until a restart: {failures[0]['reason']}"
        wait_for(lambda: said in wrong.err.read_text(), 30, "the status line to give the refusal")
        code, report = check_json(tmp_path / "wrong")  # the same in --check: healthy (it runs), one result waiting, the error
        assert code == 0 and report["status"]["to_send"] == 1 and report["line"].endswith(said)
        assert good.terminate() == 0 and wrong.terminate() == 0
        assert "Traceback" not in good.err.read_text() + wrong.err.read_text()
    finally:
        good.close()
        wrong.close()
        pacs.stop()


def test_a_pacs_that_speaks_no_tls_is_a_transient_failure_retried(tmp_path):
    from edgecxr.clinic.forward import Forwarder, Target, tls_client
    from edgecxr.clinic.store import Store

    pem = make_certificates(tmp_path)
    plain = TlsPacs(pem, tls=False)
    try:
        with Store(tmp_path / "store") as store:
            audit = Journal(store.root / "audit.jsonl")
            store.write_json(store.path("outbox", "k1", ".json"), {"files": ["k1.sr.dcm"], "attempts": 0, "next_try": 0.0})
            Forwarder(store, audit, Target("PACS", "127.0.0.1", plain.port), "EDGECXR", 0.5, tls_client(pem["ca.crt"])).send_due()
            [failure] = [r for r in json_lines(store.root / "audit.jsonl") if r["event"] == "failed"]
            assert failure["reason"].startswith(f"TLS handshake with PACS@127.0.0.1:{plain.port} failed (") and "permanent" not in failure
            assert failure["reason"].endswith("; does it take DICOM TLS on this port?)")
            assert failure["retry_in_s"] == 0.5 and store.records("outbox")[0][1]["next_try"] is not None
    finally:
        plain.stop()


def test_forward_tls_options_are_checked_before_anything_starts(tmp_path):
    def listen(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edgecxr", "listen", "--store", str(tmp_path / "s"), *args],
                              capture_output=True, text=True, env=child_env(), timeout=60)

    alone = listen("--forward-tls-cert", "c.pem")
    assert alone.returncode == 2 and alone.stderr.strip().splitlines() == [
        "error: --forward-tls-ca turns TLS on for --forward; --forward-tls-cert and --forward-tls-key go with it, together"]
    missing = listen("--forward", "PACS@127.0.0.1:104", "--forward-tls-ca", str(tmp_path / "no-such.pem"))
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert missing.stderr.startswith("error: --forward-tls-ca/--forward-tls-cert/--forward-tls-key: cannot use them (")


# --- the organisation's UID root --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("root", "problem"), [
    ("1.02.3", "'1.02.3' is not a UID root (digits and dots): component '02' has a leading zero"),
    ("1.2..3", "'1.2..3' is not a UID root (digits and dots): an empty component"),
    ("1.2.3.", "'1.2.3.' is not a UID root (digits and dots): an empty component"),
    ("1.2.x", "'1.2.x' is not a UID root (digits and dots): component 'x' is not digits"),
    ("1.2\n.3", "'1.2\\n.3' is not a UID root (digits and dots): component '2\\n' is not digits"),
    ("3.1.4", "'3.1.4' is not a UID root: an OID starts with 0, 1 or 2"),
    ("1." + "1234567890." * 3 + "123456", "has 41 characters, more than the 40 that leave 23 digits of a 64-character UID"),
])
def test_a_uid_root_is_checked(root, problem):
    with pytest.raises(ValueError) as error:
        uids.check_root(root)
    assert str(error.value).endswith(problem) and "\n" not in str(error.value)


def test_uid_roots_that_fit_make_uids_of_at_most_64_characters():
    try:
        for root in ("1.2.826.0.1.3680043.10.1234", "2.25.0", "1." + "1234567890." * 3 + "12345"):
            uids.use_root(root)
            uid = uids.result_uid("1.2.3.4.5", "sha", "sr")
            assert uid.startswith(root + ".") and len(uid) == 64 and pydicom.uid.UID(uid).is_valid
            assert uid == uids.result_uid("1.2.3.4.5", "sha", "sr") != uids.result_uid("1.2.3.4.5", "sha", "sc")
        uids.use_root(None)
        assert uids.result_uid("1.2.3.4.5", "sha", "sr") == pydicom.uid.generate_uid(entropy_srcs=["1.2.3.4.5", "sha", "sr"])  # as before
        assert uids.root() == PYDICOM_ROOT_UID
    finally:
        uids.use_root(None)


@pytest.mark.slow
def test_results_carry_the_uid_root_and_pass_dciodvfy(tmp_path, tiny_models):
    root = "1.2.826.0.1.3680043.10.999"
    bad = subprocess.run([sys.executable, "-m", "edgecxr", "listen", "--store", str(tmp_path / "bad"), "--uid-root", "1.2.03"],
                         capture_output=True, text=True, env=child_env(), timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: --uid-root: '1.2.03' is not a UID root (digits and dots): component '03' has a leading zero"]
    store = tmp_path / "store"
    listener = Listener(store, free_port(), "--model", str(tiny_models["int8"]), "--uid-root", root).start()
    try:
        film = wrap(toy_u8(0, seed=11, size=(96, 96)), "Uid^Root", "UR-1")
        lateral = wrap(toy_u8(1, seed=12, size=(96, 96)), "Uid^Lateral", "UR-2", study_uid=str(film.StudyInstanceUID))
        lateral.ViewPosition = "LL"  # outside the intended use: a not-analysable report
        assert send(listener.port, [film, lateral]) == [0x0000, 0x0000]
        wait_for(lambda: len(events(listener.audit(), "classified")) == 1 and len(events(listener.audit(), "failed")) == 1, 60, "both films done")
        assert listener.terminate() == 0
    finally:
        listener.close()
    results = sorted((store / "results").iterdir())
    assert sorted(p.name.split(".", 1)[1] for p in results) == ["sc.dcm", "sr.dcm", "sr.dcm"]
    for path in results:
        ds = pydicom.dcmread(path)
        for uid in (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.file_meta.MediaStorageSOPInstanceUID):
            assert str(uid).startswith(root + ".") and len(str(uid)) <= 64 and uid.is_valid, (path.name, uid)
        assert ds.StudyInstanceUID == film.StudyInstanceUID  # the film's study, not ours
        assert dicom_errors(path) == [], (path.name, dicom_errors(path))
