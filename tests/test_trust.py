"""Heatmaps (class activation maps from the model's own feature map), temperature scaling, odd inputs."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks.heatmaps import in_frame, lung_mask_in_frame, lung_share, map_agreement, mass_fractions
from benchmarks.trust import check_reference, gradcam_agreement, lung_share_targets, reference_agreement
from benchmarks.trust import main as trust_main
from conftest import toy_images, toy_u8
from edgecxr import ModelError, load_model
from edgecxr.cli import main
from edgecxr.core.calibration import apply_temperature, expected_calibration_error, fit_temperature, negative_log_likelihood
from edgecxr.core.cam import class_activation_map, normalise, overlay
from edgecxr.core.card import read_card, write_card
from edgecxr.core.cardparts import Temperature
from edgecxr.core.checks import input_checks
from edgecxr.core.imageio import from_array, load_image
from edgecxr.core.lungs import load_lung_model
from edgecxr.core.preprocess import preprocess, to_original
from edgecxr.evaluation.targets import targets


def messages(image):
    return [c.message for c in input_checks(image)]


@pytest.fixture(scope="module")
def keras_tiny(tiny_models):
    import os

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tf_keras as keras

    return keras.models.load_model(tiny_models["float32"].parent / "tiny.keras")


def keras_cams(model, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The same maps computed in Keras: the 'features' layer's output times the classifier's weights."""
    import tf_keras as keras

    features = keras.Model(model.input, model.get_layer("features").output).predict(x, verbose=0)
    kernel = model.get_layer("classifier").get_weights()[0]
    return np.einsum("nhwk,kn->nhw", features, kernel[:, classes])


# --- class activation maps ---------------------------------------------------------------------


@pytest.mark.train
def test_cam_of_float32_model_equals_keras(tiny_models, keras_tiny):
    x, y = toy_images(9, seed=3)
    model = load_model(tiny_models["float32"])
    runtime = np.stack([model.class_activation_map(img, int(c)) for img, c in zip(x, y)])
    expected = keras_cams(keras_tiny, x, y)
    assert runtime.shape == expected.shape == (9, 15, 15)
    assert runtime.dtype == np.float32
    np.testing.assert_allclose(runtime, expected, atol=1e-4)


@pytest.mark.train
def test_cam_of_int8_model_follows_keras(tiny_models, keras_tiny):
    x, y = toy_images(9, seed=4)
    model = load_model(tiny_models["int8"])
    assert np.dtype(model.feature_details["dtype"]) == np.int8
    runtime = np.stack([model.class_activation_map(img, int(c)) for img, c in zip(x, y)])
    expected = keras_cams(keras_tiny, x, y)
    for r, e in zip(runtime, expected):
        assert np.corrcoef(r.ravel(), e.ravel())[0, 1] > 0.98
    assert np.max(np.abs(runtime - expected)) < 0.1 * np.max(np.abs(expected))


def test_cam_mean_plus_bias_is_the_logit(tiny_models):
    """For GAP + dense the logit is the map's mean plus the bias: softmax of that gives the model's probabilities."""
    x, _ = toy_images(6, seed=5)
    model = load_model(tiny_models["float32"])
    bias = np.asarray(read_card(tiny_models["float32"]).cam.bias)
    for img in x:
        logits = np.array([model.class_activation_map(img, c).mean() for c in range(3)]) + bias
        softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose(softmax, model.predict_preprocessed(img), atol=1e-4)


def test_predict_heatmap_is_over_the_input_image(tiny_models):
    model = load_model(tiny_models["int8"])
    img = toy_u8(2, size=(90, 150))
    p = model.predict(img, heatmap=True)
    assert p.heatmap.shape == (90, 150)
    assert p.heatmap.dtype == np.float32
    assert p.heatmap.min() >= 0.0 and p.heatmap.max() == pytest.approx(1.0)
    assert "heatmap" not in p.to_dict()
    assert model.predict(img).heatmap is None


def test_heatmap_follows_the_evidence():
    """A map whose only positive evidence is in one corner stays in that corner after mapping back."""
    features = np.zeros((4, 4, 2), np.float32)
    features[0, 3, 1] = 2.0
    weights = np.array([[0.0, 0.0], [1.0, -1.0]], np.float32)
    cam = normalise(class_activation_map(features, weights, 0))
    full = to_original(cam, (200, 400), {"size": [4, 4], "crop": "none"})
    assert full.shape == (200, 400)
    assert full[:50, 300:].mean() > 0.5 and full[100:, :200].max() == 0.0
    assert normalise(class_activation_map(features, weights, 1)).max() == 0.0  # only negative evidence


