"""The edgecxr API inside a small clinic app: a triage worklist for incoming X-rays.

Shows how an app uses the API: load the model once, predict each incoming file, handle an
unreadable file (``ImageError``) without stopping, sort the worklist so the most likely abnormal
(non-Normal) cases come first, and flag for human review any prediction that has input warnings
or whose top probability is below a threshold. Research use only: a second reader, not a diagnosis.

    python examples/clinic_app.py FILE... [--model NAME_OR_PATH] [--review-below 0.7] [--normal-label Normal]

Labels are model-specific (COVID/Normal/Pneumonia for the bundled models). If the model has no
label named by --normal-label, the worklist is sorted by confidence only.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from edgecxr import ImageError, ModelError, load_model
from edgecxr.core.site import NORMAL


@dataclass
class Case:
    file: str
    label: str = ""
    confidence: float = 0.0  # top class probability
    abnormal: float = 0.0  # 1 - P(normal); the confidence when the model has no normal label
    review: list[str] = field(default_factory=list)  # reasons a human must look; empty if none
    error: str = ""


class Triage:
    def __init__(self, model: str | None = None, review_below: float = 0.7, normal_label: str = NORMAL) -> None:
        self.model = load_model(model)  # slow: do it once at start-up, not per file
        self.review_below = review_below
        self.normal_label = normal_label if normal_label in self.model.labels else None

    def assess(self, path: str) -> Case:
        try:
            p = self.model.predict(path)
        except ImageError as exc:
            return Case(path, error=exc.reason, review=["unreadable file"])
        confidence = max(p.probabilities.values())
        abnormal = 1.0 - p.probabilities[self.normal_label] if self.normal_label else confidence
        review = list(p.warnings)
        if confidence < self.review_below:
            review.append(f"low confidence ({confidence:.2f} < {self.review_below})")
        return Case(path, p.label, confidence, abnormal, review)

    def triage(self, paths: list[str]) -> list[Case]:
        """Most likely abnormal first; unreadable files last."""
        return sorted((self.assess(p) for p in paths), key=lambda c: (bool(c.error), -c.abnormal))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="incoming image files (PNG, JPEG, TIFF, DICOM, ...)")
    parser.add_argument("--model", help="bundled model name or path to a .tflite (default: the bundled default)")
    parser.add_argument("--review-below", type=float, default=0.7, help="flag predictions whose top probability is below this")
    parser.add_argument("--normal-label", default=NORMAL, help=f"the model's label for a normal study (default: {NORMAL})")
    args = parser.parse_args(argv)
    try:
        app = Triage(args.model, args.review_below, args.normal_label)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if app.normal_label is None:
        print(f"note: no {args.normal_label!r} label in {app.model.labels}; sorting by confidence only", file=sys.stderr)

    cases = app.triage(args.files)
    for rank, c in enumerate(cases, 1):
        result = f"ERROR {c.error}" if c.error else f"{c.label:<12} p={c.confidence:.3f} abnormal={c.abnormal:.3f}"
        flag = "  REVIEW: " + "; ".join(c.review) if c.review else ""
        print(f"{rank:>3}. {c.file}  {result}{flag}")
    return 1 if any(c.error for c in cases) else 0


if __name__ == "__main__":
    sys.exit(main())
