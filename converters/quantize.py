"""Keras → TFLite flatbuffers: float32, float16 weights, dynamic-range int8, full-integer int8."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import tensorflow as tf
import tf_keras as keras

from edgecxr.core.families import variant as variant_of


def exported(model: keras.Model) -> keras.Model:
    """The model a classifier ``.tflite`` is converted from: logits, and the last feature map when there is one.

    The first output is the logits: the Dense layer named ``classifier`` without its softmax (same
    weights), so an int8 model's output steps fall on the logits, where they cost the probabilities
    little, and the runtime applies the softmax and the temperature in float (card ``output_kind``
    ``logits``). The second output, for models with a layer named ``features`` (not MLP-12), is
    that feature map for heatmaps: a tensor the model computes anyway.
    """
    classifier = model.get_layer("classifier")
    # A layer's newest node is this model's: strip_pruning rebuilds the graph around the same layers.
    logits_layer = keras.layers.Dense(classifier.units, name="logits")
    logits = logits_layer(classifier.get_input_at(-1))
    logits_layer.set_weights(classifier.get_weights())
    outputs = [logits]
    if has_feature_map(model):
        outputs.append(model.get_layer("features").get_output_at(-1))
    return keras.Model(model.input, outputs, name=model.name)


def has_feature_map(model: keras.Model) -> bool:
    """Whether ``model`` has the layer named ``features`` whose output heatmaps are made from."""
    return any(layer.name == "features" for layer in model.layers)


def representative_images(x: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` preprocessed training images drawn at random (fixed seed) for int8 calibration."""
    rng = np.random.default_rng(seed)
    return x[rng.choice(len(x), size=min(n, len(x)), replace=False)]


def convert(model: keras.Model, variant: str, calibration: np.ndarray | None = None) -> bytes:
    """The ``.tflite`` bytes of ``model`` quantized as the registered ``variant`` says (:data:`edgecxr.core.families.VARIANTS`).

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
