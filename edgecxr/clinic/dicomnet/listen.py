"""``edgecxr listen``: a DICOM Storage SCP (pynetdicom) that stores, acknowledges, and leaves classification to the worker.

It answers C-ECHO and accepts C-STORE of the classes and transfer syntaxes of
:mod:`edgecxr.clinic.instances`; a proposed class or syntax it cannot classify is refused at
association (the standard "abstract/transfer syntax not supported" result) and logged
``rejected``. A C-STORE is answered success only once the instance is in the store (fsynced and
renamed); an instance that fails the header checks gets their failure status and a ``rejected``
line; the same instance sent again is acknowledged without being classified twice. The called
AE title must be ours. pynetdicom's own event logging is off: it would print the headers.
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from edgecxr.clinic.instances import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, SOP_CLASSES, refusal, transfer_syntaxes
from edgecxr.clinic.service import Service

if TYPE_CHECKING:
    from pynetdicom import AE
    from pynetdicom.events import Event, EventHandlerType

TIMEOUT = 60.0  # s: a peer that says nothing for this long is dropped
DRAIN = 30.0  # s: at a stop, how long associations already open may take to finish


class Receiver:
    """The association event handlers of one listening AE."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def handlers(self) -> list[EventHandlerType]:
        from pynetdicom import evt

        return [(evt.EVT_C_STORE, self.on_store), (evt.EVT_ESTABLISHED, self.on_established), (evt.EVT_REJECTED, self.on_rejected)]

    def on_store(self, event: Event) -> int:
        """Store the instance, then acknowledge it (the C-STORE status)."""
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
        if refused is not None:
            status, reason = refused
            audit.write("rejected", key, reason=reason, status=f"0x{status:04X}", calling_ae=calling)
            return status
        assert key is not None  # refusal() refuses an instance without a UID
        if store.known(key):
            audit.write("received", key, duplicate=True, calling_ae=calling)
            return 0x0000
        try:
            store.write_bytes(store.path("received", key, ".dcm"), event.encoded_dataset(include_meta=True))
        except OSError as exc:
            audit.write("failed", key, stage="receive", reason=f"cannot write to the store ({exc.strerror or type(exc).__name__})", calling_ae=calling)
            return OUT_OF_RESOURCES
        audit.once("received", key, sop_class=SOP_CLASSES[str(ds.SOPClassUID)], calling_ae=calling)
        self.service.worker.submit(key)
        return 0x0000

    def on_established(self, event: Event) -> None:
        """Log the storage classes proposed that no accepted context carries (a film we do not take, or cannot decode).

        Other services a peer proposes in passing (Orthanc's C-ECHO also offers C-FIND, say) are not logged.
        """
        from pynetdicom.service_class import StorageServiceClass
        from pynetdicom.sop_class import uid_to_service_class

        accepted = {str(c.abstract_syntax) for c in event.assoc.accepted_contexts}
        refused = {str(c.abstract_syntax) for c in event.assoc.rejected_contexts} - accepted
        for syntax in sorted(s for s in refused if uid_to_service_class(s) is StorageServiceClass):
            self.service.audit.write("rejected", None, reason=f"not accepted: {_name(syntax)} (in the transfer syntaxes proposed)", calling_ae=_calling(event))

    def on_rejected(self, event: Event) -> None:
        self.service.audit.write("rejected", None, reason="association rejected (called AE title not ours, or no usable context)", calling_ae=_calling(event))


def make_ae(ae_title: str) -> AE:
    """The listening AE: the chest-film classes in every decodable transfer syntax, and Verification."""
    from pynetdicom import AE, VerificationPresentationContexts, _config

    _config.LOG_HANDLER_LEVEL = "none"
    ae = AE(ae_title=ae_title)
    ae.require_called_aet = True
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT
    ae.supported_contexts = VerificationPresentationContexts
    syntaxes = transfer_syntaxes()
    for sop_class in SOP_CLASSES:
        ae.add_supported_context(sop_class, syntaxes)
    return ae


def serve(service: Service, ae_title: str, port: int, host: str, stop: threading.Event) -> None:
    """Listen until ``stop`` is set (see :func:`edgecxr.clinic.service.stop_on_signal`); then stop accepting, let open
    associations finish, drain the service."""
    service.start()
    try:
        server = make_ae(ae_title).start_server((host, port), block=False, evt_handlers=Receiver(service).handlers())
    except OSError:  # the port is taken, say
        service.stop()
        raise
    assert server is not None  # block=False returns the server
    while not stop.wait(1.0):
        pass
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
