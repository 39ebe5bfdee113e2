"""What `listen` and `watch` share: the store opened, its logs caught up, the worker and sender run, resumed and drained.

At start, :func:`reconcile` brings the logs level with the store, whose files are the truth (a
crash can fall between a file and its log line): every received file has a ``received`` line,
every result record a ``classified`` line and a ``results.jsonl`` line, every failure a ``failed``
line. Then the pending instances are queued again and the sender finds its queue on disk.
:meth:`Service.stop` classifies everything already received, makes a last attempt at the
queue, and returns; :func:`stop_on_signal` gives an event that SIGTERM or SIGINT sets.
"""
from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import Any

from edgecxr.clinic.forward import Forwarder, Target
from edgecxr.clinic.journal import Journal
from edgecxr.clinic.record import ResultRecord
from edgecxr.clinic.store import Store
from edgecxr.clinic.worker import Worker, log_result
from edgecxr.core.model import Model


class Service:
    """A store with its audit log, results log, worker and (with a target) sender."""

    def __init__(
        self, store: str | os.PathLike, model: Model, target: Target | None, ae_title: str, retry: float,
        file_of: Callable[[str], str | None] = lambda key: None, echo: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.store = Store(store)
        self.audit = Journal(self.store.root / "audit.jsonl", echo=echo)
        self.results = Journal(self.store.root / "results.jsonl")
        self.file_of = file_of
        self.forwarder = Forwarder(self.store, self.audit, target, ae_title, retry) if target else None
        self.worker = Worker(
            self.store, self.audit, self.results, model, forward=target is not None, file_of=file_of,
            on_queued=self.forwarder.wake if self.forwarder else lambda: None,
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
        """Finish the queued classifications, try the send queue once more, stop, and close the store."""
        self.worker.drain()
        if self.forwarder:
            self.forwarder.stop()
        self.store.close()

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
