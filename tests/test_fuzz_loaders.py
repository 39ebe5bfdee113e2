"""Property-based fuzzing of the loaders (hypothesis): whatever a file holds, the outcome is a label or one clear refusal.

Seeds are built in code: a small film-like image (``benchmarks.memory.film``) as 8- and 16-bit
gray and colour PNG, gray and colour JPEG, 16-bit gray and colour TIFF and a 12-bit DICOM. Each
example writes one file made from a seed (random bytes after the format's signature, a
truncation, random bytes overwritten in the header or anywhere, or the header's size and depth
fields set to arbitrary values, PNG's checksum recomputed so the decoder believes them) and then
``load_image`` and, when it loads, the tiny model's ``predict``. The property:

- the outcome is a :class:`LoadedImage` (float32, 2-D, finite, in [0, 1]) whose prediction is
  one of the model's labels, or an :class:`ImageError` whose one-line message names the file and
  a known reason (never "unexpected error": no decoder exception is left unexplained);
- within the example's deadline (a hang guard, 100 times what an example takes here), and with
  no allocation beyond the memory target: neither the peak of traced allocations (numpy arrays,
  OpenCV's decoded images) nor the process's peak RSS grows by more than 250 MB.

The examples are derandomized, so CI sees the same ones every run and a failure reproduces; set
``EDGECXR_FUZZ_EXAMPLES=5000`` for a longer run on fresh random examples.
"""
from __future__ import annotations

import io
import os
import resource
import struct
import tempfile
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import cache
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from benchmarks.memory import TARGET_MB, film
from edgecxr import load_model
from edgecxr.core import imageio
from edgecxr.core.imageio import ImageError, LoadedImage, load_image
from test_imageio import write_dicom

EXAMPLES = int(os.environ.get("EDGECXR_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=EXAMPLES or 100,
    deadline=timedelta(seconds=5),
    derandomize=not EXAMPLES,
    database=None,  # nothing written into the checkout
    suppress_health_check=[HealthCheck.too_slow],
)
BOUND = TARGET_MB * 2**20
SIGNATURE = {"png": 8, "jpeg": 2, "tiff": 4, "dicom": 132}  # bytes that make a file that format to the reader
SUFFIX = {"png": ".png", "jpeg": ".jpg", "tiff": ".tif", "dicom": ".dcm"}


SEEDS = sorted(["png8", "png16", "png-colour", "jpeg-gray", "jpeg-colour", "tiff16", "tiff-colour", "dicom12"])


@cache
def seeds() -> dict[str, tuple[str, bytes]]:
    """{seed name: (format, file bytes)}, built once."""
    gray = film(64)[:, 8:56]  # 64 x 48, not square
    colour = np.dstack([gray, np.roll(gray, 3, axis=1), 255 - gray])
    encoded = {
        "png8": ("png", cv2.imencode(".png", gray)[1]),
        "png16": ("png", cv2.imencode(".png", gray.astype(np.uint16) * 16)[1]),
        "png-colour": ("png", cv2.imencode(".png", colour)[1]),
        "jpeg-gray": ("jpeg", cv2.imencode(".jpg", gray)[1]),
        "jpeg-colour": ("jpeg", cv2.imencode(".jpg", colour)[1]),
        "tiff16": ("tiff", cv2.imencode(".tif", gray.astype(np.uint16) * 16)[1]),
        "tiff-colour": ("tiff", cv2.imencode(".tif", colour)[1]),
    }
    out = {name: (fmt, buf.tobytes()) for name, (fmt, buf) in encoded.items()}
    with tempfile.TemporaryDirectory() as folder:
        path = write_dicom(Path(folder) / "seed.dcm", gray.astype(np.uint16) * 16, bits_stored=12, WindowCenter=2048, WindowWidth=4096)
        out["dicom12"] = ("dicom", path.read_bytes())
    assert sorted(out) == SEEDS
    return out


@pytest.fixture(scope="module")
def model(tiny_models):
    return load_model(tiny_models["int8"])


@pytest.fixture(scope="module")
def check(model, tmp_path_factory) -> Iterator[Callable[[str, bytes], LoadedImage | None]]:
    """``check(suffix, data)``: write ``data`` as one file, load and predict it, assert the property; the image (None when refused)."""
    path = tmp_path_factory.mktemp("fuzz") / "input"
    tracemalloc.start()
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def run(suffix: str, data: bytes) -> LoadedImage | None:
        target = path.with_suffix(suffix)
        target.write_bytes(data)
        tracemalloc.reset_peak()
        try:
            image = load_image(target)
            assert isinstance(image, LoadedImage)
            pixels = image.pixels
            assert pixels.dtype == np.float32 and pixels.ndim == 2 and min(pixels.shape) >= 2
            assert np.isfinite(pixels).all() and 0.0 <= pixels.min() and pixels.max() <= 1.0
            label = model.predict(image).label
            assert label in model.labels
            outcome: LoadedImage | None = image
        except ImageError as exc:
            message = str(exc)
            assert message.startswith(f"{target}: ") and "\n" not in message, message
            assert "unexpected error" not in exc.reason, message
            outcome = None
        assert tracemalloc.get_traced_memory()[1] < BOUND
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_start < BOUND
        return outcome

    yield run
    tracemalloc.stop()


def test_every_seed_loads_and_is_labelled(check):
    assert [name for name, (fmt, data) in seeds().items() if check(SUFFIX[fmt], data) is None] == []


def overwritten(data: bytes, edits: list[tuple[float, int]], span: int) -> bytes:
    """``data`` with the byte at ``where`` (0 to 1) of its first ``span`` bytes set to ``value``, for each (where, value)."""
    out = bytearray(data)
    for where, value in edits:
        out[int(where * min(span, len(out)))] = value
    return bytes(out)


seed_names = st.sampled_from(SEEDS)
edit = st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255))  # (where in the bytes, 0 to 1; the new byte)
edits = st.lists(edit, min_size=1, max_size=12)


