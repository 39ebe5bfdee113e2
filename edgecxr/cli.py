"""The ``edgecxr`` command: a thin shell over the Python API.

Exit status: 0 when every input succeeded, 1 when any input failed (the rest are still
processed) or the results could not be written, 2 for usage errors (bad options, a model that
cannot be loaded), 130 when interrupted (Ctrl+C).
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgecxr import __version__
from edgecxr.core.card import ModelError
from edgecxr.core.failures import as_image_error, detail, per_input, shown
from edgecxr.core.imageio import ImageError, LoadedImage, load_image
from edgecxr.core.inputs import EMPTY_FOLDER, Scan, Skipped, scan_images
from edgecxr.core.picture import FORMATS, MAX_SIDE, PictureWriter, result_picture
from edgecxr.core.site import ABNORMAL
from edgecxr.progress import Progress, echo

if TYPE_CHECKING:
    from collections.abc import Callable

    from edgecxr.clinic.service import Service
    from edgecxr.core.model import Model, Prediction
    from edgecxr.evaluation.calibrate import Calibration

MODEL_HELP = "bundled model name (see `edgecxr models`) or path to a .tflite with its card; default: the bundled default"
SITE_HELP = "site profile JSON made by `edgecxr calibrate` for this model; default: the profile installed for the model (--install), if any"


def use_uid_root_or_exit(uid_root: str | None) -> None:
    """Make results' UIDs under ``uid_root`` (None: pydicom's root); a bad root is one error line and exit 2."""
    from edgecxr.clinic import uids

    try:
        uids.use_root(uid_root)
    except ValueError as exc:
        click.echo(f"error: --uid-root: {exc}", err=True)
        sys.exit(2)


def load_or_exit(model: str | None, threads: int | None, site: str | bool | None = None) -> Model:
    """Load a model (with a site profile: a path, True for the installed one if any) for a command, or print one error line and exit 2."""
    from edgecxr.core.model import load_model

    try:
        return load_model(model, threads=threads, site=site)
    except (ModelError, ImportError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def version_text() -> str:
    """What ``edgecxr --version`` says: the package's version and the bundled models' release (their cards' versions)."""
    from edgecxr.core import registry

    versions = registry.release()
    classifiers = {k: v for k, v in versions.items() if k != registry.LUNG_MODEL}
    models = ""
    if classifiers:  # the release is the default model's version (it comes first); models of another version are named with theirs
        current = next(iter(classifiers.values()))
        models = f"bundled models release {current} ({', '.join(k for k, v in classifiers.items() if v == current)})"
        models += "".join(f", {k} {v}" for k, v in classifiers.items() if v != current)
    if registry.LUNG_MODEL in versions:
        models += f", lung model {registry.LUNG_MODEL} {versions[registry.LUNG_MODEL]}"
    return f"edgecxr {__version__} (the package); {models or 'no bundled models'}"


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(version_text())
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="show the package's version and the bundled models' release, then exit")
def main() -> None:
    """edgecxr: a fast second reader for chest X-rays (Normal / Pneumonia / COVID-19) on small CPUs.

    Research tool only: not a medical device, not for diagnosis.
    """


@main.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--model", "-m", help=MODEL_HELP)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object per input, one per line")
@click.option("--threads", type=click.IntRange(min=1), help="interpreter threads (default: the interpreter's choice)")
@click.option(
    "--heatmap",
    "heatmap_dir",
    type=click.Path(file_okay=False),
    help=f"write a picture per image into this folder: where the evidence for the predicted class sits (for a Normal call, the most likely "
    f"abnormal class), inside the lung fields, with a colour bar, the call and the research-use line; at most {MAX_SIDE} px long (ResNet models only)",
)
@click.option("--heatmap-format", type=click.Choice(list(FORMATS)), default="png", show_default=True, help="file format of the --heatmap pictures")
@click.option("--site", metavar="PROFILE", help=SITE_HELP + ": adds refer and operating_point")
def predict(
    paths: tuple[str, ...], model: str | None, as_json: bool, threads: int | None, heatmap_dir: str | None, heatmap_format: str, site: str | None
) -> None:
    """Classify chest X-ray images: files or folders (recursive).

    Reads PNG, JPEG, BMP, TIFF (8/16-bit) and DICOM. Each unreadable input gets an
    `error: <file>: <reason>` line on stderr (and {"file", "error"} with --json) and the
    others are still processed; the exit status is then 1. Probabilities are
    temperature-calibrated when the model card holds a temperature. Every prediction has an
    abnormal_score, 1 - p(Normal); with a site profile also refer (true when a target's score
    is at or above the threshold the site chose) and operating_point. Top probabilities equal at
    3 decimals are printed as a tie (`tied` in the JSON). What a folder scan passes over is one
    `skipped:` line naming a few entries per reason. A pipe whose reader stops (`| head -1`) ends
    the command without an error line.
    """
    net = load_or_exit(model, threads, site or True)
    if heatmap_dir is not None and not net.has_heatmap:
        click.echo(f"error: --heatmap: model {net.name} has no heatmap (only models with a convolutional feature map, such as resnet18-*, do)", err=True)
        sys.exit(2)
    heatmaps = PictureWriter.heatmaps(folder_or_exit("--heatmap", heatmap_dir), heatmap_format) if heatmap_dir is not None else None
    files = images_or_exit(paths, as_json)
    failed = 0

    def work(path: Path) -> tuple[LoadedImage, Prediction]:
        # a picture shows the film at its own size; the model reads the file its own way (a large JPEG reduced, see Model.read)
        loaded = load_image(path) if heatmaps is not None else net.read(path)
        return loaded, net.predict(loaded, heatmap=heatmaps is not None)

    with Progress(len(files), "predicting") as bar, interruptible():
        for path, done in per_input(bar.track(files), work):
            if isinstance(done, ImageError):
                failed += 1
                report_failure(path, done, as_json)
                continue
            loaded, result = done
            out = result.to_dict()
            if heatmaps is not None:
                assert result.heatmap is not None  # predict(heatmap=True) sets it
                try:
                    out["heatmap"] = heatmaps.write(path, result_picture(loaded.pixels, result, result.lungs))
                except Exception as exc:  # the prediction is still printed, with "heatmap": null
                    failed += 1
                    out["heatmap"] = None
                    echo(f"error: {shown(path)}: heatmap not written ({detail(exc)})", err=True)
            emit(json.dumps(out) if as_json else _human(out))
    sys.exit(1 if failed else 0)


