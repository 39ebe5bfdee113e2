"""A clean terminal, part: the progress bar never runs into the lines a command prints.

The reproducer of issue 12 (``edgecxr predict folder/`` on a terminal, where the bar and the result
lines shared one line) is run on a pseudo-terminal, and what the terminal shows is rebuilt from
the bytes it received by a minimal terminal (carriage return, newline, erase to end of line).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import child_env, write_png
from edgecxr.progress import Progress

BAR = re.compile(r"predicting  \[[#-]{30}\]  \d/3")


def screen(output: bytes) -> list[str]:
    """The lines a terminal shows after receiving ``output``: text, ``\\r``, ``\\n`` and ESC[K (erase to end of line)."""
    lines, row, col = [""], 0, 0
    text = output.decode()
    i = 0
    while i < len(text):
        if text.startswith("\x1b[K", i):
            lines[row] = lines[row][:col]
            i += 3
            continue
        ch = text[i]
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
            if row == len(lines):
                lines.append("")
        else:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + ch + line[col + 1 :]
            col += 1
        i += 1
    return lines


def run_on_terminal(args: list[str], stdout_to_terminal: bool) -> tuple[bytes, bytes]:
    """(what the terminal received, what stdout received when it is a pipe) for ``python -m edgecxr ARGS`` with stderr on a pseudo-terminal."""
    leader, follower = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgecxr", *args], env=child_env(), stdin=subprocess.DEVNULL,
        stdout=follower if stdout_to_terminal else subprocess.PIPE, stderr=follower,
    )
    os.close(follower)
    received = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child has closed the terminal
            break
        if not chunk:
            break
        received += chunk
    piped = proc.stdout.read() if proc.stdout else b""
    assert proc.wait(timeout=300) == 1  # one input is unreadable
    os.close(leader)
    return received, piped


@pytest.fixture()
def folder(tmp_path) -> Path:
    for i in range(2):
        write_png(tmp_path / "films" / f"{i}.png", i)
    (tmp_path / "films" / "2.png").write_text("not an image")
    (tmp_path / "films" / "notes.txt").write_text("skipped")
    return tmp_path / "films"


def test_bar_and_results_on_one_terminal_never_share_a_line(tiny_models, folder):
    received, _ = run_on_terminal(["predict", str(folder), "-m", str(tiny_models["int8"])], stdout_to_terminal=True)
    assert BAR.search(received.decode())  # the bar was drawn
    shown = screen(received)
    assert shown[-1] == ""  # and wiped at the end
    assert [re.sub(r"  \([a-z0-9., ]+\)  [0-9.]+ ms$", "", line) for line in shown[:-1]] == [
        f"skipped: 1 (1 not an image file (no image suffix, no DICOM marker): {folder}/notes.txt)",
        f"{folder}/0.png: dark",
        f"{folder}/1.png: bright",
        f"error: {folder}/2.png: not a readable image (truncated, corrupt, or not an image format)",
    ]


def test_bar_on_the_terminal_and_results_in_a_pipe(tiny_models, folder):
    received, piped = run_on_terminal(["predict", str(folder), "--json", "-m", str(tiny_models["int8"])], stdout_to_terminal=False)
    assert BAR.search(received.decode())
    assert screen(received) == [
        f"skipped: 1 (1 not an image file (no image suffix, no DICOM marker): {folder}/notes.txt)",
        f"error: {folder}/2.png: not a readable image (truncated, corrupt, or not an image format)",
        "",
    ]
    assert b"predicting" not in piped and len(piped.decode().splitlines()) == 4  # the skipped record, two results, one error


def test_bar_line(monkeypatch):
    bar = Progress(12, "predicting", width=12)
    bar.update(5)
    assert bar.line() == "predicting  [#####-------]  5/12"
    assert not bar.visible  # stderr here is not a terminal: nothing is drawn
    monkeypatch.setenv("COLUMNS", "20")
    assert bar.line() == "predicting  [#####-"  # cut to one less than the width: no wrap, so the carriage return reaches its start
