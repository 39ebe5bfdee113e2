"""What `listen` and `watch` share: the store opened, its logs caught up, the worker and sender run, resumed and drained.

At start, :func:`reconcile` brings the logs level with the store, whose files are the truth (a
crash can fall between a file and its log line): every received file has a ``received`` line,
every result record a ``classified`` line and a ``results.jsonl`` line, every failure a ``failed``
line. Then the pending instances are queued again and the sender finds its queue on disk.
:meth:`Service.stop` classifies everything already received, makes a last attempt at the
queue, and returns; :func:`stop_on_signal` gives an event that SIGTERM or SIGINT sets.
"""
from __future__ import annotations

import contextlib
import os
import signal
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from edgecxr.clinic import ljpeg
from edgecxr.clinic.forward import Forwarder, Target
from edgecxr.clinic.health import Status, write_status
from edgecxr.clinic.journal import DEFAULT_ROTATION, Journal, Rotation
from edgecxr.clinic.record import ResultRecord
from edgecxr.clinic.store import Store
from edgecxr.clinic.worker import Worker, log_result
from edgecxr.core.cardparts import IntendedFilms
from edgecxr.core.model import Model


class Service:
    """A store with its audit log, results log, worker and (with a target) sender."""

    def __init__(
        self, store: str | os.PathLike, model: Model, target: Target | None, ae_title: str, retry: float,
        file_of: Callable[[str], str | None] = lambda key: None, echo: Callable[[dict[str, Any]], None] | None = None,
        rules: IntendedFilms | None = None, rotation: Rotation | None = DEFAULT_ROTATION, forward_tls: ssl.SSLContext | None = None,
    ) -> None:
        ljpeg.register()  # the worker decodes JPEG Lossless SV1 films too, whichever way they came in
        self.store = Store(store)
        self.audit = Journal(self.store.root / "audit.jsonl", echo=echo, rotation=rotation)
        self.results = Journal(self.store.root / "results.jsonl", rotation=rotation)
        self.file_of = file_of
        self.last_error: str | None = None
        self.forwarder = Forwarder(self.store, self.audit, target, ae_title, retry, forward_tls, on_error=self.note_error) if target else None
        self.worker = Worker(
            self.store, self.audit, self.results, model, forward=target is not None, file_of=file_of,
            on_queued=self.forwarder.wake if self.forwarder else lambda: None, on_error=self.note_error, rules=rules,
        )

    def start(self) -> Service:
        """Catch the logs up with the store, start the threads, queue the instances a previous run left unclassified."""
        reconcile(self.store, self.audit, self.results, self.file_of)
        self.worker.start()
        if self.forwarder:
            self.forwarder.start()
        for key in self.store.pending():
            self.worker.submit(key)
        return self

    def stop(self) -> None:
        """Finish the queued classifications, try the send queue once more, stop and let the store go."""
        self.worker.drain()
        if self.forwarder:
            self.forwarder.stop()
        self.store.close()

    def note_error(self, reason: str) -> None:
        """Keep ``reason`` as the last error the status reports."""
        self.last_error = reason

    def status(self) -> Status:
        """The health now (see :mod:`edgecxr.clinic.health`)."""
        worker = self.worker
        state = "worker stopped" if not worker.alive else "store not writable" if worker.blocked else "ok"
        return Status(os.getpid(), time.time(), state, worker.depth(), sum(1 for _ in (self.store.root / "outbox").iterdir()),
                      self.store.free_bytes() / 2**20, self.last_error)

    def write_status(self) -> Status:
        """The health now, also written to ``STORE/status.json`` (a failed write is let go: the file then goes stale)."""
        status = self.status()
        with contextlib.suppress(OSError):
            write_status(self.store.root, status)
        return status

    def counts(self) -> dict[str, int]:
        """How much the store holds: received, pending, classified, failed, queued to send."""
        folder = self.store.root
        return {
            "received": sum(1 for _ in (folder / "received").iterdir()),
            "pending": len(self.store.pending()),
            "classified": sum(1 for _ in (folder / "classified").iterdir()),
            "failed": sum(1 for _ in (folder / "failed").iterdir()),
            "to_send": sum(1 for _ in (folder / "outbox").iterdir()),
        }


def reconcile(store: Store, audit: Journal, results: Journal, file_of: Callable[[str], str | None]) -> None:
    """Write the log lines a crash left out (see the module docstring); lines already there are not written again."""
    for path in sorted((store.root / "received").iterdir()):
        audit.once("received", path.name.split(".", 1)[0], recovered=True)
    for key, record in store.records("classified"):
        log_result(audit, results, ResultRecord.from_dict(record), file_of(key))
    for key, failure in store.records("failed"):
        audit.once("failed", key, **failure)


def stop_on_signal() -> threading.Event:
    """An event set when SIGTERM or SIGINT arrives (call from the main thread)."""
    arrived = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: arrived.set())
    return arrived
