"""Finding the image files to work on, and saying what was passed over: the one file filter of the CLI, evaluation, training and benchmarks.

A folder is walked recursively, in sorted order. A file in it is an image when its suffix is one of
:data:`edgecxr.core.imageio.IMAGE_SUFFIXES` (any case) or when it carries DICOM's ``DICM`` marker at
offset 128, which is how DICOM files of a PACS export or a CD are found (``DICOM/ST000/SE000/IM000001``,
no suffix). Symbolic links are followed, folders too; a folder reached a second time (a link back
to a folder above it, or to one already read) is not read again. Everything passed over is a
:class:`Skipped` entry with its reason: files that are not images, the ``DICOMDIR`` of a CD (an
index, not an image; the images it lists are found by their own marker), dangling links, link
loops, FIFOs and other special files (never opened, so a FIFO cannot hang the scan), folders that
cannot be listed, and each folder given that holds no image at all.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from edgecxr.core.failures import shown
from edgecxr.core.imageio import IMAGE_SUFFIXES, is_dicom

_KINDS = {stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket", stat.S_IFCHR: "character device", stat.S_IFBLK: "block device"}
NOT_AN_IMAGE = "not an image file (no image suffix, no DICOM marker)"
DICOMDIR = "DICOMDIR: the index of a DICOM CD, not an image (the images it lists are read from their own files)"
EMPTY_FOLDER = "folder holds no image files"


@dataclass(frozen=True)
class Skipped:
    """An entry a folder scan passed over, and why."""

    path: Path
    reason: str

    def to_dict(self) -> dict[str, str]:
        """The entry as JSON output gives it: ``{"file", "skipped": reason}``."""
        return {"file": str(self.path), "skipped": self.reason}


@dataclass
class Scan:
    """What :func:`scan_images` found: the image ``files`` and the ``skipped`` entries, each in the order met."""

    files: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def summary(self, named: int = 3) -> str:
        """``"skipped: N (n1 reason1: file, file, file and k more; n2 reason2: file)"``, the most frequent reason first, up to
        ``named`` entries named per reason; empty when nothing was skipped."""
        if not self.skipped:
            return ""
        by_reason: dict[str, list[Path]] = {}
        for s in self.skipped:
            by_reason.setdefault(s.reason, []).append(s.path)
        parts = []
        for reason, paths in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
            names = ", ".join(shown(p) for p in paths[:named]) + (f" and {len(paths) - named} more" if len(paths) > named else "")
            parts.append(f"{len(paths)} {reason}: {names}")
        return f"skipped: {len(self.skipped)} ({'; '.join(parts)})"


def find_images(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Image files of ``paths`` (one path or several), in the order given (see :func:`scan_images`)."""
    return scan_images(paths).files


def scan_images(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> Scan:
    """The image files of ``paths`` and what was skipped.

    A path that is not a folder is taken as given, whatever it is (its reader says whether it is
    an image, or that it is missing); a folder gives its images, recursively (see the module
    docstring), sorted.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = Scan()
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            out.files.append(path)
            continue
        files: list[Path] = []
        _walk(path, files, out.skipped, set())
        out.files += sorted(files)
        if not files:
            out.skipped.append(Skipped(path, EMPTY_FOLDER))
    return out


def _walk(folder: Path, files: list[Path], skipped: list[Skipped], seen: set[tuple[int, int]]) -> None:
    try:
        info = folder.stat()
        if (info.st_dev, info.st_ino) in seen:
            skipped.append(Skipped(folder, "folder already read (a symbolic link back to it or to another folder read)"))
            return
        seen.add((info.st_dev, info.st_ino))
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        skipped.append(Skipped(folder, f"cannot list folder ({exc.strerror})"))
        return
    for entry in entries:
        path = folder / entry.name
        try:
            mode = os.stat(entry.path).st_mode  # follows links
        except FileNotFoundError:
            skipped.append(Skipped(path, "dangling symbolic link" if entry.is_symlink() else "vanished while the folder was read"))
            continue
        except OSError as exc:  # ELOOP for a link to itself, EACCES, ...
            skipped.append(Skipped(path, f"cannot read ({exc.strerror})"))
            continue
        if stat.S_ISDIR(mode):
            _walk(path, files, skipped, seen)
        elif not stat.S_ISREG(mode):
            skipped.append(Skipped(path, f"not a regular file ({_KINDS.get(stat.S_IFMT(mode), 'special file')})"))
        elif entry.name.upper() == "DICOMDIR":
            skipped.append(Skipped(path, DICOMDIR))
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            files.append(path)
        else:
            try:
                with open(path, "rb") as f:
                    marked = is_dicom(f.read(132))
            except OSError as exc:
                skipped.append(Skipped(path, f"cannot read ({exc.strerror})"))
                continue
            if marked:
                files.append(path)
            else:
                skipped.append(Skipped(path, NOT_AN_IMAGE))


def class_folders(root: str | os.PathLike) -> list[str]:
    """Names of the sub-folders of ``root`` (one per class), sorted; hidden ones are left out."""
    return sorted(d.name for d in Path(root).iterdir() if d.is_dir() and not d.name.startswith("."))
