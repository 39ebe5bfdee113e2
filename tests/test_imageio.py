"""Tests for edgecxr.core.imageio: every supported format, DICOM handling, and readable errors.

All images are built in code inside ``tmp_path``; nothing is read from the repository.
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless, SecondaryCaptureImageStorage, generate_uid

from conftest import child_env
from edgecxr.core.headers import raster_header
from edgecxr.core.imageio import MAX_FILE_BYTES, MAX_PIXELS, WORK_SIDE, ImageError, LoadedImage, from_array, is_dicom, load_image
from edgecxr.core.preprocess import PreprocessSpec, preprocess

# --------------------------------------------------------------------------- helpers


def write_image(path: Path, array: np.ndarray) -> Path:
    """Encode ``array`` (OpenCV BGR/BGRA channel order) by the file suffix and write it."""
    ok, buf = cv2.imencode(path.suffix, array)
    assert ok, f"cv2 could not encode {path.suffix}"
    path.write_bytes(buf.tobytes())
    return path


def gradient(height: int = 16, width: int = 20, dtype=np.uint8) -> np.ndarray:
    top = np.iinfo(dtype).max
    row = np.linspace(0, top, width).round().astype(dtype)
    return np.tile(row, (height, 1))


def write_dicom(
    path: Path,
    pixels: np.ndarray | None,
    *,
    bits_stored: int = 16,
    photometric: str = "MONOCHROME2",
    transfer_syntax: UID = ExplicitVRLittleEndian,
    pixel_data: bytes | None = None,
    **attrs,
) -> Path:
    """Write a single-frame 16-bit-allocated grayscale DICOM in the Part 10 file format."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    if pixels is not None:
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = 16
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = 0
        ds.PixelData = pixel_data if pixel_data is not None else pixels.astype("<u2").tobytes()
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def png_with_header(width: int, height: int) -> bytes:
    """A syntactically valid PNG whose IHDR claims ``width`` x ``height`` 8-bit gray pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def assert_image_error(path: Path, *fragments: str) -> ImageError:
    with pytest.raises(ImageError) as info:
        load_image(path)
    err = info.value
    message = str(err)
    assert message.startswith(str(path) + ": "), message
    assert err.path == str(path)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return err


# --------------------------------------------------------------------------- raster formats


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff", ".bmp"])
def test_8bit_gray_lossless_roundtrip(tmp_path, suffix):
    arr = gradient()
    image = load_image(write_image(tmp_path / f"g{suffix}", arr))
    assert isinstance(image, LoadedImage)
    assert image.pixels.dtype == np.float32
    assert image.pixels.shape == (16, 20)
    assert (image.height, image.width) == (16, 20)
    assert image.channels == 1
    assert image.bit_depth == 8
    assert image.color_spread == 0.0
    np.testing.assert_allclose(image.pixels, arr / 255.0, atol=1e-6)
    assert image.pixels.min() == 0.0 and image.pixels.max() == 1.0


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_gray_full_range(tmp_path, suffix):
    arr = gradient(dtype=np.uint16)
    arr[0, 0] = 40000
    image = load_image(write_image(tmp_path / f"g16{suffix}", arr))
    assert image.bit_depth == 16
    assert image.channels == 1
    assert image.pixels.dtype == np.float32
    assert image.pixels[0, -1] == 1.0  # 65535 -> 1.0
    assert image.pixels[0, 1:].min() >= 0.0
    assert image.pixels[5, 0] == 0.0
    assert image.pixels[0, 0] == pytest.approx(40000 / 65535, abs=1e-6)
    np.testing.assert_allclose(image.pixels, arr / 65535.0, atol=1e-6)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_colour_is_scaled_by_65535(tmp_path, suffix):
    gray = np.full((6, 7), 65535, np.uint16)
    gray[:3] = 13107  # 0.2
    image = load_image(write_image(tmp_path / f"c16{suffix}", np.dstack([gray] * 3)))
    assert image.bit_depth == 16
    assert image.channels == 3
    assert image.color_spread == pytest.approx(0.0, abs=1e-7)
    assert image.pixels[5, 0] == pytest.approx(1.0, abs=1e-6)
    assert image.pixels[0, 0] == pytest.approx(0.2, abs=1e-6)


def test_jpeg_gray_level_roundtrips(tmp_path):
    arr = np.full((16, 16), 100, np.uint8)
    image = load_image(write_image(tmp_path / "g.jpg", arr))
    assert image.format == "jpeg"
    assert image.channels == 1
    assert image.bit_depth == 8
    np.testing.assert_allclose(image.pixels, 100 / 255.0, atol=1.5 / 255)


@pytest.mark.parametrize("suffix", [".jpeg", ".JPG"])
def test_jpeg_suffix_variants_report_jpeg(tmp_path, suffix):
    image = load_image(write_image(tmp_path / f"x{suffix}", np.full((8, 8), 200, np.uint8)))
    assert image.format == "jpeg"
    assert image.pixels.mean() == pytest.approx(200 / 255.0, abs=1.5 / 255)


@pytest.mark.parametrize("suffix,fmt", [(".png", "png"), (".tif", "tif"), (".bmp", "bmp"), (".jpg", "jpeg")])
def test_format_field(tmp_path, suffix, fmt):
    assert load_image(write_image(tmp_path / f"f{suffix}", gradient())).format == fmt


@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp", ".jpg"])
def test_rgb_pure_gray_equals_gray(tmp_path, suffix):
    arr = gradient()
    gray = load_image(write_image(tmp_path / f"gray{suffix}", arr))
    rgb = load_image(write_image(tmp_path / f"rgb{suffix}", np.dstack([arr] * 3)))
    assert rgb.channels == 3
    assert gray.channels == 1
    assert rgb.color_spread == pytest.approx(0.0, abs=0.01)
    tol = 1e-6 if suffix != ".jpg" else 3 / 255  # chroma subsampling in JPEG
    np.testing.assert_allclose(rgb.pixels, gray.pixels, atol=tol)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp"])
def test_rgba_pure_gray_equals_gray(tmp_path, suffix):
    arr = gradient()
    alpha = np.full_like(arr, 255)
    gray = load_image(write_image(tmp_path / f"gray{suffix}", arr))
    rgba = load_image(write_image(tmp_path / f"rgba{suffix}", np.dstack([arr, arr, arr, alpha])))
    assert rgba.channels == 4
    assert rgba.bit_depth == 8
    assert rgba.color_spread == 0.0
    np.testing.assert_allclose(rgba.pixels, gray.pixels, atol=1e-6)


def test_16bit_rgba_png(tmp_path):
    arr = gradient(dtype=np.uint16)
    image = load_image(write_image(tmp_path / "rgba16.png", np.dstack([arr, arr, arr, np.full_like(arr, 65535)])))
    assert image.channels == 4
    assert image.bit_depth == 16
    np.testing.assert_allclose(image.pixels, arr / 65535.0, atol=1e-6)


def test_colour_image_has_colour_spread_and_luma_gray(tmp_path):
    bgr = np.zeros((10, 10, 3), np.uint8)
    bgr[:, :, 2] = 255  # pure red
    image = load_image(write_image(tmp_path / "red.png", bgr))
    assert image.channels == 3
    assert image.color_spread > 0.1
    # mean(|B-G| + |G-R|) / 2 = (0 + 1) / 2
    assert image.color_spread == pytest.approx(0.5, abs=1e-6)
    np.testing.assert_allclose(image.pixels, 0.299, atol=1e-3)


def test_blue_vs_red_channel_order_from_file(tmp_path):
    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[:, :, 0] = 255  # pure blue in OpenCV's BGR order
    image = load_image(write_image(tmp_path / "blue.png", bgr))
    np.testing.assert_allclose(image.pixels, 0.114, atol=1e-3)


def test_suffix_is_case_insensitive_and_pixels_in_unit_range(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (32, 24), dtype=np.uint8)
    image = load_image(write_image(tmp_path / "IMG.PNG", arr))
    assert image.format == "png"
    assert 0.0 <= image.pixels.min() and image.pixels.max() <= 1.0
    np.testing.assert_allclose(image.pixels, arr / 255.0, atol=1e-6)


def test_accepts_str_path(tmp_path):
    path = write_image(tmp_path / "s.png", gradient())
    assert load_image(str(path)).pixels.shape == (16, 20)


def test_format_is_sniffed_from_content_not_suffix(tmp_path):
    # a PNG saved with a .jpg name still decodes (losslessly, so it really was read as PNG data)
    arr = gradient()
    ok, buf = cv2.imencode(".png", arr)
    path = tmp_path / "mislabelled.jpg"
    path.write_bytes(buf.tobytes())
    np.testing.assert_allclose(load_image(path).pixels, arr / 255.0, atol=1e-6)


# --------------------------------------------------------------------------- raster errors


def test_missing_file(tmp_path):
    assert_image_error(tmp_path / "nope.png", "no such file")


def test_directory(tmp_path):
    folder = tmp_path / "folder.png"
    folder.mkdir()
    assert_image_error(folder, "is a directory")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert_image_error(path, "file is empty")


def test_empty_dicom_file(tmp_path):
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    assert_image_error(path, "file is empty")


def test_truncated_png(tmp_path):
    ok, buf = cv2.imencode(".png", np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8))
    data = buf.tobytes()
    path = tmp_path / "truncated.png"
    path.write_bytes(data[: len(data) // 2])
    assert_image_error(path, "not a readable image", "truncated")


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n" * 20)
    assert_image_error(path, "not a readable image")


def test_huge_png_header_is_refused_without_allocating(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(png_with_header(100_000, 100_000))
    assert_image_error(path, "refusing to decode", f"{MAX_PIXELS:,}")


def test_pixel_limit_survives_package_import_order(tmp_path):
    """10000x10000 is over MAX_PIXELS (64M) but under OpenCV's own 2**30 default.

    OpenCV reads OPENCV_IO_MAX_IMAGE_PIXELS when the library loads, so the limit only holds if
    no edgecxr module imports cv2 before edgecxr.core.imageio has set it. Run in a fresh interpreter
    so this test is independent of what pytest has imported already.
    """
    path = tmp_path / "big.png"
    path.write_bytes(png_with_header(10_000, 10_000))
    code = textwrap.dedent(
        f"""
        import sys
        from edgecxr.core.preprocess import preprocess  # loads cv2 first, as card.py does
        from edgecxr.core.imageio import ImageError, load_image
        try:
            load_image({str(path)!r})
        except ImageError as exc:
            print(exc)
        else:
            print("LOADED")
        """
    )
    # edgecxr.core.imageio has set OPENCV_* in this process's environment; the child must not inherit it
    env = child_env({k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")})
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "refusing to decode" in result.stdout, result.stdout


def test_pixel_limit_holds_when_cv2_was_imported_first(tmp_path):
    """A caller that imports cv2 before edgecxr gets OpenCV's 2**30 default limit; a real image
    just over MAX_PIXELS must still be refused rather than handed on to preprocessing."""
    path = tmp_path / "real_big.png"
    code = textwrap.dedent(
        f"""
        import cv2, numpy as np
        ok, buf = cv2.imencode(".png", np.zeros((8001, 8000), np.uint8))  # 64,008,000 pixels
        open({str(path)!r}, "wb").write(buf.tobytes())
        from edgecxr.core.imageio import ImageError, load_image
        try:
            load_image({str(path)!r})
        except ImageError as exc:
            print(exc)
        else:
            print("LOADED")
        """
    )
    env = child_env({k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")})
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{path}: "), result.stdout
    assert "64,000,000 pixels" in result.stdout, result.stdout


def test_one_pixel_image_is_too_small(tmp_path):
    path = write_image(tmp_path / "dot.png", np.array([[128]], np.uint8))
    err = assert_image_error(path, "too small", "1x1")
    assert err.reason.startswith("image is 1x1 pixels")


def test_single_row_image_is_too_small(tmp_path):
    path = write_image(tmp_path / "row.png", np.zeros((1, 50), np.uint8))
    assert_image_error(path, "50x1", "too small")


def test_two_by_two_is_accepted(tmp_path):
    path = write_image(tmp_path / "tiny.png", np.array([[0, 255], [255, 0]], np.uint8))
    np.testing.assert_array_equal(load_image(path).pixels, [[0, 1], [1, 0]])


def test_image_error_fields():
    err = ImageError(Path("/x/y.png"), "broken")
    assert err.path == "/x/y.png"
    assert err.reason == "broken"
    assert str(err) == "/x/y.png: broken"


# --------------------------------------------------------------------------- DICOM


def test_is_dicom_marker(tmp_path):
    path = write_dicom(tmp_path / "a.dcm", np.zeros((4, 4), np.uint16))
    assert is_dicom(path.read_bytes())
    assert not is_dicom(b"\x00" * 128 + b"DICX")
    assert not is_dicom(b"DICM")


def test_dicom_monochrome2_16bit(tmp_path):
    raw = np.array([[0, 1000, 32768], [40000, 65534, 65535]], np.uint16)
    image = load_image(write_dicom(tmp_path / "m2.dcm", raw))
    assert image.format == "dicom"
    assert image.channels == 1
    assert image.bit_depth == 16
    assert image.color_spread == 0.0
    assert image.pixels.dtype == np.float32
    assert image.pixels.shape == (2, 3)
    np.testing.assert_allclose(image.pixels, raw / 65535.0, atol=1e-6)
    assert image.pixels[1, 2] == 1.0 and image.pixels[0, 0] == 0.0


def test_dicom_detected_by_marker_without_dcm_suffix(tmp_path):
    raw = np.array([[0, 65535], [65535, 0]], np.uint16)
    image = load_image(write_dicom(tmp_path / "IM0001", raw))
    assert image.format == "dicom"
    np.testing.assert_array_equal(image.pixels, [[0, 1], [1, 0]])


def test_dicom_monochrome1_is_inverted(tmp_path):
    raw = np.arange(0, 65536, 4369, dtype=np.uint16).reshape(4, 4)
    mono2 = load_image(write_dicom(tmp_path / "m2.dcm", raw, photometric="MONOCHROME2"))
    mono1 = load_image(write_dicom(tmp_path / "m1.dcm", raw, photometric="MONOCHROME1"))
    np.testing.assert_allclose(mono1.pixels + mono2.pixels, 1.0, atol=1e-6)
    assert mono1.pixels[0, 0] == 1.0  # stored 0 is white in MONOCHROME1
    assert mono1.pixels[-1, -1] == 0.0


def test_dicom_12bit_stored_in_16bit(tmp_path):
    raw = np.array([[0, 1024, 2048], [3000, 4000, 4095]], np.uint16)
    image = load_image(write_dicom(tmp_path / "b12.dcm", raw, bits_stored=12))
    assert image.bit_depth == 12
    assert image.pixels[1, 2] == 1.0  # 4095 -> 1.0, not 4095/65535
    np.testing.assert_allclose(image.pixels, raw / 4095.0, atol=1e-6)


def test_dicom_rescale_slope_intercept_applied(tmp_path):
    # A negative slope inverts the stored values; without the modality LUT the image would not flip.
    raw = np.array([[0, 1000], [3000, 4095]], np.uint16)
    image = load_image(
        write_dicom(tmp_path / "rs.dcm", raw, bits_stored=12, RescaleSlope=-1, RescaleIntercept=4095)
    )
    np.testing.assert_allclose(image.pixels, (4095 - raw) / 4095.0, atol=1e-6)
    assert image.pixels[0, 0] == 1.0 and image.pixels[1, 1] == 0.0


def test_dicom_rescale_maps_to_full_range(tmp_path):
    raw = np.array([[100, 200], [300, 500]], np.uint16)
    image = load_image(write_dicom(tmp_path / "rs2.dcm", raw, RescaleSlope=2, RescaleIntercept=-1024))
    # values -824, -624, -424, -24: the rescaled range maps onto [0, 1]
    np.testing.assert_allclose(image.pixels, [[0.0, 0.25], [0.5, 1.0]], atol=1e-6)


def test_dicom_window_applied(tmp_path):
    raw = np.array([[0, 10000, 20000], [30000, 40000, 65535]], np.uint16)
    image = load_image(write_dicom(tmp_path / "w.dcm", raw, WindowCenter=30000, WindowWidth=20000))
    p = image.pixels
    assert p[0, 0] == 0.0 and p[0, 1] == 0.0  # below the window
    assert p[1, 1] == 1.0 and p[1, 2] == 1.0  # above the window
    assert p[1, 0] == pytest.approx(0.5, abs=1e-3)  # at the centre
    assert p[0, 2] == pytest.approx(0.0, abs=1e-3)  # at the lower edge
    assert p.min() >= 0.0 and p.max() <= 1.0


@pytest.mark.parametrize("attrs", [{"WindowCenter": "nan", "WindowWidth": 4096}, {"RescaleSlope": "1e309", "RescaleIntercept": 0}])
def test_dicom_rescale_or_window_that_is_not_a_number_is_refused(tmp_path, attrs):
    """Found by the loader fuzz test: WindowCenter "nan" gave an image of NaNs, and a label."""
    raw = np.arange(64, dtype=np.uint16).reshape(8, 8) * 64
    with warnings.catch_warnings():  # pydicom warns that it is told to write "nan"
        warnings.simplefilter("ignore")
        path = write_dicom(tmp_path / "nan.dcm", raw, bits_stored=12, **attrs)
    assert_image_error(path, "DICOM rescale or window", "is not a finite number")


def test_dicom_window_with_monochrome1(tmp_path):
    raw = np.array([[0, 30000], [60000, 65535]], np.uint16)
    image = load_image(
        write_dicom(tmp_path / "w1.dcm", raw, photometric="MONOCHROME1", WindowCenter=30000, WindowWidth=20000)
    )
    np.testing.assert_allclose(image.pixels, [[1.0, 0.5], [0.0, 0.0]], atol=1e-3)


def test_dicom_window_in_rescaled_units(tmp_path):
    """WindowCenter/Width are in rescaled (modality) units; both steps must be applied together."""
    raw = np.array([[0, 250, 500], [750, 1000, 4095]], np.uint16)
    # rescaled: -1000, -500, 0, 500, 1000, 7190; window [-500, 500]
    image = load_image(
        write_dicom(
            tmp_path / "rw.dcm",
            raw,
            bits_stored=12,
            RescaleSlope=2,
            RescaleIntercept=-1000,
            WindowCenter=0,
            WindowWidth=1000,
        )
    )
    np.testing.assert_allclose(image.pixels, [[0.0, 0.0, 0.5], [1.0, 1.0, 1.0]], atol=2e-3)


def test_dicom_window_with_ct_style_intercept(tmp_path):
    # A common CT/DX encoding: slope 1, intercept -1024, a window of [-1000, 1000] (rescaled units)
    raw = np.array([[0, 24, 1024], [2024, 3000, 4095]], np.uint16)
    image = load_image(
        write_dicom(
            tmp_path / "ct.dcm",
            raw,
            bits_stored=12,
            RescaleSlope=1,
            RescaleIntercept=-1024,
            WindowCenter=0,
            WindowWidth=2000,
        )
    )
    p = image.pixels
    assert p[0, 0] == 0.0 and p[0, 1] == pytest.approx(0.0, abs=1e-3)
    assert p[0, 2] == pytest.approx(0.5, abs=1e-3)
    assert p[1, 0] == pytest.approx(1.0, abs=1e-3)
    assert p[1, 1] == 1.0 and p[1, 2] == 1.0


def test_dicom_window_with_negative_slope(tmp_path):
    raw = np.array([[4095, 3095], [2000, 0]], np.uint16)
    # rescaled: 0, 1000, 2095, 4095; window [500, 1500] in rescaled units
    image = load_image(
        write_dicom(
            tmp_path / "neg.dcm",
            raw,
            bits_stored=12,
            RescaleSlope=-1,
            RescaleIntercept=4095,
            WindowCenter=1000,
            WindowWidth=1000,
        )
    )
    np.testing.assert_allclose(image.pixels, [[0.0, 0.5], [1.0, 1.0]], atol=2e-3)


def test_dicom_and_its_png_export_preprocess_the_same(tmp_path):
    rng = np.random.default_rng(7)
    raw = (np.linspace(0, 4095, 96 * 80).reshape(96, 80) + rng.normal(0, 200, (96, 80))).clip(0, 4095)
    raw = raw.astype(np.uint16)
    dicom = load_image(
        write_dicom(tmp_path / "study.dcm", raw, bits_stored=12, WindowCenter=2000, WindowWidth=3000)
    )
    # "export": the windowed image scaled to 0..255 and written as an 8-bit PNG
    export = np.round(dicom.pixels * 255.0).astype(np.uint8)
    png = load_image(write_image(tmp_path / "study.png", export))
    assert png.bit_depth == 8 and dicom.bit_depth == 12
    for spec in (PreprocessSpec(), {"crop": "center-square", "size": [32, 32]}):
        a = preprocess(dicom.pixels, spec)
        b = preprocess(png.pixels, spec)
        assert a.shape == b.shape
        assert np.abs(a - b).max() <= 1 / 255 + 1e-6


def test_dicom_without_pixel_data(tmp_path):
    path = write_dicom(tmp_path / "nopix.dcm", None, PatientName="Doe^Jane", PatientID="SECRET123")
    err = assert_image_error(path, "no pixel data")
    assert "Doe" not in str(err) and "SECRET123" not in str(err)


def test_dicom_compressed_undecodable(tmp_path):
    raw = np.zeros((8, 8), np.uint16)
    junk = encapsulate([b"\xff\x4f\xff\x51" + b"not really jpeg 2000" * 4])
    path = write_dicom(
        tmp_path / "j2k.dcm",
        raw,
        transfer_syntax=JPEG2000Lossless,
        pixel_data=junk,
        PatientName="Doe^Jane",
        PatientID="SECRET123",
    )
    from pydicom.pixels import get_decoder

    # corrupt data with a decoder installed (the clinic extra's) is said to be corrupt, not to need a plugin
    hint = "corrupt or incomplete" if get_decoder(JPEG2000Lossless).is_available else "no decoder for this transfer syntax is installed"
    err = assert_image_error(path, "cannot decode DICOM pixel data", "JPEG 2000", hint)
    message = str(err)
    assert "Doe" not in message and "Jane" not in message and "SECRET123" not in message
    assert err.__cause__ is None and err.__suppress_context__  # no pydicom traceback chained


def test_dicom_truncated_uncompressed_pixel_data(tmp_path):
    raw = np.zeros((8, 8), np.uint16)
    path = write_dicom(
        tmp_path / "short.dcm", raw, pixel_data=b"\x00\x01" * 10, PatientName="Doe^Jane", PatientID="SECRET123"
    )
    err = assert_image_error(path, "cannot decode DICOM pixel data", "Explicit VR Little Endian")
    message = str(err)
    # an uncompressed file needs no decoder plugin; the hint would send the user the wrong way
    assert "decoder" not in message and "corrupt" not in message
    assert "SECRET123" not in message and "Doe" not in message


def test_dcm_suffix_on_non_dicom(tmp_path):
    path = tmp_path / "scan.dcm"
    path.write_text("PatientName=Doe^Jane\n")
    err = assert_image_error(path, "not a readable DICOM file")
    assert "Doe" not in str(err)


def test_dicom_one_pixel_is_too_small(tmp_path):
    path = write_dicom(tmp_path / "dot.dcm", np.array([[5]], np.uint16))
    assert_image_error(path, "too small")


# --------------------------------------------------------------------------- from_array


def test_from_array_gray_uint8():
    arr = np.array([[0, 51], [204, 255]], np.uint8)
    image = from_array(arr)
    assert image.format == "array"
    assert image.channels == 1
    assert image.bit_depth == 8
    assert image.color_spread == 0.0
    assert image.pixels.dtype == np.float32
    np.testing.assert_allclose(image.pixels, [[0.0, 0.2], [0.8, 1.0]], atol=1e-6)


def test_from_array_gray_uint16_and_float():
    np.testing.assert_allclose(from_array(np.array([[0, 65535]] * 2, np.uint16)).pixels, [[0.0, 1.0]] * 2)
    assert from_array(np.array([[0, 65535]] * 2, np.uint16)).bit_depth == 16
    f = from_array(np.array([[-0.5, 0.25, 1.5]] * 2, np.float64))
    assert f.bit_depth == 32
    np.testing.assert_allclose(f.pixels, [[0.0, 0.25, 1.0]] * 2)


def test_from_array_too_small_and_signed_tiff(tmp_path):
    with pytest.raises(ValueError, match="too small"):
        from_array(np.zeros((0, 5), np.uint8))
    path = tmp_path / "signed.tif"
    cv2.imwrite(str(path), np.arange(4096, dtype=np.int16).reshape(64, 64))
    with pytest.raises(ImageError, match="unsupported pixel type int16"):
        load_image(path)


def test_from_array_rgb_order():
    red = np.zeros((4, 5, 3), np.uint8)
    red[:, :, 0] = 255  # RGB order: channel 0 is red
    blue = np.zeros((4, 5, 3), np.uint8)
    blue[:, :, 2] = 255
    r, b = from_array(red), from_array(blue)
    assert r.channels == 3
    assert r.pixels.shape == (4, 5)
    np.testing.assert_allclose(r.pixels, 0.299, atol=1e-3)
    np.testing.assert_allclose(b.pixels, 0.114, atol=1e-3)
    assert r.color_spread > 0.1


def test_from_array_rgba_order_and_gray_equivalence():
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5) * 12
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    a = from_array(rgba)
    assert a.channels == 4
    assert a.color_spread == 0.0
    np.testing.assert_allclose(a.pixels, from_array(gray).pixels, atol=1e-6)
    red = np.zeros((3, 3, 4), np.uint8)
    red[:, :, 0] = 255
    red[:, :, 3] = 255
    np.testing.assert_allclose(from_array(red).pixels, 0.299, atol=1e-3)


def test_from_array_matches_load_image_for_colour(tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (12, 9, 3), dtype=np.uint8)
    from_file = load_image(write_image(tmp_path / "c.png", rgb[:, :, ::-1]))  # cv2 writes BGR
    np.testing.assert_allclose(from_array(rgb).pixels, from_file.pixels, atol=1e-6)
    assert from_array(rgb).color_spread == pytest.approx(from_file.color_spread, abs=1e-6)


@pytest.mark.parametrize("shape", [(10,), (4, 4, 2), (4, 4, 5), (2, 4, 4, 3), ()])
def test_from_array_bad_shape(shape):
    with pytest.raises(ValueError, match="shape"):
        from_array(np.zeros(shape, np.uint8))


def test_from_array_bad_dtype():
    with pytest.raises(ValueError, match="unsupported pixel type"):
        from_array(np.zeros((4, 4), np.int32))


def test_dicom_voi_lut_sequence_maps_by_lut_bits(tmp_path):
    from pydicom.sequence import Sequence

    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.LUTData = (np.arange(4096) * 16).astype("<u2").tobytes()  # 12-bit input -> 16-bit output, linear
    path = write_dicom(tmp_path / "lut.dcm", np.array([[0, 1000], [2000, 4095]]), bits_stored=12, VOILUTSequence=Sequence([item]))
    np.testing.assert_allclose(load_image(path).pixels, np.array([[0, 1000], [2000, 4095]]) * 16 / 65535, atol=1e-6)


def test_dicom_ybr_colour_is_converted_once(tmp_path):
    path = tmp_path / "ybr.dcm"
    write_dicom(path, np.zeros((4, 4)))
    ds = pydicom.dcmread(path)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = np.tile(np.array([200, 128, 128], np.uint8), (4, 4, 1)).tobytes()
    ds.save_as(path, enforce_file_format=True)
    image = load_image(path)
    np.testing.assert_allclose(image.pixels, 200 / 255, atol=2 / 255)
    assert image.color_spread < 0.01


def test_dicom_multiframe_refused_before_decoding(tmp_path):
    path = write_dicom(tmp_path / "mf.dcm", np.zeros((4, 4)), NumberOfFrames=30)
    with pytest.raises(ImageError, match="30 frames"):
        load_image(path)


# --------------------------------------------------------------------------- decoding only what is needed (issue 12)


def test_fifo_and_devices_are_refused_without_reading(tmp_path):
    fifo = tmp_path / "scan.png"
    os.mkfifo(fifo)  # reading it would wait forever for a writer
    assert_image_error(fifo, "not a regular file (FIFO)")
    with pytest.raises(ImageError, match=r"^/dev/zero: not a regular file \(character device\)"):
        load_image("/dev/zero")


def test_a_file_over_the_byte_cap_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.png"
    with open(path, "wb") as f:  # sparse: takes no disk
        f.write(png_with_header(64, 64))
        f.truncate(MAX_FILE_BYTES + 1)
    assert_image_error(path, f"more than the {MAX_FILE_BYTES // 2**20} MB")


@pytest.mark.parametrize("fmt", ["png", "bmp", "tif", "jpg"])
def test_header_sizes_are_read_without_decoding(tmp_path, fmt):
    arr = np.zeros((37, 53, 3), np.uint8)
    path = write_image(tmp_path / f"h.{fmt}", arr)
    with open(path, "rb") as f:
        header = raster_header(f)
    assert header is not None and (header.width, header.height, header.channels) == (53, 37, 3)


def test_a_bomb_header_is_refused_from_the_header_even_when_cv2_was_loaded_first(tmp_path):
    """The API case of the issue: cv2 imported before edgecxr (OpenCV's own limit then 2**30); 25000 x 25000 declared."""
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_header(25000, 25000))
    code = f"import cv2\nfrom edgecxr.core.imageio import ImageError, load_image\ntry:\n    load_image({str(path)!r})\nexcept ImageError as exc:\n    print(exc)\n"
    env = child_env({k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")})
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == f"{path}: image header claims 25000x25000 pixels, more than {MAX_PIXELS:,} pixels; refusing to decode"


def test_large_images_are_read_reduced_with_their_file_size_kept(tmp_path):
    film = cv2.resize(gradient(64, 48), (WORK_SIDE * 2 + 40, WORK_SIDE * 2), interpolation=cv2.INTER_LINEAR)  # 4136 x 4096
    for suffix in (".png", ".jpg"):
        image = load_image(write_image(tmp_path / f"big{suffix}", film))
        assert image.original_shape == (WORK_SIDE * 2, WORK_SIDE * 2 + 40)
        assert max(image.pixels.shape) == WORK_SIDE and image.pixels.shape == (2028, 2048)
        np.testing.assert_allclose(image.pixels.mean(), film.mean() / 255, atol=2e-3)
    colour = write_image(tmp_path / "colour.jpg", cv2.merge([film, film, film]))
    image = load_image(colour)  # decoded by libjpeg at half size, in colour (the colour check still works)
    assert (image.channels, image.original_shape, image.color_spread) == (3, (4096, 4136), pytest.approx(0, abs=0.01))
    raw = write_dicom(tmp_path / "big.dcm", film.astype(np.uint16) * 16, bits_stored=12)
    dicom = load_image(raw)
    assert dicom.original_shape == (4096, 4136) and dicom.pixels.shape == (2028, 2048)
    np.testing.assert_allclose(dicom.pixels, load_image(tmp_path / "big.png").pixels, atol=2 / 255)  # 8-bit rounding after the reduction


def test_a_long_thin_image_is_reduced_to_no_less_than_two_pixels_wide(tmp_path):
    """Found by the loader fuzz test: 48 x 65537 came out 2048 x 1, narrower than any image load_image accepts."""
    image = load_image(write_image(tmp_path / "thin.png", gradient(WORK_SIDE * 3, 3)))
    assert image.original_shape == (WORK_SIDE * 3, 3)
    assert image.pixels.shape == (WORK_SIDE, 2)


def large_tiff(path: Path, **tags: int) -> Path:
    """A 3000 x 3000 12-bit film in a 16-bit TIFF (18 MB decoded: read into an array of ours), with IFD entries set to ``tags`` ({tag number: value})."""
    data = bytearray(write_image(path, (np.arange(3000 * 3000, dtype=np.uint32).reshape(3000, 3000) % 4093 + 1).astype(np.uint16)).read_bytes())
    (ifd,) = struct.unpack("<I", data[4:8])
    for i in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
        entry = ifd + 2 + 12 * i
        tag = struct.unpack("<H", data[entry : entry + 2])[0]
        if str(tag) in tags:
            data[entry + 8 : entry + 10] = struct.pack("<H", tags[str(tag)])  # all of these are SHORTs
    path.write_bytes(bytes(data))
    return path


def test_a_large_tiff_is_decoded_into_our_array_with_opencvs_pixels(tmp_path):
    path = large_tiff(tmp_path / "big.tif")
    np.testing.assert_array_equal(load_image(path).pixels, from_array(cv2.imread(str(path), cv2.IMREAD_UNCHANGED)).pixels)


@pytest.mark.parametrize(("tags", "reason"), [
    ({"339": 3}, "not a readable image (truncated, corrupt, or not an image format), or every pixel is 0"),  # 16-bit float: OpenCV hands our array back untouched
    ({"339": 2}, "unsupported pixel type int16"),  # signed: OpenCV refuses our array; decoded again into its own, refused as a small one is
])
def test_a_large_tiff_opencv_does_not_decode_into_our_array_is_refused(tmp_path, tags, reason):
    assert_image_error(large_tiff(tmp_path / "odd.tif", **tags), reason)


@pytest.mark.parametrize("colour", [True, False])
def test_colour_files_decode_to_the_same_gray_as_a_float_conversion(tmp_path, colour):
    """The colour path (one-pass scaling, spread from the integer channels) gives the float formula's gray to the bit, and its spread."""
    rng = np.random.default_rng(5)
    gray = rng.integers(0, 256, (123, 157), dtype=np.uint8)
    bgr = rng.integers(0, 256, (123, 157, 3), dtype=np.uint8) if colour else np.dstack([gray] * 3)
    path = tmp_path / "film.png"
    cv2.imwrite(str(path), bgr)
    loaded = load_image(path)
    ref = bgr.astype(np.float32) / 255.0
    assert np.array_equal(loaded.pixels, np.clip(cv2.cvtColor(ref, cv2.COLOR_BGR2GRAY), 0.0, 1.0))
    spread = float(np.mean(np.abs(ref[:, :, 0] - ref[:, :, 1]) + np.abs(ref[:, :, 1] - ref[:, :, 2])) / 2)
    assert loaded.color_spread == pytest.approx(spread, abs=1e-6) and (loaded.color_spread > 0.2) == colour


def test_8_bit_values_are_each_value_over_255_exactly(tmp_path):
    """The table lookup that turns 8-bit data into [0, 1] gives what dividing by 255 in float32 gives, value for value (gray, and colour with alpha)."""
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    expected = values.astype(np.float32) / 255
    gray = load_image(write_image(tmp_path / "all.png", values))
    assert gray.pixels.dtype == np.float32 and np.array_equal(gray.pixels, expected)
    bgra = np.dstack([values, values[::-1], values.T, np.full_like(values, 255)])
    as_before = np.clip(cv2.cvtColor(np.divide(bgra[:, :, :3], np.float32(255), dtype=np.float32), cv2.COLOR_BGR2GRAY), 0, 1)
    assert np.array_equal(from_array(bgra[:, :, [2, 1, 0, 3]]).pixels, as_before)
