"""Benchmark of ``edgecxr serve``: worklist page time with many stored studies, upload-to-result time, server RSS.

    python -m benchmarks.serve --studies 10000 --data ../shared/data/cxr3-fullres --uploads 20 \\
        [--model resnet18-int8] --out benchmarks/results/serve

Fills a new store's ``results.jsonl`` with ``--studies`` made-up result lines (what ``listen`` /
``watch`` write; the page reads them, it does not care how they were made), starts
``python -m edgecxr serve`` on it as a child process, and measures over plain HTTP on localhost:
the time from start to the first worklist page (the model loaded, the SQLite index built
from the log), then ``--requests``
worklist requests each for page 1, a deep page, and the refer-only filter (p50, p95); then
``--uploads`` films POSTed one at a time to ``/api/predict`` (the time from sending to the JSON
answer: store, decode, model, heatmap, result picture, index); the server's RSS after start
(idle, before any upload), at the end, and its peak (``VmHWM``), and what importing Flask,
waitress and :mod:`edgecxr.clinic.web` adds to a fresh Python. Writes ``results.json`` (with
provenance and the machine) and ``report.md``; ``--from-results`` rewrites only the report.
"""
from __future__ import annotations

import argparse
import base64
import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.header import model_run_header
from edgecxr.clinic.journal import Journal
from edgecxr.clinic.record import ResultRecord
from edgecxr.clinic.results import ModelIdentity
from edgecxr.core import registry
from edgecxr.core.card import read_card
from edgecxr.core.inputs import find_images
from edgecxr.core.model import Prediction
from edgecxr.core.site import NORMAL
from edgecxr.evaluation.provenance import repo_relative

PASSWORD = "benchmark password"
# localhost, never through a proxy; the session cookie of :func:`log_in` kept for the page requests
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fill(store: Path, n: int, seed: int = 0) -> None:
    """``n`` made-up result lines in ``store/results.jsonl``, a third of them refer."""
    rng = np.random.default_rng(seed)
    card = read_card(registry.resolve(registry.DEFAULT_MODEL))
    labels = [NORMAL, *(l for l in card.labels if l != NORMAL)]
    results = Journal(store / "results.jsonl")
    for i in range(n):
        p = rng.dirichlet([2.0] + [1.0] * (len(labels) - 1))  # the Normal label first
        probs = {label: round(float(v), 6) for label, v in zip(labels, p)}
        prediction = Prediction(max(probs, key=lambda k: probs[k]), probs, 100.0, card.name, refer=bool(p[0] < 0.5),
                                operating_point=[{"for": "abnormal", "threshold": 0.5, "target_sensitivity": 0.9}])
        record = ResultRecord.of(f"{i:064x}", prediction, ModelIdentity(card.name, card.version, card.sha256 or ""), [])
        results.once("result", record.key, **record.line(None))


def log_in(url: str, user: str = "admin", password: str = PASSWORD) -> None:
    """Log in through the page (its CSRF token, then the form), so that the page requests carry the session cookie."""
    with DIRECT.open(url + "/login", timeout=120) as r:
        token = re.search(r'name="csrf" value="([^"]+)"', r.read().decode())
    assert token, "no CSRF token on the login page"
    form = urllib.parse.urlencode({"csrf": token.group(1), "user": user, "password": password}).encode()
    with DIRECT.open(urllib.request.Request(url + "/login", data=form, method="POST"), timeout=120) as r:
        assert "Log out" in r.read().decode(), "the login was refused"


def basic_header(user: str = "admin", password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def get_ms(url: str) -> float:
    start = time.perf_counter()
    request = urllib.request.Request(url, headers=basic_header() if "/api/" in url else {})
    with DIRECT.open(request, timeout=120) as r:
        r.read()
        assert r.status == 200, f"{url}: HTTP {r.status}"
    return (time.perf_counter() - start) * 1000


def upload_ms(url: str, film: Path) -> tuple[float, dict[str, Any]]:
    boundary = "edgecxr-benchmark-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{film.name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + film.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url + "/api/predict", data=body, method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}", **basic_header()})
    start = time.perf_counter()
    try:
        with DIRECT.open(request, timeout=300) as r:
            answer = json.loads(r.read())
    except urllib.error.HTTPError as exc:  # a refused or failed film: its JSON error
        answer = json.loads(exc.read())
    return (time.perf_counter() - start) * 1000, answer


def rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc status")


def framework_rss_mb() -> dict[str, float]:
    """What importing Flask and waitress, then the page's own modules (numpy, OpenCV, pydicom...), adds to a fresh Python (MB)."""
    code = ("import re\n"
            "rss = lambda: int(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
            "before = rss()\nimport flask, waitress\nmiddle = rss()\nimport edgecxr.clinic.web.app\nprint((middle - before) / 1024, (rss() - middle) / 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return {"flask_and_waitress": round(float(out[0]), 1), "then_edgecxr_web": round(float(out[1]), 1)}


def stats(ms: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.percentile(ms, 50)), 2), "p95": round(float(np.percentile(ms, 95)), 2), "n": len(ms)}


