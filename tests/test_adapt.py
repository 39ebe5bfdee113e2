"""Site heads (``edgecxr adapt``): the fit, the folds, the verdict, the profile and its refusals, on the bundled model.

The fast tests fit heads on synthetic pooled features (the bundled ResNet's width, no films); the
``data`` tests adapt on films of one hospital from ../shared (NIH films the bundled model was not
trained on), split by patient, and measure on the other half.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.adapt import SITES, halves, head_targets, prior, site_films
from edgecxr import load_model
from edgecxr.cli import main
from edgecxr.core.calibration import softmax
from edgecxr.core.head import Head, fit_head
from edgecxr.core.model import Model
from edgecxr.core.site import SiteError, read_profile, target_positives, target_scores
from edgecxr.evaluation.adapt import FOLDS, SiteFilms, adapt_films, group_folds, read_site
from edgecxr.evaluation.operating import auc, paired_auc_intervals


@pytest.fixture(scope="module")
def resnet() -> Model:
    return load_model("resnet18-int8")


def card_head(model: Model, labels: list[str]) -> Head:
    return prior(model, labels)  # the card's dense layer over ``labels``, at the card's temperature


def synthetic_films(model: Model, n_per_class: int = 40, shift: float = 0.6, seed: int = 0) -> SiteFilms:
    """Normal and Pneumonia 'films' whose pooled features differ along one random direction, the bundled head blind to it."""
    rng = np.random.default_rng(seed)
    cam = model.card.cam
    assert cam is not None
    k = len(cam.weights)
    direction = rng.normal(size=k)
    direction /= np.linalg.norm(direction)
    y = np.repeat([model.labels.index("Normal"), model.labels.index("Pneumonia")], n_per_class)
    features = np.abs(rng.normal(0.5, 0.3, (len(y), k)) + np.outer(y == model.labels.index("Pneumonia"), direction) * shift * 8)
    raw = softmax(features @ np.asarray(cam.weights) + np.asarray(cam.bias))
    return SiteFilms([Path(f"film{i}.png") for i in range(len(y))], y, raw, features, [f"p{i // 2}" for i in range(len(y))], None)


def test_a_strong_pull_gives_the_bundled_head_and_a_weak_one_follows_the_films(resnet):
    films = synthetic_films(resnet)
    labels = ["Normal", "Pneumonia"]
    y = np.array([labels.index(resnet.labels[i]) for i in films.y])
    prior = card_head(resnet, labels)
    held = fit_head(films.features, y, prior, 1e6)
    # the calibrated bundled head over the two labels, up to the bias, which follows the site's share of each class
    shift = held.logits(films.features) - prior.logits(films.features) / prior.temperature
    assert np.abs(shift - shift[0]).max() < 1e-4
    free = fit_head(films.features, y, prior, 1e-3)
    assert auc(free.logits(films.features) @ [-1, 1], y == 1) > 0.99
    # the optimum: the penalised gradient vanishes (in standardised units)
    z = (films.features - free.mean) / free.scale
    p = softmax(z @ free.weights + free.bias)
    w_prior = prior.weights * free.scale[:, None] / prior.temperature
    grad = z.T @ (p - np.eye(2)[y]) / len(y) + 1e-3 * (free.weights - w_prior)
    assert np.abs(grad).max() < 1e-6


def test_head_probabilities_cover_the_models_labels_with_zero_for_the_rest(resnet):
    films = synthetic_films(resnet, 25)
    head = fit_head(films.features, (films.y == resnet.labels.index("Pneumonia")).astype(int), card_head(resnet, ["Normal", "Pneumonia"]), 0.1)
    probs = head.probabilities(films.features[:3], resnet.labels)
    assert probs.shape == (3, 3) and np.all(probs[:, resnet.labels.index("COVID")] == 0)
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-6)
    cam = head.cam_weights(resnet.labels)  # the heatmap of the head: logits = pooled @ cam + constant
    logits = head.logits(films.features[:3])
    shifted = films.features[:3] @ cam[:, 1:] - logits
    assert np.allclose(shifted - shifted[0], 0, atol=1e-6)


def test_folds_keep_a_patients_films_together_and_balance_the_classes():
    groups = [f"p{i // 3}" for i in range(90)]
    y = np.array([0] * 45 + [1] * 45)
    folds = group_folds(groups, y, FOLDS, 0)
    for g in set(groups):
        assert len({folds[i] for i, x in enumerate(groups) if x == g}) == 1
    for label in (0, 1):
        counts = np.bincount(folds[y == label], minlength=FOLDS)
        assert counts.max() - counts.min() <= 3  # one patient of three films either way
    assert np.array_equal(folds, group_folds(groups, y, FOLDS, 0))


def test_paired_auc_intervals():
    rng = np.random.default_rng(1)
    positive = np.r_[np.ones(60, bool), np.zeros(60, bool)]
    good = positive + rng.normal(0, 0.7, 120)
    groups = [str(i) for i in range(120)]
    same = paired_auc_intervals(good, good, positive, groups)
    assert same["difference"] == {"value": 0.0, "low": 0.0, "high": 0.0}
    out = paired_auc_intervals(good, rng.normal(size=120), positive, groups)
    assert out["a"]["value"] == round(auc(good, positive), 4) and out["a"]["low"] < out["a"]["value"] < out["a"]["high"]
    assert out["difference"]["low"] > 0.1


def test_adapt_keeps_a_better_head_and_writes_a_profile_the_model_uses(resnet, synthetic_profile, tmp_path):
    profile = synthetic_profile
    a = profile["adaptation"]
    assert profile["schema_version"] == 2 and a["head"] == "site" and profile["head"]["labels"] == ["Normal", "Pneumonia"]
    assert a["targets"]["abnormal"]["auc_difference"]["low"] > 0
    assert a["targets"]["abnormal"]["site"]["specificity"]["value"] > a["targets"]["abnormal"]["bundled"]["specificity"]["value"]
    assert [row["films"] for row in a["learning_curve"]["abnormal"]] == [20, 40, 80]
    assert profile["head"]["feature"] == {"output": "features", "pooling": "mean", "width": 256}
    path = tmp_path / "site.json"
    path.write_text(json.dumps(profile))
    site = read_profile(path)
    site.check(resnet.card)
    assert site.head is not None and site.head_name == "site"
    model = load_model("resnet18-int8", site=path)
    image = np.random.default_rng(0).integers(0, 255, (128, 128), np.uint8)
    image = cv2.GaussianBlur(image, (0, 0), 8)
    prediction = model.predict(image)
    raw, features = resnet.bundled_outputs(image)
    expected = site.head.probabilities(features[None], resnet.labels)[0]
    assert prediction.head == "site" and prediction.to_dict()["head"] == "site"
    assert np.allclose(list(prediction.probabilities.values()), expected, atol=1e-6)
    assert prediction.probabilities["COVID"] == 0.0
    assert prediction.refer == (prediction.abnormal_score >= site.points[0].threshold)


def test_adapt_keeps_the_bundled_head_when_the_site_head_is_no_better(resnet):
    films = synthetic_films(resnet, shift=0.0)  # nothing to learn
    result = adapt_films(resnet, films, 0.9, ["abnormal"])
    assert result.profile["adaptation"]["head"] == "bundled" and "head" not in result.profile
    assert "not shown to be better" in result.profile["adaptation"]["decision"]
    assert result.profile["temperature"]["card"] == resnet.card.temperature.value  # calibrate's profile: temperature refitted


@pytest.fixture(scope="module")
def synthetic_profile(resnet) -> dict:
    return adapt_films(resnet, synthetic_films(resnet), 0.9, ["abnormal"]).profile


def tampered(profile: dict, tmp_path: Path, change) -> Path:
    data = json.loads(json.dumps(profile))
    change(data)
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["head"]["weights"][3].__setitem__(1, float("nan")), "head.weights[3][1] must be a finite number, got nan"),
        (lambda d: d["head"].__setitem__("weights", []), "head.weights must be a list of at least 256 values"),
        (lambda d: d["head"]["scale"].__setitem__(0, 0.0), "head.scale must be > 0 everywhere"),
        (lambda d: d["head"]["bias"].append(1.0), "head.bias must hold 2 numbers, got 3"),
        (lambda d: d["head"]["labels"].__setitem__(1, "Tuberculosis"), "its head names labels ['Tuberculosis']"),
        (lambda d: d["head"]["feature"].__setitem__("output", "other"), "its head reads 256 features of output 'other'"),
        (lambda d: d["head"]["feature"].__setitem__("pooling", "max"), "head.feature.pooling must be 'mean'"),
        (lambda d: d["operating_points"][0].__setitem__("for", "COVID"), "operating point 'COVID' does not fit its head"),
    ],
)
def test_a_tampered_head_is_refused_in_one_line(synthetic_profile, runner, tmp_path, change, message):
    path = tampered(synthetic_profile, tmp_path, change)
    image = tmp_path / "film.png"
    cv2.imwrite(str(image), np.full((64, 64), 120, np.uint8) + np.arange(64, dtype=np.uint8)[None])
    res = runner.invoke(main, ["predict", str(image), "-m", "resnet18-int8", "--site", str(path)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    lines = [line for line in res.stderr.splitlines() if "XNNPACK" not in line]
    assert len(lines) == 1 and str(path) in lines[0] and message in lines[0], res.stderr


def test_a_head_for_a_model_of_another_width_is_refused(synthetic_profile, tmp_path):
    profile = synthetic_profile

    def narrower(d: dict) -> None:
        h = d["head"]
        h["feature"]["width"] = 128
        h["mean"], h["scale"], h["weights"] = h["mean"][:128], h["scale"][:128], h["weights"][:128]

    path = tampered(profile, tmp_path, narrower)
    with pytest.raises(SiteError, match="its head reads 128 features of output 'features', but model resnet18-int8 has 256 features"):
        load_model("resnet18-int8", site=path)
    with pytest.raises(SiteError, match="run edgecxr adapt again"):  # a head for another model's sha256
        load_model("resnet18-float32", site=tampered(profile, tmp_path, lambda d: None))


def small_site(root: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    """``per_class`` films (plain gradients with noise: readable, distinct) in class folders under ``root``."""
    rng = np.random.default_rng(seed)
    for label, n in per_class.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image = np.clip(np.linspace(40, 200, 96)[None] + rng.normal(0, 20, (96, 96)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / label / f"{label}-{i}.png"), image)
    return root


@pytest.mark.parametrize(
    ("per_class", "extra", "message"),
    [
        ({"Normal": 25}, [], "films of 1 class only (Normal): a site head needs two or more"),
        ({"Normal": 25, "Pneumonia": 12}, [], "at least 20 readable films per class: Pneumonia has 12 (add 8 more)"),
        ({"Normal": 25, "Pneumonia": 25}, ["--for", "COVID"], "no films for target 'COVID' (classes present: Normal, Pneumonia)"),
        ({"Normal": 25, "Tuberculosis": 25}, [], "class folders ['Tuberculosis'] are not labels of the model"),
    ],
)
def test_adapt_refuses_folders_it_cannot_use(runner, tmp_path, per_class, extra, message):
    site = small_site(tmp_path / "site", per_class)
    res = runner.invoke(main, ["adapt", str(site), "-m", "resnet18-int8", "--out", str(tmp_path / "p.json"), *extra])
    assert res.exit_code == 2 and "Traceback" not in res.output
    lines = [line for line in res.stderr.splitlines() if "XNNPACK" not in line and not line.startswith("adapting")]
    assert lines and lines[-1].startswith("error: ") and message in lines[-1], res.stderr
    assert not (tmp_path / "p.json").exists()


def test_adapt_refuses_a_model_without_a_feature_output(runner, tmp_path):
    site = small_site(tmp_path / "site", {"Normal": 20, "Pneumonia": 20})
    res = runner.invoke(main, ["adapt", str(site), "-m", "mlp12-int8", "--out", str(tmp_path / "p.json")])
    assert res.exit_code == 2 and "no feature output" in res.stderr and "Traceback" not in res.output


def test_duplicate_films_are_left_out_or_refused(resnet, tmp_path):
    site = small_site(tmp_path / "site", {"Normal": 3, "Pneumonia": 3})
    shutil.copy(site / "Normal" / "Normal-0.png", site / "Normal" / "copy.png")
    items = [(p, resnet.labels.index(p.parent.name)) for p in sorted(site.rglob("*.png"))]
    films = read_site(resnet, items)
    assert len(films.files) == 6 and films.duplicates == [f"{site / 'Normal' / 'copy.png'} = {site / 'Normal' / 'Normal-0.png'}"]
    shutil.copy(site / "Normal" / "Normal-1.png", site / "Pneumonia" / "copy.png")
    items = [(p, resnet.labels.index(p.parent.name)) for p in sorted(site.rglob("*.png"))]
    with pytest.raises(ValueError, match="the same film as .*Normal-1.png, but filed under Pneumonia there under Normal"):
        read_site(resnet, items)


@pytest.fixture(scope="module")
def nih(resnet, shared_data) -> SiteFilms:
    return site_films(resnet, shared_data, "nih")


def abnormal_auc(probs: np.ndarray, films: SiteFilms, labels: list[str]) -> float | None:
    return auc(target_scores(probs, labels, "abnormal"), target_positives(films.y, labels, "abnormal"))


@pytest.mark.slow
def test_nih_site_head_beats_the_bundled_head_on_the_other_half(resnet, nih, tmp_path):
    assert len(nih.files) == 354 and len(set(nih.groups)) == 239  # 113 Pneumonia (cxr3 val, test) + 241 Normal (cxr3-plus)
    a, b = halves(nih, 0)
    result = adapt_films(resnet, nih.subset(a), 0.9, ["abnormal"])
    path = tmp_path / "nih.json"
    path.write_text(json.dumps(result.profile))
    site = read_profile(path)
    assert site.head is not None
    other = nih.subset(b)
    site_auc = abnormal_auc(site.head.probabilities(other.features, resnet.labels), other, resnet.labels)
    bundled_auc = abnormal_auc(other.raw, other, resnet.labels)
    assert bundled_auc < 0.72 and site_auc > bundled_auc + 0.1, (bundled_auc, site_auc)


@pytest.mark.slow
def test_cross_validated_interval_covers_the_other_halfs_auc_in_most_splits(resnet, nih):
    """Half A's stated 95% interval of the site head's AUC against the AUC the head fitted on all of A reaches on half B."""
    covered = 0
    for seed in range(5):
        a, b = halves(nih, seed)
        train, test = nih.subset(a), nih.subset(b)
        adaptation = adapt_films(resnet, train, 0.9, ["abnormal"]).profile["adaptation"]
        interval = adaptation["targets"]["abnormal"]["site_auc"]
        labels = adaptation["head_labels"]
        head = fit_head(train.features, head_targets(resnet, train, labels), prior(resnet, labels), adaptation["shrinkage"]["chosen"])
        other = abnormal_auc(head.probabilities(test.features, resnet.labels), test, resnet.labels)
        assert other is not None and 0.7 < other < 0.95
        covered += interval["low"] <= other <= interval["high"]
    assert covered >= 4, covered  # measured: 8 of 8 splits (benchmarks/results/adapt)


@pytest.mark.slow
@pytest.mark.parametrize("site", ["nih", "kermany"])
def test_a_head_from_20_films_per_class_is_no_worse_than_the_bundled_head(resnet, shared_data, site):
    """The shrinkage toward the card's head: 20 films per class of half A, measured on half B, over several draws."""
    films = site_films(resnet, shared_data, site)
    worst = 1.0
    for seed in range(4):
        a, b = halves(films, seed)
        rng = np.random.default_rng(seed)
        pick = np.zeros(len(films.files), bool)
        for i in sorted(set(films.y.tolist())):
            pick[rng.choice(np.flatnonzero(a & (films.y == i)), 20, replace=False)] = True
        sample, test = films.subset(pick), films.subset(b)
        adaptation = adapt_films(resnet, sample, 0.9, ["abnormal"]).profile["adaptation"]
        labels = adaptation["head_labels"]
        head = fit_head(sample.features, head_targets(resnet, sample, labels), prior(resnet, labels), adaptation["shrinkage"]["chosen"])
        site_auc = abnormal_auc(head.probabilities(test.features, resnet.labels), test, resnet.labels)
        bundled_auc = abnormal_auc(test.raw, test, resnet.labels)
        assert site_auc is not None and bundled_auc is not None
        worst = min(worst, site_auc - bundled_auc)
    assert worst > -0.01, worst  # measured over 10 draws: nih -0.005, kermany -0.001, mixed -0.007 at worst


