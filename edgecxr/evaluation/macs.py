"""Multiply-accumulates of a classifier ``.tflite``, counted from its layer shapes (no TensorFlow).

The shapes come from the interpreter (:mod:`edgecxr.core.interpreter`): each op's input, weight and
output tensors. Counted per inference of the model's batch:

- ``CONV_2D``: out_h x out_w x out_c x k_h x k_w x in_c / groups (the kernel's last dimension
  already is in_c / groups);
- ``DEPTHWISE_CONV_2D``: out_h x out_w x out_c x k_h x k_w;
- ``FULLY_CONNECTED``: in x out per row.

Everything else (pooling, adds, activations, quantize ops) is not counted: a small share next to
these, and it does not scale with a layer's filters.
"""
from __future__ import annotations

import os

import numpy as np

from edgecxr.core.interpreter import make_interpreter

COUNTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def macs(model_path: str | os.PathLike) -> int:
    """Multiply-accumulates of one inference of the ``.tflite`` at ``model_path`` (see the module docstring)."""
    interpreter = make_interpreter(str(model_path), xnnpack=False)  # the model's own ops, not delegate nodes
    shapes = {t["index"]: [int(v) for v in t["shape"]] for t in interpreter.get_tensor_details()}
    total = 0
    for op in interpreter._get_ops_details():  # noqa: SLF001  # the only way the interpreter lists ops
        if op["op_name"] not in COUNTED:
            continue
        out, weights = shapes[int(op["outputs"][0])], shapes[int(op["inputs"][1])]
        if op["op_name"] == "FULLY_CONNECTED":  # weights (out, in); output (..., out)
            total += int(np.prod(out[:-1])) * weights[0] * weights[1]
        elif op["op_name"] == "CONV_2D":  # weights (out_c, k_h, k_w, in_c / groups)
            total += int(np.prod(out)) * weights[1] * weights[2] * weights[3]
        else:  # DEPTHWISE_CONV_2D: weights (1, k_h, k_w, out_c)
            total += int(np.prod(out)) * weights[1] * weights[2]
    return total
