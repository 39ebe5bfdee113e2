"""The classifying thread: each received instance is read, classified and turned into results exactly once.

Receivers only write the instance to the store and :meth:`Worker.submit` its key, so an
association never waits for inference. For one key the worker writes, in this order, each file
atomically: the results (one file per writer of :mod:`edgecxr.clinic.writers`: ``results/<key>.sr.dcm`` and
``.sc.dcm``, or ``<key>.png`` for a dropped file that is not DICOM), the send-queue entry (with a forward target), then the result record
``classified/<key>.json`` (:class:`edgecxr.clinic.record.ResultRecord`); only then the ``classified`` audit line and the ``results.jsonl`` line.
A crash before the record leaves the key pending and a restart redoes it, making the same
results (their UIDs come from the source's); a crash after it leaves the log lines to
:func:`edgecxr.clinic.service.reconcile`. A film that cannot be classified gets
``failed/<key>.json`` and a ``failed`` line, and is not tried again.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path

from edgecxr.clinic.journal import Journal
from edgecxr.clinic.record import ResultRecord
from edgecxr.clinic.results import ModelIdentity
from edgecxr.clinic.store import Store
from edgecxr.clinic.writers import Made, sent, writers_for
from edgecxr.core.imageio import ImageError, LoadedImage, load_image
from edgecxr.core.model import Model, Prediction


class Worker:
    """One thread classifying submitted keys in order; :meth:`drain` finishes what was submitted and stops it."""

    def __init__(
        self, store: Store, audit: Journal, results: Journal, model: Model, forward: bool,
        file_of: Callable[[str], str | None] = lambda key: None, on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self.store, self.audit, self.results, self.model, self.forward = store, audit, results, model, forward
        self.file_of, self.on_queued = file_of, on_queued
        self.identity = ModelIdentity(model.name, model.card.version, model.card.sha256 or "")
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._submitted: set[str] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="edgecxr-worker", daemon=True)

    def start(self) -> Worker:
        self._thread.start()
        return self

    def submit(self, key: str) -> None:
        """Queue ``key`` for classification (a key already queued in this run is not queued again)."""
        with self._lock:
            if key in self._submitted:
                return
            self._submitted.add(key)
        self._queue.put(key)

    def drain(self) -> None:
        """Classify everything submitted so far, then stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (key := self._queue.get()) is not None:
            self.process(key)

    def process(self, key: str) -> None:
        """Classify the received instance ``key`` unless it already has a result or a failure."""
        source = self.store.received(key)
        if source is None or self.store.classified(key) is not None or self.store.path("failed", key, ".json").exists():
            return
        try:
            loaded = load_image(source)
            prediction = self.model.predict(loaded, heatmap=self.model.has_heatmap)
            files = self._write_results(key, source, loaded, prediction)
        except ImageError as exc:
            return self._fail(key, exc.reason)
        except Exception as exc:  # one bad film never stops the worker; the message may quote the film, its type does not
            return self._fail(key, f"unexpected error ({type(exc).__name__})")
        record = ResultRecord.of(key, prediction, self.identity, files)
        to_send = sent(files)
        if self.forward and to_send:
            self.store.write_json(self.store.path("outbox", key, ".json"), {"files": to_send, "attempts": 0, "next_try": 0.0})
        self.store.write_json(self.store.path("classified", key, ".json"), record.to_dict())
        log_result(self.audit, self.results, record, self.file_of(key))
        if self.forward and to_send:
            self.on_queued()

    def _write_results(self, key: str, source: Path, loaded: LoadedImage, prediction: Prediction) -> list[str]:
        """Every writer's file for this film (:mod:`edgecxr.clinic.writers`), each written atomically; their names."""
        made = Made(source, loaded, prediction, self.identity)
        return [self.store.write_bytes(self.store.path("results", key, w.suffix), w.make(made)).name for w in writers_for(loaded)]

    def _fail(self, key: str, reason: str) -> None:
        failure = {"stage": "classify", "reason": reason, "model_sha256": self.identity.sha256}
        self.store.write_json(self.store.path("failed", key, ".json"), failure)
        self.audit.once("failed", key, **failure)


def log_result(audit: Journal, results: Journal, record: ResultRecord, file: str | None) -> None:
    """The ``classified`` audit line and the ``results.jsonl`` line of a result record, each once."""
    audit.once("classified", record.key, **record.audit())
    results.once("result", record.key, **record.line(file))
