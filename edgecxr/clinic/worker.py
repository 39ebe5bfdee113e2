"""The classifying thread: each received instance is read, classified and turned into results exactly once.

Receivers only write the instance to the store and :meth:`Worker.submit` its key, so an
association never waits for inference. For one key the worker writes, in this order, each file
atomically: the results (one file per writer of :mod:`edgecxr.clinic.writers`: ``results/<key>.sr.dcm`` and
``.sc.dcm``, or ``<key>.png`` for a dropped file that is not DICOM), the send-queue entry (with a forward target), then the result record
``classified/<key>.json`` (:class:`edgecxr.clinic.record.ResultRecord`); only then the ``classified`` audit line and the ``results.jsonl`` line.
A crash before the record leaves the key pending and a restart redoes it, making the same
results (their UIDs come from the source's); a crash after it leaves the log lines to
:func:`edgecxr.clinic.service.reconcile`. A film that cannot be classified gets
``failed/<key>.json`` and a ``failed`` line, and is not tried again (as does a film the routing rules,
:mod:`edgecxr.clinic.routing`, say is outside the model's intended use: ``stage: route``); a DICOM film also gets a
"not analysable" Structured Report saying why (sent like any result), so every film the PACS was
told was received gets an answer. A store that cannot be written holds the worker on that film
(:class:`Worker`) until it can.
"""
from __future__ import annotations

import contextlib
import json
import queue
import threading
from collections.abc import Callable
from pathlib import Path

import pydicom

from edgecxr.clinic.journal import Journal
from edgecxr.clinic.record import ResultRecord
from edgecxr.clinic.results import ModelIdentity
from edgecxr.clinic.routing import route
from edgecxr.clinic.store import Store
from edgecxr.clinic.writers import Made, not_analysable, sent, writers_for
from edgecxr.core.cardparts import IntendedFilms
from edgecxr.core.checks import Check
from edgecxr.core.imageio import ImageError, LoadedImage, load_image
from edgecxr.core.model import Model, Prediction


