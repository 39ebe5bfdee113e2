"""The lung-field model: U-Net shape, Keras <-> TFLite <-> runtime agreement, `edgecxr lungs`, the no-lung-fields rule."""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks.nonxray import non_xray_images
from conftest import child_env
from edgecxr import ModelError, load_model
from edgecxr.cli import main
from edgecxr.core.card import ModelCard, read_card, write_card
from edgecxr.core.cardparts import SegmentationVerification
from edgecxr.core.embedded import embedded_facts
from edgecxr.core.families import FAMILIES
from edgecxr.core.imageio import load_image
from edgecxr.core.lungs import LUNG_SPEC, NO_LUNGS_WARNING, LungModel, dice, iou, load_lung_model, lung_fraction, lung_outline, segmentation_report, spec_box
from edgecxr.core.preprocess import PreprocessSpec, preprocess, scale_box, to_original
from edgecxr.core.registry import LUNG_MODEL, MODELS_DIR, bundled_models

LUNG_JSON_KEYS = {"file", "lung_fraction", "mask", "warnings"}


def val_rows(shared_data, n: int) -> list[dict]:
    """The first ``n`` lungmask val rows of each source."""
    with (shared_data / "lungmask" / "manifest.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "val"]
    return [r for s in ("openist", "ieee") for r in [r for r in rows if r["source"] == s][:n]]


def truth(shared_data, row) -> np.ndarray:
    return np.asarray(cv2.imread(str(shared_data / "lungmask" / row["mask"]), cv2.IMREAD_GRAYSCALE)) > 127


def test_dice_and_iou_on_known_masks():
    a = np.zeros((10, 10), np.uint8)
    b = np.zeros((10, 10), np.uint8)
    a[:, :5], b[:, 2:7] = 255, 255
    assert dice(a, b) == pytest.approx(0.6)  # 2 * 30 / (50 + 50)
    assert iou(a, b) == pytest.approx(30 / 70)
    assert dice(a * 0, b * 0) == 1.0 and lung_fraction(a) == 0.5


@pytest.mark.train
def test_unet_builds_with_the_right_output_shape():
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from training.unet import build_unet

    model = build_unet(128)
    assert model.output_shape == (None, 128, 128, 1)
    assert 500_000 < model.count_params() < 2_500_000
    assert model.layers[-1].activation.__name__ == "sigmoid"
    with pytest.raises(ValueError, match="divisible"):
        build_unet(100)
    via_registry = FAMILIES["lungs"].build(64, 2, widths=(8, 16, 32, 64, 128), width=32)  # settings it does not take are ignored
    assert via_registry.output_shape == (None, 64, 64, 1) and via_registry.name == "lungs"
    # convolving before upsampling: the same layers and parameters, the decoder's first conv on a quarter of the pixels
    coarse = build_unet(64, widths=(8, 16, 32, 64), up_first=False)
    fine = build_unet(64, widths=(8, 16, 32, 64))
    assert coarse.output_shape == fine.output_shape and coarse.count_params() == fine.count_params()
    assert coarse.get_layer("dec1_up_conv").output_shape == (None, 32, 32, 8) and fine.get_layer("dec1_up_conv").output_shape == (None, 64, 64, 8)


@pytest.mark.train
@pytest.mark.slow
def test_keras_tflite_runtime_masks_agree_on_val_films(shared_data, tmp_path):
    """A small U-Net briefly trained on real films: float32 TFLite equals Keras, int8 is close, through LungModel."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tf_keras as keras

    from converters.quantize import convert
    from edgecxr.core.lungs import mask_at_size
    from edgecxr.core.preprocess import PreprocessSpec
    from training import lung_data
    from training.lungs import dice_bce_loss
    from training.unet import build_unet

    spec = {**LUNG_SPEC, "size": [64, 64]}
    keras.utils.set_random_seed(0)
    data = lung_data.load_lungmask(shared_data / "lungmask", spec)
    train, val = data["train"], data["val"]
    model = build_unet(64, widths=(8, 16, 32, 64))
    model.compile(keras.optimizers.Adam(3e-3), loss=dice_bce_loss)
    model.fit(train.x[:192], train.y[:192], batch_size=16, epochs=4, verbose=0)
    films = list(range(0, len(val.x), 20))  # 5 films, both sources
    keras_masks = [mask_at_size(p[..., 0], val.masks[i].shape, spec) for i, p in zip(films, model.predict(val.x[films], verbose=0))]
    assert np.mean([dice(m, val.masks[i]) for m, i in zip(keras_masks, films)]) > 0.7  # it learned lungs, so agreement means something
    runtime = {}
    for variant in ("float32", "int8"):
        path = tmp_path / f"lungs-{variant}.tflite"
        path.write_bytes(convert(model, variant, train.x[:50]))
        write_card(path, ModelCard(name=f"lungs-{variant}", labels=("background", "lung"), preprocessing=PreprocessSpec.from_dict(spec), family="lungs", variant=variant))
        net = LungModel(path)
        runtime[variant] = [net.lungs(cv2.imread(str(shared_data / "lungmask" / val.files[i]), cv2.IMREAD_GRAYSCALE)) for i in films]
    assert min(dice(a, b) for a, b in zip(runtime["float32"], keras_masks)) > 0.995
    assert np.mean([dice(a, b) for a, b in zip(runtime["int8"], runtime["float32"])]) > 0.95


def test_bundled_lung_model_reproduces_its_card_on_val(shared_data):
    """All 100 val films through the runtime: masks 0/255 at each film's size, Dice per source as in the card."""
    net = load_lung_model()
    assert FAMILIES[net.card.family].task == "segmentation"
    assert isinstance(net.card.verification, SegmentationVerification) and net.card.verification.passed
    rows = val_rows(shared_data, 1000)
    masks, truths = [], []
    for row in rows:
        masks.append(net.lungs(str(shared_data / "lungmask" / row["image"])))
        truths.append(truth(shared_data, row))
        assert masks[-1].shape == truths[-1].shape and masks[-1].dtype == np.uint8 and set(np.unique(masks[-1])) <= {0, 255}
    report = segmentation_report(masks, truths, [r["source"] for r in rows])
    card = net.card.metrics["val"]
    assert report["n"] == card["n"] == 100
    assert report["dice_mean"] == pytest.approx(card["dice_mean"], abs=1e-4)
    for source, metrics in card["per_source"].items():
        assert report["per_source"][source]["dice_mean"] == pytest.approx(metrics["dice_mean"], abs=1e-4)


def test_thorax_masks_are_told_apart_from_lung_field_masks(shared_data):
    """The masks NOT_LUNG_OUTLINES names cover most of the film and the mediastinum; every other mask leaves the midline open."""
    with (shared_data / "lungmask" / "manifest.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    thorax = [r for r in rows if not lung_outline(r)]
    assert len(thorax) == 39 and {r["source"] for r in thorax} == {"ieee"} and sum(r["split"] == "val" for r in thorax) == 7
    for r in thorax[:10] + [r for r in rows if lung_outline(r)][:10]:
        mask = truth(shared_data, r)
        h, w = mask.shape
        midline = mask[int(0.3 * h) : int(0.7 * h), int(0.45 * w) : int(0.55 * w)].mean()
        assert (mask.mean() > 0.6 and midline == 1.0) == (not lung_outline(r)), r["image"]


def test_lung_model_is_not_a_classifier_and_back():
    assert LUNG_MODEL not in {p.stem for p in bundled_models()}
    with pytest.raises(ModelError, match="segmentation"):
        LungModel(MODELS_DIR / "resnet18-int8.tflite")


def test_classifier_model_delegates_to_the_bundled_lung_model(shared_data):
    film = str(shared_data / "lungmask" / val_rows(shared_data, 1)[0]["image"])
    assert np.array_equal(load_model().lungs(film), load_lung_model().lungs(film))


def test_no_lung_fields_rule_on_a_generated_image_and_on_a_real_film(shared_data):
    net = load_lung_model()
    film = net.segment(str(shared_data / "lungmask" / val_rows(shared_data, 1)[0]["image"]))
    assert film.found and 0.1 < film.lung_fraction < 0.6
    for kind, image in non_xray_images(seed=7, per_kind=1):
        if kind in ("uniform noise", "text page", "colour scene"):
            result = net.segment(image)
            assert not result.found, kind
            assert result.mask.shape == image.shape[:2]


def test_the_no_lungs_check_reads_a_large_film_at_its_working_size(shared_data):
    """The check needs the lung fraction, not a 6000 x 5000 mask (7900 x 7900 took predict to 644 MB; benchmarks.memory)."""
    film = cv2.imread(str(shared_data / "lungmask" / val_rows(shared_data, 1)[0]["image"]), cv2.IMREAD_GRAYSCALE)
    big = cv2.resize(film, (5000, 6000), interpolation=cv2.INTER_LINEAR)
    net = load_lung_model()
    full, work = net.segment(big), net.segment(big, full_size=False)
    assert (full.mask.shape, work.mask.shape) == ((6000, 5000), (2048, 1707))
    assert work.found == full.found is True
    assert work.lung_fraction == pytest.approx(full.lung_fraction, abs=1e-3)


def test_classifier_prediction_warns_when_no_lung_fields_are_found(shared_data):
    """The bundled chest-film classifier runs the lung model: a generated non-X-ray is flagged, a real film is not."""
    model = load_model()
    film = model.predict(str(shared_data / "lungmask" / val_rows(shared_data, 1)[0]["image"]))
    assert "no_lungs" not in [c.code for c in film.checks]
    gradient = np.tile(np.linspace(0, 1, 256, dtype=np.float32), (256, 1))
    flagged = model.predict(gradient)
    check = next(c for c in flagged.checks if c.code == "no_lungs")
    assert check.message in flagged.warnings and check.message.startswith("no lung fields found")
    assert check.value is not None and 0.0 <= check.value < 0.05


def test_lungs_command_writes_masks_at_each_input_size(shared_data, tmp_path):
    fullres = sorted((shared_data / "cxr3-fullres").rglob("*.jp*g"))[0]  # a large JPEG original
    film = shared_data / "lungmask" / val_rows(shared_data, 1)[0]["image"]
    noise = tmp_path / "noise.png"
    cv2.imwrite(str(noise), non_xray_images(seed=3, per_kind=1)[2][1])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    out = tmp_path / "masks"
    result = CliRunner().invoke(main, ["lungs", str(fullres), str(film), str(noise), str(broken), "--out", str(out), "--json"])
    assert result.exit_code == 1, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(fullres), str(film), str(noise), str(broken)]
    for line, source in zip(lines[:3], (fullres, film, noise)):
        assert set(line) == LUNG_JSON_KEYS
        mask = cv2.imread(line["mask"], cv2.IMREAD_UNCHANGED)
        assert line["mask"] == str(out / f"{source.stem}.lungs.png")
        assert mask.shape == cv2.imread(str(source), cv2.IMREAD_GRAYSCALE).shape
        assert set(np.unique(mask)) <= {0, 255}
        assert line["lung_fraction"] == pytest.approx(np.count_nonzero(mask) / mask.size, abs=1e-4)
    assert lines[0]["warnings"] == [] and lines[1]["warnings"] == [] and lines[2]["warnings"] == [NO_LUNGS_WARNING]
    assert set(lines[3]) == {"file", "error"}
    assert f"error: {broken}: " in result.stderr and "Traceback" not in result.stderr


def test_lungs_command_refuses_a_model_that_is_not_a_lung_model(tmp_path):
    result = CliRunner().invoke(main, ["lungs", str(tmp_path), "--out", str(tmp_path / "o"), "--model", str(MODELS_DIR / "mlp12-int8.tflite")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "segmentation" in result.stderr


def test_runtime_never_imports_tensorflow_for_lungs():
    code = "import sys, edgecxr.core.lungs, edgecxr.cli; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=child_env(), timeout=120)
    assert out.stdout.strip() == "False"


def test_the_lung_card_is_a_current_model_card():
    """One card schema for every model: the bundled lung card round-trips, its family says the task, its parts are typed."""
    path = MODELS_DIR / f"{LUNG_MODEL}.tflite"
    data = json.loads(path.with_suffix(".json").read_text())
    card = ModelCard.from_dict(data, path)
    assert card.to_dict() == data and "task" not in data
    assert card.sha256 == "904ed526e4a5c8985376b2feb2ebd0ff15c55a26ed5834352825390fad8241d2"  # 1.3.0: the 64 px U-Net of run G
    assert card.version == "1.3.0" and "64x64" in card.changelog[-1].change and "run G" in card.changelog[-1].change
    assert embedded_facts(path.read_bytes()) == {"labels": list(card.labels), "preprocessing": card.preprocessing.to_dict(), "output_kind": "probabilities"}
    assert card.preprocessing.size == (64, 64)
    assert card.architecture == FAMILIES["lungs"].describe(64, 64, 135_345, widths=[8, 16, 32, 64], decoder="3x3 conv at the coarser level, then nearest upsampling")
    assert isinstance(card.verification, SegmentationVerification) and card.verification.mask_dice_vs_float32_mean == 0.9981
    assert set(card.metrics or {}) == {"val", "val_lung_outlines", "float32_val", "float32_val_lung_outlines"}
    assert card.metrics["val"]["dice_mean"] == 0.9325 and card.metrics["val_lung_outlines"]["dice_mean"] == 0.9518
    assert dict(card.targets or {})["dice"] == {"target": 0.95, "reached": 0.9518, "met": True}
    assert dict(card.targets or {})["dice_worst_source"] == {"target": 0.95, "reached": 0.9415, "met": False}
    assert card.training is not None and dict(card.training.counts) == {"train": (524,), "val": (100,)}
    assert card.notes is not None and "thresholds it at 0.5" in card.notes and "opacified" in card.notes


@pytest.mark.parametrize("change, message", [
    ({"task": "segmentation"}, "model card has unknown keys ['task']"),
    ({"notes": ""}, "notes must be a non-empty string"),
    ({"verification": read_card(MODELS_DIR / "resnet18-int8.tflite").to_dict()["verification"]}, "verification has unknown keys"),
    ({"family": "resnet18"}, "verification has unknown keys"),  # a classifier's verification part is read for a classifier family
])
def test_a_lung_card_that_does_not_fit_is_refused_in_one_line(tmp_path, change, message):
    path = tmp_path / "lungs-int8.tflite"
    path.write_bytes((MODELS_DIR / path.name).read_bytes())
    path.with_suffix(".json").write_text(json.dumps({**json.loads((MODELS_DIR / "lungs-int8.json").read_text()), **change}))
    with pytest.raises(ModelError) as exc:
        LungModel(path)
    assert str(exc.value).startswith(f"{path.with_suffix('.json')}: ") and message in str(exc.value) and "\n" not in str(exc.value)


def test_lung_card_written_with_the_typed_api_loads(tmp_path):
    path = tmp_path / "lungs-int8.tflite"
    path.write_bytes((MODELS_DIR / path.name).read_bytes())
    card = write_card(path, dataclasses.replace(read_card(MODELS_DIR / path.name), notes="another note"))
    assert LungModel(path).card == card and card.notes == "another note"


# --- the "lungs" crop of the preprocessing spec ---

LUNG_CROP = {"size": [64, 64], "crop": "lungs"}


def test_lung_crop_box_holds_the_lung_fields_and_falls_back_to_the_whole_image(shared_data):
    film = load_image(str(shared_data / "lungmask" / val_rows(shared_data, 1)[0]["image"])).pixels
    top, left, bottom, right = spec_box(film, LUNG_CROP)
    h, w = film.shape
    assert 0 <= top < bottom <= h and 0 <= left < right <= w
    rows, cols = np.nonzero(load_lung_model().lungs(film))
    assert top <= rows.min() and rows.max() < bottom and left <= cols.min() and cols.max() < right
    assert (bottom - top) * (right - left) < h * w  # it crops something
    gradient = np.tile(np.linspace(0, 1, 200, dtype=np.float32), (150, 1))
    assert spec_box(gradient, LUNG_CROP) == (0, 0, 150, 200)  # no lung fields: the whole image


def test_lung_crop_is_the_same_in_training_and_at_runtime(shared_data, tmp_path):
    """Training decodes through the same preprocess (in threads); the runtime passes the box it computed once."""
    from training.multiroot import load_report_split

    split = load_report_split(shared_data / "cxr3-plus", "external", ["COVID", "Normal", "Pneumonia"], LUNG_CROP, workers=3)
    for file, x in list(zip(split.files, split.x))[:4]:
        pixels = load_image(file).pixels
        box = spec_box(pixels, LUNG_CROP)
        np.testing.assert_array_equal(x, preprocess(pixels, LUNG_CROP, box))
        top, left, bottom, right = box
        np.testing.assert_array_equal(x, preprocess(pixels[top:bottom, left:right], {"size": [64, 64]}))


def test_to_original_fills_the_lung_crop_box_only():
    box = (10, 20, 60, 90)
    back = to_original(np.ones((8, 8), np.float32), (100, 120), LUNG_CROP, box)
    assert back.shape == (100, 120)
    assert back[10:60, 20:90].min() == 1.0 and back.sum() == 50 * 70
    with pytest.raises(ValueError, match="crop box"):
        to_original(np.ones((8, 8)), (100, 120), LUNG_CROP)
    assert scale_box(box, (100, 120), (50, 60)) == (5, 10, 30, 45)


@pytest.mark.train
def test_a_lungs_crop_model_predicts_and_maps_its_heatmap_into_the_box(shared_data, tiny_models, tmp_path):
    """The tiny CNN re-labelled as a lungs-crop model (its facts re-embedded): input, heatmap and refusal of another lung model."""
    from converters.embed import embed_facts

    path = tmp_path / "crop.tflite"
    card = dataclasses.replace(read_card(tiny_models["int8"]), preprocessing=PreprocessSpec(size=(32, 32), crop="lungs", lung_model=load_lung_model().card.sha256))
    path.write_bytes(embed_facts(tiny_models["int8"].read_bytes(), card.to_dict()))
    write_card(path, card)
    model = load_model(path)
    film = load_image(str(shared_data / "lungmask" / val_rows(shared_data, 1)[0]["image"])).pixels
    box = spec_box(film, model.card.preprocessing)
    top, left, bottom, right = box
    prediction = model.predict(film, heatmap=True)
    np.testing.assert_allclose(list(prediction.probabilities.values()), model.predict_preprocessed(preprocess(film, model.card.preprocessing, box)), atol=1e-6)
    assert prediction.heatmap is not None and prediction.heatmap.shape == film.shape
    assert prediction.heatmap[top:bottom, left:right].max() == pytest.approx(1.0)
    outside = np.ones(film.shape, bool)
    outside[top:bottom, left:right] = False
    assert not prediction.heatmap[outside].any()
    other = dataclasses.replace(card, preprocessing=dataclasses.replace(card.preprocessing, lung_model="0" * 64))
    path.write_bytes(embed_facts(tiny_models["int8"].read_bytes(), other.to_dict()))
    write_card(path, other)
    with pytest.raises(ModelError, match="bundled one is"):
        load_model(path)
