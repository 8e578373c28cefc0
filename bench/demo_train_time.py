"""Wall time of real `imagenot train` / `imagenot evaluate` jobs at demo scale, 1 thread each.

Builds a demo-sized dataset (10 classes; 56 train / 8 val / 16 test images per class, 64 px
JPEGs of colour patterns from tests/test_data.py), then runs every model of a config for
--epochs epochs, each job in its own process (as Snakemake runs them), and prints per-job
wall time, the per-epoch time from history.csv and the evaluate wall time.

    PYTHONPATH=workflow .venv/bin/python bench/demo_train_time.py [--epochs 1] [--override JSON] [MODEL ...]
"""
import argparse
from concurrent.futures import ThreadPoolExecutor
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "workflow"))
from test_data import make_dataset_dir  # noqa: E402

RUNNER = """
import json, sys
from imagenot import train, evaluate
a = json.loads(sys.argv[1])
if a["cmd"] == "train":
    train.train(a["model"], a["recipe"], a["data"], 0, a["params"], a["out"])
else:
    evaluate.evaluate(a["model"], a["recipe"], a["out"] + "/model.pt", a["data"], {"batch_size": 128}, a["out"] + "/eval")
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "config" / "config.yaml"))
    ap.add_argument("--epochs", type=int, default=0, help="override the recipes' epochs (0: keep)")
    ap.add_argument("--override", default="{}", help="JSON {model: {field: value}} applied over the config recipes")
    ap.add_argument("--work", default=None)
    ap.add_argument("--jobs", type=int, default=1, help="models trained at the same time (Snakemake --cores)")
    ap.add_argument("models", nargs="*")
    a = ap.parse_args()
    cfg = yaml.safe_load(Path(a.config).read_text())
    override = json.loads(a.override)
    work = Path(a.work or tempfile.mkdtemp(prefix="imagenot-bench-"))
    data = work / "ds"
    if not (data / "classes.csv").exists():
        make_dataset_dir(data, n_classes=10, per_class={"train": 56, "val": 8, "test": 16}, size=64)
    params = {k: v for k, v in cfg["training"].items() if k not in ("recipe_defaults", "seeds")}
    print(f"{'model':<20}{'size':>5}{'train wall s':>13}{'epoch s':>9}{'img/s':>8}{'eval wall s':>12}{'val_acc':>8}{'test top1':>10}", flush=True)

    def run(name):
        recipe = dict(cfg["training"]["recipe_defaults"])
        recipe.update(cfg["models"][name])
        recipe.update(override.get(name, {}))
        if a.epochs:
            recipe["epochs"] = a.epochs
        out = work / name
        job = {"cmd": "train", "model": name, "recipe": recipe, "data": str(data), "params": params, "out": str(out)}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", RUNNER, json.dumps(job)], check=True, stderr=subprocess.DEVNULL)
        t_train = time.perf_counter() - t0
        job["cmd"] = "evaluate"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", RUNNER, json.dumps(job)], check=True, stderr=subprocess.DEVNULL)
        t_eval = time.perf_counter() - t0
        h = pd.read_csv(out / "history.csv")
        top1 = json.loads((out / "eval" / "metrics.json").read_text())["top1"]
        print(f"{name:<20}{recipe['image_size']:>5}{t_train:>13.1f}{h['seconds'].mean():>9.1f}"
              f"{h['images_per_s'].mean():>8.1f}{t_eval:>12.1f}{h['val_acc'].max():>8.3f}{top1:>10.3f}", flush=True)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(a.jobs) as pool:
        list(pool.map(run, a.models or list(cfg["models"])))
    print(f"# total wall {time.perf_counter() - t0:.1f} s with {a.jobs} job(s) in parallel", flush=True)

if __name__ == "__main__":
    main()
