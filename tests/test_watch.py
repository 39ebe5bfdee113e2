"""``edgecxr watch FOLDER`` as a process: every dropped film once, across restarts, and none before it is fully written."""
from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from clinic import events, wait_for, wrap
from conftest import child_env, toy_u8, write_png
from edgecxr.clinic.journal import read_lines

pytestmark = pytest.mark.clinic


@pytest.fixture()
def watch(tmp_path, tiny_models):
    """A :class:`Watch` of ``tmp_path/incoming`` into ``tmp_path/store``, killed at the test's end if still running."""
    (tmp_path / "incoming").mkdir()
    watcher = Watch(tmp_path / "incoming", tmp_path / "store", tiny_models["int8"])
    yield watcher
    watcher.close()


class Watch:
    """``python -m edgecxr watch`` on ``folder`` with the tiny model, its stdout and stderr in files."""

    def __init__(self, folder: Path, store: Path, model: Path) -> None:
        self.folder, self.store, self.model = folder, store, model
        self.out, self.err = store.parent / "watch.stdout", store.parent / "watch.stderr"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Watch:
        started = self.err.read_bytes().count(b"watching") if self.err.exists() else 0
        with open(self.out, "ab") as out, open(self.err, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edgecxr", "watch", str(self.folder), "--store", str(self.store), "--interval", "0.3", "--model", str(self.model)],
                stdout=out, stderr=err, env=child_env(),
            )
        wait_for(lambda: self.err.read_bytes().count(b"watching") > started, 60, "edgecxr watch to start")
        return self

    def close(self) -> None:
        """Kill the process if it still runs (the test's teardown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(120)

    def audit(self) -> list[dict]:
        return read_lines(self.store / "audit.jsonl")


def late_film() -> bytes:
    """The bytes of a DICOM file of a made-up patient (256 x 256 pixels, so about 20 chunks of 3 KB)."""
    buffer = io.BytesIO()
    wrap(toy_u8(2, seed=9, size=(256, 256)), "Vandersnoot^Ottoline", "OV-777777").save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.slow
def test_each_dropped_file_is_processed_once_across_restarts(watch):
    folder, store = watch.folder, watch.store
    write_png(folder / "Quuxworth_Zebediah.png", 1)  # a file name that is a made-up patient's
    write_png(folder / "ward" / "b.png", 2, seed=3)
    film = wrap(toy_u8(0, seed=5, size=(96, 96)), "Plimsoll^Araminta", "AP-424242")
    film.save_as(folder / "ward" / "IM0001", enforce_file_format=True)  # DICOM without a suffix, as modalities export
    (folder / "notes.txt").write_text("not an image")
    watcher = watch.start()
    wait_for(lambda: len(events(watcher.audit(), "classified")) == 3, 60, "the three films classified")
    (folder / "late.part").write_bytes(late_film())  # a film dropped while it runs, whole at once by a rename (one still
    (folder / "late.part").rename(folder / "late.dcm")  # being written: the next test); a .part file is never read
    wait_for(lambda: len(events(watcher.audit(), "classified")) == 4, 60, "the film dropped while it runs classified")
    assert events(watcher.audit(), "failed") == []

    shutil.copyfile(folder / "ward" / "b.png", folder / "copy-of-b.png")  # the same film again, under another name
    time.sleep(1.5)  # five listings
    assert watcher.stop() == 0
    assert len(events(watcher.audit(), "received")) == 4

    watcher.start()  # a restart: nothing is read twice
    write_png(folder / "new.png", 0, seed=11)
    wait_for(lambda: len(events(watcher.audit(), "classified")) == 5, 60, "the film dropped after the restart classified")
    assert watcher.stop() == 0

    audit = watcher.audit()
    assert len(events(audit, "received")) == len(set(events(audit, "received"))) == 5
    assert sorted(events(audit, "classified")) == sorted(events(audit, "received"))
    results = [json.loads(line) for line in (store / "results.jsonl").read_text().splitlines()]
    assert sorted(r["file"] for r in results) == ["Quuxworth_Zebediah.png", "late.dcm", "new.png", "ward/IM0001", "ward/b.png"]
    assert {r["file"]: r["label"] for r in results if r["file"].endswith(".png")} == {"Quuxworth_Zebediah.png": "bright", "ward/b.png": "striped", "new.png": "dark"}
    by_file = {r["file"]: r for r in results}
    assert by_file["ward/IM0001"]["results"] == [f"{by_file['ward/IM0001']['key']}.sr.dcm", f"{by_file['ward/IM0001']['key']}.sc.dcm"]
    assert by_file["new.png"]["results"] == [f"{by_file['new.png']['key']}.png"]
    picture = cv2.imread(str(store / "results" / by_file["new.png"]["results"][0]))
    assert picture.shape[1] == 768
    texts = [(store / "audit.jsonl").read_text(), watcher.out.read_text(), watcher.err.read_text(), "\n".join(p.name for p in store.rglob("*"))]
    for secret in ("Quuxworth", "Zebediah", "Plimsoll", "Araminta", "AP-424242", "Vandersnoot", "OV-777777", "IM0001", str(film.SOPInstanceUID)):
        assert not any(secret in text for text in texts), secret


def test_a_file_still_being_written_is_read_only_once_it_held_for_one_listing(tmp_path, tiny_models):
    """The watcher's listings one by one (not raced against a clock): a file that grew since the last listing is left alone."""
    from edgecxr.clinic.dicomnet.watch import Watcher
    from edgecxr.clinic.service import Service
    from edgecxr.core.model import Model

    folder, store = tmp_path / "incoming", tmp_path / "store"
    folder.mkdir()
    service = Service(store, Model(tiny_models["int8"]), None, "EDGECXR", 5.0).start()
    watcher = Watcher(service, folder, {})
    data = late_film()
    step = len(data) // 20
    with open(folder / "slow.dcm", "wb") as fh:
        for start in range(0, len(data), step):
            fh.write(data[start : start + step])
            fh.flush()
            assert watcher.scan() == 0, "a file still being written was read"
    assert watcher.scan() == 1  # the same size and modification time as at the previous listing: read now
    assert watcher.scan() == 0  # and once
    service.stop()
    audit = read_lines(store / "audit.jsonl")
    (key,) = events(audit, "classified")
    received = service.store.received(key)
    assert received is not None and received.read_bytes() == data and events(audit, "failed") == []  # read whole, so it decoded


