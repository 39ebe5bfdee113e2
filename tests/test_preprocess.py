"""Tests for edgecxr.core.preprocess: output contract, cropping, dtype handling, spec validation (once), CLAHE."""
from __future__ import annotations

import numpy as np
import pytest

from edgecxr.core.preprocess import PreprocessSpec, preprocess

DEFAULT_SPEC = PreprocessSpec()


def stripes(height: int, width: int) -> np.ndarray:
    """Black left/right quarters, white centre half (float in [0, 1])."""
    img = np.zeros((height, width), np.float32)
    img[:, width // 4 : 3 * width // 4] = 1.0
    return img


# --------------------------------------------------------------------------- output contract


def test_default_output_shape_dtype_range():
    rng = np.random.default_rng(0)
    out = preprocess(rng.integers(0, 256, (300, 250), dtype=np.uint8), DEFAULT_SPEC)
    assert out.shape == (224, 224, 1)
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out.std() > 0.01  # random input stays non-trivial


def test_empty_spec_means_defaults():
    img = np.random.default_rng(1).random((64, 48)).astype(np.float32)
    np.testing.assert_array_equal(preprocess(img, {}), preprocess(img, DEFAULT_SPEC))


def test_size_is_height_width():
    out = preprocess(np.zeros((50, 60), np.uint8), {"size": [32, 48]})
    assert out.shape == (32, 48, 1)
    out = preprocess(np.zeros((50, 60), np.uint8), {"size": (7, 5)})
    assert out.shape == (7, 5, 1)


@pytest.mark.parametrize("interpolation", ["area", "linear", "cubic"])
def test_upscaling_and_downscaling_stay_in_range(interpolation):
    rng = np.random.default_rng(2)
    for shape in [(10, 12), (500, 400)]:
        img = (rng.random(shape) > 0.5).astype(np.float32)  # hard edges make cubic overshoot
        out = preprocess(img, {"interpolation": interpolation, "size": [64, 64]})
        assert out.shape == (64, 64, 1)
        assert out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0


def test_does_not_modify_input():
    img = np.linspace(0, 1, 40 * 30, dtype=np.float32).reshape(40, 30)
    before = img.copy()
    preprocess(img, {"crop": "center-square", "clahe": True, "size": [16, 16]})
    np.testing.assert_array_equal(img, before)


def test_spatial_layout_is_preserved():
    img = np.zeros((100, 100), np.float32)
    img[:50, :] = 1.0  # top half white
    out = preprocess(img, {"size": [10, 10]})[:, :, 0]
    np.testing.assert_allclose(out[:5], 1.0)
    np.testing.assert_allclose(out[5:], 0.0)


# --------------------------------------------------------------------------- crop


def test_crop_none_squashes_whole_wide_image():
    img = stripes(100, 200)
    out = preprocess(img, {"crop": "none", "size": [40, 40]})[:, :, 0]
    np.testing.assert_allclose(out[:, :10], 0.0, atol=1e-6)  # black quarters survive
    np.testing.assert_allclose(out[:, 10:30], 1.0, atol=1e-6)
    np.testing.assert_allclose(out[:, 30:], 0.0, atol=1e-6)


def test_center_square_drops_the_sides_of_a_wide_image():
    out = preprocess(stripes(100, 200), {"crop": "center-square", "size": [40, 40]})
    np.testing.assert_allclose(out, 1.0, atol=1e-6)  # only the white centre 100x100 remains


def test_center_square_on_tall_image():
    img = np.zeros((200, 100), np.float32)
    img[50:150, :] = 1.0
    out = preprocess(img, {"crop": "center-square", "size": [20, 20]})
    np.testing.assert_allclose(out, 1.0, atol=1e-6)
    squashed = preprocess(img, {"crop": "none", "size": [20, 20]})[:, :, 0]
    np.testing.assert_allclose(squashed[:5], 0.0, atol=1e-6)
    np.testing.assert_allclose(squashed[-5:], 0.0, atol=1e-6)


def test_center_square_is_noop_for_square_image():
    img = np.random.default_rng(3).random((64, 64)).astype(np.float32)
    a = preprocess(img, {"crop": "center-square", "size": [32, 32]})
    b = preprocess(img, {"crop": "none", "size": [32, 32]})
    np.testing.assert_array_equal(a, b)


def test_center_square_with_odd_margin():
    # 5 columns wide, 2 tall: the centred 2x2 square starts at column (5-2)//2 = 1
    img = np.array([[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]], np.float32) / 4
    out = preprocess(img, {"crop": "center-square", "size": [2, 2]})[:, :, 0]
    np.testing.assert_allclose(out, [[0.25, 0.5], [0.25, 0.5]], atol=1e-6)


# --------------------------------------------------------------------------- intensities


@pytest.mark.parametrize("value", [0.0, 0.37, 1.0])
@pytest.mark.parametrize("crop", ["none", "center-square"])
@pytest.mark.parametrize("interpolation", ["area", "linear", "cubic"])
def test_constant_image_stays_constant(value, crop, interpolation):
    img = np.full((90, 130), value, np.float32)
    out = preprocess(img, {"crop": crop, "interpolation": interpolation, "size": [64, 64]})
    np.testing.assert_allclose(out, value, atol=1e-6)


def test_uint8_uint16_float_inputs_agree():
    rng = np.random.default_rng(4)
    u8 = rng.integers(0, 256, (120, 90), dtype=np.uint8)
    u16 = u8.astype(np.uint16) * 257  # 255 -> 65535: the same intensities
    f32 = u8.astype(np.float32) / 255.0
    f64 = u8.astype(np.float64) / 255.0
    for spec in ({}, {"crop": "center-square", "size": [50, 40]}, {"interpolation": "cubic"}):
        ref = preprocess(u8, spec)
        for other in (u16, f32, f64):
            np.testing.assert_allclose(preprocess(other, spec), ref, atol=1e-6)


def test_known_levels_map_to_unit_range():
    out8 = preprocess(np.full((10, 10), 51, np.uint8), {"size": [4, 4]})
    out16 = preprocess(np.full((10, 10), 13107, np.uint16), {"size": [4, 4]})
    np.testing.assert_allclose(out8, 0.2, atol=1e-6)
    np.testing.assert_allclose(out16, 0.2, atol=1e-6)
    np.testing.assert_allclose(preprocess(np.full((4, 4), 65535, np.uint16), {"size": [2, 2]}), 1.0)


def test_float_input_is_clipped_to_unit_range():
    img = np.full((8, 8), 2.5, np.float32)
    img[:4] = -1.0
    out = preprocess(img, {"size": [8, 8]})[:, :, 0]
    np.testing.assert_allclose(out[:4], 0.0)
    np.testing.assert_allclose(out[4:], 1.0)


def test_rejects_non_2d_image():
    with pytest.raises(ValueError, match=r"2-D grayscale image, got shape \(10, 10, 3\)"):
        preprocess(np.zeros((10, 10, 3), np.uint8), DEFAULT_SPEC)
    with pytest.raises(ValueError, match="2-D"):
        preprocess(np.zeros((10,), np.uint8), DEFAULT_SPEC)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_])
