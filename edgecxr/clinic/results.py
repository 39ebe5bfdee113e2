"""One classification as DICOM, in the source film's study: a Structured Report and a Secondary Capture (highdicom).

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
"""
from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import highdicom as hd  # imported with the module, so the first film does not wait for it (a second or more)
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian

from edgecxr import __version__
from edgecxr.clinic import uids
from edgecxr.core.model import Prediction
from edgecxr.core.picture import result_picture

SITE_HEAD_NOTE = "classifier head: this site's own (edgecxr adapt)"  # said on results whose probabilities came from a site head
NOTICE = "RESEARCH USE - NOT A DIAGNOSIS"
SCHEME = "99EDGECXR"  # private coding scheme of the labels and scores
NOT_ANALYSABLE = Code("NOTANALYSABLE", SCHEME, "Not analysable")  # the finding of a film received but not analysed
MANUFACTURER = "edgecxr"
SR_SERIES_NUMBER, SC_SERIES_NUMBER = 9901, 9902
# px: the picture is resized to fit MAX_SIDE (a picture to look at, not the film to read) and, within that,
# enlarged to at least MIN_WIDTH so the burned-in text stays legible on a small film.
MIN_WIDTH, MAX_SIDE = 768, 1024
# Type 2 patient and study attributes highdicom copies from the evidence; empty when the film lacks them.
STUDY_KEYWORDS = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "StudyDate", "StudyTime")
NAME_KEYWORDS = ("PatientName", "ReferringPhysicianName")  # highdicom refuses a name without a caret; the film's own value is put back
# Copied from the film when it has them (highdicom does not): who issued the patient ID, what the study is, the age;
# and into the Secondary Capture (an image, whose series has them; an SR's has not) the body part and its laterality.
KEPT_KEYWORDS = ("IssuerOfPatientID", "StudyDescription", "PatientAge")
IMAGE_KEYWORDS = ("BodyPartExamined", "Laterality")
UNPAIRED = ("CHEST", "THORAX")  # body parts without a laterality (General Series' Laterality is then absent)


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


def evidence(source: Dataset) -> Dataset:
    """The source header as highdicom takes it: Type 2 patient and study attributes present (empty if the film lacks
    them), names given a caret (``DOE JOHN`` -> ``DOE JOHN^``, the same name in DICOM's rules)."""
    ds = copy.deepcopy(source)  # a shallow copy would share its elements with the source
    for keyword in STUDY_KEYWORDS:
        if keyword not in ds:
            setattr(ds, keyword, None)
    for keyword in NAME_KEYWORDS:
        name = str(ds.get(keyword, "") or "")
        if name and "^" not in name:
            setattr(ds, keyword, name + "^")
    return ds


def same_patient_and_study(result: Dataset, source: Dataset) -> Dataset:
    """``result`` with the film's own patient and study values, byte for byte, so a PACS files it with the film."""
    image = result.get("Modality") != "SR"
    for keyword in (*STUDY_KEYWORDS, *NAME_KEYWORDS, *KEPT_KEYWORDS, *(IMAGE_KEYWORDS if image else ())):
        if keyword in source and (keyword != "Laterality" or source.Laterality):  # Type 2C: absent unless the film says
            result[keyword] = copy.deepcopy(source[keyword])
    if image and "Laterality" not in result and result.get("BodyPartExamined") not in UNPAIRED:
        result.Laterality = None  # Type 2C, needed unless the body part is unpaired: empty, as the film did not say
    return result


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
    measurements = [_score(f"P_{label}"[:16], f"Probability of {label}", p) for label, p in prediction.probabilities.items()]
    if prediction.abnormal_score is not None:
        measurements.append(_score("ABNORMAL", "Abnormality score, 1 - p(Normal)", prediction.abnormal_score))
    return _report(source, identity, Code(prediction.label[:16], SCHEME, prediction.label), measurements, _evaluations(prediction), comments, variant)


