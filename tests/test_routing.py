"""Routing by header (edgecxr.clinic.routing): the card's intended films, a rules file over them, reasons and warnings."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from pydicom import Dataset

from conftest import child_env
from edgecxr.clinic.routing import RulesError, age_years, read_rules, route
from edgecxr.core.cardparts import TRAINING_FILMS, IntendedFilms


def header(**tags) -> Dataset:
    ds = Dataset()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    return ds


def test_a_film_outside_the_intended_use_is_refused_naming_the_rule_not_the_value():
    chest = {"Modality": "DX", "BodyPartExamined": "CHEST", "ViewPosition": "PA", "PatientAge": "045Y"}
    assert route(header(**chest), TRAINING_FILMS) == (None, [])
    assert route(header(**{**chest, "BodyPartExamined": "HAND"}), TRAINING_FILMS)[0] == "outside the model's intended use: the body part is not CHEST"
    assert route(header(**{**chest, "ViewPosition": "LL"}), TRAINING_FILMS)[0] == "outside the model's intended use: the view is not PA or AP"
    assert route(header(**{**chest, "Modality": "CT"}), TRAINING_FILMS)[0] == "outside the model's intended use: the modality is not CR or DX"
    assert route(header(**{**chest, "PatientAge": "006M"}), TRAINING_FILMS)[0] == "outside the model's intended use: the patient's age is not 1 and over years"
    assert route(header(**{**chest, "BodyPartExamined": "CHEST "}), TRAINING_FILMS) == (None, [])  # case and padding as headers have them


def test_a_header_that_says_nothing_is_analysed_with_a_warning_for_each_missing_tag():
    outside, warnings = route(header(Modality="CR"), TRAINING_FILMS)
    assert outside is None
    assert warnings == [
        "the header names no body part; analysed as CHEST",
        "the header names no view; analysed as PA/AP",
        "the header gives no patient age; analysed as within the model's age range",
    ]


def test_patient_age_in_each_unit():
    assert age_years("045Y") == 45 and age_years("012M") == pytest.approx(1.0, abs=0.01) and age_years("014D") == pytest.approx(14 / 365.25)
    assert age_years("002W") == pytest.approx(14 / 365.25) and age_years("45") is None and age_years(None) is None


def test_rules_take_the_card_defaults_and_are_validated_whole(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"min_age_years": 16, "views": ["pa"]}))
    rules = read_rules(path, TRAINING_FILMS)
    assert rules == IntendedFilms(modalities=("CR", "DX"), body_parts=("CHEST",), views=("PA",), min_age_years=16.0)
    assert route(header(Modality="DX", BodyPartExamined="CHEST", ViewPosition="AP", PatientAge="030Y"), rules)[0] == "outside the model's intended use: the view is not PA"
    for data, message in (
        ({"view": ["PA"]}, "unknown keys ['view']"),
        ({"views": []}, "rules.views must be a list of at least 1 values"),
        ({"min_age_years": -1}, "rules.min_age_years"),
        ([], "the rules must be a JSON object"),
    ):
        path.write_text(json.dumps(data))
        with pytest.raises(RulesError, match=re.escape(message)) as err:
            read_rules(path, TRAINING_FILMS)
        assert str(err.value).startswith(f"{path}: ")
    path.write_text("{not json")
    with pytest.raises(RulesError, match="cannot read the rules as JSON"):
        read_rules(path, TRAINING_FILMS)


def test_a_card_carries_its_intended_films_and_one_without_means_the_training_films():
    from edgecxr.core.card import ModelCard
    from edgecxr.core.registry import MODELS_DIR

    data = json.loads((MODELS_DIR / "mlp12-int8.json").read_text())
    card = ModelCard.from_dict(data, "mlp12-int8.json")
    assert card.intended_films is None and card.films == TRAINING_FILMS
    films = IntendedFilms(modalities=("DX",), body_parts=("CHEST",), views=("PA",), min_age_years=18.0, max_age_years=90.0)
    data["intended_films"] = films.to_dict()
    again = ModelCard.from_dict(data, "x.json")
    assert again.films == films
    assert again.to_dict()["intended_films"] == {"modalities": ["DX"], "body_parts": ["CHEST"], "views": ["PA"], "min_age_years": 18.0, "max_age_years": 90.0}


@pytest.mark.clinic
def test_listen_with_a_bad_rules_file_exits_2_in_one_line(tmp_path, tiny_models):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"body_part": ["CHEST"]}))
    done = subprocess.run([sys.executable, "-m", "edgecxr", "listen", "--store", str(tmp_path / "store"), "--rules", str(rules), "--model", str(tiny_models["int8"])],
                          capture_output=True, text=True, env=child_env(), timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith(f"error: --rules: {rules}: unknown keys ['body_part']")