def test_rejects_unsupported_dtype(dtype):
    with pytest.raises(ValueError, match="unsupported image dtype"):
        preprocess(np.zeros((10, 10), dtype), DEFAULT_SPEC)


# --------------------------------------------------------------------------- CLAHE


def test_clahe_changes_low_contrast_image():
    # smooth low-contrast structure: intensities only span 0.45..0.55
    y, x = np.mgrid[0:256, 0:256]
    img = (0.5 + 0.05 * np.sin(x / 10.0) * np.sin(y / 13.0)).astype(np.float32)
    plain = preprocess(img, {"size": [128, 128]})
    equalised = preprocess(img, {"size": [128, 128], "clahe": True})
    assert plain.shape == equalised.shape == (128, 128, 1)
    assert equalised.dtype == np.float32
    assert equalised.min() >= 0.0 and equalised.max() <= 1.0
    assert np.ptp(plain) == pytest.approx(0.1, abs=0.01)
    assert np.abs(equalised - plain).max() > 0.05
    assert equalised.std() > 2 * plain.std()  # contrast went up
    assert np.ptp(equalised) > 2 * np.ptp(plain)


def test_clahe_false_is_the_default():
    img = np.random.default_rng(5).random((64, 64)).astype(np.float32)
    np.testing.assert_array_equal(preprocess(img, {"clahe": False}), preprocess(img, DEFAULT_SPEC))


# --------------------------------------------------------------------------- PreprocessSpec.from_dict


def test_from_dict_fills_defaults():
    full = PreprocessSpec.from_dict({"size": (64, 32), "clahe": 1})
    assert full == PreprocessSpec(size=(64, 32), clahe=True)
    assert full.size == (64, 32) and isinstance(full.size, tuple)
    assert full.clahe is True
    assert PreprocessSpec.from_dict({}) == DEFAULT_SPEC
    assert PreprocessSpec.from_dict(DEFAULT_SPEC.to_dict()) == DEFAULT_SPEC


