"""``edgecxr listen`` on a store that fills up: nothing acknowledged that is not on disk, the worker waits, work resumes.

The store is a small tmpfs mounted for the test (CI runs as root), so the disk really is full:
films are refused with 0xA700 (out of resources: the sender retries) once they cannot be written,
the worker holds the film whose results do not fit, ``listen --check`` says so and exits 1, and
when space returns everything acknowledged is classified without a restart.
"""
from __future__ import annotations

import contextlib
import subprocess
import sys
import time

import pytest

from clinic import Listener, events, free_port, send, wait_for, wrap
from conftest import child_env, toy_u8

pytestmark = [pytest.mark.clinic, pytest.mark.slow]


@pytest.fixture()
def small_disk(tmp_path):
    """A 48 MB tmpfs at ``tmp_path/disk``, unmounted at the end."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", str(mount)], capture_output=True, text=True)
    assert done.returncode == 0, f"cannot mount a tmpfs for the full-disk test (needs root, as CI has): {done.stderr.strip()}"
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def check(store) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "edgecxr", "listen", "--check", "--store", str(store)], capture_output=True, text=True, env=child_env(), timeout=60)
    return done.returncode, done.stdout.strip()


def fill(disk, leave: int) -> None:
    """Fill the file system of ``disk`` until ``leave`` bytes are free."""
    import os

    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    with open(disk / "filler", "wb") as fh, contextlib.suppress(OSError):
        fh.write(b"\0" * max(0, free - leave))


def test_a_full_store_refuses_films_it_cannot_keep_holds_the_worker_and_resumes_when_space_returns(small_disk, tiny_models):
    store = small_disk / "store"
    listener = Listener(store, free_port(), "--model", str(tiny_models["int8"]), "--min-free", "0").start()
    try:
        wait_for(lambda: check(store)[0] == 0, 30, "--check to report a healthy listener")
        fill(small_disk, 700 * 1024)  # room for about ten 64 KB films, none for a result's 2 MB picture; freed, room for all
        films = [wrap(toy_u8(i % 3, seed=i, size=(256, 256)), f"Full^Disk{i:03d}", f"FD-{i:05d}") for i in range(16)]
        statuses = send(listener.port, films)
        acknowledged = [f for f, s in zip(films, statuses) if s == 0x0000]
        refused = [f for f, s in zip(films, statuses) if s != 0x0000]
        assert set(statuses) == {0x0000, 0xA700}, statuses  # success while it fits, then out of resources (retry later)
        for ds in acknowledged:  # every acknowledged film is on disk, whole, and logged
            key = listener.key(ds.SOPInstanceUID)
            assert (store / "received" / f"{key}.dcm").stat().st_size > 256 * 256
            assert key in events(listener.audit(), "received")
        for ds in refused:
            assert not (store / "received" / f"{listener.key(ds.SOPInstanceUID)}.dcm").exists()
        assert list((store / "tmp").iterdir()) == []  # no partial copy left holding space

        wait_for(lambda: check(store)[0] == 1, 60, "--check to report the full store")
        code, line = check(store)
        assert "store not writable" in line and "No space left on device" in line and f"{len(acknowledged)} films queued" in line  # those the workers hold included
        assert events(listener.audit(), "classified") == []
        assert listener.proc is not None and listener.proc.poll() is None  # still up, still answering

        (small_disk / "filler").unlink()  # space returns: no restart needed
        wait_for(lambda: len(events(listener.audit(), "classified")) == len(acknowledged), 120, "the acknowledged films classified")
        assert send(listener.port, refused) == [0x0000] * len(refused)  # the sender's retry now succeeds
        wait_for(lambda: len(events(listener.audit(), "classified")) == len(films), 120, "every film classified")
        wait_for(lambda: check(store)[0] == 0, 30, "--check healthy again")
        audit = listener.audit()
        assert [r["stage"] for r in audit if r["event"] == "failed" and r.get("stage") == "store"] == ["store"]  # said once, not every retry
        assert len(events(audit, "resumed")) == 1
        assert sorted(events(audit, "classified")) == sorted(listener.key(ds.SOPInstanceUID) for ds in films)
        assert listener.terminate() == 0
        err = listener.err.read_text()
        assert "Traceback" not in err and "Exception in thread" not in err
        assert "status: store not writable" in err and "status: ok" in err  # the status line on stderr as it changed
    finally:
        listener.close()
    code, line = check(store)
    assert code == 1 and line == f"edgecxr: {store}: no edgecxr process serves this store"


def test_check_without_a_store_exits_1_in_one_line(tmp_path):
    start = time.monotonic()
    code, line = check(tmp_path / "nothing")
    assert code == 1 and line.startswith(f"edgecxr: {tmp_path / 'nothing'}: ") and time.monotonic() - start < 30


def test_serve_stops_with_worker_stopped_when_the_worker_thread_is_gone(tmp_path, tiny_models):
    """What makes `listen` exit 3: the worker thread ends (here: drained from outside) while the server runs."""
    import threading

    from edgecxr.clinic.dicomnet.listen import Limits, WorkerStopped, serve
    from edgecxr.clinic.service import Service
    from edgecxr.core.model import Model

    service = Service(tmp_path / "store", Model(tiny_models["int8"]), None, "EDGECXR", 5.0)
    lines: list[str] = []
    threading.Timer(1.5, service.worker.drain).start()
    with pytest.raises(WorkerStopped, match="^worker stopped; "):
        serve(service, "EDGECXR", free_port(), "127.0.0.1", threading.Event(), Limits(), on_status=lines.append)
    assert lines[-1].startswith("worker stopped; ")  # the status line said so before serve gave up