@FUZZ
@given(fmt=st.sampled_from(sorted(SIGNATURE)), tail=st.binary(max_size=4096), suffixed=st.booleans())
def test_random_bytes(check, fmt, tail, suffixed):
    signature = next(data for f, data in seeds().values() if f == fmt)[: SIGNATURE[fmt]]
    check(SUFFIX[fmt] if suffixed else ".bin", signature + tail)


@FUZZ
@given(name=seed_names, cut=st.floats(0, 1, exclude_max=True))
def test_truncations(check, name, cut):
    fmt, data = seeds()[name]
    check(SUFFIX[fmt], data[: int(len(data) * cut)])


@FUZZ
@given(name=seed_names, changes=edits, header_only=st.booleans())
def test_overwritten_bytes(check, name, changes, header_only):
    fmt, data = seeds()[name]
    check(SUFFIX[fmt], overwritten(data, changes, 1024 if header_only else len(data)))


sizes = st.one_of(st.integers(1, 128), st.integers(0, 8192), st.sampled_from([65535, 65536, 2**31 - 1, 2**32 - 1]), st.integers(0, 2**32 - 1))
depth = st.one_of(st.sampled_from([1, 2, 4, 8, 16]), st.integers(0, 255))  # bits per sample, the usual ones first


def kept_or(strategy: st.SearchStrategy[int]) -> st.SearchStrategy[int | None]:
    """A field's new value, or None to keep the seed's (so that some examples change one field and still decode)."""
    return st.one_of(st.none(), strategy)


def replaced(old: tuple[int, ...], new: tuple[int | None, ...]) -> tuple[int, ...]:
    return tuple(o if n is None else n for o, n in zip(old, new))


@FUZZ
@given(fields=st.tuples(kept_or(sizes), kept_or(sizes), kept_or(depth), kept_or(st.integers(0, 255))), name=st.sampled_from(["png8", "png16", "png-colour"]))
def test_png_header_fields(check, fields, name):
    """IHDR's width, height, bit depth and colour type set to anything, its CRC recomputed: only the data disagrees."""
    data = bytearray(seeds()[name][1])
    ihdr = struct.pack(">IIBB", *replaced(struct.unpack(">IIBB", data[16:26]), fields)) + data[26:29]
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    check(".png", bytes(data))


@FUZZ
@given(fields=st.tuples(kept_or(depth), kept_or(sizes.map(lambda v: v & 0xFFFF)), kept_or(sizes.map(lambda v: v & 0xFFFF)), kept_or(st.integers(0, 255))),
       name=st.sampled_from(["jpeg-gray", "jpeg-colour"]))
def test_jpeg_frame_fields(check, fields, name):
    """The start-of-frame segment's precision, height, width and component count set to anything."""
    data = bytearray(seeds()[name][1])
    sof = data.index(b"\xff\xc0") + 4  # after the marker and its length
    data[sof : sof + 6] = struct.pack(">BHHB", *replaced(struct.unpack(">BHHB", data[sof : sof + 6]), fields))
    check(".jpg", bytes(data))


