"""Writing the card facts into a ``.tflite`` (see :mod:`edgecxr.embedded`, which reads them)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from edgecxr.embedded import METADATA_NAME, facts_json


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
