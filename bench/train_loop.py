"""Throughput of the project's training loop against a minimal plain-PyTorch loop.

CPU mode (default): resnet18 at 64 px, batch 32, on a real WebDataset directory of JPEGs
(the tests' colour-pattern images). In one process it measures

  loader      images/s of the project's data pipeline alone (decode + train transforms)
  plain       a minimal loop: model(x); cross_entropy; zero_grad; backward; SGD step
  project     imagenot.train.train_one_epoch (recipe-driven: schedule, clipping hooks,
              accuracy bookkeeping, divergence check, fused SGD) on the same batches
  epoch       train_one_epoch fed by the project's loader (what a training job runs)

plain and project consume the same pre-decoded batches from identically initialised models,
interleaved in chunks of 4 steps (other processes' load hits both alike); the median over
rounds is reported, with project / plain (target
>= 0.95) and loader / train-step (the loader should not be the bottleneck).

GPU mode (runs when CUDA is available, or --gpu): ResNet-50 and ViT-B/16 at 224 px with bf16
autocast and channels_last in both loops, random data already on the GPU, images/s and peak
memory (torch.cuda.max_memory_allocated) of each loop, plus loader-only throughput at 224 px
with --workers DataLoader workers.

    PYTHONPATH=workflow python bench/train_loop.py [--steps 40] [--rounds 3] [--threads 1] [--gpu]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "workflow"))
from imagenot import data  # noqa: E402
from imagenot import train as T  # noqa: E402
from imagenot.models import build_model  # noqa: E402
from test_data import make_dataset_dir  # noqa: E402

BASE_RECIPE = {
    "arch": "resnet18", "image_size": 64, "epochs": 90, "batch_size": 32, "optimizer": "sgd", "lr": 0.01,
    "momentum": 0.9, "weight_decay": 1e-4, "lr_scheduler": "step", "lr_step_size": 30, "lr_gamma": 0.1,
    "lr_warmup_epochs": 0, "lr_warmup_decay": 0.01, "lr_min": 0.0, "label_smoothing": 0.0, "mixup_alpha": 0.0,
    "cutmix_alpha": 0.0, "ra_reps": 1, "ema_decay": None, "ema_steps": 32, "clip_grad_norm": None,
    "aux_loss_weight": 0.0,
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Plain:
    """The minimal loop a user would write: forward, cross-entropy, zero_grad, backward, SGD."""

    def __init__(self, model, device, amp, recipe):
        self.model, self.device, self.amp = model, device, amp
        self.opt = torch.optim.SGD(model.parameters(), lr=recipe["lr"], momentum=recipe["momentum"],
                                   weight_decay=recipe["weight_decay"])

    def run(self, batches):
        model, device, opt = self.model, self.device, self.opt
        model.train()
        for images, target, _ in batches:
            images = images.to(device, non_blocking=True)
            target = target.to(device, non_blocking=True)
            if device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp and device.type == "cuda"):
                loss = nn.functional.cross_entropy(model(images), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


class Project:
    """imagenot.train.train_one_epoch with the recipe's optimizer (fused SGD) and schedule."""

    def __init__(self, model, device, amp, recipe, steps_per_epoch=100):
        self.model, self.device, self.amp, self.recipe = model, device, amp, recipe
        self.opt = T.build_optimizer(model, recipe)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: T.lr_factor(recipe, s, steps_per_epoch))
        self.criterion = nn.CrossEntropyLoss()
        self.state = {"global_step": 0, "epoch": 0}

    def run(self, batches):
        return T.train_one_epoch(self.model, batches, self.opt, self.sched, self.criterion, None, None, self.recipe,
                                 self.device, self.amp, self.state)


def timed(fn, n_images, device):
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return n_images / (time.perf_counter() - t0)


def compare(model0, batches, device, amp, recipe, rounds, chunk=4):
    """plain and project on copies of the same initial model, interleaved chunk by chunk
    (alternating which goes first) so that load from other processes hits both alike."""
    loops = {"plain": Plain(copy.deepcopy(model0), device, amp, recipe),
             "project": Project(copy.deepcopy(model0), device, amp, recipe)}
    for loop in loops.values():  # warm-up (cudnn autotuning, allocator, fused kernels)
        loop.run(batches[:2])
    chunks = [batches[i:i + chunk] for i in range(0, len(batches), chunk)]
    res = {"plain": [], "project": []}
    for r in range(rounds):
        seconds = {"plain": 0.0, "project": 0.0}
        n = 0
        for c, part in enumerate(chunks):
            order = ("plain", "project") if (r + c) % 2 == 0 else ("project", "plain")
            for name in order:
                sync(device)
                t0 = time.perf_counter()
                loops[name].run(part)
                sync(device)
                seconds[name] += time.perf_counter() - t0
            n += sum(len(b[1]) for b in part)
        for name in res:
            res[name].append(n / seconds[name])
    return res


def peak_memory(model0, batches, device, amp, recipe) -> dict:
    """Peak GPU memory of each loop run alone on a fresh copy of the model."""
    out = {}
    for name, cls in (("plain", Plain), ("project", Project)):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        loop = cls(copy.deepcopy(model0), device, amp, recipe)
        loop.run(batches[:3])
        sync(device)
        out[name] = torch.cuda.max_memory_allocated(device)
        del loop
    return out


