"""Fine-tuning and linear transfer to a target dataset: torchvision's CIFAR-10 reader on a
small file in CIFAR's pickle layout, scikit-learn's digits, and real (tiny) transfer runs of
a model trained by ``imagenot train``."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from imagenot import cli
from imagenot import evaluate as E
from imagenot import transfer as X
from imagenot.io import InputError

from conftest import SMALL_TRAINED_RECIPE as RECIPE

RUNTIME = {"device": "cpu", "threads": 1, "amp": False, "eval_batch_size": 64}
# digits, small: 2 trials x 1 epoch (batch sizes keep a few optimizer steps per epoch)
DIGITS = {"target": "digits", "n_trials": 2, "seed": 0, "max_train": 96, "max_val": 40, "max_test": 60,
          "epochs": {"finetune": 1, "linear": 3}, "restart_epochs": 1,
          "batch_size": {"finetune": 32, "linear": 32}}


def write_cifar(root, n_train_per_batch=6, n_test=10, seed=0):
    """A small CIFAR-10 in the official python layout: cifar-10-batches-py/data_batch_1..5,
    test_batch, batches.meta; images as uint8 rows of 3072 (R, G, B planes)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    images, labels = {}, {}
    for name, n in [*[(f"data_batch_{i}", n_train_per_batch) for i in range(1, 6)], ("test_batch", n_test)]:
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n)]
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": y, "data": x,
                         "filenames": [f"{name}_{i}.png" for i in range(n)]}, f)
        images[name], labels[name] = x, y
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": n_train_per_batch, "num_vis": 3072}, f)
    return images, labels, names


