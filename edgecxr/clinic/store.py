"""The store folder: received films, their results and the send queue, written so a crash loses nothing.

Every file is named by the instance's pseudonymous key, never by anything from the film::

    STORE/salt                   32 random bytes (hex), made once; key = sha256(salt + SOPInstanceUID)
    STORE/lock                   held (flock) by the one edgecxr process serving the store
    STORE/received/<key>.dcm     the instance as received (a dropped PNG/JPEG/TIFF keeps its suffix)
    STORE/results/<key>.sr.dcm   the Structured Report, and <key>.sc.dcm the Secondary Capture
                                 (<key>.png, the same picture, for a dropped file that is not DICOM)
    STORE/classified/<key>.json  the result record: there once the results are written
    STORE/failed/<key>.json      why a received film could not be classified (it is not tried again)
    STORE/outbox/<key>.json      results still to send, how often tried, when next
    STORE/rejected/<key>.json    a dropped file that was refused, so `watch` does not read it again
    STORE/tmp/                   partial writes (same file system as the rest, so a rename is atomic)
    STORE/audit.jsonl, STORE/results.jsonl   the logs (edgecxr.clinic.journal), with their rotated files
                                 <name>.<UTC time>Z and the keys of every rotated one, <name>.keys
    STORE/status.json            the running listener's health (edgecxr.clinic.health)

A file that is not DICOM (or a DICOM file without a SOPInstanceUID) is keyed by its content:
``sha256(salt + "sha256:" + sha256(content))``. Whoever holds the salt can tell whether a given
UID was seen, so the store is as private as the films in it: :func:`owner_only` keeps it readable by
its owner only (``listen``, ``watch`` and ``serve`` call it before they open it).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from edgecxr.clinic.journal import fsync_path

FOLDERS = ("received", "results", "classified", "failed", "outbox", "rejected", "tmp")
Staged = tuple[Path, Path]  # (temporary file, target) of a write not yet committed (Store.stage)
SYNC_THREADS = 8  # fsyncs of one group commit run at once: the file system commits them together (ext4: one journal commit)


def owner_only(folder: Path) -> None:
    """Make this process create files 0600 and folders 0700 (umask 077), and take group and other access off what ``folder`` already holds."""
    os.umask(0o077)
    if not folder.exists():
        return
    for path in [folder, *folder.rglob("*")]:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and mode & 0o077:
            path.chmod(0o700 if stat.S_ISDIR(mode) else 0o600)


class StoreError(Exception):
    """A store that cannot be used (not writable, or served by another process); ``str()`` names it."""


class Store:
    """An opened store: the folders exist, the salt is read and the store is locked until :meth:`close` (or the process ends).

    Also a context manager: ``with Store(root) as store:`` closes it at the end of the block.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        try:
            for name in FOLDERS:
                (self.root / name).mkdir(parents=True, exist_ok=True)
            self._lock = open(self.root / "lock", "a+")  # held until close()
        except OSError as exc:
            raise StoreError(f"{self.root}: cannot use as the store ({exc.strerror})") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise StoreError(f"{self.root}: the store is in use by another edgecxr process") from None
        salt = self.root / "salt"
        if not salt.exists():
            self.write_bytes(salt, secrets.token_hex(32).encode())
        self.salt = salt.read_bytes().strip()
        for leftover in (self.root / "tmp").iterdir():  # partial writes of a process that died
            leftover.unlink()
        self._syncs: ThreadPoolExecutor | None = None  # commit's fsync threads, made at the first commit and kept until close

    def close(self) -> None:
        """Release the store's lock, so another process (or another Store here) may open it; closing twice is harmless."""
        if self._syncs is not None:
            self._syncs.shutdown()
            self._syncs = None
        self._lock.close()  # closing the file releases its flock

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def key(self, sop_instance_uid: str) -> str:
        """The pseudonymous key of a DICOM instance."""
        return hashlib.sha256(self.salt + sop_instance_uid.encode()).hexdigest()

    def content_key(self, data: bytes) -> str:
        """The pseudonymous key of a file without a SOPInstanceUID, from its content."""
        return self.key("sha256:" + hashlib.sha256(data).hexdigest())

    def free_bytes(self) -> int:
        """Bytes free for this process on the store's file system."""
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def path(self, folder: str, key: str, suffix: str) -> Path:
        return self.root / folder / f"{key}{suffix}"

    def received(self, key: str) -> Path | None:
        """The received file of ``key``, or None."""
        return received_file(self.root, key)

    def known(self, key: str) -> bool:
        """Whether ``key`` was received (or, for a dropped file, refused) before."""
        return self.received(key) is not None or self.path("rejected", key, ".json").exists()

    def classified(self, key: str) -> dict[str, Any] | None:
        """The result record of ``key``, or None when it is not classified yet."""
        path = self.path("classified", key, ".json")
        return json.loads(path.read_text()) if path.exists() else None

    def pending(self) -> list[str]:
        """Keys received but neither classified nor failed, oldest first: the work a restart resumes."""
        def done(key: str) -> bool:
            return self.path("classified", key, ".json").exists() or self.path("failed", key, ".json").exists()

        files = [p for p in (self.root / "received").iterdir() if not done(_key_of(p))]
        return [_key_of(p) for p in sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))]

    def records(self, folder: str) -> list[tuple[str, dict[str, Any]]]:
        """(key, record) of every JSON file in ``folder`` (classified, failed, outbox, rejected), in key order."""
        return [(p.stem, json.loads(p.read_text())) for p in sorted((self.root / folder).glob("*.json"))]

    def write_bytes(self, target: Path, data: bytes) -> Path:
        """Write ``data`` to ``target`` atomically: a temporary file, fsync, rename, fsync of the folder; on an OSError (a full
        disk) nothing is left behind and the error is raised."""
        tmp = self.root / "tmp" / f"{target.name}.{secrets.token_hex(4)}"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:  # a full disk, say: the partial copy would only hold space
            tmp.unlink(missing_ok=True)
            raise
        fsync_path(target.parent)
        return target

    def write_json(self, target: Path, record: dict[str, Any]) -> Path:
        return self.write_bytes(target, json_bytes(record))

    def stage(self, target: Path, data: bytes) -> Staged:
        """Write ``data`` to a temporary file of its own for ``target``: the first half of an atomic write, neither durable
        nor in place until :meth:`commit`. On an OSError (a full disk) nothing is left behind and the error is raised."""
        tmp = self.root / "tmp" / f"{target.name}.{secrets.token_hex(4)}"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp, target

    def commit(self, steps: Sequence[Sequence[Staged]]) -> None:
        """Put staged files in place durably, in one group commit: every temporary file fsynced (:data:`SYNC_THREADS` at
        a time, so the file system commits them together), then step by step each step's files renamed and their folders
        fsynced, so no file of a step is in place before every file of the steps before it is. On an OSError the error is
        raised and what is left stays staged; committing the same steps again finishes the work. One thread commits at a
        time (the worker's committer); the fsync threads are the store's, for as long as it is open."""
        tmps = [tmp for step in steps for tmp, _ in step if tmp.exists()]  # not there: in place already, by an earlier try
        if tmps:
            if self._syncs is None:
                self._syncs = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="edgecxr-fsync")
            list(self._syncs.map(fsync_path, tmps))
        for step in steps:
            for tmp, target in step:
                if tmp.exists():
                    os.replace(tmp, target)
            for folder in sorted({target.parent for _, target in step}):
                fsync_path(folder)


def json_bytes(record: dict[str, Any]) -> bytes:
    """A JSON record as the store writes it: one line, keys sorted."""
    return (json.dumps(record, sort_keys=True) + "\n").encode()


def received_file(root: str | os.PathLike, key: str) -> Path | None:
    """The received file of ``key`` in the store at ``root``, or None (for readers that do not open the store)."""
    found = sorted((Path(root) / "received").glob(f"{key}.*"))
    return found[0] if found else None


def _key_of(path: Path) -> str:
    return path.name.split(".", 1)[0]