def test_to_original_center_square_leaves_the_sides_empty():
    full = to_original(np.ones((4, 4), np.float32), (100, 160), {"size": [4, 4], "crop": "center-square"})
    assert full.shape == (100, 160)
    assert full[:, :30].max() == 0.0 and full[:, 130:].max() == 0.0
    assert full[:, 30:130].min() == pytest.approx(1.0)


def test_overlay_is_colour_and_keeps_shape():
    img = np.linspace(0, 1, 50 * 80, dtype=np.float32).reshape(50, 80)
    heat = np.zeros((50, 80), np.float32)
    heat[:, 40:] = 1.0
    out = overlay(img, heat)
    assert out.shape == (50, 80, 3) and out.dtype == np.uint8
    assert out[:, :40, 2].mean() < out[:, 40:, 2].mean()  # red (hot) on the right only
    assert overlay(cv2.resize(img, (160, 100)), heat).shape == (50, 80, 3)  # the image follows the heatmap's size


def test_overlay_stretches_a_dim_12_bit_film():
    film = np.random.default_rng(0).uniform(0, 4095 / 65535, (40, 40)).astype(np.float32)  # 12-bit data in 16 bits
    gray = overlay(film, np.zeros((40, 40), np.float32), alpha=0.0)
    assert gray.max() == 255 and gray.min() == 0


