"""The training loop: build or load a model, fit it with checkpoints, and write the run folder.

A run folder holds ``run.json`` (provenance: command, git commit, versions, time; dataset
manifest hashes, labels, preprocessing spec), ``best.keras`` (lowest validation loss, or with
``select="worst"`` the best worst val cell, the lowest-loss model then in ``best_loss.keras``),
``last.keras`` + ``state.json`` (for ``--resume`` and written on Ctrl+C; ``adversarial.keras`` too
when the source-adversarial wrapper is trained), ``history.json``, ``cells.json`` (val recall per
source x class and epoch), ``metrics.json`` (val and test, overall and per source), ``curves.png``
and ``confusion_{val,test}.png``. The training input and its de-confounding switches are
:mod:`training.recipe`'s; sources held out of train and val (``hold_out``) :mod:`training.holdout`'s.

Under ``--strategy multiworker`` only the chief (worker 0) writes the run folder. Every worker
runs the same saves, since saving reads variables that need all workers (TensorFlow's
multi-worker checkpointing pattern); the others save into a temporary folder that is deleted
at the end, and they skip the final evaluation.
"""
from __future__ import annotations

import json
import signal
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from edgecxr.core.families import family
from edgecxr.core.model import Model
from edgecxr.core.preprocess import PreprocessSpec
from edgecxr.evaluation import provenance
from edgecxr.evaluation.metrics import classification_report
from training import adversarial, report
from training.data import Dataset, DatasetError, Split
from training.holdout import check_sources, hold_out
from training.multiroot import load_roots, manifest_digests
from training.recipe import Recipe, source_ids, steps_per_epoch, train_dataset
from training.selection import cell_names
from training.val_cells import ValCells


