"""Fine-tuning and linear transfer of a pretrained model to a target dataset (CIFAR-10).

The paper (Section 4, Appendix A.2, Table 2) takes each model pretrained on ImageNot /
ImageNet and (i) fine-tunes all layers on CIFAR-10 or (ii) trains only the last fully
connected layer ("transfer"), then reports CIFAR-10 test accuracy. Both run a random search
over Table 2's space with a budget of 24 trials:

    batch size          transfer 2048 / fine-tune 256 (fixed per mode)
    optimizer           SGD or Adam
    lr                  [1e-3, 1e-1]             (sampled log-uniformly: assumption)
    lr scheduler        cosine annealing with warm restarts
    momentum            [0.8, 0.99]              (SGD momentum; Adam's beta1: assumption)
    warmup steps        {5, 10, 15, 25, 50}      (linear warmup, optimizer steps)
    weight decay        [1e-6, 5e-3]             (log-uniform: assumption)

The paper states no number of epochs nor the restart period; both are config values
(``transfer.epochs``, ``transfer.restart_epochs``). The paper's ASHA early stopping of
trials is not reproduced: every trial runs its full epochs.

Protocol here: the trials are sampled once from ``transfer.seed`` (the same trials for
every model, mode and pretraining seed; only the batch size differs by mode). A validation
split is held out of the target's training set; each trial trains on the rest and is scored
on validation; the trial with the best validation top-1 is evaluated once on the target's
test set. ``linear`` freezes everything but a new last layer and keeps the network in eval
mode (batch-norm statistics and dropout frozen as well), so its features are computed once
and the trials train the last layer on them; ``finetune`` trains all layers of a fresh copy
of the pretrained network per trial (random horizontal flips, batch-norm in train mode).
Images are upsampled on the fly to the model's image size and normalised with ImageNet's
mean and standard deviation.

Targets (``transfer.target``): ``cifar10`` reads torchvision's ``CIFAR10`` dataset from
``transfer.root`` (``download: true`` fetches it); ``digits`` is scikit-learn's bundled
``load_digits`` (1,797 real 8x8 images, 10 classes, no network), the demo's stand-in.

Commands: ``imagenot transfer-data`` (the target's train / val / test arrays in one .npz,
shared by all transfer jobs so CIFAR-10 is downloaded once) and ``imagenot transfer``
(one model, one mode: ``{mode}.json``).
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import data
from .evaluate import add_trained_model_args, load_trained
from .io import InputError, atomic_path, parse_json, read_json, write_json
from .train import autocast, seed_everything, select_device, validate_recipe

log = logging.getLogger(__name__)

MODES = ("finetune", "linear")
TARGETS = ("cifar10", "digits")
DATA_FORMAT = "imagenot-transfer-data-v1"
# Table 2 of the paper; epochs / restart_epochs / split sizes are assumptions (not stated)
TRANSFER_DEFAULTS = {
    "target": "cifar10",
    "root": "data/cifar10",
    "download": True,
    "verify_checksums": True,
    "modes": list(MODES),
    "n_trials": 24,
    "seed": 0,
    "val_fraction": 0.1,
    "test_fraction": 0.2,
    "max_train": None,
    "max_val": None,
    "max_test": None,
    "epochs": {"finetune": 10, "linear": 10},
    "restart_epochs": 5,
    "batch_size": {"finetune": 256, "linear": 2048},
    "search_space": {
        "optimizer": ["sgd", "adam"],
        "lr": [1e-3, 1e-1],
        "momentum": [0.8, 0.99],
        "warmup_steps": [5, 10, 15, 25, 50],
        "weight_decay": [1e-6, 5e-3],
    },
}
RUNTIME_DEFAULTS = {"device": "auto", "threads": 1, "amp": True, "eval_batch_size": 256}


# --------------------------------------------------------------------------- parameters


def resolve_transfer(params: dict, source: str = "--params") -> dict:
    """The transfer config section with defaults; unknown or malformed fields named."""
    if not isinstance(params, dict):
        raise InputError(f"{source}: expected a JSON object, got {type(params).__name__}")
    unknown = sorted(set(params) - set(TRANSFER_DEFAULTS))
    if unknown:
        raise InputError(f"{source}: unknown field(s) {unknown}; known: {sorted(TRANSFER_DEFAULTS)}")
    out = copy.deepcopy(TRANSFER_DEFAULTS)
    for key, value in params.items():
        if isinstance(out[key], dict) and isinstance(value, dict):
            bad = sorted(set(value) - set(out[key]))
            if bad:
                raise InputError(f"{source}: unknown field(s) {[f'{key}.{b}' for b in bad]}; known: {sorted(out[key])}")
            out[key].update(value)
        else:
            out[key] = value
    if out["target"] not in TARGETS:
        raise InputError(f"{source}: field 'target' must be one of {list(TARGETS)} (got {out['target']!r})")
    for mode in out["modes"]:
        if mode not in MODES:
            raise InputError(f"{source}: field 'modes': unknown mode {mode!r}; known: {list(MODES)}")
    for key in ("n_trials", "restart_epochs"):
        if not isinstance(out[key], int) or out[key] < 1:
            raise InputError(f"{source}: field '{key}' must be a positive integer (got {out[key]!r})")
    for key in ("val_fraction", "test_fraction"):
        if not isinstance(out[key], (int, float)) or not 0 < out[key] < 1:
            raise InputError(f"{source}: field '{key}' must be in (0, 1) (got {out[key]!r})")
    for key in ("max_train", "max_val", "max_test"):
        if out[key] is not None and (not isinstance(out[key], int) or out[key] < 1):
            raise InputError(f"{source}: field '{key}' must be a positive integer or null (got {out[key]!r})")
    for section in ("epochs", "batch_size"):
        for mode, v in out[section].items():
            if not isinstance(v, int) or v < 1:
                raise InputError(f"{source}: field '{section}.{mode}' must be a positive integer (got {v!r})")
    space = out["search_space"]
    for key in ("lr", "momentum", "weight_decay"):
        v = space[key]
        if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v) and 0 <= v[0] <= v[1]):
            raise InputError(f"{source}: field 'search_space.{key}' must be [low, high] with 0 <= low <= high (got {v!r})")
    if space["lr"][0] <= 0 or space["weight_decay"][0] <= 0:
        raise InputError(f"{source}: fields 'search_space.lr' and 'search_space.weight_decay' are sampled "
                         "log-uniformly: their low ends must be > 0")
    for opt in space["optimizer"]:
        if opt not in ("sgd", "adam"):
            raise InputError(f"{source}: field 'search_space.optimizer': unknown optimizer {opt!r} (sgd, adam)")
    if not space["optimizer"] or not space["warmup_steps"]:
        raise InputError(f"{source}: fields 'search_space.optimizer' and 'search_space.warmup_steps' need at least one value")
    return out


def resolve_runtime(params: dict, source: str = "--runtime") -> dict:
    if not isinstance(params, dict):
        raise InputError(f"{source}: expected a JSON object, got {type(params).__name__}")
    unknown = sorted(set(params) - set(RUNTIME_DEFAULTS))
    if unknown:
        raise InputError(f"{source}: unknown field(s) {unknown}; known: {sorted(RUNTIME_DEFAULTS)}")
    out = {**RUNTIME_DEFAULTS, **params}
    for key in ("threads", "eval_batch_size"):
        if not isinstance(out[key], int) or out[key] < 1:
            raise InputError(f"{source}: field '{key}' must be a positive integer (got {out[key]!r})")
    return out


def sample_trials(cfg: dict) -> list[dict]:
    """``n_trials`` hyperparameter sets from ``search_space``, seeded by ``seed`` only, so
    every model and mode gets the same trials (batch size and epochs are per mode)."""
    rng = np.random.default_rng(cfg["seed"])
    space = cfg["search_space"]

    def log_uniform(low, high):
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))

    trials = []
    for _ in range(cfg["n_trials"]):
        trials.append({
            "optimizer": str(space["optimizer"][rng.integers(len(space["optimizer"]))]),
            "lr": log_uniform(*space["lr"]),
            "momentum": float(rng.uniform(*space["momentum"])),
            "warmup_steps": int(space["warmup_steps"][rng.integers(len(space["warmup_steps"]))]),
            "weight_decay": log_uniform(*space["weight_decay"]),
        })
    return trials


# --------------------------------------------------------------------------- target data


def load_cifar10(root: str | Path, download: bool, verify_checksums: bool = True):
    """CIFAR-10 through torchvision: (train_x, train_y, test_x, test_y, class names), images
    uint8 NHWC. ``verify_checksums: false`` accepts files that are not byte-identical to
    the official release (a local copy in the same pickle layout)."""
    from torchvision.datasets import CIFAR10

    cls = CIFAR10
    if not verify_checksums:
        class _Unverified(CIFAR10):
            train_list = [[name, None] for name, _ in CIFAR10.train_list]
            test_list = [[name, None] for name, _ in CIFAR10.test_list]
            meta = {**CIFAR10.meta, "md5": None}

        cls = _Unverified
    root = Path(root)
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=False)
    except RuntimeError as e:
        raise InputError(f"{root / CIFAR10.base_folder}: CIFAR-10 not readable ({e}); set transfer.download: true "
                         "to fetch it, or transfer.verify_checksums: false for a local copy") from e
    except Exception as e:  # a damaged pickle, a network error while downloading
        raise InputError(f"{root / CIFAR10.base_folder}: cannot load CIFAR-10 ({type(e).__name__}: {e})") from e
    return (np.asarray(train.data, dtype=np.uint8), np.asarray(train.targets, dtype=np.int64),
            np.asarray(test.data, dtype=np.uint8), np.asarray(test.targets, dtype=np.int64), list(train.classes))


def load_digits_target(test_fraction: float, seed: int):
    """scikit-learn's digits as 3-channel uint8 NHWC images with a seeded stratified test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)  # 0..16 -> 0..255
    images = np.repeat(images[..., None], 3, axis=3)
    labels = d.target.astype(np.int64)
    idx_train, idx_test = train_test_split(np.arange(len(labels)), test_size=test_fraction, random_state=seed,
                                           stratify=labels)
    return images[idx_train], labels[idx_train], images[idx_test], labels[idx_test], [str(c) for c in d.target_names]


