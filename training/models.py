"""The tf_keras builders of the model families edgecxr ships: MLP-12 and a ResNet-18-style CNN.

The families themselves (names, default input sizes, which builder) are registered in
:mod:`edgecxr.core.families`; training builds one with ``family(name).build(...)``.

Both are plain Functional tf_keras models built only from layers that tensorflow-model-optimization
can prune and that TFLite quantizes to int8 (Conv2D, BatchNormalization, ReLU, Add, pooling,
Dense), so ``converters/`` needs no model surgery. The ResNet's last feature map is the layer
named ``features`` and its classifier the Dense layer named ``classifier``: class activation
maps read both.
"""
from __future__ import annotations

from collections.abc import Sequence

import tf_keras as keras
from tf_keras import layers

from edgecxr.core.families import RESNET_STEMS

# Widths of the 12 hidden Dense layers of MLP-12: an encoder that narrows step by step.
MLP12_WIDTHS = (512, 512, 384, 256, 256, 192, 128, 128, 96, 64, 48, 32)


def build_mlp12(input_size: int, n_classes: int, dropout: float = 0.3) -> keras.Model:
    """12 Dense+ReLU layers of decreasing width on the flattened (input_size x input_size) image."""
    inputs = keras.Input((input_size, input_size, 1), name="image")
    x = layers.Flatten(name="flatten")(inputs)
    for i, width in enumerate(MLP12_WIDTHS):
        x = layers.Dense(width, activation="relu", name=f"dense_{i + 1}")(x)
        if i in (0, 3, 7):
            x = layers.Dropout(dropout, name=f"dropout_{i + 1}")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="mlp12")


def _conv_bn_relu(x, filters: int, kernel: int, stride: int, name: str, relu: bool = True, momentum: float = 0.99):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=momentum, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _basic_block(x, filters: int, stride: int, name: str, momentum: float, inner: int | None = None):
    shortcut = x
    y = _conv_bn_relu(x, inner or filters, 3, stride, f"{name}_a", momentum=momentum)
    y = _conv_bn_relu(y, filters, 3, 1, f"{name}_b", relu=False, momentum=momentum)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn_relu(x, filters, 1, stride, f"{name}_proj", relu=False, momentum=momentum)
    return layers.Add(name=f"{name}_add")([y, shortcut])


def _stem(x, width: int, kind: str, momentum: float, inner: int | None = None):
    """The stem ``kind`` of :data:`edgecxr.families.RESNET_STEMS`; its last conv is ``stem_conv`` (the first stage's residual width),
    the first of a two-conv stem ``stem0_conv`` (``inner`` filters; default half the width for 3x3, 16 for s2d)."""
    if kind == "7x7":
        x = _conv_bn_relu(x, width, 7, 2, "stem", momentum=momentum)
        return layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    if kind == "3x3":
        x = _conv_bn_relu(x, inner or max(1, width // 2), 3, 2, "stem0", momentum=momentum)
        return _conv_bn_relu(x, width, 3, 2, "stem", momentum=momentum)
    if kind == "s2d":
        x = _conv_bn_relu(x, inner or 16, 4, 4, "stem0", momentum=momentum)
        return _conv_bn_relu(x, width, 3, 1, "stem", momentum=momentum)
    raise ValueError(f"unknown stem {kind!r}; choose from {tuple(RESNET_STEMS)}")


def build_resnet18(
    input_size: int, n_classes: int, width: int = 32, dropout: float = 0.2, bn_momentum: float = 0.99,
    stage_widths: Sequence[int] | None = None, inner_widths: Sequence[int] | None = None, stem: str = "7x7",
    stem_inner: int | None = None,
) -> keras.Model:
    """ResNet-18 layout (a stem to 1/4 of the input side, 4 stages x 2 basic blocks, GAP, softmax).

    ``stem`` is one of :data:`edgecxr.families.RESNET_STEMS`: the original 7x7/2 conv and max-pool, or a cheaper one for the 1-channel image
    (with XNNPACK the 7x7 stem takes ~60% of the int8 model's time on x86: benchmarks/results/pruning/filters_notes.md).

    ``width`` is the stem/first-stage width (64 in the original ResNet-18); stages use
    width, 2*width, 4*width, 8*width channels. A lower ``bn_momentum`` lets BatchNorm's running
    statistics settle in fewer steps, for small data sets. ``stage_widths`` (4, the stem's is the
    first) and ``inner_widths`` (8, each block's ``a`` conv) replace those widths: the narrower
    network a filter-pruned model is rebuilt as (:mod:`converters.narrow`), with the same layer names; ``stem_inner``
    keeps a two-conv stem's first conv at its trained width there.
    """
    stage_widths = stage_widths or [width * 2**stage for stage in range(4)]
    inputs = keras.Input((input_size, input_size, 1), name="image")
    x = _stem(inputs, stage_widths[0], stem, bn_momentum, stem_inner)
    for stage in range(4):
        for block in range(2):
            stride = 2 if (stage > 0 and block == 0) else 1
            inner = inner_widths[2 * stage + block] if inner_widths else None
            x = _basic_block(x, stage_widths[stage], stride, f"stage{stage + 1}_block{block + 1}", bn_momentum, inner)
            last = block == 1 and stage == 3
            x = layers.ReLU(name="features" if last else f"stage{stage + 1}_block{block + 1}_out")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="resnet18")