@pytest.mark.slow
def test_adapt_predict_and_evaluate_end_to_end(runner, shared_data, tmp_path, resnet):
    site = tmp_path / "nih"
    rows = SITES["nih"].rows(shared_data)[:: 4]  # every fourth film: 89, both classes
    for row in rows:
        (site / row.label).mkdir(parents=True, exist_ok=True)
        shutil.copy(row.path, site / row.label / row.path.name)
    out = tmp_path / "profile" / "nih.json"
    res = runner.invoke(main, ["adapt", str(site), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["adaptation"]["films"] == len(rows) and set(report["files"]) == {"profile", "roc", "table:abnormal"}
    assert out.exists() and (tmp_path / "profile" / "nih.roc.png").stat().st_size > 1000
    head = report["adaptation"]["head"]
    film = str(site / "Normal" / sorted(p.name for p in (site / "Normal").iterdir())[0])
    res = runner.invoke(main, ["predict", film, "--site", str(out), "--json"])
    record = json.loads(res.stdout.splitlines()[-1])
    assert res.exit_code == 0 and record["head"] == head and "refer" in record
    res = runner.invoke(main, ["evaluate", str(site), "--site", str(out), "--json"])
    evaluation = json.loads(res.stdout)
    assert res.exit_code == 0 and evaluation["site"]["head"] == head
    if head == "site":
        heads = evaluation["heads"]
        assert heads["site"]["abnormal_auc"] == evaluation["abnormal_auc"] and heads["site"]["abnormal_auc"] > heads["bundled"]["abnormal_auc"]
    res = runner.invoke(main, ["adapt", str(site), "--out", str(out)])
    assert res.exit_code == 0 and "learning curve (out-of-fold AUC)" in res.stdout and f"profile uses the {head} head" in res.stdout