@main.command()
@click.option("--model", "-m", "extra", multiple=True, help="also describe this .tflite (repeatable)")
@click.option("--json", "as_json", is_flag=True, help="print a JSON list of model descriptions")
def models(extra: tuple[str, ...], as_json: bool) -> None:
    """List the bundled models (and any given with --model) from their cards.

    One row per model: name, version, variant, input size, size, test accuracy and macro-F1 (as the
    README's table rounds them), calibration temperature, heatmap, labels; under it the site profile
    installed for it, if any, with the temperature it uses instead. --json gives each model's summary
    and `card`, the whole card (changelog, metrics, verification, intended use, ...). Each model
    file is checked against its card's sha256 first; one that fails is an `error:` line (exit
    status 2) instead of a row.
    """
    from edgecxr.core import registry

    rows, failed = [], False
    names: list[str | Path] = [*registry.bundled_models(), *extra]
    for name in names:
        try:
            rows.append(registry.describe(registry.resolve(name)))
        except ModelError as exc:
            click.echo(f"error: {exc}", err=True)
            failed = True
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        width = {key: max((len(str(r[key] or "")) for r in rows), default=0) for key in ("name", "version", "variant")}
        size_width = max((len(r["shown"]["size"]) for r in rows), default=0)
        for r in rows:
            star = "*" if r["default"] else " "
            n = r["shown"]
            metric = f"test accuracy {n['accuracy']}, macro-F1 {n['macro_f1']}" if r["test_macro_f1"] is not None else "no test metrics"
            size = r["preprocessing"]["size"]
            temperature = f"temperature {r['temperature']:.4f}" if r["temperature"] is not None else "no temperature"
            click.echo(
                f"{star} {r['name']:<{width['name']}}  {r['version']:<{width['version']}}  {r['variant'] or '':<{width['variant']}}  "
                f"{f'{size[0]}x{size[1]}':<7}  {n['size']:>{size_width}}  "
                f"{metric}  {temperature}  {'heatmap' if r['heatmap'] else 'no heatmap'}  labels: {', '.join(r['labels'])}"
            )
            if r["site_profile"]:
                click.echo(f"    site profile: {_site_line(r['site_profile'])}")
        if any(r["default"] for r in rows):
            click.echo("* default model")
    sys.exit(2 if failed else 0)


@main.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--model", "-m", help=MODEL_HELP)
@click.option(
    "--manifest",
    "manifest_path",
    metavar="CSV",
    help="dataset manifest (columns file, relative to the CSV's folder, and source): adds metrics per source (per_source with --json)",
)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object with accuracy, macro_f1, labels, per_class, confusion_matrix, n, errors, skipped")
@click.option("--threads", type=click.IntRange(min=1), help="interpreter threads")
@click.option("--site", metavar="PROFILE", help=SITE_HELP + ": adds sensitivity, specificity, PPV, NPV and share flagged at its thresholds")
def evaluate(data_dir: str, model: str | None, manifest_path: str | None, as_json: bool, threads: int | None, site: str | None) -> None:
    """Measure a model on DATA_DIR, which holds one folder of images per class (named as the model's labels).

    Prints accuracy, macro-F1, per-class precision / recall (sensitivity) / F1 / support and the
    confusion matrix (rows: true class, columns: predicted); with --manifest, the same per
    source, and how many images the manifest does not list (or lists but are missing).
    Also the AUC of each class and of the abnormality score, and with a site profile the
    metrics at its operating points. Unreadable images are listed on stderr and left out of the metrics;
    what the scan of the class folders passed over is one `skipped: N (reasons)` line (skipped in the JSON).
    """
    from edgecxr.evaluation.evaluate import evaluate as run_evaluation
    from edgecxr.evaluation.evaluate import scan_labelled
    from edgecxr.evaluation.manifest import read_manifest

    net = load_or_exit(model, threads, site or True)
    try:
        manifest = read_manifest(manifest_path, required=("source",)) if manifest_path is not None else None
        items, skipped = scan_labelled(data_dir, net.labels)
    except ValueError as exc:  # also ManifestError
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    report_skipped(skipped)
    with Progress(len(items), "evaluating") as bar:
        report = run_evaluation(net, data_dir, progress=bar.update, manifest=manifest, items=items, skipped=skipped)
    for line in report["errors"]:
        click.echo(f"error: {line}", err=True)
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo(_evaluation_table(report, data_dir))
    sys.exit(1 if report["errors"] else 0)


@main.command()
@click.argument("site_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--target-sensitivity", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.90, show_default=True,
    help="share of positive films the threshold must flag on SITE_DIR",
)
@click.option(
    "--for", "targets", multiple=True, metavar="abnormal|LABEL",
    help="what to refer: abnormal (1 - p(Normal); every non-Normal film is a positive) or one of the model's labels; repeatable; default: abnormal",
)
@click.option("--manifest", "manifest_path", metavar="CSV", help="dataset manifest (columns file and source): adds the metrics at each threshold per source")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="the profile JSON to write; <stem>.roc.png and <stem>.<target>.csv are written beside it")
@click.option("--install", is_flag=True, help="also install the profile as this model's default (used by predict and evaluate without --site)")
@click.option("--model", "-m", help=MODEL_HELP)
@click.option("--json", "as_json", is_flag=True, help="print the profile as one JSON object (plus files and installed)")
@click.option("--threads", type=click.IntRange(min=1), help="interpreter threads")
def calibrate(
    site_dir: str, target_sensitivity: float, targets: tuple[str, ...], manifest_path: str | None, out: str, install: bool,
    model: str | None, as_json: bool, threads: int | None,
) -> None:
    """Choose a site's operating point on its own labelled films: SITE_DIR holds one folder per class (as for evaluate).

    Refits the calibration temperature on the films and shrinks the fit toward the card's by
    their number (100 films move it half way; fewer than 100 get a warning), then for each target
    picks, of the thresholds whose sensitivity on them is at least --target-sensitivity, the one
    with the best specificity and then the highest sensitivity, and reports
    sensitivity, specificity, PPV, NPV and the share flagged there, each with a bootstrap 95%
    interval. Warns when the films are too few to support the target. Writes the profile (for
    `predict --site` / `evaluate --site`), a ROC plot and a threshold table (CSV: threshold,
    sensitivity, specificity, PPV, NPV, % flagged) per target.
    """
    from edgecxr.evaluation.calibrate import calibrate as run_calibration
    from edgecxr.evaluation.evaluate import scan_labelled
    from edgecxr.evaluation.manifest import read_manifest

    net = load_or_exit(model, threads)
    try:
        manifest = read_manifest(manifest_path, required=("source",)) if manifest_path is not None else None
        items, skipped = scan_labelled(site_dir, net.labels)
        report_skipped(skipped)
        with Progress(len(items), "calibrating") as bar:
            result = run_calibration(net, site_dir, target_sensitivity, list(dict.fromkeys(targets or [ABNORMAL])), manifest, bar.update, items)
    except ValueError as exc:  # also ManifestError
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    finish_profile(result, out, install, as_json, _calibration_text)


