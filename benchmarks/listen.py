"""Benchmark of ``edgecxr listen``: films per second received and classified, C-STORE to result-sent time, peak RSS.

    python -m benchmarks.listen --data ../shared/data/cxr3/test --films 200 --associations 4 \\
        [--model resnet18-int8] --out benchmarks/results/listen

Starts ``python -m edgecxr listen`` as a child process with ``--forward`` to a Storage SCP in
a process of its own (pynetdicom, standing in for the PACS; it only acknowledges), wraps the first
``--films`` PNGs under DATA (class folders taken in turn) as DX instances of made-up patients, and
sends them over ``--associations`` concurrent associations. Measured: received per second (first
C-STORE sent to last acknowledged), classified per second (first ``received`` to last
``classified`` audit line), the time from each film's C-STORE to its ``sent`` audit line (p50,
p95, max; queueing included), the same for ``--single`` films sent one at a time once the burst is
done (no queue), and the listener's peak RSS (``VmHWM``) before it is stopped with SIGTERM. Before the
listener starts, the same films (as DICOM files in a folder) go through ``edgecxr predict --json``,
plain and with ``--heatmap`` (the picture the Secondary Capture holds): films per second from its
first output line to its last, so start-up is left out as it is from the listener's. Writes
``results.json`` (with provenance and the machine) and ``report.md``, which includes a hand-written
``notes.md`` from the output folder; ``--from-results`` rewrites only the report.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

from benchmarks.header import model_run_header
from edgecxr.clinic.journal import read_lines
from edgecxr.clinic.writers import sop_classes
from edgecxr.core import registry
from edgecxr.evaluation.provenance import repo_relative


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def films(data: Path, n: int) -> list[Path]:
    """The first ``n`` PNGs of DATA's class folders, taken in turn (one of each class, then the next of each)."""
    folders = [sorted(d.glob("*.png")) for d in sorted(data.iterdir()) if d.is_dir()]
    picked = [f for group in zip(*folders) for f in group][:n]
    if len(picked) < n:
        raise SystemExit(f"error: {data}: fewer than {n} films in its class folders")
    return picked


def as_dicom(path: Path, i: int) -> pydicom.Dataset:
    """A DX instance of the film at ``path`` for the made-up patient number ``i``."""
    pixels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if pixels is None:
        raise SystemExit(f"error: {path}: not a readable image")
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = f"Bench^Patient{i:04d}", f"B{i:06d}", "", ""
    ds.AccessionNumber, ds.StudyID, ds.StudyDate, ds.StudyTime, ds.ReferringPhysicianName = "", "1", "20260101", "120000", ""
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.PatientOrientation = "DX", 1, 1, ["L", "F"]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation, ds.PixelData = 7, 0, pixels.tobytes()
    return ds


def pacs(port: int, stop: Any) -> None:
    """The stand-in PACS: a Storage SCP on ``port`` taking the SR and SC edgecxr sends, until ``stop`` is set (run in a
    process of its own, as a PACS is: receiving 2 MB pictures must not hold the senders' interpreter)."""
    from pynetdicom import AE, _config, evt

    _config.LOG_HANDLER_LEVEL = "none"
    ae = AE(ae_title="BENCHPACS")
    for cls in sop_classes():
        ae.add_supported_context(cls)
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda event: 0x0000)])
    assert server is not None  # block=False returns the server
    stop.wait()
    server.shutdown()


