"""Loading X-ray files into grayscale intensity images, with errors a clinic can read.

:func:`load_image` accepts PNG/TIFF (8- and 16-bit), JPEG, BMP (gray, RGB, RGBA) and DICOM,
and returns a 2-D float32 image in [0, 1] plus what was seen on the way (size, channels,
bit depth, how colourful it was) so callers can warn about odd input. Every failure is an
:class:`ImageError` whose message names the file and the problem. No DICOM header value other
than the pixel-describing attributes is ever read into a message, so no patient identifier can
leak into output or logs.

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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

# Refuse images whose header claims more pixels than a Raspberry Pi can hold comfortably.
# OpenCV reads this once, when the cv2 library is loaded (not at its first decode), so it only
# takes effect if this module is imported before anything else imports cv2; edgecxr.preprocess
# imports this module first for that reason, and _decode_raster re-checks the decoded size.
MAX_PIXELS = 64_000_000
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))
os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from edgecxr.failures import ImageError, as_image_error  # noqa: E402  (defined there with the per-input error boundary; imported from here too)

if TYPE_CHECKING:
    from pydicom import Dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm")
MIN_SIDE = 2
RASTER_DEPTHS = (8, 10, 12, 14, 16)  # bits per sample that X-ray detectors and their exports write


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image: ``pixels`` is 2-D float32 in [0, 1]."""

    pixels: np.ndarray
    format: str  # "png", "jpeg", "dicom", ...
    channels: int  # channels in the file (1 gray, 3 colour, 4 with alpha)
    bit_depth: int
    color_spread: float  # mean absolute difference between colour channels, 0 for gray
    source: str | None = None  # the file it was read from; None for an in-memory array

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def is_dicom(data: bytes) -> bool:
    """True when the bytes carry the DICOM Part 10 ``DICM`` marker at offset 128."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def load_image(path: str | os.PathLike) -> LoadedImage:
    """Read an image file; raise :class:`ImageError` naming the file on any problem (any exception a decoder raises too)."""
    try:
        image = _load(Path(path))
    except Exception as exc:
        raise as_image_error(path, exc) from None
    return replace(image, source=str(path))


def _load(p: Path) -> LoadedImage:
    if not p.exists():
        raise ImageError(p, "no such file")
    if p.is_dir():
        raise ImageError(p, "is a directory, not an image")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImageError(p, f"cannot read file ({exc.strerror})") from None
    if not data:
        raise ImageError(p, "file is empty")
    if is_dicom(data) or p.suffix.lower() == ".dcm":
        image = _decode_dicom(p)
    else:
        image = _decode_raster(p, data)
    if min(image.pixels.shape) < MIN_SIDE:
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


def _decode_raster(p: Path, data: bytes) -> LoadedImage:
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        if "CV_IO_MAX_IMAGE_PIXELS" in str(exc):
            raise ImageError(p, f"image header claims more than {MAX_PIXELS:,} pixels; refusing to decode") from None
        raise ImageError(p, "cannot decode image (corrupt or unsupported)") from None
    if arr is None:
        raise ImageError(p, "not a readable image (truncated, corrupt, or not an image format)")
    if arr.shape[0] * arr.shape[1] > MAX_PIXELS:  # cv2 was loaded before the limit was set
        raise ImageError(p, f"image has more than {MAX_PIXELS:,} pixels; refusing to read it")
    fmt = p.suffix.lower().lstrip(".") or "image"
    try:
        return _from_pixels(arr, "jpeg" if fmt == "jpg" else fmt)
    except ValueError as exc:
        raise ImageError(p, str(exc)) from None


def _from_pixels(arr: np.ndarray, fmt: str) -> LoadedImage:
    """Gray-convert an OpenCV-ordered (BGR/BGRA) array and scale it to [0, 1]."""
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
    spread = 0.0
    if channels >= 3:
        bgr = arr[:, :, :3].astype(np.float32) / top
        spread = float(np.mean(np.abs(bgr[:, :, 0] - bgr[:, :, 1]) + np.abs(bgr[:, :, 1] - bgr[:, :, 2])) / 2)
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    elif channels == 1 and arr.ndim == 3:
        gray = arr[:, :, 0].astype(np.float32) / top
    else:
        gray = arr.astype(np.float32) / top
    return LoadedImage(np.clip(gray, 0.0, 1.0), fmt, channels, depth, spread)


def stored_bits(maximum: int) -> int:
    """The bits a 16-bit raster's data really uses: the smallest of :data:`RASTER_DEPTHS` that holds ``maximum``."""
    return next(bits for bits in RASTER_DEPTHS if maximum < 2**bits)


def _decode_dicom(p: Path) -> LoadedImage:
    try:
        import pydicom
    except ImportError:  # pragma: no cover - pydicom is a runtime dependency
        raise ImageError(p, "DICOM support needs pydicom (pip install pydicom)") from None
    try:
        ds = pydicom.dcmread(p)
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


def _whole(p: Path, ds: Dataset, keyword: str, default: int) -> int:
    """A pixel-describing DICOM attribute as a whole number (``default`` when absent or empty), else ImageError naming it."""
    value = ds.get(keyword, None)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ImageError(p, f"DICOM {keyword} is not a whole number") from None


def _dicom_pixels(p: Path, ds: Dataset) -> LoadedImage:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    frames, rows, cols = _whole(p, ds, "NumberOfFrames", 1), _whole(p, ds, "Rows", 0), _whole(p, ds, "Columns", 0)
    if frames > 1:
        raise ImageError(p, f"DICOM has {frames} frames; only single-frame images are read")
    if rows * cols > MAX_PIXELS:
        raise ImageError(p, f"DICOM header claims more than {MAX_PIXELS:,} pixels; refusing to decode")
    try:
        raw = ds.pixel_array  # pydicom converts YBR colour to RGB itself
    except Exception:
        syntax = ds.file_meta.get("TransferSyntaxUID", None) if hasattr(ds, "file_meta") else None
        name = getattr(syntax, "name", "unknown transfer syntax")
        if getattr(syntax, "is_compressed", True):
            hint = "compressed DICOM needs a decoder plugin such as pylibjpeg"
        else:
            hint = "pixel data is truncated or does not match the image size and bit depth"
        raise ImageError(p, f"cannot decode DICOM pixel data ({name}); {hint}") from None
    if raw.ndim == 3 and raw.shape[2] == 3:
        return _from_pixels(np.ascontiguousarray(raw[:, :, ::-1]), "dicom")
    if raw.ndim != 2:
        raise ImageError(p, f"DICOM has pixel data of shape {raw.shape}; only single-frame grayscale or RGB is read")
    values = apply_modality_lut(raw, ds)
    bits = _whole(p, ds, "BitsStored", 8 * raw.dtype.itemsize)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        # pydicom maps the window onto the stored range passed through the rescale; _window_range mirrors that.
        values = apply_voi_lut(values.astype(np.float64), ds, prefer_lut=False)
        lo, hi = _window_range(ds, bits)
    elif "VOILUTSequence" in ds:
        values = apply_voi_lut(np.rint(values).astype(np.int64), ds)
        lo, hi = 0.0, 2.0 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1
    else:
        lo, hi = _stored_range(values, ds, bits)
    pixels = np.clip((np.asarray(values, np.float64) - lo) / ((hi - lo) or 1e-12), 0.0, 1.0).astype(np.float32)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")) == "MONOCHROME1":
        pixels = 1.0 - pixels
    return LoadedImage(pixels, "dicom", 1, bits, 0.0)


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
