"""The classifying threads: each received instance is read, classified and turned into results exactly once.

Receivers only write the instance to the store and :meth:`Worker.submit` its key, so an
association never waits for inference. :attr:`Worker.workers` threads (one per core unless told)
take the keys in turn, make each film's results in memory (the model itself runs one film at a
time: the classifier and the lung model are one interpreter each; the result picture is drawn beside it, one
per worker at most, as OpenCV lets the interpreter's lock go while it draws) and stage them (temporary
files, :meth:`edgecxr.clinic.store.Store.stage`, so no film's bytes wait in memory); one committing thread puts what they staged in place, several films at
once (a group commit: :meth:`edgecxr.clinic.store.Store.commit`, :meth:`edgecxr.clinic.journal.Journal.once_many`),
in this order, each step durable before the next: the results (one file per writer of :mod:`edgecxr.clinic.writers`: ``results/<key>.sr.dcm``
and ``.sc.dcm``, or ``<key>.png`` for a dropped file that is not DICOM), the send-queue entries
(with a forward target), the result records ``classified/<key>.json``
(:class:`edgecxr.clinic.record.ResultRecord`); only then the ``classified`` audit lines and the
``results.jsonl`` lines, and the sender is woken. A crash before a record leaves its key pending and
a restart redoes it, making the same results (their UIDs come from the source's); a crash after it
leaves the log lines to :func:`edgecxr.clinic.service.reconcile`. A film that cannot be classified gets
``failed/<key>.json`` and a ``failed`` line, and is not tried again (as does a film the routing rules,
:mod:`edgecxr.clinic.routing`, say is outside the model's intended use: ``stage: route``); a DICOM film also gets a
"not analysable" Structured Report saying why (sent like any result), so every film the PACS was
told was received gets an answer. A store that cannot be written holds the films being staged or
committed (:class:`Worker`) until it can. Nothing here acknowledges a film: the receiver did, once the film was durable.
"""
from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom

from edgecxr.clinic.journal import Journal
from edgecxr.clinic.record import ResultRecord
from edgecxr.clinic.results import ModelIdentity
from edgecxr.clinic.routing import route
from edgecxr.clinic.store import Staged, Store, json_bytes
from edgecxr.clinic.writers import Made, not_analysable, sent, writers_for
from edgecxr.core.cardparts import IntendedFilms
from edgecxr.core.checks import Check
from edgecxr.core.imageio import ImageError, load_image
from edgecxr.core.model import Model

MAX_BATCH = 32  # films in one group commit at most
Line = tuple[str, str, dict[str, Any]]  # (event, key, fields) of a journal line


@dataclass
class Outcome:
    """What one film leaves to be written, in the order of the module docstring, and what the service is then told."""

    key: str
    results: list[tuple[Path, bytes]] = field(default_factory=list)
    outbox: tuple[Path, dict[str, Any]] | None = None
    record: tuple[Path, dict[str, Any]] | None = None  # classified/<key>.json or failed/<key>.json
    audit: list[Line] = field(default_factory=list)
    logged: list[Line] = field(default_factory=list)  # results.jsonl
    error: str | None = None  # for on_error once written
    queued: bool = False  # the sender has something new
    steps: list[list[Staged]] = field(default_factory=list)  # the files above once staged (stage): results, outbox, record

    def stage(self, store: Store) -> None:
        """Write the files to temporary ones (:meth:`edgecxr.clinic.store.Store.stage`) and let their bytes go; OSError
        when the store cannot take them (nothing is left staged then)."""
        files = [self.results]
        for part in (self.outbox, self.record):
            files.append([(part[0], json_bytes(part[1]))] if part else [])
        staged: list[list[Staged]] = []
        try:
            for step in files:
                staged.append([])
                for path, data in step:
                    staged[-1].append(store.stage(path, data))
        except OSError:
            for tmp, _ in (t for step in staged for t in step):
                tmp.unlink(missing_ok=True)
            raise
        self.steps, self.results, self.outbox, self.record = staged, [], None, None