TIFF_TAGS = (256, 257, 258, 259, 262, 273, 277, 278, 279, 284)  # width, length, bits, compression, photometric, strip offsets/rows/byte counts, samples, planar


@FUZZ
@given(values=st.dictionaries(st.sampled_from(TIFF_TAGS), st.one_of(st.integers(0, 16), sizes), min_size=1, max_size=3),
       name=st.sampled_from(["tiff16", "tiff-colour"]))
def test_tiff_directory_fields(check, values, name):
    """Entries of the first image file directory given arbitrary values (as SHORT or LONG, as the entry is typed)."""
    data = bytearray(seeds()[name][1])
    (ifd,) = struct.unpack("<I", data[4:8])
    (count,) = struct.unpack("<H", data[ifd : ifd + 2])
    for i in range(count):
        entry = ifd + 2 + 12 * i
        tag, kind = struct.unpack("<HH", data[entry : entry + 4])
        if tag in values:
            value = values[tag] & 0xFFFF if kind == 3 else values[tag]
            data[entry + 8 : entry + 12] = struct.pack("<HH" if kind == 3 else "<I", *((value, 0) if kind == 3 else (value,)))
    check(".tif", bytes(data))


DICOM_FIELDS = {  # pixel-describing attributes: keyword -> (tag, VR)
    "Rows": (0x00280010, "US"), "Columns": (0x00280011, "US"), "BitsAllocated": (0x00280100, "US"),
    "BitsStored": (0x00280101, "US"), "HighBit": (0x00280102, "US"), "PixelRepresentation": (0x00280103, "US"),
    "SamplesPerPixel": (0x00280002, "US"), "PhotometricInterpretation": (0x00280004, "CS"),
    "NumberOfFrames": (0x00280008, "IS"), "WindowCenter": (0x00281050, "DS"), "WindowWidth": (0x00281051, "DS"),
    "RescaleSlope": (0x00281053, "DS"), "RescaleIntercept": (0x00281052, "DS"),
}
dicom_values = st.one_of(
    st.one_of(st.sampled_from([0, 1, 3, 8, 11, 12, 15, 16, 32]), st.integers(0, 65535)).map(lambda v: struct.pack("<H", v)),
    st.sampled_from([b"0", b"1", b"-1", b"ab", b"1e309", b"nan", b"MONOCHROME1", b"RGB", b"YBR_FULL", b"PALETTE COLOR", b""]),
    st.binary(max_size=8),
)


@FUZZ
@given(values=st.dictionaries(st.sampled_from(sorted(DICOM_FIELDS)), dicom_values, max_size=3), pixel_bytes=st.one_of(st.none(), st.integers(0, 8192)))
def test_dicom_pixel_attributes(check, values, pixel_bytes):
    """The pixel description given arbitrary raw values (right-typed or not), and the pixel data cut or padded."""
    ds = pydicom.dcmread(io.BytesIO(seeds()["dicom12"][1]))
    for keyword, raw in values.items():
        tag, vr = DICOM_FIELDS[keyword]
        ds[tag] = RawDataElement(Tag(tag), vr, len(raw), raw, 0, False, True)
    if pixel_bytes is not None:
        ds.PixelData = (ds.PixelData * 3)[:pixel_bytes]
    buffer = io.BytesIO()
    ds.save_as(buffer)
    check(".dcm", buffer.getvalue())


@FUZZ
@given(name=st.sampled_from(["png8", "png16", "png-colour", "tiff16", "tiff-colour"]), changes=st.lists(edit, max_size=6),
       cut=st.one_of(st.none(), st.floats(0, 1, exclude_max=True)))
def test_decoding_into_our_array_agrees_with_opencvs_own(check, name, changes, cut):
    """A large PNG or TIFF is decoded into an array of ours (``LARGE_DECODE``); here every one is, and must read as OpenCV's own decode does.

    The same outcome both ways: refused both ways, or the same pixels; the one difference allowed
    is an image of nothing but zeros, which the array of ours cannot tell from one OpenCV left untouched.
    """
    fmt, data = seeds()[name]
    data = overwritten(data, changes, 1024)[: None if cut is None else int(len(data) * cut)]
    own = check(SUFFIX[fmt], data)
    with mock.patch.object(imageio, "LARGE_DECODE", 0):
        ours = check(SUFFIX[fmt], data)
    if own is None or ours is None:
        assert ours is own or ours is None and not own.pixels.any()
    else:
        np.testing.assert_array_equal(ours.pixels, own.pixels)
