"""Fine-tuning for compression with tensorflow-model-optimization: magnitude pruning, (prune-preserving) quantization-aware training.

Pruning ramps sparsity up with a polynomial decay while fine-tuning, then strips the wrappers.
Quantization-aware training (QAT) wraps the exported model (logits first, :func:`converters.quantize.exported`)
in fake-quantization with tfmot's default 8-bit scheme, or with its prune-preserving scheme (PQAT:
the zero weights of a pruned model are masked and stay zero), and fine-tunes it on the logits. The
sparsity is measured in the Keras kernels and, after conversion, in the int8 flatbuffer.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from edgecxr.core.interpreter import interpreter_module

WEIGHT_OPS = ("CONV_2D", "FULLY_CONNECTED")  # the flatbuffer ops whose weights pruning zeroes


def prune(
    model: keras.Model,
    train_data: tf.data.Dataset,
    steps_per_epoch: int,
    sparsity: float = 0.5,
    epochs: int = 2,
    lr: float = 1e-4,
    class_weight: dict[int, float] | None = None,
    min_weights: int = 0,
) -> keras.Model:
    """Prune every Conv2D and Dense layer of ``model`` with at least ``min_weights`` kernel weights (the smaller ones,
    such as a one-channel stem or the classifier, stay dense) to ``sparsity`` while fine-tuning on ``train_data``
    (batched (image, one-hot or soft target) pairs, e.g. :func:`training.augment.train_pipeline`),
    then strip the pruning wrappers.

    The schedule ramps sparsity from 0 to the target over the first 70% of fine-tuning steps,
    pruning every 50 steps, so the network recovers before the end.
    """
    steps = steps_per_epoch * epochs
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0, end_step=max(1, int(steps * 0.7)), frequency=max(1, min(50, steps // 10))
    )

    def wrap(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and int(np.prod(layer.kernel.shape)) >= min_weights:
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    pruned = keras.models.clone_model(model, clone_function=wrap)
    pruned.compile(optimizer=keras.optimizers.Adam(lr), loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])
    pruned.fit(train_data, epochs=epochs, class_weight=class_weight, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()], verbose=2)
    return tfmot.sparsity.keras.strip_pruning(pruned)


def quantize_aware(
    model: keras.Model,
    train_data: tf.data.Dataset,
    epochs: int = 2,
    lr: float = 1e-5,
    class_weight: dict[int, float] | None = None,
    preserve_sparsity: bool = False,
) -> keras.Model:
    """``model`` (logits as its first output) with fake quantization, fine-tuned on ``train_data`` against the logits.

    ``preserve_sparsity`` uses tfmot's prune-preserving scheme (PQAT) for an already pruned and stripped model.
    """
    annotated = tfmot.quantization.keras.quantize_annotate_model(model)
    if preserve_sparsity:
        qat = tfmot.quantization.keras.quantize_apply(annotated, tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
    else:
        qat = tfmot.quantization.keras.quantize_apply(annotated)
    trained = keras.Model(qat.input, qat.outputs[0])  # shares qat's layers; the feature map has no loss
    trained.compile(optimizer=keras.optimizers.Adam(lr), loss=keras.losses.CategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    trained.fit(train_data, epochs=epochs, class_weight=class_weight, verbose=2)
    return qat


def float_copy(qat: keras.Model, template: keras.Model) -> keras.Model:
    """A copy of ``template`` (the float model QAT started from) holding the float weights QAT trained.

    A quantized layer is ``quant_<name>`` and holds the original's variables under ``<name>/`` (the kernel is the wrapper's,
    not the wrapped layer's); the exported ``logits`` layer holds the ``classifier``'s weights.
    """
    copy = keras.models.clone_model(template)
    variables = {v.name: v for v in qat.weights}
    for layer in copy.layers:
        if layer.weights:
            name = "logits" if layer.name == "classifier" else layer.name
            try:
                layer.set_weights([variables[f"{name}/{w.name.split('/')[-1]}"].numpy() for w in layer.weights])
            except KeyError as missing:
                raise ValueError(f"quantization-aware model has no variable {missing} for layer {layer.name}") from None
    return copy


def freeze_batchnorm(model: keras.Model) -> None:
    """Keep every BatchNormalization layer of ``model`` in inference mode with its statistics fixed while fine-tuning."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def sparsity_of(model: keras.Model) -> float:
    """Fraction of zero weights among the kernels of Conv2D and Dense layers."""
    zeros = total = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            kernel = layer.kernel.numpy()
            zeros += int(np.sum(kernel == 0))
            total += kernel.size
    return zeros / total if total else 0.0


def flatbuffer_sparsity(flat: bytes) -> float:
    """Fraction of zero values among the weight tensors (input 1) of the CONV_2D and FULLY_CONNECTED ops of a ``.tflite``."""
    _, litert = interpreter_module()  # without XNNPACK, which would take the weight tensors over
    interpreter = litert.Interpreter(model_content=flat, experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    zeros = total = 0
    for op in interpreter._get_ops_details():
        if op["op_name"] in WEIGHT_OPS:
            weights = interpreter.get_tensor(int(op["inputs"][1]))
            zeros += int(np.sum(weights == 0))
            total += weights.size
    return zeros / total if total else 0.0
