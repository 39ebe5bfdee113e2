"""Starting ``edgecxr serve``: the account's password and the session secret in ``STORE/web/``, the upload
service, the index, and waitress serving the application until SIGTERM or Ctrl-C.

``STORE/web/`` holds ``password`` (scrypt hash, mode 0600), ``secret`` (signs session cookies,
mode 0600), ``index.sqlite`` and the upload store's folders and logs. The store ``listen`` and
``watch`` write is only read, so ``serve`` runs beside them.
"""
from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path
from typing import Any

from edgecxr.clinic.service import Service
from edgecxr.clinic.web import auth
from edgecxr.clinic.web.app import Site, create_app
from edgecxr.clinic.web.index import Index
from edgecxr.clinic.web.uploads import Uploads, upload_names
from edgecxr.core.model import Model

WEB = "web"  # STORE/web/
THREADS = 4  # waitress worker threads; classification itself is one at a time (the upload store's worker)


def password_path(store: Path) -> Path:
    return store / WEB / "password"


def secret(store: Path) -> bytes:
    """The session-signing secret, made once (32 random bytes, mode 0600)."""
    path = store / WEB / "secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def open_site(store: Path, model: Model, user: str) -> tuple[Site, Service]:
    """The application's state over ``store`` (the password must be set) and the started upload service."""
    web = store / WEB
    web.mkdir(parents=True, exist_ok=True)
    names = upload_names(web)
    service = Service(web, model, None, "EDGECXR", 5.0, file_of=names.get).start()
    index = Index(web / "index.sqlite", {"store": store, "upload": web})
    index.sync()
    site = Site(index, {"store": store, "upload": web}, Uploads(service, names), model.card, user, password_path(store).read_text())
    return site, service


def run(site: Site, service: Service, store: Path, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then finish the queued classifications."""
    import waitress

    server: Any = waitress.create_server(create_app(site, secret(store)), host=host, port=port, threads=THREADS, ident="edgecxr")

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


def set_password(store: Path, password: str) -> None:
    """Store the hash of the account's password in ``STORE/web/password``."""
    (store / WEB).mkdir(parents=True, exist_ok=True)
    auth.write_password(password_path(store), password)