def send(port: int, datasets: list[pydicom.Dataset], started: dict[str, float], acked: dict[str, float]) -> None:
    """C-STORE ``datasets`` over one association, noting when each was sent and acknowledged."""
    from pynetdicom import AE

    ae = AE(ae_title="BENCHSCU")
    ae.add_requested_context(DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="EDGECXR")
    assert assoc.is_established, "association with edgecxr listen refused"
    for ds in datasets:
        started[str(ds.SOPInstanceUID)] = time.time()
        status = assoc.send_c_store(ds)
        assert status.Status == 0x0000, f"C-STORE answered 0x{status.Status:04X}"
        acked[str(ds.SOPInstanceUID)] = time.time()
    assoc.release()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def wait(condition: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise SystemExit(f"error: gave up waiting for {what}")
        time.sleep(0.05)


def predict_rate(folder: Path, n: int, model: str, heatmap: Path | None = None) -> float:
    """Films per second of ``edgecxr predict --json FOLDER`` (``--heatmap``: also the pictures), from its first output line
    to its last (start-up left out)."""
    command = [sys.executable, "-m", "edgecxr", "predict", "--json", "--model", model, str(folder), *(["--heatmap", str(heatmap)] if heatmap else [])]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    times = [time.perf_counter() for _ in proc.stdout]  # one line per film, as it is printed
    code, err = proc.wait(), proc.stderr.read() if proc.stderr else ""
    if code != 0 or len(times) != n:
        raise SystemExit(f"error: edgecxr predict exited {code} with {len(times)} of {n} lines: {err[-2000:]}")
    return round((n - 1) / (times[-1] - times[0]), 2)


def measure(data: Path, n: int, associations: int, single: int, model: str) -> dict[str, Any]:
    import hashlib

    everything = [as_dicom(path, i) for i, path in enumerate(films(data, n + single))]
    datasets, one_by_one = everything[:n], everything[n:]
    listen_port, pacs_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "films"
        folder.mkdir()
        for i, ds in enumerate(datasets):
            ds.save_as(folder / f"{i:04d}.dcm", enforce_file_format=True)
        predict = {"plain": predict_rate(folder, n, model), "heatmap": predict_rate(folder, n, model, Path(tmp) / "pictures")}
        spawn = multiprocessing.get_context("spawn")
        stop_pacs = spawn.Event()
        server = spawn.Process(target=pacs, args=(pacs_port, stop_pacs), daemon=True)
        server.start()
        wait(lambda: socket.socket().connect_ex(("127.0.0.1", pacs_port)) == 0, 60, "the stand-in PACS to start")
        store = Path(tmp) / "store"
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgecxr", "listen", "--port", str(listen_port), "--store", str(store), "--model", model,
             "--forward", f"BENCHPACS@127.0.0.1:{pacs_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            wait(lambda: socket.socket().connect_ex(("127.0.0.1", listen_port)) == 0, 120, "edgecxr listen to start")
            load_before = os.getloadavg()
            started: dict[str, float] = {}
            acked: dict[str, float] = {}
            threads = [threading.Thread(target=send, args=(listen_port, datasets[a::associations], started, acked)) for a in range(associations)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            audit_path = store / "audit.jsonl"
            wait(lambda: sum(r["event"] == "sent" for r in read_lines(audit_path)) >= n, 1800, f"{n} results sent")
            salt = (store / "salt").read_bytes().strip()
            alone: list[float] = []
            for ds in one_by_one:  # one film at a time on an idle listener: no queue
                key = hashlib.sha256(salt + str(ds.SOPInstanceUID).encode()).hexdigest()
                sent: dict[str, float] = {}
                send(listen_port, [ds], sent, {})
                wait(lambda key=key: any(r["event"] == "sent" and r["key"] == key for r in read_lines(audit_path)), 120, "a single film's results sent")
                line = next(r for r in read_lines(audit_path) if r["event"] == "sent" and r["key"] == key)
                alone.append(datetime.fromisoformat(line["time"]).timestamp() - sent[str(ds.SOPInstanceUID)])
            rss = peak_rss_mb(proc.pid)
            load_after = os.getloadavg()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(120)
        finally:
            if proc.poll() is None:
                proc.kill()
            stop_pacs.set()
            server.join(30)
        audit = read_lines(audit_path)
    if code != 0:
        raise SystemExit(f"error: edgecxr listen exited {code}: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
    at = {(r["event"], r["key"]): datetime.fromisoformat(r["time"]).timestamp() for r in audit}
    keys = {uid: hashlib.sha256(salt + uid.encode()).hexdigest() for uid in started}  # the burst's films
    to_sent = np.array([at[("sent", keys[uid])] - started[uid] for uid in started])
    to_classified = np.array([at[("classified", keys[uid])] - started[uid] for uid in started])
    received = [at[("received", k)] for k in keys.values()]
    classified = [at[("classified", k)] for k in keys.values()]
    classified_per_s = round(n / (max(classified) - min(received)), 2)
    return {
        "films": n,
        "associations": associations,
        "workers": os.cpu_count(),  # the listener's default: one per core
        "film_pixels": {"columns": [min(d.Columns for d in datasets), max(d.Columns for d in datasets)],
                        "rows": [min(d.Rows for d in datasets), max(d.Rows for d in datasets)]},
        "received_per_s": round(n / (max(acked.values()) - min(started.values())), 2),
        "classified_per_s": classified_per_s,
        "predict_per_s": predict,
        "classified_to_predict": {k: round(classified_per_s / v, 2) for k, v in predict.items()},
        "store_to_classified_s": {"p50": round(float(np.percentile(to_classified, 50)), 3), "p95": round(float(np.percentile(to_classified, 95)), 3)},
        "store_to_sent_s": {
            "p50": round(float(np.percentile(to_sent, 50)), 3), "p95": round(float(np.percentile(to_sent, 95)), 3), "max": round(float(to_sent.max()), 3),
        },
        "one_at_a_time": {"films": single, "store_to_sent_s": {"p50": round(float(np.percentile(alone, 50)), 3), "max": round(max(alone), 3)}},
        "listener_peak_rss_mb": round(rss, 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "exit_code_on_sigterm": code,
        "audit_lines": {e: sum(r["event"] == e for r in audit) for e in ("received", "classified", "sent", "failed", "rejected")},
        "failure_reasons": sorted({f"{r['stage']}: {r['reason']}" for r in audit if r["event"] == "failed"}),
    }


def report(results: dict[str, Any], out: Path) -> str:
    m, p, prov = results["measured"], results["platform"], results["provenance"]
    git = prov["git"] or {}
    lines = [
        "# `edgecxr listen` throughput",
        "",
        f"Measured {prov['utc_time']} on {p['machine']} {p['cpu']} ({p['cpus']} CPUs), {p['system']}, Python {p['python']}, "
        f"{p['interpreter']} {p['interpreter_version']}; git {git.get('commit', 'unknown')[:12]}{' (dirty)' if git.get('dirty') else ''}. "
        f"Model `{results['model']['name']}` {results['model']['version']} (sha256 `{results['model']['sha256']}`). Command: `{prov['command']}`.",
        "",
        f"{m['films']} films ({'-'.join(map(str, m['film_pixels']['columns']))} x {'-'.join(map(str, m['film_pixels']['rows']))} px, 8-bit DX) "
        f"over {m['associations']} concurrent associations to a listener "
        "that forwards each film's SR and Secondary Capture to a stand-in PACS (a pynetdicom Storage SCP in a process of its own).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| received (C-STORE acknowledged, film in the store) | {m['received_per_s']:.1f} films/s |",
        f"| classified (first received to last classified: decode, model, lung check, heatmap, SR + SC written), {m['workers']} workers | {m['classified_per_s']:.1f} films/s |",
        f"| `edgecxr predict --json` on the same films (DICOM files in a folder; first to last line) | {m['predict_per_s']['plain']:.1f} films/s |",
        f"| `edgecxr predict --json --heatmap DIR` on the same films (the SC's picture too) | {m['predict_per_s']['heatmap']:.1f} films/s |",
        f"| classified / predict, plain / --heatmap | {m['classified_to_predict']['plain']:.2f} / {m['classified_to_predict']['heatmap']:.2f} |",
        f"| C-STORE sent to classified, p50 / p95 | {m['store_to_classified_s']['p50']:.2f} / {m['store_to_classified_s']['p95']:.2f} s |",
        f"| C-STORE sent to results sent, p50 / p95 / max | {m['store_to_sent_s']['p50']:.2f} / {m['store_to_sent_s']['p95']:.2f} / {m['store_to_sent_s']['max']:.2f} s |",
        f"| one film at a time ({m['one_at_a_time']['films']} films, each sent once the previous one's results were): C-STORE sent to results sent, "
        f"p50 / max | {m['one_at_a_time']['store_to_sent_s']['p50']:.2f} / {m['one_at_a_time']['store_to_sent_s']['max']:.2f} s |",
        f"| listener peak RSS (VmHWM) | {m['listener_peak_rss_mb']:.0f} MB |",
        f"| load average (1, 5, 15 min) before / after | {', '.join(map(str, m['load_average_before']))} / {', '.join(map(str, m['load_average_after']))} |",
        f"| exit status on SIGTERM | {m['exit_code_on_sigterm']} |",
        "",
        "The films arrive faster than the workers classify them, so the times to classified and to sent grow along the batch: "
        "they are queueing times of a burst, not the time of one film on an idle listener. "
        f"Audit lines written: {', '.join(f'{k} {v}' for k, v in m['audit_lines'].items())}."
        + (f" Failures (each retried): {'; '.join(m['failure_reasons'])}." if m["failure_reasons"] else ""),
    ]
    notes = out / "notes.md"
    if notes.exists():
        lines += ["", "## Why", "", notes.read_text().strip()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="a folder of class folders of PNG films (e.g. ../shared/data/cxr3/test)")
    parser.add_argument("--films", type=int, default=200)
    parser.add_argument("--associations", type=int, default=4)
    parser.add_argument("--single", type=int, default=10, help="films then sent one at a time, each after the previous one's results were sent")
    parser.add_argument("--model", default=registry.DEFAULT_MODEL)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--from-results", action="store_true", help="only rewrite OUT/report.md from OUT/results.json (and OUT/notes.md)")
    args = parser.parse_args(argv)
    if args.from_results:
        (args.out / "report.md").write_text(report(json.loads((args.out / "results.json").read_text()), args.out))
        return 0
    if args.data is None:
        parser.error("--data is required to measure")
    header, model_path = model_run_header("python -m benchmarks.listen", argv, args.model)
    results: dict[str, Any] = {**header, "data": repo_relative(args.data), "out": repo_relative(args.out)}
    results["measured"] = measure(args.data, args.films, args.associations, args.single, model_path)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    text = report(results, args.out)
    (args.out / "report.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
