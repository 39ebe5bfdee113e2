"""The ResNet's stems: each reaches the same feature map as the 7x7 stem, with fewer MACs, and converts to int8."""
from __future__ import annotations

import pytest

from conftest import toy_images
from edgecxr.core.families import RESNET_STEMS

pytestmark = pytest.mark.train


def test_every_stem_gives_the_same_feature_map_with_fewer_macs(tmp_path):
    from converters.quantize import convert, exported
    from edgecxr.evaluation.macs import macs
    from training.models import build_resnet18

    x, _ = toy_images(20)
    counted, shapes = {}, {}
    for kind in RESNET_STEMS:
        model = build_resnet18(32, 3, width=8, stem=kind)
        shapes[kind] = tuple(model.get_layer("features").output.shape[1:])
        assert model.get_layer("stem_conv").filters == 8  # the first stage's residual width, as converters.narrow expects
        path = tmp_path / f"{kind}.tflite"
        path.write_bytes(convert(exported(model), "int8", x))
        counted[kind] = macs(path)
    assert set(shapes.values()) == {(1, 1, 64)}  # 32 px in, 1/32 of the side out, 8 * 8 channels
    assert counted["3x3"] < counted["7x7"] and counted["s2d"] < counted["7x7"]
    assert "stem0_conv" in {layer.name for layer in build_resnet18(32, 3, width=8, stem="3x3").layers}


def test_an_unknown_stem_is_refused():
    from training.models import build_resnet18

    with pytest.raises(ValueError, match=r"unknown stem '5x5'; choose from \('7x7', '3x3', 's2d'\)"):
        build_resnet18(32, 3, stem="5x5")