def measure(studies: int, requests: int, films: list[Path], model: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        store.mkdir()
        fill(store, studies)
        (Path(tmp) / "pw").write_text(PASSWORD + "\n")
        (Path(tmp) / "pw").chmod(0o600)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        launched = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgecxr", "serve", "--store", str(store), "--port", str(port), "--model", model, "--password-file", str(Path(tmp) / "pw")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            end = time.monotonic() + 300
            while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
                if proc.poll() is not None or time.monotonic() > end:
                    raise SystemExit(f"error: edgecxr serve did not start: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
                time.sleep(0.1)
            idle = rss_mb(proc.pid, "VmRSS")
            log_in(url)
            get_ms(url + "/")
            started = (time.perf_counter() - launched) * 1000
            deep = (studies + 49) // 50 // 2 or 1
            pages = {name: stats([get_ms(url + path) for _ in range(requests)])
                     for name, path in (("page 1", "/"), (f"page {deep}", f"/?page={deep}"), ("refer only", "/?refer=1"), ("GET /api/studies", "/api/studies"))}
            timed, labels = [], []
            for film in films:
                ms, answer = upload_ms(url, film)
                timed.append(ms)
                labels.append(answer.get("label", "failed: " + str(answer.get("error"))))
            last, peak = rss_mb(proc.pid, "VmRSS"), rss_mb(proc.pid, "VmHWM")
            load = os.getloadavg()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(120)
        finally:
            if proc.poll() is None:
                proc.kill()
    return {
        "studies": studies,
        "start_to_first_page_ms": round(started, 1),
        "framework_import_rss_mb": framework_rss_mb(),
        "worklist_ms": pages,
        "upload_to_result_ms": {**stats(timed), "max": round(max(timed), 1)},
        "uploaded_films": len(films),
        "upload_labels": {label: labels.count(label) for label in sorted(set(labels))},
        "server_rss_mb": {"idle_after_start": round(idle, 1), "at_end": round(last, 1), "peak": round(peak, 1)},
        "load_average_at_end": [round(x, 2) for x in load],
        "exit_code_on_sigterm": code,
    }


def report(results: dict[str, Any]) -> str:
    m, p, prov = results["measured"], results["platform"], results["provenance"]
    git = prov["git"] or {}
    rss = m["server_rss_mb"]
    up = m["upload_to_result_ms"]
    lines = [
        "# `edgecxr serve`: worklist time, upload-to-result time, memory",
        "",
        f"Measured {prov['utc_time']} on {p['machine']} {p['cpu']} ({p['cpus']} CPUs), {p['system']}, Python {p['python']}, "
        f"{p['interpreter']} {p['interpreter_version']}; git {git.get('commit', 'unknown')[:12]}{' (dirty)' if git.get('dirty') else ''}. "
        f"Model `{results['model']['name']}` {results['model']['version']}. Command: `{prov['command']}`.",
        "",
        f"A store with {m['studies']:,} made-up result lines in results.jsonl; requests over HTTP on localhost, one at a time, "
        "from the benchmark process (waitress, 4 threads); the pages as a logged-in admin (a session cookie, looked up in accounts.sqlite "
        "on every request), the API with HTTP Basic (a scrypt check on every request).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| start to first worklist page (model loaded, SQLite index built from the log) | {m['start_to_first_page_ms'] / 1000:.1f} s |",
        *[f"| worklist {name}, p50 / p95 ({s['n']} requests) | {s['p50']:.1f} / {s['p95']:.1f} ms |" for name, s in m["worklist_ms"].items()],
        f"| upload to result (`POST /api/predict`, {up['n']} films from `{results['data']}`), p50 / p95 / max | "
        f"{up['p50']:.0f} / {up['p95']:.0f} / {up['max']:.0f} ms |",
        f"| server RSS: idle after start / at the end / peak (VmHWM) | {rss['idle_after_start']:.0f} / {rss['at_end']:.0f} / {rss['peak']:.0f} MB |",
        f"| RSS that importing Flask and waitress adds to a fresh Python / then edgecxr.clinic.web (numpy, OpenCV, pydicom, highdicom) | "
        f"{m['framework_import_rss_mb']['flask_and_waitress']:.0f} / {m['framework_import_rss_mb']['then_edgecxr_web']:.0f} MB |",
        f"| exit status on SIGTERM | {m['exit_code_on_sigterm']} |",
        "",
        f"Upload answers: {', '.join(f'{k} {v}' for k, v in m['upload_labels'].items())}. The RSS includes the model and its interpreter; "
        "the machine was shared with other work (load average at the end: " + ", ".join(map(str, m["load_average_at_end"])) + ").",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=10000)
    parser.add_argument("--requests", type=int, default=100, help="timed requests of each worklist page")
    parser.add_argument("--data", type=Path, help="a folder of class folders of films to upload (e.g. ../shared/data/cxr3-fullres)")
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--model", default=registry.DEFAULT_MODEL)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--from-results", action="store_true", help="only rewrite OUT/report.md from OUT/results.json")
    args = parser.parse_args(argv)
    if args.from_results:
        (args.out / "report.md").write_text(report(json.loads((args.out / "results.json").read_text())))
        return 0
    if args.data is None:
        parser.error("--data is required to measure")
    folders = [find_images(d) for d in sorted(args.data.iterdir()) if d.is_dir()]
    films = [f for group in zip(*folders) for f in group][: args.uploads]
    if len(films) < args.uploads:
        raise SystemExit(f"error: {args.data}: fewer than {args.uploads} films in its class folders")
    header, model_path = model_run_header("python -m benchmarks.serve", argv, args.model)
    results: dict[str, Any] = {**header, "data": repo_relative(args.data), "measured": measure(args.studies, args.requests, films, model_path)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "report.md").write_text(report(results))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