@dataclass
class TrainConfig:
    data: Path
    out: Path
    family: str = "resnet18"
    input_size: int | None = None  # default: the family's (edgecxr.core.families)
    crop: str = "none"  # the preprocessing spec's crop (edgecxr.core.preprocess): none, center-square or lungs
    width: int = 32
    bn_momentum: float = 0.99
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    patience: int = 6
    seed: int = 0
    hflip: bool = False
    geometric: bool = True
    resume: bool = False
    init_from: Path | None = None
    freeze_backbone: bool = False
    strategy: str = "default"
    workers: int = 4
    more_data: list[Path] = field(default_factory=list)  # further dataset roots (training.multiroot)
    balance: str = "none"  # de-confounding switches: see training.recipe.Recipe
    scanner_aug: bool = False
    markers: bool = False
    adversarial: float = 0.0
    select: str = "loss"  # best.keras by lowest val loss, or "worst": highest worst source x class val recall
    teacher: Path | None = None  # a classifier .tflite with its card: distil from its soft outputs (training.distill)
    distill_alpha: float = 0.5  # weight of the hard label in the distillation target
    distill_temperature: float = 2.0  # softening of the teacher's probabilities
    hold_out: list[str] = field(default_factory=list)  # sources whose films leave train and val (training.holdout)

    def recipe(self) -> Recipe:
        return Recipe(self.balance, self.scanner_aug, self.markers, self.adversarial)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """``default``: one device; ``mirrored``: all local GPUs; ``multiworker``: machines from TF_CONFIG."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}: choose default, mirrored or multiworker")


def run_spec(cfg: TrainConfig) -> PreprocessSpec:
    """The preprocessing spec of this run: the init model's when fine-tuning, else the default at the family's size."""
    if cfg.init_from:
        info = json.loads((_run_dir_of(cfg.init_from) / "run.json").read_text())
        return PreprocessSpec.from_dict(info["preprocessing"])
    size = cfg.input_size or family(cfg.family).input_size
    return PreprocessSpec(size=(size, size), crop=cfg.crop, lung_model=bundled_lung_sha256() if cfg.crop == "lungs" else None)


def bundled_lung_sha256() -> str | None:
    """The sha256 of the lung model a "lungs" crop uses (the bundled one)."""
    from edgecxr.core.lungs import load_lung_model

    return load_lung_model().card.sha256


def train(cfg: TrainConfig, argv: list[str] | None = None) -> dict:
    """Train per ``cfg``; returns the metrics dict also written to ``metrics.json`` (empty on a non-chief worker)."""
    strategy = make_strategy(cfg.strategy)  # first: a multi-worker strategy must exist before any other TF op
    chief = strategy.extended.should_checkpoint
    with tempfile.TemporaryDirectory(prefix="edgecxr-worker-") as scratch:
        write_dir = cfg.out if chief else Path(scratch)
        metrics = _train(cfg, argv, strategy, chief, write_dir)
    if not chief:
        print(f"worker {strategy.cluster_resolver.task_id}: done; the chief wrote the run folder")
    return metrics


def _train(cfg: TrainConfig, argv: list[str] | None, strategy: tf.distribute.Strategy, chief: bool, write_dir: Path) -> dict:
    """The training of :func:`train`; this worker's files go to ``write_dir`` (``cfg.out`` on the chief, else a scratch folder)."""
    keras.utils.set_random_seed(cfg.seed)
    write_dir.mkdir(parents=True, exist_ok=True)
    resuming = cfg.resume and (cfg.out / "last.keras").exists()
    if cfg.resume and not resuming:
        print(f"nothing to resume in {cfg.out} (no last.keras): starting a new run")
    if not resuming and (cfg.out / "last.keras").exists():
        raise DatasetError(f"{cfg.out}: already holds a run; pass --resume to continue it or choose another --out")
    spec = PreprocessSpec.from_dict(json.loads((cfg.out / "run.json").read_text())["preprocessing"]) if resuming else run_spec(cfg)
    teacher = _teacher(cfg) if cfg.teacher else None  # refused before the films are decoded
    recorded = json.loads((cfg.out / "run.json").read_text())["config"].get("hold_out", []) if resuming else cfg.hold_out
    if sorted(recorded) != sorted(cfg.hold_out):
        raise DatasetError(f"{cfg.out}: the run holds out {recorded}; resume it with the same --hold-out, not {cfg.hold_out}")
    if cfg.hold_out:
        check_sources([cfg.data, *cfg.more_data], cfg.hold_out)  # a mistyped source fails now, not after decoding
    data = load_roots([cfg.data, *cfg.more_data], spec, workers=cfg.workers)
    data, held_out = hold_out(data, cfg.hold_out) if cfg.hold_out else (data, {})
    train_split = data.splits["train"]
    val_split = data.splits.get("val")
    if val_split is None:
        print("warning: no validation split; early stopping and the best checkpoint use the training set")
        val_split = train_split
    # Under multiworker an incomplete last batch leaves some worker an empty one, on which TensorFlow's oneDNN CPU
    # convolution returns a wrong shape (TF 2.21): fit then uses whole global batches only.
    whole = cfg.strategy == "multiworker"
    if whole and min(len(train_split.x), len(val_split.x)) < cfg.batch_size:
        raise DatasetError(
            f"{cfg.data}: --strategy multiworker needs at least --batch-size ({cfg.batch_size}) training and validation images"
        )
    if chief:
        _write_run_info(cfg, data, spec, argv or sys.argv, resuming, held_out)

    state_path = write_dir / "state.json"
    initial_epoch = 0
    steps = len(train_split.x) // cfg.batch_size if whole else steps_per_epoch(len(train_split.x), cfg.batch_size)
    recipe = cfg.recipe()
    n_sources = len(source_ids(train_split.sources)[1])
    if recipe.adversarial > 0 and n_sources < 2:
        raise DatasetError(f"{cfg.data}: --adversarial needs at least two training sources in the manifests, found {n_sources}")
    soft = _distillation_targets(cfg, teacher, train_split) if teacher else None
    resume_file = cfg.out / (adversarial.WRAPPER_FILE if recipe.adversarial > 0 else "last.keras")
    with strategy.scope():
        if resuming:
            model = keras.models.load_model(resume_file)
            initial_epoch = json.loads((cfg.out / "state.json").read_text())["epochs_done"]
            print(f"resuming from {resume_file} after epoch {initial_epoch}")
        else:
            model = _new_or_init_model(cfg, spec, data.labels)
            if recipe.adversarial > 0:
                model = adversarial.build_wrapper(model, n_sources)
            schedule = keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=max(1, cfg.epochs * steps), alpha=0.02)
            model.compile(
                optimizer=keras.optimizers.Adam(schedule),
                loss="sparse_categorical_crossentropy" if soft is None else "categorical_crossentropy",
                metrics={"classifier": "accuracy"} if recipe.adversarial > 0 else ["accuracy"],
                weighted_metrics=[],
            )
    classifier = adversarial.plain_classifier(model) if recipe.adversarial > 0 else model
    history = _load_history(cfg.out) if cfg.resume else {}
    callbacks = [
        ValCells(classifier, val_split.x, val_split.y, cell_names(val_split.y, val_split.sources, data.labels), write_dir, cfg.batch_size),
        *_best_checkpoints(cfg, history, classifier, write_dir),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience),
        _LastCheckpoint(write_dir, history, classifier),
    ]
    if recipe.adversarial > 0:
        callbacks.insert(0, adversarial.ReversalSchedule(recipe.adversarial, cfg.epochs))
    try:
        model.fit(
            train_dataset(train_split.x, train_split.y, train_split.sources, data.labels, recipe, cfg.batch_size, cfg.seed, cfg.hflip, cfg.geometric, soft),
            steps_per_epoch=steps,
            epochs=cfg.epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            verbose=1 if sys.stdout.isatty() else 2,
        )
    except KeyboardInterrupt:
        done = json.loads(state_path.read_text())["epochs_done"] if state_path.exists() else 0
        if not (write_dir / "last.keras").exists():
            classifier.save(write_dir / "last.keras")
            if classifier is not model:
                model.save(write_dir / adversarial.WRAPPER_FILE)
            state_path.write_text(json.dumps({"epochs_done": done}))
        print(f"\ninterrupted: checkpoint of epoch {done} is in {cfg.out / 'last.keras'}; continue with --resume")
        raise
    if not chief:
        return {}
    best = keras.models.load_model(cfg.out / "best.keras") if (cfg.out / "best.keras").exists() else classifier
    return evaluate_run(best, data, cfg.out, cfg.batch_size)


