"""Which DICOM instances edgecxr takes, told from the header alone (no pixel is decoded here).

Accepted: the chest-film storage classes (CR, DX for presentation and for processing, Secondary
Capture) in any transfer syntax pydicom can decode on this machine (uncompressed and RLE always;
JPEG, JPEG-LS and JPEG 2000 when their decoder plugins are installed, as the ``clinic`` extra does).
:func:`refusal` gives the C-STORE failure status and a reason of its own wording for an instance
that cannot be classified; a reason never quotes a header value other than the image size.

One instance rule (:func:`instance_key`): the same SOP Instance UID with the same pixel data is the
same instance (received once, its result given again); the same UID with other pixel data is a new
instance, keyed by UID and pixels, with :data:`REUSED_UID` as a warning, never the earlier result.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING

from edgecxr.imageio import MAX_PIXELS

if TYPE_CHECKING:
    from pydicom import Dataset

    from edgecxr.dicomnet.store import Store

SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1": "CR Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
}
# C-STORE failure statuses (DICOM PS3.4 Annex B.2.3)
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
REUSED_UID = "this film's SOP Instance UID was used before by a different image: read as a new study (check the sender's UIDs)"


def transfer_syntaxes() -> list[str]:
    """The transfer syntaxes whose pixel data pydicom can decode here, uncompressed ones first."""
    import pydicom.uid as uids
    from pydicom.pixels import get_decoder

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
    if rows * cols > MAX_PIXELS:
        return OUT_OF_RESOURCES, f"the header claims {cols}x{rows} pixels, more than {MAX_PIXELS:,}; refusing to decode"
    if syntax is not None and not syntax.is_compressed and pixel_bytes < rows * cols * samples * bits // 8:
        return DOES_NOT_MATCH_SOP_CLASS, f"the pixel data holds {pixel_bytes} bytes, fewer than a {cols}x{rows} image needs"
    return None


def pixel_digest(data: bytes | Path) -> str | None:
    """SHA-256 (hex) of a DICOM file's pixel data (``data``: its bytes or path), or None when it has none or cannot be read."""
    import pydicom

    try:
        ds = pydicom.dcmread(data if isinstance(data, Path) else io.BytesIO(data))
        return hashlib.sha256(bytes(ds.PixelData)).hexdigest() if "PixelData" in ds else None
    except Exception:  # not readable: no digest
        return None


def instance_key(store: Store, uid: str, digest: str | None) -> tuple[str, bool]:
    """The store key of an instance with SOP Instance UID ``uid`` and pixel digest ``digest`` (from :func:`pixel_digest`),
    and whether the UID was re-used by other pixels (then the key is of the UID and the pixels: a new study)."""
    key = store.key(uid)
    earlier = store.received(key)
    if earlier is None or earlier.suffix != ".dcm" or pixel_digest(earlier) == digest:
        return key, False
    return store.key(f"{uid}#pixels-sha256:{digest}"), True
