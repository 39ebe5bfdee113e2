"""The running service's health in one line and one file, ``STORE/status.json``, for ``edgecxr listen --check``.

While ``listen`` runs it rewrites the status file every second: ``{"pid", "updated", "state",
"queue", "to_send", "free_mb", "last_error"}``. The file is written in place at a fixed size
(padded), so rewriting it needs no new space on a full disk. ``state`` is ``ok``, ``store not
writable`` (the worker waits for space, C-STORE answers 0xA700), or ``worker stopped`` (the
process then exits 3). :func:`check` reads it from another process: healthy only when a process
holds the store's lock, its status is fresh and ``ok``; :func:`as_json` is the same as one JSON object.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SIZE = 4096  # bytes of the status file, always
STALE = 30.0  # s: a status older than this means the process is hung


@dataclass(frozen=True)
class Status:
    """What the service reports about itself."""

    pid: int
    updated: float
    state: str
    queue: int
    to_send: int
    free_mb: float
    last_error: str | None

    @property
    def line(self) -> str:
        """The one-line summary (no time, so it changes only when something does)."""
        return f"{self.state}; {self.queue} films queued, {self.to_send} results to send, {self.free_mb:.0f} MB free; last error: {self.last_error or 'none'}"


def write_status(root: Path, status: Status) -> None:
    """Rewrite ``root/status.json`` in place (never a larger file, so it needs no new blocks once made)."""
    text = json.dumps(asdict(status))[: SIZE - 1]
    data = text.encode().ljust(SIZE - 1) + b"\n"
    fd = os.open(root / "status.json", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)


def check(root: str | os.PathLike) -> tuple[bool, str]:
    """(healthy, one line saying why) for the store at ``root``, from another process."""
    healthy, line, _ = examine(root)
    return healthy, line


def as_json(root: str | os.PathLike) -> dict[str, Any]:
    """What ``listen --check --json`` prints: ``{"healthy", "line", "status"}`` (the status file's fields, or null)."""
    healthy, line, status = examine(root)
    return {"healthy": healthy, "line": line, "status": asdict(status) if status is not None else None}


def examine(root: str | os.PathLike) -> tuple[bool, str, Status | None]:
    """(healthy, one line saying why, the status read) for the store at ``root``, from another process."""
    root = Path(root)
    try:
        with open(root / "lock", "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pass  # held: a process serves the store
            else:
                return False, f"{root}: no edgecxr process serves this store", None
    except OSError as exc:
        return False, f"{root}: not a store ({exc.strerror})", None
    try:
        status = Status(**json.loads((root / "status.json").read_text()))
    except (OSError, ValueError, TypeError):
        return False, f"{root}: served, but without a readable status (an older edgecxr, or just starting)", None
    age = time.time() - status.updated
    if age > STALE:
        return False, f"{root}: not responding (status {age:.0f} s old); {status.line}", status
    return status.state == "ok", status.line, status
