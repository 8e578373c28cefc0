"""Faults in real processes: kill -9 after the first checkpoint, SIGTERM (SLURM preemption).

Both interrupted runs are resumed by rerunning the same command and must end with exactly
the metrics and weights of an uninterrupted run (CPU, one thread, fixed seed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from imagenot import train as T
from test_data import make_dataset_dir
from test_train import FANCY, PARAMS

ROOT = Path(__file__).resolve().parents[1]
# warmup, EMA, mixup/cutmix, repeated augmentation, AdamW, clipping: every piece of state
RECIPE = dict(FANCY, epochs=4, batch_size=4)
SEED = 5
TIMING = ["seconds", "images_per_s"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset_dir(tmp_path_factory.mktemp("ds"), n_classes=3, per_class={"train": 8, "val": 4}, size=32,
                            corrupt={"train": 1})


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    T.train("mnv3", RECIPE, dataset, SEED, PARAMS, out)
    return out


def command(dataset, out):
    return [sys.executable, "-m", "imagenot.cli", "train", "--model", "mnv3", "--recipe", json.dumps(RECIPE),
            "--data-dir", str(dataset), "--seed", str(SEED), "--params", json.dumps(PARAMS), "--out-dir", str(out)]


def start(dataset, out):
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'workflow'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               OMP_NUM_THREADS="1")
    return subprocess.Popen(command(dataset, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True), env


def wait_for(path: Path, proc, timeout=240):
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, f"training ended before {path.name} appeared: {proc.stderr.read()[-3000:]}"
        assert time.monotonic() - t0 < timeout, f"no {path} after {timeout} s"
        time.sleep(0.02)


def assert_same_result(ref: Path, out: Path):
    h1, h2 = pd.read_csv(ref / "history.csv"), pd.read_csv(out / "history.csv")
    pd.testing.assert_frame_equal(h1.drop(columns=TIMING), h2.drop(columns=TIMING))
    s1, s2 = (json.loads((d / "train.json").read_text()) for d in (ref, out))
    for key in ("best_epoch", "best_val_acc", "best_weights", "epochs_run", "stopped_early", "corrupt_samples_skipped"):
        assert s1[key] == s2[key], key
    m1, m2 = (torch.load(d / "model.pt", weights_only=True)["state_dict"] for d in (ref, out))
    assert m1.keys() == m2.keys()
    for k in m1:
        assert torch.equal(m1[k], m2[k]), k


def wait_for_new(path: Path, proc, old_mtime: int, timeout=240):
    t0 = time.monotonic()
    while not path.exists() or path.stat().st_mtime_ns == old_mtime:
        assert proc.poll() is None, f"training ended before {path.name} was rewritten: {proc.stderr.read()[-3000:]}"
        assert time.monotonic() - t0 < timeout, f"{path} not rewritten after {timeout} s"
        time.sleep(0.02)


@pytest.mark.slow
def test_sigterm_then_kill_9_resume_to_the_uninterrupted_result(dataset, reference, tmp_path):
    """SIGTERM in epoch 2 (preemption: mid-epoch checkpoint, exit 143); the rerun is then
    killed with SIGKILL after its next checkpoint; a last rerun finishes. Same result."""
    out = tmp_path / "run"
    ckpt_path = out / "checkpoint.pt"
    proc, env = start(dataset, out)
    wait_for(ckpt_path, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "SIGTERM" in stderr and "rerun to resume" in stderr
    assert not (out / "model.pt").exists()
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt["partial"] is not None and ckpt["partial"]["step"] >= 1  # stopped inside an epoch
    assert (out / "checkpoint.prev.pt").exists()  # the epoch-end checkpoint before it is kept

    # rerun: resumes inside the epoch; SIGKILL it right after its next checkpoint
    mtime = ckpt_path.stat().st_mtime_ns
    proc, env = start(dataset, out)
    wait_for_new(ckpt_path, proc, mtime)
    proc.kill()  # no handler, no cleanup
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert f"step {ckpt['partial']['step']} of epoch {ckpt['epoch'] + 1}" in stderr
    assert not (out / "model.pt").exists(), "the run finished before it was killed"
    done = torch.load(ckpt_path, weights_only=True)
    assert done["partial"] is None and ckpt["epoch"] < done["epoch"] < RECIPE["epochs"]

    r = subprocess.run(command(dataset, out), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((out / "train.json").read_text())["resumed_from_epoch"] == done["epoch"]
    assert_same_result(reference, out)