@main.command()
@click.argument("site_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="the profile JSON to write; <stem>.roc.png and <stem>.<target>.csv are written beside it")
@click.option(
    "--target-sensitivity", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.90, show_default=True,
    help="share of positive films each threshold must flag, on the out-of-fold scores",
)
@click.option(
    "--for", "targets", multiple=True, metavar="abnormal|LABEL",
    help="what to refer: abnormal (1 - p(Normal)) or one of the labels SITE_DIR has films of; repeatable; default: abnormal",
)
@click.option(
    "--manifest", "manifest_path", metavar="CSV",
    help="CSV with columns file (relative to the CSV's folder) and patient_group (films of one patient stay in one fold), optionally source (metrics per source)",
)
@click.option("--install", is_flag=True, help="also install the profile as this model's default (used by predict, evaluate, listen, watch and serve)")
@click.option("--model", "-m", help=MODEL_HELP)
@click.option("--json", "as_json", is_flag=True, help="print the profile as one JSON object (plus files and installed)")
@click.option("--threads", type=click.IntRange(min=1), help="interpreter threads")
def adapt(
    site_dir: str, out: str, target_sensitivity: float, targets: tuple[str, ...], manifest_path: str | None, install: bool,
    model: str | None, as_json: bool, threads: int | None,
) -> None:
    """Fit a site head on the site's own labelled films: SITE_DIR holds one folder per class (as for calibrate).

    Reads each film once (the model's pooled features, no TensorFlow), fits a logistic head over
    the classes SITE_DIR has (at least 20 films each), pulled toward the bundled head, with the
    pull and the temperature chosen by patient-grouped 5-fold cross-validation, and picks each
    target's threshold on the out-of-fold scores. Reports, per target, bundled head + threshold
    against site head + threshold (AUC, sensitivity, specificity, PPV, NPV, % flagged, 95%
    intervals) and a learning curve. The site head goes into the profile only when it is shown to
    be better (lower end of the paired bootstrap interval of the AUC gain above 0); otherwise the
    profile keeps the bundled head with thresholds, as calibrate would, and says so.
    """
    from edgecxr.evaluation.adapt import adapt as run_adaptation
    from edgecxr.evaluation.evaluate import scan_labelled
    from edgecxr.evaluation.manifest import read_manifest

    net = load_or_exit(model, threads)
    try:
        manifest = read_manifest(manifest_path, required=("patient_group",)) if manifest_path is not None else None
        items, skipped = scan_labelled(site_dir, net.labels)
        report_skipped(skipped)
        with Progress(len(items), "adapting") as bar:
            result = run_adaptation(net, site_dir, target_sensitivity, list(dict.fromkeys(targets or [ABNORMAL])), manifest, bar.update, items)
    except (ValueError, ModelError) as exc:  # also ManifestError
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    finish_profile(result, out, install, as_json, _adaptation_text)


@main.command()
@click.option("--model", "-m", "names", multiple=True, help="model to measure (repeatable); default: every bundled model")
@click.option("--data", type=click.Path(exists=True, file_okay=False), help="folder of class folders: adds accuracy, macro-F1, sensitivity, end-to-end time")
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True, help="timed runs per model")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True, help="untimed warm-up runs")
@click.option("--threads", type=click.IntRange(min=1), help="interpreter threads")
@click.option("--no-xnnpack", is_flag=True, help="disable the XNNPACK delegate")
@click.option("--json", "as_json", is_flag=True, help='print one JSON object: {"platform": {...}, "results": [...]}')
def benchmark(names: tuple[str, ...], data: str | None, runs: int, warmup: int, threads: int | None, no_xnnpack: bool, as_json: bool) -> None:
    """Measure latency (init, first, warm-up, mean/std, p50/p90/p99), peak RSS and size of models.

    Each model runs in its own process. Without --data, latency is timed on a synthetic
    preprocessed input; with --data, on the first real image, and accuracy is added
    (unreadable images get an `error:` line each, are left out, and make the exit status 1).
    """
    from concurrent.futures.process import BrokenProcessPool

    from edgecxr.core import registry
    from edgecxr.evaluation.benchmark import measure_in_child, platform_info

    paths = []
    for name in names or [p.stem for p in registry.bundled_models()]:
        try:
            paths.append(str(registry.resolve(name)))
        except ModelError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
    if not paths:
        click.echo("error: no models to measure (none bundled; give --model)", err=True)
        sys.exit(2)
    results = []
    with Progress(len(paths), "benchmarking") as bar:
        for path in bar.track(paths):
            try:
                results.append(measure_in_child(path, runs=runs, warmup=warmup, threads=threads, data=data, xnnpack=not no_xnnpack))
            except (ModelError, ValueError) as exc:
                echo(f"error: {exc}", err=True)
                sys.exit(2)
            except BrokenProcessPool:
                echo(f"error: {path}: the benchmark process died (out of memory?)", err=True)
                sys.exit(1)
    errors = sorted({line for r in results for line in r.get("errors", [])})
    for line in errors:  # unreadable images of --data: left out of the accuracy, as evaluate does
        click.echo(f"error: {line}", err=True)
    info = platform_info()
    if as_json:
        click.echo(json.dumps({"platform": info, "results": results}))
        sys.exit(1 if errors else 0)
    click.echo(f"{info['machine']} {info['cpu']} ({info['cpus']} cpus), Python {info['python']}, {info['interpreter']} {info['interpreter_version']}")
    header = f"{'model':<22}{'dtype':>13}{'MB':>7}{'init':>8}{'first':>8}{'p50':>8}{'p90':>8}{'p99':>8}{'RSS MB':>8}"
    if data:
        header += f"{'acc':>7}{'mF1':>7}{'e2e ms':>8}"
    click.echo(header)
    for r in results:
        line = (
            f"{r['model']:<22}{r['dtype']:>13}{r['size_bytes'] / 1e6:>7.2f}{r['init_ms']:>8.1f}{r['first_ms']:>8.2f}"
            f"{r['p50_ms']:>8.2f}{r['p90_ms']:>8.2f}{r['p99_ms']:>8.2f}{r['peak_rss_mb']:>8.1f}"
        )
        if data:
            line += f"{r['accuracy']:>7.3f}{r['macro_f1']:>7.3f}{r['end_to_end_ms']:>8.2f}"
        click.echo(line)
    sys.exit(1 if errors else 0)


