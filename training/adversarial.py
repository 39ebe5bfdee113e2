"""A source-adversarial head (``--adversarial LAMBDA``): gradient reversal on "which collection".

A training-only wrapper around the plain classifier adds a small softmax over the training
sources, fed by the classifier's pooled features through a gradient-reversal layer: the head
learns to tell the collection, and the reversed gradient pushes the backbone towards features that
cannot. The head also sees the film's true class (one-hot, concatenated after the reversal), so it
only asks "which collection, given the class": without that, sources that hold one class only
(``hannover`` is all COVID) would make the reversal fight the class itself.

The reversal strength ramps from 0 to ``LAMBDA`` over the run (``2 / (1 + exp(-10 p)) - 1``,
p the share of epochs done), as in DANN. Only the plain classifier (image -> class softmax, with
its ``features`` and ``classifier`` layers) is saved as ``best.keras``/``last.keras``; the wrapper
with its optimizer state goes to ``adversarial.keras`` for ``--resume``.
"""
from __future__ import annotations

import math

import tensorflow as tf
import tf_keras as keras

WRAPPER_FILE = "adversarial.keras"


@keras.utils.register_keras_serializable(package="edgecxr")
class GradientReversal(keras.layers.Layer):
    """Identity forward; the gradient times ``-strength`` backward (``strength`` is a non-trainable weight)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.strength = self.add_weight(name="strength", shape=(), initializer="zeros", trainable=False)

    def call(self, inputs):
        strength = tf.cast(self.strength, inputs.dtype)

        @tf.custom_gradient
        def reverse(x):
            return tf.identity(x), lambda dy: -strength * dy

        return reverse(inputs)


def pooled_features(model: keras.Model) -> tf.Tensor:
    """The ResNet's GAP features (layer ``gap``); for a model without one, the classifier layer's input."""
    names = {layer.name for layer in model.layers}
    return model.get_layer("gap").output if "gap" in names else model.get_layer("classifier").input


def build_wrapper(classifier: keras.Model, n_sources: int, hidden: int = 128) -> keras.Model:
    """Inputs ``image`` and ``class_onehot``; outputs ``classifier`` (class softmax) and ``source``."""
    n_classes = classifier.output_shape[-1]
    onehot = keras.Input((n_classes,), name="class_onehot")
    reversed_features = GradientReversal(name="grad_reversal")(pooled_features(classifier))
    x = keras.layers.Concatenate(name="adv_concat")([reversed_features, onehot])
    x = keras.layers.Dense(hidden, activation="relu", name="adv_hidden")(x)
    source = keras.layers.Dense(n_sources, activation="softmax", name="source")(x)
    outputs = {"classifier": classifier.output, "source": source}
    return keras.Model([classifier.input, onehot], outputs, name=f"{classifier.name}_adversarial")


def plain_classifier(wrapper: keras.Model) -> keras.Model:
    """The image -> class softmax model inside a wrapper (shares its layers and weights)."""
    return keras.Model(wrapper.get_layer("image").output, wrapper.get_layer("classifier").output, name=wrapper.name.removesuffix("_adversarial"))


def ramp(epoch: int, epochs: int, strength: float) -> float:
    """DANN's schedule: 0 at the start, ``strength`` at the end."""
    p = min(1.0, epoch / max(1, epochs - 1))
    return strength * (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)


class ReversalSchedule(keras.callbacks.Callback):
    """Sets the reversal strength of the wrapper's ``grad_reversal`` layer at the start of each epoch."""

    def __init__(self, strength: float, epochs: int):
        super().__init__()
        self.strength, self.epochs = strength, epochs

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.model.get_layer("grad_reversal").strength.assign(ramp(epoch, self.epochs, self.strength))
