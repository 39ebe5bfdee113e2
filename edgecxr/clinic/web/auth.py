"""Passwords of ``edgecxr serve``'s users hashed with scrypt, HTTP Basic, CSRF tokens.

A hash is one line, ``scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>`` (kept in
:mod:`edgecxr.clinic.web.accounts`). Checks compare in constant time.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

N, R, P = 2**14, 8, 1  # scrypt cost: about 16 MB and 50 ms a check on a small board


def hash_password(password: str) -> str:
    """The password file's line for ``password``, with a new random salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P)
    return f"scrypt${N}${R}${P}${salt.hex()}${digest.hex()}"


def check_password(password: str, line: str) -> bool:
    """Whether ``password`` is the one ``line`` (from :func:`hash_password`) was made from."""
    try:
        kind, n, r, p, salt, digest = line.strip().split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    except ValueError:
        return False
    return hmac.compare_digest(got, bytes.fromhex(digest))


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) of an ``Authorization: Basic ...`` header, or None."""
    if not header or not header.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


def new_token() -> str:
    """A fresh CSRF token (kept in the session, echoed by every form)."""
    return secrets.token_urlsafe(32)


def same_token(sent: str | None, kept: str | None) -> bool:
    """Whether a form's token is the session's (both present, equal in constant time)."""
    return bool(sent and kept) and hmac.compare_digest(str(sent), str(kept))
