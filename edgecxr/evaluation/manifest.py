"""The one reader of a dataset's ``manifest.csv``: typed rows keyed by the resolved path of their file.

A manifest has a header row and one row per image; its ``file`` column is a path relative to the
folder the manifest is in (``../shared/data/cxr3/manifest.csv``: ``test/COVID/bimcv-….png``). The
columns ``label``, ``split``, ``source``, ``subclass``, ``patient_group`` and ``age_group`` become
fields of :class:`ManifestRow` (``""`` when absent or empty); any other column is kept, as text,
in ``extra``. Every failure is a :class:`ManifestError` naming the file and the problem.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

FIELDS = ("label", "split", "source", "subclass", "patient_group", "age_group")


class ManifestError(ValueError):
    """A manifest that cannot be read; ``str()`` is ``"<file>: <reason>"``."""


@dataclass(frozen=True)
class ManifestRow:
    """One image of a manifest: its resolved ``path``, the ``file`` column as written, and what is known of it."""

    path: Path
    file: str
    label: str = ""
    split: str = ""
    source: str = ""
    subclass: str = ""
    patient_group: str = ""
    age_group: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """The rows of one manifest by resolved file path, its column names and the sha256 of its bytes."""

    path: Path
    columns: tuple[str, ...]
    rows: Mapping[Path, ManifestRow]
    sha256: str

    def get(self, file: str | os.PathLike) -> ManifestRow | None:
        """The row of ``file`` (any spelling of its path), or None when the manifest does not list it."""
        return self.rows.get(resolved(Path(file)))

    def sources(self, files: Iterable[str | os.PathLike]) -> list[str]:
        """The ``source`` of each of ``files`` (``""`` for one the manifest does not list)."""
        return [row.source if (row := self.get(f)) else "" for f in files]

    def under(self, folder: str | os.PathLike) -> list[ManifestRow]:
        """The rows whose file lies below ``folder``, in manifest order."""
        root = Path(folder).resolve()
        return [row for path, row in self.rows.items() if path.is_relative_to(root)]


def resolved(path: Path, folders: dict[Path, Path] | None = None) -> Path:
    """``path`` with its folder resolved (absolute, links and ``..`` followed) and its own name kept.

    ``folders`` caches resolved folders across calls.
    """
    folders = {} if folders is None else folders
    parent = path.parent
    if parent not in folders:
        folders[parent] = parent.resolve()
    return folders[parent] / path.name


def read_manifest(path: str | os.PathLike, required: Iterable[str] = ()) -> Manifest:
    """Read and check ``path``: a UTF-8 CSV with a ``file`` column and the ``required`` ones, each file listed once."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest does not exist") from None
    except IsADirectoryError:
        raise ManifestError(f"{path}: manifest is a folder, not a CSV file") from None
    except OSError as exc:
        raise ManifestError(f"{path}: manifest cannot be read ({exc.strerror})") from None
    try:
        reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))
        columns = tuple(reader.fieldnames or ())
        records = list(reader)
    except (UnicodeDecodeError, csv.Error):
        raise ManifestError(f"{path}: not a CSV text file") from None
    if not columns:
        raise ManifestError(f"{path}: manifest is empty (no header row)")
    missing = [c for c in ("file", *required) if c not in columns]
    if missing:
        raise ManifestError(f"{path}: no {', '.join(repr(c) for c in missing)} column (columns: {', '.join(columns)})")
    folders: dict[Path, Path] = {}  # each folder resolved once: a manifest lists thousands of files in a few
    rows: dict[Path, ManifestRow] = {}
    for line, record in enumerate(records, start=2):
        file = (record.get("file") or "").strip()
        if not file:
            raise ManifestError(f"{path}: line {line}: empty 'file'")
        key = resolved(path.parent / file, folders)
        if key in rows:
            raise ManifestError(f"{path}: line {line}: {file} is listed twice")
        known = {name: record.get(name) or "" for name in FIELDS}
        extra = {k: v or "" for k, v in record.items() if k not in FIELDS and k != "file" and k is not None}
        rows[key] = ManifestRow(path=key, file=file, extra=extra, **known)
    return Manifest(path=path, columns=columns, rows=rows, sha256=hashlib.sha256(data).hexdigest())
