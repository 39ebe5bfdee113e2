"""Structured (filter) pruning of the ResNet-18-style CNN: rank filters, choose the kept ones, rebuild it narrower.

Channels come in **groups** that must be pruned together (:func:`channel_groups`):

- a block's inner group: the output channels of its ``a`` conv (and BN), which only its ``b`` conv
  reads; pruned freely, block by block (``keep``).
- a stage's residual group: every tensor that meets at the stage's ``Add`` layers: the stem's
  output (stage 1), the ``proj`` shortcut (stages 2-4) and both blocks' ``b`` convs, read by the
  next ``a`` and ``proj`` convs and, after stage 4, by the ``classifier``. Channel ``k`` of one of
  them is added to channel ``k`` of the others, so a stage keeps the same channels in all of them
  (``keep_stage``; 1.0 leaves them alone).
- a two-conv stem's inner group (the 3x3 and s2d stems of :data:`edgecxr.core.families.RESNET_STEMS`):
  the output of ``stem0_conv``, read by ``stem_conv``; always kept whole (the stem's time goes to its
  taps, not its filters, and the s2d stem's 16 filters can hold the 4x4 pixels unchanged).

A filter's importance is its kernel's L1 norm times the scale its BatchNorm gives it,
``|gamma| / sqrt(var + eps)``: the size of what the filter contributes after BN (BN's shift
``beta`` is left out, being the same whatever the input). A residual group's channel sums that
over the convs writing into it. The narrow network is :func:`training.models.build_resnet18` with
per-group widths, so it keeps the layer names (``features``, ``classifier``) and the int8
converter and heatmaps work on it unchanged.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import tf_keras as keras

from training.models import build_resnet18

_CONV = re.compile(r"(stem0?|stage(\d)_block(\d)_(a|b|proj))_conv")
STEM_INNER = "stem0"  # the channel group of a two-conv stem's first conv


@dataclass(frozen=True)
class Wiring:
    """Which channel group a conv reads (``None``: the image) and which it writes."""

    reads: str | None
    writes: str


def wiring(conv_name: str, two_conv_stem: bool = False) -> Wiring:
    """The channel groups of a conv layer of :func:`training.models.build_resnet18`, from its name (``two_conv_stem``: the
    model's stem has a ``stem0_conv`` before ``stem_conv``)."""
    m = _CONV.fullmatch(conv_name)
    if m is None:
        raise ValueError(f"{conv_name}: not a conv layer of the ResNet-18 layout")
    if m.group(1) == "stem0":
        return Wiring(None, STEM_INNER)
    if m.group(1) == "stem":
        return Wiring(STEM_INNER if two_conv_stem else None, "stage1")
    stage, block, part = int(m.group(2)), int(m.group(3)), m.group(4)
    incoming = f"stage{max(1, stage - 1)}" if block == 1 else f"stage{stage}"
    inner = f"stage{stage}_block{block}"
    return {"a": Wiring(incoming, inner), "b": Wiring(inner, f"stage{stage}"), "proj": Wiring(incoming, f"stage{stage}")}[part]


def convs(model: keras.Model) -> list[keras.layers.Conv2D]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def stem_kind(model: keras.Model) -> str:
    """Which stem of :data:`edgecxr.core.families.RESNET_STEMS` the model starts with, from its layers."""
    names = {layer.name for layer in model.layers}
    if f"{STEM_INNER}_conv" not in names:
        return "7x7"
    return "s2d" if model.get_layer(f"{STEM_INNER}_conv").strides == (4, 4) else "3x3"


def model_wiring(model: keras.Model, conv_name: str) -> Wiring:
    """:func:`wiring` of a conv layer of ``model``."""
    return wiring(conv_name, stem_kind(model) != "7x7")


def filter_importance(model: keras.Model, conv_name: str) -> np.ndarray:
    """Per output channel: L1 norm of the filter times its BatchNorm's scale ``|gamma| / sqrt(var + eps)``."""
    kernel = model.get_layer(conv_name).get_weights()[0]
    bn = model.get_layer(conv_name.removesuffix("_conv") + "_bn")
    gamma, _, _, var = bn.get_weights()
    return np.abs(kernel).sum(axis=(0, 1, 2)) * np.abs(gamma) / np.sqrt(var + bn.epsilon)


def channel_groups(model: keras.Model) -> dict[str, list[str]]:
    """{group: the conv layers writing it}, in layer order."""
    groups: dict[str, list[str]] = {}
    for conv in convs(model):
        groups.setdefault(model_wiring(model, conv.name).writes, []).append(conv.name)
    return groups


def kept_channels(model: keras.Model, keep: float, keep_stage: float = 1.0) -> dict[str, np.ndarray]:
    """{group: sorted indices of the channels kept}: the most important ``keep`` of each block's inner
    channels and ``keep_stage`` of each stage's residual channels (at least one, rounded); a two-conv stem's inner channels all."""
    if not (0 < keep <= 1 and 0 < keep_stage <= 1):
        raise ValueError(f"keep ratios must be in (0, 1], got {keep} and {keep_stage}")
    out = {}
    for group, writers in channel_groups(model).items():
        score = np.sum([filter_importance(model, name) for name in writers], axis=0)
        ratio = 1.0 if group == STEM_INNER else keep if "_block" in group else keep_stage
        n = max(1, int(round(ratio * len(score))))
        out[group] = np.sort(np.argsort(-score, kind="stable")[:n])
    return out


def narrow_model(model: keras.Model, kept: Mapping[str, np.ndarray]) -> keras.Model:
    """The ResNet rebuilt with only the ``kept`` channels of each group, the kept weights copied in."""
    blocks = [f"stage{s}_block{b}" for s in range(1, 5) for b in (1, 2)]
    dropout = model.get_layer("head_dropout").rate
    bn = model.get_layer("stem_bn")
    narrow = build_resnet18(
        model.input_shape[1], model.get_layer("classifier").units, dropout=dropout, bn_momentum=bn.momentum,
        stage_widths=tuple(len(kept[f"stage{s}"]) for s in range(1, 5)), inner_widths=tuple(len(kept[b]) for b in blocks),
        stem=stem_kind(model), stem_inner=len(kept[STEM_INNER]) if STEM_INNER in kept else None,
    )
    for conv in convs(model):
        w = model_wiring(model, conv.name)
        kernel = conv.get_weights()[0]
        if w.reads is not None:
            kernel = kernel[:, :, kept[w.reads], :]
        narrow.get_layer(conv.name).set_weights([kernel[..., kept[w.writes]]])
        bn_name = conv.name.removesuffix("_conv") + "_bn"
        narrow.get_layer(bn_name).set_weights([v[kept[w.writes]] for v in model.get_layer(bn_name).get_weights()])
    kernel, bias = model.get_layer("classifier").get_weights()
    narrow.get_layer("classifier").set_weights([kernel[kept["stage4"]], bias])
    return narrow


def masked_copy(model: keras.Model, kept: Mapping[str, np.ndarray]) -> keras.Model:
    """A copy of ``model`` (same width) whose removed channels are zero: the removed filters and their
    BatchNorm set so that those channels output exactly 0 (kernel, gamma and beta 0)."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for conv in convs(model):
        writes = model_wiring(model, conv.name).writes
        removed = np.setdiff1d(np.arange(conv.filters), kept[writes])
        layer = clone.get_layer(conv.name)
        kernel = layer.get_weights()[0]
        kernel[..., removed] = 0
        layer.set_weights([kernel])
        bn = clone.get_layer(conv.name.removesuffix("_conv") + "_bn")
        gamma, beta, mean, var = bn.get_weights()
        gamma[removed], beta[removed] = 0, 0
        bn.set_weights([gamma, beta, mean, var])
    return clone


def describe(kept: Mapping[str, np.ndarray], model: keras.Model) -> str:
    """What was kept, for the card: channels per stage and per block's inner conv, against the original widths."""
    full = {model_wiring(model, c.name).writes: c.filters for c in convs(model)}
    stages = "/".join(f"{len(kept[f'stage{s}'])}" for s in range(1, 5))
    inner = "/".join(f"{len(kept[g])}" for g in kept if "_block" in g)
    return (
        f"stage channels {stages} of {'/'.join(str(full[f'stage{s}']) for s in range(1, 5))}, "
        f"block inner channels {inner} of {'/'.join(str(full[g]) for g in kept if '_block' in g)}"
    )
