"""`imagenot benchmark-dataset`: CIFAR-10 (a small file in CIFAR's pickle layout) and
scikit-learn's digits written as training datasets in the split's layout."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imagenot import benchmarks, cli, data
from imagenot.io import InputError
from test_transfer import write_cifar


def _members(folder):
    out = {}
    for shard in sorted(folder.glob("*.tar")):
        with tarfile.open(shard) as tf:
            for m in tf:
                out[m.name] = tf.extractfile(m).read()
    return out


def test_cifar10_pickle_layout_becomes_train_val_test_shards(tmp_path):
    images, labels, names = write_cifar(tmp_path / "cifar", n_train_per_batch=8, n_test=12)
    out = tmp_path / "ds"
    params = {"source": "cifar10", "root": str(tmp_path / "cifar"), "download": False, "verify_checksums": False,
              "val_fraction": 0.25, "shard_size": 7}
    assert cli.main(["benchmark-dataset", "--params", json.dumps(params), "--out-dir", str(out)]) == 0

    classes = data.read_classes(out)
    assert classes["name"].tolist() == names and classes["wnid"].iloc[0] == "cifar10:airplane"
    report = json.loads((out / "report.json").read_text())
    assert report["splits"] == {"train": 30, "val": 10, "test": 12}  # 40 training images, 25% validation
    counts = pd.read_csv(out / "counts.csv")
    assert counts.groupby("split")["n"].sum().to_dict() == {"test": 12, "train": 30, "val": 10}
    assert len(list((out / "train").glob("*.tar"))) == 5  # 30 samples, shards of 7

    # test split: the official test batch, every image bit-exact (PNG), ordered by label then key
    test = _members(out / "test")
    keys = sorted({n.rsplit(".", 1)[0] for n in test})
    assert keys == [f"cifar10_test_{i:06d}" for i in range(12)]
    for i in range(12):
        img = np.asarray(Image.open(io.BytesIO(test[f"cifar10_test_{i:06d}.jpg"])))
        want = images["test_batch"][i].reshape(3, 32, 32).transpose(1, 2, 0)
        assert np.array_equal(img, want)
        meta = json.loads(test[f"cifar10_test_{i:06d}.json"])
        assert meta["label"] == labels["test_batch"][i] == int(test[f"cifar10_test_{i:06d}.cls"])
    stream = [(label, key) for _, label, key in data.make_dataset(data.shard_paths(out, "test"), data.eval_transform(32),
                                                                  counter=data.SkipCounter(), num_classes=10)]
    assert stream == sorted(stream)

    # train and val: disjoint parts of the 40 official training images
    train, val = _members(out / "train"), _members(out / "val")
    tk = {n.rsplit(".", 1)[0] for n in train}
    vk = {n.rsplit(".", 1)[0] for n in val}
    assert not tk & vk and len(tk | vk) == 40


def test_digits_offline_with_caps_and_seed(tmp_path):
    a = benchmarks.build({"source": "digits", "max_train": 50, "max_val": 20, "max_test": 30, "seed": 3}, tmp_path / "a")
    b = benchmarks.build({"source": "digits", "max_train": 50, "max_val": 20, "max_test": 30, "seed": 3}, tmp_path / "b")
    assert a["splits"] == {"train": 50, "val": 20, "test": 30} and a["classes"] == 10
    for split in ("train", "val", "test"):
        assert _members(tmp_path / "a" / split) == _members(tmp_path / "b" / split)  # same seed, same bytes
    ds = data.make_dataset(data.shard_paths(tmp_path / "a", "train"), data.train_transform(32),
                           counter=data.SkipCounter(), num_classes=10)
    x, y, _ = next(iter(ds))
    assert tuple(x.shape) == (3, 32, 32) and 0 <= y < 10


def test_bad_params_name_the_field(tmp_path):
    with pytest.raises(InputError, match="'source' must be one of cifar10, digits"):
        benchmarks.build({"source": "imagenet"}, tmp_path / "x")
    with pytest.raises(InputError, match="unknown key 'max_trian'"):
        benchmarks.build({"source": "digits", "max_trian": 3}, tmp_path / "x")
    with pytest.raises(InputError, match="'val_fraction' must be in"):
        benchmarks.build({"source": "digits", "val_fraction": 1.5}, tmp_path / "x")
    with pytest.raises(InputError, match="cifar-10-batches-py"):
        benchmarks.build({"source": "cifar10", "root": str(tmp_path / "none"), "download": False}, tmp_path / "x")
    assert not (tmp_path / "x").exists()  # nothing half-written