@main.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="folder for the <stem>.lungs.png masks")
@click.option("--model", "-m", help="path to a lung-segmentation .tflite with its card; default: the bundled lungs-int8")
@click.option("--json", "as_json", is_flag=True, help='print one JSON object per input: {"file", "lung_fraction", "mask", "warnings"}')
@click.option("--threads", type=click.IntRange(min=1), help="interpreter threads")
def lungs(paths: tuple[str, ...], out_dir: str, model: str | None, as_json: bool, threads: int | None) -> None:
    """Outline the lung fields of chest X-rays: files or folders (recursive).

    Writes OUT/<stem>.lungs.png per image (0 = not lung, 255 = lung; the input's own width and
    height) and prints the share of the image inside the lung fields. An image where the model
    finds no plausible lung fields gets the warning "no lung fields found". Unreadable inputs get
    an `error: <file>: <reason>` line on stderr (and {"file", "error"} with --json); the exit
    status is then 1.
    """
    from edgecxr.core.lungs import NO_LUNGS_WARNING, LungMaskWriter, load_lung_model

    try:
        net = load_lung_model(model, threads=threads)
    except (ModelError, ImportError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    writer = LungMaskWriter(folder_or_exit("--out", out_dir))
    files = images_or_exit(paths, as_json)
    failed = 0

    def work(path: Path) -> dict[str, Any]:
        result = net.segment(load_image(path))
        mask = writer.write(path, result.mask)
        return {"file": str(path), "lung_fraction": round(result.lung_fraction, 4), "mask": mask, "warnings": [] if result.found else [NO_LUNGS_WARNING]}

    with Progress(len(files), "segmenting") as bar, interruptible():
        for path, out in per_input(bar.track(files), work):
            if isinstance(out, ImageError):
                failed += 1
                report_failure(path, out, as_json)
            elif as_json:
                emit(json.dumps(out))
            else:
                emit(f"{shown(out['file'])}: lung fraction {out['lung_fraction']:.3f}  mask: {shown(out['mask'])}" + "".join(f"\n  warning: {w}" for w in out["warnings"]))
    sys.exit(1 if failed else 0)


UID_ROOT_HELP = "your organisation's UID root for the results' UIDs (digits and dots, at most 40 characters); default: pydicom's"
CLINIC_HELP = "Needs the clinic extra: pip install 'edgecxr[clinic]' (pynetdicom, imagecodecs, Flask, waitress)."


def clinic_options(command: Any) -> Any:
    """The options `listen` and `watch` share: the store, forwarding, the model."""
    for option in reversed([
        click.option("--store", required=True, type=click.Path(file_okay=False), help="the store folder: received films, results, send queue, audit.jsonl"),
        click.option("--forward", metavar="AET@HOST:PORT", help="C-STORE every result (SR and Secondary Capture) to this PACS; failed sends are retried"),
        click.option("--ae-title", default="EDGECXR", show_default=True, help="our AE title: the one to call, and the calling one when forwarding"),
        click.option("--retry", type=click.FloatRange(min=0.01), default=5.0, show_default=True,
                     help="seconds before a failed send is tried again, doubling each time up to 300"),
        click.option("--model", "-m", help=MODEL_HELP),
        click.option("--site", metavar="PROFILE", help=SITE_HELP + ": adds refer to the results"),
        click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
                     help="interpreter threads (the model runs one film at a time; the workers use the other cores)"),
        click.option("--workers", type=click.IntRange(min=1),
                     help="threads making results (decode, picture, SR and SC; the model runs one film at a time) [default: one per core]"),
        click.option("--rules", type=click.Path(dir_okay=False), metavar="FILE",
                     help="routing rules (JSON: modalities, body_parts, views, min_age_years, max_age_years); default: the model card's intended films"),
        click.option("--forward-tls-ca", type=click.Path(dir_okay=False), metavar="PEM",
                     help="DICOM TLS to the --forward PACS: trust its certificate only when this CA signed it (and it names the host)"),
        click.option("--forward-tls-cert", type=click.Path(dir_okay=False), metavar="PEM", help="DICOM TLS: our certificate, for a PACS that asks for one"),
        click.option("--forward-tls-key", type=click.Path(dir_okay=False), metavar="PEM", help="DICOM TLS: the private key of --forward-tls-cert"),
        click.option("--uid-root", metavar="ROOT", help=UID_ROOT_HELP),
        click.option("--log-max-mb", type=click.FloatRange(min=0.001), default=64.0, show_default=True,
                     help="audit.jsonl and results.jsonl begin a new file at this size (the old one kept as <name>.<UTC time>Z)"),
        click.option("--keep-days", type=click.FloatRange(min=0, min_open=True),
                     help="delete log files rotated more than this many days ago (default: keep them all); films, results and the send queue are never deleted"),
    ]):
        command = option(command)
    return command