class Worker:
    """Threads classifying submitted keys; :meth:`drain` finishes what was submitted and stops them.

    A film that cannot be read or classified is failed (``failed/<key>.json``) and the workers go
    on; a store that cannot be written (a full disk, say) leaves the films being staged or committed
    pending, sets :attr:`blocked`, tells ``on_error`` why, and the same films are written again every
    ``retry`` seconds until it works, so work resumes by itself when space returns.
    """

    def __init__(
        self, store: Store, audit: Journal, results: Journal, model: Model, forward: bool,
        file_of: Callable[[str], str | None] = lambda key: None, on_queued: Callable[[], None] = lambda: None,
        on_error: Callable[[str], None] = lambda reason: None, retry: float = 5.0, rules: IntendedFilms | None = None,
        workers: int | None = None,
    ) -> None:
        self.store, self.audit, self.results, self.model, self.forward = store, audit, results, model, forward
        self.file_of, self.on_queued, self.on_error, self.retry = file_of, on_queued, on_error, retry
        self.rules = rules or model.card.films
        self.identity = ModelIdentity(model.name, model.card.version, model.card.sha256 or "")
        self.workers = workers or usable_cores()
        self.blocked = False  # the last write to the store failed; the films are written again
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._made: queue.Queue[Outcome | None] = queue.Queue(maxsize=MAX_BATCH)  # staged, to commit
        self._submitted: set[str] = set()
        self._open = 0  # submitted, not yet written (or found done)
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()  # one film at a time through the model's interpreters
        self._stopping = threading.Event()
        self._halted = threading.Event()  # the committer gave up at a stop (store not writable): the workers stop too
        self._threads = [threading.Thread(target=self._classify, name=f"edgecxr-worker-{i}", daemon=True) for i in range(self.workers)]
        self._committer = threading.Thread(target=self._commit_all, name="edgecxr-commit", daemon=True)

    def start(self) -> Worker:
        for thread in (*self._threads, self._committer):
            thread.start()
        return self

    @property
    def alive(self) -> bool:
        """Whether every thread runs (a stopped one means the service cannot go on)."""
        return all(t.is_alive() for t in (*self._threads, self._committer))

    def depth(self) -> int:
        """How many submitted films are not written yet (those being classified or held by a full store included)."""
        return self._open

    def submit(self, key: str) -> None:
        """Queue ``key`` for classification (a key already queued in this run is not queued again)."""
        with self._lock:
            if key in self._submitted:
                return
            self._submitted.add(key)
            self._open += 1
        self._queue.put(key)

    def drain(self) -> None:
        """Classify everything submitted so far, then stop the threads (while the store cannot be written, stop at once:
        what is left stays pending for the next start)."""
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        while not self._halted.is_set() and self._committer.is_alive():
            try:
                self._made.put(None, timeout=0.2)  # after everything made
                break
            except queue.Full:
                continue
        self._committer.join()

    def outcome(self, key: str) -> Outcome | None:
        """What ``key`` leaves to write: its results (or its failure), or only its missing log lines when it was done before;
        None when it was never received. Nothing is written here, so a store that cannot be written is told from a film
        that cannot be analysed."""
        source, done = self.store.received(key), self.store.classified(key)
        failed = self.store.path("failed", key, ".json")
        if done is not None:  # its log lines too, if a full disk kept them out (each is written once)
            audit, logged = result_lines(ResultRecord.from_dict(done), self.file_of(key))
            return Outcome(key, audit=[audit], logged=[logged])
        if failed.exists():
            return Outcome(key, audit=[("failed", key, json.loads(failed.read_text()))])
        if source is None:
            return None
        header = None
        try:
            silent: list[str] = []
            if source.suffix == ".dcm":
                header = pydicom.dcmread(source, stop_before_pixels=True)
                outside, silent = route(header, self.rules)
                if outside is not None:
                    return self._failure(key, outside, header, stage="route")
            loaded = load_image(source)  # in full, for the picture; predict reads a dropped large JPEG again the model's way (Model.read)
            with self._model_lock:  # the interpreters take one film at a time
                prediction = self.model.predict(loaded, heatmap=self.model.has_heatmap)
            prediction.checks.extend(Check("header_silent", text) for text in silent)
            made = Made(source, loaded, prediction, self.identity, dicom_header=header)
            if loaded.format == "dicom":
                made.variant = self._variant(key, made.header)
            files = [(self.store.path("results", key, w.suffix), w.make(made)) for w in writers_for(loaded)]
        except ImageError as exc:
            return self._failure(key, exc.reason, header)
        except Exception as exc:  # one bad film never stops the workers; the message may quote the film, its type does not
            return self._failure(key, f"unexpected error ({type(exc).__name__})", header)
        names = [path.name for path, _ in files]
        record = ResultRecord.of(key, prediction, self.identity, names)
        audit, logged = result_lines(record, self.file_of(key))
        return Outcome(key, files, self._outbox(key, names), (self.store.path("classified", key, ".json"), record.to_dict()), [audit], [logged],
                       queued=self._sends(names))

    def _classify(self) -> None:
        while (key := self._queue.get()) is not None:
            try:
                outcome = self.outcome(key)
            except Exception as exc:  # a bug, not the film's fault (reading the store, say): the film failed, the worker goes on
                outcome = self._failure(key, f"unexpected error ({type(exc).__name__})", None)
            if outcome is None:
                self._done([key])
                continue
            while not (staged := self._staged(outcome)):
                if staged is None:  # staging itself failed (not the store): the film failed, its failure staged instead
                    outcome = self._failure(key, "unexpected error while writing its results", None)
                    continue
                if self._stopping.wait(self.retry):
                    return  # the film stays pending for the next start
            while True:
                try:
                    self._made.put(outcome, timeout=0.2)
                    break
                except queue.Full:  # the store is full: the committer holds its films
                    if self._halted.is_set():
                        return

    def _commit_all(self) -> None:
        try:
            self._commit_batches()
        finally:  # however the committer ends, no worker waits for it to take a film
            self._halted.set()

    def _commit_batches(self) -> None:
        last = False
        while not last:
            first = self._made.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    more = self._made.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    last = True
                    break
                batch.append(more)
            while not self._attempt(batch):
                if self._stopping.wait(self.retry):
                    return

    def _staged(self, outcome: Outcome) -> bool | None:
        """Stage ``outcome``'s files (so the committer holds no film's bytes); False when the store cannot take them (tried
        again later), None when staging failed otherwise (a bug: the caller fails the film instead; a failure that cannot
        be staged either is tried again later, like a full store)."""
        try:
            outcome.stage(self.store)
        except OSError as exc:
            self._cannot_write(exc)
            return False
        except Exception:
            return False if any(event == "failed" for event, _, _ in outcome.audit) else None
        return True

    def _attempt(self, batch: list[Outcome]) -> bool:
        """Commit ``batch``; False when the store could not be written (the films stay pending, their files staged)."""
        try:
            self._commit(batch)
        except OSError as exc:
            self._cannot_write(exc)
            return False
        except Exception as exc:  # a bug in writing: each film failed with the error's type, the worker goes on
            with contextlib.suppress(Exception):
                failures = [self._failure(o.key, f"unexpected error ({type(exc).__name__})", None) for o in batch]
                for failure in failures:
                    failure.stage(self.store)
                self._commit(failures)
                batch = failures
        if self.blocked:
            self.blocked = False
            with contextlib.suppress(OSError):  # a disk that fills again at once: said again when it does
                self.audit.write("resumed", None, reason="the store can be written again")
        self._told(batch)
        return True

    def _cannot_write(self, exc: OSError) -> None:
        """The store cannot be written: said to ``on_error`` each time, in the audit log once until it can again (with no
        key: it is not one film's failure, and a film's own ``failed`` line, written once per film, must not be taken for it)."""
        reason = f"cannot write to the store ({exc.strerror or type(exc).__name__}); the worker tries again every {self.retry:g} s"
        self.on_error(reason)
        with self._lock:
            said, self.blocked = self.blocked, True
        if not said:
            with contextlib.suppress(OSError):  # the audit log is on the same full disk, most likely
                self.audit.write("failed", None, stage="store", reason=reason)

    def _commit(self, batch: list[Outcome]) -> None:
        """Put the staged files of ``batch`` in place, step by step (module docstring), then the log lines; OSError when the
        store cannot be written."""
        self.store.commit([[staged for o in batch for staged in o.steps[i]] for i in range(3)])
        self.audit.once_many([line for o in batch for line in o.audit])
        self.results.once_many([line for o in batch for line in o.logged])

    def _told(self, batch: list[Outcome]) -> None:
        """After ``batch`` is written: the service told of failures, the sender woken, the films no longer open."""
        for o in batch:
            if o.error is not None:
                self.on_error(o.error)
        if any(o.queued for o in batch):
            self.on_queued()
        self._done([o.key for o in batch])

    def _done(self, keys: list[str]) -> None:
        with self._lock:
            self._open -= len(keys)

    def _variant(self, key: str, header: pydicom.Dataset) -> str:
        """"" for a film keyed by its UID alone, else its key (it came with the UID of another film: see instance_key)."""
        return "" if key == self.store.key(str(header.get("SOPInstanceUID", ""))) else key

    def _outbox(self, key: str, files: list[str]) -> tuple[Path, dict[str, Any]] | None:
        return (self.store.path("outbox", key, ".json"), {"files": sent(files), "attempts": 0, "next_try": 0.0}) if self._sends(files) else None

    def _sends(self, files: list[str]) -> bool:
        return self.forward and bool(sent(files))

    def _failure(self, key: str, reason: str, header: pydicom.Dataset | None, stage: str = "classify") -> Outcome:
        """The film failed for good; a DICOM film still gets a result, a "not analysable" report, so the PACS hears of it
        (``header``: the film's, when read already)."""
        source = self.store.received(key)
        files = []
        if source is not None and source.suffix == ".dcm":
            try:
                header = header if header is not None else pydicom.dcmread(source, stop_before_pixels=True)
                suffix, report = not_analysable(header, reason, self.identity, self._variant(key, header))
                files.append((self.store.path("results", key, suffix), report))
            except Exception:  # a header too broken for even that: the failure line says why
                pass
        names = [path.name for path, _ in files]
        failure = {"stage": stage, "reason": reason, "model_sha256": self.identity.sha256, **({"results": names} if names else {})}
        error = f"a film could not be analysed: {reason}" if stage != "route" else None  # a film outside the intended use is no error of the service
        return Outcome(key, files, self._outbox(key, names), (self.store.path("failed", key, ".json"), failure), [("failed", key, failure)],
                       error=error, queued=self._sends(names))


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or ``taskset`` narrows), not the machine's."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no affinity call on this platform (macOS)
        return os.cpu_count() or 1


def result_lines(record: ResultRecord, file: str | None) -> tuple[Line, Line]:
    """The ``classified`` audit line and the ``results.jsonl`` line of a result record."""
    return ("classified", record.key, record.audit()), ("result", record.key, record.line(file))


def log_result(audit: Journal, results: Journal, record: ResultRecord, file: str | None) -> None:
    """The ``classified`` audit line and the ``results.jsonl`` line of a result record, each once."""
    (event, key, fields), (line_event, _, line) = result_lines(record, file)
    audit.once(event, key, **fields)
    results.once(line_event, key, **line)
