"""A small U-Net for lung-field segmentation, built only from layers TFLite quantizes to int8.

Encoder: per level two 3x3 Conv2D + BatchNorm + ReLU, then 2x2 max-pooling; the last width is the
bottleneck. Decoder: UpSampling2D (nearest) + 3x3 conv, concatenation with the encoder's skip, two
3x3 convs. A 1x1 conv with a sigmoid gives the per-pixel lung probability. Every layer maps to a
``TFLITE_BUILTINS_INT8`` op (CONV_2D, MAX_POOL_2D, RESIZE_NEAREST_NEIGHBOR, CONCATENATION,
LOGISTIC), so ``converters/lungs.py`` needs no model surgery.
"""
from __future__ import annotations

from collections.abc import Sequence

import tf_keras as keras
from tf_keras import layers

UNET_WIDTHS = (16, 32, 64, 128, 256)  # four pooled levels and the bottleneck


def _double_conv(x, filters: int, name: str, momentum: float):
    for i in ("a", "b"):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_{i}_conv")(x)
        x = layers.BatchNormalization(momentum=momentum, name=f"{name}_{i}_bn")(x)
        x = layers.ReLU(name=f"{name}_{i}_relu")(x)
    return x


def build_unet(
    input_size: int = 128, n_classes: int = 2, widths: Sequence[int] = UNET_WIDTHS, bn_momentum: float = 0.9, up_first: bool = True,
) -> keras.Model:
    """A U-Net mapping a (input_size, input_size, 1) image to a same-size sigmoid lung mask.

    ``up_first``: each decoder level upsamples and then convolves (3x3) at the finer level; with
    False it convolves at the coarser level and then upsamples, the same kind of layer for a
    quarter of the work (the lung model's decoder is then about a quarter cheaper).

    ``n_classes`` is 2 (background, lung: one sigmoid channel), as :meth:`edgecxr.core.families.Family.build`
    passes it. ``input_size`` must be divisible by ``2 ** (len(widths) - 1)``.
    """
    if n_classes != 2:
        raise ValueError(f"the U-Net segments two classes (background, lung), not {n_classes}")
    levels = len(widths) - 1
    if input_size % (2**levels):
        raise ValueError(f"input size {input_size} is not divisible by {2 ** levels} ({levels} pooling levels)")
    inputs = keras.Input((input_size, input_size, 1), name="image")
    x, skips = inputs, []
    for level, filters in enumerate(widths[:-1]):
        x = _double_conv(x, filters, f"enc{level + 1}", bn_momentum)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level + 1}_pool")(x)
    x = _double_conv(x, widths[-1], "bottleneck", bn_momentum)
    for level in reversed(range(levels)):
        filters = widths[level]
        if up_first:
            x = layers.UpSampling2D(2, interpolation="nearest", name=f"dec{level + 1}_up")(x)
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"dec{level + 1}_up_conv")(x)
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"dec{level + 1}_up_bn")(x)
        x = layers.ReLU(name=f"dec{level + 1}_up_relu")(x)
        if not up_first:
            x = layers.UpSampling2D(2, interpolation="nearest", name=f"dec{level + 1}_up")(x)
        x = layers.Concatenate(name=f"dec{level + 1}_concat")([skips[level], x])
        x = _double_conv(x, filters, f"dec{level + 1}", bn_momentum)
    outputs = layers.Conv2D(1, 1, activation="sigmoid", name="mask")(x)
    return keras.Model(inputs, outputs, name="lungs")
