"""Keeping C libraries' own lines off the terminal: what they write to the process's stderr while a call runs.

OpenCV's libpng and libjpeg write straight to file descriptor 2 (``libpng warning: iCCP: known
incorrect sRGB profile``, ``libpng error: Read Error``, ``Premature end of JPEG file``), whatever
OpenCV's log level: ``OPENCV_LOG_LEVEL`` and ``cv2.utils.logging`` cover OpenCV's own log only.
LiteRT writes ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` there once per process,
when the first interpreter is built; its Python API has no log level (``TF_CPP_MIN_LOG_LEVEL`` is
TensorFlow's and does not reach it). Such a line names no file and runs into a progress bar.

:func:`native_stderr` points descriptor 2 at a temporary file for the length of a block and gives
back what was written there. Nested and concurrent blocks (decoding in a thread pool) share one
redirection, undone when the last one ends, so a block's text is whatever any thread wrote while
it ran (Python's ``sys.stderr`` included: it writes to the same descriptor).
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import IO

_lock = threading.Lock()
_blocks = 0  # blocks running now
_saved: int | None = None  # descriptor 2 as it was before the first of them
_sink: IO[bytes] | None = None  # where descriptor 2 points while any block runs


class Captured:
    """What a :func:`native_stderr` block captured: ``text`` is set when the block ends."""

    text = ""


@contextlib.contextmanager
def native_stderr() -> Iterator[Captured]:
    """Capture what is written to file descriptor 2 during the block (nothing is captured when it cannot be redirected)."""
    global _blocks, _saved, _sink
    captured = Captured()
    with _lock:
        if _blocks == 0:
            _saved, _sink = _redirect()
        _blocks += 1
        start = os.lseek(_sink.fileno(), 0, os.SEEK_END) if _sink is not None else 0
    try:
        yield captured
    finally:
        with _lock:
            if _sink is not None:
                end = os.lseek(_sink.fileno(), 0, os.SEEK_END)
                captured.text = os.pread(_sink.fileno(), end - start, start).decode("utf-8", "replace")
            _blocks -= 1
            if _blocks == 0 and _saved is not None and _sink is not None:
                os.dup2(_saved, 2)
                os.close(_saved)
                _sink.close()
                _saved = _sink = None


def _redirect() -> tuple[int | None, IO[bytes] | None]:
    """(a copy of descriptor 2, the temporary file it now points at); (None, None) when there is no descriptor 2 or no temporary file."""
    try:
        saved = os.dup(2)
    except OSError:  # started with stderr closed: nothing reaches a terminal anyway
        return None, None
    try:
        sink = tempfile.TemporaryFile()
    except OSError:
        os.close(saved)
        return None, None
    if sys.stderr is not None:
        with contextlib.suppress(Exception):
            sys.stderr.flush()  # what Python has buffered still goes where it was meant to
    os.dup2(sink.fileno(), 2)
    return saved, sink
