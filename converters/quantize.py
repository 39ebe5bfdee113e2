"""Keras → TFLite flatbuffers: float32, float16 weights, dynamic-range int8, full-integer int8."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import tensorflow as tf
import tf_keras as keras

from edgecxr.families import variant as variant_of


def with_feature_map(model: keras.Model) -> keras.Model:
    """``model`` with its last feature map (the layer named ``features``) as a second output, for heatmaps.

    A model without such a layer (MLP-12) is returned as it is. The class-probability output and
    its numbers are unchanged: the second output only exposes a tensor the model computes anyway.
    """
    try:
        features = model.get_layer("features")
    except ValueError:
        return model
    # The layer's newest node is this model's: strip_pruning rebuilds the graph around the same layers.
    return keras.Model(model.input, [model.output, features.get_output_at(-1)], name=model.name)


def representative_images(x: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` preprocessed training images drawn at random (fixed seed) for int8 calibration."""
    rng = np.random.default_rng(seed)
    return x[rng.choice(len(x), size=min(n, len(x)), replace=False)]


def convert(model: keras.Model, variant: str, calibration: np.ndarray | None = None) -> bytes:
    """The ``.tflite`` bytes of ``model`` quantized as the registered ``variant`` says (:data:`edgecxr.families.VARIANTS`).

    Pruning is not done here: a pruned variant is converted from the already pruned model.
    ``int8`` quantization is full-integer post-training quantization with int8 input and output
    (``TFLITE_BUILTINS_INT8`` only), calibrated on ``calibration`` (preprocessed real images).
    """
    quantization = variant_of(variant).quantization
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8":
        if calibration is None or len(calibration) == 0:
            raise ValueError("int8 conversion needs calibration images")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: _batches(calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def _batches(images: np.ndarray) -> Iterator[list[np.ndarray]]:
    for image in images:
        yield [image[None].astype(np.float32)]