def test_to_dict_is_the_card_form_with_the_clahe_parameters():
    assert PreprocessSpec(size=(128, 96)).to_dict() == {
        "color": "grayscale", "crop": "none", "size": [128, 96], "interpolation": "area", "scale": "0-1",
        "clahe": False, "clahe_clip_limit": 2.0, "clahe_tile_grid": 8,
    }


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown preprocessing keys") as info:
        PreprocessSpec.from_dict({"normalise": True, "size": [224, 224]})
    assert "normalise" in str(info.value)


@pytest.mark.parametrize(
    "key,value",
    [
        ("crop", "left"),
        ("crop", None),
        ("color", "rgb"),
        ("interpolation", "nearest"),
        ("scale", "imagenet"),
        ("size", [224]),
        ("size", [224, 224, 1]),
        ("size", [0, 224]),
        ("size", [224, -1]),
        ("size", [224.0, 224]),
        ("size", ["224", "224"]),
        ("size", 224),
        ("size", "ab"),
        ("size", None),
        ("size", [True, True]),
        ("clahe", "yes"),
        ("clahe", 2),
        ("clahe_clip_limit", 0),
        ("clahe_clip_limit", -1.0),
        ("clahe_clip_limit", float("nan")),
        ("clahe_clip_limit", "2"),
        ("clahe_tile_grid", 0),
        ("clahe_tile_grid", 8.0),
        ("clahe_tile_grid", True),
    ],
)
def test_from_dict_rejects_bad_values_naming_the_key(key, value):
    with pytest.raises(ValueError) as info:
        PreprocessSpec.from_dict({key: value})
    assert key in str(info.value)


def test_preprocess_validates_spec():
    with pytest.raises(ValueError, match="crop"):
        preprocess(np.zeros((10, 10), np.uint8), {"crop": "middle"})
    with pytest.raises(ValueError, match="unknown preprocessing keys"):
        preprocess(np.zeros((10, 10), np.uint8), {"mean": 0.5})


def test_a_spec_is_validated_once_not_per_image(monkeypatch):
    """preprocess() given a PreprocessSpec uses it as it is; plain data is validated on each call."""
    spec = PreprocessSpec.from_dict({"size": [16, 16], "clahe": True})
    img = np.random.default_rng(6).random((40, 40)).astype(np.float32)
    expected = preprocess(img, spec)
    calls = []
    original = PreprocessSpec.from_dict.__func__
    monkeypatch.setattr(PreprocessSpec, "from_dict", classmethod(lambda cls, data: calls.append(data) or original(cls, data)))
    for _ in range(3):
        np.testing.assert_array_equal(preprocess(img, spec), expected)
    assert calls == []
    np.testing.assert_array_equal(preprocess(img, spec.to_dict()), expected)
    assert calls == [spec.to_dict()]


def test_clahe_parameters_come_from_the_spec():
    y, x = np.mgrid[0:256, 0:256]
    img = (0.5 + 0.05 * np.sin(x / 10.0) * np.sin(y / 13.0)).astype(np.float32)
    default = preprocess(img, PreprocessSpec(size=(128, 128), clahe=True))
    assert np.array_equal(default, preprocess(img, PreprocessSpec(size=(128, 128), clahe=True, clahe_clip_limit=2.0, clahe_tile_grid=8)))
    gentle = preprocess(img, PreprocessSpec(size=(128, 128), clahe=True, clahe_clip_limit=1.0))
    coarse = preprocess(img, PreprocessSpec(size=(128, 128), clahe=True, clahe_tile_grid=2))
    assert gentle.std() < default.std()  # a lower clip limit equalises less
    assert np.abs(coarse - default).max() > 0.05  # other tiles, other local histograms


@pytest.mark.parametrize("spec", [{}, {"crop": "center-square"}, {"clahe": True}, {"interpolation": "cubic", "size": [64, 96]}])
def test_a_float_film_in_range_is_preprocessed_without_a_copy_and_exactly_as_when_copied(spec):
    """Decoded films (float32 in [0, 1]) skip the clip-and-copy: same output to the bit, input untouched; out-of-range floats still clip."""
    rng = np.random.default_rng(3)
    film = rng.uniform(0.0, 1.0, (300, 240)).astype(np.float32)
    before = film.copy()
    out = preprocess(film, spec)
    assert np.array_equal(out, preprocess(np.clip(film.astype(np.float64), 0.0, 1.0), spec)) and np.array_equal(film, before)
    wild = film * 3.0 - 1.0
    assert np.array_equal(preprocess(wild, spec), preprocess(np.clip(wild, 0.0, 1.0), spec))
