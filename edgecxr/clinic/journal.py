"""Append-only JSON-lines logs (``STORE/audit.jsonl``, ``STORE/results.jsonl``), each line fsynced before it counts.

A line is ``{"time": <UTC, ms>, "event": ..., "key": ..., ...}``. :meth:`Journal.once` writes an
event for a key only if the log does not hold it yet, so work redone after a crash (the state on
disk is the truth; the log catches up with it at start, see :mod:`edgecxr.clinic.service`) never
logs twice. A line cut short by a crash is skipped when read and closed off before the next append; a
line that cannot be written (a full disk) is cut off again and the OSError raised, so the caller knows.

The audit log's events: ``received``, ``classified``, ``sent``, ``failed``, ``rejected``. What a
caller may put in a line is its business; the callers here put in only keys, model identity,
results, warnings and reasons of their own wording, never a value read from a DICOM header.

**Rotation and retention** (:class:`Rotation`, for the logs ``audit.jsonl`` and ``results.jsonl``; a journal
given none, such as ``watch.jsonl``, is the store's state and is never rotated): before a line is
written, a file that has reached ``max_bytes``, or (with ``keep_days``) holds a line of an earlier
UTC day, is renamed ``<name>.<UTC time>Z`` (a *segment*) and a new file begun. A segment rotated more
than ``keep_days`` ago is retired: its (event, key) pairs are first appended to ``<name>.keys``
(fsynced), then the segment is deleted, so :meth:`Journal.once` still knows every line ever written
and a restart never writes again the lines of films logged long ago. :func:`read_journal` reads the
kept segments and the file in order. The store's own files (received films, results, the send
queue) are never touched: retention drops log lines, never work.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def utc_ms() -> str:
    """The current UTC time, ISO 8601 to the millisecond."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


KEYS = ".keys"  # suffix of the file of the (event, key) pairs of retired segments
STAMP = "%Y%m%dT%H%M%S"  # a segment's name: <name>.<STAMP><ms>Z (the UTC time it was rotated)


@dataclass(frozen=True)
class Rotation:
    """When a log begins a new file, and how long the old ones (its segments) are kept."""

    max_bytes: int = 64 * 2**20  # a file this large is rotated before the next line
    keep_days: float | None = None  # segments rotated longer ago are retired; None: kept for ever (and no daily rotation)

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or (self.keep_days is not None and self.keep_days <= 0):
            raise ValueError("a rotation needs max_bytes >= 1 and keep_days > 0 (or None)")


DEFAULT_ROTATION = Rotation()  # the logs of a store opened without options: a new file every 64 MB, every one kept


def segments(path: str | os.PathLike) -> list[Path]:
    """The rotated segments of the journal at ``path`` still kept, oldest first (the file itself not included).

    Only names this module gives a segment count (``<name>.<STAMP><ms>Z``, ``-<n>`` when two share a
    millisecond): a segment an operator compressed or renamed beside it is not a log to read.
    """
    path = Path(path)
    pattern = re.compile(rf"{re.escape(path.name)}\.\d{{8}}T\d{{9}}Z(-\d+)?")
    return sorted(p for p in path.parent.glob(f"{path.name}.[0-9]*") if pattern.fullmatch(p.name))


