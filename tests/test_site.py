"""Site profiles on the tiny model: `edgecxr calibrate`, the profile and its report files, predict / evaluate --site, --install, refusals."""
from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from conftest import TINY_LABELS, write_png
from edgecxr import load_model
from edgecxr.cli import main
from edgecxr.core.calibration import fit_temperature, shrunk_temperature
from edgecxr.core.model import Model, Prediction
from edgecxr.core.site import SiteError, installed_path, read_profile, target_positives, target_scores
from edgecxr.evaluation.calibrate import calibrate, write_report
from edgecxr.evaluation.evaluate import evaluate, labelled_files
from edgecxr.evaluation.operating import TABLE_COLUMNS, threshold_for


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory):
    """8 toy films per class, some blurred, and the last bright one and the last dark one each filed under the other class,
    so that the scores of the classes overlap."""
    root = tmp_path_factory.mktemp("site") / "films"
    swapped = {(0, 7): 1, (1, 7): 0}
    for cls, label in enumerate(TINY_LABELS):
        for i in range(8):
            path = write_png(root / label / f"{label}_{i}.png", swapped.get((cls, i), cls), seed=100 + 10 * cls + i)
            if i % 3 == 0:
                cv2.imwrite(str(path), cv2.GaussianBlur(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), (0, 0), 1.5 + i / 4) // 2 + 40)
    return root


@pytest.fixture(scope="module")
def profile(model_path, site_dir, tmp_path_factory):
    """A profile for 'bright' at 0.9 and its report files, made through the Python API."""
    result = calibrate(Model(model_path), site_dir, 0.9, targets=["bright"])
    files = write_report(result, tmp_path_factory.mktemp("out") / "site.json")
    return result, files


def direct_scores(model: Model, folder, target: str):
    items = labelled_files(folder, model.labels)
    probs = np.stack([model.probabilities(path) for path, _ in items])
    y = [cls for _, cls in items]
    return target_scores(probs, model.labels, target), target_positives(y, model.labels, target)


# --- the abnormality score ---------------------------------------------------------------------


def test_abnormal_score_is_one_minus_p_normal():
    p = Prediction("COVID", {"COVID": 0.7, "Normal": 0.2, "Pneumonia": 0.1}, 1.0, "m")
    assert p.abnormal_score == pytest.approx(0.8)
    assert p.to_dict()["abnormal_score"] == 0.8
    assert "refer" not in p.to_dict() and "operating_point" not in p.to_dict()
    assert Prediction("dark", {"dark": 1.0}, 1.0, "m").abnormal_score is None


# --- calibrate: the profile --------------------------------------------------------------------


def test_profile_names_the_model_and_its_sample(profile, model_path):
    result, files = profile
    data = json.loads(files["profile"].read_text())
    card = Model(model_path).card
    assert data["kind"] == "edgecxr site profile" and data["schema_version"] == 2
    assert data["model"] == {"name": "tiny-int8", "version": card.version, "sha256": card.sha256}
    assert data["sample"] == {"counts": {"dark": 8, "bright": 8, "striped": 8}, "unreadable": 0}
    assert data["created"].endswith("+00:00")
    assert data["temperature"]["card"] == (card.temperature.value if card.temperature else 1.0) and data["temperature"]["value"] > 0
    assert data["temperature"]["nll_after"] <= data["temperature"]["nll_before"]
    assert data == result.profile


def test_threshold_is_chosen_on_the_refitted_scores(profile, model_path, site_dir):
    result, files = profile
    point = result.profile["operating_points"][0]
    model = Model(model_path, site=files["profile"])  # the profile's temperature replaces the card's
    assert model.temperature == result.profile["temperature"]["value"]
    scores, positive = direct_scores(model, site_dir, "bright")
    assert point["for"] == "bright" and point["target_sensitivity"] == 0.9
    assert point["threshold"] == threshold_for(scores, positive, 0.9)
    flagged = scores >= point["threshold"]
    assert point["sensitivity"]["value"] == round(float(np.mean(flagged[positive])), 4) >= 0.9
    assert point["specificity"]["value"] == round(float(np.mean(~flagged[~positive])), 4)
    assert (point["n_positive"], point["n_negative"]) == (8, 16)
    assert point["roc"][0][0] == float(scores.max()) and len(point["roc"]) == len(np.unique(scores))


