"""One error boundary per input: whatever goes wrong with one file becomes that file's one line.

:class:`ImageError` is the error of one input (``"<file>: <reason>"``). :func:`per_input` runs
one piece of work per file and turns any exception it raises (a decoder's ``ValueError``, a
``MemoryError``, an ``OSError`` mid-read) into that file's :class:`ImageError`, so a batch never
stops and never prints a traceback. :func:`shown` is how a file name is printed: a name that is
not valid UTF-8 (kept by Python as surrogate escapes, see :func:`os.fsdecode`) or that holds a
newline or another control character is escaped (``bad\\xffname.png``, ``two\\nlines.png``), so a
result or error line stays one printable line.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Callable, TypeVar

T = TypeVar("T")
P = TypeVar("P", bound="str | os.PathLike[str]")


def shown(path: str | os.PathLike[str]) -> str:
    """``path`` as one printable line: undecodable bytes as ``\\xNN``, control characters as ``\\n``, ``\\t``, ``\\xNN``."""
    text = os.fsdecode(path)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


class ImageError(Exception):
    """A file that cannot be turned into an image; ``str()`` is ``"<file>: <reason>"`` (the file as :func:`shown`)."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{shown(self.path)}: {reason}")

    def __reduce__(self) -> tuple[type[ImageError], tuple[str, str]]:  # picklable, so it crosses process boundaries (edgecxr benchmark)
        return (ImageError, (self.path, self.reason))


def as_image_error(path: str | os.PathLike[str], exc: BaseException) -> ImageError:
    """``exc``, raised while handling the file ``path``, as that file's :class:`ImageError` with a one-line reason."""
    if isinstance(exc, ImageError):
        return exc
    if isinstance(exc, MemoryError):
        return ImageError(path, "not enough memory to read it")
    if isinstance(exc, OSError):
        return ImageError(path, f"cannot read file ({detail(exc)})")
    return ImageError(path, f"unexpected error ({type(exc).__name__}{': ' + detail(exc) if detail(exc) else ''})")


def detail(exc: BaseException) -> str:
    """What ``exc`` says, on one line (an OSError's own words, without the file name it may quote)."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return shown(" ".join(text.split()))


def per_input(paths: Iterable[P], work: Callable[[P], T]) -> Iterator[tuple[P, T | ImageError]]:
    """``(path, work(path))`` for each path, or ``(path, ImageError)`` when ``work`` raised anything (KeyboardInterrupt still stops)."""
    for path in paths:
        try:
            result: T | ImageError = work(path)
        except Exception as exc:  # the one boundary: one bad input never stops a batch
            result = as_image_error(path, exc)
        yield path, result
