"""The reduced JPEG decode (``decode_min_side`` in a card's spec): the decode rule, the spec, the model and the bundled release.

Films are built in code, or read from ``../shared/data/cxr3-fullres`` (full-size originals).
"""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import child_env, copy_model
from edgecxr import load_image, load_model
from edgecxr.core.card import read_card
from edgecxr.core.cardparts import Verification
from edgecxr.core.imageio import as_loaded, jpeg_factor
from edgecxr.core.preprocess import PreprocessSpec, preprocess
from edgecxr.core.registry import bundled_models, resolve


def film(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A chest-like uint8 gray film: two dark lung fields on a brighter body, with noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    body = 170 - 90 * (np.exp(-((xx - 0.3) ** 2 + (yy - 0.5) ** 2) / 0.03) + np.exp(-((xx - 0.7) ** 2 + (yy - 0.5) ** 2) / 0.03))
    return np.clip(body + rng.normal(0, 6, (height, width)), 0, 255).astype(np.uint8)


def test_jpeg_factor_keeps_both_sides_at_least_min_side():
    assert jpeg_factor(900, 1200, 256) == 2  # 1/4 would give 225 rows
    assert jpeg_factor(1021, 1100, 256) == 4  # libjpeg rounds a reduced side up: 1021 / 4 gives 256 rows
    assert jpeg_factor(1020, 1100, 256) == 2  # 1/4 would give 255
    assert jpeg_factor(4000, 4000, 256) == 4  # never 1/8 for min_side: it would average the pixel noise away
    assert jpeg_factor(500, 500, 256) == 1
    assert jpeg_factor(900, 1200, None) == 1  # no rule: decoded in full (WORK_SIDE alone)
    assert jpeg_factor(9000, 9000, None) == 4  # the WORK_SIDE rule still reduces a huge film


def test_load_image_min_side_decodes_a_large_jpeg_reduced(tmp_path):
    path = tmp_path / "film.jpg"
    cv2.imwrite(str(path), film(900, 1200))
    full, reduced = load_image(path), load_image(path, 256)
    assert full.pixels.shape == (900, 1200) and full.file_shape is None
    assert reduced.pixels.shape == (450, 600)
    assert reduced.original_shape == (900, 1200) and reduced.decode_min_side == 256
    # libjpeg's scaled decode is close to an area reduction of the full decode
    assert np.abs(reduced.pixels - cv2.resize(full.pixels, (600, 450), interpolation=cv2.INTER_AREA)).mean() < 0.01
    png = tmp_path / "film.png"
    cv2.imwrite(str(png), film(900, 1200))
    assert load_image(png, 256).pixels.shape == (900, 1200)  # PNG decoders cannot reduce: read in full


def test_neither_decode_turns_a_jpeg_by_its_exif_orientation(tmp_path):
    path = tmp_path / "phone.jpg"
    ok, buf = cv2.imencode(".jpg", film(900, 1200))
    data = buf.tobytes()
    # an APP1 Exif segment, little-endian TIFF, one IFD entry: Orientation (0x0112) = 6 (turned 90 degrees)
    tiff = b"II*\x00\x08\x00\x00\x00" + b"\x01\x00" + b"\x12\x01\x03\x00\x01\x00\x00\x00\x06\x00\x00\x00" + b"\x00\x00\x00\x00"
    app1 = b"\xff\xe1" + (len(tiff) + 8).to_bytes(2, "big") + b"Exif\x00\x00" + tiff
    path.write_bytes(data[:2] + app1 + data[2:])
    assert load_image(path).pixels.shape == (900, 1200)
    assert load_image(path, 256).pixels.shape == (450, 600)  # the same way up, half the size


def test_a_jpeg_by_another_name_is_read_as_a_jpeg(tmp_path):
    path = tmp_path / "film.jfif"
    cv2.imwrite(str(path.with_suffix(".jpg")), film(900, 1200))
    path.with_suffix(".jpg").rename(path)
    loaded = load_image(path)
    assert loaded.format == "jpeg" and as_loaded(loaded, 256)[0].pixels.shape == (450, 600)


def test_odd_inputs_as_jpeg_files_are_flagged_at_least_as_by_the_full_decode(shared_data, tmp_path):
    from dataclasses import replace

    from odd_inputs import odd_inputs

    model = load_model()
    rng = np.random.default_rng(0)
    noise = [(f"uniform noise {h}x{w}", rng.integers(0, 256, (h, w), dtype=np.uint8)) for h, w in ((600, 600), (1200, 1200), (2500, 3000))]
    written = 0
    for i, (name, image) in enumerate([*odd_inputs(shared_data), *noise]):
        if image.dtype != np.uint8 or min(image.shape[:2]) < 512:  # what a JPEG holds, and large enough to be read reduced
            continue
        path = tmp_path / f"odd{i}.jpg"
        cv2.imwrite(str(path), image if image.ndim == 2 else image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        full = replace(load_image(path), source=None)  # no source: predict takes these pixels as they are
        assert model.read(path).pixels.shape != full.pixels.shape, name
        expected = {c.code for c in model.predict(full).checks}
        got = {c.code for c in model.predict(path).checks}
        assert expected <= got, f"{name}: {sorted(expected - got)} fire on the full decode only"
        written += 1
    assert written >= 5


def test_as_loaded_reads_a_jpeg_again_only_when_the_rule_changes_its_size(tmp_path):
    big, small = tmp_path / "big.jpg", tmp_path / "small.jpg"
    cv2.imwrite(str(big), film(900, 1200))
    cv2.imwrite(str(small), film(300, 400))
    full = load_image(big)
    again, source = as_loaded(full, 256)
    assert again.pixels.shape == (450, 600) and source == str(big)
    small_full = load_image(small)
    assert as_loaded(small_full, 256)[0] is small_full  # the same size either way: not read again


@pytest.mark.parametrize("bad", [64, 100, "256", True, 255.0])
def test_spec_refuses_a_decode_min_side_below_the_input(bad):
    with pytest.raises(ValueError, match="decode_min_side"):
        PreprocessSpec.from_dict({"size": [128, 128], "decode_min_side": bad})


def test_spec_stores_decode_min_side_only_when_set():
    assert "decode_min_side" not in PreprocessSpec().to_dict()
    spec = PreprocessSpec.from_dict({"size": [128, 128], "decode_min_side": 256})
    assert spec.to_dict()["decode_min_side"] == 256
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec


def test_the_bundled_classifiers_decode_large_jpegs_reduced_and_passed_the_check():
    for name in bundled_models():
        card = read_card(resolve(name))
        assert card.preprocessing.decode_min_side == 256, name
        assert isinstance(card.verification, Verification) and card.verification.reduced_decode is not None, name
        check = card.verification.reduced_decode
        assert check.passed and check.same_checks and check.agreement >= check.min_agreement and check.films >= 20, name


def test_predict_reads_a_large_jpeg_reduced_and_stays_close_to_the_full_decode(shared_data):
    model = load_model()
    spec = model.card.preprocessing
    films = sorted(p for p in (shared_data / "cxr3-fullres").rglob("*.jp*g") if min(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE).shape) >= 1000)[:4]
    assert len(films) == 4
    for path in films:
        p = model.predict(path)
        assert model.read(path).pixels.shape[0] < 1000  # what the model saw: a reduced decode
        assert model.predict(load_image(path)).probabilities == p.probabilities  # a full LoadedImage is read again by the card's rule
        full = model.predict_preprocessed(preprocess(load_image(path).pixels, spec))
        assert max(abs(a - b) for a, b in zip(p.probabilities.values(), full)) < 0.05
        assert p.label == model.labels[int(np.argmax(full))]


@pytest.mark.train
def test_converters_decode_embeds_checks_and_records_the_rule(tiny_models, tmp_path):
    films = tmp_path / "films"
    films.mkdir()
    for i in range(4):
        cv2.imwrite(str(films / f"f{i}.jpg"), film(1100, 1400, seed=i))  # read at 1/2 with 300 px, in full by the reference
    src = copy_model(resolve("mlp12-int8"), tmp_path, "mlp12-int8")

    def convert(model, min_side, out):
        return subprocess.run([sys.executable, "-m", "converters.decode", str(model), "--min-side", str(min_side), "--films", str(films), "--out", str(out)],
                              capture_output=True, text=True, env=child_env())

    run = convert(src, 300, tmp_path / "out")
    assert run.returncode == 0, run.stderr
    card = json.loads((tmp_path / "out" / "mlp12-int8.json").read_text())
    assert card["preprocessing"]["decode_min_side"] == 300
    check = card["verification"]["reduced_decode"]
    assert check["films"] == 4 and check["passed"] is True and 0 < check["max_abs_probability_diff"] < 0.2  # 550 vs 1100 rows: not identical
    assert check["min_agreement"] == 0.98  # the release gate's agreement_with_own_float
    assert card["sha256"] != read_card(src).sha256
    assert load_model(tmp_path / "out" / "mlp12-int8.tflite").read(films / "f0.jpg").pixels.shape == (550, 700)
    for model, min_side, error in ((src, 8, "decode_min_side"), (copy_model(tiny_models["int8"], tmp_path, "tiny"), 64, "not a classifier card with a verification")):
        bad = convert(model, min_side, tmp_path / "o2")
        assert bad.returncode == 2 and error in bad.stderr and "Traceback" not in bad.stderr
