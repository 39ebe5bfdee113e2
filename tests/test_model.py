"""The Python API: load_model, Model.predict and Prediction, on the tiny trained models."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace

import cv2
import numpy as np
import pytest

from conftest import TINY_LABELS, child_env, copy_model, toy_images
from edgecxr import ImageError, Model, ModelError, Prediction, load_image, load_model
from edgecxr.core.card import ModelCard, read_card, sha256_of, write_card
from edgecxr.core.checks import Check, input_checks
from edgecxr.core.imageio import from_array
from edgecxr.core.preprocess import PreprocessSpec

VARIANTS = ("float32", "int8")
PREDICTION_KEYS = {"file", "model", "label", "probabilities", "latency_ms", "timings_ms", "warnings", "checks", "abnormal_score", "tied", "head"}


def toy64(cls: int, seed: int = 0) -> np.ndarray:
    """A 64x64 float image in [0, 1] of the toy class ``cls`` (each pixel of a 32x32 toy image doubled).

    Area resizing back to the model's 32x32 gives the original toy image exactly.
    """
    x, y = toy_images(3, seed=seed)
    assert y[cls] == cls
    return np.repeat(np.repeat(x[cls, :, :, 0], 2, axis=0), 2, axis=1)


def smooth(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A smooth, X-ray-like random image (no noise texture): a few blobs brighter in the middle."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0.2, 0.5, (4, 4)).astype(np.float32)
    small[1:3, 1:3] += 0.4  # a bright mediastinum, as on a film (not an inverted one)
    return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def as_u8(img: np.ndarray) -> np.ndarray:
    return np.round(img * 255.0).astype(np.uint8)


def as_u16(img: np.ndarray) -> np.ndarray:
    return np.round(img * 65535.0).astype(np.uint16)


@pytest.fixture(scope="module")
def models(tiny_models) -> dict[str, Model]:
    return {variant: load_model(tiny_models[variant]) for variant in VARIANTS}


# --- loading -----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_load_model(tiny_models, variant):
    model = load_model(tiny_models[variant])
    assert isinstance(model, Model)
    assert model.name == f"tiny-{variant}"
    assert model.labels == TINY_LABELS
    assert model.path == tiny_models[variant]
    assert model.card.preprocessing.size == (32, 32)
    assert model.card.sha256 == sha256_of(tiny_models[variant])
    assert list(model.input_details["shape"]) == [1, 32, 32, 1]
    assert int(model.output_details["shape"][-1]) == 3
    expected_dtype = np.float32 if variant == "float32" else np.int8
    assert np.dtype(model.input_details["dtype"]) == expected_dtype
    assert np.dtype(model.output_details["dtype"]) == expected_dtype


def test_load_model_accepts_str_path(tiny_models):
    assert load_model(str(tiny_models["int8"])).name == "tiny-int8"


def test_load_model_missing_file(tmp_path):
    with pytest.raises(ModelError, match="no such model file"):
        load_model(tmp_path / "absent.tflite")


def test_load_model_unknown_name():
    with pytest.raises(ModelError, match="not a bundled model"):
        load_model("no-such-model-name")


# --- predicting --------------------------------------------------------------------------------


def check_prediction(p: Prediction, model: Model) -> None:
    assert isinstance(p, Prediction)
    assert list(p.probabilities) == model.labels
    assert abs(sum(p.probabilities.values()) - 1.0) < 1e-5
    assert all(0.0 <= v <= 1.0 for v in p.probabilities.values())
    assert p.label == max(p.probabilities, key=p.probabilities.__getitem__)
    assert p.latency_ms > 0
    assert p.model == model.name


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("cls", range(3))
def test_predict_array_labels(models, variant, cls):
    model = models[variant]
    p = model.predict(toy64(cls, seed=cls + 7))
    check_prediction(p, model)
    assert p.label == TINY_LABELS[cls]
    assert p.probabilities[TINY_LABELS[cls]] > 0.5
    assert p.file is None
    assert p.warnings == []


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("cls", range(3))
def test_predict_uint8_array(models, variant, cls):
    model = models[variant]
    p = model.predict(as_u8(toy64(cls, seed=3)))
    check_prediction(p, model)
    assert p.label == TINY_LABELS[cls]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("cls", range(3))
def test_predict_png_file(models, tmp_path, variant, cls):
    model = models[variant]
    path = tmp_path / f"{TINY_LABELS[cls]}.png"
    assert cv2.imwrite(str(path), as_u8(toy64(cls, seed=11)))
    p = model.predict(path)
    check_prediction(p, model)
    assert p.label == TINY_LABELS[cls]
    assert p.file == str(path)
    assert p.warnings == []
    # str paths work the same way
    q = model.predict(str(path))
    assert q.label == p.label
    assert q.file == str(path)
    assert q.probabilities == pytest.approx(p.probabilities, abs=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("cls", [1, 2])  # the dark class ends below 16384: read as 14-bit data (tests/test_bit_depth.py)
def test_predict_16bit_png(models, tmp_path, variant, cls):
    model = models[variant]
    img = toy64(cls, seed=5)
    path = tmp_path / "sixteen.png"
    assert cv2.imwrite(str(path), as_u16(img))
    assert load_image(path).bit_depth == 16
    p = model.predict(path)
    check_prediction(p, model)
    assert p.label == TINY_LABELS[cls]
    # a 16-bit file and the same image as 8 bits agree closely
    u8_path = tmp_path / "eight.png"
    assert cv2.imwrite(str(u8_path), as_u8(img))
    q = model.predict(u8_path)
    assert q.label == p.label
    for label in TINY_LABELS:
        assert q.probabilities[label] == pytest.approx(p.probabilities[label], abs=0.02)


@pytest.mark.parametrize("variant", VARIANTS)
def test_predict_loaded_image(models, tmp_path, variant):
    path = tmp_path / "striped.png"
    cv2.imwrite(str(path), as_u8(toy64(2)))
    loaded = load_image(path)
    p = models[variant].predict(loaded)
    assert p.label == "striped"
    assert p.file == str(path)  # a loaded image remembers the file it came from


def test_predict_rgb_gray_array_same_as_gray(models):
    gray = as_u8(toy64(1, seed=2))
    rgb = np.stack([gray] * 3, axis=-1)
    a, b = models["float32"].predict(gray), models["float32"].predict(rgb)
    assert a.label == b.label == "bright"
    assert b.warnings == []
    for label in TINY_LABELS:
        assert a.probabilities[label] == pytest.approx(b.probabilities[label], abs=1e-3)


@pytest.mark.parametrize("cls", range(3))
def test_int8_agrees_with_float32(models, cls):
    for seed in range(3):
        img = toy64(cls, seed=100 + seed)
        f, q = models["float32"].predict(img), models["int8"].predict(img)
        assert f.label == q.label == TINY_LABELS[cls]
        for label in TINY_LABELS:
            assert q.probabilities[label] == pytest.approx(f.probabilities[label], abs=0.05)


def test_the_cards_spec_is_validated_when_loading_not_per_image(tiny_models, monkeypatch):
    model = load_model(tiny_models["int8"])
    assert isinstance(model.card.preprocessing, PreprocessSpec)
    model.predict(toy64(0), heatmap=True)  # the bundled lung model is loaded (its card read) on a first heatmap: that is a load too

    def refuse(*args):
        raise AssertionError("preprocessing spec validated again")

    monkeypatch.setattr(PreprocessSpec, "from_dict", classmethod(refuse))
    for cls in range(3):
        assert model.predict(toy64(cls), heatmap=True).label == TINY_LABELS[cls]
    with pytest.raises(AssertionError, match="validated again"):
        load_model(tiny_models["int8"])  # reading a card is where it is validated


def test_predict_preprocessed_matches_predict(models):
    x, y = toy_images(6, seed=42)
    for variant in VARIANTS:
        model = models[variant]
        for img, cls in zip(x, y):
            probs = model.predict_preprocessed(img)
            assert probs.shape == (3,)
            assert probs.dtype == np.float32
            assert abs(float(probs.sum()) - 1.0) < 1e-5
            assert int(np.argmax(probs)) == cls
            p = model.predict(img[:, :, 0])
            assert [p.probabilities[k] for k in TINY_LABELS] == pytest.approx(list(probs), abs=1e-6)


def test_threads_and_xnnpack_options_give_same_answer(tiny_models, models):
    img = toy64(2, seed=9)
    plain = models["float32"].predict(img)
    for kwargs in ({"threads": 1}, {"threads": 2}, {"xnnpack": False}):
        other = load_model(tiny_models["float32"], **kwargs).predict(img)
        assert other.label == plain.label == "striped"
        for label in TINY_LABELS:
            assert other.probabilities[label] == pytest.approx(plain.probabilities[label], abs=1e-4)


def test_predict_missing_file_raises_image_error(models, tmp_path):
    path = tmp_path / "absent.png"
    with pytest.raises(ImageError) as info:
        models["int8"].predict(path)
    assert info.value.path == str(path)
    assert info.value.reason == "no such file"


def test_predict_bad_array_shape(models):
    with pytest.raises(ValueError, match="expected a 2-D gray"):
        models["int8"].predict(np.zeros((8, 8, 2), np.uint8))


# --- Prediction.to_dict ------------------------------------------------------------------------


def test_to_dict_keys_and_values(models, tmp_path):
    path = tmp_path / "dark.png"
    cv2.imwrite(str(path), as_u8(toy64(0)))
    p = models["int8"].predict(path)
    d = p.to_dict()
    assert set(d) == PREDICTION_KEYS
    assert list(d) == ["file", "model", "label", "probabilities", "latency_ms", "timings_ms", "warnings", "checks", "abnormal_score", "tied", "head"]
    assert d["abnormal_score"] is None  # the tiny model has no Normal label
    assert d["file"] == str(path)
    assert d["model"] == "tiny-int8"
    assert d["label"] == "dark"
    assert list(d["probabilities"]) == TINY_LABELS
    assert abs(sum(d["probabilities"].values()) - 1.0) < 1e-5
    assert d["latency_ms"] == round(p.latency_ms, 3)
    assert d["warnings"] == [] and d["checks"] == []
    assert json.loads(json.dumps(d)) == d  # JSON-serialisable as is


def test_to_dict_rounds_and_copies():
    p = Prediction("a", {"a": 0.123456789, "b": 0.876543211}, 1.23456789, "m", None, [Check("code", "w", 0.5)])
    d = p.to_dict()
    assert d == {
        "file": None,
        "model": "m",
        "label": "a",
        "probabilities": {"a": 0.123457, "b": 0.876543},
        "latency_ms": 1.235,
        "timings_ms": {},
        "warnings": ["w"],
        "checks": [{"code": "code", "message": "w", "value": 0.5}],
        "abnormal_score": None,
        "tied": [],
        "head": "bundled",
    }
    d["warnings"].append("x")
    assert p.warnings == ["w"]


# --- input warnings ----------------------------------------------------------------------------


def test_warning_nearly_uniform(models):
    noise = np.random.default_rng(5).normal(0.5, 0.005, (128, 128)).astype(np.float32)
    p = models["int8"].predict(noise)
    assert len(p.warnings) == 1
    assert "blank" in p.warnings[0]
    assert abs(sum(p.probabilities.values()) - 1.0) < 1e-5


def test_constant_image_is_refused(models):
    with pytest.raises(ImageError, match=r"<array>: blank image \(every pixel is 0.500\)"):
        models["int8"].predict(np.full((128, 128), 0.5, np.float32))


def test_constant_file_is_refused_naming_it(models, tmp_path):
    path = tmp_path / "black.png"
    cv2.imwrite(str(path), np.zeros((100, 100), np.uint8))
    with pytest.raises(ImageError, match=r"black.png: blank image \(every pixel is 0.000\)"):
        models["float32"].predict(path)


def test_warning_colour(models):
    rng = np.random.default_rng(0)
    rgb = np.zeros((128, 128, 3), np.uint8)
    rgb[..., 0] = rng.integers(150, 255, (128, 128))  # red
    rgb[:, 64:, 1] = 200  # and yellow-green on the right
    p = models["int8"].predict(rgb)
    assert len(p.warnings) == 1
    assert "colour" in p.warnings[0]


def test_warning_colour_from_file(models, tmp_path):
    bgr = np.zeros((100, 100, 3), np.uint8)
    bgr[..., 2] = 255  # pure red
    bgr[:50, :, 0] = 255  # magenta top half
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), bgr)
    p = models["int8"].predict(path)
    assert any("colour" in w for w in p.warnings)


def test_warning_small(models):
    img = smooth((40, 40), 1)
    p = models["int8"].predict(img)
    assert len(p.warnings) == 1
    assert "small" in p.warnings[0]
    assert "40x40" in p.warnings[0]


def test_warning_aspect(models):
    img = smooth((100, 600), 2)
    p = models["int8"].predict(img)
    assert len(p.warnings) == 1
    assert "aspect" in p.warnings[0]
    assert "600x100" in p.warnings[0]


def test_warning_aspect_tall(models):
    img = smooth((600, 100), 3)
    p = models["int8"].predict(img)
    assert len(p.warnings) == 1
    assert "aspect" in p.warnings[0]


def test_several_warnings_together(models):
    strip = np.zeros((20, 200), np.uint8)
    strip[10, 100] = 1  # not constant, so it is predicted (with warnings), not refused
    p = models["int8"].predict(strip)
    joined = " | ".join(p.warnings)
    assert len(p.warnings) == 3
    assert "small" in joined and "aspect" in joined and "blank" in joined


@pytest.mark.parametrize("cls", range(3))
def test_no_warnings_for_normal_image(models, cls):
    assert models["int8"].predict(toy64(cls, seed=21)).warnings == []
    assert models["float32"].predict(as_u8(toy64(cls, seed=22))).warnings == []


def test_warnings_do_not_stop_prediction(models):
    p = models["float32"].predict(np.random.default_rng(4).uniform(0, 1, (40, 40)).astype(np.float32))
    assert p.label in TINY_LABELS
    assert abs(sum(p.probabilities.values()) - 1.0) < 1e-5


# --- card checks on load -----------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_tampered_model_refused(tiny_models, tmp_path, variant):
    path = copy_model(tiny_models[variant], tmp_path)
    load_model(path)  # an untouched copy loads
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256") as info:
        load_model(path)
    assert str(path) in str(info.value)
    assert "does not match its card" in str(info.value)


def test_card_labels_wrong_length_refused(tiny_models, tmp_path):
    path = copy_model(tiny_models["int8"], tmp_path)
    write_card(path, replace(read_card(path), labels=("dark", "bright"), cam=None))  # sha still matches: only the label count is wrong
    assert read_card(path).sha256 == sha256_of(path)
    with pytest.raises(ModelError) as info:
        load_model(path)
    assert str(info.value) == f"{path}: its card disagrees with the model file on labels; the card was edited or belongs to another model"


def test_card_too_many_labels_refused(tiny_models, tmp_path):
    path = copy_model(tiny_models["float32"], tmp_path)
    write_card(path, replace(read_card(path), labels=("a", "b", "c", "d"), cam=None))
    with pytest.raises(ModelError, match="disagrees with the model file on labels"):
        load_model(path)


def test_card_size_mismatch_refused(tiny_models, tmp_path):
    path = copy_model(tiny_models["int8"], tmp_path)
    write_card(path, replace(read_card(path), preprocessing=PreprocessSpec(size=(64, 64))))
    with pytest.raises(ModelError, match="disagrees with the model file on preprocessing"):
        load_model(path)


def test_missing_card_refused(tiny_models, tmp_path):
    path = tmp_path / "orphan.tflite"
    shutil.copyfile(tiny_models["int8"], path)
    with pytest.raises(ModelError, match="card") as info:
        load_model(path)
    assert "orphan.json" in str(info.value)


def test_garbage_tflite_refused(tmp_path):
    path = tmp_path / "garbage.tflite"
    path.write_bytes(os.urandom(64) + b"this is not a flatbuffer" * 20)
    write_card(path, ModelCard(name="garbage", labels=tuple(TINY_LABELS), preprocessing=PreprocessSpec(size=(32, 32))))
    with pytest.raises(ModelError, match="not a valid TFLite model") as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_bad_preprocessing_in_card_refused(tiny_models, tmp_path):
    path = copy_model(tiny_models["int8"], tmp_path)
    card = json.loads(path.with_suffix(".json").read_text())
    card["preprocessing"]["crop"] = "weird"
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="crop 'weird'"):
        load_model(path)


def test_card_invalid_json_refused(tiny_models, tmp_path):
    path = copy_model(tiny_models["int8"], tmp_path)
    path.with_suffix(".json").write_text("{")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(path)


# --- quantization ------------------------------------------------------------------------------


def test_int8_input_quantization(models):
    model = models["int8"]
    scale, zero = model.input_details["quantization"]
    assert scale == pytest.approx(1 / 255, rel=1e-3)
    assert zero == -128
    q = model.quantize_input(np.array([0.0, 1.0]))
    assert q.dtype == np.int8
    assert q.tolist() == [-128, 127]
    # the general formula, with the tensor's own parameters, clipped to int8
    x = np.array([0.0, 0.25, 0.5, 0.75, 1.0, -1.0, 2.0], np.float32)
    expected = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
    assert model.quantize_input(x).tolist() == expected.tolist()
    assert model.quantize_input(np.array([-1.0, 2.0])).tolist() == [-128, 127]


def test_int8_output_dequantization(models):
    model = models["int8"]
    scale, zero = model.output_details["quantization"]
    assert scale > 0
    y = np.array([zero + 10, zero + 30, zero + 60], np.int8)
    probs = model.dequantize_output(y)
    raw = (y.astype(np.float32) - zero) * scale
    np.testing.assert_allclose(probs, raw / raw.sum(), rtol=1e-6)
    np.testing.assert_allclose(probs, [0.1, 0.3, 0.6], rtol=1e-6)
    # all at the zero point: no information, uniform probabilities
    uniform = model.dequantize_output(np.full(3, zero, np.int8))
    np.testing.assert_allclose(uniform, [1 / 3] * 3, rtol=1e-6)


def test_float_model_passes_values_through(models):
    model = models["float32"]
    x = np.array([0.0, 0.5, 1.0], np.float64)
    q = model.quantize_input(x)
    assert q.dtype == np.float32
    assert q.tolist() == [0.0, 0.5, 1.0]
    np.testing.assert_allclose(model.dequantize_output(np.array([0.2, 0.3, 0.5], np.float32)), [0.2, 0.3, 0.5], rtol=1e-6)
    # negative values are clipped and the rest renormalised
    np.testing.assert_allclose(model.dequantize_output(np.array([-1.0, 1.0, 3.0], np.float32)), [0.0, 0.25, 0.75], rtol=1e-6)


# --- no TensorFlow at run time -----------------------------------------------------------------


def test_predict_does_not_import_tensorflow(tiny_models, tmp_path):
    png = tmp_path / "striped.png"
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import cv2
        import edgecxr
        assert "tensorflow" not in sys.modules, "import edgecxr pulled in tensorflow"
        x = np.random.default_rng(0).uniform(0, 0.25, (64, 64))
        x[:, ::8] = 1.0
        x[:, 1::8] = 1.0
        cv2.imwrite({str(png)!r}, np.round(x * 255).astype(np.uint8))
        model = edgecxr.load_model({str(tiny_models["int8"])!r})
        p = model.predict({str(png)!r})
        print("LABEL", p.label)
        print("TF_LOADED", "tensorflow" in sys.modules)
        print("TF_ANY", sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow.")))
        assert "tensorflow" not in sys.modules
        print("NO_TENSORFLOW_OK")
        """
    )
    env = child_env()
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "LABEL striped" in lines
    assert "TF_LOADED False" in lines
    assert "TF_ANY []" in lines
    assert "NO_TENSORFLOW_OK" in lines