def _cap(n: int, cap: int | None, rng: np.random.Generator) -> np.ndarray:
    order = rng.permutation(n)
    return np.sort(order[:cap]) if cap is not None else np.arange(n)


def prepare_target(cfg: dict) -> dict:
    """The target's train / val / test arrays: a seeded validation split out of train, then
    the optional max_* caps (seeded subsets), identical for every model."""
    cfg = resolve_transfer(cfg)
    if cfg["target"] == "cifar10":
        xtr, ytr, xte, yte, classes = load_cifar10(cfg["root"], cfg["download"], cfg["verify_checksums"])
    else:
        xtr, ytr, xte, yte, classes = load_digits_target(cfg["test_fraction"], cfg["seed"])
    rng = np.random.default_rng(cfg["seed"] + 1)
    order = rng.permutation(len(ytr))
    n_val = max(1, int(round(cfg["val_fraction"] * len(ytr))))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    out = {"train_x": xtr[train_idx], "train_y": ytr[train_idx], "val_x": xtr[val_idx], "val_y": ytr[val_idx],
           "test_x": xte, "test_y": yte}
    for split in ("train", "val", "test"):
        keep = _cap(len(out[f"{split}_y"]), cfg[f"max_{split}"], rng)
        out[f"{split}_x"], out[f"{split}_y"] = out[f"{split}_x"][keep], out[f"{split}_y"][keep]
        if len(keep) == 0:
            raise InputError(f"transfer: target {cfg['target']} has no {split} examples")
    out["classes"] = np.asarray(classes)
    out["target"] = np.asarray(cfg["target"])
    out["format"] = np.asarray(DATA_FORMAT)
    return out


