"""Test-set evaluation of a model trained on the tiny colour-pattern dataset."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest
import torch

from imagenot import evaluate as E
from imagenot import train as T
from imagenot.io import InputError
from test_data import make_dataset_dir
from test_train import PARAMS, RECIPE

TRAIN_RECIPE = dict(RECIPE, epochs=5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    ds = make_dataset_dir(root / "ds", per_class={"train": 16, "val": 6, "test": 10}, seed=1,
                          corrupt={"test": 1})
    T.train("resnet18", TRAIN_RECIPE, ds, 0, PARAMS, root / "train")
    return ds, root / "train" / "model.pt", root


def test_evaluate_writes_predictions_and_metrics(trained):
    ds, ckpt, root = trained
    out = root / "eval"
    metrics = E.evaluate("resnet18", TRAIN_RECIPE, ckpt, ds, {"batch_size": 7}, out, dataset="toy", seed=0)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    for key in ("model", "dataset", "seed", "top1", "top1_low", "top1_high", "top5", "n_test"):
        assert key in metrics
    assert metrics["model"] == "resnet18" and metrics["dataset"] == "toy" and metrics["seed"] == 0
    assert metrics["n_test"] == 40 and metrics["corrupt_samples_skipped"] == 1
    # 4 classes, chance 0.25; the colour task is easy
    assert metrics["top1"] >= 0.6
    assert metrics["top1_low"] < metrics["top1"] < metrics["top1_high"] or metrics["top1"] == 1.0
    assert metrics["top5"] == 1.0  # k = min(5, 4 classes)

    pred = pd.read_parquet(out / "predictions.parquet")
    assert list(pred.columns) == ["key", "label", "pred", "correct", "correct_top5", "confidence"]
    assert len(pred) == 40 and pred["key"].is_unique and not pred["key"].str.contains("bad").any()
    assert (pred["correct"] == (pred["label"] == pred["pred"])).all()
    assert pred["correct"].mean() == pytest.approx(metrics["top1"])
    assert pred["confidence"].between(0.25, 1.0).all()
    # keys map back to the test shards' labels (the key encodes the label in this fixture)
    assert (pred["key"].str.slice(4, 6).astype(int) == pred["label"]).all()


def test_clopper_pearson_exact():
    low, high = E.clopper_pearson(5, 10)
    assert low == pytest.approx(0.187086, abs=1e-5) and high == pytest.approx(0.812914, abs=1e-5)
    low, high = E.clopper_pearson(10, 10)
    assert high == 1.0 and low == pytest.approx(0.691503, abs=1e-5)


def test_default_dataset_and_seed_come_from_inputs(trained):
    ds, ckpt, root = trained
    m = E.evaluate("resnet18", TRAIN_RECIPE, ckpt, ds, {"batch_size": 64}, root / "eval2")
    assert m["dataset"] == "ds" and m["seed"] == 0


def test_mismatches_are_input_errors(trained, tmp_path):
    ds, ckpt, root = trained
    with pytest.raises(InputError, match="'arch'"):
        E.evaluate("resnet18", dict(TRAIN_RECIPE, arch="resnet34"), ckpt, ds, {}, tmp_path)
    with pytest.raises(InputError, match="not found"):
        E.evaluate("resnet18", TRAIN_RECIPE, tmp_path / "nope.pt", ds, {}, tmp_path)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(InputError, match="cannot load"):
        E.evaluate("resnet18", TRAIN_RECIPE, tmp_path / "junk.pt", ds, {}, tmp_path)
    other = make_dataset_dir(tmp_path / "other", n_classes=3, per_class={"test": 1})
    with pytest.raises(InputError, match="num_classes"):
        E.evaluate("resnet18", TRAIN_RECIPE, ckpt, other, {}, tmp_path)
    with pytest.raises(InputError, match="--params.*'batchsize'"):
        E.evaluate("resnet18", TRAIN_RECIPE, ckpt, ds, {"batchsize": 3}, tmp_path)


def test_cli_evaluate(trained, tmp_path):
    ds, ckpt, _ = trained
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    E.add_commands(sub)
    args = parser.parse_args([
        "evaluate", "--model", "resnet18", "--recipe", json.dumps(TRAIN_RECIPE), "--checkpoint", str(ckpt),
        "--data-dir", str(ds), "--params", json.dumps({"batch_size": 128}), "--out-dir", str(tmp_path),
        "--dataset", "imagenot", "--seed", "0",
    ])
    assert args.func(args) == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["dataset"] == "imagenot"
    assert len(pd.read_parquet(tmp_path / "predictions.parquet")) == 40