def test_temperature_is_shrunk_toward_the_cards_on_a_small_sample(profile, model_path, site_dir):
    result, _ = profile
    t = result.profile["temperature"]
    model = Model(model_path)
    raw = np.stack([model.probabilities(path, calibrated=False) for path, _ in labelled_files(site_dir, model.labels)])
    y = np.array([cls for _, cls in labelled_files(site_dir, model.labels)])
    fitted = fit_temperature(raw, y, model.recalibrated)
    assert t["films"] == 24 and t["fitted"] == round(fitted, 4) and t["weight"] == round(24 / 124, 4)
    assert t["value"] == pytest.approx(t["card"] * (fitted / t["card"]) ** (24 / 124))
    assert abs(np.log(t["value"] / t["card"])) < abs(np.log(fitted / t["card"])) / 4  # moved less than a quarter of the way
    (warning,) = [w for w in result.warnings if w.startswith("temperature: ")]
    assert "24 films are too few" in warning and f"{fitted:.4f}" in warning and "19% of the way" in warning


def test_shrunk_temperature_weighs_the_sample_by_its_size():
    assert shrunk_temperature(3.14, 1.54, 30)[0] == pytest.approx(1.54 * (3.14 / 1.54) ** (30 / 130))
    assert shrunk_temperature(2.0, 1.0, 100) == (pytest.approx(2 ** 0.5), 0.5)
    assert shrunk_temperature(2.0, 1.0, 100_000)[0] == pytest.approx(2.0, rel=1e-3)


def test_profile_threshold_has_the_best_specificity_then_sensitivity(profile):
    result, _ = profile
    for point in result.profile["operating_points"]:
        roc = np.array(point["roc"])
        meets = roc[:, 1] >= point["target_sensitivity"]
        best_sp = roc[meets, 2].max()
        best_se = roc[meets & (roc[:, 2] == best_sp), 1].max()
        assert (point["sensitivity"]["value"], point["specificity"]["value"]) == (round(best_se, 4), round(best_sp, 4))


def test_small_sample_warns_with_the_numbers_missing(profile):
    result, _ = profile
    assert result.warnings == result.profile["warnings"]
    assert any("only 8 positive films" in w and "add 22 more" in w for w in result.warnings)
    assert any("only 16 negative films" in w and "add 14 more" in w for w in result.warnings)


