"""Targets as data: the one file, the one evaluator, and the card's targets block."""
from __future__ import annotations

import json

import pytest

from edgecxr.core.registry import MODELS_DIR
from edgecxr.evaluation.targets import TARGETS_FILE, Target, model_targets, targets


def test_every_target_names_a_known_op_and_a_number():
    data = json.loads(TARGETS_FILE.read_text())
    for group in ("model", "matrix", "generalization"):
        assert targets(group), group
        assert len(targets(group)) == len(data[group])
    assert {t.key for t in targets("model")} == {"macro_f1", "covid_sensitivity", "dice", "dice_worst_source", "dice_worst_film"}


def test_the_lung_cards_dice_targets_are_the_ones_in_targets_json():
    """Read on the val films whose masks outline the lung fields: mean, worst source's mean, worst film."""
    card = json.loads((MODELS_DIR / "lungs-int8.json").read_text())
    lung = card["metrics"]["val_lung_outlines"]
    assert model_targets("lungs", lung) == card["targets"]
    assert {k: v["reached"] for k, v in card["targets"].items()} == {
        "dice": lung["dice_mean"], "dice_worst_source": min(s["dice_mean"] for s in lung["per_source"].values()), "dice_worst_film": lung["dice_min"],
    }
    assert {k: v["target"] for k, v in card["targets"].items()} == {"dice": 0.95, "dice_worst_source": 0.95, "dice_worst_film": 0.85}


@pytest.mark.parametrize(
    ("op", "value", "reached", "met", "margin"),
    [(">=", 0.95, 0.96, True, 0.01), (">=", 0.95, 0.95, True, 0.0), (">=", 0.95, 0.889, False, -0.061),
     ("<=", 0.5, 0.8, False, -0.3), ("<", 0.8, 0.8, False, 0.0), ("<", 150.0, 72.0, True, 78.0), (">", 0.0, 0.0, False, 0.0)],
)
def test_check_met_and_margin(op, value, reached, met, margin):
    row = Target("k", "a target", op, value).check(reached, "scope")
    assert row == {"name": "a target", "scope": "scope", "op": op, "target": value, "reached": reached, "met": met, "margin": margin}


def test_model_targets_per_family():
    metrics = {"macro_f1": 0.889, "per_class": {"COVID": {"recall": 0.898}, "Normal": {"recall": 0.88}}}
    resnet = model_targets("resnet18", metrics)
    assert set(resnet) == {"macro_f1", "covid_sensitivity"}
    assert resnet["macro_f1"]["target"] == 0.95 and resnet["macro_f1"]["met"] is False
    assert resnet["covid_sensitivity"] == {"target": 0.95, "reached": 0.898, "met": False}
    mlp = model_targets("mlp12", {"macro_f1": 0.86, "per_class": {}})
    assert set(mlp) == {"macro_f1"} and mlp["macro_f1"]["met"] is True
    assert model_targets("tiny", metrics) == {}  # a family without targets


def test_bundled_cards_agree_with_the_targets_file():
    from edgecxr.core.card import read_card
    from edgecxr.core.registry import bundled_models

    for path in bundled_models():
        card = read_card(path)
        recorded, computed = card.targets, model_targets(card.family, card.test_metrics)
        assert set(recorded) == set(computed), path.name
        for key, row in computed.items():
            assert recorded[key]["target"] == row["target"] and recorded[key]["met"] == row["met"], (path.name, key)