def test_a_refused_dicom_file_is_logged_once_and_not_read_again(watch):
    folder = watch.folder
    film = wrap(toy_u8(0, size=(64, 64)), "Test^Refused", "TR-1")
    del film.PixelData
    film.save_as(folder / "nopixels.dcm", enforce_file_format=True)
    (folder / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 40)
    watcher = watch.start()
    wait_for(lambda: len(events(watcher.audit(), "rejected")) == 2, 60, "both files refused")
    assert watcher.stop() == 0
    watcher.start()
    time.sleep(1.0)
    assert watcher.stop() == 0
    rejected = sorted(r["reason"] for r in watcher.audit() if r["event"] == "rejected")
    assert rejected == ["the dataset has no SOP Instance UID", "the dataset has no pixel data"]  # pydicom reads the garbage as an empty dataset
    assert events(watcher.audit(), "received") == []


def test_a_half_copied_dicom_refused_at_a_pause_is_read_once_the_rest_arrives_and_not_again_after_a_restart(tmp_path, tiny_models):
    """Half the file, a pause longer than the stable-size wait (two listings), then the rest: the half is refused by its
    content, the whole file is read; a restart reads neither again, and a file that does not parse is retried once it changes."""
    from edgecxr.clinic.dicomnet.watch import Watcher
    from edgecxr.clinic.service import Service
    from edgecxr.core.model import Model

    folder, store = tmp_path / "incoming", tmp_path / "store"
    folder.mkdir()
    data = late_film()
    service = Service(store, Model(tiny_models["int8"]), None, "EDGECXR", 5.0).start()
    watcher = Watcher(service, folder, {})
    (folder / "paused.dcm").write_bytes(data[: len(data) // 2])
    (folder / "garbled.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 40)
    assert watcher.scan() == 0  # first seen
    assert watcher.scan() == 0  # stable: read, and refused (the half's pixel data is short; the garbage has no UID)
    assert watcher.scan() == 0  # the same bytes: not read again
    with open(folder / "paused.dcm", "ab") as fh:  # the copy goes on
        fh.write(data[len(data) // 2 :])
    film = wrap(toy_u8(1, seed=4, size=(64, 64)), "Garbled^Gwendolyn", "GG-31")
    film.save_as(folder / "garbled.dcm", enforce_file_format=True)  # corrected in place
    assert watcher.scan() == 0  # changed since the last listing: wait
    assert watcher.scan() == 2  # both read now
    service.stop()
    audit = read_lines(store / "audit.jsonl")
    rejected = sorted(r["reason"] for r in audit if r["event"] == "rejected")
    assert rejected == ["the dataset has no SOP Instance UID", f"the pixel data holds {len(data) // 2 - (len(data) - 256 * 256)} bytes, fewer than a 256x256 image needs"]
    assert len(events(audit, "classified")) == 2 and events(audit, "failed") == []

    service = Service(store, Model(tiny_models["int8"]), None, "EDGECXR", 5.0).start()  # a restart
    again = Watcher(service, folder, {})
    assert again.scan() == 0 and again.scan() == 0
    service.stop()
    audit = read_lines(store / "audit.jsonl")
    assert len(events(audit, "received")) == 2 and len([r for r in audit if r["event"] == "rejected"]) == 2


def test_a_dicom_file_with_the_uid_of_one_read_before_but_other_pixels_is_a_new_instance_with_a_warning(tmp_path, tiny_models):
    from edgecxr.clinic.dicomnet.watch import Watcher
    from edgecxr.clinic.service import Service
    from edgecxr.core.model import Model

    folder, store = tmp_path / "incoming", tmp_path / "store"
    folder.mkdir()
    first = wrap(toy_u8(0, seed=1, size=(64, 64)), "Same^Uid", "SU-1")
    second = wrap(toy_u8(1, seed=2, size=(64, 64)), "Same^Uid", "SU-1")
    second.SOPInstanceUID = second.file_meta.MediaStorageSOPInstanceUID = first.SOPInstanceUID
    service = Service(store, Model(tiny_models["int8"]), None, "EDGECXR", 5.0).start()
    watcher = Watcher(service, folder, {})
    first.save_as(folder / "a.dcm", enforce_file_format=True)
    first.save_as(folder / "a-again.dcm", enforce_file_format=True)  # the same instance twice: once
    assert watcher.scan() == 0 and watcher.scan() == 1
    second.save_as(folder / "b.dcm", enforce_file_format=True)
    assert watcher.scan() == 0 and watcher.scan() == 1
    service.stop()
    audit = read_lines(store / "audit.jsonl")
    classified = {r["key"]: r["label"] for r in audit if r["event"] == "classified"}
    (warning,) = [r for r in audit if r["event"] == "warning"]
    assert len(classified) == 2 and warning["key"] in classified and warning["key"] != service.store.key(str(first.SOPInstanceUID))
    assert warning["reason"].startswith("the SOP Instance UID of a film received before, with other pixel data")
    assert sorted(classified.values()) == ["bright", "dark"]  # each film its own answer, not the first one's


def test_listen_and_watch_keep_the_store_readable_by_its_owner_only(tmp_path, tiny_models):
    """Films and results name patients: the store's folders are made 0700 and its files 0600, and what an older version left open is closed."""
    import os
    import stat

    from edgecxr.cli import clinic_service

    store = tmp_path / "store"
    (store / "results").mkdir(parents=True)
    old = store / "results" / "old.sr.dcm"
    old.write_bytes(b"x")
    old.chmod(0o644)
    (store / "results").chmod(0o755)
    previous = os.umask(0o022)
    try:
        service = clinic_service(store=str(store), forward=None, ae_title="EDGECXR", retry=1.0, model=str(tiny_models["int8"]), site=None, threads=1)
        service.start()
        written = store / "results" / "new.json"
        written.write_text("{}")
        service.stop()
    finally:
        os.umask(previous)
    modes = {p.relative_to(store).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [store, *store.rglob("*")] if not p.is_symlink()}
    assert modes["results/old.sr.dcm"] == 0o600 and modes["results/new.json"] == 0o600 and modes["results"] == 0o700
    assert all(mode & 0o077 == 0 for mode in modes.values()), modes
