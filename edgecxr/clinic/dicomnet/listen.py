"""``edgecxr listen``: a DICOM Storage SCP (pynetdicom) that stores, acknowledges, and leaves classification to the worker.

It answers C-ECHO and accepts C-STORE of the classes and transfer syntaxes of
:mod:`edgecxr.clinic.instances`; a proposed class or syntax it cannot classify is refused at
association (the standard "abstract/transfer syntax not supported" result) and logged
``rejected``. A C-STORE is answered success only once the instance is in the store (fsynced and
renamed); an instance that fails the header checks gets their failure status and a ``rejected``
line; the same instance sent again is acknowledged without being classified twice (the same:
:func:`edgecxr.clinic.instances.instance_key`). A store that cannot take the film (full, or
below :attr:`Limits.min_free`) answers 0xA700 and keeps nothing. The called AE title must be ours;
:class:`Limits` caps the associations and drops silent ones, each refusal or drop one audit line.
pynetdicom's own event logging is off: it would print the headers.
"""
from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgecxr.clinic.instances import CANNOT_UNDERSTAND, CHANGED, OUT_OF_RESOURCES, SOP_CLASSES, instance_key, refusal, transfer_syntaxes
from edgecxr.clinic.service import Service

if TYPE_CHECKING:
    from pydicom import Dataset
    from pynetdicom import AE
    from pynetdicom.events import Event, EventHandlerType

STATUS_EVERY = 60.0  # s: the status line is printed when the state or the last error changes, and this often while films wait
DRAIN = 30.0  # s: at a stop, how long associations already open may take to finish


@dataclass(frozen=True)
class Limits:
    """What an association may take: how many at once, how long a peer may stay silent, how much free space the store keeps."""

    associations: int = 10
    idle: float = 30.0  # s: a connection or association silent this long is dropped
    min_free: int = 50 * 2**20  # bytes: below this the store takes no film (C-STORE answers 0xA700), so results still fit


class Receiver:
    """The association event handlers of one listening AE."""

    def __init__(self, service: Service, ae_title: str, limits: Limits) -> None:
        self.service, self.ae_title, self.limits = service, ae_title, limits
        self._opened: dict[int, float] = {}  # id of an association -> when its TCP connection opened

    def handlers(self) -> list[EventHandlerType]:
        from pynetdicom import evt

        return [(evt.EVT_C_STORE, self.on_store), (evt.EVT_ESTABLISHED, self.on_established), (evt.EVT_REJECTED, self.on_rejected),
                (evt.EVT_CONN_OPEN, self.on_open), (evt.EVT_CONN_CLOSE, self.on_close), (evt.EVT_ABORTED, self.on_aborted)]

    def on_store(self, event: Event) -> int:
        """Store the instance, then acknowledge it (the C-STORE status); a store that cannot take it answers 0xA700."""
        audit, store = self.service.audit, self.service.store
        calling = _calling(event)
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            refused = refusal(ds, str(event.request.AffectedSOPClassUID))
            uid = str(ds.get("SOPInstanceUID", "") or "")
        except Exception:  # undecodable bytes
            refused, uid = (CANNOT_UNDERSTAND, "the dataset cannot be parsed"), ""
        key = store.key(uid) if uid else None
        try:
            if refused is not None:
                status, reason = refused
                audit.write("rejected", key, reason=reason, status=f"0x{status:04X}", calling_ae=calling)
                return status
            assert key is not None  # refusal() refuses an instance without a UID
            return self._take(event, ds, calling)
        except OSError as exc:  # the audit log could not be written either
            self.service.note_error(f"cannot write to the store ({exc.strerror or type(exc).__name__})")
            return OUT_OF_RESOURCES

    def _take(self, event: Event, ds: Dataset, calling: str) -> int:
        """Keep the film (or see it is the same instance again) and log it; an OSError when the store cannot be written."""
        audit, store = self.service.audit, self.service.store
        instance, verdict = instance_key(store, str(ds.SOPInstanceUID), ds.PixelData)
        if verdict == "same":
            audit.write("received", instance, duplicate=True, calling_ae=calling)
            self.service.worker.submit(instance)  # pending still if a full store held the worker
            return 0x0000
        if verdict == "changed":
            audit.write("warning", instance, reason=CHANGED, calling_ae=calling)
        free = store.free_bytes()
        if free < self.limits.min_free:
            reason = f"the store has {free / 2**20:.0f} MB free, less than the {self.limits.min_free / 2**20:.0f} MB it keeps for results"
            self.service.note_error(reason)
            audit.write("failed", instance, stage="receive", reason=reason, status=f"0x{OUT_OF_RESOURCES:04X}", calling_ae=calling)
            return OUT_OF_RESOURCES
        path = store.path("received", instance, ".dcm")
        try:
            store.write_bytes(path, event.encoded_dataset(include_meta=True))
            audit.once("received", instance, sop_class=SOP_CLASSES[str(ds.SOPClassUID)], calling_ae=calling)
        except OSError as exc:  # not durable, or not logged: not acknowledged, and not kept (the sender will send it again)
            path.unlink(missing_ok=True)
            reason = f"cannot write to the store ({exc.strerror or type(exc).__name__})"
            self.service.note_error(reason)
            with contextlib.suppress(OSError):
                audit.write("failed", instance, stage="receive", reason=reason, status=f"0x{OUT_OF_RESOURCES:04X}", calling_ae=calling)
            return OUT_OF_RESOURCES
        self.service.worker.submit(instance)
        return 0x0000

    def on_established(self, event: Event) -> None:
        """One line for the storage classes proposed that no accepted context carries (films we do not take, or cannot
        decode in the syntaxes proposed), however many. Other services a peer proposes in passing (Orthanc's C-ECHO also
        offers C-FIND, say) are not counted."""
        from pynetdicom.service_class import StorageServiceClass
        from pynetdicom.sop_class import uid_to_service_class

        self._opened.pop(id(event.assoc), None)
        accepted = {str(c.abstract_syntax) for c in event.assoc.accepted_contexts}
        refused = sorted(s for s in {str(c.abstract_syntax) for c in event.assoc.rejected_contexts} - accepted if uid_to_service_class(s) is StorageServiceClass)
        if not refused:
            return
        named = [_name(s) for s in refused]
        ours = [n for s, n in zip(refused, named) if s in SOP_CLASSES]  # chest-film classes refused for their syntaxes: said first
        others = [n for s, n in zip(refused, named) if s not in SOP_CLASSES]
        shown = (ours + others)[:3]
        more = f" and {len(refused) - len(shown)} more" if len(refused) > len(shown) else ""
        self.service.audit.write("rejected", None, reason=f"not accepted: {', '.join(shown)}{more} (in the transfer syntaxes proposed)",
                                 refused_contexts=len(refused), calling_ae=_calling(event))

    def on_rejected(self, event: Event) -> None:
        called = str(getattr(event.assoc.requestor.primitive, "called_ae_title", "") or "").strip()
        if called != self.ae_title:
            reason = "association rejected: the called AE title is not ours"
        else:
            reason = f"association rejected: {self.limits.associations} associations already open (--max-associations); the sender may retry"
        self.service.audit.write("rejected", None, reason=reason, calling_ae=_calling(event))

    def on_open(self, event: Event) -> None:
        self._opened[id(event.assoc)] = time.monotonic()

    def on_close(self, event: Event) -> None:
        opened = self._opened.pop(id(event.assoc), None)
        assoc = event.assoc
        if opened is not None and not assoc.is_rejected and time.monotonic() - opened >= self.limits.idle * 0.9:
            self.service.audit.write("dropped", None, reason=f"connection closed: no association request in {self.limits.idle:g} s (--idle-timeout)")

    def on_aborted(self, event: Event) -> None:
        dul = getattr(event.assoc, "dul", None)
        if dul is not None and dul.idle_timer_expired():
            self.service.audit.write("dropped", None, reason=f"association aborted: the peer said nothing for {self.limits.idle:g} s (--idle-timeout)",
                                     calling_ae=_calling(event))


