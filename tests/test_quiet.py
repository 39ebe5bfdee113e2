"""A clean terminal, part: what libpng, libjpeg and LiteRT print on stderr by themselves is not shown.

Reproducers of issue 12 built in code: a gray PNG carrying an RGB colour profile (libpng's
``iCCP`` warning, as on 326 of the shared cxr3 films), a JPEG cut short (libjpeg's "Premature
end of JPEG file", and gray rows where the film is missing), and the XNNPACK INFO line LiteRT
prints when a process builds its first interpreter. Each is first shown to print its line without
edgecxr.
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import child_env
from edgecxr.core.imageio import ImageError, load_image
from edgecxr.core.interpreter import XNNPACK_INFO, _pass_on
from edgecxr.core.quiet import native_stderr


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def gray_png_with_rgb_profile(path: Path) -> Path:
    """A 64x64 gray PNG with an iCCP chunk holding an RGB display profile (a bare 132-byte ICC header, no tags)."""
    profile = bytearray(132)
    profile[0:4] = struct.pack(">I", len(profile))
    profile[8:12] = bytes([2, 0x10, 0, 0])  # ICC version 2.1
    profile[12:24] = b"mntrRGB XYZ "  # display class, RGB data, XYZ connection space
    profile[36:40] = b"acsp"
    profile[68:80] = struct.pack(">III", 0xF6D6, 0x10000, 0xD32D)  # D50
    ok, buf = cv2.imencode(".png", (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8))
    assert ok
    png = buf.tobytes()
    ihdr_end = 8 + 8 + 13 + 4
    # stored, not deflated: libpng reports a tightly deflated profile as "too short" before it reads the colour space
    path.write_bytes(png[:ihdr_end] + chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(bytes(profile), 0)) + png[ihdr_end:])
    return path


def jpeg_bytes() -> bytes:
    image = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (96, 96)).astype(np.uint8), (0, 0), 2)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


def test_native_stderr_captures_nested_and_concurrent_blocks_and_puts_stderr_back(capfd):
    os.write(2, b"before\n")
    with native_stderr() as outer:
        os.write(2, b"one\n")
        with native_stderr() as inner:
            os.write(2, b"two\n")
        os.write(2, b"three\n")
    texts = {}

    def write(i: int) -> None:
        with native_stderr() as said:
            os.write(2, f"thread {i}\n".encode())
        texts[i] = said.text

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.write(2, b"after\n")
    assert (outer.text, inner.text) == ("one\ntwo\nthree\n", "two\n")
    assert all(f"thread {i}\n" in texts[i] for i in range(8))  # and perhaps another thread's line, written while its block ran
    assert capfd.readouterr().err == "before\nafter\n"


def test_libpng_iccp_warning_is_not_shown(tmp_path, capfd):
    path = gray_png_with_rgb_profile(tmp_path / "profiled.png")
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape == (64, 64)
    assert "libpng warning: iCCP: profile 'ICC Profile': 'RGB ': RGB color space not permitted on grayscale PNG" in capfd.readouterr().err
    image = load_image(path)
    assert (image.height, image.width, image.format) == (64, 64, "png")
    assert capfd.readouterr().err == ""


def test_a_jpeg_cut_short_is_refused_without_libjpegs_line(tmp_path, capfd):
    whole = jpeg_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    assert cv2.imread(str(cut), cv2.IMREAD_UNCHANGED).shape == (96, 96)  # libjpeg decodes it, the rest gray
    assert "Premature end of JPEG file" in capfd.readouterr().err
    with pytest.raises(ImageError, match=r"cut\.jpg: JPEG data ends before its end-of-image marker \(truncated file\)"):
        load_image(cut)
    appended = tmp_path / "appended.jpg"  # bytes after the end-of-image marker, as some cameras write
    appended.write_bytes(whole + b"\x00trailer" * 100)
    whole_file = tmp_path / "whole.jpg"
    whole_file.write_bytes(whole)
    np.testing.assert_array_equal(load_image(appended).pixels, load_image(whole_file).pixels)
    assert capfd.readouterr().err == ""


def test_the_litert_info_line_is_not_printed(tiny_models):
    model = str(tiny_models["int8"])
    plain = f"from ai_edge_litert.interpreter import Interpreter; Interpreter(model_path={model!r}).allocate_tensors()"
    ours = f"from edgecxr import load_model; load_model({model!r}).predict(__import__('numpy').arange(4096, dtype='uint8').reshape(64, 64))"
    shown = [subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=120) for code in (plain, ours)]
    assert [r.returncode for r in shown] == [0, 0], [r.stderr for r in shown]
    assert shown[0].stderr == XNNPACK_INFO + "\n"
    assert shown[1].stderr == ""


def test_what_else_the_interpreter_prints_is_passed_on(capfd):
    _pass_on(f"{XNNPACK_INFO}\nERROR: an op the interpreter lacks\n")
    assert capfd.readouterr().err == "ERROR: an op the interpreter lacks\n"


def test_real_profiled_films_predict_with_nothing_on_stderr(shared_data):
    films = sorted((shared_data / "cxr3" / "test" / "COVID").glob("ieee-covid-19-pneumonia-4*.png"))[:3]
    assert len(films) == 3
    read = "import cv2, sys; [cv2.imread(f, cv2.IMREAD_UNCHANGED) for f in sys.argv[1:]]"
    plain = subprocess.run([sys.executable, "-c", read, *map(str, films)], capture_output=True, text=True, timeout=120)
    assert plain.stderr.count("libpng warning: iCCP") == 3
    result = subprocess.run([sys.executable, "-m", "edgecxr", "predict", *map(str, films)], env=child_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0
    assert result.stderr == ""
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [str(f) for f in films]
