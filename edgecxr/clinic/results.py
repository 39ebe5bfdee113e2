"""One classification as DICOM, in the source film's study: a Structured Report and a Secondary Capture (made with pydicom).

- The SR (Comprehensive 3D SR, TID 1500 Measurement Report) holds one measurement group that
  references the source instance: the label as its Finding, each class probability and the abnormal
  score as measurements (unit 1), refer yes/no where a site profile is active, the input warnings
  and the "research use" notice as comments, and the model as the algorithm (name, version,
  ``sha256:<hex>`` as its parameter).
- The SC is the film with the heatmap over it (when the model has one) and the label,
  probabilities, refer and notice burned in below, so any viewer shows it; its Source Image
  Sequence references the source instance and ``BurnedInAnnotation`` is ``YES``.

A film that was received but cannot be analysed gets an SR of its own (:func:`not_analysable_report`):
the finding "Not analysable" and the reason as a comment. Each study has one SR series and one SC
series of results (numbers 9901 and 9902) holding the results of all its films. The instance UIDs
are derived from the source's SOP Instance UID and the model's sha256, the series UIDs from the
study's, so results made again after a crash are the same instances. The SC is at most
:data:`MAX_SIDE` px on its longest side, text band included.

The parts that are the same for every film of a model (the observer context, the algorithm, the
series' description) are made once per model (:func:`_model_items`) and shared by every report;
the parts of the standard used are in :mod:`edgecxr.clinic.sr`. The tests check both with highdicom
and dciodvfy.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import cv2
import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID, Comprehensive3DSRStorage, ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from edgecxr import __version__
from edgecxr.clinic import sr, uids
from edgecxr.clinic.sr import Code
from edgecxr.core.model import Prediction
from edgecxr.core.picture import MAX_SIDE, result_picture

SITE_HEAD_NOTE = "classifier head: this site's own (edgecxr adapt)"  # said on results whose probabilities came from a site head
NOTICE = "RESEARCH USE - NOT A DIAGNOSIS"
SCHEME = "99EDGECXR"  # private coding scheme of the labels and scores
NOT_ANALYSABLE = Code("NOTANALYSABLE", SCHEME, "Not analysable")  # the finding of a film received but not analysed
REFER = Code("REFER", SCHEME, "Refer for reading at the site's threshold")
MANUFACTURER = "edgecxr"
SR_SERIES_NUMBER, SC_SERIES_NUMBER = 9901, 9902
# px: the picture is resized to fit core.picture's MAX_SIDE (a picture to look at, not the film to read) and, within
# that, enlarged to at least MIN_WIDTH so the clinic's longer burned-in text stays legible on a small film.
MIN_WIDTH = 768
# Copied into the Secondary Capture (an image, whose series has them; an SR's has not): the body part and its laterality.
IMAGE_KEYWORDS = ("BodyPartExamined", "Laterality")
UNPAIRED = ("CHEST", "THORAX")  # body parts without a laterality (General Series' Laterality is then absent)
_DCM = {  # the DCM concepts of TID 1500 / 1501 / 4019 / 1004 the report uses
    "report": Code("126000", "DCM", "Imaging Measurement Report"),
    "language": Code("121049", "DCM", "Language of Content Item and Descendants"),
    "observer_type": Code("121005", "DCM", "Observer Type"),
    "device": Code("121007", "DCM", "Device"),
    "device_uid": Code("121012", "DCM", "Device Observer UID"),
    "device_name": Code("121013", "DCM", "Device Observer Name"),
    "device_manufacturer": Code("121014", "DCM", "Device Observer Manufacturer"),
    "device_model": Code("121015", "DCM", "Device Observer Model Name"),
    "procedure": Code("121058", "DCM", "Procedure reported"),
    "measurements": Code("126010", "DCM", "Imaging Measurements"),
    "group": Code("125007", "DCM", "Measurement Group"),
    "tracking_id": Code("112039", "DCM", "Tracking Identifier"),
    "tracking_uid": Code("112040", "DCM", "Tracking Unique Identifier"),
    "finding": Code("121071", "DCM", "Finding"),
    "algorithm_name": Code("111001", "DCM", "Algorithm Name"),
    "algorithm_version": Code("111003", "DCM", "Algorithm Version"),
    "algorithm_parameters": Code("111002", "DCM", "Algorithm Parameters"),
    "source": Code("121112", "DCM", "Source of Measurement"),
}
ENGLISH = Code("en-US", "RFC5646", "English (United States)")
RADIOGRAPHY = Code("363680008", "SCT", "Radiographic imaging procedure")


@dataclass(frozen=True)
class ModelIdentity:
    """Which model made a result: the card's name and version, the file's sha256."""

    name: str
    version: str
    sha256: str


def result_uid(source_uid: str, identity: ModelIdentity, part: str) -> str:
    """The UID of one part (``sr``, ``sr-series``, ``sc``, ...) of the result of ``identity`` on the instance ``source_uid``."""
    return uids.result_uid(source_uid, identity.sha256, part)  # under the site's --uid-root, if any


def text_lines(prediction: Prediction, identity: ModelIdentity) -> list[str]:
    """What the Secondary Capture says, line by line (ASCII: OpenCV's fonts have no other glyphs)."""
    probs = sorted(prediction.probabilities.items(), key=lambda kv: -kv[1])
    lines = [f"edgecxr {identity.name} {identity.version}: {prediction.label}", "  ".join(f"{label} {p:.3f}" for label, p in probs)]
    if prediction.abnormal_score is not None:
        lines.append(f"abnormal score {prediction.abnormal_score:.3f}")
    if prediction.heatmap_label is not None and prediction.heatmap_label != prediction.label:  # a Normal call: edgecxr.core.model.Model.heatmap_class
        lines.append(f"heatmap: evidence for {prediction.heatmap_label}, the most likely abnormal class")
    if prediction.refer is not None and prediction.operating_point is not None:
        at = ", ".join(f"{p['for']} >= {p['threshold']:.3f}" for p in prediction.operating_point)
        lines.append(f"refer: {'YES' if prediction.refer else 'no'} (site threshold {at})")
    if prediction.head == "site":
        lines.append(SITE_HEAD_NOTE)
    lines += [f"warning: {w}" for w in prediction.warnings]
    lines.append(NOTICE)
    return [line.encode("ascii", "replace").decode() for line in lines]


def picture(pixels: np.ndarray, prediction: Prediction, identity: ModelIdentity) -> np.ndarray:
    """The Secondary Capture's RGB uint8 picture: ``predict --heatmap``'s picture (:func:`edgecxr.core.picture.result_picture`:
    the heatmap inside the lung fields, its colour bar) with the clinic's text (:func:`text_lines`), at least MIN_WIDTH wide."""
    bgr = result_picture(pixels, prediction, prediction.lungs, MAX_SIDE, text_lines(prediction, identity), MIN_WIDTH)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def series_uid(source: Dataset, identity: ModelIdentity, part: str) -> str:
    """The UID of the study's one result series of ``part`` (``sr-series``, ``sc-series``) for ``identity``: every film of
    a study puts its results in the same two series, numbered :data:`SR_SERIES_NUMBER` and :data:`SC_SERIES_NUMBER`."""
    return result_uid(str(source.StudyInstanceUID), identity, part)


def instance_number(seed: str) -> int:
    """A result's Instance Number in its series: made from the instance's :func:`seed`, so the same after a redo and,
    between the films of one study, distinct but for a 1 in 10**9 chance."""
    return 1 + int(hashlib.sha256(seed.encode()).hexdigest()[:15], 16) % 10**9


def seed(source: Dataset, variant: str) -> str:
    """What a result's UIDs are made from: the film's SOP Instance UID, and ``variant`` for a film that came with the UID
    of another but other pixels (:func:`edgecxr.clinic.instances.instance_key`), so its results are instances of their own."""
    return str(source.SOPInstanceUID) + (f"#{variant}" if variant else "")


def structured_report(source: Dataset, prediction: Prediction, identity: ModelIdentity, variant: str = "") -> Dataset:
    """The Comprehensive 3D SR of ``prediction`` on the film whose header is ``source``."""
    comments = [*(f"warning: {w}" for w in prediction.warnings), *_operating_points(prediction), NOTICE.lower()]
    measurements = [sr.num(Code(f"P_{label}"[:16], SCHEME, f"Probability of {label}"), _rounded(p)) for label, p in prediction.probabilities.items()]
    if prediction.abnormal_score is not None:
        measurements.append(sr.num(Code("ABNORMAL", SCHEME, "Abnormality score, 1 - p(Normal)"), _rounded(prediction.abnormal_score)))
    if prediction.refer is not None:
        measurements.append(sr.code("CONTAINS", REFER, sr.YES if prediction.refer else sr.NO))
    return _report(source, identity, Code(prediction.label[:16], SCHEME, prediction.label), measurements, comments, variant)


def not_analysable_report(source: Dataset, reason: str, identity: ModelIdentity, variant: str = "") -> Dataset:
    """The SR saying the film whose header is ``source`` was received but not analysed, and why (``reason``: edgecxr's words)."""
    return _report(source, identity, NOT_ANALYSABLE, [], [f"not analysable: {reason}", NOTICE.lower()], variant)


def _report(source: Dataset, identity: ModelIdentity, finding: Code, measured: list[Dataset], comments: list[str], variant: str) -> Dataset:
    uid, made_from = str(source.SOPInstanceUID), seed(source, variant)
    observer, algorithm = _model_items(identity, uids.root())
    group = sr.container("CONTAINS", _DCM["group"], [
        sr.text("HAS OBS CONTEXT", _DCM["tracking_id"], "edgecxr classification"),
        sr.uidref("HAS OBS CONTEXT", _DCM["tracking_uid"], result_uid(made_from, identity, "tracking")),
        sr.code("CONTAINS", _DCM["finding"], finding),
        *algorithm,
        *measured,
        sr.image(_DCM["source"], str(source.SOPClassUID), uid),
        *(sr.text("CONTAINS", sr.COMMENT, comment) for comment in comments),
    ], template="1501")
    root = sr.container(None, _DCM["report"], [
        *observer,
        sr.code("HAS CONCEPT MOD", _DCM["procedure"], RADIOGRAPHY),
        sr.container("CONTAINS", _DCM["measurements"], [group]),  # no Image Library: its descriptors need pixel spacing a film may lack
    ], template="1500")
    ds = _instance(source, identity, Comprehensive3DSRStorage, result_uid(made_from, identity, "sr"), made_from, "SR")
    ds.SeriesInstanceUID, ds.SeriesNumber = series_uid(source, identity, "sr-series"), SR_SERIES_NUMBER
    ds.SeriesDescription = f"edgecxr {identity.name} result (research use)"
    ds.ReferencedPerformedProcedureStepSequence = []
    ds.CodingSchemeIdentificationSequence = [sr.dataset(CodingSchemeDesignator=SCHEME, CodingSchemeName="edgecxr labels and scores")]
    ds.CompletionFlag, ds.VerificationFlag, ds.PreliminaryFlag = "COMPLETE", "UNVERIFIED", "PRELIMINARY"
    ds.PerformedProcedureCodeSequence = []
    referenced = sr.dataset(ReferencedSOPClassUID=source.SOPClassUID, ReferencedSOPInstanceUID=uid)
    series = sr.dataset(ReferencedSOPSequence=[referenced], SeriesInstanceUID=source.SeriesInstanceUID)
    ds.CurrentRequestedProcedureEvidenceSequence = [sr.dataset(ReferencedSeriesSequence=[series], StudyInstanceUID=source.StudyInstanceUID)]
    for element in root:
        ds[element.tag] = element
    return ds


@lru_cache(maxsize=8)
def _model_items(identity: ModelIdentity, root: str) -> tuple[tuple[Dataset, ...], tuple[Dataset, ...]]:
    """The content items the same for every report of ``identity`` under the UID ``root`` in use (shared by each, see
    :func:`edgecxr.clinic.sr.item`): the observer context (TID 1004, the device) and the algorithm (TID 4019)."""
    observer = (
        sr.code("HAS CONCEPT MOD", _DCM["language"], ENGLISH),
        sr.code("HAS OBS CONTEXT", _DCM["observer_type"], _DCM["device"]),
        sr.uidref("HAS OBS CONTEXT", _DCM["device_uid"], result_uid("device", identity, "device")),
        sr.text("HAS OBS CONTEXT", _DCM["device_name"], "edgecxr"),
        sr.text("HAS OBS CONTEXT", _DCM["device_manufacturer"], MANUFACTURER),
        sr.text("HAS OBS CONTEXT", _DCM["device_model"], identity.name),
    )
    algorithm = (
        sr.text("HAS CONCEPT MOD", _DCM["algorithm_name"], identity.name),
        sr.text("HAS CONCEPT MOD", _DCM["algorithm_version"], identity.version),
        sr.text("HAS CONCEPT MOD", _DCM["algorithm_parameters"], f"sha256:{identity.sha256}"),
    )
    return observer, algorithm


def secondary_capture(source: Dataset, rgb: np.ndarray, identity: ModelIdentity, variant: str = "") -> Dataset:
    """The Secondary Capture of the picture ``rgb`` (see :func:`picture`) in the study of ``source``."""
    uid, made_from = str(source.SOPInstanceUID), seed(source, variant)
    ds = _instance(source, identity, SecondaryCaptureImageStorage, result_uid(made_from, identity, "sc"), made_from, "OT", IMAGE_KEYWORDS)
    if "Laterality" in ds and not ds.Laterality:
        del ds.Laterality  # Type 2C: absent unless the film says
    if "Laterality" not in ds and ds.get("BodyPartExamined") not in UNPAIRED:
        ds.Laterality = None  # needed unless the body part is unpaired: empty, as the film did not say
    ds.SeriesInstanceUID, ds.SeriesNumber = series_uid(source, identity, "sc-series"), SC_SERIES_NUMBER
    ds.SeriesDescription = f"edgecxr {identity.name} heatmap (research use)"
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    ds.ConversionType = "DI"
    ds.DateOfSecondaryCapture, ds.TimeOfSecondaryCapture = ds.ContentDate, ds.ContentTime
    ds.PatientOrientation = source.get("PatientOrientation", "")  # the picture is the film resized, not turned
    ds.BurnedInAnnotation = "YES"
    ds.DerivationDescription = f"edgecxr {identity.name} {identity.version}: heatmap of the predicted class and the result burned in"
    ds.SourceImageSequence = [sr.dataset(ReferencedSOPClassUID=source.SOPClassUID, ReferencedSOPInstanceUID=uid)]
    rgb = np.ascontiguousarray(rgb, np.uint8)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = rgb.tobytes()
    return ds


def _instance(source: Dataset, identity: ModelIdentity, sop_class: str, sop_instance: str, made_from: str, modality: str,
              keywords: tuple[str, ...] = ()) -> Dataset:
    """A result instance's header: its file meta, SOP Common, the film's patient and study (with ``keywords``), General
    Series' modality, General Equipment, and the content date and time (now)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_class), UID(sop_instance)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # which every PACS takes
    now = datetime.now()
    ds.InstanceCreationDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = ds.ContentTime = now.strftime("%H%M%S.%f")
    ds.SOPClassUID, ds.SOPInstanceUID = UID(sop_class), UID(sop_instance)
    ds.StudyInstanceUID, ds.Modality = source.StudyInstanceUID, modality
    ds.Manufacturer, ds.SoftwareVersions = MANUFACTURER, __version__
    ds.InstanceNumber = instance_number(made_from)
    return sr.copy_patient_and_study(ds, source, keywords)


def _rounded(score: float) -> float:
    return round(float(score), 6)


def _operating_points(prediction: Prediction) -> list[str]:
    return [
        f"refer when the {p['for']} score is at or above {p['threshold']:.4f} (chosen for sensitivity {p['target_sensitivity']:g})"
        for p in prediction.operating_point or []
    ] + ([SITE_HEAD_NOTE] if prediction.head == "site" else [])