def test_cifar10_reader_on_pickle_layout(tmp_path):
    images, labels, names = write_cifar(tmp_path)
    xtr, ytr, xte, yte, classes = X.load_cifar10(tmp_path, download=False, verify_checksums=False)
    assert classes == names
    assert xtr.shape == (30, 32, 32, 3) and xtr.dtype == np.uint8 and xte.shape == (10, 32, 32, 3)
    # NHWC from CIFAR's planar rows: pixel (0, 0) of image 0 is (R[0], G[0], B[0])
    first = images["data_batch_1"][0]
    assert tuple(xtr[0, 0, 0]) == (first[0], first[1024], first[2048])
    expected = np.concatenate([images[f"data_batch_{i}"] for i in range(1, 6)]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(xtr, expected)
    assert ytr.tolist() == sum((labels[f"data_batch_{i}"] for i in range(1, 6)), [])
    assert yte.tolist() == labels["test_batch"]
    # the official checksums do not match a home-made file: a clear error naming the folder
    with pytest.raises(InputError, match="cifar-10-batches-py.*verify_checksums"):
        X.load_cifar10(tmp_path, download=False, verify_checksums=True)
    with pytest.raises(InputError, match="cifar-10-batches-py"):
        X.load_cifar10(tmp_path / "elsewhere", download=False, verify_checksums=False)

    arrays = X.prepare_target({"target": "cifar10", "root": str(tmp_path), "download": False,
                               "verify_checksums": False, "val_fraction": 0.2})
    assert len(arrays["train_y"]) == 24 and len(arrays["val_y"]) == 6 and len(arrays["test_y"]) == 10
    assert str(arrays["target"]) == "cifar10" and list(arrays["classes"]) == names


def test_digits_target():
    xtr, ytr, xte, yte, classes = X.load_digits_target(0.2, seed=0)
    assert len(ytr) + len(yte) == 1797 and len(yte) == 360
    assert xtr.shape[1:] == (8, 8, 3) and xtr.dtype == np.uint8 and xtr.max() == 255
    assert (xtr[..., 0] == xtr[..., 2]).all()  # grey in three channels
    assert classes == [str(i) for i in range(10)] and set(ytr) == set(range(10)) == set(yte)
    again = X.load_digits_target(0.2, seed=0)
    np.testing.assert_array_equal(again[0], xtr)
    arrays = X.prepare_target(DIGITS)
    assert (len(arrays["train_y"]), len(arrays["val_y"]), len(arrays["test_y"])) == (96, 40, 60)
    np.testing.assert_array_equal(X.prepare_target(DIGITS)["val_x"], arrays["val_x"])


def test_trials_are_table2_and_seeded():
    cfg = X.resolve_transfer({})
    assert cfg["n_trials"] == 24 and cfg["batch_size"] == {"finetune": 256, "linear": 2048}
    trials = X.sample_trials(cfg)
    assert len(trials) == 24 and trials == X.sample_trials(X.resolve_transfer({}))
    assert {t["optimizer"] for t in trials} == {"sgd", "adam"}
    assert all(1e-3 <= t["lr"] <= 1e-1 and 0.8 <= t["momentum"] <= 0.99 and 1e-6 <= t["weight_decay"] <= 5e-3
               and t["warmup_steps"] in (5, 10, 15, 25, 50) for t in trials)
    assert X.sample_trials(X.resolve_transfer({"seed": 1})) != trials


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    path = tmp_path_factory.mktemp("target") / "digits.npz"
    X.write_target(DIGITS, path)
    return path


@pytest.fixture(scope="module")
def metrics(small_trained, tmp_path_factory):
    ds, ckpt = small_trained
    out = tmp_path_factory.mktemp("eval")
    E.evaluate("mobilenet_v3_small", RECIPE, ckpt, ds, {"device": "cpu"}, out)
    return out / "metrics.json"


def state_of(ckpt):
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def test_linear_changes_only_the_last_layer(small_trained, target, metrics, tmp_path):
    _, ckpt = small_trained
    result, model = X.transfer("mobilenet_v3_small", RECIPE, ckpt, target, "linear", DIGITS, RUNTIME,
                               tmp_path / "linear.json", pretrain_metrics=metrics, dataset="toy", seed=0,
                               return_model=True)
    before, after = state_of(ckpt), model.state_dict()
    head = "classifier.3"
    assert before[f"{head}.weight"].shape == (4, 1024) and after[f"{head}.weight"].shape == (10, 1024)
    assert set(after) == set(before)
    for k in before:
        if not k.startswith(head):
            assert torch.equal(before[k], after[k]), f"linear transfer changed {k}"
    # the contract the analysis reads
    on_disk = json.loads((tmp_path / "linear.json").read_text())
    assert on_disk == result
    for key in ("model", "dataset", "seed", "mode", "target", "top1", "n_test", "pretrain_top1", "best", "trials"):
        assert key in on_disk
    assert (result["mode"], result["target"], result["n_test"], result["dataset"]) == ("linear", "digits", 60, "toy")
    assert result["pretrain_top1"] == json.loads(metrics.read_text())["top1"]
    assert len(result["trials"]) == 2 and all("val_top1" in t and "lr" in t for t in result["trials"])
    best = max(result["trials"], key=lambda t: t["val_top1"])
    assert result["best"]["trial"] == best["trial"] and result["best"]["lr"] == best["lr"]
    assert 0.0 <= result["top1"] <= 1.0
    # deterministic: a rerun gives the same numbers
    again = X.transfer("mobilenet_v3_small", RECIPE, ckpt, target, "linear", DIGITS, RUNTIME,
                       tmp_path / "again.json", pretrain_metrics=metrics, dataset="toy", seed=0)
    assert again["trials"] == result["trials"] and again["top1"] == result["top1"]


def test_finetune_changes_all_layers(small_trained, target, tmp_path):
    _, ckpt = small_trained
    result, model = X.transfer("mobilenet_v3_small", RECIPE, ckpt, target, "finetune", DIGITS, RUNTIME,
                               tmp_path / "finetune.json", return_model=True)
    before, after = state_of(ckpt), model.state_dict()
    weights = [k for k in before if k.endswith(".weight") and not k.startswith("classifier.3")]
    changed = [k for k in weights if not torch.equal(before[k], after[k])]
    assert len(changed) == len(weights), sorted(set(weights) - set(changed))
    assert not torch.equal(before["features.0.1.running_mean"], after["features.0.1.running_mean"])
    assert result["mode"] == "finetune" and result["pretrain_top1"] is None and result["seed"] == 0
    assert [t["lr"] for t in result["trials"]] == [t["lr"] for t in X.sample_trials(X.resolve_transfer(DIGITS))]


def test_cli_transfer_data_and_transfer(small_trained, metrics, tmp_path):
    _, ckpt = small_trained
    npz = tmp_path / "data" / "digits.npz"
    assert cli.main(["transfer-data", "--params", json.dumps(DIGITS), "--out", str(npz)]) == 0
    out = tmp_path / "results" / "linear.json"
    assert cli.main(["transfer", "--model", "mobilenet_v3_small", "--recipe", json.dumps(RECIPE),
                     "--checkpoint", str(ckpt), "--target-data", str(npz), "--mode", "linear",
                     "--params", json.dumps(DIGITS), "--runtime", json.dumps(RUNTIME),
                     "--pretrain-metrics", str(metrics), "--out", str(out), "--dataset", "imagenot",
                     "--seed", "0"]) == 0
    assert json.loads(out.read_text())["dataset"] == "imagenot"


def test_bad_input_names_file_or_field(small_trained, target, tmp_path, capsys):
    _, ckpt = small_trained
    args = ("mobilenet_v3_small", RECIPE)
    with pytest.raises(InputError, match="--mode: unknown mode 'frozen'"):
        X.transfer(*args, ckpt, target, "frozen", DIGITS, RUNTIME, tmp_path / "x.json")
    with pytest.raises(InputError, match="gone.pt: checkpoint not found"):
        X.transfer(*args, tmp_path / "gone.pt", target, "linear", DIGITS, RUNTIME, tmp_path / "x.json")
    with pytest.raises(InputError, match="no.npz: target data not found"):
        X.transfer(*args, ckpt, tmp_path / "no.npz", "linear", DIGITS, RUNTIME, tmp_path / "x.json")
    with pytest.raises(InputError, match="metrics.json: pretraining metrics not found"):
        X.transfer(*args, ckpt, target, "linear", DIGITS, RUNTIME, tmp_path / "x.json",
                   pretrain_metrics=tmp_path / "metrics.json")
    (tmp_path / "bad.json").write_text('{"top5": 0.3}')
    with pytest.raises(InputError, match="bad.json: field 'top1'"):
        X.transfer(*args, ckpt, target, "linear", DIGITS, RUNTIME, tmp_path / "x.json",
                   pretrain_metrics=tmp_path / "bad.json")
    with pytest.raises(InputError, match=r"'target' must be one of"):
        X.resolve_transfer({"target": "mnist"})
    with pytest.raises(InputError, match=r"search_space\.lrate"):
        X.resolve_transfer({"search_space": {"lrate": [0.1, 1]}})
    with pytest.raises(InputError, match=r"'modes': unknown mode 'frozen'"):
        X.resolve_transfer({"modes": ["frozen"]})
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(InputError, match="junk.npz: cannot read"):
        X.read_target(tmp_path / "junk.npz")
    rc = cli.main(["transfer", "--model", "mobilenet_v3_small", "--recipe", json.dumps(RECIPE), "--checkpoint",
                   str(ckpt), "--target-data", str(target), "--mode", "last-layer", "--params", "{}",
                   "--out", str(tmp_path / "y.json")])
    assert rc == 2 and "unknown mode 'last-layer'" in capsys.readouterr().err
