"""CPU time the demo's robustness and transfer jobs add, per demo model (1 thread).

For each model of config/config.yaml (at its demo image size) a randomly initialised
checkpoint in model.pt format is evaluated with the demo's settings:

- robustness: ``imagenot.robustness.robustness`` on evaluation.robustness.max_examples test
  images of a generated 10-class JPEG dataset, against a baseline in the same process: a
  plain no-grad forward of the same number of images (17 x N) from ready tensors. The ratio
  is the cost of decoding + the 17 augmentations + bookkeeping over the model's own cost.
- transfer: ``imagenot.transfer.transfer`` in both modes with the demo's transfer section
  (digits), against a plain loop in the same process: the same number of train steps
  (fine-tune) or feature forwards (linear) on ready tensors.

    PYTHONPATH=workflow .venv/bin/python bench/demo_eval_extras.py [MODEL ...]

Process start-up (python + torch import) of each job is not included; it is printed once.
"""
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
sys.path.insert(0, str(ROOT / "tests"))

from imagenot import config as icfg  # noqa: E402
from imagenot import robustness as R  # noqa: E402
from imagenot import transfer as X  # noqa: E402
from imagenot.models import build_model  # noqa: E402
from imagenot.train import MODEL_FORMAT  # noqa: E402
from test_data import make_dataset_dir  # noqa: E402

RUNTIME = {"device": "cpu", "threads": 1, "amp": False, "eval_batch_size": 128}


def write_checkpoint(name, recipe, path, num_classes=10):
    torch.manual_seed(0)
    model = build_model(recipe["arch"], num_classes, recipe["image_size"], aux_logits=recipe["aux_loss_weight"] > 0)
    torch.save({"format": MODEL_FORMAT, "model": name, "arch": recipe["arch"], "num_classes": num_classes,
                "recipe": recipe, "seed": 0, "wnids": [f"n{i:08d}" for i in range(num_classes)], "epoch": 1,
                "val_acc": 0.0, "weights": "model", "state_dict": model.state_dict()}, path)


def plain_forward(model, n, size, batch=128):
    model.eval()
    x = torch.randn(min(n, batch), 3, size, size)
    t0 = time.perf_counter()
    done = 0
    with torch.no_grad():
        while done < n:
            model(x[: min(batch, n - done)])
            done += min(batch, n - done)
    return time.perf_counter() - t0


def plain_train(model, n_images, size, batch):
    model.train()
    head = X.find_head(model)[1]
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, head.out_features, (batch,))
    t0 = time.perf_counter()
    done = 0
    while done < n_images:
        b = min(batch, n_images - done)
        out = model(x[:b])
        loss = torch.nn.functional.cross_entropy(out[0] if isinstance(out, tuple) else out, y[:b])
        opt.zero_grad()
        loss.backward()
        opt.step()
        done += b
    return time.perf_counter() - t0


def main(names):
    torch.set_num_threads(1)
    cfg = icfg.load(ROOT / "config/config.yaml")
    names = names or list(cfg["models"])
    rob = cfg["evaluation"]["robustness"]
    tcfg = cfg["transfer"]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, torchvision, imagenot.transfer"], check=True,
                   env={"PYTHONPATH": str(ROOT / "workflow"), "PATH": "/usr/bin:/bin"})
    startup = time.perf_counter() - t0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ds = make_dataset_dir(tmp / "ds", n_classes=10, per_class={"test": 16}, size=64, seed=0)
        target = tmp / "digits.npz"
        X.write_target(tcfg, target)
        n_train = int(len(X.read_target(target)["train_y"]))
        n_feat = sum(len(X.read_target(target)[f"{s}_y"]) for s in ("train", "val", "test"))
        n_eval_ft = tcfg["n_trials"] * len(X.read_target(target)["val_y"]) + len(X.read_target(target)["test_y"])
        for name in names:
            recipe = icfg.merged_recipe(cfg, name)
            size = recipe["image_size"]
            ckpt = tmp / f"{name}.pt"
            write_checkpoint(name, recipe, ckpt)
            params = dict(cfg["evaluation"], device="cpu", threads=1, amp=False)
            t = time.perf_counter()
            res = R.robustness(name, recipe, ckpt, ds, params, tmp / name)
            t_rob = time.perf_counter() - t
            model = build_model(recipe["arch"], 10, size)
            base_rob = plain_forward(model, 17 * res["n_test"], size)
            times = {}
            for mode in ("linear", "finetune"):
                t = time.perf_counter()
                X.transfer(name, recipe, ckpt, target, mode, tcfg, RUNTIME, tmp / f"{name}-{mode}.json")
                times[mode] = time.perf_counter() - t
            base_lin = plain_forward(copy.deepcopy(model), n_feat, size)
            steps = tcfg["n_trials"] * tcfg["epochs"]["finetune"] * n_train
            base_ft = plain_train(copy.deepcopy(model), steps, size, tcfg["batch_size"]["finetune"]) \
                + plain_forward(model, n_eval_ft, size)
            rows.append((name, size, t_rob, base_rob, times["linear"], base_lin, times["finetune"], base_ft))
            print(f"{name:20s} {size:4d}  robustness {t_rob:6.2f} s (plain fwd {base_rob:5.2f} s, x{t_rob / base_rob:4.2f})"
                  f"  linear {times['linear']:5.2f} s (x{times['linear'] / base_lin:4.2f})"
                  f"  finetune {times['finetune']:6.2f} s (x{times['finetune'] / base_ft:4.2f})", flush=True)
    total = sum(r[2] + r[4] + r[6] for r in rows)
    jobs = 3 * len(rows) + 1
    print(f"total compute {total:.1f} s over {len(rows)} models; + ~{startup:.1f} s start-up x {jobs} jobs "
          f"= {total + startup * jobs:.1f} s CPU (1 thread per job)")
    print(json.dumps({"robustness_max_examples": rob["max_examples"], "transfer": {k: tcfg[k] for k in (
        "n_trials", "max_train", "max_val", "max_test", "epochs", "batch_size")}}))


if __name__ == "__main__":
    main(sys.argv[1:])
