"""The command line's progress bar, which never runs into the lines it prints.

The bar is one line on stderr, drawn only when stderr is a terminal and there is more than one
item. Every line the command writes while a bar is up, results on stdout and errors on stderr
alike, goes through :func:`echo`: the bar is wiped (carriage return, erase to the end of the
line), the line is written and flushed, and the bar is drawn again below it. When the work ends
the bar is wiped, so the terminal keeps only the lines written, whether stdout is the same
terminal or a file or a pipe (the bar then still shows progress on the terminal).
"""
from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

import click

T = TypeVar("T")
WIPE = "\r\x1b[K"
_shown: Progress | None = None  # the bar on the terminal now, if any


class Progress:
    """A bar counting ``total`` items under ``label``; a context manager, advanced by :meth:`update` or :meth:`track`."""

    def __init__(self, total: int, label: str, width: int = 30) -> None:
        self.total, self.label, self.width, self.done = total, label, width, 0
        self.visible = total > 1 and sys.stderr is not None and sys.stderr.isatty()

    def __enter__(self) -> Progress:
        global _shown
        if self.visible:
            _shown = self
            self._draw()
        return self

    def __exit__(self, *exc: object) -> None:
        global _shown
        if _shown is self:
            _write(WIPE)
            _shown = None

    def update(self, n: int = 1) -> None:
        """Count ``n`` more items done."""
        self.done += n
        if _shown is self:
            self._draw()

    def track(self, items: Iterable[T]) -> Iterator[T]:
        """``items``, each counted once the caller has finished with it (asks for the next one)."""
        for item in items:
            yield item
            self.update()

    def line(self) -> str:
        """The bar as drawn: ``predicting  [#####-------]  5/12``, cut to the terminal's width."""
        filled = self.width * min(self.done, self.total) // max(self.total, 1)
        text = f"{self.label}  [{'#' * filled}{'-' * (self.width - filled)}]  {self.done}/{self.total}"
        return text[: max(shutil.get_terminal_size().columns - 1, 1)]

    def _draw(self) -> None:
        _write(WIPE + self.line())


def echo(text: str, err: bool = False) -> None:
    """Write one line to stdout (stderr with ``err``), flushed, with the bar on the terminal (if any) wiped first and drawn again after."""
    bar = _shown
    if bar is not None:
        _write(WIPE)
    try:
        click.echo(text, err=err)  # click flushes the stream
    finally:
        if bar is not None:
            bar._draw()


def _write(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()
