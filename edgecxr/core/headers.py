"""What a raster file's header declares (size, channels, bits), read before any pixel is decoded.

:func:`raster_header` reads the few bytes of a PNG, JPEG, BMP or TIFF header that give its width,
height, samples per pixel and bits per sample, so an image too large to hold can be refused, and
the right decoding chosen (reduced JPEG decoding, or straight to one gray channel), before OpenCV
allocates anything; :func:`png_intact` checks a PNG's chunks without decoding them, :func:`jpeg_ends` that a JPEG
is not cut short. It never raises on a malformed header: it returns None, and the decoder then
says what is wrong. OpenCV has no header-only read in Python (``cv2.imreadWithMetadata`` decodes
the pixels too), hence this module.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

# The one table of raster magic bytes: (the bytes a file starts with, its format, the suffix edgecxr stores it under)
MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png", ".png"), (b"\xff\xd8\xff", "jpeg", ".jpg"), (b"BM", "bmp", ".bmp"),
    (b"II*\x00", "tiff", ".tif"), (b"MM\x00*", "tiff", ".tif"),
)
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # by IHDR colour type (3: palette, decoded to colour)
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True)
class Header:
    format: str  # "png", "jpeg", "bmp", "tiff"
    width: int
    height: int
    channels: int
    bits: int  # per sample

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decoded_bytes(self) -> int:
        """The bytes of the image decoded unchanged (all channels, 8 or 16 bits a sample)."""
        return self.pixels * self.channels * (2 if self.bits > 8 else 1)


def raster_format(head: bytes) -> tuple[str, str] | None:
    """(format, stored suffix) of a raster file from its first bytes (:data:`MAGIC`), or None for anything else."""
    return next(((fmt, suffix) for magic, fmt, suffix in MAGIC if head.startswith(magic)), None)


def raster_header(f: BinaryIO) -> Header | None:
    """The header of the PNG, JPEG, BMP or TIFF file open as ``f`` (at offset 0); None for other formats or a header cut short."""
    try:
        head = f.read(32)
        fmt = (raster_format(head) or ("", ""))[0]
        if fmt == "png" and head[12:16] == b"IHDR":
            width, height, bits, colour = struct.unpack(">IIBB", head[16:26])
            return Header("png", width, height, _PNG_CHANNELS.get(colour, 4), bits)
        if fmt == "jpeg":
            return _jpeg(f)
        if fmt == "bmp":
            width, height = struct.unpack("<ii", head[18:26])
            bpp = struct.unpack("<H", head[28:30])[0]
            return Header("bmp", abs(width), abs(height), 1 if bpp <= 8 else bpp // 8, 8)
        if fmt == "tiff":
            return _tiff(f, "<" if head[:2] == b"II" else ">")
    except (struct.error, OSError, ValueError):
        return None
    return None


def _jpeg(f: BinaryIO) -> Header | None:
    """The first start-of-frame segment's size, found by walking the segments from the start."""
    f.seek(2)
    while True:
        marker = f.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        kind = marker[1]
        if kind == 0xFF:  # fill byte
            f.seek(-1, 1)
            continue
        if 0xD0 <= kind <= 0xD9 or kind == 0x01:  # segments without a length
            continue
        (length,) = struct.unpack(">H", f.read(2))
        if kind in _JPEG_SOF:
            bits, height, width, channels = struct.unpack(">BHHB", f.read(6))
            return Header("jpeg", width, height, channels, bits)
        f.seek(length - 2, 1)


def _tiff(f: BinaryIO, order: str) -> Header | None:
    """ImageWidth, ImageLength, SamplesPerPixel and BitsPerSample of the first image file directory."""
    f.seek(4)
    (offset,) = struct.unpack(order + "I", f.read(4))
    f.seek(offset)
    (count,) = struct.unpack(order + "H", f.read(2))
    tags: dict[int, int] = {}
    elsewhere: dict[int, int] = {}  # tag -> offset of its values (more than fit in the entry)
    for _ in range(min(count, 512)):
        tag, kind, n, raw = struct.unpack(order + "HHI4s", f.read(12))
        if kind == 3 and n <= 2:  # SHORT: the first value, in the entry's first two bytes
            tags[tag] = struct.unpack(order + "H", raw[:2])[0]
        elif kind == 3:
            elsewhere[tag] = struct.unpack(order + "I", raw)[0]
        elif kind == 4 and n == 1:  # LONG
            tags[tag] = struct.unpack(order + "I", raw)[0]
    if 258 in elsewhere:  # BitsPerSample of several channels: the first one's
        f.seek(elsewhere[258])
        tags[258] = struct.unpack(order + "H", f.read(2))[0]
    if 256 not in tags or 257 not in tags:
        return None
    return Header("tiff", tags[256], tags[257], tags.get(277, 1), tags.get(258, 1))


def png_intact(f: BinaryIO) -> bool:
    """Whether the PNG open as ``f`` is whole: every chunk's CRC right, up to its IEND (read in blocks, never held)."""
    f.seek(8)
    while True:
        head = f.read(8)
        if len(head) < 8:
            return False
        (length,) = struct.unpack(">I", head[:4])
        crc, left = zlib.crc32(head[4:]), length
        while left:
            block = f.read(min(left, 1 << 20))
            if not block:
                return False
            crc, left = zlib.crc32(block, crc), left - len(block)
        tail = f.read(4)
        if len(tail) < 4 or struct.unpack(">I", tail)[0] != crc & 0xFFFFFFFF:
            return False
        if head[4:] == b"IEND":
            return True


def jpeg_ends(f: BinaryIO) -> bool:
    """Whether the JPEG open as ``f`` has its end-of-image marker after its first scan (read in blocks, never held).

    libjpeg decodes a JPEG cut short without failing: the rows it lacks come out gray and all it
    says is a "Premature end of JPEG file" on stderr, which edgecxr does not show. In the
    entropy-coded data a 0xFF byte is always followed by 0x00 or a restart marker, so the first
    FF D9 after the start of scan is the end of the image. A file that ends there is found at
    once; one with bytes after its end (some cameras append data) is searched.
    """
    try:
        f.seek(2)
        while True:  # the segments before the first scan
            marker = f.read(2)
            if len(marker) < 2 or marker[0] != 0xFF:
                return False
            if marker[1] == 0xFF:
                f.seek(-1, 1)
                continue
            if 0xD0 <= marker[1] <= 0xD9 or marker[1] == 0x01:
                continue
            (length,) = struct.unpack(">H", f.read(2))
            f.seek(length - 2, 1)
            if marker[1] == 0xDA:
                break
        scan = f.tell()
        f.seek(-2, 2)
        if f.tell() >= scan and f.read(2) == b"\xff\xd9":
            return True
        f.seek(scan)
        last = b""
        while block := f.read(1 << 20):
            if b"\xff\xd9" in last + block:
                return True
            last = block[-1:]
        return False
    except (struct.error, OSError, ValueError):
        return False
