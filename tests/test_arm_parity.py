"""The comparison logic of the ARM parity check (benchmarks/arm/parity.py); no emulation here."""
from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest

from benchmarks.arm.parity import FLOAT_TOLERANCE, INT8_STEPS, LOGIT_STEPS, bundled_cards, compare, output_step, pick_images, tolerance
from edgecxr.core.calibration import softmax
from edgecxr.core.cardparts import Quantization, TensorSpec


def answers(*rows: tuple[str, str, dict[str, float]]) -> list[dict]:
    return [{"file": f, "model": "m", "label": label, "probabilities": probs, "latency_ms": 1.0, "warnings": []}
            for f, label, probs in rows]


REFERENCE = answers(
    ("a.png", "COVID", {"COVID": 0.9, "Normal": 0.05, "Pneumonia": 0.05}),
    ("b.png", "Normal", {"COVID": 0.2, "Normal": 0.7, "Pneumonia": 0.1}),
)


def test_identical_answers_pass():
    result = compare(REFERENCE, copy.deepcopy(REFERENCE), 1e-4)
    assert result == {"n": 2, "labels_equal": 2, "max_abs_diff": 0.0, "images_differing": 0, "problems": []}


def test_label_mismatch_is_flagged_even_without_a_tolerance():
    other = copy.deepcopy(REFERENCE)
    other[1]["label"] = "Pneumonia"
    result = compare(REFERENCE, other, None)
    assert result["labels_equal"] == 1
    assert result["problems"] == ["b.png: label Pneumonia != Normal"]


def test_probability_beyond_tolerance_is_flagged_and_within_is_not():
    other = copy.deepcopy(REFERENCE)
    other[0]["probabilities"]["COVID"] += 2e-4
    other[1]["probabilities"]["Normal"] += 5e-5
    result = compare(REFERENCE, other, 1e-4)
    assert result["max_abs_diff"] == pytest.approx(2e-4)
    assert result["images_differing"] == 2
    assert len(result["problems"]) == 1 and result["problems"][0].startswith("a.png: probabilities differ by 0.000200")
    assert compare(REFERENCE, other, None)["problems"] == []  # measured, not judged


def test_missing_failed_or_incomplete_answers_are_flagged():
    other = copy.deepcopy(REFERENCE)
    other[0] = {"file": "a.png", "error": "truncated file"}
    del other[1]["probabilities"]["Pneumonia"]
    result = compare(REFERENCE, other, 1.0)
    assert result["problems"][0] == "a.png: truncated file"
    assert "b.png: probabilities differ by inf" in result["problems"][1]
    assert compare(REFERENCE, [], 1.0)["problems"] == ["a.png: no answer", "b.png: no answer"]


def test_tolerance_from_the_card():
    card = next(iter(bundled_cards().values()))
    assert tolerance(replace(card, output=TensorSpec((1, 3), "float32"))) == FLOAT_TOLERANCE
    assert tolerance(replace(card, output=None)) == FLOAT_TOLERANCE
    int8 = replace(card, output=TensorSpec((1, 3), "int8", Quantization(1 / 256, -128)), output_kind="probabilities")
    assert tolerance(int8) == pytest.approx(INT8_STEPS / 256, abs=2e-6)
    logits = replace(int8, output_kind="logits", output=TensorSpec((1, 3), "int8", Quantization(0.08, -25)))
    assert card.temperature is not None
    assert tolerance(logits) == pytest.approx(LOGIT_STEPS * 0.08 / (2 * card.temperature.value), abs=2e-6)


def test_logit_tolerance_bounds_what_two_steps_do():
    """k steps of every logit move no probability by more than the tolerance, for the bundled int8 cards."""
    rng = np.random.default_rng(0)
    for card in (c for c in bundled_cards().values() if c.output_kind == "logits" and output_step(c)):
        step, t = output_step(card), card.temperature.value
        z = rng.normal(0, 4, size=(2000, 3))
        moved = z + rng.integers(-LOGIT_STEPS, LOGIT_STEPS + 1, size=z.shape) * step
        worst = np.abs(softmax(z / t) - softmax(moved / t)).max()
        assert 0 < worst <= tolerance(card)


def test_every_bundled_card_gets_a_tolerance():
    cards = bundled_cards()
    assert cards, "no bundled model cards"
    for card in cards.values():
        assert 0 < tolerance(card) < 0.07


def test_pick_images_is_deterministic_and_evenly_spaced(tmp_path):
    for cls in ("A", "B"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            (tmp_path / cls / f"{i:02d}.png").write_bytes(b"")
    (tmp_path / "A" / "notes.txt").write_text("not an image")
    picked = pick_images(tmp_path, 3)
    assert [f"{p.parent.name}/{p.name}" for p in picked] == ["A/00.png", "A/03.png", "A/06.png", "B/00.png", "B/03.png", "B/06.png"]
    assert pick_images(tmp_path, 3) == picked
    assert len(pick_images(tmp_path, 50)) == 20
