"""Append-only JSON-lines logs (``STORE/audit.jsonl``, ``STORE/results.jsonl``), each line fsynced before it counts.

A line is ``{"time": <UTC, ms>, "event": ..., "key": ..., ...}``. :meth:`Journal.once` writes an
event for a key only if the log does not hold it yet, so work redone after a crash (the state on
disk is the truth; the log catches up with it at start, see :mod:`edgecxr.clinic.service`) never
logs twice. What is the same line is its *pair* (:func:`pair_of`): its event and key and, for a
``failed`` line, its ``stage`` too (a film refused at ``receive`` may still fail at ``classify``,
each logged once). A line cut short by a crash is skipped when read and closed off before the next
append; a line that cannot be written (a full disk) is cut off again and the OSError raised, so the
caller knows.

The audit log's events: ``received``, ``classified``, ``sent``, ``failed``, ``rejected``. What a
caller may put in a line is its business; the callers here put in only keys, model identity,
results, warnings and reasons of their own wording, never a value read from a DICOM header.

**Rotation and retention** (:class:`Rotation`, for the logs ``audit.jsonl`` and ``results.jsonl``; a journal
given none, such as ``watch.jsonl``, is the store's state and is never rotated): before a line is
written, a file that has reached ``max_bytes``, or (with ``keep_days``) holds a line of an earlier
UTC day, is renamed ``<name>.<UTC time>Z`` (a *segment*) and a new file begun. A segment rotated more
than ``keep_days`` ago is retired (deleted). :func:`read_journal` reads the kept segments and the
file in order. The store's own files (received films, results, the send queue) are never touched:
retention drops log lines, never work.

**The keys file** ``<name>.keys`` holds the pairs of every segment, so a start reads it and the live
file, never a segment (:meth:`Journal.once` still knows every line ever written, retired or not). Text
lines, appended and fsynced, never rewritten: ``<event>\\t<key>`` or ``failed\\t<key>\\t<stage>``, a
pair; ``#covers\\t<segment name>``, after the pairs of that segment, which the file then *covers*.
A segment is covered just after it is renamed (its pairs, then the mark, fsynced), so a crash
at any point loses no pair: a segment the file does not cover (a crash before the mark, a failed
write, a segment rotated by a version before the marks) is read at the next start, or before it is
retired, and covered then; a pair may be in the file twice, never missing. A torn last line is cut
off at start. A ``failed`` pair without its stage (written before the stage was kept) stands for
every stage of that key, as it did.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def utc_ms() -> str:
    """The current UTC time, ISO 8601 to the millisecond."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


KEYS = ".keys"  # suffix of the file of the pairs of every segment (module docstring)
COVERS = "#covers"  # a line of the keys file naming a segment whose pairs precede it
STAMP = "%Y%m%dT%H%M%S"  # a segment's name: <name>.<STAMP><ms>Z (the UTC time it was rotated)
STAGED = "failed"  # the event whose pair holds the line's stage too

Pair = tuple[Any, Any, Any]  # (event, key, stage): what makes a line the same as another (pair_of)


def pair_of(event: Any, key: Any, fields: Mapping[str, Any]) -> Pair:
    """The pair of a line: its event and key, and its ``stage`` for a ``failed`` line (else None)."""
    stage = fields.get("stage") if event == STAGED else None
    return event, key, None if stage is None else str(stage)


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


