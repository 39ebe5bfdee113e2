"""A film uploaded through the page or ``POST /api/predict``, taken into the upload store (``STORE/web/``).

The upload store is a store of its own (:class:`edgecxr.clinic.store.Store`, its own salt and
lock), classified by the same worker as ``listen`` and ``watch`` (:mod:`edgecxr.clinic.service`),
so an upload gets the same result record, result picture and log lines. Only the content says
what a file is (PNG, JPEG, BMP, TIFF, DICOM); it is stored as ``received/<key>.<suffix>``, keyed
like ``watch`` keys a dropped file. The name it was uploaded under is kept only as text, in
``STORE/web/uploads.jsonl`` and the results line, never used as a path. A DICOM upload that
re-uses an earlier one's SOP Instance UID with other pixels is a new study
(:func:`edgecxr.clinic.instances.instance_key`, the rule ``listen`` and ``watch`` key DICOM by); its ``uploaded`` line carries the warning.
"""
from __future__ import annotations

import unicodedata
from pathlib import Path

from edgecxr.clinic.instances import CHANGED, dicom_file_key
from edgecxr.clinic.journal import Journal, read_lines
from edgecxr.clinic.service import Service
from edgecxr.core.headers import raster_format
from edgecxr.core.imageio import is_dicom

ACCEPTED = "PNG, JPEG, BMP, TIFF or DICOM"
NAME_CHARS = 200
LOG = "uploads.jsonl"


class UploadError(Exception):
    """An upload that is refused before it is stored; ``str()`` says why, for the person uploading."""


def kind_of(data: bytes) -> str | None:
    """The stored suffix of an image file's content (``.dcm`` for DICOM), or None for anything else."""
    if is_dicom(data):
        return ".dcm"
    raster = raster_format(data)
    return raster[1] if raster else None


def shown_name(name: str | None) -> str:
    """The uploaded name as text to show: its last path part, no control characters, at most NAME_CHARS."""
    last = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    clean = "".join(c for c in last if unicodedata.category(c)[0] != "C")
    return clean[:NAME_CHARS] or "upload"


def upload_names(root: Path) -> dict[str, str]:
    """{key: the name it was uploaded under} of the upload store at ``root``."""
    return {r["key"]: r["file"] for r in read_lines(root / LOG) if r.get("event") == "uploaded"}


def upload_warnings(root: Path) -> dict[str, list[str]]:
    """{key: warnings of the upload itself} (a re-used SOP Instance UID) of the upload store at ``root``."""
    return {r["key"]: r["warnings"] for r in read_lines(root / LOG) if r.get("event") == "uploaded" and r.get("warnings")}


class Uploads:
    """The upload store's service and the names its films were uploaded under (``names``, from :func:`upload_names`)."""

    def __init__(self, service: Service, names: dict[str, str]) -> None:
        self.service, self.names = service, names
        self.warnings = upload_warnings(service.store.root)
        self.log = Journal(service.store.root / LOG)

    def take(self, data: bytes, name: str | None) -> str:
        """Store one upload and queue it for the worker (unless the same film came before); returns its key."""
        suffix = kind_of(data)
        if suffix is None:
            raise UploadError(f"not an image file: only {ACCEPTED} films are accepted")
        store = self.service.store
        key, verdict = store.content_key(data), "new"
        if suffix == ".dcm":
            refused, key, verdict = dicom_file_key(store, data)
            if refused is not None:
                raise UploadError(f"DICOM file refused: {refused}")
        if store.known(key):
            return key
        text = shown_name(name)
        warnings = [CHANGED] if verdict == "changed" else []
        self.log.once("uploaded", key, file=text, **({"warnings": warnings} if warnings else {}))
        self.names[key] = text
        if warnings:
            self.warnings[key] = warnings
        store.write_bytes(store.path("received", key, suffix), data)
        self.service.audit.once("received", key, via="web", format=suffix.lstrip("."))
        self.service.worker.submit(key)
        return key
