"""Train-step throughput of the demo models on CPU (1 thread): images/s for
forward + backward + optimizer step (the recipe's optimizer as built by imagenot.train,
i.e. fused SGD / AdamW) at a given image size and batch size, on random tensors (no data
loading); eval img/s is a no-grad forward pass.

    PYTHONPATH=workflow .venv/bin/python bench/demo_model_speed.py [--size 64] [--batch 32] [ARCH[@SIZE] ...]
"""
import argparse
import os
import time

import torch

import yaml

from imagenot.models import build_model
from imagenot.train import build_optimizer

DEFAULT = ["alexnet", "vgg11_bn", "mobilenet_v3_small", "resnet18", "densenet121",
           "inception_v3@80", "efficientnet_b0", "vit_b_16", "convnext_tiny"]


def recipe_for(arch):
    cfg = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "config", "config.yaml")))
    recipe = dict(cfg["training"]["recipe_defaults"])
    for m in cfg["models"].values():
        if m.get("arch") == arch:
            recipe.update(m)
    return recipe


def bench(arch, size, batch, min_seconds, num_classes=10):
    torch.manual_seed(0)
    aux = arch == "inception_v3"
    model = build_model(arch, num_classes, size, aux_logits=aux)
    opt = build_optimizer(model, recipe_for(arch))
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, num_classes, (batch,))
    model.train()

    def step():
        out = model(x)
        if isinstance(out, tuple):
            loss = torch.nn.functional.cross_entropy(out[0], y) + 0.4 * torch.nn.functional.cross_entropy(out[1], y)
        else:
            loss = torch.nn.functional.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= min_seconds and n >= 2:
            break
    # eval throughput (no grad), for the test/val passes
    model.eval()
    with torch.no_grad():
        model(x)
        m, t1 = 0, time.perf_counter()
        while m < 2:
            model(x)
            m += 1
        de = time.perf_counter() - t1
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return n * batch / dt, m * batch / de, params


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--min-seconds", type=float, default=4.0)
    ap.add_argument("archs", nargs="*", default=DEFAULT)
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(f"# torch {torch.__version__}, threads=1, batch={a.batch}, loadavg={os.getloadavg()}", flush=True)
    print(f"{'arch':<22}{'size':>5}{'Mparams':>9}{'train img/s':>13}{'eval img/s':>12}", flush=True)
    for spec in a.archs:
        arch, _, s = spec.partition("@")
        size = int(s) if s else a.size
        tr, ev, p = bench(arch, size, a.batch, a.min_seconds)
        print(f"{arch:<22}{size:>5}{p:>9.1f}{tr:>13.1f}{ev:>12.1f}", flush=True)


if __name__ == "__main__":
    main()
