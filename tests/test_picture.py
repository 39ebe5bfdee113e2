"""The result picture (edgecxr.core.picture) and `predict --heatmap`: the map inside the lung fields, of the right class, legend and text, size, format."""
from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest

from edgecxr import load_image, load_model
from edgecxr.cli import main
from edgecxr.core.model import Prediction
from edgecxr.core.picture import MAX_SIDE, MIN_WIDTH, NOTICE, encode, result_picture, text_lines

LABELS = ("COVID", "Normal", "Pneumonia")


def film(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return (0.3 + 0.4 * np.sin(xx / width * 9) ** 2 * np.cos(yy / height * 5) ** 2).astype(np.float32)


def lung_mask(height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    for cx in (0.33, 0.67):
        cv2.ellipse(mask, (round(cx * width), round(0.45 * height)), (round(0.12 * width), round(0.25 * height)), 0, 0, 360, 1, -1)
    return mask > 0


def prediction(probs: tuple[float, ...], heat: np.ndarray | None, shown: str | None = None, lungs: np.ndarray | None = None) -> Prediction:
    p = dict(zip(LABELS, probs))
    label = max(p, key=lambda k: p[k])
    return Prediction(label, p, 1.0, "resnet18-int8", heatmap=heat, heatmap_label=shown or (label if heat is not None else None), lungs=lungs)


def is_gray(pixels: np.ndarray) -> bool:
    return bool(np.all(pixels[..., 0] == pixels[..., 1]) and np.all(pixels[..., 1] == pixels[..., 2]))


def test_heatmap_is_drawn_inside_the_lung_fields_only():
    h, w = 900, 800
    heat = np.ones((h, w), np.float32)  # evidence everywhere: only the lung bounds can keep it off the corners
    picture = result_picture(film(h, w), prediction((0.8, 0.1, 0.1), heat), lung_mask(h, w))
    assert picture.dtype == np.uint8 and picture.ndim == 3 and max(picture.shape[:2]) <= MAX_SIDE
    scale = picture.shape[1] / w
    fh = round(h * scale)
    area = picture[:fh]
    corner = area[: fh // 10, : picture.shape[1] // 10]
    assert is_gray(corner) and is_gray(area[fh - fh // 12:, :])  # corners and the bottom band: the plain film
    left_lung = area[round(0.45 * fh) - 10: round(0.45 * fh) + 10, round(0.33 * picture.shape[1]) - 10: round(0.33 * picture.shape[1]) + 10].astype(int)
    assert np.abs(left_lung[..., 2] - left_lung[..., 0]).mean() > 40  # tinted (JET red at full evidence)


def test_without_lung_fields_the_map_covers_the_film_and_says_so():
    h, w = 300, 300
    p = prediction((0.8, 0.1, 0.1), np.ones((h, w), np.float32))
    picture = result_picture(film(h, w), p, None)
    assert not is_gray(picture[:20, :20])
    assert any("no lung fields found, shown over the whole image" in line for line in text_lines(p, bounded=False))


def test_picture_size_limits_and_the_original_untouched():
    big = film(3000, 2400)
    before = big.copy()
    picture = result_picture(big, prediction((0.8, 0.1, 0.1), np.zeros((2048, 1638), np.float32)), lung_mask(300, 240))
    assert MAX_SIDE - 64 <= max(picture.shape[:2]) <= MAX_SIDE and np.array_equal(big, before)
    small = result_picture(film(100, 80), prediction((0.8, 0.1, 0.1), None))
    assert small.shape[1] == MIN_WIDTH and small.shape[0] <= MAX_SIDE  # enlarged so the text can be read
    tall = result_picture(film(2500, 1000), prediction((0.8, 0.1, 0.1), np.zeros((250, 100), np.float32)), lung_mask(250, 100))
    assert max(tall.shape[:2]) <= MAX_SIDE


def test_colour_bar_and_text_band_are_in_the_picture():
    h, w = 600, 600
    picture = result_picture(film(h, w), prediction((0.8, 0.1, 0.1), np.ones((h, w), np.float32)), lung_mask(h, w))
    band = picture[round(h * picture.shape[1] / w):]
    assert band.shape[0] > 60 and band.any()
    rows = np.nonzero((band[..., 0].astype(int) - band[..., 2] > 150).sum(axis=1) > 100)[0]  # a long run of JET blue: the bar's low end
    assert len(rows) > 3
    bar = band[rows[len(rows) // 2]]
    coloured = bar[np.abs(bar.astype(int)[:, 0] - bar[:, 2]) > 100]
    assert coloured[0, 0] > coloured[0, 2] and coloured[-1, 2] > coloured[-1, 0]  # blue (low) on the left, red (high) on the right


def test_text_names_the_call_the_map_and_the_notice():
    p = prediction((0.891, 0.038, 0.071), np.ones((10, 10), np.float32))
    lines = text_lines(p)
    assert lines[0] == "COVID 0.891   (Pneumonia 0.071, Normal 0.038)"
    assert lines[1] == "heatmap: evidence for COVID"
    assert lines[-1] == f"edgecxr resnet18-int8: {NOTICE}"
    normal = prediction((0.1, 0.65, 0.25), np.ones((10, 10), np.float32), shown="Pneumonia")
    assert text_lines(normal)[1] == "heatmap: evidence for Pneumonia (the most likely abnormal class; the call is Normal)"
    tie = prediction((0.046, 0.477, 0.477), np.ones((10, 10), np.float32), shown="Pneumonia")
    assert text_lines(tie)[0] == "tie: Normal = Pneumonia 0.477   (COVID 0.046)"
    assert text_lines(tie)[1].endswith("(the most likely abnormal class; the call is a tie Normal / Pneumonia)")
    assert prediction((0.046, 0.477, 0.477), None).tied == ["Normal", "Pneumonia"]
    assert prediction((0.046, 0.4771, 0.4769), None).tied == ["Normal", "Pneumonia"]  # equal as shown (3 decimals)
    assert prediction((0.046, 0.478, 0.476), None).tied == []


def test_encode_png_and_jpeg():
    picture = np.zeros((20, 30, 3), np.uint8)
    assert encode(picture, "png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert encode(picture, "jpeg")[:3] == b"\xff\xd8\xff"
    with pytest.raises(ValueError, match="unknown picture format 'gif'"):
        encode(picture, "gif")


def test_model_maps_the_most_likely_abnormal_class_of_a_normal_call(shared_data):
    model = load_model("resnet18-int8")
    normals = sorted((shared_data / "cxr3" / "test" / "Normal").glob("*.png"))[:40]
    for f in normals:
        p = model.predict(load_image(f), heatmap=True)
        if p.label == "Normal":
            break
    else:
        pytest.fail("no Normal call among 40 Normal test films")
    others = {k: v for k, v in p.probabilities.items() if k != "Normal"}
    assert p.heatmap_label == max(others, key=lambda k: others[k])
    assert p.lungs is not None and p.lungs.shape == p.heatmap.shape and 0.1 < p.lungs.mean() < 0.6
    assert p.to_dict()["heatmap_label"] == p.heatmap_label


def test_predict_heatmap_writes_bounded_pictures_and_leaves_the_films(runner, shared_data, tmp_path):
    films = sorted(p for p in (shared_data / "cxr3-fullres").rglob("*") if p.suffix in (".png", ".jpg", ".jpeg"))[:3]
    before = [hashlib.sha256(f.read_bytes()).hexdigest() for f in films]
    for fmt, magic in (("png", b"\x89PNG"), ("jpeg", b"\xff\xd8\xff")):
        out = tmp_path / fmt
        res = runner.invoke(main, ["predict", *map(str, films), "--json", "--heatmap", str(out), "--heatmap-format", fmt])
        assert res.exit_code == 0, res.output
        lines = [json.loads(line) for line in res.stdout.splitlines()]
        for line in lines:
            written = out / (line["heatmap"].rsplit("/", 1)[1])
            assert written.suffix == (".png" if fmt == "png" else ".jpg") and written.read_bytes()[: len(magic)] == magic
            assert max(cv2.imread(str(written)).shape[:2]) <= MAX_SIDE
            abnormal = {k: v for k, v in line["probabilities"].items() if k != "Normal"}
            assert line["heatmap_label"] == (line["label"] if line["label"] != "Normal" else max(abnormal, key=lambda k: abnormal[k]))
        assert all(f.stat().st_size < 1_500_000 for f in out.iterdir())  # full-size PNGs were up to 5.2 MB
    assert [hashlib.sha256(f.read_bytes()).hexdigest() for f in films] == before
    assert not any(p.name.endswith((".heatmap.png", ".heatmap.jpg")) for p in (shared_data / "cxr3-fullres").rglob("*"))
