"""The index of ``edgecxr serve``: one SQLite database (``STORE/web/index.sqlite``) of studies and outcomes.

Studies come from the logs the stores already keep, read with :func:`edgecxr.clinic.journal.read_lines`:
each ``results.jsonl`` line is a classified study, each ``failed`` line of ``audit.jsonl`` a film
that could not be classified (with its reason); a log's rotated segments are read too. Two stores are read: the one ``listen`` and
``watch`` write (origin ``store``) and the upload store beside the index (origin ``upload``). A log
is read again only when its size changed; a key already indexed is left as it is. Outcomes
(lab-confirmed positive, negative or not done, and a reviewer note) live only here, with their
history (every change, by whom and when) and every read of a study (who, when). Who a study is
(patient ID, accession, study date, description: :mod:`edgecxr.clinic.web.patients`) is read once, when
the study is indexed; the file is readable by its owner only, as it names patients.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecxr.clinic.journal import read_lines, segments, utc_ms
from edgecxr.clinic.web import monitoring, patients
from edgecxr.core.site import NORMAL

OUTCOMES = {"positive": "lab-confirmed positive", "negative": "lab-confirmed negative", "not_done": "test not done"}
SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    key TEXT PRIMARY KEY, origin TEXT NOT NULL, time TEXT NOT NULL, status TEXT NOT NULL,
    label TEXT, abnormal_score REAL, refer INTEGER, flagged INTEGER, warnings TEXT NOT NULL,
    reason TEXT, file TEXT, record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS studies_time ON studies (time);
CREATE TABLE IF NOT EXISTS outcomes (key TEXT PRIMARY KEY, outcome TEXT NOT NULL, note TEXT NOT NULL, time TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS logs_read (path TEXT PRIMARY KEY, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS history (key TEXT NOT NULL, outcome TEXT NOT NULL, note TEXT NOT NULL, user TEXT NOT NULL, time TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS history_key ON history (key);
CREATE TABLE IF NOT EXISTS reads (key TEXT NOT NULL, user TEXT NOT NULL, time TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS patients (key TEXT PRIMARY KEY, patient_id TEXT, accession TEXT, study_date TEXT, description TEXT);
"""
COLUMNS = ("s.key, s.origin, s.time, s.status, s.label, s.abnormal_score, s.refer, s.flagged, s.warnings, s.reason, s.file, s.record, "
           "o.outcome, o.note, p.patient_id, p.accession, p.study_date, p.description")
JOINS = "FROM studies s LEFT JOIN outcomes o USING (key) LEFT JOIN patients p USING (key)"
SEARCHED = ("p.patient_id", "p.accession", "p.description", "s.file")


@dataclass(frozen=True)
class Filters:
    """The worklist's filters: refer only, not yet reviewed, a date range (``YYYY-MM-DD``, both ends included)."""

    refer: bool = False
    unreviewed: bool = False
    since: str | None = None
    until: str | None = None
    search: str | None = None  # part of a patient ID, accession, description or file name


