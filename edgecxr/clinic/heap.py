"""The clinic services' memory: one malloc arena for the process on glibc, so the threads' freed memory is shared.

glibc's malloc gives threads that allocate at the same time arenas of their own (up to 8 per core)
and keeps what each frees for that arena alone. The listener runs many threads (the workers, the
committer, the sender, two per association in pynetdicom), each briefly holding a film's arrays, so
the freed memory of one arena cannot serve another and the peak grows with the arenas. Their work is
Python holding the interpreter's lock, so one arena costs no measurable speed and saves some 15 MB of
the peak (docs/dicom.md). :func:`one_arena` asks for that (``mallopt(M_ARENA_MAX, 1)``) before the
service's threads start; it does nothing where malloc is not glibc's, or where ``MALLOC_ARENA_MAX`` is
set already (the operator's choice, which glibc read at start).
"""
from __future__ import annotations

import ctypes
import os
import platform

M_ARENA_MAX = -8  # glibc's malloc.h


def one_arena() -> bool:
    """Limit this process's malloc to one arena (glibc only; see the module docstring); whether it was done."""
    if "MALLOC_ARENA_MAX" in os.environ or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(M_ARENA_MAX, 1))