def test_report_files_beside_the_profile(profile, model_path, site_dir):
    result, files = profile
    out = files["profile"]
    assert files["roc"] == out.with_name("site.roc.png") and files["table:bright"] == out.with_name("site.bright.csv")
    image = cv2.imread(str(files["roc"]))
    assert image.shape == (560, 560, 3) and image.std() > 10
    with open(files["table:bright"], newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == TABLE_COLUMNS
    threshold = result.profile["operating_points"][0]["threshold"]
    thresholds = [float(r[0]) for r in rows[1:]]
    assert threshold in thresholds and len(rows) in (102, 103)  # 0, 0.01, ..., 1 and the chosen one
    scores, positive = direct_scores(Model(model_path, site=out), site_dir, "bright")
    for r in rows[1:]:
        flagged = scores >= float(r[0])
        assert float(r[1]) == pytest.approx(np.mean(flagged[positive]), abs=5e-5)
        assert float(r[2]) == pytest.approx(np.mean(~flagged[~positive]), abs=5e-5)
        assert float(r[5]) == pytest.approx(100 * np.mean(flagged), abs=5e-5)
        assert r[3] == "" if not flagged.any() else float(r[3]) == pytest.approx(np.mean(positive[flagged]), abs=5e-5)


# --- applying a profile ------------------------------------------------------------------------


def test_load_model_with_a_profile_refers_at_its_threshold(profile, model_path, site_dir):
    result, files = profile
    threshold = result.profile["operating_points"][0]["threshold"]
    model = load_model(model_path, site=str(files["profile"]))
    for path, _ in labelled_files(site_dir, model.labels):
        p = model.predict(path)
        assert p.refer is (p.probabilities["bright"] >= threshold)
        assert p.operating_point == [{"for": "bright", "threshold": threshold, "target_sensitivity": 0.9}]
        assert p.to_dict()["refer"] is p.refer and p.abnormal_score is None


def test_evaluate_with_a_profile_measures_at_its_threshold(runner, profile, model_path, site_dir):
    result, files = profile
    res = runner.invoke(main, ["evaluate", str(site_dir), "-m", model_path, "--site", str(files["profile"]), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    point = report["site"]["operating_points"][0]
    calibrated = result.profile["operating_points"][0]
    for key in ("for", "threshold", "target_sensitivity", "sensitivity", "specificity", "ppv", "npv", "flagged", "tp", "fp", "auc"):
        assert point[key] == calibrated[key], key  # the same films: the same numbers
    assert report["site"]["model"] == "tiny-int8" and report["site"]["referred"] == calibrated["flagged"]["value"]
    assert set(report["auc"]) == set(TINY_LABELS) and report["abnormal_auc"] is None
    assert report["auc"]["bright"] == calibrated["auc"]
    human = runner.invoke(main, ["evaluate", str(site_dir), "-m", model_path, "--site", str(files["profile"])])
    assert "at the site profile's operating points (made for tiny-int8" in human.stdout
    assert f"bright: refer at score >= {calibrated['threshold']:.4f} (chosen for sensitivity 0.9)" in human.stdout


def test_predict_with_a_profile(runner, profile, model_path, site_dir):
    _, files = profile
    image = site_dir / "bright" / "bright_1.png"
    res = runner.invoke(main, ["predict", str(image), "-m", model_path, "--site", str(files["profile"]), "--json"])
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout)
    assert record["refer"] is True and record["operating_point"][0]["for"] == "bright" and record["abnormal_score"] is None
    human = runner.invoke(main, ["predict", str(image), "-m", model_path, "--site", str(files["profile"])])
    assert human.stdout.splitlines()[1].startswith("  refer: yes (bright score ")


def test_install_makes_it_the_default(runner, model_path, site_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECXR_CONFIG_DIR", str(tmp_path / "config"))
    res = runner.invoke(main, ["calibrate", str(site_dir), "-m", model_path, "--for", "bright", "--out", str(tmp_path / "p.json"), "--install"])
    assert res.exit_code == 0, res.output
    installed = installed_path("tiny-int8")
    assert installed == tmp_path / "config" / "sites" / "tiny-int8.json"
    assert f"installed as the default profile of tiny-int8: {installed}" in res.stdout
    assert json.loads(installed.read_text()) == json.loads((tmp_path / "p.json").read_text())
    record = json.loads(runner.invoke(main, ["predict", str(site_dir / "dark" / "dark_1.png"), "-m", model_path, "--json"]).stdout)
    threshold = read_profile(installed).points[0].threshold  # no --site: the installed profile applies
    assert record["operating_point"][0]["threshold"] == threshold
    assert record["refer"] is load_model(model_path, site=True).predict(site_dir / "dark" / "dark_1.png").refer
    assert load_model(model_path, site=True).site is not None and load_model(model_path).site is None
    rows = json.loads(runner.invoke(main, ["models", "-m", model_path, "--json"]).stdout)
    tiny = next(r for r in rows if r["name"] == "tiny-int8")
    assert tiny["site_profile"]["path"] == str(installed) and tiny["site_profile"]["operating_points"][0]["for"] == "bright"
    assert all(r["site_profile"] is None for r in rows if r["name"] != "tiny-int8")
    assert f"    site profile: {installed} (bright >= " in runner.invoke(main, ["models", "-m", model_path]).stdout
    # a profile installed for another release of the model is refused, not silently dropped
    data = json.loads(installed.read_text())
    data["model"]["sha256"] = "0" * 64
    installed.write_text(json.dumps(data))
    res = runner.invoke(main, ["predict", str(site_dir / "dark" / "dark_1.png"), "-m", model_path])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and str(installed) in res.stderr and "calibrate again" in res.stderr
    assert "does not fit" in runner.invoke(main, ["models", "-m", model_path]).stdout


def test_calibrate_cli_json_and_text(runner, model_path, site_dir, tmp_path):
    out = tmp_path / "x" / "clinic.json"
    res = runner.invoke(main, ["calibrate", str(site_dir), "-m", model_path, "--for", "bright", "--for", "striped", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [p["for"] for p in data["operating_points"]] == ["bright", "striped"]
    assert data["files"] == {"profile": str(out), "roc": str(out.with_name("clinic.roc.png")),
                             "table:bright": str(out.with_name("clinic.bright.csv")), "table:striped": str(out.with_name("clinic.striped.csv"))}
    assert data["installed"] is None
    assert all(line.startswith("warning: ") for line in res.stderr.splitlines() if "XNNPACK" not in line)
    text = runner.invoke(main, ["calibrate", str(site_dir), "-m", model_path, "--for", "bright", "--out", str(out), "--target-sensitivity", "0.75"])
    assert text.exit_code == 0
    assert text.stdout.splitlines()[0].startswith("model tiny-int8 ") and "bright: refer at score >= " in text.stdout
    t = data["temperature"]
    assert f"-> {t['value']:.4f} (fitted {t['fitted']:.4f} on these 24 films, shrunk toward the card's: 19% of the way)" in text.stdout.splitlines()[0]
    assert {"value", "card", "fitted", "films", "weight"} <= set(t) and any(w.startswith("temperature: 24 films") for w in data["warnings"])
    assert read_profile(out).points[0].target_sensitivity == 0.75


# --- refusals: one line, exit 2, no traceback --------------------------------------------------


def one_error(res, *parts: str) -> None:
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if "XNNPACK" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output
    for part in parts:
        assert part in lines[0]


def test_profile_of_another_model_is_refused(runner, profile, tiny_models, site_dir):
    _, files = profile
    other = str(tiny_models["float32"])
    with pytest.raises(SiteError, match="made for model tiny-int8 .* not for tiny-float32"):
        load_model(other, site=files["profile"])
    image = str(site_dir / "dark" / "dark_0.png")
    one_error(runner.invoke(main, ["predict", image, "-m", other, "--site", str(files["profile"])]), str(files["profile"]), "calibrate again")
    one_error(runner.invoke(main, ["evaluate", str(site_dir), "-m", other, "--site", str(files["profile"])]), "not for tiny-float32")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "site profile does not exist"),
        ("{not json", "not a JSON file"),
        ('["a list"]', "profile must be an object"),
        ('{"kind": "something else", "schema_version": 1, "model": {}, "temperature": {}, "operating_points": []}', "not a site profile"),
        ("EDIT:threshold=1.5", "operating_points[0].threshold must be >= 0 and <= 1, got 1.5"),
        ("EDIT:for=COVID", "names labels ['COVID'] that model tiny-int8 does not have"),
        ("EDIT:for=abnormal", "has an 'abnormal' operating point but model tiny-int8 has no 'Normal' label"),
        ("EDIT:schema_version=9", "schema_version 9 is not one this edgecxr reads"),
    ],
)
def test_unreadable_profile_is_one_line(runner, profile, model_path, site_dir, tmp_path, content, message):
    _, files = profile
    path = tmp_path / "bad.json"
    if content is not None and content.startswith("EDIT:"):
        key, value = content[5:].split("=")
        data = json.loads(files["profile"].read_text())
        if key == "schema_version":
            data[key] = int(value)
        else:
            data["operating_points"][0][key] = float(value) if key == "threshold" else value
        path.write_text(json.dumps(data))
    elif content is not None:
        path.write_text(content)
    one_error(runner.invoke(main, ["predict", str(site_dir / "dark" / "dark_0.png"), "-m", model_path, "--site", str(path)]), str(path), message)


def test_calibrate_refuses_unusable_folders_and_targets(runner, model_path, site_dir, tmp_path):
    def calibrate_cli(folder, *extra):
        return runner.invoke(main, ["calibrate", str(folder), "-m", model_path, "--out", str(tmp_path / "p.json"), *extra])

    (tmp_path / "empty").mkdir()
    one_error(calibrate_cli(tmp_path / "empty", "--for", "bright"), "no images found")
    write_png(tmp_path / "one" / "bright" / "a.png", 1)
    one_error(calibrate_cli(tmp_path / "one", "--for", "bright"), "no negative films for target 'bright'")
    write_png(tmp_path / "unknown" / "Normal" / "a.png", 1)
    one_error(calibrate_cli(tmp_path / "unknown", "--for", "bright"), "class folders ['Normal'] are not labels of the model")
    one_error(calibrate_cli(site_dir, "--for", "COVID"), "'COVID' is neither 'abnormal' nor a label of the model")
    one_error(calibrate_cli(site_dir), "no 'Normal' label")  # the default target is abnormal
    assert not (tmp_path / "p.json").exists()
    res = calibrate_cli(site_dir, "--for", "bright", "--target-sensitivity", "1.0")
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_calibrate_with_an_unreadable_film_still_writes_the_profile(runner, model_path, site_dir, tmp_path):
    import shutil

    folder = tmp_path / "films"
    shutil.copytree(site_dir, folder)
    (folder / "dark" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    res = runner.invoke(main, ["calibrate", str(folder), "-m", model_path, "--for", "bright", "--out", str(tmp_path / "p.json")])
    assert res.exit_code == 1, res.output
    assert [line for line in res.stderr.splitlines() if line.startswith("error: ")] == [next(line for line in res.stderr.splitlines() if "broken.png" in line)]
    assert json.loads((tmp_path / "p.json").read_text())["sample"] == {"counts": {"dark": 8, "bright": 8, "striped": 8}, "unreadable": 1}


def test_calibrate_help_explains_and_its_options_run(runner, model_path, site_dir, tmp_path):
    res = runner.invoke(main, ["calibrate", "--help"])
    assert res.exit_code == 0
    for part in ("--target-sensitivity", "--for", "abnormal", "--manifest", "--out", "--install", "threshold table", "bootstrap 95%"):
        assert part in res.stdout
    res = runner.invoke(main, ["calibrate", "-m", model_path, "--for", "bright", "--target-sensitivity", "0.9", "--out", str(tmp_path / "p.json"), str(site_dir)])
    assert res.exit_code == 0, res.output
    point = read_profile(tmp_path / "p.json").points[0]
    assert point.target == "bright" and 0.0 <= point.threshold <= 1.0


def test_evaluate_without_profile_has_aucs_only(runner, model_path, site_dir):
    report = evaluate(Model(model_path), site_dir)
    assert "site" not in report and report["abnormal_auc"] is None
    scores, positive = direct_scores(Model(model_path), site_dir, "striped")
    from edgecxr.evaluation.operating import auc

    assert report["auc"]["striped"] == round(auc(scores, positive), 4)
