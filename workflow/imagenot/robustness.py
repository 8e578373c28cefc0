"""Robustness to test-time augmentations (Appendix A.3 of the paper): ``imagenot robustness``.

The paper evaluates every model on the same held-out test examples under 17 test-time
augmentations, "all random except for the Identity augmentation", and reports the mean
accuracy across them ("Robust" in Figures 8 and 9). The 17, in the paper's order and with
the paper's names, are listed in ``AUGMENTATIONS``; each is built from
``torchvision.transforms.v2``.

The paper gives no parameters for them. The values below follow torchvision's
"Illustration of transforms" gallery (the paper's list mirrors it) and torchvision's
defaults, and are an assumption:

- transforms whose only randomness is whether they apply (Adjust Sharpness, Contrast =
  RandomAutocontrast, Equalize, Grayscale, Horizontal Flip, Invert, Posterize, Solarize,
  Vertical Flip) apply with probability ``p`` (torchvision's default 0.5; config
  ``evaluation.robustness.p``);
- the parametric ones (Gaussian Blur, Affine, ColorJitter, Perspective, Resized Crop,
  Rotation, Sharpness) always apply, with random parameters;
- "Adjust Sharpness" is torchvision's RandomAdjustSharpness (factor 2, i.e. sharpening);
  "Sharpness", listed separately by the paper, draws a sharpness factor uniformly from
  [0, 2] per image (blurring or sharpening).

Determinism: each (augmentation, test example) pair draws its random parameters from a
torch RNG seeded with a hash of (seed, augmentation name, example key), so the result does
not depend on batch size, data-loader workers or the order in which examples arrive, and two
runs give identical predictions. The augmentations act on the uint8 image after the usual
eval resize + centre crop (so Posterize / Solarize / Equalize see 8-bit pixels), and the
image is normalised afterwards. Each test image is decoded once and all 17 versions go
through the model together.

Outputs: ``robustness.json`` ({model, dataset, seed, n_test, clean_top1, augmentations:
{name: top1}, mean_top1, ...}; ``clean_top1`` is the Identity accuracy, ``mean_top1`` the mean
over all 17 entries, as the paper averages over its 17) and ``robustness_predictions.parquet``
(augmentation, index, label, pred, key: one row per augmentation and test example; ``index``
is the example's position in the test stream, which is the row order of evaluate's
``predictions.parquet`` with num_workers 0).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import functional as TF

from . import data
from .evaluate import EVAL_DEFAULTS, add_trained_model_args, load_trained
from .io import InputError, parse_json, write_json, write_parquet
from .train import autocast, resolve_params, select_device, validate_recipe

log = logging.getLogger(__name__)

#: Appendix A.3, in the paper's order and spelling
AUGMENTATIONS = (
    "Identity", "Gaussian Blur", "Adjust Sharpness", "Affine", "ColorJitter", "Contrast", "Equalize",
    "Grayscale", "Horizontal Flip", "Invert", "Perspective", "Posterize", "Resized Crop", "Rotation",
    "Sharpness", "Solarize", "Vertical Flip",
)
ROBUSTNESS_DEFAULTS = {"enabled": True, "seed": 0, "p": 0.5, "max_examples": None}


class RandomSharpness(T.Transform):
    """Sharpness factor drawn uniformly from ``[low, high]`` per call (0 blurs, 1 keeps, 2 sharpens)."""

    def __init__(self, low: float = 0.0, high: float = 2.0):
        super().__init__()
        self.low, self.high = float(low), float(high)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"factor": float(torch.empty(1).uniform_(self.low, self.high))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(TF.adjust_sharpness, inpt, sharpness_factor=params["factor"])


def build_augmentations(image_size: int, p: float = 0.5) -> dict[str, Callable]:
    """The 17 augmentations (name -> transform on a uint8 CHW image of ``image_size``)."""
    if not 0.0 <= p <= 1.0:
        raise InputError(f"evaluation.robustness: field 'p' must be in [0, 1] (got {p!r})")
    # the gallery's 5 x 9 blur kernel, shrunk for small images (odd, < image size)
    k_small = max(3, min(5, (image_size // 4) | 1))
    k_large = max(3, min(9, (image_size // 2 - 1) | 1))
    augs = {
        "Identity": T.Identity(),
        "Gaussian Blur": T.GaussianBlur(kernel_size=(k_small, k_large), sigma=(0.1, 5.0)),
        "Adjust Sharpness": T.RandomAdjustSharpness(sharpness_factor=2.0, p=p),
        "Affine": T.RandomAffine(degrees=(30, 70), translate=(0.1, 0.3), scale=(0.5, 0.75)),
        "ColorJitter": T.ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.3),
        "Contrast": T.RandomAutocontrast(p=p),
        "Equalize": T.RandomEqualize(p=p),
        "Grayscale": T.RandomGrayscale(p=p),
        "Horizontal Flip": T.RandomHorizontalFlip(p=p),
        "Invert": T.RandomInvert(p=p),
        "Perspective": T.RandomPerspective(distortion_scale=0.6, p=1.0),
        "Posterize": T.RandomPosterize(bits=2, p=p),
        "Resized Crop": T.RandomResizedCrop(image_size, antialias=True),
        "Rotation": T.RandomRotation(degrees=(0, 180)),
        "Sharpness": RandomSharpness(0.0, 2.0),
        "Solarize": T.RandomSolarize(threshold=192.0, p=p),
        "Vertical Flip": T.RandomVerticalFlip(p=p),
    }
    assert tuple(augs) == AUGMENTATIONS
    return augs


def example_seed(seed: int, augmentation: str, key: str) -> int:
    """A 63-bit RNG seed for one (augmentation, example): stable across runs and platforms."""
    digest = hashlib.blake2b(f"{seed}\x00{augmentation}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def augment_all(image: torch.Tensor, key: str, augs: dict[str, Callable], seed: int) -> torch.Tensor:
    """All augmented versions of one uint8 CHW image, stacked (len(augs), C, H, W), each
    drawn from its own seeded RNG; the caller's global torch RNG state is left as it was."""
    out = []
    gen = torch.default_generator  # the CPU RNG the v2 transforms draw from
    saved = gen.get_state()
    try:
        for name, aug in augs.items():
            gen.manual_seed(example_seed(seed, name, key))
            out.append(aug(image).as_subclass(torch.Tensor))
    finally:
        gen.set_state(saved)
    return torch.stack(out)