# --- structured checks -------------------------------------------------------------------------


def test_checks_carry_code_message_and_value(models):
    strip = np.zeros((20, 200), np.uint8)
    strip[10, 100] = 1
    p = models["int8"].predict(strip)
    assert [c.code for c in p.checks] == ["small_image", "extreme_aspect", "nearly_uniform"]
    assert p.warnings == [c.message for c in p.checks]
    assert p.checks[0].value == 20.0 and p.checks[1].value == 10.0
    assert 0 < p.checks[2].value < 0.02
    d = p.to_dict()
    assert d["checks"][1] == {"code": "extreme_aspect", "message": p.warnings[1], "value": 10.0}


def test_generic_profile_leaves_out_chest_film_checks():
    noise = from_array(np.random.default_rng(1).uniform(0, 1, (200, 200)).astype(np.float32))
    assert [c.code for c in input_checks(noise)] == ["noise"]
    assert input_checks(noise, profile="generic") == []
    tiny = from_array(np.random.default_rng(1).uniform(0, 1, (30, 30)).astype(np.float32))
    assert [c.code for c in input_checks(tiny, profile="generic")] == ["small_image"]
    with pytest.raises(ValueError, match="unknown check profile 'mri'"):
        input_checks(noise, profile="mri")


def test_model_uses_the_profile_its_card_names(tiny_models, tmp_path):
    for f in (tiny_models["int8"], tiny_models["int8"].with_suffix(".json")):
        shutil.copy(f, tmp_path / f.name)
    card_file = tmp_path / tiny_models["int8"].with_suffix(".json").name
    card = json.loads(card_file.read_text())
    assert card["checks"] == "generic"  # the tiny model was trained on toy images
    card["checks"] = "chest-xray"
    card_file.write_text(json.dumps(card))
    noise = np.random.default_rng(2).uniform(0, 1, (200, 200)).astype(np.float32)
    assert [c.code for c in load_model(tmp_path / tiny_models["int8"].name).predict(noise).checks] == ["noise", "no_lungs"]
    assert load_model(tiny_models["int8"]).predict(noise).checks == []
