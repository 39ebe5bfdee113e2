"""``edgecxr watch FOLDER``: films dropped into a folder (recursive) are taken into the store once each.

Every ``interval`` seconds the folder is listed. A file is read only when its size and
modification time are the same on two listings in a row (a file still being written is left
alone), and only if its suffix is an image one (:data:`edgecxr.core.imageio.IMAGE_SUFFIXES`) or it has
none and carries the DICOM marker (files such as ``x.dcm.part`` are never read). A DICOM file
is keyed as `listen` keys it (:func:`edgecxr.clinic.instances.instance_key`: its SOP Instance
UID and pixel data), anything else by its content, so a file is processed once however often it
is seen, renamed or copied, across restarts. A DICOM file that fails the header checks or does
not parse is refused (``rejected/<key>.json`` and a ``rejected`` line) by its *content*: the same
bytes are not read again, but the file once completed (a copy that paused half-way past the
stable-size wait) or corrected is. An accepted file is copied into ``received/`` and goes to the worker. Which file a key came from is kept in
``STORE/watch.jsonl`` (the path relative to FOLDER) for ``results.jsonl``; the audit log never names it.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

from edgecxr.clinic.instances import CHANGED, dicom_file_key
from edgecxr.clinic.journal import Journal, read_lines
from edgecxr.clinic.service import Service
from edgecxr.core.imageio import IMAGE_SUFFIXES, is_dicom


class Watcher:
    """Polls one folder for the service; ``files`` ({key: path relative to the folder}) is kept up to date."""

    def __init__(self, service: Service, folder: str | os.PathLike, files: dict[str, str]) -> None:
        self.service, self.folder, self.files = service, Path(folder), files
        path = service.store.root / "watch.jsonl"
        self.files.update({r["key"]: r["file"] for r in read_lines(path) if r.get("event") == "ingested"})
        self.sources = Journal(path)
        self._seen: dict[Path, tuple[int, int]] = {}  # size and mtime at the previous listing
        self._done: dict[Path, tuple[int, int]] = {}  # taken (or left alone) at this size and mtime

    def scan(self) -> int:
        """One listing; returns how many files were taken in."""
        taken = 0
        store_root = self.service.store.root.resolve()
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file()):
            try:
                st = path.stat()
            except OSError:  # gone since the listing
                continue
            now = (st.st_size, st.st_mtime_ns)
            if self._done.get(path) == now or store_root in path.resolve().parents:
                continue
            if self._seen.get(path) != now or st.st_size == 0:  # new or still changing: look again next time
                self._seen[path] = now
                continue
            self._done[path] = now
            taken += self.ingest(path)
        return taken

    def ingest(self, path: Path) -> int:
        """Take in one stable file; 1 when it went to the worker."""
        suffix = path.suffix.lower()
        try:
            data = path.read_bytes()
        except OSError:
            return 0  # vanished or unreadable now; seen again if it changes
        dicom = suffix == ".dcm" or (suffix == "" and is_dicom(data))
        if suffix not in IMAGE_SUFFIXES and not dicom:
            return 0
        store, audit = self.service.store, self.service.audit
        refused, key, verdict = dicom_file_key(store, data) if dicom else (None, store.content_key(data), "new")
        if verdict == "same" or store.known(key):  # a resend, a copy, or the same bytes refused before
            return 0
        if refused is not None:
            store.write_json(store.path("rejected", key, ".json"), {"reason": refused})
            audit.once("rejected", key, reason=refused, via="watch")
            return 0
        if verdict == "changed":
            audit.write("warning", key, reason=CHANGED, via="watch")
        relative = path.relative_to(self.folder).as_posix()
        self.sources.once("ingested", key, file=relative)
        self.files[key] = relative
        store.write_bytes(store.path("received", key, ".dcm" if dicom else suffix), data)
        audit.once("received", key, via="watch", format="dicom" if dicom else suffix.lstrip("."))
        self.service.worker.submit(key)
        return 1


def run(service: Service, folder: str | os.PathLike, interval: float, files: dict[str, str], stop: threading.Event) -> None:
    """Watch ``folder`` until ``stop`` is set (see :func:`edgecxr.clinic.service.stop_on_signal`), then drain the service."""
    watcher = Watcher(service, folder, files)
    service.start()
    while True:
        watcher.scan()
        if stop.wait(interval):
            break
    service.stop()