def write_target(cfg: dict, path: str | Path) -> dict:
    arrays = prepare_target(cfg)
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)
    log.info("%s: %s train %d, val %d, test %d, %d classes", path, arrays["target"], len(arrays["train_y"]),
             len(arrays["val_y"]), len(arrays["test_y"]), len(arrays["classes"]))
    return arrays


def read_target(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: target data not found (written by 'imagenot transfer-data')")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise InputError(f"{path}: cannot read target data ({type(e).__name__}: {e})") from e
    if str(arrays.get("format", "")) != DATA_FORMAT:
        raise InputError(f"{path}: field 'format' is not {DATA_FORMAT!r}")
    for split in ("train", "val", "test"):
        x, y = arrays.get(f"{split}_x"), arrays.get(f"{split}_y")
        if x is None or y is None or x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8 or len(x) != len(y):
            raise InputError(f"{path}: field '{split}_x' must be uint8 N x H x W x 3 with a label per image")
    return arrays


# --------------------------------------------------------------------------- model pieces


def find_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """The last fully connected layer (torchvision classifiers: fc, classifier[-1], heads.head)."""
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear) and not name.startswith("AuxLogits")]
    if not linears:
        raise InputError(f"{type(model).__name__}: no fully connected (nn.Linear) layer to replace")
    return linears[-1]


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def replace_head(model: nn.Module, num_classes: int, seed: int) -> str:
    """Swap the last layer for a new ``num_classes``-way one (seeded init); drop Inception's
    auxiliary head (not used on the target). Returns the head's module name."""
    if getattr(model, "AuxLogits", None) is not None:
        model.AuxLogits = None
        model.aux_logits = False
    name, old = find_head(model)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    torch.random.set_rng_state(gen_state)
    set_module(model, name, new)
    return name


