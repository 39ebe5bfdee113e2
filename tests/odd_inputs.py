"""A corpus of odd inputs made in code from a few shared films: what the input checks are there to flag.

:func:`odd_inputs` gives (name, image) pairs; ``tests/test_odd_inputs.py`` asserts which checks
fire on each, so a change to the lung model, the checks or the predict path cannot flag fewer.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from benchmarks.nonxray import non_xray_images

# Real films the corpus is made from: frontal chest films of cxr3's test split (an adult, a child).
FILMS = ("cxr3/test/Normal/rsna-Normal-7069.png", "cxr3/test/Pneumonia/kermany-person1000_virus_1681.png")


def film(data: Path, i: int) -> np.ndarray:
    """Film ``i`` of :data:`FILMS`, 8-bit gray."""
    return np.asarray(cv2.imread(str(data / FILMS[i]), cv2.IMREAD_GRAYSCALE))


def odd_inputs(data: Path) -> list[tuple[str, np.ndarray]]:
    """(name, 2-D uint8/uint16 or HxWx3 uint8 image) of inputs that are not a plain frontal chest film, and the chest films they came from."""
    rng = np.random.default_rng(29)
    adult, child = film(data, 0), film(data, 1)
    out = [
        ("uniform noise", rng.integers(0, 256, (300, 300), dtype=np.uint8)),
        ("gaussian noise", np.clip(rng.normal(128, 40, (256, 320)), 0, 255).astype(np.uint8)),
        ("nearly blank", np.clip(128 + rng.normal(0, 1.0, (256, 256)), 0, 255).astype(np.uint8)),
        ("black frame with a label", cv2.putText(np.zeros((256, 256), np.uint8), "R", (20, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.2, 255, 2)),
        ("inverted adult film", 255 - adult),
        ("inverted child film", 255 - child),
        ("lateral-like: one half of a film", np.ascontiguousarray(adult[:, : adult.shape[1] // 2])),
        ("film turned on its side", np.ascontiguousarray(np.rot90(adult))),
        ("tiny film", cv2.resize(adult, (40, 40), interpolation=cv2.INTER_AREA)),
        ("huge noise", rng.integers(0, 256, (5000, 4000), dtype=np.uint8)),
        ("12-bit noise", rng.integers(0, 4096, (256, 256), dtype=np.uint16)),
        ("extreme aspect strip", np.ascontiguousarray(adult[: adult.shape[0] // 4])),
    ]
    out += [(f"non-chest {kind} {i}", image) for i, (kind, image) in enumerate(non_xray_images(seed=29, per_kind=1)) if kind != "blank"]
    # Chest films that must stay unflagged: the adult and child film, 12-bit and huge copies of the adult one.
    out += [
        ("chest: adult film", adult),
        ("chest: child film", child),
        ("chest: 12-bit adult film", (adult.astype(np.uint16) * 16 + 8)),
        ("chest: huge adult film", cv2.resize(adult, (4000, 4000), interpolation=cv2.INTER_LINEAR)),
    ]
    return out
