"""16-bit rasters read by their real bit depth: a 12-bit film in a 16-bit PNG or TIFF, its 8-bit copy and its DICOM agree.

The films are real ones from ../shared/data/cxr3/test, re-encoded in code inside tmp_path.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecxr import load_model
from edgecxr.core.imageio import RASTER_DEPTHS, from_array, load_image, stored_bits
from test_imageio import write_dicom, write_image

FILMS_PER_CLASS = 4


def films(root: Path) -> list[Path]:
    """The first few test films of each class, sorted: a fixed, varied sample."""
    return [p for label in ("COVID", "Normal", "Pneumonia") for p in sorted((root / "cxr3" / "test" / label).glob("*.png"))[:FILMS_PER_CLASS]]


def encodings(film: Path, folder: Path) -> dict[str, Path]:
    """The film as its own 8-bit PNG, as 12 bits in a 16-bit PNG and TIFF, as a 12-bit DICOM and as full-range 16 bits.

    ``x16`` is the issue's reproducer (``im.astype('uint16') * 16``, 0..4080); the other 12-bit
    files span 0..4095 as a 12-bit detector's export does.
    """
    u8 = cv2.imread(str(film), cv2.IMREAD_GRAYSCALE)
    assert u8 is not None, film
    twelve = np.round(u8 * (4095 / 255)).astype(np.uint16)
    folder.mkdir()
    return {
        "png8": film,
        "x16": write_image(folder / "x16.png", u8.astype(np.uint16) * 16),
        "png12": write_image(folder / "film12.png", twelve),
        "tiff12": write_image(folder / "film12.tif", twelve),
        "dicom12": write_dicom(folder / "film12.dcm", twelve, bits_stored=12),
        "png16": write_image(folder / "film16.png", u8.astype(np.uint16) * 257),
    }


def test_same_label_in_every_encoding_of_real_films(shared_data, tmp_path):
    model = load_model()
    for i, film in enumerate(films(shared_data)):
        paths = encodings(film, tmp_path / str(i))
        loaded = {name: load_image(path) for name, path in paths.items()}
        assert [loaded[n].bit_depth for n in paths] == [8, 12, 12, 12, 12, 16]
        for name, image in loaded.items():  # the same intensities, to within the 8-bit step
            np.testing.assert_allclose(image.pixels, loaded["png8"].pixels, atol=1 / 255, err_msg=f"{film.name} as {name}")
        # the int8 output moves in steps of about 0.02 after calibration (a one-step change on a tiny input change)
        answers = {name: model.predict(image) for name, image in loaded.items()}
        labels = {name: p.label for name, p in answers.items()}
        assert len(set(labels.values())) == 1, f"{film.name}: {labels}"
        for name, p in answers.items():
            if name == "x16":  # 0.4% darker than the 8-bit film: the same label is all that is asked
                continue
            for label, prob in p.probabilities.items():
                assert prob == pytest.approx(answers["png8"].probabilities[label], abs=0.05), f"{film.name} as {name}: {label}"
        for name, p in answers.items():
            assert "nearly_uniform" not in [c.code for c in p.checks], f"{film.name} as {name}"


def test_stored_bits_is_the_smallest_detector_depth_holding_the_maximum():
    assert RASTER_DEPTHS == (8, 10, 12, 14, 16)
    cases = {0: 8, 255: 8, 256: 10, 1023: 10, 1024: 12, 1500: 12, 2047: 12, 4095: 12, 4096: 14, 16383: 14, 16384: 16, 65535: 16}
    assert {m: stored_bits(m) for m in cases} == cases


def test_16bit_data_is_scaled_by_its_depth_not_by_65535(tmp_path):
    ramp = np.linspace(0, 1023, 32 * 32).reshape(32, 32).round().astype(np.uint16)  # 10-bit data
    for path in (write_image(tmp_path / "ten.png", ramp), write_image(tmp_path / "ten.tif", ramp)):
        image = load_image(path)
        assert image.bit_depth == 10
        np.testing.assert_allclose(image.pixels, ramp / 1023.0, atol=1e-6)
    colour = from_array(np.dstack([ramp * 4] * 3))  # 12-bit colour array (4092 at most)
    assert colour.bit_depth == 12
    np.testing.assert_allclose(colour.pixels, ramp * 4 / 4095.0, atol=1e-5)
    dark = load_image(write_image(tmp_path / "dark.png", np.full((8, 8), 1200, np.uint16) - np.eye(8, dtype=np.uint16) * 1200))
    assert dark.bit_depth == 12 and dark.pixels.max() == pytest.approx(1200 / 4095)  # a dark 12-bit film stays 12-bit


def test_a_dark_full_range_16bit_image_is_read_as_fewer_bits(tmp_path):
    """The rule's documented cost: 16-bit data whose maximum is below a quarter of 65535 is taken as 14-bit (or less)."""
    dark = np.tile(np.linspace(0, 16000, 16).round().astype(np.uint16), (16, 1))
    image = load_image(write_image(tmp_path / "dark16.png", dark))
    assert image.bit_depth == 14
    np.testing.assert_allclose(image.pixels, dark / 16383.0, atol=1e-6)
