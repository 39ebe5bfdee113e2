"""A classifier's reduced JPEG decode: a new ``decode_min_side`` in its spec, embedded, checked on full-size films, bundled.

    python -m converters.decode edgecxr/models/resnet18-int8.tflite --min-side 256 \\
        --films ../shared/data/cxr3-fullres --out DIR [--bundle]

The graph is untouched (its outputs on random inputs are checked to be bit-identical); what changes is
what the model sees of a large JPEG (see ``decode_min_side`` in :mod:`edgecxr.core.preprocess`), so it
is a preprocessing release: a new sha256, and site profiles made for the old file are refused. The
new model and the same model decoding every JPEG in full predict every JPEG under ``--films``
through the runtime; the release passes when the labels agree on at least the release gate's
``agreement_with_own_float`` share of them (a quantized variant against its own float model) and
every film's input checks fire the same. The check is recorded on the card
(``verification.reduced_decode``).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

from converters.bundling import bundle
from converters.embed import identical_outputs, write_with_facts
from edgecxr.core.card import ModelError, read_card, verify_file, write_card
from edgecxr.core.cardparts import DecodeCheck, Verification
from edgecxr.core.failures import ImageError
from edgecxr.core.headers import raster_header
from edgecxr.core.inputs import find_images
from edgecxr.core.model import Model
from edgecxr.core.preprocess import PreprocessSpec
from edgecxr.evaluation.targets import gate


def min_agreement() -> float:
    """The release gate's top-1 agreement a variant needs with its own float model: what the reduced decode needs with the full one."""
    return next(rule.value for rule in gate().quantization if rule.key == "agreement_with_own_float")


def is_jpeg(path: Path) -> bool:
    """Whether the file is a JPEG by its header (not its name)."""
    with open(path, "rb") as f:
        header = raster_header(f)
    return header is not None and header.format == "jpeg"


def decode_check(before: Path, after: Path, films: list[Path], min_agreement: float) -> DecodeCheck:
    """The model at ``after`` (reduced decode) against the one at ``before`` (the same graph decoding in full) on ``films``."""
    old, new = Model(before), Model(after)
    same_label = 0
    worst = 0.0
    same_checks = True
    for film in films:
        a, b = old.predict(film), new.predict(film)
        same_label += a.label == b.label
        worst = max(worst, *(abs(a.probabilities[k] - b.probabilities[k]) for k in a.probabilities))
        same_checks = same_checks and [c.code for c in a.checks] == [c.code for c in b.checks]
    agreement = same_label / len(films)
    return DecodeCheck(
        films=len(films), agreement=round(agreement, 4), max_abs_probability_diff=round(worst, 4), same_checks=same_checks,
        min_agreement=min_agreement, passed=agreement >= min_agreement and same_checks,
    )


def with_min_side(spec: PreprocessSpec, min_side: int | None) -> PreprocessSpec:
    """``spec`` decoding a JPEG reduced to ``min_side`` (None: in full); ValueError when the spec refuses it."""
    return PreprocessSpec.from_dict({**spec.to_dict(), "decode_min_side": min_side})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m converters.decode",
        description="Give a classifier a reduced JPEG decode (decode_min_side), embedded in its .tflite, checked on full-size films.",
    )
    parser.add_argument("model", type=Path, help=".tflite with its card beside it")
    parser.add_argument("--min-side", type=int, required=True, help="px: a JPEG is decoded at 1/2 or 1/4, the smaller keeping both sides this long")
    parser.add_argument("--films", type=Path, required=True, help="folder of full-size films (its JPEGs are the check)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the new model and its card")
    parser.add_argument("--bundle", action="store_true", help="copy it into the package (edgecxr/models/), next version")
    args = parser.parse_args(argv)
    target = args.out / args.model.name
    try:
        card = read_card(args.model)
        verify_file(args.model, card)
        if not isinstance(card.verification, Verification):
            raise ValueError(f"{args.model}: not a classifier card with a verification")
        if target.resolve() == args.model.resolve():
            raise ValueError(f"{args.model}: --out is its own folder; the new file would replace it")
        films = [p for p in find_images(args.films) if is_jpeg(p)]
        if not films:
            raise ValueError(f"{args.films}: no JPEG films to check the reduced decode on")
        reduced = dataclasses.replace(card, preprocessing=with_min_side(card.preprocessing, args.min_side))
        args.out.mkdir(parents=True, exist_ok=True)
        flat = args.model.read_bytes()
        with tempfile.TemporaryDirectory() as tmp:  # the reference: the same graph and card decoding every JPEG in full
            full = Path(tmp) / args.model.name
            write_with_facts(full, dataclasses.replace(card, preprocessing=with_min_side(card.preprocessing, None)), flat)
            write_with_facts(target, reduced, flat)
            if not identical_outputs(args.model, target):
                raise ValueError(f"{args.model}: with the new spec embedded its outputs changed")
            check = decode_check(full, target, films, min_agreement())
        write_card(target, dataclasses.replace(read_card(target), verification=dataclasses.replace(card.verification, reduced_decode=check)))
        print(f"{target}: {check.films} JPEG films, labels agree {check.agreement:.4f} (>= {check.min_agreement}), "
              f"max |dp| {check.max_abs_probability_diff:.4f}, checks {'the same' if check.same_checks else 'DIFFER'}: "
              f"{'PASSED' if check.passed else 'FAILED'}")
        if not check.passed:
            raise ValueError(f"{args.model}: the reduced decode failed its check; not bundled")
    except (ModelError, ValueError, OSError, ImageError) as exc:
        for made in (target, target.with_suffix(".json")):  # nothing half-made is left behind
            made.unlink(missing_ok=True)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.bundle:
        bundle(target, f"Large JPEG films decoded reduced (decode_min_side {args.min_side}: libjpeg's 1/2 or 1/4, the smaller keeping both "
               f"sides >= {args.min_side} px); the graph is unchanged. On {check.films} full-size JPEG films against the full decode: labels "
               f"agree {check.agreement:.2f}, max |dp| {check.max_abs_probability_diff:.3f}, the same input checks.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