def base_transform(image_size: int) -> Callable:
    """The eval geometry (as data.eval_transform) without dtype conversion and normalisation."""
    return T.Compose([
        T.ToImage(),
        T.Resize(int(image_size * data.EVAL_RESIZE_RATIO), antialias=True),
        T.CenterCrop(image_size),
    ])


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW -> float, scaled and normalised as data.eval_transform does."""
    mean = torch.tensor(data.IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(data.IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


class _Augmenter:
    """webdataset map: (uint8 image, label, key) -> (17 augmented uint8 images, label, key)."""

    def __init__(self, augs: dict, seed: int):
        self.augs, self.seed = augs, seed

    def __call__(self, sample: tuple) -> tuple:
        image, label, key = sample
        return augment_all(image, key, self.augs, self.seed), label, key


def resolve_robustness(params: dict, source: str = "--params") -> tuple[dict, dict]:
    """Split the evaluation section into run-time options and the robustness subsection."""
    if not isinstance(params, dict):
        raise InputError(f"{source}: expected a JSON object, got {type(params).__name__}")
    params = dict(params)
    rob = params.pop("robustness", {}) or {}
    if not isinstance(rob, dict):
        raise InputError(f"{source}: field 'robustness' must be an object")
    unknown = sorted(set(rob) - set(ROBUSTNESS_DEFAULTS))
    if unknown:
        raise InputError(f"{source}: unknown field(s) {['robustness.' + u for u in unknown]}; "
                         f"known: {sorted(ROBUSTNESS_DEFAULTS)}")
    rob = {k: rob.get(k, v) for k, v in ROBUSTNESS_DEFAULTS.items()}
    if not isinstance(rob["seed"], int) or rob["seed"] < 0:
        raise InputError(f"{source}: field 'robustness.seed' must be a non-negative integer (got {rob['seed']!r})")
    if not isinstance(rob["p"], (int, float)) or not 0 <= rob["p"] <= 1:
        raise InputError(f"{source}: field 'robustness.p' must be in [0, 1] (got {rob['p']!r})")
    if rob["max_examples"] is not None and (not isinstance(rob["max_examples"], int) or rob["max_examples"] < 1):
        raise InputError(f"{source}: field 'robustness.max_examples' must be a positive integer or null")
    return resolve_params(params, source, defaults=EVAL_DEFAULTS), rob


def robustness(
    model_name: str,
    recipe: dict,
    checkpoint: str | Path,
    data_dir: str | Path,
    params: dict,
    out_dir: str | Path,
    dataset: str | None = None,
    seed: int | None = None,
) -> dict:
    """Accuracy under each of the 17 augmentations; writes robustness.json and
    robustness_predictions.parquet into ``out_dir`` and returns the JSON."""
    recipe = validate_recipe(recipe, model_name)
    params, rob = resolve_robustness(params)
    torch.set_num_threads(params["threads"])
    device = select_device(params["device"])
    model, ckpt = load_trained(checkpoint, model_name, recipe)
    classes = data.read_classes(data_dir)
    if len(classes) != ckpt["num_classes"]:
        raise InputError(f"{Path(data_dir) / 'classes.csv'}: {len(classes)} classes but {checkpoint} "
                         f"was trained with num_classes {ckpt['num_classes']}")
    model.to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)

    size = recipe["image_size"]
    augs = build_augmentations(size, rob["p"])
    n_aug = len(augs)
    counter = data.SkipCounter()
    shards = data.shard_paths(data_dir, "test")
    limit = rob["max_examples"]
    # max_examples: an even spread over the label-ordered test shards (all classes), not the first N
    subset = data.spread_keys(shards, limit) if limit is not None else None
    ds = data.make_dataset(shards, base_transform(size), counter=counter, num_classes=len(classes), keys=subset)
    ds = ds.map(_Augmenter(augs, rob["seed"]))
    # a loader batch holds batch_size images in all: batch_size // 17 examples x 17 versions
    per_batch = max(1, params["batch_size"] // n_aug)
    loader = data.make_loader(ds, per_batch, params["num_workers"], pin_memory=device.type == "cuda")

    preds, labels, keys = [], [], []
    with torch.no_grad():
        for images, target, key in loader:  # images: (B, 17, C, H, W) uint8
            b = images.shape[0]
            x = normalize(images.reshape(b * n_aug, *images.shape[2:]).to(device, non_blocking=True))
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, params["amp"]):
                logits = model(x)
            preds.append(logits.float().argmax(1).cpu().view(b, n_aug))
            labels.append(target)
            keys.extend(key)
    n = len(keys)
    if n == 0:
        raise InputError(f"{Path(data_dir) / 'test'}: no readable test samples")
    pred = torch.cat(preds)  # (n, 17)
    label = torch.cat(labels)
    correct = pred == label[:, None]
    top1 = {name: float(correct[:, i].float().mean()) for i, name in enumerate(augs)}

    names = list(augs)
    rows = pd.DataFrame({
        "augmentation": pd.Series([a for a in names for _ in range(n)], dtype="string"),
        "index": torch.arange(n).repeat(n_aug).numpy().astype("int64"),
        "label": label.repeat(n_aug).numpy().astype("int64"),
        "pred": pred.T.reshape(-1).numpy().astype("int64"),
        "key": pd.Series(keys * n_aug, dtype="string"),
    })
    out_dir = Path(out_dir)
    write_parquet(rows, out_dir / "robustness_predictions.parquet")
    result = {
        "model": model_name,
        "dataset": dataset if dataset is not None else Path(data_dir).name,
        "seed": int(seed) if seed is not None else ckpt.get("seed"),
        "n_test": n,
        "clean_top1": top1["Identity"],
        "augmentations": top1,
        "mean_top1": sum(top1.values()) / len(top1),
        "augmentation_seed": rob["seed"],
        "p": rob["p"],
        "image_size": size,
        "corrupt_samples_skipped": counter.count,
    }
    write_json(result, out_dir / "robustness.json")
    log.info("%s on %s: clean %.4f, mean over %d augmentations %.4f (n=%d)", model_name, result["dataset"],
             result["clean_top1"], n_aug, result["mean_top1"], n)
    return result


def _cmd_robustness(args: argparse.Namespace) -> int:
    robustness(args.model, parse_json(args.recipe, "--recipe"), args.checkpoint, args.data_dir,
               parse_json(args.params, "--params"), args.out_dir, dataset=args.dataset, seed=args.seed)
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("robustness", help="test accuracy under the paper's 17 test-time augmentations (Appendix A.3)")
    add_trained_model_args(p, "robustness.json")
    p.add_argument("--params", required=True,
                   help="JSON: the config's evaluation section (batch_size, ..., robustness: {seed, p, max_examples})")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=_cmd_robustness)
