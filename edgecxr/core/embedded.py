"""The card facts a ``.tflite`` carries itself: labels, preprocessing and output kind in the model's metadata.

The converter writes them as one JSON entry named :data:`METADATA_NAME` in the flatbuffer's
``metadata`` table (TFLite's place for named extra data, next to e.g. ``min_runtime_version``),
so the file's sha256 in the card covers them: a card whose labels are reordered or whose
preprocessing was edited no longer agrees with the model it describes, and
:func:`check_agrees` refuses it.

Reading needs only the flatbuffer layout of the TFLite schema's ``Model`` table (field 4
``buffers``, field 6 ``metadata``; ``Metadata`` = name, buffer index; ``Buffer`` field 0 = bytes),
walked with :mod:`struct`: the runtime has no flatbuffers schema package on every board
(``tflite-runtime`` ships none).
"""
from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

METADATA_NAME = "edgecxr_card"
FILE_IDENTIFIER = b"TFL3"  # bytes 4-8 of every TFLite flatbuffer
FACTS = ("labels", "preprocessing", "output_kind")  # what the model file and its card must agree on

_MODEL_BUFFERS, _MODEL_METADATA = 4, 6  # field numbers in the TFLite schema's Model table


class EmbeddedError(ValueError):
    """A flatbuffer whose metadata cannot be read."""


def read_metadata(flat: bytes) -> dict[str, bytes]:
    """Every metadata entry of a ``.tflite`` flatbuffer: {name: the bytes of its buffer}."""
    try:
        root = _u32(flat, 0)
        buffers = _vector_of_tables(flat, root, _MODEL_BUFFERS)
        out = {}
        for entry in _vector_of_tables(flat, root, _MODEL_METADATA):
            name = _string(flat, entry, 0)
            index = _u32(flat, entry + _field(flat, entry, 1)) if _field(flat, entry, 1) else 0
            if index >= len(buffers):
                raise IndexError(f"metadata {name!r} names buffer {index} of {len(buffers)}")
            out[name] = _bytes(flat, buffers[index], 0)
        return out
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise EmbeddedError(f"unreadable flatbuffer metadata ({exc})") from None


def embedded_facts(flat: bytes) -> dict[str, Any] | None:
    """The edgecxr facts the model file holds, or None when it holds none (models converted before they did).

    Bytes that are not a TFLite flatbuffer (no ``TFL3`` identifier) hold none either; the
    interpreter refuses them when it loads them.
    """
    if flat[4:8] != FILE_IDENTIFIER:
        return None
    raw = read_metadata(flat).get(METADATA_NAME)
    if raw is None:
        return None
    try:
        facts = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise EmbeddedError(f"metadata {METADATA_NAME!r} is not JSON ({exc})") from None
    if not isinstance(facts, dict):
        raise EmbeddedError(f"metadata {METADATA_NAME!r} is not a JSON object")
    return facts


def facts_json(facts: Mapping[str, Any]) -> bytes:
    """The bytes the converter embeds: :data:`FACTS` of a card, as compact JSON."""
    return json.dumps({k: facts[k] for k in FACTS}, separators=(",", ":"), sort_keys=True).encode()


def _unpack(fmt: str, buf: bytes, pos: int) -> int:
    """One little-endian value at ``pos``; IndexError for a position outside ``buf`` (struct would read negative ones from the end)."""
    if not 0 <= pos <= len(buf) - struct.calcsize(fmt):
        raise IndexError(f"offset {pos} outside the file")
    return int(struct.unpack_from(fmt, buf, pos)[0])


def _u32(buf: bytes, pos: int) -> int:
    return _unpack("<I", buf, pos)


def _field(buf: bytes, table: int, index: int) -> int:
    """The offset of field ``index`` inside ``table`` (0 when absent)."""
    vtable = table - _unpack("<i", buf, table)
    size = _unpack("<H", buf, vtable)
    slot = 4 + 2 * index
    return _unpack("<H", buf, vtable + slot) if slot < size else 0


def _vector(buf: bytes, table: int, index: int) -> tuple[int, int]:
    """(position of the first element, length) of a vector field; (0, 0) when absent."""
    offset = _field(buf, table, index)
    if not offset:
        return 0, 0
    pos = table + offset
    start = pos + _u32(buf, pos)
    return start + 4, _u32(buf, start)


def _vector_of_tables(buf: bytes, table: int, index: int) -> list[int]:
    first, n = _vector(buf, table, index)
    if first + 4 * n > len(buf):
        raise IndexError("vector runs past the end of the file")
    return [first + 4 * i + _u32(buf, first + 4 * i) for i in range(n)]


def _bytes(buf: bytes, table: int, index: int) -> bytes:
    first, n = _vector(buf, table, index)
    if first + n > len(buf):
        raise IndexError("vector runs past the end of the file")
    return bytes(buf[first:first + n])


def _string(buf: bytes, table: int, index: int) -> str:
    return _bytes(buf, table, index).decode()
