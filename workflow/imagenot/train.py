"""Training one (model, dataset, seed) from scratch: ``imagenot train``.

One readable loop in the style of torchvision's references/classification/train.py, driven
by a recipe (Appendix A.1 of the paper; fields defined in config.schema.yaml#/definitions/
recipe): SGD / AdamW / RMSprop / Adam; step, cosine or constant learning-rate schedules with
linear warmup; label smoothing; mixup / cutmix (timm ``Mixup``); repeated augmentation;
an exponential moving average of the weights (timm ``ModelEmaV3``, decay adjusted as in
torchvision); gradient clipping; the Inception auxiliary loss; and early stopping on
validation top-1 with ``epochs`` as the maximum.

``checkpoint.pt`` is written atomically after every epoch with everything needed to resume
(model, optimizer, scheduler, EMA, best weights, history, RNG states); the one before it is
kept as ``checkpoint.prev.pt``. A rerun resumes from the newest checkpoint that loads; a
missing, truncated or foreign one is reported and the previous good one is used (from
scratch if none). Every epoch re-seeds all RNGs and the data order from (seed, epoch), so on
CPU a resumed run ends with exactly the same weights and metrics as an uninterrupted one.

SIGTERM / SIGUSR1 (SLURM preemption or the approaching time limit) make the loop stop after
the current step, write a mid-epoch checkpoint (with the position in the epoch's data
stream and the RNG states) and exit with 128 + the signal number, so the scheduler
requeues or Snakemake retries the job; the rerun continues from that step.

Run under ``torchrun --nproc_per_node N`` the same entry point trains with
DistributedDataParallel (NCCL on GPUs, gloo on CPU): each rank reads a disjoint set of
training shards (``wds.split_by_node``; every world-th sample when there are fewer shards
than readers) for the same number of steps, validation is split by sample and the counts
are all-reduced, and only rank 0 writes checkpoints and outputs. On CUDA the model runs in
channels_last under bf16 autocast (``amp``); ``compile: true`` adds torch.compile.

Outputs: ``model.pt`` (best-validation weights + recipe + arch + num_classes),
``history.csv`` (epoch, lr, train_loss, train_acc, val_acc, seconds, images_per_s) and
``train.json`` (best_epoch, best_val_acc, epochs_run, stopped_early, seconds,
corrupt_samples_skipped, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import math
import os
import random
import signal
import time
from pathlib import Path
from typing import Callable

import jsonschema
import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn

from . import data
from .io import InputError, atomic_path, parse_json, write_csv, write_json
from .models import build_model

log = logging.getLogger(__name__)

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
CHECKPOINT_FORMAT = "imagenot-train-checkpoint-v1"
MODEL_FORMAT = "imagenot-model-v1"

# recipe fields the training loop reads; all are defined in training.recipe_defaults
TRAINING_FIELDS = (
    "image_size", "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay",
    "lr_scheduler", "lr_step_size", "lr_gamma", "lr_warmup_epochs", "lr_warmup_decay", "lr_min",
    "label_smoothing", "mixup_alpha", "cutmix_alpha", "ra_reps", "ema_decay", "ema_steps",
    "clip_grad_norm", "aux_loss_weight",
)
PARAM_DEFAULTS = {"device": "auto", "num_workers": 0, "threads": 1, "patience": 10, "amp": True,
                  "compile": False, "max_epochs": None, "keep_checkpoints": False}
PARAM_IGNORED = ("seeds", "recipe_defaults")  # parts of the config section train does not use
HISTORY_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "val_acc", "seconds", "images_per_s"]
PREEMPT_SIGNALS = ("SIGTERM", "SIGUSR1")
# torchvision's RMSprop settings for MobileNetV3 (references/classification/train.py)
RMSPROP_EPS, RMSPROP_ALPHA = 0.0316, 0.9


# --------------------------------------------------------------------------- inputs


def _recipe_validator() -> jsonschema.protocols.Validator:
    """A validator for config.schema.yaml's recipe definition (with its $refs)."""
    full = yaml.safe_load(SCHEMA_PATH.read_text())
    defs_key = "$defs" if "$defs" in full else "definitions"
    schema = {"$schema": full.get("$schema"), defs_key: full[defs_key], "$ref": f"#/{defs_key}/recipe"}
    return jsonschema.validators.validator_for(schema)(schema)


