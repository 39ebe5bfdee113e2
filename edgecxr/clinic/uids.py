"""The UIDs of results: made under the site's organisation root (``--uid-root``) or, by default, pydicom's.

Every UID a result carries (its SOP Instance, its series, its tracking identifier) is
:func:`result_uid`: a hash of what it is made from, after the root, so results made again after a
crash are the same instances. :func:`check_root` says whether a root can be used: digits and
dots, no component with a leading zero, the first component 0, 1 or 2 (an ISO OID), and at most
:data:`MAX_ROOT` characters, so a UID of 64 characters still has :data:`MIN_DIGITS` digits of its own.
"""
from __future__ import annotations

import re

from pydicom.uid import PYDICOM_ROOT_UID, generate_uid

MAX_UID = 64  # characters of a DICOM UID (PS3.5 9.1)
MIN_DIGITS = 23  # of the hash after the root: a chance of two results sharing a UID below 1 in 10**20
MAX_ROOT = MAX_UID - 1 - MIN_DIGITS  # 40
_COMPONENT = re.compile(r"0|[1-9][0-9]*")  # a whole component (fullmatch: "$" would let a trailing newline through)

_root = PYDICOM_ROOT_UID  # the prefix in use, ending with a dot


def check_root(text: str) -> str:
    """``text`` as a UID root (without a trailing dot); ValueError saying in one line what is wrong otherwise."""
    root = text.strip()
    if not root:
        raise ValueError("the UID root is empty")
    if len(root) > MAX_ROOT:
        raise ValueError(f"{root!r} has {len(root)} characters, more than the {MAX_ROOT} that leave {MIN_DIGITS} digits of a 64-character UID")
    for component in root.split("."):
        if not _COMPONENT.fullmatch(component):
            digits = component.isascii() and component.isdigit()
            problem = "an empty component" if not component else f"component {component!r} has a leading zero" if digits else f"component {component!r} is not digits"
            raise ValueError(f"{root!r} is not a UID root (digits and dots): {problem}")
    if root.split(".")[0] not in ("0", "1", "2"):
        raise ValueError(f"{root!r} is not a UID root: an OID starts with 0, 1 or 2")
    return root


def use_root(root: str | None) -> None:
    """Make the results of this process under ``root`` (checked with :func:`check_root`); None: pydicom's root again."""
    global _root
    _root = PYDICOM_ROOT_UID if root is None else check_root(root) + "."


def root() -> str:
    """The prefix results' UIDs start with now (ending with a dot)."""
    return _root


def result_uid(*made_from: str) -> str:
    """The UID made from ``made_from`` under the root in use (the same inputs, the same UID)."""
    return str(generate_uid(prefix=_root, entropy_srcs=list(made_from)))
