"""Loading X-ray files into grayscale intensity images, with errors a clinic can read.

:func:`load_image` accepts PNG/TIFF (8- and 16-bit), JPEG, BMP (gray, RGB, RGBA) and DICOM,
and returns a 2-D float32 image in [0, 1] plus what was seen on the way (size, channels,
bit depth, how colourful it was) so callers can warn about odd input. Every failure is an
:class:`ImageError` whose message names the file and the problem. No DICOM header value other
than the pixel-describing attributes is ever read into a message, so no patient identifier can
leak into output or logs.

What libpng and libjpeg print on stderr while a file is decoded (:mod:`edgecxr.core.quiet`) is not
shown: it names no file, a failed decode is that file's :class:`ImageError` anyway, and the one
warning that matters, a JPEG cut short (libjpeg fills the rows it lacks with gray), is checked
here instead (:func:`edgecxr.core.headers.jpeg_ends`) and refused.

**16-bit rasters are read by their real bit depth.** Many DICOM exports write 10-, 12- or 14-bit
data into a 16-bit PNG or TIFF. Dividing such a film by 65535 leaves it nearly black (a 12-bit
film ends at 0.06), which the models have never seen. A 16-bit raster is therefore scaled by
``2**bits - 1``, where ``bits`` is the smallest detector depth in :data:`RASTER_DEPTHS` that
holds the image's maximum value (:func:`stored_bits`), so a 12-bit film in 16 bits, its 8-bit
copy and its DICOM (``BitsStored`` 12) give nearly the same pixels and the same label. Robust
percentiles (stretching each film between, say, its 0.5th and 99.5th percentile) were not
chosen: they change every film's own brightness and contrast, which the 8-bit films the models
were trained on never had done to them, they turn a washed-out or nearly blank frame into a
normal-looking one (hiding what the ``nearly_uniform`` check is there to say), and they would
make the same film read differently as 8 and as 16 bits. The maximum's bit length keeps the
film's brightness relative to its detector's full scale, as DICOM's ``BitsStored`` does;
rounding up to an even depth keeps a dark 12-bit film (maximum below 2048) a 12-bit one.
"""
from __future__ import annotations

import os
import stat
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Union

# Refuse images whose header claims more pixels than a Raspberry Pi can hold comfortably.
# OpenCV reads this once, when the cv2 library is loaded (not at its first decode), so it only
# takes effect if this module is imported before anything else imports cv2; edgecxr.core.preprocess
# imports this module first for that reason, and _decode_raster re-checks the decoded size.
MAX_PIXELS = 64_000_000
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))
os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from edgecxr.core.failures import ImageError, as_image_error  # noqa: E402  (defined there with the per-input error boundary; imported from here too)
from edgecxr.core.headers import Header, jpeg_ends, png_intact, raster_header  # noqa: E402
from edgecxr.core.quiet import native_stderr  # noqa: E402

if TYPE_CHECKING:
    from pydicom import Dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm")