def validate_recipe(recipe: dict, model_name: str, source: str = "--recipe") -> dict:
    """Check ``recipe`` against the schema's recipe definition; all training fields required."""
    if not isinstance(recipe, dict):
        raise InputError(f"{source}: expected a JSON object, got {type(recipe).__name__}")
    errors = sorted(_recipe_validator().iter_errors(recipe), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        field = ".".join(str(p) for p in e.absolute_path) or "<recipe>"
        raise InputError(f"{source} (model {model_name}): field '{field}': {e.message}")
    missing = [f for f in TRAINING_FIELDS if f not in recipe]
    if missing:
        raise InputError(
            f"{source} (model {model_name}): missing field(s) {missing}; pass the recipe merged with training.recipe_defaults"
        )
    recipe = dict(recipe)
    recipe.setdefault("arch", model_name)
    if recipe["lr_warmup_epochs"] >= recipe["epochs"] and recipe["lr_scheduler"] != "constant":
        log.warning("%s: lr_warmup_epochs (%d) >= epochs (%d): the whole run is warmup",
                    source, recipe["lr_warmup_epochs"], recipe["epochs"])
    return recipe


def resolve_params(params: dict, source: str = "--params", defaults: dict | None = None) -> dict:
    """Fill defaults for the run-time options; reject unknown keys by name."""
    defaults = PARAM_DEFAULTS if defaults is None else defaults
    if not isinstance(params, dict):
        raise InputError(f"{source}: expected a JSON object, got {type(params).__name__}")
    unknown = sorted(set(params) - set(defaults) - set(PARAM_IGNORED))
    if unknown:
        raise InputError(f"{source}: unknown field(s) {unknown}; known: {sorted(defaults)}")
    out = {k: params.get(k, v) for k, v in defaults.items()}
    if "device" in out and out["device"] not in ("auto", "cpu", "cuda") and not str(out["device"]).startswith("cuda:"):
        raise InputError(f"{source}: field 'device' must be auto, cpu or cuda (got {out['device']!r})")
    if out.get("max_epochs") is not None and (not isinstance(out["max_epochs"], int) or out["max_epochs"] < 1):
        raise InputError(f"{source}: field 'max_epochs' must be a positive integer or null (got {out['max_epochs']!r})")
    for key in ("num_workers", "threads", "patience", "batch_size"):
        if key in out and (not isinstance(out[key], int) or out[key] < (0 if key == "num_workers" else 1)):
            raise InputError(f"{source}: field '{key}' must be a {'non-negative' if key == 'num_workers' else 'positive'} integer (got {out[key]!r})")
    return out


def select_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--params: field 'device' is {name!r} but no CUDA device is available")
    if name == "cuda" and "LOCAL_RANK" in os.environ:  # torchrun: one GPU per local rank
        name = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return torch.device(name)


# --------------------------------------------------------------------------- distributed


class Dist:
    """The process group of a torchrun launch (WORLD_SIZE > 1), or a single process."""

    def __init__(self, device: torch.device):
        import torch.distributed as tdist

        self.tdist = tdist
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.owned = False
        if self.world > 1 and not tdist.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(device)
            tdist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            self.owned = True
        self.rank = tdist.get_rank() if self.world > 1 else 0
        self.device = device  # NCCL reduces CUDA tensors only

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        self.tdist.all_reduce(t)
        return t.tolist()

    def any(self, flag: bool) -> bool:
        return bool(self.sum([float(flag)])[0] > 0) if self.world > 1 else bool(flag)

    def gather(self, obj) -> list:
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        self.tdist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            self.tdist.barrier()

    def close(self) -> None:
        if self.owned:
            self.tdist.destroy_process_group()


class Preempted(Exception):
    """Training stopped on SIGTERM / SIGUSR1 after writing a checkpoint."""

    def __init__(self, signum: int, epoch: int, step: int):
        super().__init__(f"stopped by signal {signal.Signals(signum).name} in epoch {epoch + 1} after step {step}; "
                         "checkpoint written, rerun to resume")
        self.signum = signum
        self.exit_code = 128 + signum


class StopFlag:
    """Records SIGTERM / SIGUSR1 while installed (main thread only) instead of dying."""

    def __init__(self):
        self.signum: int | None = None
        self._old = {}

    def _handler(self, signum, frame):
        if self.signum is None:
            log.warning("received %s: stopping after this step to write a checkpoint", signal.Signals(signum).name)
        self.signum = signum

    def __enter__(self):
        for name in PREEMPT_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                try:
                    self._old[sig] = signal.signal(sig, self._handler)
                except ValueError:  # not the main thread: leave signals alone
                    pass
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def autocast(device: torch.device, amp: bool):
    """bf16 autocast on CUDA when amp is on; plain fp32 elsewhere."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    return images


# --------------------------------------------------------------------------- recipe pieces


def lr_factor(recipe: dict, step: int, steps_per_epoch: int) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (0-based).

    Linear warmup over ``lr_warmup_epochs``, per step from ``lr_warmup_decay`` x lr to the
    base lr (torchvision's LinearLR, stepped per iteration instead of per epoch), then the main
    schedule counted in epochs from the end of warmup, as torchvision's SequentialLR does:
    step (x lr_gamma every lr_step_size epochs), cosine (to lr_min at the last epoch) or
    constant.
    """
    warm_steps = recipe["lr_warmup_epochs"] * steps_per_epoch
    if step < warm_steps:
        start = recipe["lr_warmup_decay"]
        return start + (1.0 - start) * step / warm_steps
    done = (step - warm_steps) / steps_per_epoch  # epochs since the end of warmup
    kind = recipe["lr_scheduler"]
    if kind == "constant":
        return 1.0
    if kind == "step":
        return recipe["lr_gamma"] ** math.floor(done / recipe["lr_step_size"])
    if kind == "cosine":
        span = max(recipe["epochs"] - recipe["lr_warmup_epochs"], 1)
        floor = recipe["lr_min"] / recipe["lr"]
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(done / span, 1.0)))
    raise InputError(f"--recipe: field 'lr_scheduler': unknown value {kind!r}")