def clinic_service(store: str, forward: str | None, ae_title: str, retry: float, model: str | None, site: str | None, threads: int | None,
                   workers: int | None = None, rules: str | None = None, file_of: Callable[[str], str | None] | None = None,
                   forward_tls_ca: str | None = None, forward_tls_cert: str | None = None, forward_tls_key: str | None = None,
                   uid_root: str | None = None, log_max_mb: float = 64.0, keep_days: float | None = None) -> Service:
    """The service behind `listen` and `watch` (:mod:`edgecxr.clinic.service`), or one error line and exit 2."""
    try:
        import pynetdicom  # noqa: F401 (the clinic extra: the receiver and the sender; the results need pydicom only)

        from edgecxr.clinic.forward import Target, tls_client
        from edgecxr.clinic.heap import one_arena
        from edgecxr.clinic.journal import Rotation
        from edgecxr.clinic.routing import RulesError, read_rules
        from edgecxr.clinic.service import Service
        from edgecxr.clinic.store import StoreError, owner_only
    except ImportError:
        click.echo(f"error: {CLINIC_HELP}", err=True)
        sys.exit(2)
    one_arena()  # before the model and the service's threads: their freed memory shared (edgecxr.clinic.heap)
    try:
        owner_only(Path(store))  # films and results name patients: readable by this user only
    except OSError as exc:
        click.echo(f"error: --store: {store}: cannot make it private ({exc.strerror or exc})", err=True)
        sys.exit(2)
    try:
        target = Target.parse(forward) if forward else None
    except ValueError as exc:
        click.echo(f"error: --forward: {exc}", err=True)
        sys.exit(2)
    if bool(forward_tls_cert) != bool(forward_tls_key) or ((forward_tls_cert or forward_tls_ca) and not forward_tls_ca) or (forward_tls_ca and not forward):
        click.echo("error: --forward-tls-ca turns TLS on for --forward; --forward-tls-cert and --forward-tls-key go with it, together", err=True)
        sys.exit(2)
    forward_tls = None
    if forward_tls_ca:
        try:
            forward_tls = tls_client(forward_tls_ca, forward_tls_cert, forward_tls_key)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            click.echo(f"error: --forward-tls-ca/--forward-tls-cert/--forward-tls-key: cannot use them ({getattr(exc, 'strerror', None) or exc})", err=True)
            sys.exit(2)
    use_uid_root_or_exit(uid_root)
    net = load_or_exit(model, threads, site or True)
    try:
        routing = read_rules(rules, net.card.films) if rules else net.card.films
    except RulesError as exc:
        click.echo(f"error: --rules: {exc}", err=True)
        sys.exit(2)
    try:
        service = Service(store, net, target, ae_title, retry, file_of=file_of or (lambda key: None), echo=lambda line: click.echo(json.dumps(line)),
                          rules=routing, rotation=Rotation(round(log_max_mb * 2**20), keep_days), forward_tls=forward_tls, workers=workers)
    except StoreError as exc:
        click.echo(f"error: --store: {exc}", err=True)
        sys.exit(2)
    counts = service.counts()
    click.echo(
        f"edgecxr: store {store}, model {net.name} {net.card.version}" + (f", site profile {net.site.path}" if net.site else "")
        + (f", forwarding to {target}" + (" (TLS)" if forward_tls else "") if target else "") + f"; {counts['pending']} films to classify, {counts['to_send']} results to send",
        err=True,
    )
    return service


@main.command(epilog=CLINIC_HELP)
@click.option("--port", type=click.IntRange(1, 65535), default=11112, show_default=True, help="TCP port to listen on")
@click.option("--host", default="", help="address to listen on (default: every address of this machine)")
@click.option("--max-associations", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="associations open at once; one more is rejected (transient: the sender retries)")
@click.option("--idle-timeout", type=click.FloatRange(min=1.0), default=30.0, show_default=True,
              help="seconds a connection or association may stay silent before it is dropped")
@click.option("--min-free", type=click.FloatRange(min=0.0), default=50.0, show_default=True,
              help="MB the store keeps free for results: below it C-STORE answers 0xA700 (out of resources, retry later)")
@click.option("--tls-cert", type=click.Path(dir_okay=False), help="DICOM TLS: our certificate (PEM); with --tls-key, every association must use TLS")
@click.option("--tls-key", type=click.Path(dir_okay=False), help="DICOM TLS: the certificate's private key (PEM)")
@click.option("--tls-ca", type=click.Path(dir_okay=False), help="DICOM TLS: accept only peers with a certificate signed by this CA (PEM)")
@click.option("--check", is_flag=True, help="do not listen: say in one line how the listener on --store is (queue, last error); exit 0 when healthy, 1 if not")
@click.option("--json", "as_json", is_flag=True, help='with --check: one JSON object {"healthy", "line", "status": {"state", "queue", "to_send", "last_error", ...}}')
@clinic_options
def listen(port: int, host: str, max_associations: int, idle_timeout: float, min_free: float, check: bool, as_json: bool,
           tls_cert: str | None, tls_key: str | None, tls_ca: str | None, **options: Any) -> None:
    """Receive chest films over DICOM (a Storage SCP), classify them, send the results back to the PACS.

    Answers C-ECHO and C-STORE of CR, DX (for presentation and for processing) and Secondary
    Capture images, in every transfer syntax pydicom decodes here; other classes are refused at
    association. Each film is in STORE before its C-STORE is answered success, then classified in
    the background. Results go in the film's study as a Structured Report and a Secondary Capture
    (heatmap, label and "research use - not a diagnosis" burned in), in STORE/results/ and, with
    --forward, to the PACS; a film that cannot be analysed gets a "not analysable" report. Every
    event is a line of STORE/audit.jsonl (also printed on stdout), with a pseudonymous key and no
    patient identifier; the health is in STORE/status.json (see --check) and a status line on
    stderr whenever it changes. A restart resumes the classification and the send queue; SIGTERM
    stops accepting, finishes the queued work and exits 0; a worker that cannot run exits 3.

    Set-up: give the PACS a destination with this AE title, this machine's address and --port
    (see docs/dicom.md).
    """
    if check:
        try:
            from edgecxr.clinic import health
        except ImportError:
            click.echo(f"error: {CLINIC_HELP}", err=True)
            sys.exit(2)
        report = health.as_json(options["store"])
        click.echo(json.dumps(report) if as_json else f"edgecxr: {report['line']}")
        sys.exit(0 if report["healthy"] else 1)
    if bool(tls_cert) != bool(tls_key) or (tls_ca and not tls_cert):
        click.echo("error: --tls-cert and --tls-key go together (and --tls-ca needs them)", err=True)
        sys.exit(2)
    service = clinic_service(**options)
    from edgecxr.clinic.dicomnet.listen import Limits, WorkerStopped, serve, tls_context
    from edgecxr.clinic.service import stop_on_signal

    tls = None
    if tls_cert and tls_key:
        try:
            tls = tls_context(tls_cert, tls_key, tls_ca)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            click.echo(f"error: --tls-cert/--tls-key/--tls-ca: cannot use them ({getattr(exc, 'strerror', None) or exc})", err=True)
            sys.exit(2)

    stop = stop_on_signal()
    limits = Limits(associations=max_associations, idle=idle_timeout, min_free=round(min_free * 2**20))
    try:
        serve(service, options["ae_title"], port, host, stop, limits,
              on_started=lambda: click.echo(f"edgecxr: listening as {options['ae_title']} on port {port}" + (" (TLS)" if tls else ""), err=True),
              on_status=lambda line: click.echo(f"edgecxr: status: {line}", err=True), tls=tls)
    except OSError as exc:
        click.echo(f"error: --port {port}: cannot listen ({exc.strerror or exc})", err=True)
        sys.exit(2)
    except WorkerStopped as exc:
        click.echo(f"error: the worker stopped, exiting so the service manager restarts edgecxr ({exc})", err=True)
        sys.exit(3)
    clinic_stopped(service)


@main.command(epilog=CLINIC_HELP)
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--interval", type=click.FloatRange(min=0.05), default=2.0, show_default=True,
              help="seconds between listings; a file is read once its size has held for one interval")