def _teacher(cfg: TrainConfig) -> Model:
    """The distillation teacher of ``cfg``; DatasetError for one that cannot be used."""
    from edgecxr.core.card import ModelError

    if cfg.adversarial > 0:
        raise DatasetError("--teacher and --adversarial cannot be combined")
    if cfg.hold_out:  # the teacher's films are matched to the student's before any source is held out
        raise DatasetError("--teacher and --hold-out cannot be combined")
    if not 0.0 <= cfg.distill_alpha <= 1.0 or cfg.distill_temperature <= 0:
        raise DatasetError(f"distillation needs 0 <= --distill-alpha <= 1 and --distill-temperature > 0, got {cfg.distill_alpha}, {cfg.distill_temperature}")
    try:
        return Model(cfg.teacher)  # type: ignore[arg-type]  # callers check cfg.teacher
    except ModelError as exc:
        raise DatasetError(str(exc)) from None


def _distillation_targets(cfg: TrainConfig, teacher: Model, train_split: Split) -> np.ndarray:
    """The soft targets of a distilled run (training.distill)."""
    from training.distill import soft_targets, teacher_probabilities

    print(f"distilling from {teacher.name} {teacher.card.version} (alpha {cfg.distill_alpha}, temperature {cfg.distill_temperature})")
    probs = teacher_probabilities(teacher, [cfg.data, *cfg.more_data], train_split, cfg.workers)
    return soft_targets(train_split.y, probs, cfg.distill_alpha, cfg.distill_temperature)


def evaluate_run(model: keras.Model, data: Dataset, out: Path, batch_size: int = 64) -> dict:
    """Metrics of ``model`` on val and test, with plots; written to ``out``."""
    metrics = {}
    for name in ("val", "test"):
        split = data.splits.get(name)
        if split is None:
            continue
        pred = np.argmax(model.predict(split.x, batch_size=batch_size, verbose=0), axis=1)
        metrics[name] = classification_report(split.y, pred, data.labels, split.sources)
        report.plot_confusion(metrics[name], f"{model.name} {name}", out / f"confusion_{name}.png")
    report.write_json(metrics, out / "metrics.json")
    history = _load_history(out)
    if history:
        report.plot_history(history, out / "curves.png")
    return metrics


def _new_or_init_model(cfg: TrainConfig, spec: PreprocessSpec, labels: list[str]) -> keras.Model:
    n_classes = len(labels)
    if not cfg.init_from:
        return family(cfg.family).build(spec.size[0], n_classes, **vars(cfg))
    base = keras.models.load_model(_model_file_of(cfg.init_from))
    base_labels = json.loads((_run_dir_of(cfg.init_from) / "run.json").read_text())["labels"]
    if base_labels != labels:  # another label set: keep the backbone, new head
        features = base.get_layer("classifier").input
        head = keras.layers.Dense(n_classes, activation="softmax", name="classifier")
        base = keras.Model(base.input, head(features), name=base.name)
    for layer in base.layers:  # set both ways: a frozen base model saves its layers as untrainable
        layer.trainable = not cfg.freeze_backbone or layer.name == "classifier"
    return base


