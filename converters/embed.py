"""Writing the card facts into a ``.tflite`` (see :mod:`edgecxr.core.embedded`, which reads them).

    python -m converters.embed MODEL.tflite --out DIR [--bundle]

embeds them into a model converted before the converter did (the bundled lung model 1.0.0).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from converters.bundling import bundle
from edgecxr.core.card import ModelCard, ModelError, gzip_size, read_card, verify_file, write_card
from edgecxr.core.embedded import METADATA_NAME, embedded_facts, facts_json
from edgecxr.core.interpreter import make_interpreter


def embed_facts(flat: bytes, card: Mapping[str, Any]) -> bytes:
    """``flat`` with the card's labels, preprocessing and output kind as metadata entry :data:`METADATA_NAME`.

    An entry of that name already there is replaced; the model's tensors and ops are untouched.
    """
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flat))
    model.metadata = [m for m in (model.metadata or []) if m.name not in (METADATA_NAME, METADATA_NAME.encode())]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(facts_json(card), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def write_with_facts(path: Path, card: ModelCard, flat: bytes) -> None:
    """``flat`` with ``card``'s facts embedded (:func:`embed_facts`) at ``path``, and ``card`` beside it (its gzip size that file's)."""
    embedded = embed_facts(flat, card.to_dict())
    path.write_bytes(embedded)
    write_card(path, dataclasses.replace(card, gzip_bytes=gzip_size(embedded)))


def identical_outputs(before: Path, after: Path, n: int = 8, seed: int = 0) -> bool:
    """Whether the two ``.tflite`` files give bit-identical raw outputs on ``n`` random inputs of their input type."""
    rng = np.random.default_rng(seed)
    a, b = make_interpreter(str(before)), make_interpreter(str(after))
    detail = a.get_input_details()[0]
    for _ in range(n):
        if np.issubdtype(detail["dtype"], np.integer):
            info = np.iinfo(detail["dtype"])
            x = rng.integers(info.min, info.max + 1, size=detail["shape"]).astype(detail["dtype"])
        else:
            x = rng.uniform(0, 1, size=detail["shape"]).astype(detail["dtype"])
        outputs = []
        for interpreter in (a, b):
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
            interpreter.invoke()
            outputs.append([interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()])
        if any(not np.array_equal(p, q) for p, q in zip(*outputs)):
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m converters.embed",
        description="Embed a card's facts (labels, preprocessing, output kind) into a .tflite converted before they were embedded; "
        "the graph is untouched and its outputs are checked to be bit-identical.",
    )
    parser.add_argument("model", type=Path, help=".tflite with its card beside it")
    parser.add_argument("--out", type=Path, required=True, help="folder for the model with facts and its card")
    parser.add_argument("--bundle", action="store_true", help="copy it into the package (edgecxr/models/), next version")
    parser.add_argument("--change", default="Labels, preprocessing and output kind embedded in the .tflite (the sha256 covers them); "
                        "the graph and its outputs are unchanged.")
    args = parser.parse_args(argv)
    target = args.out / args.model.name
    try:
        card = read_card(args.model)
        verify_file(args.model, card)  # the card must be this file's: its facts are about to be sealed into it
        if embedded_facts(args.model.read_bytes()) is not None:
            raise ValueError(f"{args.model}: already carries its facts")
        if target.resolve() == args.model.resolve():
            raise ValueError(f"{args.model}: --out is its own folder; the new file would replace it")
        args.out.mkdir(parents=True, exist_ok=True)
        write_with_facts(target, card, args.model.read_bytes())
        if not identical_outputs(args.model, target):
            target.unlink()
            target.with_suffix(".json").unlink()
            raise ValueError(f"{args.model}: with its facts embedded its outputs changed; nothing written")
    except (ModelError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{target}: facts embedded, outputs identical")
    if args.bundle:
        bundle(target, args.change)
    return 0


if __name__ == "__main__":
    sys.exit(main())
