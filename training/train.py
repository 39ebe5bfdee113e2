"""The training loop: build or load a model, fit it with checkpoints, and write the run folder.

A run folder holds ``run.json`` (provenance: command, git commit, versions, time; dataset
manifest hash, labels, preprocessing spec), ``best.keras`` (lowest validation loss),
``last.keras`` + ``state.json`` (for ``--resume`` and written on Ctrl+C), ``history.json``,
``metrics.json`` (val and test, overall and per source), ``curves.png`` and
``confusion_{val,test}.png``.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from edgecxr import provenance
from edgecxr.families import family
from edgecxr.metrics import classification_report
from edgecxr.preprocess import PreprocessSpec
from training import augment, report
from training.data import Dataset, DatasetError, load_dataset


@dataclass
class TrainConfig:
    data: Path
    out: Path
    family: str = "resnet18"
    input_size: int | None = None  # default: the family's (edgecxr.families)
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
    return PreprocessSpec(size=(size, size))


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
    data = load_dataset(cfg.data, spec, workers=cfg.workers)
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
        _write_run_info(cfg, data, spec, argv or sys.argv, resuming)

    state_path = write_dir / "state.json"
    initial_epoch = 0
    steps = len(train_split.x) // cfg.batch_size if whole else int(np.ceil(len(train_split.x) / cfg.batch_size))
    with strategy.scope():
        if resuming:
            model = keras.models.load_model(cfg.out / "last.keras")
            initial_epoch = json.loads((cfg.out / "state.json").read_text())["epochs_done"]
            print(f"resuming from {cfg.out / 'last.keras'} after epoch {initial_epoch}")
        else:
            model = _new_or_init_model(cfg, spec, data.labels)
            schedule = keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=max(1, cfg.epochs * steps), alpha=0.02)
            model.compile(
                optimizer=keras.optimizers.Adam(schedule),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
    history = _load_history(cfg.out) if cfg.resume else {}
    best_so_far = min(history.get("val_loss", []), default=None)  # a resumed run keeps its best checkpoint
    callbacks = [
        _BestCheckpoint(
            str(write_dir / "best.keras"), monitor="val_loss", save_best_only=True, initial_value_threshold=best_so_far
        ),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience),
        _LastCheckpoint(write_dir, history),
    ]
    try:
        model.fit(
            augment.train_pipeline(train_split.x, train_split.y, cfg.batch_size, cfg.seed, cfg.hflip, cfg.geometric, whole),
            validation_data=augment.eval_pipeline(val_split.x, val_split.y, cfg.batch_size, whole),
            epochs=cfg.epochs,
            initial_epoch=initial_epoch,
            class_weight=augment.class_weights(train_split.y, len(data.labels)),
            callbacks=callbacks,
            verbose=1 if sys.stdout.isatty() else 2,
        )
    except KeyboardInterrupt:
        done = json.loads(state_path.read_text())["epochs_done"] if state_path.exists() else 0
        if not (write_dir / "last.keras").exists():
            model.save(write_dir / "last.keras")
            state_path.write_text(json.dumps({"epochs_done": done}))
        print(f"\ninterrupted: checkpoint of epoch {done} is in {cfg.out / 'last.keras'}; continue with --resume")
        raise
    if not chief:
        return {}
    best = keras.models.load_model(cfg.out / "best.keras") if (cfg.out / "best.keras").exists() else model
    return evaluate_run(best, data, cfg.out, cfg.batch_size)


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


class _BestCheckpoint(keras.callbacks.ModelCheckpoint):
    """Keras's best-model checkpoint, written whole even when Ctrl+C arrives during the save."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        with _ctrl_c_deferred():
            super().on_epoch_end(epoch, logs)


class _LastCheckpoint(keras.callbacks.Callback):
    """Saves ``last.keras``, ``state.json`` and ``history.json`` after every epoch, together."""

    def __init__(self, out: Path, history: dict) -> None:
        super().__init__()
        self.out, self.history = out, history

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        with _ctrl_c_deferred():
            for key, value in (logs or {}).items():
                self.history.setdefault(key, []).append(float(value))
            self.model.save(self.out / "last.keras")
            (self.out / "state.json").write_text(json.dumps({"epochs_done": epoch + 1}))
            report.write_json(self.history, self.out / "history.json")


def _load_history(out: Path) -> dict:
    path = out / "history.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _write_run_info(cfg: TrainConfig, data: Dataset, spec: PreprocessSpec, argv: list[str], resuming: bool) -> None:
    """Write run.json (paths repo-relative); a resumed run keeps the original record and appends its own command."""
    path = cfg.out / "run.json"
    if resuming:
        info = json.loads(path.read_text())
        info.setdefault("resumed_with", []).append(provenance.command_line(argv))
        report.write_json(info, path)
        return
    info = {
        **provenance.record(argv),
        "config": {k: provenance.repo_relative(v) if isinstance(v, Path) else v for k, v in vars(cfg).items()},
        "labels": data.labels,
        "preprocessing": spec.to_dict(),
        "dataset": {
            "root": provenance.repo_relative(data.root),
            "manifest_sha256": data.manifest_sha256,
            "counts": {name: np.bincount(s.y, minlength=len(data.labels)).tolist() for name, s in data.splits.items()},
            "skipped": data.skipped,
        },
    }
    report.write_json(info, cfg.out / "run.json")
