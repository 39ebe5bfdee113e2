"""The one registry of result writers: each says the file it writes, which films it is for, what it is sent as, and
whether it holds the result picture.

The worker writes, for one film, every writer's file whose ``dicom`` matches the film's (the Structured
Report and the Secondary Capture for a DICOM film, the PNG picture for any other); the send queue holds the
files whose writer has a SOP class, and the sender negotiates exactly those SOP classes; the web page shows the
picture of the one writer with ``picture_png``. A file is told by the writer whose suffix it ends with
(:func:`writer_of`), never by a suffix test of its own. Adding an output format is adding one writer here.
"""
from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom import Dataset
from pydicom.uid import Comprehensive3DSRStorage, SecondaryCaptureImageStorage

from edgecxr.clinic.results import ModelIdentity, not_analysable_report, picture, secondary_capture, structured_report
from edgecxr.core.imageio import LoadedImage
from edgecxr.core.model import Prediction


@dataclass
class Made:
    """What a writer is given for one film: the film as received and as loaded, its prediction, the model."""

    source: Path
    loaded: LoadedImage
    prediction: Prediction
    identity: ModelIdentity
    variant: str = ""  # for a film with the UID of another but other pixels: see edgecxr.clinic.results.seed
    dicom_header: Dataset | None = None  # the DICOM film's header, when read already

    @cached_property
    def header(self) -> Dataset:
        """The DICOM film's header, read once for every writer that needs it."""
        return self.dicom_header if self.dicom_header is not None else pydicom.dcmread(self.source, stop_before_pixels=True)

    @cached_property
    def rgb(self) -> np.ndarray:
        """The result picture (film, heatmap, burned-in text), made once for every writer that needs it."""
        return picture(self.loaded.pixels, self.prediction, self.identity)


@dataclass(frozen=True)
class ResultWriter:
    """One result file: ``results/<key><suffix>``."""

    suffix: str
    dicom: bool  # written for a DICOM film (True) or for any other film (False)
    sop_class: str | None  # the SOP Class UID it is sent to the PACS as; None: never sent
    make: Callable[[Made], bytes]
    picture_png: Callable[[Path], bytes] | None = None  # the result picture as PNG bytes, for the writer that holds it


def png(bgr: np.ndarray) -> bytes:
    """An 8-bit gray or BGR image as PNG bytes."""
    ok, data = cv2.imencode(".png", bgr)
    assert ok, "OpenCV encodes any uint8 picture as PNG"
    return data.tobytes()


def _dicom_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _sc_picture(path: Path) -> bytes:
    rgb = pydicom.dcmread(path).pixel_array
    return png(cv2.cvtColor(np.asarray(rgb, np.uint8), cv2.COLOR_RGB2BGR))


WRITERS = (
    ResultWriter(".sr.dcm", True, Comprehensive3DSRStorage, lambda m: _dicom_bytes(structured_report(m.header, m.prediction, m.identity, m.variant))),
    ResultWriter(".sc.dcm", True, SecondaryCaptureImageStorage, lambda m: _dicom_bytes(secondary_capture(m.header, m.rgb, m.identity, m.variant)), _sc_picture),
    ResultWriter(".png", False, None, lambda m: png(cv2.cvtColor(m.rgb, cv2.COLOR_RGB2BGR)), Path.read_bytes),
)


def not_analysable(header: Dataset, reason: str, identity: ModelIdentity, variant: str = "") -> tuple[str, bytes]:
    """(suffix, bytes) of the "not analysable" report of a DICOM film that was received but cannot be analysed: the
    Structured Report writer's file, so it is sent, shown and told apart as an SR."""
    return ".sr.dcm", _dicom_bytes(not_analysable_report(header, reason, identity, variant))


def writers_for(loaded: LoadedImage) -> tuple[ResultWriter, ...]:
    """The writers of a film loaded as ``loaded``: DICOM's or the others'."""
    return tuple(w for w in WRITERS if w.dicom == (loaded.format == "dicom"))


def writer_of(name: str) -> ResultWriter | None:
    """The writer of the result file ``name`` (a name in ``results/``), None for a file no writer makes."""
    return next((w for w in WRITERS if name.endswith(w.suffix)), None)


def sent(files: list[str]) -> list[str]:
    """The files of a result that go to the PACS: those whose writer has a SOP class."""
    return [f for f in files if (w := writer_of(f)) is not None and w.sop_class is not None]


def sop_classes() -> list[str]:
    """The SOP classes the sender offers the PACS (and a stand-in PACS must take)."""
    return [w.sop_class for w in WRITERS if w.sop_class is not None]