def to_input(x_uint8: torch.Tensor, image_size: int, device: torch.device) -> torch.Tensor:
    """uint8 NHWC batch -> normalised float NCHW at image_size (bilinear resize on device)."""
    x = x_uint8.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > image_size)
    mean = torch.tensor(data.IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(data.IMAGENET_STD, device=device).view(1, 3, 1, 1)
    x = (x - mean) / std
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def build_optimizer(params, trial: dict) -> torch.optim.Optimizer:
    if trial["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=trial["lr"], momentum=trial["momentum"], weight_decay=trial["weight_decay"])
    if trial["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=trial["lr"], betas=(trial["momentum"], 0.999), weight_decay=trial["weight_decay"])
    raise InputError(f"--params: field 'search_space.optimizer': unknown optimizer {trial['optimizer']!r}")


def build_scheduler(optimizer, warmup_steps: int, restart_steps: int):
    """Linear warmup over ``warmup_steps`` optimizer steps, then cosine annealing with warm
    restarts every ``restart_steps`` steps (torch's LinearLR + CosineAnnealingWarmRestarts)."""
    from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts, LinearLR, SequentialLR

    warm = LinearLR(optimizer, start_factor=1.0 / (warmup_steps + 1), end_factor=1.0, total_iters=warmup_steps)
    cos = CosineAnnealingWarmRestarts(optimizer, T_0=max(1, restart_steps))
    return SequentialLR(optimizer, [warm, cos], milestones=[warmup_steps])


@torch.no_grad()
def predict_array(model: nn.Module, x: torch.Tensor, image_size: int, device, amp: bool, batch_size: int) -> torch.Tensor:
    model.eval()
    preds = []
    for i in range(0, len(x), batch_size):
        with autocast(device, amp):
            preds.append(model(to_input(x[i:i + batch_size], image_size, device)).float().argmax(1).cpu())
    return torch.cat(preds)


@torch.no_grad()
def extract_features(model: nn.Module, head_name: str, x: torch.Tensor, image_size: int, device, amp: bool,
                     batch_size: int) -> torch.Tensor:
    """Inputs of the last layer (eval mode) for every image of ``x``, float32 on ``device``."""
    head = model.get_submodule(head_name)
    captured = []
    handle = head.register_forward_hook(lambda m, inp, out: captured.append(inp[0].float()))
    try:
        model.eval()
        for i in range(0, len(x), batch_size):
            with autocast(device, amp):
                model(to_input(x[i:i + batch_size], image_size, device))
    finally:
        handle.remove()
    return torch.cat(captured)


def _train_loop(step_fn, n: int, batch_size: int, epochs: int, gen: torch.Generator) -> bool:
    """Shuffled mini-batches for ``epochs``; ``step_fn(idx)`` returns the loss. False if it diverged."""
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            loss = step_fn(order[i:i + batch_size])
            if not math.isfinite(loss):
                return False
    return True


# --------------------------------------------------------------------------- driver


def transfer(
    model_name: str,
    recipe: dict,
    checkpoint: str | Path,
    target_data: str | Path,
    mode: str,
    params: dict,
    runtime: dict,
    out_path: str | Path,
    pretrain_metrics: str | Path | None = None,
    dataset: str | None = None,
    seed: int | None = None,
    return_model: bool = False,
):
    """Random search of ``n_trials`` trials on the target's validation split, the best one
    evaluated on its test split; writes ``out_path`` (JSON) and returns it (and the final
    model with the best trial's weights when ``return_model``)."""
    if mode not in MODES:
        raise InputError(f"--mode: unknown mode {mode!r}; known: {list(MODES)}")
    recipe = validate_recipe(recipe, model_name)
    cfg = resolve_transfer(params)
    runtime = resolve_runtime(runtime)
    pretrain_top1 = None
    if pretrain_metrics is not None:
        path = Path(pretrain_metrics)
        if not path.is_file():
            raise InputError(f"{path}: pretraining metrics not found (metrics.json of 'imagenot evaluate')")
        try:
            pretrain_top1 = float(read_json(path)["top1"])
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{path}: field 'top1' missing or not a number") from e
    torch.set_num_threads(runtime["threads"])
    device = select_device(runtime["device"])
    amp = bool(runtime["amp"])
    pretrained, ckpt = load_trained(checkpoint, model_name, recipe)
    target = read_target(target_data)
    num_classes = len(target["classes"])
    size = recipe["image_size"]
    xs = {s: torch.from_numpy(target[f"{s}_x"]) for s in ("train", "val", "test")}
    ys = {s: torch.from_numpy(target[f"{s}_y"]).long() for s in ("train", "val", "test")}
    run_seed = int(seed) if seed is not None else int(ckpt.get("seed") or 0)
    batch_size, epochs = cfg["batch_size"][mode], cfg["epochs"][mode]
    n_train = len(ys["train"])
    steps_per_epoch = math.ceil(n_train / batch_size)
    restart_steps = cfg["restart_epochs"] * steps_per_epoch
    trials = sample_trials(cfg)
    ebs = runtime["eval_batch_size"]
    t0 = time.perf_counter()

    base = copy.deepcopy(pretrained)
    head_name = replace_head(base, num_classes, seed=run_seed)
    base.to(device)
    if device.type == "cuda":
        base = base.to(memory_format=torch.channels_last)

    if mode == "linear":
        feats = {s: extract_features(base, head_name, xs[s], size, device, amp, ebs) for s in xs}
        labels = {s: ys[s].to(device) for s in ys}

    results, best = [], None
    for i, trial in enumerate(trials):
        seed_everything(run_seed * 1000 + i)
        gen = torch.Generator().manual_seed(run_seed * 1000 + i)
        if mode == "linear":
            head = copy.deepcopy(base.get_submodule(head_name))
            optimizer = build_optimizer(head.parameters(), trial)
            scheduler = build_scheduler(optimizer, trial["warmup_steps"], restart_steps)

            def step(idx, head=head, optimizer=optimizer, scheduler=scheduler):
                idx = idx.to(device)
                loss = F.cross_entropy(head(feats["train"][idx]), labels["train"][idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                return loss.item()

            head.train()
            ok = _train_loop(step, n_train, batch_size, epochs, gen)
            with torch.no_grad():
                val_top1 = float((head(feats["val"]).argmax(1) == labels["val"]).float().mean()) if ok else 0.0
            trained = head
        else:
            model = copy.deepcopy(base)
            optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], trial)
            scheduler = build_scheduler(optimizer, trial["warmup_steps"], restart_steps)

            def step(idx, model=model, optimizer=optimizer, scheduler=scheduler):
                x = to_input(xs["train"][idx], size, device)
                flip = torch.rand(len(idx), generator=gen) < 0.5  # random horizontal flips
                x = torch.where(flip.to(device).view(-1, 1, 1, 1), x.flip(3), x)
                y = ys["train"][idx].to(device)
                with autocast(device, amp):
                    loss = F.cross_entropy(model(x).float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                return loss.item()

            model.train()
            ok = _train_loop(step, n_train, batch_size, epochs, gen)
            val_top1 = float((predict_array(model, xs["val"], size, device, amp, ebs) == ys["val"]).float().mean()) if ok else 0.0
            trained = model
        if not ok:
            log.warning("%s %s trial %d diverged (%s); scored 0", model_name, mode, i, trial)
        results.append({"trial": i, **trial, "batch_size": batch_size, "epochs": epochs,
                        "val_top1": val_top1, "diverged": not ok})
        log.info("%s %s trial %d/%d: %s val_top1 %.4f", model_name, mode, i + 1, len(trials), trial, val_top1)
        if ok and (best is None or val_top1 > best[0]):  # keep only the best trial's weights
            best = (val_top1, i, {k: v.detach().cpu().clone() for k, v in trained.state_dict().items()})
        del trained

    if best is None:
        raise FloatingPointError(f"{model_name} {mode}: every trial diverged; lower search_space.lr")
    val_top1, best_i, state = best
    final = base
    if mode == "linear":
        final.get_submodule(head_name).load_state_dict(state)
        with torch.no_grad():
            test_pred = final.get_submodule(head_name)(feats["test"]).argmax(1).cpu()
    else:
        final.load_state_dict(state)
        test_pred = predict_array(final, xs["test"], size, device, amp, ebs)
    top1 = float((test_pred == ys["test"]).float().mean())
    hp_keys = ("optimizer", "lr", "momentum", "warmup_steps", "weight_decay", "batch_size", "epochs")
    result = {
        "model": model_name,
        "dataset": dataset,
        "seed": run_seed,
        "mode": mode,
        "target": str(target["target"]),
        "top1": top1,
        "n_test": len(ys["test"]),
        "pretrain_top1": pretrain_top1,
        "best": {**{k: results[best_i][k] for k in hp_keys}, "trial": best_i, "val_top1": val_top1},
        "trials": results,
        "n_train": n_train,
        "n_val": len(ys["val"]),
        "restart_epochs": cfg["restart_epochs"],
        "seconds": time.perf_counter() - t0,
    }
    write_json(result, out_path)
    log.info("%s %s to %s: best trial %d (val %.4f), test top1 %.4f", model_name, mode, result["target"],
             best_i, val_top1, top1)
    if return_model:
        return result, final.cpu()
    return result


# --------------------------------------------------------------------------- CLI


def _cmd_data(args: argparse.Namespace) -> int:
    write_target(parse_json(args.params, "--params"), args.out)
    return 0


def _cmd_transfer(args: argparse.Namespace) -> int:
    transfer(args.model, parse_json(args.recipe, "--recipe"), args.checkpoint, args.target_data, args.mode,
             parse_json(args.params, "--params"), parse_json(args.runtime, "--runtime"), args.out,
             pretrain_metrics=args.pretrain_metrics, dataset=args.dataset, seed=args.seed)
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("transfer-data", help="the transfer target's train / val / test arrays (CIFAR-10 or digits) as .npz")
    p.add_argument("--params", required=True, help="JSON: the config's transfer section")
    p.add_argument("--out", required=True, help="output .npz")
    p.set_defaults(func=_cmd_data)

    p = sub.add_parser("transfer", help="fine-tune (all layers) or linear transfer (last layer) of a trained model to the target")
    add_trained_model_args(p, "the JSON", data_dir=False)
    p.add_argument("--target-data", required=True, help=".npz written by imagenot transfer-data")
    p.add_argument("--mode", required=True, help=f"one of {', '.join(MODES)}")
    p.add_argument("--params", required=True, help="JSON: the config's transfer section (search space, budget)")
    p.add_argument("--runtime", default="{}", help="JSON: device, threads, amp, eval_batch_size")
    p.add_argument("--pretrain-metrics", default=None, help="metrics.json of imagenot evaluate (pretrain_top1)")
    p.add_argument("--out", required=True, help="output JSON ({mode}.json)")
    p.set_defaults(func=_cmd_transfer)
