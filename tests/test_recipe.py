"""De-confounded training: several roots, balanced sampling, scanner augmentation, markers,
gradient reversal, worst-cell selection, and a tiny run with every measure on."""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from edgecxr.evaluation.provenance import repo_relative
from training.data import DatasetError  # noqa: E402
from training.multiroot import list_roots, load_report_split, load_roots  # noqa: E402
from training.selection import cell_names, cell_recalls, select_epoch, worst_cell  # noqa: E402

SPEC = {"size": [32, 32]}
LABELS = ("bright", "dark", "striped")


def _img(label: str, rng: np.random.Generator) -> np.ndarray:
    img = rng.uniform(0, 60, (40, 40))
    if label == "bright":
        img += 150
    elif label == "striped":
        img[:, ::4] = 255
    return img.clip(0, 255).astype(np.uint8)


def make_root(root: Path, plan: dict[tuple[str, str, str], int], seed: int = 0, bad_row: dict | None = None) -> Path:
    """Write root/{split}/{label}/{source}-{i}.png and a manifest; ``plan`` maps (split, source, label) to a count."""
    rng = np.random.default_rng(seed)
    rows = ["file,label,split,source,patient_group,sha256"]
    for (split, source, label), n in plan.items():
        for i in range(n):
            rel = f"{split}/{label}/{source}-{i}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / rel), _img(label, rng))
            row = {"file": rel, "label": label, "split": split, "source": source, "patient_group": f"{root.name}:{split}:{source}:{i}", "sha256": f"{root.name}{rel}"}
            if bad_row and i == 0 and (split, source, label) == bad_row["cell"]:
                row.update(bad_row["set"])
            rows.append(",".join(row.values()))
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def two_roots(tmp_path: Path, n_train: int = 12) -> tuple[Path, Path]:
    main = {}
    for split, n in (("train", n_train), ("val", 10), ("test", 4)):
        for label in LABELS:
            main[(split, "alpha" if label != "striped" else "beta", label)] = n
        main[(split, "beta", "dark")] = n // 2
    plus = {("train", "gamma", "dark"): n_train, ("val", "gamma", "dark"): 10, ("test", "gamma", "dark"): 3, ("external", "delta", "dark"): 5}
    return make_root(tmp_path / "main", main), make_root(tmp_path / "plus", plus, seed=1)


def test_multi_root_loading_splits_and_sources(tmp_path):
    main, plus = two_roots(tmp_path)
    data = load_roots([main, plus], SPEC, verbose=False)
    assert data.labels == list(LABELS)
    assert set(data.splits) == {"train", "val", "test"}
    train = data.splits["train"]
    assert len(train.y) == 12 * 3 + 6 + 12 and train.x.shape[1:] == (32, 32, 1)
    names = cell_names(train.y, train.sources, data.labels)
    assert names.count("gamma/dark") == 12 and names.count("beta/dark") == 6 and names.count("beta/striped") == 12
    files = [f for s in data.splits.values() for f in s.files]
    assert len(files) == len(set(files))  # no file in two splits
    assert not any("external" in Path(f).parts or "delta" in Path(f).name for f in files)  # never loaded for training
    assert "delta" not in {s for split in data.splits.values() for s in split.sources}
    external = load_report_split(plus, "external", data.labels, SPEC)
    assert len(external.y) == 5 and set(external.sources) == {"delta"} and set(external.y.tolist()) == {data.labels.index("dark")}
    with pytest.raises(ValueError, match="not a report-only split"):
        load_report_split(plus, "train", data.labels, SPEC)


def test_multi_root_refuses_inconsistent_roots(tmp_path):
    main, plus = two_roots(tmp_path)
    (plus / "train" / "checked").mkdir()
    with pytest.raises(DatasetError, match=r"\['checked'\] are not labels"):
        list_roots([main, plus])
    (plus / "train" / "checked").rmdir()
    moved = make_root(tmp_path / "moved", {("train", "gamma", "dark"): 3}, bad_row={"cell": ("train", "gamma", "dark"), "set": {"split": "external"}})
    with pytest.raises(DatasetError, match="manifest says split 'external'"):
        list_roots([main, moved])
    leak = make_root(tmp_path / "leak", {("train", "gamma", "dark"): 2, ("val", "gamma", "dark"): 2})
    text = (leak / "manifest.csv").read_text().replace("leak:val:gamma:0", "leak:train:gamma:0")
    (leak / "manifest.csv").write_text(text)
    with pytest.raises(DatasetError, match="patient_group 'leak:train:gamma:0' is in splits"):
        list_roots([main, leak])


