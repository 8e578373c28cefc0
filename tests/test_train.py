"""Training: real runs on a tiny colour-pattern dataset (resnet18 at 32 px, 1 CPU thread)."""

from __future__ import annotations

import argparse
import json
import logging
import math

import pandas as pd
import pytest
import torch

from imagenot import train as T
from imagenot.io import InputError
from test_data import make_dataset_dir

PARAMS = {"device": "cpu", "num_workers": 0, "threads": 1, "patience": 10, "amp": True}
RECIPE = {
    "arch": "resnet18", "image_size": 32, "epochs": 5, "batch_size": 16, "optimizer": "sgd",
    "lr": 0.02, "momentum": 0.9, "weight_decay": 1e-4, "lr_scheduler": "cosine", "lr_step_size": 30,
    "lr_gamma": 0.1, "lr_warmup_epochs": 0, "lr_warmup_decay": 0.1, "lr_min": 0.0, "label_smoothing": 0.0, "mixup_alpha": 0.0,
    "cutmix_alpha": 0.0, "ra_reps": 1, "ema_decay": None, "ema_steps": 32, "clip_grad_norm": None,
    "aux_loss_weight": 0.0,
}
# every stateful feature on: warmup, EMA, mixup/cutmix (numpy RNG), repeated augmentation
# (mobilenet_v3_small: a small checkpoint keeps the resume tests fast)
SMALL = dict(RECIPE, arch="mobilenet_v3_small")
FANCY = dict(SMALL, epochs=3, batch_size=8, lr_warmup_epochs=1, label_smoothing=0.1, mixup_alpha=0.2, cutmix_alpha=1.0,
             ra_reps=2, ema_decay=0.99, ema_steps=2, clip_grad_norm=1.0, optimizer="adamw", lr=0.002,
             weight_decay=0.05)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return make_dataset_dir(tmp_path_factory.mktemp("ds"), corrupt={"train": 1})


def outputs(out_dir):
    hist = pd.read_csv(out_dir / "history.csv")
    summary = json.loads((out_dir / "train.json").read_text())
    model = torch.load(out_dir / "model.pt", weights_only=True)
    return hist, summary, model


def test_learns_above_chance(dataset_dir, tmp_path):
    summary = T.train("resnet18", RECIPE, dataset_dir, 0, PARAMS, tmp_path)
    hist, written, model = outputs(tmp_path)
    assert written == summary
    assert list(hist.columns) == ["epoch", "lr", "train_loss", "train_acc", "val_acc", "seconds", "images_per_s"]
    assert hist["epoch"].tolist() == [1, 2, 3, 4, 5]
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    # 4 classes: chance is 0.25
    assert summary["best_val_acc"] >= 0.6, hist
    assert summary["best_val_acc"] == hist["val_acc"].max()
    assert summary["best_epoch"] == int(hist.loc[hist["val_acc"].idxmax(), "epoch"])
    assert summary["epochs_run"] == 5 and summary["stopped_early"] is False
    assert summary["corrupt_samples_skipped"] == 1
    assert (hist["images_per_s"] > 0).all()
    assert model["arch"] == "resnet18" and model["num_classes"] == 4 and model["recipe"]["lr"] == 0.02
    assert (tmp_path / "checkpoint.pt").exists()


def test_resume_after_interruption_gives_identical_results(tmp_path):
    dataset_dir = make_dataset_dir(tmp_path / "ds", n_classes=3, per_class={"train": 8, "val": 4}, size=32,
                                   corrupt={"train": 1})
    full, interrupted = tmp_path / "full", tmp_path / "interrupted"
    T.train("mnv3", FANCY, dataset_dir, 3, PARAMS, full)

    class Crash(Exception):
        pass

    def crash_after_two(epoch):
        if epoch == 2:
            raise Crash

    with pytest.raises(Crash):
        T.train("mnv3", FANCY, dataset_dir, 3, PARAMS, interrupted, on_epoch_end=crash_after_two)
    assert not (interrupted / "model.pt").exists()
    resumed = T.train("mnv3", FANCY, dataset_dir, 3, PARAMS, interrupted)
    assert resumed["resumed_from_epoch"] == 2

    h1, s1, m1 = outputs(full)
    h2, s2, m2 = outputs(interrupted)
    timing = ["seconds", "images_per_s"]
    pd.testing.assert_frame_equal(h1.drop(columns=timing), h2.drop(columns=timing))
    for key in ("best_epoch", "best_val_acc", "best_weights", "epochs_run", "stopped_early", "corrupt_samples_skipped"):
        assert s1[key] == s2[key], key
    assert m1["state_dict"].keys() == m2["state_dict"].keys()
    for k in m1["state_dict"]:
        assert torch.equal(m1["state_dict"][k], m2["state_dict"][k]), k


