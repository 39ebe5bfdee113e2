"""The family and variant registry (edgecxr.core.families): what training, the converter, the benchmarks and the cards share."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO
from edgecxr.core.card import read_card
from edgecxr.core.families import FAMILIES, TASKS, VARIANTS, Family, family, variant
from edgecxr.core.registry import bundled_models


@pytest.mark.parametrize("path", bundled_models(), ids=lambda p: p.stem)
def test_every_bundled_card_names_a_registered_family_and_variant(path):
    card = read_card(path)
    fam, var = family(card.family), variant(card.variant)
    assert card.name == f"{fam.name}-{var.name}"
    assert card.input.dtype == card.output.dtype == var.io_dtype
    assert (card.cam is not None) == fam.has_heatmap
    assert card.preprocessing.size == (fam.input_size, fam.input_size)
    assert (card.calibration is not None) == (var.quantization == "int8")


def test_family_descriptions_reproduce_the_bundled_cards_architecture():
    """The converter writes ``Family.describe``: for the bundled runs it gives the text their cards hold."""
    resnet, mlp = read_card(bundled_models()[0]), read_card(next(p for p in bundled_models() if p.stem == "mlp12-int8"))
    assert resnet.family == "resnet18" and mlp.family == "mlp12"
    assert FAMILIES["resnet18"].describe(128, 128, 2_801_315, 32) == resnet.architecture
    assert FAMILIES["mlp12"].describe(64, 64, 2_835_603) == mlp.architecture
    assert "MLP" not in FAMILIES["resnet18"].describe(32, 32, 1, 8)  # each family describes itself


def test_unknown_names_are_refused_listing_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown model family 'vgg'; choose from \('resnet18', 'mlp12', 'lungs'\)"):
        family("vgg")
    with pytest.raises(ValueError, match="unknown variant 'int4'"):
        variant("int4")
    with pytest.raises(ValueError, match="task 'detection'"):
        Family("x", "x", 32, False, "m:f", task="detection")
    assert set(TASKS) >= {f.task for f in FAMILIES.values()}


def test_variant_order_starts_with_the_float32_reference():
    assert list(VARIANTS) == ["float32", "float16", "dynamic", "int8", "pruned-int8", "pqat-int8", "qat-int8", "filter-pruned-int8"]
    assert [v.name for v in VARIANTS.values() if v.pruned] == ["pruned-int8", "pqat-int8"]


@pytest.mark.train  # imports TensorFlow
def test_converter_and_benchmarks_use_the_registry(capsys):
    from benchmarks.matrix import ROW_ORDER
    from converters.__main__ import main
    from converters.build import CONVERTED, FILTER_PRUNED, ConvertConfig

    assert CONVERTED == tuple(v for v in VARIANTS if v != FILTER_PRUNED)  # the narrower network has its own command
    assert ConvertConfig(REPO, REPO).variants == CONVERTED
    assert ROW_ORDER == (*VARIANTS, "keras")
    with pytest.raises(SystemExit):
        main(["--help"])
    assert ",".join(CONVERTED) in capsys.readouterr().out.replace("\n", "").replace(" ", "")


def test_benchmark_dtype_is_the_variants(tiny_models):
    from edgecxr.evaluation import benchmark

    r = benchmark.measure(str(tiny_models["int8"]), runs=1, warmup=0)
    assert r["dtype"] == VARIANTS["int8"].dtype


@pytest.mark.train  # imports TensorFlow
def test_quantize_converts_as_the_registry_says(tiny_models, tmp_path):
    import numpy as np
    import tf_keras as keras

    from conftest import toy_images
    from converters.quantize import convert
    from edgecxr.core.interpreter import make_interpreter

    model = keras.models.load_model(tiny_models["int8"].parent / "tiny.keras")
    x, _ = toy_images(20)
    for name in ("float16", "pruned-int8"):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(convert(model, name, x))
        interpreter = make_interpreter(str(path))
        for detail in (interpreter.get_input_details()[0], interpreter.get_output_details()[0]):
            assert np.dtype(detail["dtype"]).name == VARIANTS[name].io_dtype
    with pytest.raises(ValueError, match="unknown variant 'int4'"):
        convert(model, "int4")


def test_training_help_lists_the_registry_without_importing_tensorflow():
    code = (
        "import runpy, sys\n"
        "sys.argv = ['training', '--help']\n"
        "try:\n    runpy.run_module('training', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('TF' if 'tensorflow' in sys.modules or 'tf_keras' in sys.modules else 'no TF')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("no TF")
    assert "{resnet18,mlp12}" in done.stdout
    assert "default 128 resnet18, 64 mlp12" in done.stdout


@pytest.mark.train  # imports TensorFlow
def test_training_builds_a_family_from_its_dotted_builder():
    fam = FAMILIES["resnet18"]
    model = fam.build(32, 3, width=8, bn_momentum=0.9, epochs=3, input_size=None)  # as train() passes a TrainConfig's fields
    assert model.name == "resnet18" and model.output_shape == (None, 3)
    assert FAMILIES["mlp12"].build(16, 2, width=8).name == "mlp12"
