"""Site adaptation report: simulated sites from the shared data, adapted on one patient half and measured on the other.

    python -m benchmarks.adapt --data ../shared/data --out benchmarks/results/adapt [--splits 10] [--model NAME]

The simulated sites (:data:`SITES`) use only films the bundled models were not trained on
(:data:`UNSEEN_SPLITS`: cxr3's val and test, all of cxr3-plus but ``external``, which is never used).
Each site's films are read once (:func:`edgecxr.evaluation.adapt.read_site`); for each of
``--splits`` random patient halves, ``edgecxr adapt``'s code (:func:`edgecxr.evaluation.adapt.adapt_films`)
runs on half A and three ways of working are measured on half B at the 0.90 target:

- **bundled**: the card's head, a film flagged when its label is not Normal (no site profile);
- **calibrated**: the card's head with the temperature and threshold ``edgecxr calibrate`` picks on half A;
- **adapted**: the profile ``adapt`` writes on half A (the site head, or the calibrated bundled head when it kept that).

Also: how often half A's cross-validated 95% interval of the site head's AUC covered the AUC
the head fitted on all of half A reached on half B; profiles made from 20 films per class; each
site's learning curve (``adapt`` on all its films, ``learning_curve.png``); the time of ``adapt``
on 400 films and of a prediction with and without a site head. Writes ``results.json`` and
``report.md`` (machine, git commit, command, model sha256).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecxr.core.head import Head, bundled_head, fit_head
from edgecxr.core.model import Model, load_model
from edgecxr.core.registry import DEFAULT_MODEL
from edgecxr.core.site import ABNORMAL, NORMAL, read_head, target_positives, target_scores
from edgecxr.evaluation.adapt import MIN_FILMS_PER_CLASS, SiteFilms, adapt_films, read_site
from edgecxr.evaluation.benchmark import platform_info
from edgecxr.evaluation.calibrate import bundled_calibration
from edgecxr.evaluation.operating import at_threshold, auc, rounded
from edgecxr.evaluation.provenance import invocation, record

TARGET = 0.90
UNSEEN_SPLITS = {"cxr3": ("val", "test"), "cxr3-plus": ("train", "val", "test")}  # cxr3 train trained the bundled models; external is never adapted on


@dataclass(frozen=True)
class SiteRow:
    path: Path
    label: str
    patient_group: str
    source: str


@dataclass(frozen=True)
class Site:
    """A simulated site: the (dataset, manifest row) pairs of ``../shared/data`` it takes."""

    description: str
    keep: Callable[[str, dict[str, str]], bool]

    def rows(self, data_root: Path) -> list[SiteRow]:
        out = []
        for dataset in ("cxr3", "cxr3-plus"):
            with (data_root / dataset / "manifest.csv").open(newline="") as fh:
                for row in csv.DictReader(fh):
                    if row["split"] in UNSEEN_SPLITS[dataset] and self.keep(dataset, row):
                        out.append(SiteRow(data_root / dataset / row["file"], row["label"], f"{row['source']}:{row['patient_group']}", row["source"]))
        return out


SITES = {
    "nih": Site("one adult hospital, both classes: cxr3 nih Pneumonia (val and test) + cxr3-plus nih Normal (train, val and test)", lambda d, r: r["source"] == "nih"),
    "kermany": Site("one paediatric hospital, both classes: cxr3 kermany Normal and Pneumonia (val and test)", lambda d, r: r["source"] == "kermany"),
    "mixed": Site("a mix of hospitals, three classes: every source of cxr3 val and test", lambda d, r: d == "cxr3"),
}


def site_films(model: Model, data_root: Path, name: str) -> SiteFilms:
    """The films of site ``name`` read by ``adapt``'s own reader, with their patients and sources from the manifests."""
    rows = SITES[name].rows(data_root)
    films = read_site(model, [(r.path, model.labels.index(r.label)) for r in rows])
    by_path = {r.path: r for r in rows}
    return replace(films, groups=[by_path[f].patient_group for f in films.files], sources=[by_path[f].source for f in films.files])


