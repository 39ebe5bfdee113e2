"""`--strategy multiworker` as the README's cluster recipe runs it: two workers, here on 127.0.0.1.

Each worker runs the same command from its own folder (standing in for its own machine) with a
relative ``--out``, so the test sees what each one writes: only the chief (worker 0) may write
its run folder; worker 1's checkpoints go to a temporary folder that is gone when it ends.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY_LABELS, write_png

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 600  # both workers together; a tiny model, two epochs of three steps
RUN_FILES = {"run.json", "cells.json", "best.keras", "last.keras", "state.json", "history.json", "metrics.json",
             "curves.png", "confusion_val.png", "confusion_test.png"}


def free_ports(n: int) -> list[int]:
    """``n`` ports free on 127.0.0.1 right now (the OS picks them)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def epoch_logs(log: str) -> list[tuple[str, ...]]:
    """(loss, accuracy, val_loss, val_accuracy) of each epoch line Keras printed: values reduced across the workers."""
    return re.findall(r"- loss: (\S+) - accuracy: (\S+) - val_loss: (\S+) - val_accuracy: (\S+)", log)


@pytest.mark.train
@pytest.mark.slow
def test_two_local_workers_train_together_and_only_the_chief_writes(tmp_path):
    data = tmp_path / "data"
    for split, n in (("train", 8), ("val", 3), ("test", 3)):
        for cls, label in enumerate(TINY_LABELS):
            for i in range(n):
                write_png(data / split / label / f"{i}.png", cls, seed=i)
    cluster = [f"127.0.0.1:{port}" for port in free_ports(2)]
    command = [sys.executable, "-m", "training", str(data), "--out", "run", "--strategy", "multiworker",
               "--input-size", "32", "--width", "4", "--epochs", "2", "--batch-size", "8", "--workers", "1"]
    scratch = tmp_path / "tmp"  # the workers' temporary folders
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    machines = [tmp_path / f"machine{i}" for i in range(2)]
    procs = []
    try:
        for index, machine in enumerate(machines):
            machine.mkdir()
            tf_config = {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}
            with (machine / "log.txt").open("w") as log:  # a file, not a pipe: a full pipe would stall the collectives
                procs.append(subprocess.Popen(command, cwd=machine, env={**env, "TF_CONFIG": json.dumps(tf_config)},
                                              stdout=log, stderr=subprocess.STDOUT, text=True))
        deadline = time.monotonic() + TIMEOUT_S
        codes = [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
    finally:
        for p in procs:  # on a timeout or any failure: no worker is left running
            if p.poll() is None:
                p.kill()
                p.wait()
    logs = [(m / "log.txt").read_text() for m in machines]
    assert codes == [0, 0], "\n\n".join(log[-3000:] for log in logs)

    chief_run, worker_run = machines[0] / "run", machines[1] / "run"
    assert {p.name for p in chief_run.iterdir()} == RUN_FILES  # no workertemp_* folder or other leftovers
    assert not worker_run.exists()
    assert list(scratch.iterdir()) == []  # worker 1's temporary folder is deleted
    assert "test: accuracy" in logs[0] and "worker 1: done; the chief wrote the run folder" in logs[1]
    assert "test: accuracy" not in logs[1]
    assert len(epoch_logs(logs[0])) == 2 and epoch_logs(logs[1]) == epoch_logs(logs[0])  # one model, trained together

    history = json.loads((chief_run / "history.json").read_text())
    assert len(history["loss"]) == len(history["val_loss"]) == 2
    assert json.loads((chief_run / "state.json").read_text()) == {"epochs_done": 2}
    info = json.loads((chief_run / "run.json").read_text())
    assert info["config"]["strategy"] == "multiworker"
    assert "--strategy multiworker" in info["command"] and str(tmp_path) not in json.dumps(info)
    assert json.loads((chief_run / "metrics.json").read_text())["test"]["n"] == 3 * len(TINY_LABELS)