def test_bad_checkpoint_falls_back_to_the_previous_good_one(dataset_dir, tmp_path, caplog):
    recipe = dict(SMALL, epochs=2)
    out = tmp_path / "ref"
    ref = T.train("mnv3", recipe, dataset_dir, 1, PARAMS, out)
    ckpt, prev = out / "checkpoint.pt", out / "checkpoint.prev.pt"
    assert torch.load(prev, weights_only=True)["epoch"] == 1  # the last two are kept
    ref_hist = pd.read_csv(out / "history.csv")
    blob = ckpt.read_bytes()
    ckpt.write_bytes(blob[: len(blob) // 2])  # truncated, as after a full disk
    with caplog.at_level(logging.WARNING, logger="imagenot.train"):
        again = T.train("mnv3", recipe, dataset_dir, 1, PARAMS, out)
    assert "unreadable checkpoint" in caplog.text
    assert again["resumed_from_epoch"] == 1  # epoch 2 redone from the previous checkpoint
    assert again["best_val_acc"] == ref["best_val_acc"] and again["epochs_run"] == 2
    timing = ["seconds", "images_per_s"]
    pd.testing.assert_frame_equal(pd.read_csv(out / "history.csv").drop(columns=timing), ref_hist.drop(columns=timing))
    # a missing newest checkpoint: the previous one again
    ckpt.unlink()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="imagenot.train"):
        assert T.train("mnv3", recipe, dataset_dir, 1, PARAMS, out)["resumed_from_epoch"] == 1
    assert "missing" in caplog.text
    # both damaged: from scratch, same result
    for p in (ckpt, prev):
        p.write_bytes(b"not a checkpoint")
    scratch = T.train("mnv3", recipe, dataset_dir, 1, PARAMS, out)
    assert scratch["resumed_from_epoch"] == 0 and scratch["best_val_acc"] == ref["best_val_acc"]
    # a finished checkpoint makes a rerun only rewrite the outputs
    (out / "model.pt").unlink()
    third = T.train("mnv3", recipe, dataset_dir, 1, PARAMS, out)
    assert third["resumed_from_epoch"] == 2 and (out / "model.pt").exists()
    # a checkpoint of another recipe is not reused
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="imagenot.train"):
        T.train("mnv3", dict(recipe, epochs=1), dataset_dir, 1, PARAMS, out)
    assert "different run" in caplog.text


def test_early_stopping(dataset_dir, tmp_path):
    recipe = dict(RECIPE, arch="mobilenet_v3_small", epochs=8, lr=1e-9, momentum=0.0, lr_scheduler="constant")
    summary = T.train("mnv3", recipe, dataset_dir, 0, dict(PARAMS, patience=1), tmp_path)
    assert summary["stopped_early"] is True
    assert summary["epochs_run"] == summary["best_epoch"] + 1 < 8
    assert len(pd.read_csv(tmp_path / "history.csv")) == summary["epochs_run"]


def test_max_epochs_runs_past_the_schedule_until_early_stopping(dataset_dir, tmp_path):
    # the paper: each schedule spans its recipe's epochs, training stops early or at 1000 epochs
    recipe = dict(SMALL, epochs=1, lr_scheduler="step", lr_step_size=1, lr_gamma=0.5)
    summary = T.train("mnv3", recipe, dataset_dir, 0, dict(PARAMS, max_epochs=2), tmp_path)
    hist = pd.read_csv(tmp_path / "history.csv")
    assert summary["epochs_run"] == 2 and hist["epoch"].tolist() == [1, 2]
    assert hist["lr"].iloc[1] < hist["lr"].iloc[0]  # the step schedule goes on decaying
    with pytest.raises(InputError, match="max_epochs"):
        T.resolve_params(dict(PARAMS, max_epochs=0))


def test_divergence_stops_and_keeps_the_best_epoch(dataset_dir, tmp_path, caplog):
    # epoch 1 at lr 0.02, then x1e6: the loss blows up in epoch 2
    recipe = dict(SMALL, epochs=5, lr_scheduler="step", lr_step_size=1, lr_gamma=1e6)
    with caplog.at_level(logging.ERROR, logger="imagenot.train"):
        summary = T.train("mnv3", recipe, dataset_dir, 0, PARAMS, tmp_path)
    assert "diverged" in caplog.text
    assert summary["diverged"] is True and summary["stopped_early"] is True
    assert summary["epochs_run"] == 2 and summary["best_epoch"] == 1
    state = torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_inception_aux_loss_and_ema(tmp_path):
    ds = make_dataset_dir(tmp_path / "ds", n_classes=2, per_class={"train": 4, "val": 2}, size=80)
    recipe = dict(RECIPE, arch="inception_v3", image_size=80, epochs=1, batch_size=8, aux_loss_weight=0.4,
                  ema_decay=0.9, ema_steps=1, lr_scheduler="step", lr_step_size=1)
    summary = T.train("inception_v3", recipe, ds, 0, PARAMS, tmp_path / "out")
    assert summary["best_weights"] in ("model", "ema")
    state = torch.load(tmp_path / "out" / "model.pt", weights_only=True)["state_dict"]
    assert any(k.startswith("AuxLogits.") for k in state)


