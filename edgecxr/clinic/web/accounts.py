"""The accounts of ``edgecxr serve``: users with roles, server-side sessions, and login throttling.

Everything lives in one SQLite database, ``STORE/web/accounts.sqlite`` (mode 0600):

- ``users``: name, role (:data:`ROLES`: a reader sees, a reviewer also uploads and records
  outcomes, an admin also manages users) and the scrypt hash of the password (:mod:`auth`);
- ``sessions``: one row per browser session, keyed by the SHA-256 of the random id the cookie
  carries (so the database alone opens no session), with its user (None before login), CSRF
  token, start and last use. A session ends at logout (its row is deleted, so a replayed cookie
  finds nothing), after :data:`IDLE` seconds unused, and :data:`LIFETIME` seconds after login.

Throttling (:class:`Throttle`) counts failed logins, by the page or HTTP Basic alike, per user
name and per client address; while either has :data:`MAX_FAILURES` failures in the last
:data:`WINDOW` seconds, a login is refused without checking the password (no scrypt work).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgecxr.clinic.web import auth

ROLES = ("reader", "reviewer", "admin")  # each may do what the ones before it may
IDLE = 30 * 60  # s a session may go unused
SEEN_STEP = 30  # s: a session's last use is written when it is at least this old (so idle time is exact to 30 s)
LIFETIME = 12 * 3600  # s a logged-in session lasts at most
ANONYMOUS_LIFETIME = 3600  # s a session before login lasts (it only carries the login form's CSRF token)
MAX_FAILURES, WINDOW = 5, 15 * 60  # per user name; an address gets ADDRESS_FACTOR times as many
ADDRESS_FACTOR = 4
VERIFIED_FOR = 60  # s a right user name and password are remembered (HTTP Basic sends them with every request)
SCHEMA = """
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, user TEXT, csrf TEXT NOT NULL, started REAL NOT NULL, seen REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Session:
    """A live session: its cookie id, user (None before login), role and CSRF token."""

    sid: str
    user: str | None
    role: str | None
    csrf: str

    def may(self, role: str) -> bool:
        """Whether the session's user has ``role`` or one above it."""
        return self.role is not None and ROLES.index(self.role) >= ROLES.index(role)


class Accounts:
    """Users and sessions over ``accounts.sqlite``; safe to use from any thread."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._pepper = secrets.token_bytes(32)  # keys the remembered right passwords of this process
        self._verified: dict[bytes, tuple[str, float]] = {}  # keyed hash of (name, password) -> (role, until)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.executescript(SCHEMA)

    # users
    def set_user(self, name: str, role: str, password: str) -> None:
        """Add ``name`` (or replace its role and password); ends the user's sessions."""
        self.put_hash(name, role, auth.hash_password(password))

    def put_hash(self, name: str, role: str, line: str) -> None:
        """Add ``name`` with the password hash ``line`` (from :func:`auth.hash_password`); ends the user's sessions."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if not name or len(name) > 64 or not name.isprintable() or ":" in name:
            raise ValueError("a user name is 1-64 printable characters without ':'")
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO users VALUES (?, ?, ?)", (name, role, line))
            self._db.execute("DELETE FROM sessions WHERE user = ?", (name,))
            self._verified.clear()

    def remove_user(self, name: str) -> bool:
        """Remove user ``name`` and end its sessions; False when there was no such user."""
        with self._lock, self._db:
            gone = self._db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount
            self._db.execute("DELETE FROM sessions WHERE user = ?", (name,))
            self._verified.clear()
        return bool(gone)

    def role(self, name: str) -> str | None:
        """The role of user ``name``, or None when there is no such user."""
        return self._role(name)

    def users(self) -> list[tuple[str, str]]:
        """(name, role) of every user, by name."""
        with self._lock:
            return [(n, r) for n, r in self._db.execute("SELECT name, role FROM users ORDER BY name")]

    def check(self, name: str, password: str) -> str | None:
        """The role of ``name`` when ``password`` is its password, else None (no scrypt work for an unknown name).

        A right pair is remembered for :data:`VERIFIED_FOR` seconds (in memory, by a keyed hash), so a script calling
        the API with HTTP Basic pays one scrypt check a minute, not one a request."""
        remembered = hmac.new(self._pepper, f"{name}\0{password}".encode(), hashlib.sha256).digest()
        now = self.clock()
        with self._lock:
            known = self._verified.get(remembered)
            if known is not None and known[1] > now:
                return known[0]
            row = self._db.execute("SELECT role, hash FROM users WHERE name = ?", (name,)).fetchone()
        if row is None or not auth.check_password(password, row[1]):
            return None
        with self._lock:
            self._verified[remembered] = (str(row[0]), now + VERIFIED_FOR)
        return str(row[0])

    # sessions
    def start(self, user: str | None = None) -> Session:
        """A new session (logged in as ``user``, or anonymous); old ones that expired are removed."""
        sid, csrf, now = secrets.token_urlsafe(32), auth.new_token(), self.clock()
        with self._lock, self._db:
            self._db.execute(
                "DELETE FROM sessions WHERE seen < ? OR (user IS NULL AND started < ?) OR (user IS NOT NULL AND started < ?)",
                (now - IDLE, now - ANONYMOUS_LIFETIME, now - LIFETIME),
            )
            self._db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)", (_digest(sid), user, csrf, now, now))
        return Session(sid, user, self._role(user), csrf)

    def resume(self, sid: str | None) -> Session | None:
        """The live session of a cookie's id (its last use now), or None when it ended, expired or never was."""
        if not sid or len(sid) > 100:
            return None
        now = self.clock()
        with self._lock, self._db:
            row = self._db.execute("SELECT user, csrf, started, seen FROM sessions WHERE id = ?", (_digest(sid),)).fetchone()
            if row is None:
                return None
            user, csrf, started, seen = row
            lifetime = LIFETIME if user is not None else ANONYMOUS_LIFETIME
            if now - seen > IDLE or now - started > lifetime:
                self._db.execute("DELETE FROM sessions WHERE id = ?", (_digest(sid),))
                return None
            if now - seen >= SEEN_STEP:  # not a disk write on every request
                self._db.execute("UPDATE sessions SET seen = ? WHERE id = ?", (now, _digest(sid)))
        role = self._role(user)
        if user is not None and role is None:  # the user was removed
            self.end(sid)
            return None
        return Session(sid, user, role, csrf)

    def end(self, sid: str) -> None:
        """End a session: its cookie opens nothing from now on."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM sessions WHERE id = ?", (_digest(sid),))

    def _role(self, user: str | None) -> str | None:
        if user is None:
            return None
        with self._lock:
            row = self._db.execute("SELECT role FROM users WHERE name = ?", (user,)).fetchone()
        return None if row is None else str(row[0])


class Throttle:
    """Failed logins in the last :data:`WINDOW` seconds, per user name and per address (kept in memory)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def blocked(self, user: str, address: str) -> bool:
        """Whether a login for ``user`` from ``address`` is refused now, without a password check."""
        with self._lock:
            return (self._count("user:" + user) >= MAX_FAILURES
                    or self._count("address:" + address) >= MAX_FAILURES * ADDRESS_FACTOR)

    def failed(self, user: str, address: str) -> None:
        with self._lock:
            for name in ("user:" + user, "address:" + address):
                self._failures[name].append(self.clock())

    def _count(self, name: str) -> int:
        times = self._failures.get(name)
        if not times:
            return 0
        while times and times[0] < self.clock() - WINDOW:
            times.popleft()
        if not times:
            del self._failures[name]  # names guessed long ago take no memory
        return len(times)


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()