class Index:
    """The database, caught up from the stores' logs by :meth:`sync`; safe to use from any thread."""

    def __init__(self, path: Path, sources: dict[str, Path], file_of: Callable[[str, str], str | None] = lambda origin, key: None) -> None:
        self.sources = sources  # origin -> store folder
        self.file_of = file_of  # (origin, key) -> the name the film came under
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._write() as db:
            db.executescript(SCHEMA)
        self._identify()  # studies indexed by a version that did not identify them

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._db:
            yield self._db

    def sync(self) -> int:
        """Index what the logs added since the last call; returns how many studies were new."""
        added = 0
        for origin, root in self.sources.items():
            for path in [part for name in ("results.jsonl", "audit.jsonl") for part in (*segments(root / name), root / name)]:
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                size, read_as = st.st_size, f"{path}@{st.st_ino}"  # a file rotated since is another file, whatever its size
                with self._lock:
                    row = self._db.execute("SELECT size FROM logs_read WHERE path = ?", (read_as,)).fetchone()
                if row is not None and row["size"] == size:
                    continue
                lines = read_lines(path)
                with self._write() as db:
                    for line in lines:
                        study = _study(origin, line, self.file_of)
                        if study is not None:
                            added += db.execute(f"INSERT OR IGNORE INTO studies VALUES ({','.join('?' * len(study))})", study).rowcount
                    db.execute("INSERT OR REPLACE INTO logs_read VALUES (?, ?)", (read_as, size))
                if added:
                    self._identify()
        return added

    def _identify(self) -> None:
        """Read who each study not yet identified is (from its film's header, or its file name)."""
        with self._lock:
            todo = self._db.execute("SELECT key, origin, file FROM studies WHERE key NOT IN (SELECT key FROM patients)").fetchall()
        if not todo:
            return
        files = {origin: patients.received_files(root) for origin, root in self.sources.items()}
        rows = [(r["key"], *patients.identify(files[r["origin"]].get(r["key"]), r["file"])) for r in todo if r["origin"] in files]
        with self._write() as db:
            db.executemany("INSERT OR IGNORE INTO patients VALUES (?, ?, ?, ?, ?)", rows)

    def page(self, filters: Filters, page: int, per_page: int) -> tuple[list[dict[str, Any]], int]:
        """One page of studies, newest first, and how many match the filters in all."""
        where, args = _where(filters)
        joins = (" LEFT JOIN outcomes o USING (key)" if filters.unreviewed else "") + (" LEFT JOIN patients p USING (key)" if filters.search else "")
        matching = f"FROM studies s{joins} {where}"  # only the tables the filters need: the count reads every match
        with self._lock:
            total = self._db.execute(f"SELECT COUNT(*) {matching}", args).fetchone()[0]
            rows = self._db.execute(
                f"SELECT {COLUMNS} FROM (SELECT s.* {matching} ORDER BY s.time DESC, s.key LIMIT ? OFFSET ?) s "
                "LEFT JOIN outcomes o USING (key) LEFT JOIN patients p USING (key) ORDER BY s.time DESC, s.key",
                [*args, per_page, (page - 1) * per_page],
            ).fetchall()
        return [_plain(r) for r in rows], int(total)

    def study(self, key: str) -> dict[str, Any] | None:
        """One study with its outcome, or None."""
        with self._lock:
            row = self._db.execute(f"SELECT {COLUMNS} {JOINS} WHERE s.key = ?", (key,)).fetchone()
        return _plain(row) if row is not None else None

    def record_outcome(self, key: str, outcome: str, note: str | None, user: str) -> None:
        """Record (or change) the confirmed outcome of ``key`` (one of :data:`OUTCOMES`) by ``user``, kept in its
        history; ``note`` None keeps the note the study has."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        with self._write() as db:
            if note is None:
                row = db.execute("SELECT note FROM outcomes WHERE key = ?", (key,)).fetchone()
                note = row["note"] if row is not None else ""
            now = utc_ms()
            db.execute("INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?)", (key, outcome, note, now))
            db.execute("INSERT INTO history VALUES (?, ?, ?, ?, ?)", (key, outcome, note, user, now))

    def history(self, key: str) -> list[dict[str, Any]]:
        """Every outcome recorded for ``key``, oldest first: outcome, note, user, time."""
        with self._lock:
            rows = self._db.execute("SELECT outcome, note, user, time FROM history WHERE key = ? ORDER BY rowid", (key,)).fetchall()
        return [dict(r) for r in rows]

    def record_read(self, key: str, user: str) -> None:
        """Note that ``user`` (``"-"``: an anonymous kiosk reader) opened study ``key`` now."""
        with self._write() as db:
            db.execute("INSERT INTO reads VALUES (?, ?, ?)", (key, user, utc_ms()))

    def reads(self, key: str) -> list[dict[str, Any]]:
        """Who opened study ``key`` and when, oldest first."""
        with self._lock:
            return [dict(r) for r in self._db.execute("SELECT user, time FROM reads WHERE key = ? ORDER BY rowid", (key,))]

    def read(self) -> list[dict[str, Any]]:
        """(time, flagged, outcome, profile) of every classified study, for monitoring (:mod:`edgecxr.clinic.web.monitoring`)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT s.time, s.flagged, o.outcome, s.record FROM studies s LEFT JOIN outcomes o USING (key) WHERE s.status = 'classified'"
            ).fetchall()
        return [{"time": r["time"], "flagged": r["flagged"], "outcome": r["outcome"], "profile": monitoring.profile_of(json.loads(r["record"]))}
                for r in rows]


def _study(origin: str, line: dict[str, Any], file_of: Callable[[str, str], str | None]) -> tuple[Any, ...] | None:
    """The studies row of one log line, or None for a line that is not a result or a failure."""
    key, time = line.get("key"), line.get("time")
    if not isinstance(key, str) or not isinstance(time, str):
        return None
    if line.get("event") == "result":
        refer = line.get("refer")
        score = line.get("abnormal_score")
        flagged = refer if refer is not None else (line.get("label") != NORMAL if score is not None else None)
        return (key, origin, time, "classified", line.get("label"), score, refer, flagged, json.dumps(line.get("warnings", [])),
                None, line.get("file"), json.dumps(line))
    if line.get("event") == "failed":
        return (key, origin, time, "failed", None, None, None, None, "[]", str(line.get("reason", "")), file_of(origin, key), json.dumps(line))
    return None


def _where(filters: Filters) -> tuple[str, list[Any]]:
    parts, args = [], []
    if filters.refer:
        parts.append("s.refer = 1")
    if filters.unreviewed:
        parts.append("o.outcome IS NULL")
    if filters.since:
        parts.append("s.time >= ?")
        args.append(filters.since)
    if filters.until:
        parts.append("s.time < ?")
        args.append(filters.until + "T99")  # every time on that day sorts before it
    if filters.search:
        pattern = "%" + filters.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        parts.append("(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in SEARCHED) + ")")
        args.extend([pattern] * len(SEARCHED))
    return ("WHERE " + " AND ".join(parts)) if parts else "", args


def _plain(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    out["warnings"] = json.loads(out["warnings"])
    out["record"] = json.loads(out["record"])
    out["refer"] = None if out["refer"] is None else bool(out["refer"])
    out["flagged"] = None if out["flagged"] is None else bool(out["flagged"])
    return out
