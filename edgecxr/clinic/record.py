"""The result record: what the worker keeps of one classification, and the two log lines made from it.

One type for every place a result is written or read back: ``STORE/classified/<key>.json`` is
:meth:`ResultRecord.to_dict`; the ``classified`` line of ``audit.jsonl`` is :meth:`ResultRecord.audit`
(no file name, no probabilities); the ``result`` line of ``results.jsonl`` is :meth:`ResultRecord.line`
(the prediction as ``edgecxr predict --json`` prints it, the model, the result files, the file it came from).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgecxr.clinic.results import ModelIdentity
from edgecxr.core.model import Prediction

AUDIT_FIELDS = ("model_sha256", "label", "abnormal_score", "refer", "warnings")  # what the audit log keeps of a result


@dataclass(frozen=True)
class ResultRecord:
    """One film's result: its key, the prediction (``Prediction.to_dict()`` without ``file``), the model, the files written."""

    key: str
    prediction: Mapping[str, Any]
    model_version: str
    model_sha256: str
    results: tuple[str, ...]  # names in STORE/results/

    @classmethod
    def of(cls, key: str, prediction: Prediction, identity: ModelIdentity, files: Sequence[str]) -> ResultRecord:
        return cls(key, {k: v for k, v in prediction.to_dict().items() if k != "file"}, identity.version, identity.sha256, tuple(files))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResultRecord:
        """A record as :meth:`to_dict` wrote it."""
        own = {"key", "model_version", "model_sha256", "results"}
        return cls(data["key"], {k: v for k, v in data.items() if k not in own}, data["model_version"], data["model_sha256"], tuple(data["results"]))

    def to_dict(self) -> dict[str, Any]:
        """``classified/<key>.json``."""
        return {**self.prediction, "key": self.key, "model_version": self.model_version, "model_sha256": self.model_sha256, "results": list(self.results)}

    def audit(self) -> dict[str, Any]:
        """The fields of the ``classified`` audit line."""
        record = self.to_dict()
        return {k: record[k] for k in AUDIT_FIELDS if k in record}

    def line(self, file: str | None) -> dict[str, Any]:
        """The fields of the ``result`` line of ``results.jsonl`` (its key is the line's own)."""
        return {"file": file, **{k: v for k, v in self.to_dict().items() if k != "key"}}
