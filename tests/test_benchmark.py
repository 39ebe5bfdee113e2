"""``edgecxr benchmark`` and :func:`edgecxr.evaluation.benchmark.measure` on the tiny toy models (few runs: fast)."""
from __future__ import annotations

import dataclasses
import gzip
import json
import shutil

import numpy as np
import pytest

from conftest import TINY_LABELS, write_png
from edgecxr.cli import main
from edgecxr.core.card import read_card, write_card
from edgecxr.evaluation import benchmark
from test_evaluate import make_dataset

RESULT_KEYS = {
    "model", "path", "dtype", "size_bytes", "gzip_bytes", "init_ms", "first_ms", "warmup_ms", "mean_ms", "std_ms",
    "p50_ms", "p90_ms", "p99_ms", "runs", "threads", "xnnpack", "input", "peak_rss_mb",
}  # fmt: skip
DATA_KEYS = {"accuracy", "macro_f1", "sensitivity", "n_images", "end_to_end_ms", "errors"}
PLATFORM_KEYS = {"machine", "cpu", "cpus", "system", "python", "interpreter", "interpreter_version"}
FAST = ["--runs", "5", "--warmup", "1"]



@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("bench_data") / "data")


def run_json(runner, *args: str) -> dict:
    result = runner.invoke(main, ["benchmark", *args, "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stderr == ""
    assert len(result.stdout.splitlines()) == 1, result.stdout
    return json.loads(result.stdout)


def check_result(r: dict, path, dtype: str, runs: int, keys: set = RESULT_KEYS) -> None:
    assert set(r) == keys, set(r) ^ keys
    assert r["model"] == f"tiny-{path.stem.split('-', 1)[1]}"
    assert r["path"] == str(path)
    assert r["dtype"] == dtype
    data = path.read_bytes()
    assert r["size_bytes"] == len(data) == path.stat().st_size
    assert 0 < r["gzip_bytes"] == len(gzip.compress(data, 9))
    for key in ("init_ms", "first_ms", "warmup_ms", "mean_ms", "p50_ms", "p90_ms", "p99_ms"):
        assert isinstance(r[key], float) and r[key] > 0, (key, r[key])
    assert r["std_ms"] >= 0
    assert r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
    assert r["mean_ms"] <= r["p99_ms"] + 1e-3  # with 5 runs the mean cannot pass the 99th percentile
    assert r["runs"] == runs
    assert isinstance(r["peak_rss_mb"], float) and 10 < r["peak_rss_mb"] < 2000


# --- edgecxr benchmark --json ------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_models(runner, tiny_models) -> dict:
    return run_json(runner, "-m", str(tiny_models["int8"]), "-m", str(tiny_models["float32"]), *FAST)


def test_benchmark_json_shape(two_models):
    assert set(two_models) == {"platform", "results"}
    assert isinstance(two_models["results"], list) and len(two_models["results"]) == 2


def test_benchmark_json_platform(two_models):
    info = two_models["platform"]
    assert set(info) >= PLATFORM_KEYS
    assert all(isinstance(info[k], str) and info[k] for k in PLATFORM_KEYS)
    assert info["interpreter"] in {"ai_edge_litert", "tflite_runtime", "tensorflow"}
    assert info["interpreter_version"] != "unknown"
    assert info["python"].count(".") == 2
    assert int(info["cpus"]) >= 1


def test_benchmark_json_results(two_models, tiny_models):
    int8, float32 = two_models["results"]  # in the order given
    check_result(int8, tiny_models["int8"], "int8", runs=5)
    check_result(float32, tiny_models["float32"], "float32", runs=5)
    for r in (int8, float32):
        assert r["threads"] is None  # the interpreter's choice
        assert r["xnnpack"] is True
        assert r["input"] == "synthetic"


def test_benchmark_with_data_matches_evaluate(runner, tiny_models, dataset):
    model = str(tiny_models["int8"])
    report = run_json(runner, "-m", model, "--data", str(dataset), *FAST)
    (r,) = report["results"]
    check_result(r, tiny_models["int8"], "int8", runs=5, keys=RESULT_KEYS | DATA_KEYS)
    assert r["input"] == "real image"
    assert r["end_to_end_ms"] > 0

    evaluated = runner.invoke(main, ["evaluate", str(dataset), "-m", model, "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    expected = json.loads(evaluated.stdout)
    assert r["accuracy"] == expected["accuracy"] == 0.8571  # the mislabelled image counts against it
    assert r["macro_f1"] == expected["macro_f1"] == 0.8667
    assert r["n_images"] == expected["n"] == 7
    assert r["sensitivity"] == {label: expected["per_class"][label]["recall"] for label in TINY_LABELS}
    assert r["sensitivity"] == {"dark": 0.6667, "bright": 1.0, "striped": 1.0}


def test_benchmark_threads_one(runner, tiny_models):
    (r,) = run_json(runner, "-m", str(tiny_models["float32"]), "--threads", "1", *FAST)["results"]
    check_result(r, tiny_models["float32"], "float32", runs=5)
    assert r["threads"] == 1
    assert r["xnnpack"] is True


def test_benchmark_no_xnnpack(runner, tiny_models):
    (r,) = run_json(runner, "-m", str(tiny_models["int8"]), "--no-xnnpack", "--runs", "3", "--warmup", "0")["results"]
    assert set(r) == RESULT_KEYS
    assert r["xnnpack"] is False
    assert r["runs"] == 3
    assert r["warmup_ms"] is None  # no warm-up runs
    assert r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]


def test_benchmark_human(runner, tiny_models, dataset):
    result = runner.invoke(main, ["benchmark", "-m", str(tiny_models["int8"]), "--data", str(dataset), *FAST])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert "cpus), Python " in lines[0]
    assert lines[1].split() == ["model", "dtype", "MB", "init", "first", "p50", "p90", "p99", "RSS", "MB", "acc", "mF1", "e2e", "ms"]
    row = lines[2].split()
    assert row[:2] == ["tiny-int8", "int8"]
    assert row[-3:-1] == ["0.857", "0.867"]


# --- usage errors: exit 2, one line, no traceback ----------------------------------------------


@pytest.mark.parametrize("runs", ["0", "-3", "many"])
def test_benchmark_bad_runs(runner, tiny_models, runs):
    result = runner.invoke(main, ["benchmark", "-m", str(tiny_models["int8"]), "--runs", runs, "--json"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Invalid value for '--runs'" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("option, value", [("--warmup", "-1"), ("--threads", "0")])
def test_benchmark_bad_warmup_or_threads(runner, tiny_models, option, value):
    result = runner.invoke(main, ["benchmark", "-m", str(tiny_models["int8"]), option, value])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"Invalid value for '{option}'" in result.stderr


def test_benchmark_unknown_model(runner, tiny_models):
    result = runner.invoke(main, ["benchmark", "-m", str(tiny_models["int8"]), "-m", "no-such-model", "--json"])
    assert result.exit_code == 2
    assert result.stdout == ""
    err = result.stderr.splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: no-such-model: not a bundled model")
    assert "Traceback" not in result.output


def test_benchmark_missing_model_file(runner, tmp_path):
    # resolves as a path; the child process fails to load it and the error comes back as one line
    missing = tmp_path / "absent.tflite"
    result = runner.invoke(main, ["benchmark", "-m", str(missing), *FAST, "--json"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"error: {missing}: no such model file"]


def test_benchmark_data_missing(runner, tiny_models, tmp_path):
    result = runner.invoke(main, ["benchmark", "-m", str(tiny_models["int8"]), "--data", str(tmp_path / "nope"), *FAST])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Invalid value for '--data'" in result.stderr
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.output


def test_benchmark_data_unknown_class_folder(runner, tiny_models, tmp_path):
    root = tmp_path / "data"
    write_png(root / "dark" / "d.png", 0)
    write_png(root / "cats" / "c.png", 0)
    result = runner.invoke(main, ["benchmark", "-m", str(tiny_models["int8"]), "--data", str(root), *FAST, "--json"])
    assert result.exit_code == 2
    assert result.stdout == ""
    err = result.stderr.splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: ") and "cats" in err[0]


def test_benchmark_help_names_its_options_and_what_it_names_runs(runner, tiny_models):
    result = runner.invoke(main, ["benchmark", "--help"])
    assert result.exit_code == 0
    for option in ("--model", "-m", "--data", "--runs", "--warmup", "--threads", "--no-xnnpack", "--json"):
        assert option in result.stdout
    r = run_json(runner, "-m", str(tiny_models["int8"]), "--runs", "3", "--warmup", "1", "--threads", "1", "--no-xnnpack")
    check_result(r["results"][0], tiny_models["int8"], "int8", runs=3)


# --- edgecxr.evaluation.benchmark in-process --------------------------------------------------------------


def test_measure_in_process_same_fields_as_cli(tiny_models, two_models):
    r = benchmark.measure(str(tiny_models["int8"]), runs=5, warmup=1)
    assert set(r) == set(two_models["results"][0]) == RESULT_KEYS
    check_result(r, tiny_models["int8"], "int8", runs=5)
    assert r["threads"] is None and r["xnnpack"] is True
    json.dumps(r)  # plain JSON types only


def test_measure_in_process_with_data(tiny_models, dataset):
    r = benchmark.measure(str(tiny_models["float32"]), runs=2, warmup=0, threads=1, data=str(dataset), xnnpack=False)
    assert set(r) == RESULT_KEYS | DATA_KEYS
    assert r["dtype"] == "float32"
    assert r["threads"] == 1 and r["xnnpack"] is False and r["runs"] == 2
    assert r["warmup_ms"] is None
    assert (r["accuracy"], r["macro_f1"], r["n_images"]) == (0.8571, 0.8667, 7)


@pytest.mark.parametrize("runs, warmup", [(0, 1), (5, -1)])
def test_measure_rejects_bad_counts(tiny_models, runs, warmup):
    with pytest.raises(ValueError, match="runs must be >= 1"):
        benchmark.measure(str(tiny_models["int8"]), runs=runs, warmup=warmup)


@pytest.mark.parametrize("variant", ["int8", "float32"])
def test_measure_dtype_from_input_tensor_without_variant(tiny_models, tmp_path, variant):
    path = tmp_path / f"tiny-{variant}.tflite"
    shutil.copy(tiny_models[variant], path)
    write_card(path, dataclasses.replace(read_card(tiny_models[variant]), variant=None))
    r = benchmark.measure(str(path), runs=1, warmup=0)
    assert r["dtype"] == variant  # no "variant" on the card: the input tensor's dtype


def test_percentile():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert benchmark.percentile(values, 50) == 3.0
    assert benchmark.percentile(values, 90) == pytest.approx(4.6)
    assert benchmark.percentile(values, 0) == 1.0


def test_platform_info_in_process(two_models):
    info = benchmark.platform_info()
    assert set(info) == set(two_models["platform"])
    assert info == two_models["platform"]


def test_image_error_pickles_and_data_with_unreadable_first_image(tmp_path, tiny_models):
    import pickle

    from edgecxr.core.imageio import ImageError
    from edgecxr.evaluation.benchmark import measure_in_child

    err = pickle.loads(pickle.dumps(ImageError("/x.png", "file is empty")))
    assert (err.path, err.reason, str(err)) == ("/x.png", "file is empty", "/x.png: file is empty")
    (tmp_path / "bright").mkdir()
    (tmp_path / "dark").mkdir()
    (tmp_path / "bright" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    import cv2

    cv2.imwrite(str(tmp_path / "dark" / "b.png"), np.random.default_rng(0).integers(0, 40, (32, 32), dtype=np.uint8))
    result = measure_in_child(str(tiny_models["int8"]), runs=3, warmup=0, data=str(tmp_path))
    assert result["input"] == "real image" and result["n_images"] == 1
    assert 10 < result["peak_rss_mb"] < 300  # the child's own peak, not pytest's
