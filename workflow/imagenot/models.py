"""Model registry: torchvision classification architectures built from scratch.

Every model of the study is a torchvision builder called with ``weights=None`` (random
initialisation); its reference accuracy is the ImageNet-1k acc@1 that torchvision records
in the metadata of the matching weights enum entry (``ResNet152_Weights.IMAGENET1K_V1``...),
read at run time and never typed in.

Commands: ``imagenot models`` (list the architectures) and
``imagenot reference --models JSON --out CSV`` (the reference accuracy table).
"""

from __future__ import annotations

import argparse
import logging

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from .io import InputError, parse_json, write_csv

log = logging.getLogger(__name__)

# builders whose input resolution is part of the architecture (position embeddings)
_IMAGE_SIZE_FAMILIES = ("vit_",)


def known_archs() -> list[str]:
    """Names of torchvision's image-classification builders (detection etc. excluded)."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


class _SmallInputInceptionAux(nn.Module):
    """torchvision's InceptionAux with a pooling step that also works below 299 px.

    The original head average-pools the 17x17 Mixed_6e map with a 5x5/3 window to 5x5 and
    then applies a 5x5 convolution, so it needs inputs of about 299 px. For smaller maps we
    pool (or replicate) adaptively to the same 5x5 grid; parameters and the 299 px path are
    unchanged, so state dicts stay interchangeable with torchvision's.
    """

    def __init__(self, aux: nn.Module):
        super().__init__()
        self.conv0, self.conv1, self.fc = aux.conv0, aux.conv1, aux.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) >= 17:
            x = F.avg_pool2d(x, kernel_size=5, stride=3)
        else:
            x = F.adaptive_avg_pool2d(x, (5, 5))
        x = self.conv1(self.conv0(x))
        x = torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)
        return self.fc(x)


def build_model(
    arch: str,
    num_classes: int,
    image_size: int,
    aux_logits: bool = False,
    bn_momentum: float | None = None,
    **arch_kwargs,
) -> nn.Module:
    """Build ``arch`` from torchvision with random weights and ``num_classes`` outputs.

    ``vit_*`` builders get ``image_size`` (their position embeddings depend on it);
    ``inception_v3`` gets ``aux_logits`` (true when the recipe's aux_loss_weight > 0) and
    ``init_weights=True``. ``arch_kwargs`` are passed to the builder unchanged.
    ``bn_momentum`` (when given) replaces the momentum of every BatchNorm layer's running
    statistics: MobileNetV3 uses 0.01, which needs thousands of steps before its evaluation-
    mode statistics are usable, far more than a short run has.
    """
    archs = known_archs()
    if arch not in archs:
        raise InputError(f"unknown arch '{arch}'; known torchvision architectures: {', '.join(archs)}")
    kwargs = dict(arch_kwargs)
    kwargs["num_classes"] = int(num_classes)
    if arch.startswith(_IMAGE_SIZE_FAMILIES):
        kwargs.setdefault("image_size", int(image_size))
        patch = int(arch.split("_")[-1]) if arch.split("_")[-1].isdigit() else None
        if patch and kwargs["image_size"] % patch:
            raise InputError(f"arch '{arch}': image_size {kwargs['image_size']} is not divisible by the patch size {patch}")
    if arch == "inception_v3":
        kwargs.setdefault("aux_logits", bool(aux_logits))
        kwargs.setdefault("init_weights", True)
        if image_size < 75:
            raise InputError(f"arch 'inception_v3' needs image_size >= 75 (got {image_size})")
    elif arch == "googlenet":
        kwargs.setdefault("aux_logits", bool(aux_logits))
        kwargs.setdefault("init_weights", True)
    elif aux_logits:
        raise InputError(f"arch '{arch}' has no auxiliary classifier; set aux_loss_weight to 0")
    try:
        model = torchvision.models.get_model(arch, weights=None, **kwargs)
    except TypeError as e:
        raise InputError(f"arch '{arch}': bad arch_kwargs {sorted(arch_kwargs)}: {e}") from e
    if arch == "inception_v3" and getattr(model, "AuxLogits", None) is not None:
        model.AuxLogits = _SmallInputInceptionAux(model.AuxLogits)
    if bn_momentum is not None:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = float(bn_momentum)
    return model


def reference_accuracy(weights_name: str) -> float:
    """ImageNet-1k top-1 (fraction) from torchvision's metadata for ``weights_name``."""
    try:
        weights = torchvision.models.get_weight(weights_name)
    except (ValueError, KeyError, AttributeError) as e:
        raise InputError(f"unknown torchvision weights '{weights_name}': {e}") from e
    try:
        acc = weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    except KeyError as e:
        raise InputError(f"torchvision weights '{weights_name}' have no ImageNet-1K acc@1 metadata") from e
    return float(acc) / 100.0


def reference_table(models: dict):
    """One row per configured model: model, display_name, reference, top1."""
    import pandas as pd

    rows = []
    for name, recipe in models.items():
        if "reference_weights" not in recipe:
            raise InputError(f"models.{name}.reference_weights: missing (needed for the reference accuracy)")
        try:
            top1 = reference_accuracy(recipe["reference_weights"])
        except InputError as e:
            raise InputError(f"models.{name}.reference_weights: {e}") from e
        rows.append(
            {
                "model": name,
                "display_name": recipe.get("display_name", name),
                "reference": recipe["reference_weights"],
                "top1": top1,
            }
        )
    return pd.DataFrame(rows, columns=["model", "display_name", "reference", "top1"])


def _cmd_models(args: argparse.Namespace) -> int:
    for arch in known_archs():
        print(arch)
    return 0


def _cmd_reference(args: argparse.Namespace) -> int:
    models = parse_json(args.models, "--models")
    if not isinstance(models, dict) or not models:
        raise InputError("--models: expected a JSON object {name: recipe} with at least one model")
    table = reference_table(models)
    write_csv(table, args.out)
    log.info("wrote %d reference accuracies to %s", len(table), args.out)
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("models", help="list the torchvision architectures that can be trained")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("reference", help="ImageNet-1k reference accuracies from torchvision weight metadata")
    p.add_argument("--models", required=True, help="JSON object of the config's models section")
    p.add_argument("--out", required=True, help="output CSV: model, display_name, reference, top1")
    p.set_defaults(func=_cmd_reference)
