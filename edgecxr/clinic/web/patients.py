"""Who a study is, for the logged-in users of ``edgecxr serve``: patient ID, accession, study date, description.

Read once from the received DICOM file's header (no pixel data is read); a film that is not DICOM
is described by the name it came under (the uploaded file name, or its path in the watched
folder). These values are shown only to logged-in users and searched by them; they are never
written to a log (only :mod:`edgecxr.clinic.web.index` keeps them, in a file readable by its owner only).
"""
from __future__ import annotations

from pathlib import Path

TAGS = ("PatientID", "AccessionNumber", "StudyDate", "StudyDescription")
MAX_CHARS = 128  # of one shown value


def received_files(root: Path) -> dict[str, Path]:
    """{key: received file} of the store at ``root`` (one listing, for many studies at once)."""
    folder = root / "received"
    return {p.name.split(".", 1)[0]: p for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def identify(path: Path | None, file: str | None) -> tuple[str | None, str | None, str | None, str | None]:
    """(patient ID, accession, study date as YYYY-MM-DD, description) of a study: ``path`` its received file (or
    None), ``file`` the name it came under."""
    if path is None or path.suffix != ".dcm":
        return None, None, None, file
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(TAGS))
        values = [_text(ds.get(tag)) for tag in TAGS]
    except Exception:  # a header pydicom cannot parse: the study is shown unidentified
        return None, None, None, file
    patient_id, accession, date, description = values
    if date and len(date) == 8 and date.isdigit():
        date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    return patient_id, accession, date, description or file


def _text(value: object) -> str | None:
    text = "".join(c for c in str(value or "") if c.isprintable()).strip()
    return text[:MAX_CHARS] or None
