"""Odd inputs (tests/odd_inputs.py) are flagged at least as well as by the release before the 64 px lung model, chest films not at all.

:data:`FLAGGED_BEFORE` is what ``Model.predict`` of the bundled default model flagged on each input
with lungs-int8 1.1.0 (the 128 px U-Net) and the checks of that release; every code in it must still
fire (more may). The chest films must give no check at all, as they did.
"""
from __future__ import annotations

import pytest

from edgecxr import load_model
from odd_inputs import odd_inputs

FLAGGED_BEFORE: dict[str, set[str]] = {
    "uniform noise": {"no_lungs"},
    "gaussian noise": {"no_lungs"},
    "nearly blank": {"no_lungs", "nearly_uniform"},
    "black frame with a label": {"no_lungs"},
    "inverted adult film": {"no_lungs", "negative_film"},
    "inverted child film": {"no_lungs", "negative_film"},
    "lateral-like: one half of a film": {"no_lungs"},
    "film turned on its side": {"no_lungs"},
    "tiny film": {"small_image"},
    "huge noise": {"no_lungs"},
    "12-bit noise": {"no_lungs", "noise"},
    "extreme aspect strip": {"small_image", "extreme_aspect"},
    "non-chest nearly blank 1": {"no_lungs", "nearly_uniform"},
    "non-chest uniform noise 2": {"no_lungs"},
    "non-chest gaussian noise 3": {"no_lungs"},
    "non-chest salt and pepper 4": {"no_lungs"},
    "non-chest 1/f cloud texture 5": {"no_lungs"},
    "non-chest linear gradient 6": {"no_lungs"},
    "non-chest radial gradient 7": {"no_lungs"},
    "non-chest checkerboard 8": {"no_lungs"},
    "non-chest stripes 9": {"no_lungs", "noise"},
    "non-chest colour scene 10": {"colour", "no_lungs"},
    "non-chest colour shapes 11": {"no_lungs", "colour", "negative_film"},
    "non-chest smooth colour field 12": {"colour", "no_lungs"},
    "non-chest text page 13": {"no_lungs", "noise"},
    "non-chest text slide (light on dark) 14": {"no_lungs", "noise"},
    "chest: adult film": set(),
    "chest: child film": set(),
    "chest: 12-bit adult film": set(),
    "chest: huge adult film": set(),
}


@pytest.fixture(scope="module")
def flagged(shared_data) -> dict[str, set[str]]:
    model = load_model()
    return {name: {c.code for c in model.predict(image).checks} for name, image in odd_inputs(shared_data)}


def test_the_corpus_is_the_one_recorded(flagged):
    assert set(flagged) == set(FLAGGED_BEFORE)


def test_every_odd_input_is_flagged_at_least_as_before(flagged):
    lost = {name: sorted(FLAGGED_BEFORE[name] - codes) for name, codes in flagged.items() if FLAGGED_BEFORE[name] - codes}
    assert not lost, f"checks that no longer fire: {lost}"
    assert all(codes for name, codes in flagged.items() if not name.startswith("chest:"))


def test_chest_films_stay_unflagged(flagged):
    assert {name: codes for name, codes in flagged.items() if name.startswith("chest:") and codes} == {}