def test_lr_schedules():
    r = dict(RECIPE, epochs=10, lr=0.1, lr_warmup_epochs=2, lr_min=0.001)
    spe = 5
    f = [T.lr_factor(r, s, spe) for s in range(50)]
    assert f[0] == pytest.approx(0.1) and f[5] == pytest.approx(0.55)  # linear warmup per step from 0.1
    assert all(a < b for a, b in zip(f[:10], f[1:11]))
    assert f[10] == pytest.approx(1.0) and f[-1] > 0.01 and all(a >= b for a, b in zip(f[10:], f[11:]))
    assert T.lr_factor(r, 10 * spe, spe) == pytest.approx(0.01)  # cosine ends at lr_min / lr
    step = dict(r, lr_scheduler="step", lr_step_size=3, lr_gamma=0.1)
    assert T.lr_factor(step, 2 * spe + 3 * spe - 1, spe) == pytest.approx(1.0)
    assert T.lr_factor(step, 2 * spe + 3 * spe, spe) == pytest.approx(0.1)
    assert T.lr_factor(dict(r, lr_scheduler="constant"), 40, spe) == 1.0
    assert math.isclose(T.lr_factor(dict(r, lr_warmup_epochs=0), 0, spe), 1.0)


@pytest.mark.parametrize("name,cls", [("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW),
                                      ("rmsprop", torch.optim.RMSprop), ("adam", torch.optim.Adam)])
def test_optimizers(name, cls):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    opt = T.build_optimizer(model, dict(RECIPE, optimizer=name))
    assert isinstance(opt, cls)
    if name == "adamw":  # no decay on norm weights and biases
        assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 0.0]
        assert sum(len(g["params"]) for g in opt.param_groups) == 4


def test_bad_inputs_name_the_field(dataset_dir, tmp_path):
    with pytest.raises(InputError, match=r"--recipe.*'lr'"):
        T.train("resnet18", dict(RECIPE, lr=-1), dataset_dir, 0, PARAMS, tmp_path)
    with pytest.raises(InputError, match=r"--recipe.*'optimizer'"):
        T.train("resnet18", dict(RECIPE, optimizer="lion"), dataset_dir, 0, PARAMS, tmp_path)
    missing = {k: v for k, v in RECIPE.items() if k != "ema_steps"}
    with pytest.raises(InputError, match="ema_steps"):
        T.train("resnet18", missing, dataset_dir, 0, PARAMS, tmp_path)
    with pytest.raises(InputError, match=r"--params.*'thread'"):
        T.train("resnet18", RECIPE, dataset_dir, 0, {"thread": 2}, tmp_path)
    with pytest.raises(InputError, match="unknown arch 'resnet9'"):
        T.train("resnet9", dict(RECIPE, arch="resnet9"), dataset_dir, 0, PARAMS, tmp_path)
    with pytest.raises(InputError, match=r"classes\.csv"):
        T.train("resnet18", RECIPE, tmp_path, 0, PARAMS, tmp_path / "o")


def test_cli_train(dataset_dir, tmp_path):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    T.add_commands(sub)
    params = dict(PARAMS, seeds=[0])  # the config's training section, recipe_defaults removed
    args = parser.parse_args([
        "train", "--model", "mnv3", "--recipe", json.dumps(dict(SMALL, epochs=1)),
        "--data-dir", str(dataset_dir), "--seed", "0", "--params", json.dumps(params), "--out-dir", str(tmp_path),
    ])
    assert args.func(args) == 0
    # a finished job keeps its outputs; its resume checkpoints are removed (training.keep_checkpoints)
    assert {p.name for p in tmp_path.iterdir()} == {"model.pt", "history.csv", "train.json"}
    args = parser.parse_args([
        "train", "--model", "mnv3", "--recipe", json.dumps(dict(SMALL, epochs=1)), "--data-dir", str(dataset_dir),
        "--seed", "0", "--params", json.dumps(dict(params, keep_checkpoints=True)), "--out-dir", str(tmp_path / "k"),
    ])
    assert args.func(args) == 0
    assert {p.name for p in (tmp_path / "k").iterdir()} == {"checkpoint.pt", "model.pt", "history.csv", "train.json"}
    args = parser.parse_args(["train", "--model", "m", "--recipe", "{bad", "--data-dir", "d", "--seed", "0",
                              "--params", "{}", "--out-dir", str(tmp_path)])
    with pytest.raises(InputError, match="--recipe: not valid JSON"):
        args.func(args)
