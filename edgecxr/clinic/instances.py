"""Which DICOM instances edgecxr takes, told from the header alone (no pixel is decoded here).

Accepted: the chest-film storage classes (CR, DX for presentation and for processing, Secondary
Capture) in any transfer syntax pydicom can decode on this machine (uncompressed and RLE always;
JPEG, JPEG-LS and JPEG 2000 when their decoder plugins are installed, as the ``clinic`` extra does).
:func:`refusal` gives the C-STORE failure status and a reason of its own wording for an instance
that cannot be classified; a reason never quotes a header value other than the image size.
"""
from __future__ import annotations

import io
from typing import TYPE_CHECKING

from pydicom.uid import ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation, DigitalXRayImageStorageForProcessing, SecondaryCaptureImageStorage

from edgecxr.core.imageio import MAX_PIXELS

if TYPE_CHECKING:
    from pydicom import Dataset

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


def dicom_check(data: bytes) -> tuple[str | None, str]:
    """(why the DICOM file is refused or None, its SOP Instance UID or "")."""
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        uid = str(ds.get("SOPInstanceUID", "") or "")
    except Exception:
        return "not a readable DICOM file", ""
    refused = refusal(ds)
    return (refused[1] if refused else None), uid
