"""A pydicom decoding plugin for JPEG Lossless SV1 (1.2.840.10008.1.2.4.70) with imagecodecs (BSD-3-Clause).

pydicom's own plugins for this syntax are pylibjpeg-libjpeg (GPL-3.0, which does not fit this
Apache-2.0 project) and python-gdcm (which aborted the whole process on corrupt compressed data
when tried here). imagecodecs' ``ljpeg`` codec (liblj92) decodes SV1 exactly (8- and 16-bit
films checked against DCMTK's ``dcmcjpeg --encode-lossless-sv1``), but decodes a frame cut short
without an error, so a frame must end with the JPEG end-of-image marker or it is refused as
corrupt. :func:`register` adds the plugin when imagecodecs is installed (the ``clinic`` extra).
"""
from __future__ import annotations

import contextlib
from typing import Any

from pydicom.uid import UID, JPEGLosslessSV1

DECODER_DEPENDENCIES = {JPEGLosslessSV1: ("numpy", "imagecodecs")}
LABEL = "imagecodecs-ljpeg"


def is_available(uid: UID) -> bool:
    """Whether this plugin decodes ``uid`` here (imagecodecs with its ljpeg codec installed)."""
    if uid != JPEGLosslessSV1:
        return False
    try:
        import imagecodecs
    except ImportError:
        return False
    return bool(getattr(imagecodecs, "LJPEG", None) and imagecodecs.LJPEG.available)


def _decode_frame(src: bytes, runner: Any) -> bytearray:
    """One frame's pixel bytes (little endian, as pydicom expects them); ValueError for a frame cut short or corrupt."""
    import imagecodecs

    if not bytes(src).rstrip(b"\0").endswith(b"\xff\xd9"):
        raise ValueError("the JPEG Lossless frame ends before its end-of-image marker")
    pixels = imagecodecs.ljpeg_decode(src)
    return bytearray(pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes())


def register() -> None:
    """Add the plugin to pydicom's JPEG Lossless SV1 decoder (once)."""
    from pydicom.pixels.decoders import JPEGLosslessSV1Decoder

    with contextlib.suppress(ValueError):  # "already has a plugin named ...": registered before
        JPEGLosslessSV1Decoder.add_plugin(LABEL, (__name__, "_decode_frame"))