@clinic_options
def watch(folder: str, interval: float, **options: Any) -> None:
    """Classify the films dropped into FOLDER (recursive), each exactly once, also across restarts.

    Reads PNG, JPEG, BMP, TIFF and DICOM (.dcm, or no suffix with the DICOM marker) once a
    file's size has stopped changing. DICOM films get results as `listen` gives them (and
    --forward sends them); other files get the same picture as results/<key>.png. Each result
    is also one JSON line in STORE/results.jsonl, naming the file it came from; the audit log
    (STORE/audit.jsonl, also on stdout) never does. SIGTERM finishes the queued work and exits 0.
    """
    files: dict[str, str] = {}
    service = clinic_service(file_of=files.get, **options)  # first: without the clinic extra, its one error line
    from edgecxr.clinic.dicomnet.watch import run
    from edgecxr.clinic.service import stop_on_signal

    stop = stop_on_signal()
    click.echo(f"edgecxr: watching {folder} every {interval:g} s", err=True)
    run(service, folder, interval, files, stop)
    clinic_stopped(service)


@main.command(epilog=CLINIC_HELP)
@click.option("--store", required=True, type=click.Path(file_okay=False), help="the store folder `listen` / `watch` write; uploads, accounts and the index go in STORE/web/")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to serve on; any other than 127.0.0.1 lets anyone on the network reach the page")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="TCP port")
@click.option("--user", default="admin", show_default=True, help="an admin account: --password-file (or a prompt on first start) sets its password")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False), help="the password (first line) of --user or --add-user; a file only its owner can read")
@click.option("--add-user", metavar="NAME", help="add (or change) user NAME with --role and its password (--password-file or a prompt), then exit")
@click.option("--remove-user", metavar="NAME", help="remove user NAME (its sessions end at once), then exit")
@click.option("--role", type=click.Choice(["reader", "reviewer", "admin"]), default="reader", show_default=True,
              help="for --add-user: reader sees, reviewer also uploads and records outcomes, admin also manages users")
@click.option("--allowed-host", "allowed_host", multiple=True, metavar="NAME",
              help="a host name the page is reached by (repeat for more); default: the --host address and localhost. Other Host headers get 400")
@click.option("--public-read", is_flag=True, help="a kiosk: anyone who reaches the port sees the worklist and results (never patients, names or notes) without a login")
@click.option("--model", "-m", help=MODEL_HELP)
@click.option("--site", metavar="PROFILE", help=SITE_HELP + ": adds refer to uploaded films' results")
@click.option("--threads", type=click.IntRange(min=1), help="interpreter threads")
@click.option("--uid-root", metavar="ROOT", help=UID_ROOT_HELP + " (for uploaded DICOM films)")
def serve(store: str, host: str, port: int, user: str, password_file: str | None, add_user: str | None, remove_user: str | None, role: str,
          allowed_host: tuple[str, ...], public_read: bool, model: str | None, site: str | None, threads: int | None, uid_root: str | None) -> None:
    """A web page over the store: worklist, film with heatmap, outcomes, monitoring; upload and a JSON API.

    Shows the studies `listen` and `watch` put in STORE and the films uploaded through the page
    or POST /api/predict (multipart field `file`; answers what `predict --json` prints). Every
    page needs a login (unless --public-read); users have roles (--add-user NAME --role R). The
    API takes the same user names and passwords as HTTP Basic. Passwords are stored
    scrypt-hashed in STORE/web/accounts.sqlite. SIGTERM or Ctrl-C finishes the queued uploads
    and exits 0.
    """
    try:
        from edgecxr.clinic.store import StoreError
        from edgecxr.clinic.web import server
        from edgecxr.clinic.web.app import allowed_hosts
    except ImportError:
        click.echo(f"error: {CLINIC_HELP}", err=True)
        sys.exit(2)
    use_uid_root_or_exit(uid_root)
    root = Path(store)
    try:
        password = server.read_password_file(Path(password_file)) if password_file else None
    except server.PasswordFileError as exc:
        click.echo(f"error: --password-file {exc}", err=True)
        sys.exit(2)
    try:
        users = server.accounts(root)
    except (OSError, sqlite3.Error) as exc:
        click.echo(f"error: --store {store}: cannot keep the accounts there ({getattr(exc, 'strerror', None) or exc})", err=True)
        sys.exit(2)
    if remove_user is not None:
        if not users.remove_user(remove_user):
            click.echo(f"error: --remove-user {remove_user!r}: no such user (users: {', '.join(n for n, _ in users.users()) or 'none'})", err=True)
            sys.exit(2)
        click.echo(f"edgecxr: user {remove_user} removed", err=True)
        return
    if add_user is not None:
        if password is None:
            if not sys.stdin.isatty():
                click.echo("error: --add-user: give --password-file (or run in a terminal)", err=True)
                sys.exit(2)
            password = click.prompt(f"password for {add_user}", hide_input=True, confirmation_prompt=True)
        try:
            users.set_user(add_user, role, password)
        except ValueError as exc:
            click.echo(f"error: --add-user {add_user!r}: {exc}", err=True)
            sys.exit(2)
        click.echo(f"edgecxr: user {add_user} saved with role {role}", err=True)
        return
    server.take_over_old_account(root, users, user)
    if password is not None:
        users.set_user(user, users.role(user) or "admin", password)
    elif not users.users():
        if not sys.stdin.isatty():
            click.echo("error: no password set for this store: give --password-file (or start once in a terminal)", err=True)
            sys.exit(2)
        users.set_user(user, "admin", click.prompt(f"password for {user}", hide_input=True, confirmation_prompt=True))
    net = load_or_exit(model, threads, site or True)
    hosts = allowed_hosts(host, allowed_host)
    try:
        state, service = server.open_site(root, net, hosts, public_read)
    except StoreError as exc:
        click.echo(f"error: --store: {exc}", err=True)
        sys.exit(2)
    if host != "127.0.0.1":
        click.echo(f"warning: serving on {host}: anyone who can reach this machine on port {port} can open the page (and try passwords)", err=True)
    if host in ("0.0.0.0", "::") and not allowed_host:
        click.echo("warning: --host is every address: give --allowed-host NAME for the name or address the clinic uses (now only localhost answers)", err=True)
    if public_read:
        click.echo("warning: --public-read: anyone who reaches the page sees the worklist and results without a login", err=True)
    click.echo(f"edgecxr: serving {store} on http://{host}:{port}/ with model {net.name} {net.card.version}", err=True)
    try:
        server.run(state, service, host, port)
    except OSError as exc:
        click.echo(f"error: --port {port}: cannot serve ({exc.strerror or exc})", err=True)
        sys.exit(2)
    click.echo("edgecxr: stopped", err=True)


