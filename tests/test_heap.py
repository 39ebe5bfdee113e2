"""edgecxr.clinic.heap: on glibc the listener's threads share one malloc arena; elsewhere, or when the operator set
MALLOC_ARENA_MAX, nothing is changed."""
from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from conftest import child_env

GLIBC = platform.libc_ver()[0] == "glibc"

# Threads that allocate at once, then the number of arenas glibc's malloc_info reports (<heap nr=...> per arena).
CODE = """
import ctypes, os, sys, tempfile, threading
from edgecxr.clinic.heap import one_arena
done = one_arena() if sys.argv[1] == "one" else None
def churn():
    for _ in range(2000):
        [bytearray(50000) for _ in range(4)]
threads = [threading.Thread(target=churn) for _ in range(6)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL("libc.so.6")
libc.fdopen.restype = ctypes.c_void_p
with tempfile.TemporaryFile() as fh:
    fp = libc.fdopen(os.dup(fh.fileno()), b"w")
    libc.malloc_info(0, ctypes.c_void_p(fp)); libc.fclose(ctypes.c_void_p(fp))
    fh.seek(0)
    print(done, fh.read().decode().count("<heap nr="))
"""


def _run(mode: str, **env: str) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", CODE, mode], capture_output=True, text=True, env={**child_env(), **env}, timeout=120)
    assert done.returncode == 0, done.stderr
    said, arenas = done.stdout.split()
    return said, int(arenas)


def test_one_arena_keeps_every_thread_on_the_main_arena():
    if not GLIBC:  # malloc arenas are glibc's: elsewhere nothing is asked
        from edgecxr.clinic.heap import one_arena

        assert one_arena() is False
        return
    assert _run("default")[1] > 1  # without it, threads allocating at once get arenas of their own
    assert _run("one") == ("True", 1)


@pytest.mark.skipif(not GLIBC, reason="malloc_info and arenas are glibc's (the test above covers other platforms)")
def test_an_operators_malloc_arena_max_is_left_as_set():
    said, arenas = _run("one", MALLOC_ARENA_MAX="4")
    assert said == "False" and 1 < arenas <= 4