@pytest.mark.data
def test_shared_roots_split_consistency(shared_data):
    labels, pairs = list_roots([shared_data / "cxr3", shared_data / "cxr3-plus"])
    assert labels == ["COVID", "Normal", "Pneumonia"]
    assert {s: len(v) for s, v in pairs.items()} == {"train": 4210 + 166, "val": 906 + 39, "test": 905 + 37}
    files = [str(p) for items in pairs.values() for p, _ in items]
    assert len(files) == len(set(files))
    assert not any("/external/" in f for f in files)
    from training.multiroot import manifests_of

    manifests = manifests_of([shared_data / "cxr3", shared_data / "cxr3-plus"])

    def source(file: str) -> str:
        return next((row.source for m in manifests if (row := m.get(file))), "")

    assert all(source(f) for f in files)
    plus_train = [str(p) for p, _ in pairs["train"] if "cxr3-plus" in str(p)]
    assert len(plus_train) == 166 and {source(f) for f in plus_train} == {"nih"}


@pytest.mark.train
def test_balanced_sampler_draws_cells_evenly():
    from training.sampling import balanced_indices, cell_probabilities

    y = np.array([0] * 300 + [0] * 30 + [1] * 100 + [1] * 100)
    names = ["a/0"] * 300 + ["b/0"] * 30 + ["a/1"] * 100 + ["c/1"] * 100
    cells = np.unique(names, return_inverse=True)[1]
    np.testing.assert_allclose(cell_probabilities(y, cells, 0.0), [0.25, 0.25, 0.25, 0.25])
    sqrt = cell_probabilities(y, cells, 0.5)
    assert sqrt[0] == pytest.approx(0.5 * np.sqrt(300) / (np.sqrt(300) + np.sqrt(30)))  # cells sort a/0, a/1, b/0, c/1
    assert sqrt[1] == sqrt[3] == pytest.approx(0.25) and sqrt[0] / sqrt[2] == pytest.approx(np.sqrt(10))
    assert cell_probabilities(np.array([0] * 40 + [0] * 4 + [1] * 10), np.array([0] * 40 + [1] * 4 + [2] * 10), 0.0)[1] == pytest.approx(0.5 * 0.2 / 1.2)
    draws = np.concatenate([b.numpy() for b in balanced_indices(y, names, 0.0, seed=3).batch(64).take(200)])
    counts = np.bincount(cells[draws], minlength=4) / len(draws)
    np.testing.assert_allclose(counts, 0.25, atol=0.02)
    assert len(np.unique(draws[cells[draws] == 2])) == 30  # the small cell b/0 is repeated, all its films drawn


@pytest.mark.train
def test_markers_change_pixels_not_shape_and_ignore_the_class():
    import tensorflow as tf

    from training.markers import MIN_INK, burn_markers, stamp_bank

    bank = stamp_bank(32, count=64)
    assert bank.shape == (64, 16, 16) and bank.min() == 0.0 and 0.9 < bank.max() <= 1.0
    assert all(bank[k].sum() >= MIN_INK for k in range(64))  # every stamp draws something, on every OpenCV (5.1 draws thinner)
    rng = tf.random.Generator.from_seed(0)
    base = tf.fill([32, 32, 32, 1], 0.5)
    labels = np.arange(32) % 2
    marked = {0: [], 1: []}
    for _ in range(40):
        out = burn_markers(base, tf.constant(bank), rng).numpy()
        assert out.shape == (32, 32, 32, 1) and out.min() >= 0.0 and out.max() <= 1.0
        changed = np.abs(out - 0.5).reshape(32, -1).max(axis=1) > 0.05
        for c in (0, 1):
            marked[c] += changed[labels == c].tolist()
    rates = [np.mean(marked[c]) for c in (0, 1)]
    assert abs(rates[0] - rates[1]) < 0.06 and all(0.65 < r < 0.85 for r in rates)  # 1 - 0.5**2 for two chances


@pytest.mark.train
def test_scanner_augmentation_keeps_shape_and_range():
    import tensorflow as tf

    from conftest import toy_images
    from training.scanner_aug import scanner_augment

    x, _ = toy_images(64)
    out = scanner_augment(tf.constant(x), tf.random.Generator.from_seed(1)).numpy()
    assert out.shape == x.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    diff = np.abs(out - x).reshape(64, -1).mean(axis=1)
    assert (diff > 1e-3).mean() > 0.8  # nearly every image changed
    assert np.corrcoef(out.ravel(), x.ravel())[0, 1] > 0.5  # still the same films