def loader_throughput(ds_dir, image_size, batch_size, workers, max_batches, seed=0):
    counter = data.SkipCounter()
    ds = data.make_dataset(data.shard_paths(ds_dir, "train"), data.train_transform(image_size), counter=counter,
                           shuffle=True, seed=seed)
    loader = data.make_loader(ds, batch_size, workers, seed=seed)
    batches, n = [], 0
    t0 = time.perf_counter()
    for b in loader:
        batches.append(b)
        n += len(b[1])
        if len(batches) >= max_batches:
            break
    return n / (time.perf_counter() - t0), batches


def cpu_mode(a):
    torch.set_num_threads(a.threads)
    device = torch.device("cpu")
    recipe = dict(BASE_RECIPE, batch_size=a.batch)
    work = Path(a.work or tempfile.mkdtemp(prefix="imagenot-bench-loop-"))
    n_img = a.steps * a.batch
    per_class = -(-n_img // 10)
    ds_dir = make_dataset_dir(work / "ds", n_classes=10, per_class={"train": per_class, "val": 2}, size=80,
                              shards_per_split=4)
    loader_ips, batches = loader_throughput(ds_dir, 64, a.batch, a.workers, a.steps)
    batches = batches[: a.steps]
    torch.manual_seed(0)
    model0 = build_model("resnet18", 10, 64)
    res = compare(model0, batches, device, False, recipe, a.rounds)
    plain, project = statistics.median(res["plain"]), statistics.median(res["project"])
    # a whole epoch as a job runs it: the project's loader feeding train_one_epoch
    m = copy.deepcopy(model0)
    counter = data.SkipCounter()
    ds = data.make_dataset(data.shard_paths(ds_dir, "train"), data.train_transform(64), counter=counter,
                           shuffle=True, seed=1)
    loader = data.make_loader(ds, a.batch, a.workers, seed=1)
    n_total = data.count_samples(data.shard_paths(ds_dir, "train"))
    epoch_ips = timed(lambda: Project(m, device, False, recipe, a.steps).run(loader), n_total, device)
    print(f"CPU, {a.threads} thread(s), torch {torch.__version__}: resnet18 64 px, batch {a.batch}, "
          f"{len(batches)} steps, {a.rounds} rounds interleaved in 4-step chunks (median)")
    print(f"  loader only ({a.workers} workers)     {loader_ips:8.1f} img/s")
    print(f"  plain PyTorch loop              {plain:8.1f} img/s   rounds {[round(x, 1) for x in res['plain']]}")
    print(f"  project train_one_epoch         {project:8.1f} img/s   rounds {[round(x, 1) for x in res['project']]}")
    print(f"  project epoch (loader + train)  {epoch_ips:8.1f} img/s")
    print(f"  ratio project / plain           {project / plain:8.3f}   (target >= 0.95)")
    print(f"  ratio loader / train step       {loader_ips / project:8.2f}   (> 1: the loader is not the bottleneck)")


def gpu_mode(a):
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    for arch, batch in (("resnet50", a.gpu_batch), ("vit_b_16", a.gpu_batch)):
        recipe = dict(BASE_RECIPE, arch=arch, image_size=224, batch_size=batch)
        torch.manual_seed(0)
        model0 = build_model(arch, 1000, 224).to(device).to(memory_format=torch.channels_last)
        g = torch.Generator(device=device).manual_seed(0)
        batches = [(torch.randn(batch, 3, 224, 224, device=device, generator=g),
                    torch.randint(0, 1000, (batch,), device=device, generator=g), None) for _ in range(a.gpu_steps)]
        res = compare(model0, batches, device, True, recipe, a.rounds)
        res.update({f"{k}_mem": v for k, v in peak_memory(model0, batches, device, True, recipe).items()})
        plain, project = statistics.median(res["plain"]), statistics.median(res["project"])
        print(f"GPU {torch.cuda.get_device_name(device)}: {arch} 224 px, batch {batch}, bf16 autocast, channels_last, "
              f"{a.gpu_steps} steps, {a.rounds} rounds (median)")
        print(f"  plain PyTorch loop       {plain:8.1f} img/s   peak {res['plain_mem'] / 2**30:6.2f} GiB")
        print(f"  project train_one_epoch  {project:8.1f} img/s   peak {res['project_mem'] / 2**30:6.2f} GiB")
        print(f"  ratio project / plain    {project / plain:8.3f}   (target >= 0.95)")
        del model0, batches
        torch.cuda.empty_cache()
    work = Path(a.work or tempfile.mkdtemp(prefix="imagenot-bench-loop-"))
    ds_dir = make_dataset_dir(work / "ds224", n_classes=10, per_class={"train": 200, "val": 2}, size=256,
                              shards_per_split=max(1, a.workers))
    loader_ips, _ = loader_throughput(ds_dir, 224, a.gpu_batch, a.workers, 10**9)
    print(f"  loader only at 224 px ({a.workers} workers): {loader_ips:.1f} img/s "
          "(compare with the train-step img/s above)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers for the loader measurements")
    ap.add_argument("--gpu", action="store_true", help="GPU mode (default when CUDA is available)")
    ap.add_argument("--cpu", action="store_true", help="CPU mode even when CUDA is available")
    ap.add_argument("--gpu-batch", type=int, default=128)
    ap.add_argument("--gpu-steps", type=int, default=30)
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    if a.gpu or (torch.cuda.is_available() and not a.cpu):
        if not torch.cuda.is_available():
            sys.exit("--gpu: no CUDA device")
        if a.workers == 0:
            a.workers = 8
        gpu_mode(a)
    else:
        cpu_mode(a)


if __name__ == "__main__":
    main()