class Worker:
    """One thread classifying submitted keys in order; :meth:`drain` finishes what was submitted and stops it.

    A film that cannot be read or classified is failed (``failed/<key>.json``) and the worker goes
    on; a store that cannot be written (a full disk, say) leaves the film pending, sets
    :attr:`blocked`, tells ``on_error`` why, and the same film is tried again every ``retry``
    seconds until the write succeeds, so work resumes by itself when space returns.
    """

    def __init__(
        self, store: Store, audit: Journal, results: Journal, model: Model, forward: bool,
        file_of: Callable[[str], str | None] = lambda key: None, on_queued: Callable[[], None] = lambda: None,
        on_error: Callable[[str], None] = lambda reason: None, retry: float = 5.0, rules: IntendedFilms | None = None,
    ) -> None:
        self.store, self.audit, self.results, self.model, self.forward = store, audit, results, model, forward
        self.file_of, self.on_queued, self.on_error, self.retry = file_of, on_queued, on_error, retry
        self.rules = rules or model.card.films
        self.identity = ModelIdentity(model.name, model.card.version, model.card.sha256 or "")
        self.blocked = False  # the last write to the store failed; the film is tried again
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._submitted: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgecxr-worker", daemon=True)

    def start(self) -> Worker:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def depth(self) -> int:
        """How many submitted films wait (including the one being classified)."""
        return self._queue.qsize()

    def submit(self, key: str) -> None:
        """Queue ``key`` for classification (a key already queued in this run is not queued again)."""
        with self._lock:
            if key in self._submitted:
                return
            self._submitted.add(key)
        self._queue.put(key)

    def drain(self) -> None:
        """Classify everything submitted so far, then stop the thread (while the store cannot be written, stop at once:
        what is left stays pending for the next start)."""
        self._stopping.set()
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (key := self._queue.get()) is not None:
            while not self._attempt(key):
                if self._stopping.wait(self.retry):
                    return

    def _attempt(self, key: str) -> bool:
        """Process ``key``; False when the store could not be written (the film stays pending)."""
        try:
            self.process(key)
        except OSError as exc:
            reason = f"cannot write to the store ({exc.strerror or type(exc).__name__}); the worker tries again every {self.retry:g} s"
            self.on_error(reason)
            if not self.blocked:
                self.blocked = True
                with contextlib.suppress(OSError):  # the audit log is on the same full disk, most likely
                    self.audit.write("failed", key, stage="store", reason=reason)
            return False
        except Exception as exc:  # a bug, not the film's fault: logged, the film failed, the worker goes on
            with contextlib.suppress(Exception):
                self._fail(key, f"unexpected error ({type(exc).__name__})")
            return True
        if self.blocked:
            self.blocked = False
            self.audit.write("resumed", key, reason="the store can be written again")
        return True

    def process(self, key: str) -> None:
        """Classify the received instance ``key`` unless it already has a result or a failure.

        Raises OSError when the store cannot be written: nothing is marked done then, so it is redone.
        """
        source, done = self.store.received(key), self.store.classified(key)
        failed = self.store.path("failed", key, ".json")
        if done is not None:  # its log lines too, if a full disk kept them out (each is written once)
            return log_result(self.audit, self.results, ResultRecord.from_dict(done), self.file_of(key))
        if failed.exists():
            self.audit.once("failed", key, **json.loads(failed.read_text()))
            return
        if source is None:
            return
        try:
            silent: list[str] = []
            if source.suffix == ".dcm":
                outside, silent = route(pydicom.dcmread(source, stop_before_pixels=True), self.rules)
                if outside is not None:
                    return self._fail(key, outside, stage="route")
            loaded = load_image(source)
            prediction = self.model.predict(loaded, heatmap=self.model.has_heatmap)
            prediction.checks.extend(Check("header_silent", text) for text in silent)
            made = self._make_results(key, source, loaded, prediction)
        except ImageError as exc:
            return self._fail(key, exc.reason)
        except Exception as exc:  # one bad film never stops the worker; the message may quote the film, its type does not
            return self._fail(key, f"unexpected error ({type(exc).__name__})")
        files = [self.store.write_bytes(self.store.path("results", key, suffix), data).name for suffix, data in made]
        record = ResultRecord.of(key, prediction, self.identity, files)
        self._queue_send(key, files)
        self.store.write_json(self.store.path("classified", key, ".json"), record.to_dict())
        log_result(self.audit, self.results, record, self.file_of(key))
        self._sent_on(files)

    def _make_results(self, key: str, source: Path, loaded: LoadedImage, prediction: Prediction) -> list[tuple[str, bytes]]:
        """(suffix, bytes) of every writer's file for this film (:mod:`edgecxr.clinic.writers`), made in memory: nothing is
        written here, so a store that cannot be written is told from a film that cannot be analysed."""
        made = Made(source, loaded, prediction, self.identity)
        if loaded.format == "dicom":
            made.variant = self._variant(key, made.header)
        return [(w.suffix, w.make(made)) for w in writers_for(loaded)]

    def _variant(self, key: str, header: pydicom.Dataset) -> str:
        """"" for a film keyed by its UID alone, else its key (it came with the UID of another film: see instance_key)."""
        return "" if key == self.store.key(str(header.get("SOPInstanceUID", ""))) else key

    def _queue_send(self, key: str, files: list[str]) -> None:
        to_send = sent(files)
        if self.forward and to_send:
            self.store.write_json(self.store.path("outbox", key, ".json"), {"files": to_send, "attempts": 0, "next_try": 0.0})

    def _sent_on(self, files: list[str]) -> None:
        if self.forward and sent(files):
            self.on_queued()

    def _fail(self, key: str, reason: str, stage: str = "classify") -> None:
        """Fail the film for good; a DICOM film still gets a result, a "not analysable" report, so the PACS hears of it."""
        source = self.store.received(key)
        files = []
        if source is not None and source.suffix == ".dcm":
            try:
                header = pydicom.dcmread(source, stop_before_pixels=True)
                suffix, report = not_analysable(header, reason, self.identity, self._variant(key, header))
            except Exception:  # a header too broken for even that: the failure line says why
                report = None
            if report is not None:
                files.append(self.store.write_bytes(self.store.path("results", key, suffix), report).name)
        self._queue_send(key, files)
        failure = {"stage": stage, "reason": reason, "model_sha256": self.identity.sha256, **({"results": files} if files else {})}
        self.store.write_json(self.store.path("failed", key, ".json"), failure)
        self.audit.once("failed", key, **failure)
        if stage != "route":  # a film outside the intended use is no error of the service
            self.on_error(f"a film could not be analysed: {reason}")
        self._sent_on(files)


def log_result(audit: Journal, results: Journal, record: ResultRecord, file: str | None) -> None:
    """The ``classified`` audit line and the ``results.jsonl`` line of a result record, each once."""
    audit.once("classified", record.key, **record.audit())
    results.once("result", record.key, **record.line(file))