def finish_profile(result: Calibration, out: str, install: bool, as_json: bool, text: Callable[[dict[str, Any], list[Path], Path | None], str]) -> None:
    """The end of `calibrate` and `adapt`: the error and warning lines, the profile and its report written (and installed), the summary; exits."""
    from edgecxr.core.site import install_profile, read_profile
    from edgecxr.evaluation.calibrate import write_report

    for line in result.errors:
        click.echo(f"error: {line}", err=True)
    for line in result.warnings:
        click.echo(f"warning: {line}", err=True)
    try:
        files = write_report(result, out)
        installed = install_profile(read_profile(files["profile"])) if install else None
    except OSError as exc:
        click.echo(f"error: {out}: cannot write the profile or its report ({exc.strerror or exc})", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps({**result.profile, "files": {k: str(v) for k, v in files.items()}, "installed": str(installed) if installed else None}))
    else:
        click.echo(text(result.profile, list(files.values()), installed))
    sys.exit(1 if result.errors else 0)


def clinic_stopped(service: Service) -> None:
    """The last line of `listen` and `watch` on stderr: what the store holds."""
    click.echo("edgecxr: stopped; " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in service.counts().items()), err=True)


def folder_or_exit(option: str, folder: str) -> Path:
    """``folder``, made if missing; one error line naming ``option`` and exit 2 when it cannot be."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        click.echo(f"error: {option}: cannot create folder {folder} ({exc.strerror})", err=True)
        sys.exit(2)
    return Path(folder)


def images_or_exit(paths: tuple[str, ...], as_json: bool) -> list[Path]:
    """The image files of ``paths`` (see :func:`edgecxr.core.inputs.scan_images`); one error line and exit 1 when there are none.

    What the scan skipped is one ``skipped: N (reasons)`` line on stderr, and with ``--json`` one
    ``{"file", "skipped"}`` record per entry on stdout.
    """
    found = scan_images(paths)
    if as_json:
        for s in found.skipped:
            emit(json.dumps(s.to_dict()))
    report_skipped(found.skipped)
    if not found.files:
        empty = [shown(s.path) for s in found.skipped if s.reason == EMPTY_FOLDER]
        click.echo(f"error: no image files in {', '.join(empty)}", err=True)
        sys.exit(1)
    return found.files


def report_skipped(skipped: list[Skipped]) -> None:
    """The one ``skipped: N (reasons)`` line on stderr of what a folder scan passed over (none when nothing was)."""
    if skipped:
        click.echo(Scan(skipped=skipped).summary(), err=True)


def report_failure(path: Path, exc: Exception, as_json: bool) -> None:
    """The one error line of an input that failed (and its JSON record with ``--json``)."""
    reason = as_image_error(path, exc).reason
    if as_json:
        emit(json.dumps({"file": str(path), "error": reason}))
    echo(f"error: {shown(path)}: {reason}", err=True)


def emit(line: str) -> None:
    """Write one result line to stdout, flushed (clear of the progress bar).

    A pipe whose reader has gone (``| head -1`` has its line) ends the command quietly, exit status
    1, as click ends its own commands; stdout closed or failing otherwise is an error line, exit 1.
    """
    try:
        if sys.stdout is None:
            raise OSError("standard output is closed")
        echo(line)
    except OSError as exc:
        if not isinstance(exc, BrokenPipeError):
            echo(f"error: cannot write results ({exc.strerror or exc})", err=True)
        if sys.stdout is not None:  # nothing more may reach it, not even Python's own flush at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Ctrl+C ends a batch with exit status 130; the lines written so far stay whole (each is written and flushed at once)."""
    try:
        yield
    except KeyboardInterrupt:
        echo("error: interrupted", err=True)
        sys.exit(130)


def _evaluation_table(report: dict, data_dir: str) -> str:
    labels = report["labels"]
    aucs = [f"{l} {v:.4f}" for l, v in report["auc"].items() if v is not None]
    if report["abnormal_auc"] is not None:
        aucs.append(f"abnormal (1 - p(Normal)) {report['abnormal_auc']:.4f}")
    lines = [
        f"model {report['model']} on {report['n']} images: accuracy {report['accuracy']:.4f}, macro-F1 {report['macro_f1']:.4f}",
        "AUC (one class against the rest): " + (", ".join(aucs) if aucs else "- (needs films with and without each class)"),
        "",
        f"{'class':<14}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}",
    ]
    for label in labels:
        c = report["per_class"][label]
        lines.append(f"{label:<14}{c['precision']:>10.4f}{c['recall']:>10.4f}{c['f1']:>10.4f}{c['support']:>10}")
    lines += ["", "confusion matrix (rows true, columns predicted):", " " * 14 + "".join(f"{l[:10]:>11}" for l in labels)]
    for label, row in zip(labels, report["confusion_matrix"]):
        lines.append(f"{label:<14}" + "".join(f"{v:>11}" for v in row))
    if "heads" in report:
        lines += ["", f"{'head':<14}{'accuracy':>10}{'macro-F1':>10}{'abn. AUC':>10}" + "".join(f"{'rec. ' + l[:6]:>13}" for l in labels)]
        for name, h in report["heads"].items():
            area = f"{h['abnormal_auc']:>10.4f}" if h["abnormal_auc"] is not None else f"{'-':>10}"
            lines.append(f"{name:<14}{h['accuracy']:>10.4f}{h['macro_f1']:>10.4f}{area}" + "".join(f"{h['recall'][l]:>13.4f}" for l in labels))
    if "per_source" in report:
        lines += _source_table(report, data_dir)
    if "site" in report:
        site = report["site"]
        lines += ["", f"at the site profile's operating points (made for {site['model']}, {site['head']} head, temperature {site['temperature']:.4f}):"]
        lines += [line for p in site["operating_points"] for line in _operating_lines(p)]
        lines.append(f"referred (any target): {100 * site['referred']:.1f}% of {report['n']} films" if site["referred"] is not None else "referred: -")
    return "\n".join(lines)


def _interval(m: dict[str, Any], percent: bool = False) -> str:
    if m["value"] is None:
        return "-"
    k = 100.0 if percent else 1.0
    unit = "%" if percent else ""
    return f"{k * m['value']:.{1 if percent else 3}f}{unit} ({k * m['low']:.{1 if percent else 3}f}-{k * m['high']:.{1 if percent else 3}f})"


