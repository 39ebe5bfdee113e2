"""What the README and docs say about the command line matches what it does: the bundled-models table, the versions, output folders."""
from __future__ import annotations

import json
import re
import shlex

from conftest import REPO
from edgecxr import __version__
from edgecxr.cli import _human, main
from edgecxr.core.card import read_card
from edgecxr.core.model import Prediction
from edgecxr.core.registry import MODELS_DIR, bundled_models, decimals, release, shown_numbers

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def readme_models_table() -> dict[str, list[str]]:
    """The README's bundled-models table: {model name: its cells after the name}."""
    rows = {}
    for line in (REPO / "README.md").read_text().splitlines():
        match = re.match(r"\| `([a-z0-9-]+)`(?: \(\*\*default\*\*\))? \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [c.strip().replace("–", "-") for c in match.group(2).split("|")]
    return rows


def test_one_rounding_rule_for_the_readme_table_and_the_models_command(runner):
    table = readme_models_table()
    assert set(table) == {p.stem for p in bundled_models()}
    listed = {line.split()[1] if line.startswith("*") else line.split()[0]: line for line in runner.invoke(main, ["models"]).stdout.splitlines()[:-1]}
    for path in bundled_models():
        card = read_card(path)
        n = shown_numbers(card)
        size = card.preprocessing.size
        assert table[path.stem] == [
            f"{size[0]}×{size[1]}", n["size"], n["accuracy"], n["macro_f1"], *(n["sensitivity"][k] for k in card.labels), n["agreement"],
        ], path.stem
        line = listed[path.stem]
        assert f" {n['size']} " in line and f"test accuracy {n['accuracy']}, macro-F1 {n['macro_f1']} " in line
    assert decimals(0.8885, 3) == "0.889" and decimals(0.7615, 3) == "0.762" and f"{0.8885:.3f}" == "0.888"  # halves up, not binary floats


def test_models_rows_show_version_and_temperature_and_json_the_whole_card(runner):
    res = runner.invoke(main, ["models", "--json"])
    assert res.exit_code == 0
    for row in json.loads(res.stdout):
        card = read_card(MODELS_DIR / f"{row['name']}.tflite")
        assert row["version"] == card.version and row["card"] == card.to_dict()
        for field in ("version", "changelog", "metrics", "intended_use", "verification", "temperature", "sha256"):
            assert row["card"][field] is not None, field
    text = runner.invoke(main, ["models"]).stdout
    int8 = read_card(MODELS_DIR / "resnet18-int8.tflite")
    line = next(line for line in text.splitlines() if "resnet18-int8" in line)
    assert f" {int8.version} " in line and f"temperature {int8.temperature.value:.4f}" in line


def test_version_names_the_package_and_the_models_release(runner):
    res = runner.invoke(main, ["--version"])
    assert res.exit_code == 0
    versions = release()
    assert res.stdout.startswith(f"edgecxr {__version__} (the package); bundled models release {versions['resnet18-int8']} (")
    assert f"lung model lungs-int8 {versions['lungs-int8']}" in res.stdout


def test_documented_commands_write_outside_the_checkout():
    """A folder a documented command writes into is a placeholder (DIR), absolute, or under ~: never a folder of the checkout."""
    found = 0
    for page in PAGES:
        for line in page.read_text().splitlines():
            line = line.split("#")[0].strip()
            if not line.startswith("edgecxr "):
                continue
            words = shlex.split(line)
            for option in ("--heatmap", "--out", "--store"):
                if option in words and words[0:2] != ["edgecxr", "calibrate"] and words[0:2] != ["edgecxr", "adapt"]:
                    target = words[words.index(option) + 1]
                    found += 1
                    assert target.isupper() or target.startswith(("/", "~")), f"{page.name}: {line}"
    assert found >= 5


def test_a_tie_is_said_as_a_tie():
    tie = Prediction("Normal", {"COVID": 0.046, "Normal": 0.477, "Pneumonia": 0.477}, 1.0, "m", "scan.png").to_dict()
    assert tie["tied"] == ["Normal", "Pneumonia"]
    assert _human(tie).startswith("scan.png: tie: Normal = Pneumonia  (Normal 0.477, Pneumonia 0.477, COVID 0.046)")
    clear = Prediction("COVID", {"COVID": 0.6, "Normal": 0.3, "Pneumonia": 0.1}, 1.0, "m", "scan.png").to_dict()
    assert clear["tied"] == [] and _human(clear).startswith("scan.png: COVID  (COVID 0.600")
