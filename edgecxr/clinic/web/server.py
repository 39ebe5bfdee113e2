"""Starting ``edgecxr serve``: the accounts, the upload service, the index, and waitress serving the application until
SIGTERM or Ctrl-C.

``STORE/web/`` holds ``accounts.sqlite`` (users, roles, scrypt hashes, sessions), ``index.sqlite``
and the upload store's folders and logs, all readable by their owner only: ``serve`` sets its
umask to 077 (folders 0700, files 0600) and tightens what an earlier version left readable. The
store ``listen`` and ``watch`` write is only read, so ``serve`` runs beside them.
"""
from __future__ import annotations

import logging
import os
import signal
import stat
from pathlib import Path
from typing import Any

from edgecxr.clinic.journal import read_lines
from edgecxr.clinic.service import Service
from edgecxr.clinic.store import owner_only
from edgecxr.clinic.web.accounts import Accounts
from edgecxr.clinic.web.app import Site, create_app
from edgecxr.clinic.web.index import Index
from edgecxr.clinic.web.uploads import Uploads, upload_names
from edgecxr.core.model import Model

WEB = "web"  # STORE/web/
THREADS = 4  # waitress worker threads; classification itself is one at a time (the upload store's worker)
OLD_PASSWORD = "password"  # STORE/web/password: the one account of earlier versions, taken over as an admin


class PasswordFileError(Exception):
    """A password file that must not be used; ``str()`` says why."""


def private_store(store: Path) -> Path:
    """``STORE/web/``, made and kept readable by its owner only (umask 077 for this process); returns it."""
    os.umask(0o077)
    web = store / WEB
    web.mkdir(parents=True, exist_ok=True)
    owner_only(web)
    return web


def accounts(store: Path) -> Accounts:
    """The accounts of ``store`` (an earlier version's one account taken over as an admin)."""
    return Accounts(private_store(store) / "accounts.sqlite")


def read_password_file(path: Path) -> str:
    """The password on the first line of ``path``; refused when others can read the file or it is too short."""
    mode = path.stat().st_mode
    if mode & 0o077:
        raise PasswordFileError(f"{path}: readable by group or others (mode {stat.S_IMODE(mode):04o}): chmod 600 it first")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if not lines or len(lines[0]) < 8:
        raise PasswordFileError(f"{path}: the first line must be a password of at least 8 characters")
    return lines[0]


def take_over_old_account(store: Path, users: Accounts, name: str) -> None:
    """An earlier version's ``STORE/web/password`` (scrypt line) becomes admin ``name``, when there are no users yet."""
    old = store / WEB / OLD_PASSWORD
    if old.exists() and not users.users():
        users.put_hash(name, "admin", old.read_text().strip())
        old.unlink()


def open_site(store: Path, model: Model, allowed_hosts: frozenset[str], public_read: bool = False) -> tuple[Site, Service]:
    """The application's state over ``store`` (with at least one user) and the started upload service."""
    web = private_store(store)
    names = upload_names(web)
    service = Service(web, model, None, "EDGECXR", 5.0, file_of=names.get).start()

    def file_of(origin: str, key: str) -> str | None:
        if origin == "upload":
            return names.get(key)
        return next((r["file"] for r in read_lines(store / "watch.jsonl") if r.get("event") == "ingested" and r.get("key") == key), None)

    index = Index(web / "index.sqlite", {"store": store, "upload": web}, file_of)
    index.sync()
    site = Site(index, {"store": store, "upload": web}, Uploads(service, names), model.card, accounts(store), allowed_hosts, public_read)
    return site, service


def run(site: Site, service: Service, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then finish the queued classifications."""
    import waitress

    logging.basicConfig(format="edgecxr: %(message)s", level=logging.WARNING)
    server: Any = waitress.create_server(create_app(site), host=host, port=port, threads=THREADS, ident="edgecxr")

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        service.stop()
