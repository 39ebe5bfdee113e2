"""The few DICOM parts the results are made of, with pydicom alone: coded concepts, SR content items, the copied header.

Written for :mod:`edgecxr.clinic.results` (no highdicom at run time: it reads 22 MB of tables of the
standard, about 110 MB in memory, and takes some 40 ms a report). The items are those of PS3.3
C.17.3 (Document Content); what they make up, TID 1500, is :mod:`edgecxr.clinic.results`' business.
The tests check the results with highdicom and dciodvfy.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple

from pydicom import Dataset
from pydicom.charset import default_encoding
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence
from pydicom.tag import Tag


class Code(NamedTuple):
    """A coded concept: code value, coding scheme designator, code meaning."""

    value: str
    scheme: str
    meaning: str

    def item(self) -> Dataset:
        """The code as a sequence item (Code Sequence Macro); made once per code and shared (see :func:`item`)."""
        return _code_item(self)


# DCM and SCT concepts the results use (PS3.16)
COMMENT = Code("121106", "DCM", "Comment")
YES, NO = Code("373066001", "SCT", "Yes"), Code("373067005", "SCT", "No")
NO_UNITS = Code("1", "UCUM", "no units")

# Type 2 patient and study attributes: copied from the film, empty when it lacks them
STUDY_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                  "ReferringPhysicianName", "StudyID", "AccessionNumber")
# copied from the film when it has them: its character set (for the names copied), who issued the patient ID,
# what the study is, the age
KEPT_KEYWORDS = ("SpecificCharacterSet", "IssuerOfPatientID", "StudyDescription", "PatientAge")


def item() -> Dataset:
    """An empty sequence item, said to be in the results' transfer syntax already (Explicit VR Little Endian): pydicom
    then writes it as it is instead of looking for elements of ambiguous VR in it again. Such a look walks the whole
    tree under a dataset, and pydicom takes it at every nested item (about a fifth of an SR's encoding); it still
    takes it once, from the top, over the whole report (:func:`pydicom.filewriter.write_dataset`), so nothing
    goes unchecked.

    Items that are the same in every report (a code, the model's own content items) are made once and put in
    every report that holds them: pydicom changes nothing these items' bytes depend on when it puts them in a
    sequence or writes them (it may note a parent's PixelRepresentation on them, which no element here reads), and
    nothing here changes an item once made."""
    ds = Dataset()
    ds.set_original_encoding(False, True, default_encoding)  # and in pydicom's own character set (its text is written in the report's)
    return ds


def dataset(**elements: object) -> Dataset:
    """A sequence item of ``elements`` (keyword=value)."""
    ds = item()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


@lru_cache(maxsize=512)
def _code_item(code: Code) -> Dataset:
    return dataset(CodeValue=code.value, CodingSchemeDesignator=code.scheme, CodeMeaning=code.meaning)


def content_item(relationship: str | None, value_type: str, name: Code, **elements: object) -> Dataset:
    """One content item: its relationship to its parent (None for the root), value type, concept name and value elements."""
    ds = item()
    if relationship is not None:
        ds.RelationshipType = relationship
    ds.ValueType = value_type
    ds.ConceptNameCodeSequence = [name.item()]
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def text(relationship: str, name: Code, value: str) -> Dataset:
    return content_item(relationship, "TEXT", name, TextValue=value)


def code(relationship: str, name: Code, value: Code) -> Dataset:
    return content_item(relationship, "CODE", name, ConceptCodeSequence=[value.item()])


def uidref(relationship: str, name: Code, uid: str) -> Dataset:
    return content_item(relationship, "UIDREF", name, UID=uid)


def num(name: Code, value: float, unit: Code = NO_UNITS) -> Dataset:
    """A CONTAINS NUM item: ``value`` (rounded to 6 decimals, as a DS and as the exact FD)."""
    measured = dataset(MeasurementUnitsCodeSequence=[unit.item()], NumericValue=f"{value:.6f}".rstrip("0").rstrip("."), FloatingPointValue=value)
    return content_item("CONTAINS", "NUM", name, MeasuredValueSequence=[measured])


def image(name: Code, sop_class: str, sop_instance: str) -> Dataset:
    return content_item("CONTAINS", "IMAGE", name, ReferencedSOPSequence=[dataset(ReferencedSOPClassUID=sop_class, ReferencedSOPInstanceUID=sop_instance)])


def container(relationship: str | None, name: Code, items: Iterable[Dataset], template: str | None = None) -> Dataset:
    """A CONTAINER item (continuous) of ``items``, with its template (TID) when given."""
    item = content_item(relationship, "CONTAINER", name, ContinuityOfContent="CONTINUOUS")
    if template is not None:
        item.ContentTemplateSequence = [dataset(MappingResource="DCMR", TemplateIdentifier=template)]
    item.ContentSequence = Sequence(list(items))
    return item


def copy_patient_and_study(result: Dataset, source: Dataset, keywords: Iterable[str] = ()) -> Dataset:
    """``result`` with the film's patient and study attributes (and ``keywords``) as the film has them, byte for byte, so a PACS
    files it with the film: the Type 2 ones always (empty when the film lacks them), the others when the film has them."""
    for keyword in (*STUDY_KEYWORDS, *KEPT_KEYWORDS, *keywords):
        tag = Tag(keyword)
        if tag in source:
            result[tag] = copy.deepcopy(source[tag])
        elif keyword in STUDY_KEYWORDS:
            result[tag] = DataElement(tag, "PN" if keyword.endswith("Name") else _VR[keyword], None)
    return result


_VR = {"PatientID": "LO", "PatientBirthDate": "DA", "PatientSex": "CS", "StudyDate": "DA", "StudyTime": "TM", "StudyID": "SH", "AccessionNumber": "SH"}
