"""Shared fixtures: the shared data, the committed tiny models, one trained run; the tiers' markers.

The tiers (markers registered in setup.cfg): ``train`` needs the train extra (TensorFlow),
``data`` needs ../shared/data (given to every test that uses :func:`shared_data`), ``slow`` takes
more than about 10 s here. ``pytest -m "not train and not slow"`` is the runtime tier: it needs
only ``pip install '.[test]'``, as on a board.
"""
from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
# training/, converters/ and benchmarks/ are not installed: they are imported from the checkout.
# Appended, so edgecxr itself comes from wherever Python finds it first: the checkout under
# `python -m pytest` in it (or an editable install), the installed package under the `pytest`
# command of a runtime-only venv (the runtime tier; test_tiers.py checks which).
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

import edgecxr  # noqa: E402

EDGECXR_HOME = Path(edgecxr.__file__).resolve().parents[1]  # the folder the edgecxr under test is imported from
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"  # the tiny models, written by tests/make_tiny.py
TINY_LABELS = ["dark", "bright", "striped"]
TINY_SPEC = {"color": "grayscale", "crop": "none", "size": [32, 32], "interpolation": "area", "scale": "0-1", "clahe": False}


def tiny_card(variant: str | None, **parts):
    """The card of a tiny test model (family ``tiny``), before write_card fills in the file's identity."""
    from edgecxr.core.card import ModelCard
    from edgecxr.core.preprocess import PreprocessSpec

    return ModelCard(name=f"tiny-{variant}", labels=tuple(TINY_LABELS), preprocessing=PreprocessSpec.from_dict(TINY_SPEC), family="tiny", variant=variant, **parts)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"{SHARED_DATA} is missing: tests need ../shared beside the checkout"
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def config_dir(tmp_path_factory) -> Path:
    """An empty edgecxr config folder for the whole session: no test sees or changes the user's installed site profiles."""
    path = tmp_path_factory.mktemp("config")
    os.environ["EDGECXR_CONFIG_DIR"] = str(path)  # edgecxr.core.site.CONFIG_ENV; subprocesses inherit it
    return path


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    """A click runner for the ``edgecxr`` command (click >= 8.2 keeps stderr apart: result.stdout / result.stderr)."""
    return CliRunner()


@pytest.fixture(scope="module")
def model_path(tiny_models) -> str:
    """The tiny int8 model's path, as a command-line argument."""
    return str(tiny_models["int8"])


def copy_model(src: Path, dst_dir: Path, stem: str = "copy") -> Path:
    """Copy a .tflite and its card to ``dst_dir``; returns the new .tflite path."""
    dst = dst_dir / f"{stem}.tflite"
    shutil.copyfile(src, dst)
    shutil.copyfile(src.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


def child_env(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """``env`` with PYTHONPATH set so that a child Python imports the same edgecxr as these tests."""
    return {**env, "PYTHONPATH": str(EDGECXR_HOME)}


def toy_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A separable 3-class toy set of preprocessed 32x32 images: dark, bright, striped."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.uniform(0.0, 0.25, (n, 32, 32, 1)).astype(np.float32)
    x[y == 1] += 0.6
    for column in (0, 16):  # two 4-px bands: a pattern, but no busier than a chest film
        x[y == 2, :, column : column + 4] = 1.0
    return np.clip(x, 0, 1), y


def toy_u8(cls: int, seed: int = 0, size: tuple[int, int] = (64, 64)) -> np.ndarray:
    """A uint8 toy image of class ``cls``: the 32x32 toy pattern scaled to ``size`` (64x64 doubles every pixel)."""
    x, _ = toy_images(3, seed=seed)
    img = np.round(x[cls, :, :, 0] * 255.0).astype(np.uint8)
    return cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def write_png(path, cls: int, seed: int = 0):
    """Write the 64x64 toy image of class ``cls`` to ``path`` (folders made as needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), toy_u8(cls, seed))
    return path


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    """The committed tiny CNN as float32 and int8 ``.tflite`` with cards: {variant: path} (see tests/make_tiny.py).

    Its last feature map is exported as a second output, so heatmaps work on it; the Keras model
    lies beside the files as ``tiny.keras``, its probabilities on ``toy_images(30)`` as
    ``keras_probs.npy``. Tests read these files and never write beside them.
    """
    return {variant: FIXTURES / f"tiny-{variant}.tflite" for variant in ("float32", "int8")}


def _pattern(label: str, rng: np.random.Generator, side: int = 48) -> np.ndarray:
    img = rng.uniform(0, 60, (side, side))
    if label == "bright":
        img += 150
    elif label == "striped":
        img[:, ::4] = 255
    elif label == "checked":
        img[::6, :] = 255
    return img.clip(0, 255).astype(np.uint8)


def make_dataset(root: Path, labels=("dark", "bright", "striped"), per_class=(24, 6, 6), seed=0) -> Path:
    """A training dataset ``root/{train,val,test}/<label>/*.png`` of 48x48 toy patterns, ``per_class`` per split."""
    rng = np.random.default_rng(seed)
    for split, n in zip(("train", "val", "test"), per_class):
        for label in labels:
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                cv2.imwrite(str(folder / f"{label}-{i}.png"), _pattern(label, rng))
    return root


class TrainedRun(NamedTuple):
    data: Path
    out: Path
    metrics: dict


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> TrainedRun:
    """One tiny ResNet-18-style run (32x32, width 8, 10 epochs) on ``make_dataset(per_class=(100, 10, 10))``.

    Shared by the tests that check a run and those that fine-tune from one; they never write into it.
    """
    from training.train import TrainConfig, train

    root = make_dataset(tmp_path_factory.mktemp("trained") / "data", per_class=(100, 10, 10))
    out = root.parent / "run"
    metrics = train(TrainConfig(root, out, family="resnet18", input_size=32, width=8, bn_momentum=0.9, epochs=10, lr=3e-3, batch_size=16, patience=30))
    return TrainedRun(root, out, metrics)