def _run_dir_of(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def _model_file_of(path: Path) -> Path:
    return path / "best.keras" if path.is_dir() else path


@contextmanager
def _ctrl_c_deferred():
    """Hold a Ctrl+C until the block is done, so a checkpoint is never left half-written."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *_: caught.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _best_checkpoints(cfg: TrainConfig, history: dict, classifier: keras.Model, folder: Path) -> list[keras.callbacks.Callback]:
    """best.keras by ``cfg.select``; with ``worst``, the lowest-val-loss model also goes to best_loss.keras.

    A resumed run keeps its best checkpoints (the thresholds start from its history).
    """
    def by(monitor: str, mode: str, name: str) -> keras.callbacks.Callback:
        values = history.get(monitor, [])
        start = (max(values) if mode == "max" else min(values)) if values else None
        return _BestCheckpoint(
            str(folder / name), monitor=monitor, mode=mode, save_best_only=True, initial_value_threshold=start, plain=classifier
        )

    if cfg.select == "loss":
        return [by("val_loss", "min", "best.keras")]
    if cfg.select == "worst":
        return [by("val_worst_recall", "max", "best.keras"), by("val_loss", "min", "best_loss.keras")]
    raise ValueError(f"unknown --select {cfg.select!r}: choose loss or worst")


class _BestCheckpoint(keras.callbacks.ModelCheckpoint):
    """Keras's best-model checkpoint of the plain classifier, written whole even when Ctrl+C arrives during the save."""

    def __init__(self, *args, plain: keras.Model, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.plain = plain

    def set_model(self, model: keras.Model) -> None:
        super().set_model(self.plain)  # the adversarial wrapper is trained; the plain classifier is saved

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        with _ctrl_c_deferred():
            super().on_epoch_end(epoch, logs)


class _LastCheckpoint(keras.callbacks.Callback):
    """Saves ``last.keras`` (the plain classifier), ``state.json`` and ``history.json`` after every epoch, together.

    When the trained model is the adversarial wrapper, it is saved too (``adversarial.keras``, for ``--resume``).
    """

    def __init__(self, out: Path, history: dict, plain: keras.Model) -> None:
        super().__init__()
        self.out, self.history, self.plain = out, history, plain

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        with _ctrl_c_deferred():
            for key, value in (logs or {}).items():
                self.history.setdefault(key, []).append(float(value))
            self.plain.save(self.out / "last.keras")
            if self.plain is not self.model:
                self.model.save(self.out / adversarial.WRAPPER_FILE)
            (self.out / "state.json").write_text(json.dumps({"epochs_done": epoch + 1}))
            report.write_json(self.history, self.out / "history.json")


def _load_history(out: Path) -> dict:
    path = out / "history.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _write_run_info(cfg: TrainConfig, data: Dataset, spec: PreprocessSpec, argv: list[str], resuming: bool, held_out: dict[str, int]) -> None:
    """Write run.json (paths repo-relative); a resumed run keeps the original record and appends its own command.

    ``held_out``: films removed per split by ``cfg.hold_out`` (recorded as ``dataset.held_out``).
    """
    path = cfg.out / "run.json"
    if resuming:
        info = json.loads(path.read_text())
        info.setdefault("resumed_with", []).append(provenance.command_line(argv))
        report.write_json(info, path)
        return
    info = {
        **provenance.record(argv),
        "config": {k: [_recorded(p) for p in v] if isinstance(v, list) else _recorded(v) for k, v in vars(cfg).items()},
        "labels": data.labels,
        "preprocessing": spec.to_dict(),
        "dataset": {
            "root": provenance.repo_relative(data.root),
            "manifest_sha256": data.manifest_sha256,
            "roots": {provenance.repo_relative(root): digest for root, digest in manifest_digests([cfg.data, *cfg.more_data]).items()},
            "counts": {name: np.bincount(s.y, minlength=len(data.labels)).tolist() for name, s in data.splits.items()},
            "skipped": data.skipped,
        },
    }
    if cfg.hold_out:
        info["dataset"]["held_out"] = {"sources": sorted(cfg.hold_out), "films": held_out}
    report.write_json(info, cfg.out / "run.json")


def _recorded(value):
    """A config value as run.json records it: a path repo-relative, anything else as it is."""
    return provenance.repo_relative(value) if isinstance(value, Path) else value
