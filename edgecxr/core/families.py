"""The one registry of model families and conversion variants: plain data, no TensorFlow.

A **family** is an architecture: how it is described in a card, its default input size, whether
it has a spatial feature map for heatmaps, its task, and the dotted name of the tf_keras function
that builds it (``training`` imports it only when it trains). A **variant** is one way of turning
a trained family into a ``.tflite``: how it is quantized, whether it is pruned first, and the
dtypes it ends up with. Cards name both (``family``, ``variant``); training, the converter, the
benchmarks and the examples read them here instead of keeping lists of their own or parsing names.
"""
from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

TASKS = ("classification", "segmentation")


@dataclass(frozen=True)
class Family:
    """A model architecture edgecxr trains and ships."""

    name: str
    # The card's ``architecture`` text: str.format fields {height}, {width} (input), {params}
    # (parameter count), {stem} (first-stage width), {stages} (the four stage widths) and
    # {bottleneck} (the width after them, stem * 16).
    description: str
    input_size: int  # default input side in pixels
    has_heatmap: bool  # a spatial feature map named ``features`` and a dense ``classifier`` on it
    builder: str  # "module:function" building the tf_keras model: f(input_size, n_classes, **options)
    options: tuple[str, ...] = ()  # training settings (TrainConfig fields) the builder takes
    task: str = "classification"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"family {self.name}: task {self.task!r} not in {TASKS}")

    def describe(self, height: int, width: int, params: int, stem: int | None = None, widths: Sequence[int] | None = None, **fields: Any) -> str:
        """The architecture text for a card: this family at ``height`` x ``width`` with ``params`` parameters.

        ``widths`` (every level's width, the bottleneck last) gives {stages}, {bottleneck} and {levels}
        when the widths do not double from ``stem`` over four stages; ``fields`` fill any other placeholder.
        """
        widths = list(widths) if widths else [stem * 2**i for i in range(5)] if stem else []
        stages = "/".join(str(w) for w in widths[:-1])
        return self.description.format(
            height=height, width=width, params=params, stem=stem, stages=stages, bottleneck=widths[-1] if widths else None,
            levels=max(len(widths) - 1, 0), **{"decoder": "nearest upsampling", **fields},
        )

    def build(self, input_size: int, n_classes: int, /, **settings: Any) -> Any:
        """Build the model (imports the builder, and so TensorFlow); ``settings`` beyond :attr:`options` are ignored."""
        module, function = self.builder.split(":")
        builder: Callable[..., Any] = getattr(importlib.import_module(module), function)
        return builder(input_size, n_classes, **{k: settings[k] for k in self.options if k in settings})


@dataclass(frozen=True)
class Variant:
    """One way of converting a trained model to TFLite."""

    name: str
    quantization: str  # the converter's mode: "float32", "float16" (weights), "dynamic" (range) or "int8" (full integer)
    io_dtype: str  # dtype of the input and output tensors
    dtype: str  # the number format the benchmark reports for it (LiteRT's names)
    pruned: bool = False  # magnitude-pruned and fine-tuned before conversion
    qat: bool = False  # quantization-aware fine-tuned before conversion (after pruning: prune-preserving)


# The stems the ResNet can start with (training --stem): each takes the 1-channel image to 1/4 of its side at the stem width.
RESNET_STEMS = {
    "7x7": "7x7 stride-2 conv + 3x3 stride-2 max-pool",
    "3x3": "two 3x3 stride-2 convs (half, then full stem width)",
    "s2d": "space-to-depth by 4 as a 4x4 stride-4 conv (16 filters) + 3x3 conv",
}

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "resnet18",
            "ResNet-18-style CNN, grayscale {height}x{width} input, stem width {stem} (stages {stages}), "
            "GAP + softmax; {params:,} parameters",
            input_size=128,
            has_heatmap=True,
            builder="training.models:build_resnet18",
            options=("width", "bn_momentum", "stem"),
        ),
        Family(
            "mlp12",
            "MLP-12: 12 dense ReLU layers (512\u219232) on the flattened {height}x{width} image; {params:,} parameters",
            input_size=64,
            has_heatmap=False,
            builder="training.models:build_mlp12",
        ),
        Family(
            "lungs",
            "U-Net, grayscale {height}x{width} input, {levels} levels of two 3x3 conv + BN + ReLU ({stages} channels, max-pool), "
            "bottleneck {bottleneck}, {decoder} + skip concatenation, 1x1 conv + sigmoid; {params:,} parameters",
            input_size=128,
            has_heatmap=False,
            builder="training.unet:build_unet",
            options=("widths", "bn_momentum"),
            task="segmentation",
        ),
    )
}

# In conversion and report order: float32 first, the reference every other variant is checked against.
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("float32", "float32", io_dtype="float32", dtype="float32"),
        Variant("float16", "float16", io_dtype="float32", dtype="float16"),
        Variant("dynamic", "dynamic", io_dtype="float32", dtype="dynamic-int8"),
        Variant("int8", "int8", io_dtype="int8", dtype="int8"),
        Variant("pruned-int8", "int8", io_dtype="int8", dtype="int8", pruned=True),
        Variant("pqat-int8", "int8", io_dtype="int8", dtype="int8", pruned=True, qat=True),
        Variant("qat-int8", "int8", io_dtype="int8", dtype="int8", qat=True),
        Variant("filter-pruned-int8", "int8", io_dtype="int8", dtype="int8"),  # narrower network: python -m converters.filters
    )
}


def family(name: str) -> Family:
    """The registered family ``name``, or ValueError listing the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; choose from {tuple(FAMILIES)}") from None


def names(task: str) -> tuple[str, ...]:
    """The registered families of ``task``, in registry order."""
    return tuple(name for name, fam in FAMILIES.items() if fam.task == task)


def variant(name: str) -> Variant:
    """The registered variant ``name``, or ValueError listing the known ones."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; choose from {tuple(VARIANTS)}") from None
