"""``edgecxr benchmark``: latency, memory and (optionally) accuracy of models on this machine.

Reports the fields of LiteRT's ``benchmark_model`` so numbers compare with it: init, first
inference, warm-up mean, steady-state mean/std and percentiles over many runs, and peak RSS.
Each model is measured in a fresh child process so its peak RSS is its own.
"""
from __future__ import annotations

import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edgecxr.core.model import Model


def platform_info() -> dict[str, str]:
    from edgecxr.core.interpreter import interpreter_module, interpreter_version

    package, _ = interpreter_module()
    return {
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "cpus": str(os.cpu_count()),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "interpreter": package,
        "interpreter_version": interpreter_version(package),
    }


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def measure(
    model_path: str, runs: int = 50, warmup: int = 5, threads: int | None = None, data: str | None = None, xnnpack: bool = True
) -> dict[str, Any]:
    """Benchmark one model in this process; see the module docstring for the fields."""
    from edgecxr.core.card import gzip_size
    from edgecxr.core.model import Model

    if runs < 1 or warmup < 0:
        raise ValueError("runs must be >= 1 and warmup >= 0")
    start = time.perf_counter()
    model = Model(model_path, threads=threads, xnnpack=xnnpack)
    init_ms = (time.perf_counter() - start) * 1000.0
    x = _latency_input(model, data)

    def timed() -> float:
        t = time.perf_counter()
        model.predict_preprocessed(x)
        return (time.perf_counter() - t) * 1000.0

    first_ms = timed()
    warm = [timed() for _ in range(warmup)]
    times = [timed() for _ in range(runs)]
    flat = Path(model_path).read_bytes()
    result: dict[str, Any] = {
        "model": model.name,
        "path": str(model_path),
        "dtype": _dtype(model),
        "size_bytes": len(flat),
        "gzip_bytes": gzip_size(flat),
        "init_ms": round(init_ms, 3),
        "first_ms": round(first_ms, 3),
        "warmup_ms": round(statistics.fmean(warm), 3) if warm else None,
        "mean_ms": round(statistics.fmean(times), 3),
        "std_ms": round(statistics.pstdev(times), 3),
        "p50_ms": round(percentile(times, 50), 3),
        "p90_ms": round(percentile(times, 90), 3),
        "p99_ms": round(percentile(times, 99), 3),
        "runs": runs,
        "threads": threads,
        "xnnpack": xnnpack,
        "input": "real image" if data else "synthetic",
    }
    if data:
        result.update(_accuracy(model, data))
    result["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return result


def measure_in_child(model_path: str, **kwargs: Any) -> dict[str, Any]:
    """:func:`measure` in a fresh process, so peak RSS and start-up are the model's own.

    A child that dies (e.g. killed for lack of memory) raises ``BrokenProcessPool`` here.
    """
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure, model_path, **kwargs).result()


def _dtype(model: Model) -> str:
    """The number format of the card's variant (``dynamic-int8`` ...), else of the input tensor."""
    from edgecxr.core.families import VARIANTS

    variant = VARIANTS.get(model.card.variant or "")
    return variant.dtype if variant else np.dtype(model.input_details["dtype"]).name


def _latency_input(model: Model, data: str | None) -> np.ndarray:
    """The first image of ``data`` preprocessed, else a fixed synthetic X-ray-like gradient."""
    from edgecxr.core.preprocess import preprocess
    from edgecxr.evaluation.evaluate import labelled_files

    if data:
        for path, _ in labelled_files(data, model.labels):
            try:
                return preprocess(model.read(path).pixels, model.card.preprocessing)
            except Exception:  # an unreadable image: the next one is timed (_accuracy reports it)
                continue
    h, w = model.card.preprocessing.size
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    synthetic = 0.6 - 0.4 * np.exp(-((xx - 0.5) ** 2) / 0.05) * (yy > 0.1) + rng.normal(0, 0.03, (h, w))
    return np.clip(synthetic, 0, 1).astype(np.float32)[:, :, None]


def _accuracy(model: Model, data: str) -> dict[str, Any]:
    """Accuracy on ``data``, the end-to-end time per image (decode + preprocess + invoke) and the unreadable images (``errors``)."""
    from edgecxr.evaluation.evaluate import evaluate

    start = time.perf_counter()
    report = evaluate(model, data)
    total_ms = (time.perf_counter() - start) * 1000.0
    n = report["n"] + len(report["errors"])
    return {
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "sensitivity": {k: v["recall"] for k, v in report["per_class"].items()},
        "n_images": report["n"],
        "errors": report["errors"],
        "end_to_end_ms": round(total_ms / n, 3) if n else None,
    }


def _peak_rss_mb() -> float:
    """This process's peak resident set: VmHWM (reset at exec, unlike ru_maxrss), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
