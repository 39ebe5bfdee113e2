"""Build the tiny test models: a small CNN trained on the toy set, as float32 and int8 ``.tflite`` with cards.

    python tests/make_tiny.py            # rewrites the committed fixtures in tests/fixtures/
    python tests/make_tiny.py OUT_DIR    # or writes them to OUT_DIR

Needs the ``train`` extra. Like the ResNet family, the CNN's last feature map is the layer
``features`` and is exported as a second output, with the classifier's weights in the card, so
heatmaps work on it; the output is logits (card ``output_kind``) with the card's facts
embedded, as the converter writes them. Beside the models go the Keras model (``tiny.keras``) and its probabilities
on ``toy_images(30)`` (``keras_probs.npy``), so the runtime tier can check the fixtures
against Keras without TensorFlow. Seeded, so a rerun trains the same model as far as TensorFlow
is deterministic; ``tests/test_fixtures.py`` rebuilds them and compares with the committed ones.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from conftest import FIXTURES, tiny_card, toy_images

VARIANTS = ("float32", "int8")
N_REFERENCE = 30  # toy images whose Keras probabilities are saved


def make_tiny(folder: Path) -> dict[str, Path]:
    """Train the tiny CNN and write ``tiny-{float32,int8}.tflite`` + cards, ``tiny.keras`` and ``keras_probs.npy`` to ``folder``."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tf_keras as keras

    from converters.cards import cam_part
    from converters.embed import embed_facts
    from converters.quantize import convert, exported
    from edgecxr.core.card import write_card

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
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for variant in VARIANTS:
        path = folder / f"tiny-{variant}.tflite"
        card = tiny_card(variant, cam=cam_part(model), output_kind="logits", checks="generic")  # toy images, not chest films
        path.write_bytes(embed_facts(convert(exported(model), variant, x[:100]), card.to_dict()))
        write_card(path, card)
        paths[variant] = path
    np.save(folder / "keras_probs.npy", model.predict(toy_images(N_REFERENCE)[0], verbose=0))
    keras.Model(model.inputs, model.outputs, name="tiny").save(folder / "tiny.keras")  # uncompiled: no optimizer state
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, nargs="?", default=FIXTURES, help="folder to write (default: tests/fixtures)")
    for written in make_tiny(parser.parse_args().out).values():
        print(written)
