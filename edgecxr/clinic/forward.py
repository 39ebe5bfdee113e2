"""Sending results to the PACS (``--forward AET@host:port``): an on-disk queue, retried with backoff, nothing dropped.

The queue is ``STORE/outbox/<key>.json`` (``{"files", "attempts", "next_try"}``), written by the
worker before the result counts as classified. The sender thread opens one association for every
entry that is due and C-STOREs their files. An entry whose files were all stored is logged
``sent`` and removed; otherwise it is logged ``failed`` (stage ``send``, with the reason and the
attempt) and tried again after ``retry * 2**(attempts-1)`` seconds, at most :data:`MAX_BACKOFF`.
A refusal that retrying cannot change (the PACS rejects the association
permanently, say for a wrong called AE title, or answers C-STORE with a 0xA9xx/0xCxxx failure) is
logged ``failed`` with ``permanent: true`` and the entry is held (``next_try`` null, ``stopped``:
why) until the next start. A restart finds the queue as it was. Results carry UIDs of their own, so an entry sent twice (a
crash between the send and its removal) gives the PACS the same instances again, which it keeps once.

With DICOM TLS (:func:`tls_client`: the CA that signed the PACS's certificate, optionally our own certificate for a PACS
that asks for one) every association runs over TLS and the PACS's certificate must name the ``--forward`` host. A
certificate that the CA did not sign, or that names another host or has expired, is a **permanent** refusal
(``TLS: the certificate of ... is not trusted (<why>)``): retrying cannot change it, and sending films' results to a
peer that cannot prove it is the PACS is what TLS is there to prevent; the entries wait on disk until a restart with the
right ``--forward-tls-ca`` (or a fixed PACS). Any other TLS failure (the peer speaks no TLS, the handshake is cut) is
transient and retried.
"""
from __future__ import annotations

import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from edgecxr.clinic.journal import Journal
from edgecxr.clinic.store import Store
from edgecxr.clinic.writers import sop_classes

if TYPE_CHECKING:
    from pynetdicom.association import Association

MAX_BACKOFF = 300.0  # s
TIMEOUT = 15.0  # s: connecting, association negotiation and each answer