def not_analysable_report(source: Dataset, reason: str, identity: ModelIdentity, variant: str = "") -> Dataset:
    """The SR saying the film whose header is ``source`` was received but not analysed, and why (``reason``: edgecxr's words)."""
    return _report(source, identity, NOT_ANALYSABLE, [], [], [f"not analysable: {reason}", NOTICE.lower()], variant)


def _report(source: Dataset, identity: ModelIdentity, finding: Code, measurements: list[hd.sr.Measurement],
            evaluations: Sequence[hd.sr.QualitativeEvaluation], comments: list[str], variant: str) -> Dataset:
    uid, made_from = str(source.SOPInstanceUID), seed(source, variant)
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=result_uid(made_from, identity, "tracking"), identifier="edgecxr classification"),
        algorithm_id=hd.sr.AlgorithmIdentification(name=identity.name, version=identity.version, parameters=[f"sha256:{identity.sha256}"]),
        finding_type=finding,
        qualitative_evaluations=evaluations or None,
        measurements=measurements or None,
        source_images=[hd.sr.SourceImageForMeasurementGroup(str(source.SOPClassUID), uid)],
    )
    group[0].ContentSequence.extend(
        hd.sr.TextContentItem(name=codes.DCM.Comment, value=text, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS) for text in comments
    )
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=result_uid("device", identity, "device"), name="edgecxr", manufacturer_name=MANUFACTURER, model_name=identity.name
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=Code("363680008", "SCT", "Radiographic imaging procedure"),
        imaging_measurements=[group],  # no Image Library: its descriptors need pixel spacing a film may lack
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[evidence(source)],
        content=report[0],
        series_instance_uid=series_uid(source, identity, "sr-series"),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=result_uid(made_from, identity, "sr"),
        instance_number=instance_number(made_from),
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=f"edgecxr {identity.name} result (research use)",
        software_versions=__version__,
        coding_schemes=[hd.coding_schemes.CodingSchemeIdentificationItem(designator=SCHEME, name="edgecxr labels and scores")],
    )
    return same_patient_and_study(sr, source)


def secondary_capture(source: Dataset, rgb: np.ndarray, identity: ModelIdentity, variant: str = "") -> Dataset:
    """The Secondary Capture of the picture ``rgb`` (see :func:`picture`) in the study of ``source``."""
    uid, made_from = str(source.SOPInstanceUID), seed(source, variant)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=evidence(source),
        pixel_array=np.ascontiguousarray(rgb),
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=series_uid(source, identity, "sc-series"),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=result_uid(made_from, identity, "sc"),
        instance_number=instance_number(made_from),
        manufacturer=MANUFACTURER,
        patient_orientation=("L", "F"),  # replaced below by the film's own (or left empty)
        series_description=f"edgecxr {identity.name} heatmap (research use)",
        software_versions=__version__,
        transfer_syntax_uid=ExplicitVRLittleEndian,  # which every PACS takes
    )
    sc.PatientOrientation = source.get("PatientOrientation", "")  # the picture is the film resized, not turned
    sc.BurnedInAnnotation = "YES"
    sc.DerivationDescription = f"edgecxr {identity.name} {identity.version}: heatmap of the predicted class and the result burned in"
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = uid
    sc.SourceImageSequence = [reference]
    return same_patient_and_study(sc, source)


def _evaluations(prediction: Prediction) -> Sequence[hd.sr.QualitativeEvaluation]:
    if prediction.refer is None:
        return []
    return [hd.sr.QualitativeEvaluation(Code("REFER", SCHEME, "Refer for reading at the site's threshold"), codes.SCT.Yes if prediction.refer else codes.SCT.No)]


def _score(value: str, meaning: str, score: float) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=Code(value, SCHEME, meaning), value=round(float(score), 6), unit=Code("1", "UCUM", "no units"))


def _operating_points(prediction: Prediction) -> list[str]:
    return [
        f"refer when the {p['for']} score is at or above {p['threshold']:.4f} (chosen for sensitivity {p['target_sensitivity']:g})"
        for p in prediction.operating_point or []
    ] + ([SITE_HEAD_NOTE] if prediction.head == "site" else [])