def make_ae(ae_title: str, limits: Limits) -> AE:
    """The listening AE: the chest-film classes in every decodable transfer syntax, and Verification."""
    from pynetdicom import AE, VerificationPresentationContexts, _config

    _config.LOG_HANDLER_LEVEL = "none"
    ae = AE(ae_title=ae_title)
    ae.require_called_aet = True
    ae.maximum_associations = limits.associations
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = limits.idle
    ae.supported_contexts = VerificationPresentationContexts
    syntaxes = transfer_syntaxes()
    for sop_class in SOP_CLASSES:
        ae.add_supported_context(sop_class, syntaxes)
    return ae


def tls_context(cert: str, key: str, ca: str | None) -> ssl.SSLContext:
    """The server side of DICOM TLS (PS3.15 B.1): our certificate and key; with ``ca``, peers must show a certificate it
    signed. OSError or ssl.SSLError when a file cannot be read or does not fit."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(ca)
    return context


class WorkerStopped(Exception):
    """The worker thread is gone: the process must exit non-zero so a service manager restarts it."""


def serve(service: Service, ae_title: str, port: int, host: str, stop: threading.Event, limits: Limits = Limits(),
          on_started: Callable[[], None] = lambda: None, on_status: Callable[[str], None] = lambda line: None,
          tls: ssl.SSLContext | None = None) -> None:
    """Listen until ``stop`` is set (see :func:`edgecxr.clinic.service.stop_on_signal`); then stop accepting, let open
    associations finish, drain the service. The status file is kept up to date meanwhile and ``on_status`` given the
    status line when the state or the last error changes (and every minute while films wait); WorkerStopped when the
    worker thread died (the server is shut down first). ``on_started`` is called once the port is bound. With ``tls``
    (see :func:`tls_context`) every association runs over TLS."""
    server = make_ae(ae_title, limits).start_server((host, port), block=False, evt_handlers=Receiver(service, ae_title, limits).handlers(), ssl_context=tls)
    assert server is not None  # block=False returns the server (an OSError before, when the port is taken, say)
    service.start()
    on_started()
    said, when = None, 0.0
    while not stop.wait(1.0):
        status = service.write_status()
        if (status.state, status.last_error) != said or (status.queue and time.monotonic() - when > STATUS_EVERY):
            said, when = (status.state, status.last_error), time.monotonic()
            on_status(status.line)
        if not service.worker.alive:
            server.shutdown()
            raise WorkerStopped(status.line)
    server.shutdown()  # no new associations
    end = time.monotonic() + DRAIN
    while any(a.is_established for a in server.active_associations) and time.monotonic() < end:  # not a bare TCP probe's
        time.sleep(0.1)
    for left in server.active_associations:  # a peer still negotiating, or one that outstayed DRAIN
        left.abort()
    service.stop()


def _calling(event: Event) -> str:
    return str(event.assoc.requestor.ae_title).strip()


def _name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name
    return name if name != uid else f"an unknown class {uid}"