def tls_client(ca: str, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """The client side of DICOM TLS (PS3.15 B.1): trust the PACS's certificate only when ``ca`` signed it; with ``cert`` and
    ``key``, show ours. OSError or ssl.SSLError when a file cannot be read or does not fit."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        context.load_cert_chain(cert, key)
    return context


def transient(code: int) -> bool:
    """Whether a C-STORE failure status may clear by itself: 0xA7xx (out of resources), 0x0110 (processing failure),
    0x0212/0x0213 (mistyped argument, resource limitation); the others (0xA9xx, 0xCxxx, 0x0122 class not supported...) will not."""
    return 0xA700 <= code <= 0xA7FF or code in (0x0110, 0x0212, 0x0213)

_TARGET = re.compile(r"^(?P<aet>[^@]{1,16})@(?P<host>[^:@]+):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class Target:
    """A DICOM destination: its AE title, host and port."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Target:
        """``AET@host:port``; ValueError saying what is wrong otherwise."""
        m = _TARGET.match(text.strip())
        if not m or not 0 < int(m["port"]) < 65536:
            raise ValueError(f"{text!r} is not AET@host:port (an AE title of at most 16 characters, a host, a port 1-65535)")
        return cls(m["aet"].strip(), m["host"], int(m["port"]))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


class Forwarder:
    """The sender thread over the store's outbox."""

    def __init__(self, store: Store, audit: Journal, target: Target, ae_title: str, retry: float, tls: ssl.SSLContext | None = None,
                 on_error: Callable[[str], None] = lambda reason: None) -> None:
        self.store, self.audit, self.target, self.ae_title, self.retry, self.tls = store, audit, target, ae_title, retry, tls
        self.on_error = on_error  # told why a send failed (the status line's last error)
        self._handshake_errors: list[OSError] = []  # why the last TLS handshake failed (pynetdicom only logs it)
        if tls is not None:
            tls.sslsocket_class = _recording(self._handshake_errors)
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgecxr-forward", daemon=True)

    def start(self) -> Forwarder:
        """Start the thread; entries a permanent refusal stopped in an earlier run are due again (the set-up may be fixed)."""
        for key, entry in self.store.records("outbox"):
            if entry.get("stopped"):
                self.store.write_json(self.store.path("outbox", key, ".json"), {k: v for k, v in entry.items() if k != "stopped"} | {"next_try": 0.0})
        self._thread.start()
        return self

    def wake(self) -> None:
        """Look at the queue now (a new entry was written)."""
        self._wake.set()

    def stop(self) -> None:
        """One last attempt at every queued entry, due or not, then stop; what still fails stays queued on disk."""
        self._stop.set()
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self._wake.clear()
            final = self._stop.is_set()
            self.send_due(everything=final)
            if final:
                return
            self._wake.wait(self._until_next())

    def _until_next(self) -> float:
        times = [entry["next_try"] for _, entry in self.store.records("outbox") if entry["next_try"] is not None]
        if not times:
            return 3600.0
        return max(0.05, min(times) - time.time())

    def send_due(self, everything: bool = False) -> None:
        """Send the entries that are due (all of them with ``everything``) over one association."""
        now = time.time()
        due = [(key, entry) for key, entry in self.store.records("outbox") if entry["next_try"] is not None and (everything or entry["next_try"] <= now)]
        if not due:
            return
        from pynetdicom import AE

        ae = AE(ae_title=self.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = TIMEOUT
        for sop_class in sop_classes():
            ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        self._handshake_errors.clear()
        try:
            assoc = ae.associate(self.target.host, self.target.port, ae_title=self.target.ae_title,
                                 tls_args=(self.tls, self.target.host) if self.tls is not None else None)
        except Exception as exc:  # a bad host name, say
            assoc, reason = None, f"cannot reach {self.target} ({type(exc).__name__})"
        else:
            reason = f"association with {self.target} not established (refused, rejected or timed out)"
        answer = assoc.acceptor.primitive if assoc is not None and assoc.is_rejected else None
        handshake = self._handshake_errors[-1] if self._handshake_errors else None
        if isinstance(handshake, ssl.SSLCertVerificationError):
            for_good: str | None = f"TLS: the certificate of {self.target} is not trusted ({handshake.verify_message}; see --forward-tls-ca)"
        elif answer is not None and answer.result == 0x01:
            for_good = f"{self.target} rejected the association for good ({answer.reason_str})"
        else:
            for_good = None
        if for_good is not None:
            for key, entry in due:
                self._stopped(key, entry, for_good)
            return
        if isinstance(handshake, ssl.SSLError):
            reason = f"TLS handshake with {self.target} failed ({handshake.reason or type(handshake).__name__}; does it take DICOM TLS on this port?)"
        if assoc is None or not assoc.is_established:
            for key, entry in due:
                self._failed(key, entry, reason)
            return
        try:
            for key, entry in due:
                if not assoc.is_established:  # the peer went away mid-way
                    self._failed(key, entry, f"association with {self.target} ended before this was sent")
                    continue
                problem, permanent = self._send(assoc, entry["files"])
                if problem is None:
                    self.audit.once("sent", key, files=len(entry["files"]), to=self.target.ae_title)
                    self.store.path("outbox", key, ".json").unlink()
                elif permanent:
                    self._stopped(key, entry, problem)
                else:
                    self._failed(key, entry, problem)
        finally:
            if assoc.is_established:
                assoc.release()

    def _send(self, assoc: Association, files: list[str]) -> tuple[str | None, bool]:
        """(None, False) when every file was stored, else (why not, whether sending it again cannot help)."""
        for name in files:
            ds = pydicom.dcmread(self.store.root / "results" / name)
            try:
                status = assoc.send_c_store(ds)
            except ValueError:  # no accepted context for its class: the PACS does not take SR (or SC) at all
                return f"{self.target} accepted no presentation context for {ds.SOPClassUID.name}", True
            code = int(status.Status) if "Status" in status else None
            if code is None:
                return f"no answer from {self.target} to C-STORE", False
            if code != 0x0000 and not 0xB000 <= code <= 0xBFFF:  # success or warning
                return f"{self.target} answered C-STORE with status 0x{code:04X}", not transient(code)
        return None, False

    def _stopped(self, key: str, entry: dict[str, Any], reason: str) -> None:
        """A refusal that sending again will not change: the entry stays queued, not retried until the next start."""
        attempts = int(entry["attempts"]) + 1
        self.on_error(f"results not sent, not retried until a restart: {reason}")
        self.store.write_json(self.store.path("outbox", key, ".json"), {**entry, "attempts": attempts, "next_try": None, "stopped": reason})
        self.audit.write("failed", key, stage="send", reason=reason, attempt=attempts, permanent=True,
                         retry_in_s=None, note="not retried until edgecxr restarts (fix the PACS or --forward first)")

    def _failed(self, key: str, entry: dict[str, Any], reason: str) -> None:
        attempts = int(entry["attempts"]) + 1
        delay = min(self.retry * 2 ** (attempts - 1), MAX_BACKOFF)
        self.on_error(f"results not sent (retried): {reason}")
        self.store.write_json(self.store.path("outbox", key, ".json"), {**entry, "attempts": attempts, "next_try": time.time() + delay})
        self.audit.write("failed", key, stage="send", reason=reason, attempt=attempts, retry_in_s=round(delay, 3))


def _recording(errors: list[OSError]) -> type[ssl.SSLSocket]:
    """An SSLSocket class that keeps in ``errors`` why its connection (and so its handshake) failed."""

    class Recording(ssl.SSLSocket):
        def connect(self, address: Any) -> None:
            try:
                super().connect(address)
            except OSError as exc:
                errors.append(exc)
                raise

    return Recording