MIN_SIDE = 2
RASTER_DEPTHS = (8, 10, 12, 14, 16)  # bits per sample that X-ray detectors and their exports write
# Memory: what is held at once while one file is read (see "Decoding only what is needed" above).
MAX_FILE_BYTES = 256 * 2**20  # no file larger than this is read: an uncompressed 16-bit gray film at MAX_PIXELS is 128 MB
WORK_SIDE = 2048  # px: a larger image is reduced to this long side as it is read (no model input, check or heatmap needs more)
DECODE_BYTES = 2 * MAX_PIXELS  # a raster whose unchanged decode would be larger is decoded straight to one gray channel
LARGE_DECODE = 16 * 2**20  # a PNG decoding to more is decoded into an array of ours, not copied out of OpenCV's (see _decode_raster)
_FILE_KINDS = {stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket", stat.S_IFCHR: "character device", stat.S_IFBLK: "block device"}


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image: ``pixels`` is 2-D float32 in [0, 1]."""

    pixels: np.ndarray
    format: str  # "png", "jpeg", "dicom", ...
    channels: int  # channels in the file (1 gray, 3 colour, 4 with alpha)
    bit_depth: int
    color_spread: float  # mean absolute difference between colour channels, 0 for gray (and when not measured, see below)
    source: str | None = None  # the file it was read from; None for an in-memory array
    file_shape: tuple[int, int] | None = None  # (height, width) in the file when ``pixels`` were reduced from it (WORK_SIDE, min_side)
    decode_min_side: int | None = None  # the ``min_side`` a file was read with (see load_image)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def original_shape(self) -> tuple[int, int]:
        """(height, width) of the image as the file holds it: ``pixels``' own unless they were reduced."""
        return self.file_shape or (self.height, self.width)


def file_kind(mode: int) -> str:
    """What a non-regular file is (``"FIFO"``, ``"character device"`` ...), from its ``st_mode``."""
    return _FILE_KINDS.get(stat.S_IFMT(mode), "special file")


def is_dicom(data: bytes) -> bool:
    """True when the bytes carry the DICOM Part 10 ``DICM`` marker at offset 128."""
    return len(data) >= 132 and data[128:132] == b"DICM"


ImageSource = Union[str, os.PathLike, np.ndarray, LoadedImage]  # what Model.predict and the lung model take


def load_image(path: str | os.PathLike, min_side: int | None = None) -> LoadedImage:
    """Read an image file; raise :class:`ImageError` naming the file on any problem (any exception a decoder raises too).

    ``min_side``: a JPEG is decoded by libjpeg at 1/2 or 1/4 of its size, the smaller that
    keeps both sides at least this long (a model card's ``decode_min_side``, see
    :mod:`edgecxr.core.preprocess`); None decodes it in full (:data:`WORK_SIDE` still applies).
    """
    try:
        image = _load(Path(path), min_side)
    except Exception as exc:
        raise as_image_error(path, exc) from None
    return replace(image, source=str(path), decode_min_side=min_side)


def _load(p: Path, min_side: int | None = None) -> LoadedImage:
    try:
        info = p.stat()
    except FileNotFoundError:
        raise ImageError(p, "no such file") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageError(p, "is a directory, not an image")
    if not stat.S_ISREG(info.st_mode):  # a FIFO would hang the read, /dev/zero never end it
        raise ImageError(p, f"not a regular file ({file_kind(info.st_mode)}); only image files are read")
    if info.st_size == 0:
        raise ImageError(p, "file is empty")
    if info.st_size > MAX_FILE_BYTES:
        raise ImageError(p, f"file is {info.st_size / 2**20:,.0f} MB, more than the {MAX_FILE_BYTES // 2**20} MB an image file may have")
    with open(p, "rb") as f:
        dicom = is_dicom(f.read(132))
        f.seek(0)
        header = None if dicom else raster_header(f)
        into = header is not None and header.decoded_bytes > LARGE_DECODE and (header.format == "tiff" or header.format == "png" and png_intact(f))
        if header is not None and header.format == "jpeg" and not jpeg_ends(f):
            raise ImageError(p, "JPEG data ends before its end-of-image marker (truncated file)")
    image = _decode_dicom(p) if dicom or p.suffix.lower() == ".dcm" else _decode_raster(p, header, into, min_side)
    if min(image.original_shape) < MIN_SIDE:
        raise ImageError(p, f"image is {image.width}x{image.height} pixels, too small to read")
    return image


def from_array(array: np.ndarray) -> LoadedImage:
    """Wrap an in-memory image (2-D gray, or H x W x 3/4 in RGB order) like a decoded file."""
    arr = np.asarray(array)
    if arr.ndim in (2, 3) and min(arr.shape[:2]) < MIN_SIDE:
        raise ValueError(f"image of shape {arr.shape} is too small to read")
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        return _from_pixels(arr[:, :, 2::-1] if arr.shape[2] == 3 else arr[:, :, [2, 1, 0, 3]], "array")
    if arr.ndim == 2:
        return _from_pixels(arr, "array")
    raise ValueError(f"expected a 2-D gray or HxWx3/4 colour array, got shape {arr.shape}")


def _decode_raster(p: Path, header: Header | None, into: bool = False, min_side: int | None = None) -> LoadedImage:
    """Decode a raster file (``into``: into an array allocated here, for a large TIFF, or a large PNG that :func:`png_intact` passed)."""
    if header is not None and header.pixels > MAX_PIXELS:
        raise ImageError(p, f"image header claims {header.width}x{header.height} pixels, more than {MAX_PIXELS:,} pixels; refusing to decode")
    flags, factor = _decode_flags(header, min_side)
    reduced = factor > 1 or flags != cv2.IMREAD_UNCHANGED
    out: np.ndarray | None = None
    try:
        name = os.fsdecode(p)
        name.encode("utf-8")  # OpenCV opens the file itself, given a name it can encode
        # OpenCV decodes into ``out``; without one it decodes into a buffer of its own and copies that (twice the memory).
        # It hands ``out`` back untouched when it cannot read the header (a failure later in the data gives None), hence
        # only for a PNG whose chunks were checked whole, or a TIFF, whose ``out`` is then checked (below) to hold something.
        if into:
            out = _output_array(header, flags, factor)
        with native_stderr():  # libpng's and libjpeg's own lines (see edgecxr.core.quiet): a failure is this file's ImageError below
            try:
                arr = cv2.imread(name, flags) if out is None else cv2.imread(name, out, flags)
            except cv2.error:
                if out is None:
                    raise
                out = None  # the file decodes to another type than its header suggested (a signed TIFF): OpenCV's own array
                arr = cv2.imread(name, flags)
    except UnicodeEncodeError:  # a name that is not UTF-8: read here, decoded from memory
        with native_stderr():
            arr = cv2.imdecode(np.frombuffer(p.read_bytes(), np.uint8), flags)
    except cv2.error as exc:
        if "CV_IO_MAX_IMAGE_PIXELS" in str(exc):
            raise ImageError(p, f"image header claims more than {MAX_PIXELS:,} pixels; refusing to decode") from None
        raise ImageError(p, "cannot decode image (corrupt or unsupported)") from None
    if arr is None or arr is out and header is not None and header.format == "tiff" and not out.any():
        raise ImageError(p, "not a readable image (truncated, corrupt, or not an image format)" + (", or every pixel is 0" if arr is not None else ""))
    if arr.shape[0] * arr.shape[1] > MAX_PIXELS:  # cv2 was loaded before the limit was set, and the header was not one we read
        raise ImageError(p, f"image has more than {MAX_PIXELS:,} pixels; refusing to read it")
    fmt = "jpeg" if header is not None and header.format == "jpeg" else p.suffix.lower().lstrip(".") or "image"  # a .jfif is a JPEG too
    try:
        image = _from_pixels(arr, "jpeg" if fmt == "jpg" else fmt)
    except ValueError as exc:
        raise ImageError(p, str(exc)) from None
    if not reduced:
        return image
    assert header is not None  # only a header read chooses a reduced decode
    return replace(image, channels=header.channels, file_shape=(header.height, header.width))


def _decode_flags(header: Header | None, min_side: int | None = None) -> tuple[int, int]:
    """(OpenCV read flags, the factor they shrink the image by) for a raster with this header.

    A JPEG is decoded at 1/2, 1/4 or 1/8 of its size by libjpeg itself: the largest reduction that
    keeps both sides at least ``min_side`` long (1/4 at most, see :func:`jpeg_factor`), or when larger,
    that keeps the long side at least :data:`WORK_SIDE`; never turned by its EXIF orientation. Any other raster whose unchanged decode would exceed :data:`DECODE_BYTES` is
    decoded straight to one gray channel (its colour is then not measured). Everything else is
    decoded as it is.
    """
    if header is None:
        return cv2.IMREAD_UNCHANGED, 1
    if header.format == "jpeg":
        factor = jpeg_factor(header.height, header.width, min_side)
        if factor > 1:  # OpenCV turns a reduced decode by its EXIF orientation, IMREAD_UNCHANGED does not: neither is turned
            gray = header.channels == 1
            return getattr(cv2, f"IMREAD_REDUCED_{'GRAYSCALE' if gray else 'COLOR'}_{factor}") | cv2.IMREAD_IGNORE_ORIENTATION, factor
    if header.decoded_bytes > DECODE_BYTES:
        return cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION, 1
    return cv2.IMREAD_UNCHANGED, 1


def jpeg_factor(height: int, width: int, min_side: int | None = None) -> int:
    """How many times smaller libjpeg decodes a JPEG of this size (1, 2, 4 or 8; see :func:`_decode_flags`).

    ``min_side`` reduces by 1/2 or 1/4 at most: libjpeg's 1/8 averages 8 x 8 blocks, which takes the
    pixel-level noise the ``noise`` check reads (:func:`edgecxr.core.checks.pixel_noise`) below its limit on a noise image.
    """
    factor = next((k for k in (8, 4, 2) if max(height, width) // k >= WORK_SIDE), 1)
    if min_side is None:
        return factor
    return max(factor, next((k for k in (4, 2) if -(-min(height, width) // k) >= min_side), 1))  # libjpeg rounds a side up


def _output_array(header: Header | None, flags: int, factor: int) -> np.ndarray | None:
    """A zeroed array of the shape and type OpenCV will decode this header's raster to with ``flags``, for 8- and 16-bit rasters.

    Should the guess be wrong (an unusual file), OpenCV refuses the array and the file is decoded
    again into one of OpenCV's own: nothing is lost but time and memory.
    """
    if header is None or header.bits not in (1, 2, 4, 8, 16):
        return None
    height, width = -(-header.height // factor), -(-header.width // factor)  # libjpeg rounds a reduced size up
    dtype = np.uint16 if header.bits == 16 and header.format != "jpeg" else np.uint8
    if flags == cv2.IMREAD_UNCHANGED and header.channels in (3, 4):
        return np.zeros((height, width, header.channels), dtype)
    if flags == cv2.IMREAD_UNCHANGED and header.channels != 1:
        return None
    if factor > 1 and header.channels != 1:
        return np.zeros((height, width, 3), np.uint8)
    return np.zeros((height, width), dtype)


def _from_pixels(arr: np.ndarray, fmt: str) -> LoadedImage:
    """Gray-convert an OpenCV-ordered (BGR/BGRA) array and scale it to [0, 1], reduced to :data:`WORK_SIDE` first if longer."""
    if arr.dtype == np.uint8:
        depth, top = 8, 255.0
    elif arr.dtype == np.uint16:
        depth = stored_bits(int(arr.max()))
        top = 2.0**depth - 1
    elif np.issubdtype(arr.dtype, np.floating):
        depth, top = 32, 1.0
    else:
        raise ValueError(f"unsupported pixel type {arr.dtype}")
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    shape = (int(arr.shape[0]), int(arr.shape[1]))
    arr = fit_work_side(arr)
    spread = 0.0
    if channels >= 3:
        spread = _channel_spread(arr) / top
        gray = cv2.cvtColor(_unit(arr[:, :, :3], top), cv2.COLOR_BGR2GRAY)
        np.clip(gray, 0.0, 1.0, out=gray)  # the gray weights' rounding may step just past 1
    else:
        gray = _unit(arr[:, :, 0] if arr.ndim == 3 else arr, top)
        if depth == 32:
            np.clip(gray, 0.0, 1.0, out=gray)  # a float array's own values; integer ones divided by their top are in [0, 1] already
    file_shape = shape if arr.shape[:2] != shape else None
    return LoadedImage(gray, fmt, channels, depth, spread, file_shape=file_shape)


_UNIT_U8 = np.arange(256, dtype=np.float32) / np.float32(255.0)  # every 8-bit value over 255, exactly as astype(float32) / 255 gives it


def _unit(arr: np.ndarray, top: float) -> np.ndarray:
    """``arr`` as float32 divided by ``top`` (8-bit data by table lookup: the same values, several times faster on a large film)."""
    if arr.dtype == np.uint8:
        return cv2.LUT(np.ascontiguousarray(arr), _UNIT_U8)
    return np.divide(arr, np.float32(top), dtype=np.float32)


def _channel_spread(arr: np.ndarray) -> float:
    """Mean of (|B - G| + |G - R|) / 2 over an OpenCV-ordered colour array, in its own units (integer arrays without a float copy)."""
    b, g, r = (np.ascontiguousarray(arr[:, :, i]) for i in range(3))
    if arr.dtype in (np.uint8, np.uint16):
        total = cv2.sumElems(cv2.absdiff(b, g))[0] + cv2.sumElems(cv2.absdiff(g, r))[0]
    else:
        total = float(np.abs(b - g).sum(dtype=np.float64) + np.abs(g - r).sum(dtype=np.float64))
    return total / (2.0 * b.size)


def fit_work_side(arr: np.ndarray) -> np.ndarray:
    """``arr`` area-reduced to :data:`WORK_SIDE` on its long side (aspect kept) when it is longer; else ``arr`` itself."""
    height, width = arr.shape[:2]
    scale = WORK_SIDE / max(height, width)
    if scale >= 1:
        return arr
    size = (max(MIN_SIDE, round(width * scale)), max(MIN_SIDE, round(height * scale)))  # a long thin image stays MIN_SIDE wide
    if arr.ndim == 3 and arr.shape[2] > 4 or arr.dtype not in (np.uint8, np.uint16, np.int16, np.float32):
        arr = arr.astype(np.float32)
    return cv2.resize(arr, size, interpolation=cv2.INTER_AREA)


def stored_bits(maximum: int) -> int:
    """The bits a 16-bit raster's data really uses: the smallest of :data:`RASTER_DEPTHS` that holds ``maximum``."""
    return next(bits for bits in RASTER_DEPTHS if maximum < 2**bits)


def _decode_dicom(p: Path) -> LoadedImage:
    try:
        import pydicom
    except ImportError:  # pragma: no cover - pydicom is a runtime dependency
        raise ImageError(p, "DICOM support needs pydicom (pip install pydicom)") from None
    with warnings.catch_warnings():  # pydicom's warnings quote header values (a patient's name among them): never shown
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(p, defer_size=4096)  # the pixel data stays in the file until it is needed
        except Exception:
            raise ImageError(p, "not a readable DICOM file") from None
        if "PixelData" not in ds:
            raise ImageError(p, "DICOM file has no pixel data")
        try:
            return _dicom_pixels(p, ds)
        except ImageError:
            raise
        except Exception as exc:  # a malformed pixel description; its values are not quoted (they come from the header)
            raise ImageError(p, f"DICOM pixel description is malformed or unsupported ({type(exc).__name__})") from None


def _native_pixels(p: Path, ds: Dataset, rows: int, cols: int) -> np.ndarray | None:
    """Uncompressed little-endian unsigned gray pixels read from the file straight into their array (pydicom would hold them twice); None for anything else."""
    syntax = ds.file_meta.get("TransferSyntaxUID", None) if hasattr(ds, "file_meta") else None
    from pydicom.dataelem import RawDataElement

    raw = ds.get_item("PixelData", keep_deferred=True)  # its offset and length, not its bytes
    allocated = int(ds.get("BitsAllocated", 0) or 0)
    plain = syntax is not None and not syntax.is_compressed and syntax.is_little_endian and isinstance(raw, RawDataElement)
    if not (plain and allocated in (8, 16) and int(ds.get("SamplesPerPixel", 1)) == 1 and int(ds.get("PixelRepresentation", 0)) == 0):
        return None
    assert isinstance(raw, RawDataElement)
    count = rows * cols
    if raw.length not in (count * allocated // 8, count * allocated // 8 + 1):  # an odd length is padded by one byte
        return None
    pixels: np.ndarray = np.fromfile(p, np.dtype("<u2" if allocated == 16 else np.uint8), count=count, offset=raw.value_tell).reshape(rows, cols)
    bits = _whole(p, ds, "BitsStored", allocated)
    if bits < allocated:  # bits above BitsStored may hold overlays: not pixel values
        pixels &= (1 << bits) - 1
    return pixels


def _whole(p: Path, ds: Dataset, keyword: str, default: int) -> int:
    """A pixel-describing DICOM attribute as a whole number (``default`` when absent or empty), else ImageError naming it."""
    value = ds.get(keyword, None)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ImageError(p, f"DICOM {keyword} is not a whole number") from None


def _decodable(syntax: object) -> bool:
    """Whether pydicom has a working decoder for the transfer syntax ``syntax`` here."""
    from pydicom.pixels import get_decoder

    try:
        return bool(get_decoder(syntax).is_available)  # type: ignore[arg-type]
    except Exception:  # no decoder at all, or not a transfer syntax
        return False


def _dicom_pixels(p: Path, ds: Dataset) -> LoadedImage:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    frames, rows, cols = _whole(p, ds, "NumberOfFrames", 1), _whole(p, ds, "Rows", 0), _whole(p, ds, "Columns", 0)
    if frames > 1:
        raise ImageError(p, f"DICOM has {frames} frames; only single-frame images are read")
    if rows * cols > MAX_PIXELS:
        raise ImageError(p, f"DICOM header claims more than {MAX_PIXELS:,} pixels; refusing to decode")
    try:
        raw = _native_pixels(p, ds, rows, cols)
        raw = ds.pixel_array if raw is None else raw  # pydicom converts YBR colour to RGB itself
    except Exception:
        syntax = ds.file_meta.get("TransferSyntaxUID", None) if hasattr(ds, "file_meta") else None
        name = getattr(syntax, "name", "unknown transfer syntax")
        if getattr(syntax, "is_compressed", True):
            hint = "the compressed pixel data is corrupt or incomplete" if _decodable(syntax) else "no decoder for this transfer syntax is installed here"
        else:
            hint = "pixel data is truncated or does not match the image size and bit depth"
        raise ImageError(p, f"cannot decode DICOM pixel data ({name}); {hint}") from None
    if raw.ndim == 3 and raw.shape[2] == 3:
        return _from_pixels(np.ascontiguousarray(raw[:, :, ::-1]), "dicom")
    if raw.ndim != 2:
        raise ImageError(p, f"DICOM has pixel data of shape {list(raw.shape)}; only single-frame grayscale or RGB is read")
    bits = _whole(p, ds, "BitsStored", 8 * raw.dtype.itemsize)
    shape = (int(raw.shape[0]), int(raw.shape[1]))
    raw = fit_work_side(raw)  # before the LUTs, which work in float64 (exact for a rescale, nearly so for a window)
    if "PixelData" in ds:
        del ds.PixelData  # the file's pixel bytes are no longer needed
    values = apply_modality_lut(raw, ds)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        # pydicom maps the window onto the stored range passed through the rescale; _window_range mirrors that.
        values = apply_voi_lut(values.astype(np.float64), ds, prefer_lut=False)
        lo, hi = _window_range(ds, bits)
    elif "VOILUTSequence" in ds:
        values = apply_voi_lut(np.rint(values).astype(np.int64), ds)
        lo, hi = 0.0, 2.0 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1
    else:
        lo, hi = _stored_range(values, ds, bits)
    scaled = (np.asarray(values, np.float64) - lo) / ((hi - lo) or 1e-12)
    if not np.isfinite(scaled).all():  # a "nan" or "1e309" in the header: no film to read, not an image of NaNs
        raise ImageError(p, "DICOM rescale or window (RescaleSlope, RescaleIntercept, WindowCenter, WindowWidth) is not a finite number")
    pixels = np.clip(scaled, 0.0, 1.0, out=scaled).astype(np.float32)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")) == "MONOCHROME1":
        pixels = 1.0 - pixels
    return LoadedImage(pixels, "dicom", 1, bits, 0.0, file_shape=shape if raw.shape != shape else None)


def _window_range(ds: Dataset, bits: int) -> tuple[float, float]:
    """The output range of pydicom's windowing: the stored range, through RescaleSlope/Intercept if any.

    (lo > hi for a negative slope; the caller's division handles that orientation.)
    """
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    lo, hi = (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1) if signed else (0.0, 2.0**bits - 1)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        lo, hi = lo * slope + intercept, hi * slope + intercept
    return lo, hi


def _stored_range(values: np.ndarray, ds: Dataset, bits: int) -> tuple[float, float]:
    """Without a window: unsigned, unrescaled data spans its BitsStored; anything else its own min..max."""
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    rescaled = float(ds.get("RescaleSlope", 1)) != 1 or float(ds.get("RescaleIntercept", 0)) != 0
    if not (signed or rescaled):
        return 0.0, 2.0**bits - 1
    return float(np.min(values)), float(np.max(values))


def as_loaded(image: ImageSource, min_side: int | None = None) -> tuple[LoadedImage, str | None]:
    """``image`` (a path, an array or a loaded image) as a loaded image read with ``min_side`` (see :func:`load_image`), with the
    file it came from (None for an array).

    A loaded JPEG file that another ``min_side`` would have decoded at another size is read again from its
    file, so a film gets the same pixels whether its path or its loaded image is passed; an array is taken as it is.
    """
    if isinstance(image, LoadedImage):
        if image.format == "jpeg" and image.source is not None and jpeg_factor(*image.original_shape, image.decode_min_side) != jpeg_factor(
            *image.original_shape, min_side
        ):
            return load_image(image.source, min_side), image.source
        return image, image.source
    if isinstance(image, np.ndarray):
        return from_array(image), None
    return load_image(image, min_side), str(image)