def read_keys(path: str | os.PathLike) -> tuple[set[Pair], set[str]]:
    """The pairs and the covered segments' names of the keys file at ``path`` (its complete lines); empty when there is none."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return set(), set()
    pairs: set[Pair] = set()
    covered: set[str] = set()
    for line in data[: data.rfind(b"\n") + 1].decode("utf-8", "replace").splitlines():
        event, *rest = line.split("\t")
        if event == COVERS and len(rest) == 1:
            covered.add(rest[0])
        elif len(rest) in (1, 2) and all(rest) and "\0" not in line:  # NULs: blocks a crash left unwritten
            pairs.add((event, rest[0], rest[1] if len(rest) == 2 else None))
    return pairs, covered


class Journal:
    """One JSON-lines file, appended to by any thread; ``echo`` is also given each line written (to print it, say)."""

    def __init__(self, path: str | os.PathLike, echo: Callable[[dict[str, Any]], None] | None = None, rotation: Rotation | None = None) -> None:
        self.path, self.echo, self.rotation = Path(path), echo, rotation
        self.keys = self.path.with_name(self.path.name + KEYS)
        self._lock = threading.Lock()
        _cut_torn_line(self.keys)
        self._seen, self._covered = read_keys(self.keys)
        for segment in segments(self.path):  # only those the keys file does not cover yet (module docstring)
            if segment.name not in self._covered:
                pairs = _pairs(read_lines(segment))
                with contextlib.suppress(OSError):  # held all the same; covered at the next start instead
                    self._cover(segment, pairs)
        current = read_lines(self.path)
        self._file = _pairs(current)  # the pairs of the live file: the keys of its segment once it is rotated
        self._seen |= self._file
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
        """Append the line unless the journal already holds its pair (:func:`pair_of`); True when it was written."""
        with self._lock:
            if self._known(pair_of(event, key, fields)):
                return False
            self._rotate_if_due()
            self._append(event, key, fields)
            return True

    def once_many(self, lines: list[tuple[str, str, dict[str, Any]]]) -> int:
        """:meth:`once` for each ``(event, key, fields)``, with one fsync for all (a group commit); how many were written.
        On an OSError none of them counts as written (the file is cut back) and the error is raised."""
        with self._lock:
            if all(self._known(pair_of(event, key, fields)) for event, key, fields in lines):
                return 0
            self._rotate_if_due()  # once, before the batch's lines
            start = os.lseek(self._fd, 0, os.SEEK_END)
            pending: set[Pair] = set()
            written: list[dict[str, Any]] = []
            try:
                for event, key, fields in lines:
                    pair = pair_of(event, key, fields)
                    if not self._known(pair) and pair not in pending:
                        written.append(self._append(event, key, fields, sync=False, seen=pending))
                if written:
                    os.fsync(self._fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, start)
                raise
            self._seen |= pending
            self._file |= pending
            if self.echo is not None:
                for record in written:
                    self.echo(record)
            return len(written)

    def _known(self, pair: Pair) -> bool:
        """Whether the journal holds ``pair`` (or, for a ``failed`` pair, that key's pair of an old line without its stage)."""
        return pair in self._seen or (pair[2] is not None and (pair[0], pair[1], None) in self._seen)

    def _append(self, event: str, key: str | None, fields: dict[str, Any], sync: bool = True, seen: set[Any] | None = None) -> dict[str, Any]:
        """Write and fsync (unless not ``sync``) one line, noting its pair in ``seen`` (the journal's own sets unless given);
        on an OSError (a full disk, say) the file is cut back to where it was and the error raised."""
        record = {"time": utc_ms(), "event": event, "key": key, **fields}
        _append_or_cut(self._fd, (json.dumps(record) + "\n").encode(), sync)
        pair = pair_of(event, key, fields)
        if seen is not None:  # a line of once_many: noted and echoed once all are durable
            seen.add(pair)
            return record
        self._seen.add(pair)
        self._file.add(pair)
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
        """Rename the file to a new segment and begin an empty one (on an OSError, the file stays as it was); cover the
        segment in the keys file; retire old segments."""
        now = datetime.now(timezone.utc)
        name = f"{self.path.name}.{now.strftime(STAMP)}{now.microsecond // 1000:03d}Z"
        segment = next(p for n in range(10**6)
                       if not (p := self.path.with_name(f"{name}-{n}" if n else name)).exists() and p.name not in self._covered)
        os.fsync(self._fd)
        os.rename(self.path, segment)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            os.rename(segment, self.path)  # no room for a new file: go on with this one
            raise
        os.close(self._fd)
        rotated, self._file = self._file, set()
        self._fd, self._day = fd, None
        with contextlib.suppress(OSError):  # not covered now: covered at the next start, or before it is retired
            fsync_path(self.path.parent)  # the rename durable before the keys say the segment holds the pairs
            self._cover(segment, rotated)
            self._retire()

    def _cover(self, segment: Path, pairs: Iterable[Pair]) -> None:
        """Note ``pairs`` (``segment``'s) as held, and append them to the keys file with the mark that it covers ``segment``
        (fsynced; on an OSError the keys file is cut back and the error raised, the segment still not covered)."""
        pairs = set(pairs)
        self._seen |= pairs
        text = "".join("\t".join(p for p in pair if p is not None) + "\n" for pair in pairs if _keyable(pair))
        fd = os.open(self.keys, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            _append_or_cut(fd, f"{text}{COVERS}\t{segment.name}\n".encode())
        finally:
            os.close(fd)
        self._covered.add(segment.name)

    def _retire(self) -> None:
        """Delete the segments rotated more than ``keep_days`` ago (one the keys file does not cover is covered first)."""
        keep_days = self.rotation.keep_days if self.rotation else None
        if keep_days is None:
            return
        horizon = time.time() - keep_days * 86400
        for segment in segments(self.path):
            if rotated_at(segment) >= horizon:
                break  # segments are in time order
            if segment.name not in self._covered:
                self._cover(segment, _pairs(read_lines(segment)))
            segment.unlink()
        fsync_path(self.path.parent)


def _pairs(lines: Iterable[dict[str, Any]]) -> set[Pair]:
    return {pair_of(r.get("event"), r.get("key"), r) for r in lines}


def _keyable(pair: Pair) -> bool:
    """Whether ``pair`` has a line in the keys file: a key, and no field that would break the line (or pose as a mark)."""
    return pair[1] is not None and pair[0] != COVERS and all(isinstance(p, str) and p and not set(p) & {"\t", "\n", "\r"} for p in pair if p is not None)


def _cut_torn_line(path: Path) -> None:
    """Cut off a last line a crash left without its newline (its pairs are in a segment the file does not cover yet)."""
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size and not _ends_with_newline(path):
            os.truncate(path, path.read_bytes().rfind(b"\n") + 1)


def _append_or_cut(fd: int, data: bytes, sync: bool = True) -> None:
    """Append ``data`` to the file open at ``fd`` and fsync it (unless not ``sync``); on an OSError (a full disk, say) cut
    the file back to where it was and raise the error."""
    end = os.lseek(fd, 0, os.SEEK_END)
    try:
        _write_all(fd, data)
        if sync:
            os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):  # truncating frees space, it needs none
            os.ftruncate(fd, end)
        raise


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