def test_heatmap_of_a_huge_image_is_capped_with_the_same_aspect(tiny_models):
    from edgecxr.core.cam import HEATMAP_MAX_SIDE, heatmap_shape

    assert heatmap_shape((3000, 6000)) == (HEATMAP_MAX_SIDE // 2, HEATMAP_MAX_SIDE)
    assert heatmap_shape((90, 150)) == (90, 150)
    big = cv2.resize(toy_u8(1), (4200, 2100), interpolation=cv2.INTER_NEAREST)
    p = load_model(tiny_models["int8"]).predict(big, heatmap=True)
    assert p.heatmap.shape == (1024, 2048)


def test_empty_heatmap_is_reported(tiny_models, tmp_path):
    path = tmp_path / "negative.tflite"
    shutil.copy(tiny_models["int8"], path)
    card = read_card(tiny_models["int8"])
    negative = tuple(map(tuple, -np.abs(np.asarray(card.cam.weights))))  # no positive evidence anywhere
    write_card(path, replace(card, cam=replace(card.cam, weights=negative)))
    p = load_model(path).predict(toy_u8(0), heatmap=True)
    assert p.heatmap.max() == 0.0
    assert p.warnings == [f"heatmap is empty: no positive evidence for {p.label} anywhere in the image"]


def test_cli_keeps_the_prediction_when_the_heatmap_cannot_be_written(tiny_models, tmp_path, monkeypatch):
    import edgecxr.cli

    cv2.imwrite(str(tmp_path / "s.png"), toy_u8(1))
    monkeypatch.setattr(edgecxr.cli.PictureWriter, "write", lambda self, *a: (_ for _ in ()).throw(OSError("disk full")))
    result = CliRunner().invoke(main, ["predict", str(tmp_path / "s.png"), "--model", str(tiny_models["int8"]), "--json", "--heatmap", str(tmp_path / "maps")])
    assert result.exit_code == 1
    line = json.loads(result.stdout)
    assert line["label"] == "bright" and line["heatmap"] is None
    assert "heatmap not written (disk full)" in result.stderr


@pytest.mark.train
def test_gradcam_is_the_runtime_cam_over_the_map_area(tiny_models, keras_tiny):
    from benchmarks.heatmaps import rank_correlation
    from training.gradcam import grad_cam

    x, y = toy_images(6, seed=8)
    reference = grad_cam(keras_tiny, x, y)
    model = load_model(tiny_models["float32"])
    device = np.stack([model.class_activation_map(img, int(c)) for img, c in zip(x, y)])
    assert reference.shape == device.shape == (6, 15, 15)
    np.testing.assert_allclose(reference * 15 * 15, device, atol=1e-3)
    assert rank_correlation(reference[0], device[0]) > 0.999
    assert rank_correlation(reference[0], -device[0]) < -0.999


def test_model_without_feature_map_has_no_heatmap(tiny_models, tmp_path):
    path = tmp_path / "nocam.tflite"
    shutil.copy(tiny_models["int8"], path)
    write_card(path, replace(read_card(tiny_models["int8"]), cam=None))
    model = load_model(path)
    assert not model.has_heatmap
    with pytest.raises(ModelError, match="no heatmap available"):
        model.predict(toy_u8(0), heatmap=True)
    result = CliRunner().invoke(main, ["predict", str(tmp_path), "--model", str(path), "--heatmap", str(tmp_path / "maps")])
    assert result.exit_code == 2
    assert "has no heatmap" in result.stderr


def test_card_heatmap_weights_of_wrong_shape_are_refused(tiny_models, tmp_path):
    path = tmp_path / "badcam.tflite"
    shutil.copy(tiny_models["int8"], path)
    card = read_card(tiny_models["int8"])
    write_card(path, replace(card, cam=replace(card.cam, weights=((0.0,) * 3,) * 5)))
    with pytest.raises(ModelError, match=r"heatmap weights have shape \(5, 3\), model needs \(8, 3\)"):
        load_model(path)


def test_cli_heatmap_writes_overlays_and_json(tiny_models, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cv2.imwrite(str(tmp_path / "a" / "scan.png"), toy_u8(1, size=(60, 100)))
    cv2.imwrite(str(tmp_path / "b" / "scan.png"), toy_u8(2, size=(80, 80)))
    (tmp_path / "b" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "maps"
    result = CliRunner().invoke(main, ["predict", str(tmp_path / "a"), str(tmp_path / "b"), "--model", str(tiny_models["int8"]), "--json", "--heatmap", str(out)])
    assert result.exit_code == 1  # the broken file, and only it, failed
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    ok = [line for line in lines if "label" in line]
    assert [line["file"].endswith("scan.png") for line in ok] == [True, True]
    paths = [line["heatmap"] for line in ok]
    assert paths == [str(out / "scan.heatmap.png"), str(out / "scan-2.heatmap.png")]  # same stem, nothing overwritten
    pictures = [cv2.imread(p) for p in paths]  # enlarged to MIN_WIDTH for legible text, the text band under the film
    assert [p.shape[1] for p in pictures] == [512, 512] and pictures[0].shape[0] > round(60 * 512 / 100) and pictures[1].shape[0] > 512
    assert [line["error"] for line in lines if "error" in line] == ["not a readable image (truncated, corrupt, or not an image format)"]


def test_cli_heatmap_folder_that_cannot_be_made(tiny_models, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cv2.imwrite(str(tmp_path / "s.png"), toy_u8(0))
    result = CliRunner().invoke(main, ["predict", str(tmp_path / "s.png"), "--model", str(tiny_models["int8"]), "--heatmap", str(blocker / "maps")])
    assert result.exit_code == 2
    assert "error: --heatmap: cannot create folder" in result.stderr


# --- heatmap measures and the reference comparison (benchmarks/heatmaps.py, benchmarks/trust.py) --


def test_lung_share_inside_half_and_outside_the_mask():
    lungs = np.zeros((8, 8), bool)
    lungs[2:6, 2:6] = True
    heat = np.zeros((8, 8), np.float32)
    heat[3:5, 3:5] = 0.7  # every bit of mass inside
    assert lung_share(heat, lungs) == 1.0
    heat[0, :4] = 0.7  # as much mass again outside
    assert lung_share(heat, lungs) == pytest.approx(0.5)
    assert lung_share(np.zeros((8, 8), np.float32), lungs) == 0.0  # an empty map has no mass anywhere
    assert mass_fractions(heat, {"in": lungs, "out": ~lungs}) == pytest.approx({"in": 0.5, "out": 0.5})


def test_in_frame_crops_the_mask_to_the_box_then_resizes():
    mask = np.zeros((100, 200), np.uint8)
    mask[:, :100] = 255  # the left half of the film is lung
    assert in_frame(mask, (0, 0, 100, 100), (4, 4)).all()
    shifted = in_frame(mask, (0, 50, 100, 150), (4, 4))  # a box straddling the edge of the mask
    assert shifted.dtype == bool and shifted[:, :2].all() and not shifted[:, 2:].any()


def test_lung_mask_in_frame_is_the_lung_models_mask_through_the_models_crop(shared_data):
    film = shared_data / "cxr3" / "test" / "Normal" / "kermany-NORMAL2-IM-0837-0001.png"
    lungs = load_lung_model()
    own = lungs.lungs(film)  # the film is smaller than WORK_SIDE: its read size is its own size
    frame = lung_mask_in_frame(lungs, load_image(film), {"size": [128, 128], "crop": "none"}, (128, 128))
    np.testing.assert_array_equal(frame, cv2.resize(own, (128, 128), interpolation=cv2.INTER_NEAREST) > 0)
    assert 0.2 < frame.mean() < 0.6  # two lung fields, not the whole film
    square = lung_mask_in_frame(lungs, load_image(film), {"size": [64, 64], "crop": "center-square"}, (64, 64))
    h, w = own.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    np.testing.assert_array_equal(square, in_frame(own, (top, left, top + side, left + side), (64, 64)))
    assert lung_share(frame.astype(np.float32), frame) == 1.0 and lung_share((~frame).astype(np.float32), frame) == 0.0


def test_lung_share_target_is_the_generalization_one(tiny_models):
    (target,) = [t for t in targets("generalization") if t.key == "cam_lung_share_covid"]
    by_class = {"COVID": {"n": 10, "lung_share": 0.5}, "Normal": {"n": 10, "lung_share": 0.9}}
    (checked,) = lung_share_targets(load_model("resnet18-int8"), by_class)
    assert checked == target.check(0.5, "resnet18-int8")
    assert checked["met"] is (0.5 >= target.value) and checked["reached"] == 0.5
    assert lung_share_targets(load_model(tiny_models["int8"]), by_class) == []  # not a family the target names


def test_map_agreement_of_maps_with_themselves_and_their_negatives():
    maps = np.random.default_rng(0).normal(size=(5, 4, 4)).astype(np.float32)
    assert map_agreement(maps, maps) == {"same_peak_cell": 1.0, "images": 5, "median": 1.0, "mean": 1.0, "p5": 1.0, "share_at_least_0.9": 1.0}
    flipped = map_agreement(maps, -maps)
    assert flipped["median"] == -1.0 and flipped["same_peak_cell"] == 0.0 and flipped["share_at_least_0.9"] == 0.0


def test_reference_comparison_of_a_model_with_itself_and_with_its_float32_export(tiny_models):
    x, y = toy_images(9, seed=4)
    int8, float32 = load_model(tiny_models["int8"]), load_model(tiny_models["float32"])
    maps = np.stack([int8.class_activation_map(img, int(c)) for img, c in zip(x, y)])
    itself = reference_agreement(int8, x, y, maps)
    assert itself["reference"] == "tiny-int8 1.0.0" and itself["images"] == 9
    assert itself["median"] == itself["p5"] == itself["same_peak_cell"] == 1.0
    check_reference(int8, float32)  # same labels, input, map and dense weights
    exported = reference_agreement(float32, x, y, maps)
    assert exported["reference"] == "tiny-float32 1.0.0" and exported["sha256"] == read_card(tiny_models["float32"]).sha256
    assert exported["p5"] > 0.99 and exported["median"] < 1.0  # int8 moves the map a little, never its ranking much


@pytest.mark.train
def test_keras_comparison_agrees_with_the_float32_reference(tiny_models, tmp_path):
    """--keras (Grad-CAM on the Keras model) and --reference (the float32 export's CAM) measure the same thing."""
    (tmp_path / "run").mkdir()
    shutil.copy(tiny_models["float32"].parent / "tiny.keras", tmp_path / "run" / "best.keras")
    x, y = toy_images(9, seed=4)
    int8 = load_model(tiny_models["int8"])
    maps = np.stack([int8.class_activation_map(img, int(c)) for img, c in zip(x, y)])
    keras = gradcam_agreement(tmp_path / "run", int8, x, y, maps)
    reference = reference_agreement(load_model(tiny_models["float32"]), x, y, maps)
    assert keras["images"] == 9 and keras["same_peak_cell"] == reference["same_peak_cell"]
    assert keras["median"] == pytest.approx(reference["median"], abs=1e-3)


def test_reference_that_is_not_the_same_model_is_refused(tiny_models, tmp_path, capsys):
    path = tmp_path / "other.tflite"
    shutil.copy(tiny_models["float32"], path)
    card = read_card(tiny_models["float32"])
    write_card(path, replace(card, cam=replace(card.cam, weights=tuple(tuple(-w for w in row) for row in card.cam.weights))))
    with pytest.raises(ValueError, match="heatmap weights differ from tiny-int8's: not converted from the same model"):
        check_reference(load_model(tiny_models["int8"]), load_model(path))
    args = ["--model", str(tiny_models["int8"]), "--data", str(tmp_path / "none"), "--out", str(tmp_path / "out")]
    assert trust_main([*args, "--reference", "resnet18-float32"]) == 2  # refused before any film is read
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --reference: ") and "labels or preprocessing differ from tiny-int8's" in err and "\n" not in err
    assert not (tmp_path / "out").exists()


# --- temperature scaling -----------------------------------------------------------------------


def overconfident_case(n: int = 3000, sharpen: float = 3.0, seed: int = 0):
    """Labels drawn from softmax(z), reported probabilities softmax(sharpen * z): overconfident by design."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, 3))
    truth = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=p) for p in truth])
    reported = np.exp(sharpen * z) / np.exp(sharpen * z).sum(1, keepdims=True)
    return reported, y


def test_fit_temperature_recovers_the_miscalibration_and_lowers_ece():
    probs, y = overconfident_case()
    t = fit_temperature(probs, y)
    assert 2.6 < t < 3.4
    calibrated = apply_temperature(probs, t)
    before, after = expected_calibration_error(probs, y), expected_calibration_error(calibrated, y)
    assert before > 0.15 and after < 0.04
    assert negative_log_likelihood(calibrated, y) < negative_log_likelihood(probs, y)
    np.testing.assert_array_equal(calibrated.argmax(1), probs.argmax(1))  # never changes the answer
    np.testing.assert_allclose(calibrated.sum(1), 1.0, atol=1e-5)


def test_temperature_one_is_identity_and_ece_by_hand():
    probs = np.array([[0.9, 0.1], [0.6, 0.4]], np.float32)
    np.testing.assert_allclose(apply_temperature(probs, 1.0), probs, atol=1e-6)
    # bin of 0.9: right, gap 0.1; bin of 0.6: wrong, gap 0.6; each holds half the images
    assert expected_calibration_error(probs, np.array([0, 1])) == pytest.approx(0.35)
    with pytest.raises(ValueError, match="no images"):
        fit_temperature(probs[:0], np.array([], int))


def test_runtime_applies_the_card_temperature(tiny_models, tmp_path):
    path = tmp_path / "warm.tflite"
    shutil.copy(tiny_models["float32"], path)
    write_card(path, replace(read_card(tiny_models["float32"]), temperature=Temperature(2.0)))
    plain, warm = load_model(tiny_models["float32"]), load_model(path)
    x, _ = toy_images(3, seed=9)

    def softened(p: np.ndarray, t: float) -> np.ndarray:  # p ** (1 / T), renormalised: softmax(logits / T)
        q = p.astype(np.float64) ** (1 / t)
        return q / q.sum()

    for img in x:
        raw = plain.predict_preprocessed(img)
        np.testing.assert_allclose(warm.predict_preprocessed(img, calibrated=False), raw, atol=1e-6)
        np.testing.assert_allclose(warm.predict_preprocessed(img), softened(raw, 2.0), atol=1e-6)
        assert warm.predict_preprocessed(img).max() < raw.max()  # softer
    img = toy_u8(1)
    expected = softened(plain.predict_preprocessed(preprocess(img, warm.card.preprocessing)), 2.0)
    assert list(warm.predict(img).probabilities.values()) == pytest.approx(list(expected), abs=1e-5)


# --- odd inputs ---------------------------------------------------------------------------------


def test_each_warning_fires_on_its_case(shared_data):
    rng = np.random.default_rng(0)
    colour = cv2.resize(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), (400, 300), interpolation=cv2.INTER_CUBIC)
    xray = load_image(shared_data / "cxr3" / "test" / "Normal" / "kermany-NORMAL2-IM-0837-0001.png").pixels
    cases = {
        "colour": from_array(colour),
        "small": from_array(cv2.resize(xray, (50, 40), interpolation=cv2.INTER_AREA)),
        "aspect": from_array(xray[80:160, :]),
        "blank": from_array(rng.normal(0.4, 0.004, (200, 200)).astype(np.float32)),
        "noise": from_array(rng.uniform(0, 1, (200, 200)).astype(np.float32)),
        "negative": from_array(1.0 - xray),
    }
    assert messages(from_array(xray)) == []
    for word, image in cases.items():
        warnings = messages(image)
        assert word in warnings[0], (word, warnings)
        assert len(warnings) == 1 or word == "colour", (word, warnings)  # a colour field may also read as a negative


def test_warnings_rarely_fire_on_real_test_xrays(shared_data):
    """False alarms on the shared test split: two narrow crops (aspect > 2.5) and four off-centre films."""
    files = sorted((shared_data / "cxr3" / "test").rglob("*.png"))
    assert len(files) == 905
    fired = {f.name: w for f in files if (w := messages(load_image(f)))}
    kinds = sorted(w[0].split(" ")[1] for w in fired.values())
    assert kinds == ["a"] * 4 + ["aspect"] * 2, fired  # "possibly a negative ..." x4, "extreme aspect ..." x2
    assert all(len(w) == 1 for w in fired.values())