def read_journal(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every complete line the journal at ``path`` still holds: its kept segments' and then its file's, in order."""
    return [line for part in [*segments(path), Path(path)] for line in read_lines(part)]


def rotated_at(segment: Path) -> float:
    """When ``segment`` was rotated (seconds since the epoch), from its name."""
    stamp = segment.name.rsplit(".", 1)[1][:15]  # YYYYmmddTHHMMSS
    return datetime.strptime(stamp, STAMP).replace(tzinfo=timezone.utc).timestamp()


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

    def __init__(self, path: str | os.PathLike, echo: Callable[[dict[str, Any]], None] | None = None, rotation: Rotation | None = None) -> None:
        self.path, self.echo, self.rotation = Path(path), echo, rotation
        self._lock = threading.Lock()
        current = read_lines(self.path)
        older = [line for segment in segments(self.path) for line in read_lines(segment)]
        self._seen = set(_retired_pairs(self.path)) | {(r.get("event"), r.get("key")) for r in [*older, *current]}
        self._day: str | None = str(current[0].get("time", ""))[:10] if current else None  # the UTC day of the file's first line
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # held for the life of the process
        if os.lseek(self._fd, 0, os.SEEK_END) and not _ends_with_newline(self.path):
            os.write(self._fd, b"\n")  # close off a line a crash cut short
        if rotation is not None:
            with contextlib.suppress(OSError):
                self._retire()

    def write(self, event: str, key: str | None, **fields: Any) -> dict[str, Any]:
        """Append one line now (fsynced); return it."""
        with self._lock:
            self._rotate_if_due()
            return self._append(event, key, fields)

    def once(self, event: str, key: str, **fields: Any) -> bool:
        """Append the line unless the journal already holds ``event`` for ``key``; True when it was written."""
        with self._lock:
            if (event, key) in self._seen:
                return False
            self._rotate_if_due()
            self._append(event, key, fields)
            return True

    def once_many(self, lines: list[tuple[str, str, dict[str, Any]]]) -> int:
        """:meth:`once` for each ``(event, key, fields)``, with one fsync for all (a group commit); how many were written.
        On an OSError none of them counts as written (the file is cut back) and the error is raised."""
        with self._lock:
            if all((event, key) in self._seen for event, key, _ in lines):
                return 0
            self._rotate_if_due()  # once, before the batch's lines
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
            _write_all(self._fd, (json.dumps(record) + "\n").encode())
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

    def _rotate_if_due(self) -> None:
        """Before lines are appended (the lock held): rotate the file if it reached ``max_bytes`` or, with ``keep_days``,
        holds a line of an earlier UTC day. A rotation that cannot be done now (a full disk) is done before a later line."""
        today, rotation, size = utc_ms()[:10], self.rotation, os.lseek(self._fd, 0, os.SEEK_END)
        if rotation is not None and size and (size >= rotation.max_bytes or (rotation.keep_days is not None and self._day not in (None, today))):
            with contextlib.suppress(OSError):
                self._rotate()
        self._day = self._day or today  # the day of the file's first line

    def _rotate(self) -> None:
        """Rename the file to a new segment and begin an empty one (on an OSError, the file stays as it was); retire old
        segments."""
        now = datetime.now(timezone.utc)
        name = f"{self.path.name}.{now.strftime(STAMP)}{now.microsecond // 1000:03d}Z"
        segment = next(p for n in range(10**6) if not (p := self.path.with_name(f"{name}-{n}" if n else name)).exists())
        os.fsync(self._fd)
        os.rename(self.path, segment)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            os.rename(segment, self.path)  # no room for a new file: go on with this one
            raise
        os.close(self._fd)
        self._fd, self._day = fd, None
        with contextlib.suppress(OSError):  # retired at the next rotation or start instead
            fsync_path(self.path.parent)
            self._retire()

    def _retire(self) -> None:
        """Retire the segments rotated more than ``keep_days`` ago: their pairs to ``<name>.keys``, then delete them."""
        keep_days = self.rotation.keep_days if self.rotation else None
        if keep_days is None:
            return
        horizon = time.time() - keep_days * 86400
        for segment in segments(self.path):
            if rotated_at(segment) >= horizon:
                break  # segments are in time order
            pairs = "".join(f"{event}\t{key}\n" for event, key in {(r.get("event"), r.get("key")) for r in read_lines(segment)} if key is not None)
            fd = os.open(self.path.with_name(self.path.name + KEYS), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                _write_all(fd, pairs.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            segment.unlink()
        fsync_path(self.path.parent)


def _retired_pairs(path: Path) -> Iterator[tuple[str, str]]:
    """The (event, key) pairs of the retired segments of the journal at ``path``."""
    try:
        text = path.with_name(path.name + KEYS).read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    for line in text.splitlines():
        event, tab, key = line.partition("\t")
        if tab and key:
            yield event, key


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fsync_path(path: Path) -> None:
    """fsync a file or folder by its path (a folder: so the names renamed or created in it are durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"
