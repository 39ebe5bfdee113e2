"""Peak memory of ``edgecxr predict`` on large inputs: the figure that says whether a board can read a big film.

    python -m benchmarks.memory [--side 7900] [--out benchmarks/results/memory]

Generates film-like test images in a temporary folder (a smooth synthetic chest shape with
grain, never a data image): 8-bit gray, 12-bit-in-16 gray and 8-bit RGB PNG, a 16-bit TIFF, a
colour JPEG and a 16-bit DICOM, all ``side`` x ``side``, plus a small PNG whose header claims
25000 x 25000 pixels (a decompression bomb) and a small film for the baseline. Each is predicted
by ``edgecxr predict FILE --json`` in its own process, whose peak RSS (VmHWM, the process's
high-water mark) is recorded with the time, the exit status and the answer or error. Writes ``memory.json`` and
``report.md`` into ``--out``, naming the machine. Target: every accepted input below
:data:`TARGET_MB`.
"""
from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import cv2
import numpy as np

from edgecxr.core.imageio import LARGE_DECODE, WORK_SIDE
from edgecxr.evaluation.benchmark import platform_info
from edgecxr.evaluation.provenance import invocation

TARGET_MB = 250


def film(side: int, seed: int = 0) -> np.ndarray:
    """A uint8 film-like image: bright mediastinum and ribs-like bands between two darker lung fields, with grain."""
    rng = np.random.default_rng(seed)
    small = np.full((64, 64), 0.55, np.float32)
    small[8:58, 10:28] = small[8:58, 36:54] = 0.25  # lungs
    small[::6, 8:56] += 0.08  # ribs
    big = cv2.resize(cv2.GaussianBlur(small, (0, 0), 1.5), (side, side), interpolation=cv2.INTER_CUBIC)
    grain = rng.integers(-4, 5, (side, side), dtype=np.int16)
    return np.clip(big * 255 + grain, 0, 255).astype(np.uint8)


def bomb_png(width: int, height: int) -> bytes:
    """A valid, small PNG whose IHDR claims ``width`` x ``height`` 8-bit gray pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = zlib.compress(b"\x00" * (width + 1) * 256, 9)  # the first 256 rows, all zero
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def write_dicom(path: Path, pixels: np.ndarray, bits_stored: int) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, meta.TransferSyntaxUID = SecondaryCaptureImageStorage, generate_uid(), ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta, ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta, meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def make_inputs(folder: Path, side: int) -> dict[str, Path]:
    """The test files, by name; made one at a time so this process stays small too."""
    gray = film(side)
    files: dict[str, Path] = {}

    def write(name: str, suffix: str, array: np.ndarray, params: tuple[int, ...] = ()) -> None:
        ok, buf = cv2.imencode(suffix, array, list(params))
        assert ok, name
        path = folder / f"{name}{suffix}"
        path.write_bytes(buf.tobytes())
        files[name] = path

    write("baseline-512-png8", ".png", cv2.resize(gray, (512, 512), interpolation=cv2.INTER_AREA))
    write("png8-gray", ".png", gray)
    write("png16-gray-12bit", ".png", gray.astype(np.uint16) * 16)
    write("tiff16-gray-12bit", ".tif", gray.astype(np.uint16) * 16)
    write("jpeg-rgb", ".jpg", cv2.merge([gray, gray, gray]), (cv2.IMWRITE_JPEG_QUALITY, 90))
    write("png8-rgb", ".png", cv2.merge([gray, gray, gray]))
    files["dicom16-12bit"] = folder / "dicom16-12bit.dcm"
    write_dicom(files["dicom16-12bit"], gray.astype(np.uint16) * 16, 12)
    files["png-bomb-25000"] = folder / "bomb.png"
    files["png-bomb-25000"].write_bytes(bomb_png(25000, 25000))
    return files


# `edgecxr predict FILE --json` in this child, which prints its own peak RSS (VmHWM: reset at exec, unlike
# ru_maxrss, which a child inherits from this large parent) as its last stderr line when it exits.
CHILD = """
import atexit, sys
from edgecxr.evaluation.benchmark import _peak_rss_mb
atexit.register(lambda: print(f"peak_rss_mb {_peak_rss_mb():.1f}", file=sys.stderr))
from edgecxr.cli import main
main(["predict", sys.argv[1], "--json"], prog_name="edgecxr")
"""


def measure(path: Path) -> dict:
    """Predict ``path`` in a fresh process running ``edgecxr predict``: its peak RSS, time, exit status and answer."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    record = json.loads(proc.stdout.splitlines()[-1]) if proc.stdout.strip() else {}
    return {
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "peak_rss_mb": float(proc.stderr.split()[-1]),
        "seconds": round(seconds, 2),
        "exit": proc.returncode,
        "label": record.get("label"),
        "error": record.get("error"),
    }


def report(results: dict[str, dict], side: int, info: dict) -> str:
    accepted = [r["peak_rss_mb"] for r in results.values() if r["exit"] == 0]
    lines = [
        f"# Peak memory of `edgecxr predict` on {side}x{side} inputs",
        "",
        f"Machine: {info['machine']}, {info['cpu']} ({info['cpus']} CPUs), {info['system']}, Python {info['python']}, "
        f"{info['interpreter']} {info['interpreter_version']}. Produced by `{' '.join(invocation('python -m benchmarks.memory'))}`.",
        "",
        f"Target: below {TARGET_MB} MB for every accepted input; highest here {max(accepted):.0f} MB "
        f"({'met' if max(accepted) < TARGET_MB else 'NOT met'}). Peak RSS is the process's high-water mark, the interpreter "
        "and LiteRT included (the 512 px baseline row is that floor).",
        "",
        "| input | file MB | peak RSS MB | seconds | exit | answer |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, r in results.items():
        answer = r["label"] or r["error"] or ""
        lines.append(f"| {name} | {r['file_mb']} | {r['peak_rss_mb']} | {r['seconds']} | {r['exit']} | {answer} |")
    return "\n".join(lines) + "\n" + NOTES


NOTES = f"""
What keeps a large film small: a PNG or TIFF whose decode would exceed {LARGE_DECODE // 2**20} MB is decoded into an
array allocated from its header, not into a buffer of OpenCV's that is then copied out (twice the
decoded size); a PNG only after every chunk's CRC was checked up to IEND, a TIFF checked after the
decode (OpenCV hands the array back untouched when it cannot read the file, so one still all zero
is refused). DICOM is read from the file straight into its array; a large JPEG is decoded by
libjpeg at a fraction of its size. The `no_lungs` check reads the lung mask at the film's working
size (at most {WORK_SIDE} px), not at the file's own. The baseline includes the lung model the chest-film
classifier runs. The answers are on a synthetic film, so they say nothing about accuracy.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=7900, help="side of the large generated images (px)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/memory"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        files = make_inputs(Path(tmp), args.side)
        results = {name: measure(path) for name, path in files.items()}
    info = platform_info()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory.json").write_text(json.dumps({"platform": info, "side": args.side, "target_mb": TARGET_MB, "results": results}, indent=2) + "\n")
    (args.out / "report.md").write_text(report(results, args.side, info))
    print(report(results, args.side, info))
    return 0 if all(r["peak_rss_mb"] < TARGET_MB for r in results.values() if r["exit"] == 0) else 1


if __name__ == "__main__":
    sys.exit(main())
