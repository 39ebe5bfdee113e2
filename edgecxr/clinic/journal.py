"""Append-only JSON-lines logs (``STORE/audit.jsonl``, ``STORE/results.jsonl``), each line fsynced before it counts.

A line is ``{"time": <UTC, ms>, "event": ..., "key": ..., ...}``. :meth:`Journal.once` writes an
event for a key only if the log does not hold it yet, so work redone after a crash (the state on
disk is the truth; the log catches up with it at start, see :mod:`edgecxr.clinic.service`) never
logs twice. A line cut short by a crash is skipped when read and closed off before the next append; a
line that cannot be written (a full disk) is cut off again and the OSError raised, so the caller knows.

The audit log's events: ``received``, ``classified``, ``sent``, ``failed``, ``rejected``. What a
caller may put in a line is its business; the callers here put in only keys, model identity,
results, warnings and reasons of their own wording, never a value read from a DICOM header.
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def utc_ms() -> str:
    """The current UTC time, ISO 8601 to the millisecond."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def read_lines(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The complete lines of a journal (a torn last line is left out); [] when there is none."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class Journal:
    """One JSON-lines file, appended to by any thread; ``echo`` is also given each line written (to print it, say)."""

    def __init__(self, path: str | os.PathLike, echo: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.path, self.echo = Path(path), echo
        self._lock = threading.Lock()
        self._seen = {(r.get("event"), r.get("key")) for r in read_lines(self.path)}
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # held for the life of the process
        if os.lseek(self._fd, 0, os.SEEK_END) and not _ends_with_newline(self.path):
            os.write(self._fd, b"\n")  # close off a line a crash cut short

    def write(self, event: str, key: str | None, **fields: Any) -> dict[str, Any]:
        """Append one line now (fsynced); return it."""
        with self._lock:
            return self._append(event, key, fields)

    def once(self, event: str, key: str, **fields: Any) -> bool:
        """Append the line unless the journal already holds ``event`` for ``key``; True when it was written."""
        with self._lock:
            if (event, key) in self._seen:
                return False
            self._append(event, key, fields)
            return True

    def once_many(self, lines: list[tuple[str, str, dict[str, Any]]]) -> int:
        """:meth:`once` for each ``(event, key, fields)``, with one fsync for all (a group commit); how many were written.
        On an OSError none of them counts as written (the file is cut back) and the error is raised."""
        with self._lock:
            start = os.lseek(self._fd, 0, os.SEEK_END)
            pending: set[tuple[str, str | None]] = set()
            written: list[dict[str, Any]] = []
            try:
                for event, key, fields in lines:
                    if (event, key) not in self._seen and (event, key) not in pending:
                        written.append(self._append(event, key, fields, sync=False, seen=pending))
                if written:
                    os.fsync(self._fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, start)
                raise
            self._seen |= pending
            if self.echo is not None:
                for record in written:
                    self.echo(record)
            return len(written)

    def _append(self, event: str, key: str | None, fields: dict[str, Any], sync: bool = True, seen: set[Any] | None = None) -> dict[str, Any]:
        """Write and fsync (unless not ``sync``) one line, noting it in ``seen`` (the journal's own set unless given); on an
        OSError (a full disk, say) the file is cut back to where it was and the error raised."""
        record = {"time": utc_ms(), "event": event, "key": key, **fields}
        end = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            data = memoryview((json.dumps(record) + "\n").encode())
            while data:
                data = data[os.write(self._fd, data):]
            if sync:
                os.fsync(self._fd)
        except OSError:
            with contextlib.suppress(OSError):  # truncating frees space, it needs none
                os.ftruncate(self._fd, end)
            raise
        if seen is not None:  # a line of once_many: noted and echoed once all are durable
            seen.add((event, key))
            return record
        self._seen.add((event, key))
        if self.echo is not None:
            self.echo(record)
        return record


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"