@pytest.mark.train
def test_gradient_reversal_flips_the_gradient():
    import tensorflow as tf

    from training.adversarial import GradientReversal, ramp

    layer = GradientReversal()
    layer.build((None, 3))
    layer.strength.assign(0.5)
    x = tf.constant([[1.0, -2.0, 3.0]])
    w = tf.constant([[2.0, 3.0, -1.0]])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        plain = tf.reduce_sum(x * w)
        reversed_ = tf.reduce_sum(layer(x) * w)
    np.testing.assert_array_equal(layer(x).numpy(), x.numpy())
    np.testing.assert_allclose(tape.gradient(plain, x).numpy(), w.numpy())
    np.testing.assert_allclose(tape.gradient(reversed_, x).numpy(), -0.5 * w.numpy())
    assert ramp(0, 10, 0.3) == 0.0 and ramp(9, 10, 0.3) == pytest.approx(0.3, abs=1e-4) and ramp(2, 10, 0.3) < ramp(5, 10, 0.3)


def test_worst_cell_selection_picks_the_right_epoch():
    y = np.array([0] * 20 + [1] * 20 + [1] * 5)
    sources = ["a"] * 20 + ["a"] * 20 + ["b"] * 5
    cells = cell_names(y, sources, ["N", "P"])
    pred = y.copy()
    pred[:6] = 1  # a/N: 14 of 20
    pred[20:22] = 0  # a/P: 18 of 20
    pred[40:] = 0  # b/P: 0 of 5, too small a cell to select on
    recalls = cell_recalls(y, pred, cells)
    assert recalls == {"a/N": 0.7, "a/P": 0.9}
    assert worst_cell(recalls) == ("a/N", 0.7)
    history = {"val_loss": [0.9, 0.5, 0.4, 0.45], "val_worst_recall": [0.5, 0.8, 0.6, 0.8]}
    assert select_epoch(history) == 2
    assert select_epoch(history, "val_loss") == 1  # the highest value: select_epoch maximises
    with pytest.raises(ValueError, match="no 'val_acc'"):
        select_epoch(history, "val_acc")


@pytest.mark.train
def test_tiny_run_with_every_measure_saves_the_plain_classifier_and_resumes(tmp_path):
    import tf_keras as keras

    from training.train import TrainConfig, train

    main, plus = two_roots(tmp_path, n_train=16)
    out = tmp_path / "run"
    cfg = dict(data=main, more_data=[plus], out=out, input_size=32, width=8, bn_momentum=0.9, batch_size=16, lr=3e-3,
               balance="sqrt", scanner_aug=True, markers=True, adversarial=0.3, select="worst", patience=50)
    train(TrainConfig(**cfg, epochs=1))
    assert json.loads((out / "state.json").read_text())["epochs_done"] == 1
    metrics = train(TrainConfig(**cfg, epochs=2, resume=True))
    assert json.loads((out / "state.json").read_text())["epochs_done"] == 2
    history = json.loads((out / "history.json").read_text())
    assert len(history["val_worst_recall"]) == 2 and len(history["source_loss"]) == 2
    cells = json.loads((out / "cells.json").read_text())
    assert [c["epoch"] for c in cells] == [1, 2] and set(cells[0]["recalls"]) == {"alpha/bright", "alpha/dark", "beta/striped", "gamma/dark"}
    for name in ("best.keras", "last.keras", "best_loss.keras"):
        model = keras.models.load_model(out / name)
        assert model.output_shape == (None, 3) and len(model.outputs) == 1, name
        layer_names = {layer.name for layer in model.layers}
        assert {"features", "classifier"} <= layer_names
        assert not layer_names & {"grad_reversal", "source", "adv_hidden", "class_onehot"}, name
    wrapper = keras.models.load_model(out / "adversarial.keras")
    assert wrapper.get_layer("grad_reversal").strength.numpy() > 0
    info = json.loads((out / "run.json").read_text())
    assert set(info["dataset"]["roots"]) == {repo_relative(main), repo_relative(plus)} and info["config"]["more_data"] == [repo_relative(plus)]
    assert metrics["test"]["n"] == 4 * 3 + 2 + 3
    assert set(metrics["test"]["per_source"]) == {"alpha", "beta", "gamma"}


def test_ablation_verdict_and_root_membership():
    from training.ablation import files_under, kept

    assert files_under(["d/cxr3/test/a.png", "d/cxr3-plus/test/b.png"], "d/cxr3").tolist() == [True, False]
    base = {"external_normal": 0.60, "nih_normal": 0.60, "cxr3_macro_f1": 0.88, "cxr3_covid_sensitivity": 0.90}
    better = {**base, "external_normal": 0.70, "cxr3_macro_f1": 0.875}
    assert kept({"selected": better}, {"selected": base}).startswith("kept (external_normal +0.100")
    worse_id = {**better, "cxr3_covid_sensitivity": 0.85}
    assert kept({"selected": worse_id}, {"selected": base}).startswith("not kept (hurts cxr3_covid_sensitivity")
    trade = {**base, "external_normal": 0.70, "nih_normal": 0.50}
    assert kept({"selected": trade}, {"selected": base}).startswith("not kept (no clear gain")
    assert kept({"selected": base}, None) == "reference"
