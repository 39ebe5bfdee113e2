"""Grad-CAM on the float Keras model: the reference the device's int8 heatmaps are checked against.

Grad-CAM (Selvaraju et al. 2017) weights each channel of the last feature map (the layer named
``features``) by the spatial mean of the class score's gradient and sums them. The score is the
class's pre-softmax logit, computed from the model's own ``gap`` and ``classifier`` layers. For a
GAP + dense head that is mathematically the class activation map divided by the map's area, so
comparing it with the int8 model's CAM measures what quantization and the TFLite export do to
the map.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras


def grad_cam(model: keras.Model, x: np.ndarray, classes: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(N, h, w) Grad-CAM maps of ``classes[i]`` for image ``x[i]``, before the final ReLU."""
    feature_model = keras.Model(model.input, model.get_layer("features").output)
    gap, classifier = model.get_layer("gap"), model.get_layer("classifier")
    maps = []
    for start in range(0, len(x), batch_size):
        batch = tf.constant(x[start : start + batch_size])
        wanted = tf.constant(classes[start : start + batch_size], tf.int32)
        with tf.GradientTape() as tape:
            features = feature_model(batch, training=False)
            tape.watch(features)
            logits = tf.matmul(gap(features), classifier.kernel) + classifier.bias
            score = tf.gather(logits, wanted, batch_dims=1)
        weights = tf.reduce_mean(tape.gradient(score, features), axis=(1, 2))
        maps.append(tf.einsum("nhwk,nk->nhw", features, weights).numpy())
    return np.concatenate(maps).astype(np.float32)

