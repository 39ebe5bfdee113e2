"""Which DICOM instances edgecxr takes, told from the header alone (no pixel is decoded here).

Accepted: the chest-film storage classes (CR, DX for presentation and for processing, Secondary
Capture) in any transfer syntax pydicom can decode on this machine (uncompressed and RLE always;
JPEG, JPEG-LS and JPEG 2000 when their decoder plugins are installed, as the ``clinic`` extra does).
:func:`refusal` gives the C-STORE failure status and a reason of its own wording for an instance
that cannot be classified; a reason never quotes a header value other than the image size.
:func:`instance_key` says whether an instance is new, a resend, or a changed film under an old UID.
"""
from __future__ import annotations

import hashlib
import io
from typing import TYPE_CHECKING, Literal

from pydicom.uid import ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation, DigitalXRayImageStorageForProcessing, SecondaryCaptureImageStorage

from edgecxr.clinic import ljpeg
from edgecxr.core.imageio import MAX_PIXELS

if TYPE_CHECKING:
    from pydicom import Dataset

    from edgecxr.clinic.store import Store

Verdict = Literal["new", "same", "changed"]
CHANGED = "the SOP Instance UID of a film received before, with other pixel data: kept and classified as a new instance"  # the audit warning

SOP_CLASSES: dict[str, str] = {
    ComputedRadiographyImageStorage: "CR Image Storage",  # the short names the audit log writes
    DigitalXRayImageStorageForPresentation: "Digital X-Ray Image Storage - For Presentation",
    DigitalXRayImageStorageForProcessing: "Digital X-Ray Image Storage - For Processing",
    SecondaryCaptureImageStorage: "Secondary Capture Image Storage",
}
# C-STORE failure statuses (DICOM PS3.4 Annex B.2.3)
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000


def transfer_syntaxes() -> list[str]:
    """The transfer syntaxes whose pixel data pydicom can decode here (with :mod:`edgecxr.clinic.ljpeg` for JPEG
    Lossless SV1), uncompressed ones first."""
    import pydicom.uid as uids
    from pydicom.pixels import get_decoder

    ljpeg.register()
    found = []
    for name in dir(uids):
        uid = getattr(uids, name)
        if isinstance(uid, uids.UID) and uid.is_transfer_syntax and uid not in found:
            try:
                if get_decoder(uid).is_available:
                    found.append(uid)
            except NotImplementedError:  # no decoder for this syntax at all
                continue
    return [str(u) for u in sorted(found, key=lambda u: (u.is_compressed, u))]


def refusal(ds: Dataset, sop_class_uid: str | None = None) -> tuple[int, str] | None:
    """(status, reason) when ``ds`` is not a film edgecxr can classify, else None.

    ``sop_class_uid``: the class the C-STORE request named (its Affected SOP Class UID), if any.
    """
    try:
        uid = str(ds.get("SOPInstanceUID", "") or "")
        in_study = bool(ds.get("StudyInstanceUID")) and bool(ds.get("SeriesInstanceUID"))
        cls = str(ds.get("SOPClassUID", "") or "")
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples, bits = int(ds.get("SamplesPerPixel", 1) or 1), int(ds.get("BitsAllocated", 0) or 0)
        has_pixels = "PixelData" in ds
        pixel_bytes = len(ds.PixelData) if has_pixels else 0
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    except Exception:  # pydicom parses lazily: a broken element shows up here
        return CANNOT_UNDERSTAND, "the dataset cannot be parsed"
    if not uid:
        return CANNOT_UNDERSTAND, "the dataset has no SOP Instance UID"
    if not in_study:
        return DOES_NOT_MATCH_SOP_CLASS, "the dataset has no Study or Series Instance UID, so its results would have no study to go to"
    if cls not in SOP_CLASSES:
        return DOES_NOT_MATCH_SOP_CLASS, "not a chest-film storage class (CR, DX or Secondary Capture)"
    if sop_class_uid is not None and cls != sop_class_uid:
        return DOES_NOT_MATCH_SOP_CLASS, "the dataset's SOP class differs from the one the request names"
    if not has_pixels:
        return DOES_NOT_MATCH_SOP_CLASS, "the dataset has no pixel data"
    if frames > 1:
        return DOES_NOT_MATCH_SOP_CLASS, f"the image has {frames} frames; only single-frame films are read"
    if rows < 2 or cols < 2:
        return DOES_NOT_MATCH_SOP_CLASS, f"the header gives an image of {cols}x{rows} pixels"
    if rows * cols > MAX_PIXELS:  # never acceptable, so not 0xA700 (out of resources), which a sender retries
        return DOES_NOT_MATCH_SOP_CLASS, f"the header claims {cols}x{rows} pixels, more than {MAX_PIXELS:,}; refusing to decode"
    if syntax is not None and not syntax.is_compressed and pixel_bytes < rows * cols * samples * bits // 8:
        return DOES_NOT_MATCH_SOP_CLASS, f"the pixel data holds {pixel_bytes} bytes, fewer than a {cols}x{rows} image needs"
    return None


def instance_key(store: Store, uid: str, pixel_data: bytes) -> tuple[str, Verdict]:
    """The store key of a DICOM instance with SOP Instance UID ``uid`` and (encoded) ``pixel_data``, and what it is:

    - ``"new"``: no instance of that UID is in the store; the key is ``store.key(uid)``;
    - ``"same"``: an instance of that UID *and* the same pixel data is (a resend): its key, nothing to do;
    - ``"changed"``: one of that UID with other pixel data is (a corrected film sent under the old UID): a key of its
      own, made from the UID and the pixel data's sha256, so it is kept and classified as a new instance, never
      answered with the other's result (the caller logs a warning).

    ``listen``, ``watch`` and the web page's uploads all key DICOM this way.
    """
    first = store.key(uid)
    stored = store.received(first)
    if stored is None:
        return first, "new"
    digest = hashlib.sha256(pixel_data).hexdigest()
    if pixel_digest(stored) == digest:
        return first, "same"
    variant = store.key(f"{uid}#pixels:{digest}")
    return variant, "same" if store.received(variant) is not None else "changed"


def dicom_file_key(store: Store, data: bytes) -> tuple[str | None, str, Verdict]:
    """(why the DICOM file ``data`` is refused or None, its key, its verdict) for a file dropped or uploaded.

    A refused file (or one that does not parse) is keyed by its content, so the same bytes are refused once and a
    completed or corrected file is read again; an accepted one by :func:`instance_key`.
    """
    import pydicom

    by_content = store.content_key(data)
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        uid = str(ds.get("SOPInstanceUID", "") or "")
        refused = refusal(ds)
        pixels = ds.PixelData if refused is None else b""
    except Exception:
        return "not a readable DICOM file", by_content, "new"
    if refused is not None:
        return refused[1], by_content, "new"
    key, verdict = instance_key(store, uid, pixels)
    return None, key, verdict


def pixel_digest(path: object) -> str | None:
    """sha256 of the (encoded) pixel data of the DICOM file at ``path``; None when it has none or is not DICOM."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, specific_tags=["PixelData"])  # type: ignore[arg-type]
        data = ds.get("PixelData")
    except Exception:
        return None
    return hashlib.sha256(data).hexdigest() if data is not None else None
