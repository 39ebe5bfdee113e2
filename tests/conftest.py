"""Shared fixtures: paths to the shared data, and a tiny trained .tflite pair built in code."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
TINY_LABELS = ["dark", "bright", "striped"]
TINY_SPEC = {"color": "grayscale", "crop": "none", "size": [32, 32], "interpolation": "area", "scale": "0-1", "clahe": False}


def tiny_card(variant: str | None, **parts):
    """The card of a tiny test model (family ``tiny``), before write_card fills in the file's identity."""
    from edgecxr.card import ModelCard
    from edgecxr.preprocess import PreprocessSpec

    return ModelCard(name=f"tiny-{variant}", labels=tuple(TINY_LABELS), preprocessing=PreprocessSpec.from_dict(TINY_SPEC), family="tiny", variant=variant, **parts)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"{SHARED_DATA} is missing: tests need ../shared beside the checkout"
    return SHARED_DATA


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
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """A tiny CNN trained on the toy set, converted to float32 and int8 with cards: {variant: path}.

    Like the ResNet family, its last feature map is the layer ``features`` and is exported as a
    second output, with the classifier's weights in the card, so heatmaps work on it. The Keras
    model is saved beside the files as ``tiny.keras``.
    """
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tf_keras as keras

    from converters.cards import cam_part
    from converters.quantize import convert, with_feature_map
    from edgecxr.card import write_card

    keras.utils.set_random_seed(0)
    x, y = toy_images(300)
    inputs = keras.Input((32, 32, 1))
    h = keras.layers.Conv2D(8, 3, strides=2, use_bias=False)(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU(name="features")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    outputs = keras.layers.Dense(3, activation="softmax", name="classifier")(h)
    model = keras.Model(inputs, outputs, name="tiny")
    model.compile(keras.optimizers.Adam(0.03), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=30, batch_size=32, verbose=0)
    folder = tmp_path_factory.mktemp("tiny_models")
    paths = {}
    for variant in ("float32", "int8"):
        path = folder / f"tiny-{variant}.tflite"
        path.write_bytes(convert(with_feature_map(model), variant, x[:100]))
        write_card(path, tiny_card(variant, cam=cam_part(model)))
        paths[variant] = path
    np.save(folder / "keras_probs.npy", model.predict(x[:30], verbose=0))
    model.save(folder / "tiny.keras")
    return paths