def halves(films: SiteFilms, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two halves of the site's patients, at random (seeded)."""
    patients = sorted(set(films.groups))
    first = set(np.random.default_rng(seed).permutation(patients)[: len(patients) // 2])
    a = np.array([g in first for g in films.groups])
    return a, ~a


def point(scores: np.ndarray, positive: np.ndarray, threshold: float) -> dict[str, Any]:
    m = at_threshold(scores, positive, threshold, replicates=200)
    return {"threshold": threshold, "sensitivity": m["sensitivity"]["value"], "specificity": m["specificity"]["value"], "flagged": m["flagged"]["value"]}


def split_result(model: Model, films: SiteFilms, seed: int) -> dict[str, Any]:
    """Adapt on half A, measure the three ways of working on half B."""
    labels, card_t = model.labels, model.card.temperature.value if model.card.temperature else 1.0
    a, b = halves(films, seed)
    train, test = films.subset(a), films.subset(b)
    positive = target_positives(test.y, labels, ABNORMAL)
    bundled = model.recalibrated(test.raw, card_t)
    calibrated = bundled_calibration(model, train.raw, train.y, TARGET, [ABNORMAL], None, []).profile
    cal_probs = model.recalibrated(test.raw, calibrated["temperature"]["value"])
    profile = adapt_films(model, train, TARGET, [ABNORMAL]).profile
    adapted = site_probabilities(model, profile, test) if "head" in profile else model.recalibrated(test.raw, profile["temperature"]["value"])
    interval = profile["adaptation"]["targets"][ABNORMAL]["site_auc"]
    full_head = fit_head(train.features, head_targets(model, train, profile["adaptation"]["head_labels"]), prior(model, profile["adaptation"]["head_labels"]),
                         profile["adaptation"]["shrinkage"]["chosen"])
    head_auc = auc(target_scores(full_head.probabilities(test.features, labels), labels, ABNORMAL), positive)
    flagged_bundled = bundled.argmax(axis=1) != labels.index(NORMAL)
    return {
        "seed": seed, "films": [int(a.sum()), int(b.sum())],
        "head": profile["adaptation"]["head"],
        "bundled": {"auc": rounded(auc(target_scores(bundled, labels, ABNORMAL), positive)), **point(flagged_bundled.astype(float), positive, 0.5)},
        "calibrated": {"auc": rounded(auc(target_scores(cal_probs, labels, ABNORMAL), positive)),
                       **point(target_scores(cal_probs, labels, ABNORMAL), positive, calibrated["operating_points"][0]["threshold"])},
        "adapted": {"auc": rounded(auc(target_scores(adapted, labels, ABNORMAL), positive)),
                    **point(target_scores(adapted, labels, ABNORMAL), positive, profile["operating_points"][0]["threshold"])},
        "cross_validated_site_auc": interval, "site_head_auc_other_half": rounded(head_auc),
        "covered": bool(interval["low"] <= (head_auc or 0) <= interval["high"]),
    }


def head_targets(model: Model, films: SiteFilms, head_labels: list[str]) -> np.ndarray:
    return np.array([head_labels.index(model.labels[i]) for i in films.y])


def prior(model: Model, head_labels: list[str]) -> Head:
    assert model.card.cam is not None and model.card.temperature is not None
    return bundled_head(np.asarray(model.card.cam.weights), np.asarray(model.card.cam.bias), model.card.temperature.value, model.labels, head_labels)


def site_probabilities(model: Model, profile: dict[str, Any], films: SiteFilms) -> np.ndarray:
    """The probabilities the profile's site head gives ``films``, read back from the profile as the runtime reads it."""
    head, _ = read_head(profile["head"], profile["temperature"]["value"])
    return head.probabilities(films.features, model.labels)


def small_sample(model: Model, films: SiteFilms, seed: int) -> dict[str, Any]:
    """A profile from 20 films per class of half A, measured on half B: the verdict, and the AUC of the head it would give."""
    labels = model.labels
    a, b = halves(films, seed)
    rng = np.random.default_rng(seed)
    pick = np.zeros(len(films.files), bool)
    for i in sorted(set(films.y.tolist())):
        pick[rng.choice(np.flatnonzero(a & (films.y == i)), MIN_FILMS_PER_CLASS, replace=False)] = True
    sample, test = films.subset(pick), films.subset(b)
    profile = adapt_films(model, sample, TARGET, [ABNORMAL]).profile
    positive = target_positives(test.y, labels, ABNORMAL)
    used = site_probabilities(model, profile, test) if "head" in profile else model.recalibrated(test.raw, profile["temperature"]["value"])
    return {
        "seed": seed, "head": profile["adaptation"]["head"],
        "profile_auc": rounded(auc(target_scores(used, labels, ABNORMAL), positive)),
        "bundled_auc": rounded(auc(target_scores(test.raw, labels, ABNORMAL), positive)),
    }


def timing(model: Model, data_root: Path, site_head_profile: dict[str, Any]) -> dict[str, Any]:
    """``adapt`` on 400 films of the mixed site (decode + one invoke each, then the fit), and predict with the bundled head and with a site head.

    The site head timed is ``site_head_profile``'s (a whole-site profile that kept one: the mixed
    site's 400 films may keep the bundled head, which would leave nothing to compare).
    """
    rng = np.random.default_rng(0)
    rows = SITES["mixed"].rows(data_root)
    pick = [rows[i] for i in sorted(rng.choice(len(rows), 400, replace=False))]
    start = time.perf_counter()
    sample = read_site(model, [(r.path, model.labels.index(r.label)) for r in pick])
    read = time.perf_counter() - start
    by_path = {r.path: r for r in pick}
    sample = replace(sample, groups=[by_path[f].patient_group for f in sample.files])
    start = time.perf_counter()
    profile = adapt_films(model, sample, TARGET, [ABNORMAL]).profile
    fit = time.perf_counter() - start
    images = [r.path for r in pick[:100]]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "site.json"
        path.write_text(json.dumps(site_head_profile))
        nets = {"bundled": model, "site": load_model(model.path, site=path)}
    per_image = {}
    for _ in range(2):  # the heads take turns, twice; the second round is kept
        for name, net in nets.items():
            start = time.perf_counter()
            for image in images:
                net.predict(image)
            per_image[name] = round((time.perf_counter() - start) * 1000 / len(images), 3)
    return {"films": len(sample.files), "read_s": round(read, 2), "fit_s": round(fit, 2), "head": profile["adaptation"]["head"], "predict_ms": per_image}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.adapt", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"bundled model name or .tflite path (default {DEFAULT_MODEL})")
    parser.add_argument("--data", type=Path, required=True, help="the shared data folder (holding cxr3/ and cxr3-plus/)")
    parser.add_argument("--splits", type=int, default=10, help="random patient halves per site")
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json, report.md and learning_curve.png")
    args = parser.parse_args(argv)
    model = load_model(args.model)
    provenance = record(invocation("python -m benchmarks.adapt", argv), [model.path])
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"provenance": provenance, "platform": platform_info(), "model": {"name": model.name, "sha256": model.card.sha256}, "sites": {}}
    site_head_profiles: list[dict[str, Any]] = []
    for name, site in SITES.items():
        films = site_films(model, args.data, name)
        print(f"{name}: {len(films.files)} films, {len(set(films.groups))} patients", file=sys.stderr)
        profile = adapt_films(model, films, TARGET, [ABNORMAL]).profile
        whole = profile["adaptation"]
        if "head" in profile:
            site_head_profiles.append(profile)
        results["sites"][name] = {
            "description": site.description, "films": len(films.files), "patients": len(set(films.groups)),
            "counts": {l: int(np.sum(films.y == i)) for i, l in enumerate(model.labels) if np.any(films.y == i)},
            "splits": [split_result(model, films, seed) for seed in range(args.splits)],
            "small": [small_sample(model, films, seed) for seed in range(args.splits)],
            "whole_site": {k: whole[k] for k in ("head", "targets", "learning_curve", "shrinkage", "seconds")},
        }
    results["timing"] = timing(model, args.data, site_head_profiles[0])
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot_learning_curves(results, args.out / "learning_curve.png")
    (args.out / "report.md").write_text(markdown(results))
    print(f"wrote {args.out}/results.json, {args.out}/report.md, {args.out}/learning_curve.png", file=sys.stderr)
    return 0


def summary(values: list[float | None]) -> str:
    v = [x for x in values if x is not None]
    return f"{np.mean(v):.3f} ({min(v):.3f}–{max(v):.3f})" if v else "–"


def markdown(results: dict[str, Any]) -> str:
    p, prov = results["platform"], results["provenance"]
    lines = [
        "# Site adaptation: adapted on one patient half, measured on the other",
        "",
        f"Machine: {p['cpu']}, {p['cpus']} CPUs, {p['system']}, Python {p['python']}, {p['interpreter']} {p['interpreter_version']}.",
        f"Model: {results['model']['name']} (sha256 {results['model']['sha256']}). Command: `{prov['command']}`; git {prov['git']}.",
        "",
        "Each row: mean over random patient halves (lowest–highest in brackets), measured on half B after adapting on half A, at a",
        f"target sensitivity of {TARGET:g} for the abnormality score. *bundled*: the card's head, flagged when the label is not Normal;",
        "*calibrated*: the card's head with `edgecxr calibrate`'s temperature and threshold from half A; *adapted*: the profile",
        "`edgecxr adapt` wrote on half A (its site head, or the calibrated bundled head when it kept that).",
        "",
        "| site | films (patients) | way | AUC | sensitivity | specificity | flagged |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in results["sites"].items():
        for way in ("bundled", "calibrated", "adapted"):
            rows = [r[way] for r in s["splits"]]
            lines.append(
                f"| {name} | {s['films']} ({s['patients']}) | {way} | {summary([r['auc'] for r in rows])} | {summary([r['sensitivity'] for r in rows])} "
                f"| {summary([r['specificity'] for r in rows])} | {summary([r['flagged'] for r in rows])} |"
            )
    lines += ["", "| site | what | |", "|---|---|---|"]
    for name, s in results["sites"].items():
        kept = sum(r["head"] == "site" for r in s["splits"])
        covered = sum(r["covered"] for r in s["splits"])
        small = s["small"]
        lines += [
            f"| {name} | {s['description']} | {', '.join(f'{n} {l}' for l, n in s['counts'].items())} |",
            f"| {name} | site head kept on half A | {kept} of {len(s['splits'])} splits |",
            f"| {name} | half A's cross-validated 95% interval of the site head's AUC covered half B's | {covered} of {len(s['splits'])} splits |",
            f"| {name} | 20 films per class: site head kept | {sum(r['head'] == 'site' for r in small)} of {len(small)} draws |",
            f"| {name} | 20 films per class: AUC on half B, profile vs bundled | {summary([r['profile_auc'] for r in small])} vs "
            f"{summary([r['bundled_auc'] for r in small])}; profile lower than bundled by more than 0.01 in "
            f"{sum((r['profile_auc'] or 0) < (r['bundled_auc'] or 0) - 0.01 for r in small)} draws |",
            f"| {name} | learning curve, all films (out-of-fold AUC) | "
            + ", ".join(f"{r['films']}: {r['auc']:.3f}" for r in s["whole_site"]["learning_curve"][ABNORMAL]) + " |",
        ]
    t = results["timing"]
    lines += [
        "",
        f"**Cost** on this machine: `adapt` on {t['films']} films of the mixed site: reading (decode + one invoke each) {t['read_s']} s, "
        f"the fit with its cross-validation, bootstrap and learning curve {t['fit_s']} s. Predict per film (full `Model.predict` with its checks): "
        + ", ".join(f"{k} head {v} ms" for k, v in t["predict_ms"].items()) + ".",
        "",
        "![learning curves](learning_curve.png)",
        "",
    ]
    return "\n".join(lines)


def plot_learning_curves(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, s in results["sites"].items():
        curve = s["whole_site"]["learning_curve"][ABNORMAL]
        x = [r["films"] for r in curve]
        ax.plot(x, [r["auc"] for r in curve], marker="o", label=name)
        ax.fill_between(x, [r["low"] for r in curve], [r["high"] for r in curve], alpha=0.2)
        bundled = s["whole_site"]["targets"][ABNORMAL]["bundled_auc"]["value"]
        ax.axhline(bundled, linestyle=":", color=ax.lines[-1].get_color(), linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("films the head is fitted on (cross-validated)")
    ax.set_ylabel("abnormal AUC, out of fold")
    ax.set_title("Site head learning curves (dotted: bundled head)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