def _operating_lines(p: dict[str, Any]) -> list[str]:
    """One operating point (a profile's, or evaluate's at it) in two lines: threshold and counts, then the metrics with 95% intervals."""
    area = f", AUC {p['auc']:.4f}" if p.get("auc") is not None else ""
    return [
        f"{p['for']}: refer at score >= {p['threshold']:.4f} (chosen for sensitivity {p['target_sensitivity']:g}){area}; "
        f"{p['n_positive']} positive / {p['n_negative']} negative films",
        f"  sensitivity {_interval(p['sensitivity'])}  specificity {_interval(p['specificity'])}  PPV {_interval(p['ppv'])}  "
        f"NPV {_interval(p['npv'])}  flagged {_interval(p['flagged'], percent=True)}",
    ]


def _calibration_text(profile: dict[str, Any], files: list[Path], installed: Path | None) -> str:
    counts = ", ".join(f"{n} {l}" for l, n in profile["sample"]["counts"].items())
    t = profile["temperature"]
    lines = [
        f"model {profile['model']['name']} {profile['model']['version']} on {sum(profile['sample']['counts'].values())} films ({counts}); "
        f"temperature {t['card']:.4f} (card) -> {t['value']:.4f} " + (
            f"(fitted {t['fitted']:.4f} on these {t['films']} films, shrunk toward the card's: {t['weight']:.0%} of the way)" if "fitted" in t else "(refitted here)"
        ),
        "95% bootstrap intervals in brackets",
    ]
    lines += [line for p in profile["operating_points"] for line in _operating_lines(p)]
    lines.append("wrote " + ", ".join(str(f) for f in files))
    if installed is not None:
        lines.append(f"installed as the default profile of {profile['model']['name']}: {installed}")
    return "\n".join(lines)


def _adaptation_text(profile: dict[str, Any], files: list[Path], installed: Path | None) -> str:
    a = profile["adaptation"]
    counts = ", ".join(f"{n} {l}" for l, n in profile["sample"]["counts"].items() if n)
    lines = [
        f"model {profile['model']['name']} {profile['model']['version']} on {a['films']} films ({counts}) of {a['patients']} patients "
        f"({a['patients_from']}); {a['folds']}-fold cross-validation, shrinkage {a['shrinkage']['chosen']:g}, temperature {a['temperature_out_of_fold']:.4f}",
        "out-of-fold for the site head, on these films for the bundled head; 95% bootstrap intervals in brackets",
    ]
    for target, c in a["targets"].items():
        d = c["auc_difference"]
        lines.append(
            f"{target}: AUC bundled {_interval(c['bundled_auc'])}, site {_interval(c['site_auc'])}, gain {d['value']:+.3f} ({d['low']:+.3f} to {d['high']:+.3f})"
        )
        for head in ("bundled", "site"):
            p = c[head]
            lines.append(
                f"  {head:<8} threshold {p['threshold']:.4f}: sensitivity {_interval(p['sensitivity'])}  specificity {_interval(p['specificity'])}  "
                f"PPV {_interval(p['ppv'])}  NPV {_interval(p['npv'])}  flagged {_interval(p['flagged'], percent=True)}"
            )
        curve = ", ".join(f"{r['films']} films {r['auc']:.3f}" for r in a["learning_curve"].get(target, []))
        lines.append(f"  learning curve (out-of-fold AUC): {curve}")
    lines.append(f"profile uses the {a['head']} head: {a['decision']}")
    lines.append("wrote " + ", ".join(str(f) for f in files))
    if installed is not None:
        lines.append(f"installed as the default profile of {profile['model']['name']}: {installed}")
    return "\n".join(lines)


def _site_line(summary: dict[str, Any]) -> str:
    if "error" in summary:
        return f"{summary['path']} does not fit: {summary['error']}"
    temperature = f"; temperature {summary['temperature']:.4f}" if summary.get("temperature") is not None else ""
    points = ", ".join(f"{p['for']} >= {p['threshold']:.4f}" for p in summary["operating_points"])
    return f"{summary['path']} ({points}{temperature}; {summary.get('head', 'bundled')} head; made {summary['created']})"


def _source_table(report: dict, data_dir: str, shown: int = 5) -> list[str]:
    """The per-source rows (recall per class, "-" for a class the source has no image of) and what the manifest covers."""
    labels, coverage = report["labels"], report["manifest"]
    lines = [
        "",
        "per source (recall of each class):",
        f"{'source':<14}{'n':>6}{'accuracy':>10}{'macro-F1':>10}" + "".join(f"{l[:10]:>11}" for l in labels),
    ]
    for source, r in report["per_source"].items():
        recall = "".join(f"{c['recall']:>11.4f}" if c["support"] else f"{'-':>11}" for c in (r["per_class"][l] for l in labels))
        lines.append(f"{source:<14}{r['n']:>6}{r['accuracy']:>10.4f}{r['macro_f1']:>10.4f}{recall}")
    lines += [
        "",
        f"manifest: lists {coverage['listed']} of the {report['n']} images read; "
        f"{len(coverage['unlisted'])} not listed (counted overall, in no source); "
        f"{len(coverage['missing'])} listed under {data_dir} not found",
    ]
    for kind in ("unlisted", "missing"):
        files = coverage[kind]
        lines += [f"  {kind}: {f}" for f in files[:shown]] + ([f"  {kind}: ... and {len(files) - shown} more"] if len(files) > shown else [])
    return lines


def _human(result: dict) -> str:
    probs = ", ".join(f"{k} {v:.3f}" for k, v in sorted(result["probabilities"].items(), key=lambda kv: -kv[1]))
    head = "  (site head)" if result.get("head") == "site" else ""
    call = "tie: " + " = ".join(result["tied"]) if result.get("tied") else result["label"]
    line = f"{shown(result['file'])}: {call}  ({probs})  {result['latency_ms']:.1f} ms{head}"
    if result.get("heatmap"):
        of = result.get("heatmap_label") or result["label"]
        line += f"\n  heatmap: {shown(result['heatmap'])} (evidence for {of}" + (", the most likely abnormal class)" if of != result["label"] else ")")
    if "refer" in result:
        def score(target: str) -> float:
            return result["abnormal_score"] if target == ABNORMAL else result["probabilities"][target]

        reasons = ", ".join(f"{p['for']} score {score(p['for']):.4f}, threshold {p['threshold']:.4f}" for p in result["operating_point"])
        line += f"\n  refer: {'yes' if result['refer'] else 'no'} ({reasons})"
    return line + "".join(f"\n  warning: {w}" for w in result["warnings"])