def build_optimizer(model: nn.Module, recipe: dict) -> torch.optim.Optimizer:
    """The recipe's optimizer; SGD / Adam / AdamW use PyTorch's fused kernels (on CPU the
    update of AlexNet's or VGG's large classifier is ~5x faster than the for-each one)."""
    name, lr, wd = recipe["optimizer"], recipe["lr"], recipe["weight_decay"]
    if name == "adamw":
        # as torchvision's --norm-weight-decay 0 for ViT / ConvNeXt: no decay on norms and biases
        decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
        return _fused(torch.optim.AdamW, groups, lr=lr)
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return _fused(torch.optim.SGD, params, lr=lr, momentum=recipe["momentum"], weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=recipe["momentum"], weight_decay=wd,
                                   eps=RMSPROP_EPS, alpha=RMSPROP_ALPHA)
    if name == "adam":
        return _fused(torch.optim.Adam, params, lr=lr, weight_decay=wd)
    raise InputError(f"--recipe: field 'optimizer': unknown value {name!r}")


def _fused(cls, params, **kwargs) -> torch.optim.Optimizer:
    try:
        return cls(params, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # device or dtype without a fused kernel
        return cls(params, **kwargs)


def build_ema(model: nn.Module, recipe: dict, device: torch.device, world_size: int = 1):
    """timm ModelEmaV3 with torchvision's decay adjustment for ema_steps and the global batch
    (batch_size is per process, as torchvision's --batch-size is per GPU)."""
    if recipe["ema_decay"] is None:
        return None
    from timm.utils import ModelEmaV3

    adjust = world_size * recipe["batch_size"] * recipe["ema_steps"] / recipe["epochs"]
    alpha = min(1.0, (1.0 - recipe["ema_decay"]) * adjust)
    return ModelEmaV3(model, decay=1.0 - alpha, device=device)


def build_mixup(recipe: dict, num_classes: int):
    if recipe["mixup_alpha"] <= 0 and recipe["cutmix_alpha"] <= 0:
        return None
    from timm.data import Mixup

    return Mixup(
        mixup_alpha=recipe["mixup_alpha"],
        cutmix_alpha=recipe["cutmix_alpha"],
        prob=1.0,
        switch_prob=0.5,  # torchvision: RandomChoice([MixUp, CutMix])
        mode="batch",
        label_smoothing=recipe["label_smoothing"],
        num_classes=num_classes,
    )


def compute_loss(output, target, criterion, aux_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and main logits; Inception/GoogLeNet auxiliary heads add aux_weight * their loss."""
    if isinstance(output, tuple):  # InceptionOutputs / GoogLeNetOutputs in train mode
        logits, aux = output[0], [a for a in output[1:] if a is not None]
        loss = criterion(logits, target)
        for a in aux:
            loss = loss + aux_weight * criterion(a, target)
        return loss, logits
    return criterion(output, target), output


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 17) % 2**31


def rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": [np.random.get_state()[0], torch.from_numpy(np.random.get_state()[1].copy()),
                  *np.random.get_state()[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, key, *rest = state["numpy"]
    np.random.set_state((name, key.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def cpu_state_dict(module: nn.Module) -> dict:
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------- loops


@torch.no_grad()
def predict(model: nn.Module, loader, device: torch.device, amp: bool):
    """Logits (float32, CPU), labels and keys for every sample of ``loader``."""
    model.eval()
    logits, labels, keys = [], [], []
    for images, target, key in loader:
        with autocast(device, amp):
            out = model(to_device(images, device))
        logits.append(out.float().cpu())
        labels.append(target)
        keys.extend(key)
    if not logits:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long), []
    return torch.cat(logits), torch.cat(labels), keys


def accuracy(model: nn.Module, loader, device: torch.device, amp: bool, dist: "Dist | None" = None) -> float:
    """Top-1 on ``loader``; under DDP each rank scores its share and the counts are summed."""
    logits, labels, _ = predict(model, loader, device, amp)
    correct = float((logits.argmax(1) == labels).sum().item()) if len(labels) else 0.0
    correct, total = dist.sum([correct, float(len(labels))]) if dist is not None else (correct, len(labels))
    if total == 0:
        raise InputError("validation split: no readable samples")
    return correct / total


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside torch.compile / DistributedDataParallel wrappers."""
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def train_one_epoch(model, loader, optimizer, scheduler, criterion, mixup, ema, recipe, device, amp, state,
                    dist: "Dist | None" = None, resume: dict | None = None, stop: "StopFlag | None" = None,
                    keys: set | None = None) -> dict:
    """One pass over the training stream; returns loss / accuracy / image counts.

    ``resume`` (from a mid-epoch checkpoint) skips the batches already trained in this epoch
    and restores the RNG states saved at that point; ``stop`` ends the epoch early after the
    step during which a signal arrived (``interrupted`` then holds the step count and the RNG
    states); ``keys`` collects the sample keys seen (the DDP disjointness record).
    Counts are this rank's; the caller sums them over ranks.
    """
    model.train()
    world = dist.world if dist is not None else 1
    total_loss, correct, seen, diverged = 0.0, 0, 0, False
    skip = 0
    if resume is not None:
        skip = resume["step"]
        if dist is None or dist.main:  # the saved sums are over all ranks: count them once
            total_loss, correct, seen = resume["loss"], resume["correct"], resume["seen"]
    step, interrupted = 0, None
    for images, target, batch_keys in loader:
        step += 1
        if step <= skip:
            if step == skip and (dist is None or dist.main):
                set_rng_state(resume["rng"])  # as at the signal: the next batch decodes identically
            continue
        if keys is not None:
            keys.update(batch_keys)
        if mixup is not None and len(target) % 2:
            # timm's Mixup needs an even batch: drop one sample of an odd final batch
            images, target = images[:-1], target[:-1]
        if len(target) == 0:
            continue
        images, target = to_device(images, device), target.to(device, non_blocking=True)
        hard = target
        if mixup is not None:
            images, target = mixup(images, target)
        with autocast(device, amp):
            output = model(images)
            loss, logits = compute_loss(output, target, criterion, recipe["aux_loss_weight"])
        bad = not torch.isfinite(loss).item()
        if world > 1:
            bad = dist.any(bad)  # every rank stops at the same step
        if bad:
            # the run has diverged: stop here (weights untouched by this batch); the caller
            # ends training and keeps the best epoch so far, as for early stopping
            log.error("training loss is %s at step %d (epoch %d): diverged, stopping; lower the lr",
                      loss.item(), state["global_step"], state["epoch"] + 1)
            diverged = True
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if recipe["clip_grad_norm"] is not None:
            nn.utils.clip_grad_norm_(model.parameters(), recipe["clip_grad_norm"])
        optimizer.step()
        scheduler.step()
        state["global_step"] += 1
        if ema is not None and state["global_step"] % recipe["ema_steps"] == 0:
            ema.update(unwrap(model), step=state["global_step"])
            if state["epoch"] < recipe["lr_warmup_epochs"]:
                # torchvision resets the average during warmup
                ema.module.load_state_dict(unwrap(model).state_dict())
        n = len(hard)
        total_loss += loss.item() * n
        correct += (logits.argmax(1) == hard).sum().item()
        seen += n
        if stop is not None:
            signalled = stop.signum is not None
            if world > 1:
                signalled = dist.any(signalled)
            if signalled:
                interrupted = {"step": step, "loss": total_loss, "correct": correct, "seen": seen,
                               "signum": stop.signum or int(signal.SIGTERM), "rng": rng_state()}
                break
    total_loss, correct, seen = dist.sum([total_loss, correct, seen]) if world > 1 else (total_loss, correct, seen)
    if interrupted is not None:
        interrupted.update(loss=total_loss, correct=correct, seen=seen)
    if seen == 0 and not diverged and interrupted is None:
        raise InputError("training split: no readable samples")
    return {"train_loss": total_loss / seen if seen else math.nan, "train_acc": correct / seen if seen else math.nan,
            "images": int(seen), "diverged": diverged, "interrupted": interrupted}


# --------------------------------------------------------------------------- checkpoints


def previous_path(path: Path) -> Path:
    return path.with_name(path.stem + ".prev" + path.suffix)


def save_checkpoint(obj: dict, path: Path) -> None:
    """Write ``path`` atomically (flushed to disk), keeping the one before as ``*.prev.pt``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.replace(path, previous_path(path))


def load_latest_checkpoint(path: Path, identity: dict, main: bool = True) -> tuple[dict | None, Path | None]:
    """The newest good checkpoint of this run: ``path``, else ``*.prev.pt``, else none.

    An unreadable newest checkpoint is moved aside to ``*.pt.bad`` (by the main rank) so that
    the next save does not rotate it over the good previous one.
    """
    for candidate in (path, previous_path(path)):
        if not candidate.exists():
            if candidate == path and previous_path(path).exists():
                log.warning("%s: missing; trying the previous checkpoint", path)
            continue
        ckpt, readable = _read_checkpoint(candidate, identity)
        if ckpt is not None:
            return ckpt, candidate
        if not readable and candidate == path and main:
            os.replace(path, path.with_name(path.name + ".bad"))
    return None, None


def load_checkpoint(path: Path, identity: dict) -> dict | None:
    """The checkpoint at ``path`` if it loads and belongs to this run, else None (warned)."""
    return _read_checkpoint(path, identity)[0]


def _read_checkpoint(path: Path, identity: dict) -> tuple[dict | None, bool]:
    if not path.exists():
        return None, False
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not an imagenot training checkpoint")
        for key in ("model", "optimizer", "scheduler", "epoch", "global_step", "best", "history", "rng"):
            if key not in ckpt:
                raise ValueError(f"missing entry '{key}'")
    except Exception as e:  # truncated zip, pickle errors, wrong content
        log.warning("%s: unreadable checkpoint (%s: %s); falling back to the previous one or to scratch",
                    path, type(e).__name__, e)
        return None, False
    if ckpt.get("identity") != identity:
        log.warning("%s: checkpoint is for a different run (model/recipe/seed/classes changed); not used", path)
        return None, True
    return ckpt, True


# --------------------------------------------------------------------------- driver


def train(
    model_name: str,
    recipe: dict,
    data_dir: str | Path,
    seed: int,
    params: dict,
    out_dir: str | Path,
    on_epoch_end: Callable[[int], None] | None = None,
) -> dict:
    """Train and write checkpoint.pt, model.pt, history.csv and train.json; return train.json.

    Under torchrun (WORLD_SIZE > 1) every rank calls this; rank 0 writes the files.
    Raises Preempted after writing a checkpoint when SIGTERM / SIGUSR1 arrives.
    """
    recipe = validate_recipe(recipe, model_name)
    params = resolve_params(params)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(params["threads"])
    device = select_device(params["device"])
    dist = Dist(device)
    try:
        with StopFlag() as stop:
            return _train(model_name, recipe, data_dir, seed, params, out_dir, on_epoch_end, device, dist, stop)
    finally:
        dist.close()


def _train(model_name, recipe, data_dir, seed, params, out_dir, on_epoch_end, device, dist, stop) -> dict:
    amp = bool(params["amp"])
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    max_epochs = params["max_epochs"] or recipe["epochs"]  # the paper: early stopping, at most 1000 epochs

    classes = data.read_classes(data_dir)
    num_classes = len(classes)
    train_shards = data.shard_paths(data_dir, "train")
    val_shards = data.shard_paths(data_dir, "val")
    n_train = data.count_samples(train_shards)
    if n_train == 0:
        raise InputError(f"{Path(data_dir) / 'train'}: no samples in the shards")
    workers = max(1, params["num_workers"])
    per_rank = math.ceil(n_train / dist.world)
    steps_per_epoch = max(1, math.ceil(per_rank / recipe["batch_size"]))
    # DDP: disjoint shards per rank while there are enough for every reader, else by sample
    train_split = "shards" if len(train_shards) >= dist.world * workers else "samples"
    if dist.world > 1 and train_split == "samples":
        log.warning("%d training shards for %d ranks x %d workers: splitting by sample (every rank reads every shard)",
                    len(train_shards), dist.world, workers)
    identity = {
        "model": model_name,
        "recipe": recipe,
        "seed": int(seed),
        "num_classes": num_classes,
        "wnids": classes["wnid"].tolist(),
    }

    seed_everything(seed)
    model = build_model(recipe["arch"], num_classes, recipe["image_size"],
                        aux_logits=recipe["aux_loss_weight"] > 0, bn_momentum=recipe.get("bn_momentum"),
                        **recipe.get("arch_kwargs", {}))
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, recipe)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(recipe, step, steps_per_epoch))
    ema = build_ema(model, recipe, device, dist.world)
    mixup = build_mixup(recipe, num_classes)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.0 if mixup is not None else recipe["label_smoothing"])

    ckpt_path = out_dir / "checkpoint.pt"
    state = {"epoch": 0, "global_step": 0, "history": [], "epochs_since_best": 0, "stopped_early": False,
             "seconds": 0.0, "corrupt_train": 0, "corrupt_val": 0, "diverged": False, "partial": None,
             "ddp": None, "best": {"val_acc": -1.0, "epoch": 0, "source": "model", "state_dict": None}}
    ckpt, ckpt_from = load_latest_checkpoint(ckpt_path, identity, main=dist.main)
    resumed_from = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ema is not None:
            ema.module.load_state_dict(ckpt["ema"])
        set_rng_state(ckpt["rng"])
        for key in state:
            if key in ckpt:
                state[key] = ckpt[key]
        if isinstance(state["best"]["state_dict"], str):  # "model": same as the saved weights
            state["best"] = dict(state["best"], state_dict=ckpt["model"])
        resumed_from = state["epoch"]
        where = f" step {state['partial']['step']} of epoch {state['epoch'] + 1}" if state["partial"] else ""
        log.info("%s: resuming after epoch %d%s", ckpt_from, resumed_from, where)

    train_model = model
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if params["compile"]:
        train_model = torch.compile(train_model)

    counter_val = data.SkipCounter()
    val_ds = data.make_dataset(val_shards, data.eval_transform(recipe["image_size"]), counter=counter_val,
                               num_classes=num_classes, split="samples")
    val_loader = data.make_loader(val_ds, recipe["batch_size"], params["num_workers"], seed=seed,
                                  pin_memory=device.type == "cuda")
    reps = recipe["ra_reps"]
    # one epoch = one pass of the data (RASampler's length); under DDP every rank reads an
    # endless stream cut at its share, so all ranks take the same number of steps
    endless = dist.world > 1
    limit = math.ceil(per_rank / workers) if (reps > 1 or endless) else None

    def checkpoint(partial: dict | None) -> None:
        if not dist.main:
            return
        model_state = cpu_state_dict(model)
        best = state["best"]
        if best["epoch"] == state["epoch"] and best["source"] == "model" and partial is None:
            best = dict(best, state_dict="model")  # the current weights: do not store them twice
        save_checkpoint({
            "format": CHECKPOINT_FORMAT, "identity": identity,
            "model": model_state, "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "ema": cpu_state_dict(ema.module) if ema is not None else None,
            "rng": rng_state(), **state, "best": best, "partial": partial,
        }, ckpt_path)

    while state["epoch"] < max_epochs and not state["stopped_early"]:
        epoch = state["epoch"]
        partial, state["partial"] = state["partial"], None
        t0 = time.perf_counter()
        eseed = epoch_seed(seed, epoch)
        seed_everything(eseed + 1_000_003 * dist.rank)  # augmentations differ between ranks
        counter_train = data.SkipCounter()
        train_ds = data.make_dataset(train_shards, data.train_transform(recipe["image_size"]),
                                     counter=counter_train, num_classes=num_classes, shuffle=True,
                                     seed=eseed, repeats=reps, limit=limit, split=train_split, endless=endless)
        train_loader = data.make_loader(train_ds, recipe["batch_size"], params["num_workers"],
                                        seed=eseed + 1_000_003 * dist.rank, pin_memory=device.type == "cuda")
        keys = set() if dist.world > 1 and state["ddp"] is None else None
        stats = train_one_epoch(train_model, train_loader, optimizer, scheduler, criterion, mixup, ema,
                                recipe, device, amp, state, dist=dist, resume=partial, stop=stop, keys=keys)
        if keys is not None:  # record once how the ranks shared the data
            key_sets = dist.gather(sorted(keys))
            union = set().union(*map(set, key_sets))
            state["ddp"] = {"world_size": dist.world, "train_split": train_split,
                            "samples_per_rank": [len(k) for k in key_sets],
                            "overlapping_samples": sum(len(k) for k in key_sets) - len(union)}
        if stats["interrupted"] is not None:
            info = stats["interrupted"]
            state["seconds"] += time.perf_counter() - t0
            info["seconds"] = time.perf_counter() - t0 + (partial or {}).get("seconds", 0.0)
            checkpoint(info)
            raise Preempted(info["signum"], epoch, info["step"])
        t_train = time.perf_counter() - t0
        lr = optimizer.param_groups[0]["lr"]

        before = counter_val.count
        val_acc, source = accuracy(model, val_loader, device, amp, dist), "model"
        if ema is not None:
            ema_acc = accuracy(ema.module, val_loader, device, amp, dist)
            log.info("epoch %d: val_acc model %.4f, EMA %.4f", epoch + 1, val_acc, ema_acc)
            if ema_acc > val_acc:
                val_acc, source = ema_acc, "ema"
        corrupt_val, corrupt_train = dist.sum([counter_val.count - before, counter_train.count])
        state["corrupt_val"] = max(state["corrupt_val"], int(corrupt_val))
        state["corrupt_train"] = max(state["corrupt_train"], int(corrupt_train))

        seconds = time.perf_counter() - t0 + (partial or {}).get("seconds", 0.0)
        state["seconds"] += time.perf_counter() - t0
        state["epoch"] = epoch + 1
        state["history"].append({
            "epoch": epoch + 1, "lr": lr, "train_loss": stats["train_loss"], "train_acc": stats["train_acc"],
            "val_acc": val_acc, "seconds": seconds, "images_per_s": stats["images"] / t_train if stats["images"] else 0.0,
        })
        if stats["diverged"]:
            state["diverged"] = True
            state["stopped_early"] = True
        # a diverged epoch is only kept when nothing better exists and its weights are finite
        eligible = not stats["diverged"] or (
            state["best"]["state_dict"] is None and all(torch.isfinite(p).all() for p in model.parameters()))
        if val_acc > state["best"]["val_acc"] and eligible:
            best_module = ema.module if source == "ema" else model
            state["best"] = {"val_acc": val_acc, "epoch": epoch + 1, "source": source,
                             "state_dict": cpu_state_dict(best_module)}
            state["epochs_since_best"] = 0
        else:
            state["epochs_since_best"] += 1
            if state["epochs_since_best"] >= params["patience"]:
                state["stopped_early"] = state["stopped_early"] or state["epoch"] < max_epochs
                if state["stopped_early"]:
                    log.info("early stop after epoch %d: no val improvement in %d epochs", epoch + 1, params["patience"])
        log.info("%s seed %d epoch %d/%d: lr %.3g loss %.4f train_acc %.4f val_acc %.4f (%.1f s, %.1f img/s)",
                 model_name, seed, epoch + 1, max_epochs, lr, stats["train_loss"], stats["train_acc"],
                 val_acc, seconds, stats["images"] / t_train if stats["images"] else 0.0)

        checkpoint(None)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)

    best = state["best"]
    if best["state_dict"] is None:
        raise FloatingPointError(f"{model_name}: training diverged in the first epoch; no weights to save (lower the lr)")
    summary = {
        "model": model_name, "arch": recipe["arch"], "seed": int(seed), "device": str(device),
        "num_classes": num_classes, "n_train": n_train,
        "best_epoch": best["epoch"], "best_val_acc": best["val_acc"], "best_weights": best["source"],
        "epochs_run": state["epoch"], "stopped_early": bool(state["stopped_early"]),
        "diverged": bool(state["diverged"]),
        "seconds": state["seconds"], "resumed_from_epoch": resumed_from,
        "corrupt_samples_skipped": int(state["corrupt_train"] + state["corrupt_val"]),
        "world_size": dist.world,
    }
    if state["ddp"] is not None:
        summary["ddp"] = state["ddp"]
    if dist.main:
        with atomic_path(out_dir / "model.pt") as tmp:
            torch.save({
                "format": MODEL_FORMAT, "model": model_name, "arch": recipe["arch"],
                "num_classes": num_classes, "recipe": recipe, "seed": int(seed),
                "wnids": classes["wnid"].tolist(), "epoch": best["epoch"], "val_acc": best["val_acc"],
                "weights": best["source"], "state_dict": best["state_dict"],
            }, tmp)
        write_csv(pd.DataFrame(state["history"], columns=HISTORY_COLUMNS), out_dir / "history.csv")
        write_json(summary, out_dir / "train.json")
    dist.barrier()
    return summary


def _cmd_train(args: argparse.Namespace) -> int:
    recipe = parse_json(args.recipe, "--recipe")
    params = parse_json(args.params, "--params")
    if getattr(args, "overrides", None):  # tuned hyperparameters (imagenot tune best) replace the recipe's
        from .tune import load_overrides

        for path in args.overrides:
            recipe.update(load_overrides(path))
    try:
        train(args.model, recipe, args.data_dir, args.seed, params, args.out_dir)
    except Preempted as e:
        log.warning("%s", e)
        return e.exit_code  # non-zero: SLURM requeues / Snakemake retries, the rerun resumes
    if not params.get("keep_checkpoints") and os.environ.get("RANK", "0") == "0":
        # the job is done and model.pt written: its resume checkpoints only take disk space
        # (optimizer state included, ~3x the model: 9 GB over the demo's nine models)
        ckpt = Path(args.out_dir) / "checkpoint.pt"
        for path in (ckpt, previous_path(ckpt)):
            path.unlink(missing_ok=True)
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("train", help="train one model from scratch on a dataset (resumable)")
    p.add_argument("--model", required=True, help="model name (a key of the config's models section)")
    p.add_argument("--recipe", required=True, help="JSON recipe: models.NAME merged over training.recipe_defaults")
    p.add_argument("--data-dir", required=True, help="dataset directory with classes.csv and train/ val/ test/ shards")
    p.add_argument("--seed", required=True, type=int)
    p.add_argument("--params", required=True,
                   help="JSON: the config's training section (device, num_workers, threads, patience, amp, compile, max_epochs, "
                        "keep_checkpoints)")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--overrides", nargs="*", default=[], metavar="FILE",
                   help="best.json files of imagenot tune best: their 'overrides' replace recipe fields")
    p.set_defaults(func=_cmd_train)
