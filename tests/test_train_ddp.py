"""DDP: the train entry point under a real `torchrun --nproc_per_node 2` on CPU (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from test_data import make_dataset_dir
from test_train import FANCY

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {"device": "cpu", "num_workers": 0, "threads": 1, "patience": 10, "amp": True}


@pytest.mark.slow
def test_torchrun_two_ranks_disjoint_shards(tmp_path):
    # 4 train shards of 6 samples (24 in all): 2 per rank; one val shard, split by sample
    ds = make_dataset_dir(tmp_path / "ds", n_classes=3, per_class={"train": 8, "val": 4}, size=32,
                          shards_per_split=4)
    ds_val = ds / "val"
    for extra in sorted(ds_val.glob("*.tar"))[1:]:
        extra.unlink()
    out = tmp_path / "out"
    # warmup, EMA (reset during warmup), mixup/cutmix, clipping, AdamW under DDP
    recipe = dict(FANCY, epochs=1, batch_size=4, ra_reps=1)
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'workflow'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "imagenot.cli", "train", "--model", "mnv3", "--recipe", json.dumps(recipe),
           "--data-dir", str(ds), "--seed", "0", "--params", json.dumps(PARAMS), "--out-dir", str(out)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    summary = json.loads((out / "train.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs_run"] == 1
    ddp = summary["ddp"]
    assert ddp["train_split"] == "shards"
    assert ddp["samples_per_rank"] == [12, 12]  # each rank its 2 shards, 12 distinct samples
    assert ddp["overlapping_samples"] == 0
    assert summary["n_train"] == 24
    hist = pd.read_csv(out / "history.csv")
    assert hist["epoch"].tolist() == [1] and hist["val_acc"].between(0, 1).all()
    # val accuracy was reduced over both ranks: a multiple of 1/12 (12 val samples)
    assert all(abs(v * 12 - round(v * 12)) < 1e-9 for v in hist["val_acc"])
    model = torch.load(out / "model.pt", weights_only=True)
    assert model["num_classes"] == 3 and not any(k.startswith("module.") for k in model["state_dict"])
    # only rank 0 wrote: one set of outputs, no stray temporary files
    # (the finished job's checkpoint is removed by rank 0; no stray temporary files)
    assert sorted(p.name for p in out.iterdir()) == ["history.csv", "model.pt", "train.json"]


def test_rule_launches_torchrun_for_several_gpus(tmp_path):
    base = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "-n", "-p",
            "--configfile", str(ROOT / "config/paper.yaml"), "--directory", str(tmp_path),
            "results/train/imagenot/resnet152/seed0/model.pt"]
    multi = subprocess.run(base + ["--set-resources", "train:gpu=4"], capture_output=True, text=True, timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]
    train_cmd = [line for line in multi.stdout.splitlines() if " train --model resnet152" in line]
    assert train_cmd and "torchrun --standalone --nproc_per_node 4 --no-python imagenot train" in train_cmd[0]
