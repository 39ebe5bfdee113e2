"""Training pipeline: models, data discovery, a tiny real run, resume, Ctrl+C, parity with the runtime.

The data discovery tests need no TensorFlow; the others are marked ``train`` and import it inside.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from conftest import REPO, make_dataset
from edgecxr.core.families import FAMILIES, family
from training.data import DatasetError, list_images, load_dataset  # no TensorFlow: these run in the runtime tier too

SPEC = {"size": [32, 32]}


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.train
def test_model_shapes_and_layers():
    resnet = FAMILIES["resnet18"].build(64, 3, width=8)
    assert resnet.input_shape == (None, 64, 64, 1)
    assert resnet.output_shape == (None, 3)
    assert resnet.get_layer("features").output_shape == (None, 2, 2, 64)
    convs = [l for l in resnet.layers if l.__class__.__name__ == "Conv2D"]
    assert len(convs) == 1 + 16 + 3  # stem, 8 blocks x 2, 3 projections
    assert all(c.activation.__name__ == "linear" and not c.use_bias for c in convs)
    mlp = FAMILIES["mlp12"].build(32, 5)
    dense = [l for l in mlp.layers if l.__class__.__name__ == "Dense"]
    assert len(dense) == 13 and all(d.activation.__name__ == "relu" for d in dense[:12])
    widths = [d.units for d in dense[:12]]
    assert widths == sorted(widths, reverse=True)
    assert mlp.output_shape == (None, 5)
    with pytest.raises(ValueError, match="unknown model family"):
        family("vgg")


def test_n_class_folders_and_flat_layout(tmp_path):
    root = make_dataset(tmp_path / "given", labels=("T1", "T2", "FLAIR", "DWI"))
    labels, pairs = list_images(root)
    assert labels == ["DWI", "FLAIR", "T1", "T2"]
    assert len(pairs["train"]) == 96 and len(pairs["test"]) == 24
    flat = tmp_path / "flat"
    for label in ("a", "b"):
        (flat / label).mkdir(parents=True)
        for i in range(40):
            cv2.imwrite(str(flat / label / f"{i}.png"), np.full((8, 8), i, np.uint8))
    labels, pairs = list_images(flat)
    assert labels == ["a", "b"]
    assert sum(len(v) for v in pairs.values()) == 80
    assert len(pairs["train"]) > len(pairs["val"]) > 0


def test_flat_layout_splits_by_patient_group(tmp_path):
    root = tmp_path / "flat"
    rows = ["file,patient_group"]
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(60):
            cv2.imwrite(str(root / label / f"{i}.png"), np.full((8, 8), i, np.uint8))
            rows.append(f"{label}/{i}.png,patient{i // 3}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    _, pairs = list_images(root)
    group_split = {}
    for split, items in pairs.items():
        for path, _ in items:
            group = int(path.stem) // 3
            assert group_split.setdefault(group, split) == split, "a patient crosses splits"


def test_bad_datasets(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        list_images(tmp_path / "nope")
    one = tmp_path / "one" / "train" / "only"
    one.mkdir(parents=True)
    cv2.imwrite(str(one / "x.png"), np.zeros((8, 8), np.uint8))
    with pytest.raises(DatasetError, match="need at least two"):
        list_images(tmp_path / "one")
    root = make_dataset(tmp_path / "broken", per_class=(4, 2, 2))
    (root / "train" / "dark" / "corrupt.png").write_bytes(b"not a png")
    (root / "train" / "dark" / "empty.png").write_bytes(b"")
    data = load_dataset(root, SPEC, verbose=False)
    assert len(data.skipped) == 2
    assert any("corrupt.png" in s for s in data.skipped)
    assert data.splits["train"].x.shape == (12, 32, 32, 1)


@pytest.mark.train
def test_cli_bad_dataset_exit_code(tmp_path):
    result = run_cli(str(tmp_path / "missing"), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.train
@pytest.mark.slow
def test_tiny_run_learns_and_matches_runtime(trained_run, tmp_path):
    from converters.quantize import convert
    from edgecxr.core.card import ModelCard, write_card
    from edgecxr.core.model import Model
    from edgecxr.core.preprocess import PreprocessSpec

    root, out, metrics = trained_run
    assert metrics["test"]["accuracy"] >= 0.9, metrics["test"]
    for name in ("best.keras", "last.keras", "run.json", "history.json", "metrics.json", "curves.png", "confusion_test.png"):
        assert (out / name).is_file(), name
    info = json.loads((out / "run.json").read_text())
    assert info["labels"] == ["bright", "dark", "striped"]
    assert info["preprocessing"]["size"] == [32, 32]
    assert "tensorflow" in info["versions"] and info["command"]
    # the runtime, reading the raw PNG, gives what Keras gives on the training pipeline's tensors
    import tf_keras as keras

    model = keras.models.load_model(out / "best.keras")
    tflite = tmp_path / "m.tflite"
    tflite.write_bytes(convert(model, "float32"))
    write_card(tflite, ModelCard(name="m", labels=tuple(info["labels"]), preprocessing=PreprocessSpec.from_dict(info["preprocessing"])))
    data = load_dataset(root, info["preprocessing"], verbose=False)
    test = data.splits["test"]
    keras_probs = model.predict(test.x, verbose=0)
    runtime = Model(tflite)
    runtime_probs = np.stack([list(runtime.predict(f).probabilities.values()) for f in test.files])
    np.testing.assert_allclose(runtime_probs, keras_probs, atol=1e-4)


@pytest.mark.train
@pytest.mark.slow
def test_interrupt_saves_checkpoint_and_resume_finishes(tmp_path):
    root = make_dataset(tmp_path / "data", per_class=(60, 6, 6))
    out = tmp_path / "run"
    args = [str(root), "--out", str(out), "--input-size", "32", "--width", "8", "--epochs", "200", "--patience", "500"]
    proc = subprocess.Popen([sys.executable, "-m", "training", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (out / "state.json").exists() and time.time() < deadline:
        time.sleep(0.5)
    assert (out / "state.json").exists(), "no epoch finished"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "continue with --resume" in stdout
    done = json.loads((out / "state.json").read_text())["epochs_done"]
    assert 1 <= done < 200
    result = run_cli(*args[:-4], "--epochs", str(done + 1), "--resume")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resuming from {out / 'last.keras'} after epoch {done}" in result.stdout
    assert json.loads((out / "state.json").read_text())["epochs_done"] == done + 1
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == done + 1
    assert (out / "metrics.json").is_file()


@pytest.mark.train
@pytest.mark.slow
def test_init_from_with_new_classes_and_frozen_backbone(trained_run, tmp_path):
    import tf_keras as keras

    from training.train import TrainConfig, train

    base = trained_run.out
    site = make_dataset(tmp_path / "d4", labels=("dark", "bright", "striped", "checked"), per_class=(8, 4, 4))
    out = tmp_path / "site"
    train(TrainConfig(site, out, init_from=base, freeze_backbone=True, epochs=2, batch_size=16))
    before = keras.models.load_model(base / "best.keras")
    after = keras.models.load_model(out / "best.keras")
    assert after.output_shape == (None, 4)
    np.testing.assert_array_equal(before.get_layer("stem_conv").get_weights()[0], after.get_layer("stem_conv").get_weights()[0])
    assert json.loads((out / "run.json").read_text())["preprocessing"]["size"] == [32, 32]


@pytest.mark.train
def test_ctrl_c_during_a_checkpoint_waits_for_it():
    import os

    from training.train import _ctrl_c_deferred

    before = signal.getsignal(signal.SIGINT)
    written = []
    with pytest.raises(KeyboardInterrupt):
        with _ctrl_c_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the signal arrives here, mid-"save"
            written.append("whole checkpoint")
    assert written == ["whole checkpoint"]
    assert signal.getsignal(signal.SIGINT) is before  # the earlier handler is back
