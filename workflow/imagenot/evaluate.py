"""Test-set evaluation of a trained model: ``imagenot evaluate``.

Loads ``model.pt`` from ``imagenot train``, runs the test split with the eval transforms of
the recipe's image size, and writes ``predictions.parquet`` (one row per test image: key,
label, pred, correct, correct_top5, confidence) and ``metrics.json`` (top-1 with its exact
95% Clopper-Pearson interval, top-5, n_test).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd
import torch

from . import data
from .io import InputError, parse_json, write_json, write_parquet
from .models import build_model
from .train import MODEL_FORMAT, predict, resolve_params, select_device, validate_recipe

log = logging.getLogger(__name__)

# evaluation section: batch_size; device / threads / num_workers / amp may be added
EVAL_DEFAULTS = {"batch_size": 128, "device": "auto", "threads": 1, "num_workers": 0, "amp": True}
CONFIDENCE_LEVEL = 0.95
# subsections of the evaluation config section that other commands read (robustness.py)
EVAL_SUBSECTIONS = ("robustness",)


def load_trained(path: str | Path, model_name: str, recipe: dict) -> tuple[torch.nn.Module, dict]:
    """The model stored in ``model.pt``, checked against ``model_name`` and ``recipe``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(f"{path}: cannot load checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != MODEL_FORMAT:
        raise InputError(f"{path}: not a model.pt written by 'imagenot train' (field 'format')")
    if ckpt["arch"] != recipe["arch"]:
        raise InputError(f"{path}: field 'arch' is {ckpt['arch']!r} but the recipe of {model_name} says {recipe['arch']!r}")
    if ckpt["model"] != model_name:
        log.warning("%s: trained as model %r, evaluated as %r", path, ckpt["model"], model_name)
    def build():
        return build_model(recipe["arch"], ckpt["num_classes"], recipe["image_size"],
                           aux_logits=recipe["aux_loss_weight"] > 0, **recipe.get("arch_kwargs", {}))

    try:
        # skip the random initialisation (seconds for VGG's classifier): build on the meta
        # device and adopt the stored tensors
        with torch.device("meta"):
            model = build()
        model.load_state_dict(ckpt["state_dict"], assign=True)
        if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
            model = build()  # a non-persistent buffer: build for real
            model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise InputError(f"{path}: field 'state_dict' does not fit arch {recipe['arch']}: {e}") from e
    return model, ckpt


def clopper_pearson(k: int, n: int, level: float = CONFIDENCE_LEVEL) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a binomial proportion k / n."""
    from scipy.stats import binomtest  # imported here: scipy.stats takes ~1 s to import

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def evaluate(
    model_name: str,
    recipe: dict,
    checkpoint: str | Path,
    data_dir: str | Path,
    params: dict,
    out_dir: str | Path,
    dataset: str | None = None,
    seed: int | None = None,
) -> dict:
    recipe = validate_recipe(recipe, model_name)
    if isinstance(params, dict):  # evaluation.robustness configures `imagenot robustness`
        params = {k: v for k, v in params.items() if k not in EVAL_SUBSECTIONS}
    params = resolve_params(params, defaults=EVAL_DEFAULTS)
    torch.set_num_threads(params["threads"])
    device = select_device(params["device"])
    model, ckpt = load_trained(checkpoint, model_name, recipe)
    classes = data.read_classes(data_dir)
    if len(classes) != ckpt["num_classes"]:
        raise InputError(f"{Path(data_dir) / 'classes.csv'}: {len(classes)} classes but {checkpoint} "
                         f"was trained with num_classes {ckpt['num_classes']}")
    if ckpt.get("wnids") is not None and ckpt["wnids"] != classes["wnid"].tolist():
        raise InputError(f"{Path(data_dir) / 'classes.csv'}: column 'wnid' differs from the classes {checkpoint} was trained on")
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)

    counter = data.SkipCounter()
    ds = data.make_dataset(data.shard_paths(data_dir, "test"), data.eval_transform(recipe["image_size"]),
                           counter=counter, num_classes=len(classes))
    loader = data.make_loader(ds, params["batch_size"], params["num_workers"], pin_memory=device.type == "cuda")
    logits, labels, keys = predict(model, loader, device, params["amp"])
    n = len(labels)
    if n == 0:
        raise InputError(f"{Path(data_dir) / 'test'}: no readable test samples")
    probs = logits.softmax(1)
    confidence, pred = probs.max(1)
    k = min(5, logits.shape[1])
    top5 = logits.topk(k, dim=1).indices
    correct = pred == labels
    correct5 = (top5 == labels[:, None]).any(1)

    predictions = pd.DataFrame({
        "key": pd.Series(keys, dtype="string"),
        "label": labels.numpy().astype("int64"),
        "pred": pred.numpy().astype("int64"),
        "correct": correct.numpy(),
        "correct_top5": correct5.numpy(),
        "confidence": confidence.numpy().astype("float64"),
    })
    out_dir = Path(out_dir)
    write_parquet(predictions, out_dir / "predictions.parquet")
    n_correct = int(correct.sum())
    low, high = clopper_pearson(n_correct, n)
    metrics = {
        "model": model_name,
        "dataset": dataset if dataset is not None else Path(data_dir).name,
        "seed": int(seed) if seed is not None else ckpt.get("seed"),
        "top1": n_correct / n,
        "top1_low": low,
        "top1_high": high,
        "top5": int(correct5.sum()) / n,
        "n_test": n,
        "corrupt_samples_skipped": counter.count,
    }
    write_json(metrics, out_dir / "metrics.json")
    log.info("%s on %s: top1 %.4f [%.4f, %.4f] top5 %.4f (n=%d)", model_name, metrics["dataset"],
             metrics["top1"], low, high, metrics["top5"], n)
    return metrics


def _cmd_evaluate(args: argparse.Namespace) -> int:
    evaluate(args.model, parse_json(args.recipe, "--recipe"), args.checkpoint, args.data_dir,
             parse_json(args.params, "--params"), args.out_dir, dataset=args.dataset, seed=args.seed)
    return 0


def add_trained_model_args(parser: argparse.ArgumentParser, output_name: str, *, data_dir: bool = True) -> None:
    """The options of a command that reads a model trained by ``imagenot train``: --model,
    --recipe, --checkpoint, --data-dir (its test data; left out with ``data_dir=False``), and
    --dataset / --seed, the labels recorded in ``output_name``."""
    parser.add_argument("--model", required=True, help="model name (a key of the config's models section)")
    parser.add_argument("--recipe", required=True, help="JSON recipe the model was trained with")
    parser.add_argument("--checkpoint", required=True, help="model.pt written by imagenot train")
    if data_dir:
        parser.add_argument("--data-dir", required=True, help="dataset directory with classes.csv and test/ shards")
    # without a data dir the command works on another dataset: these name the pretraining run
    pre, default = ("", " (default: the data dir's name)") if data_dir else ("pretraining ", "")
    parser.add_argument("--dataset", default=None, help=f"{pre}dataset name for {output_name}{default}")
    parser.add_argument("--seed", type=int, default=None,
                        help=f"{pre or 'training '}seed for {output_name} (default: from model.pt)")


def add_commands(sub) -> None:
    p = sub.add_parser("evaluate", help="test-set top-1 / top-5 and per-example predictions of a trained model")
    add_trained_model_args(p, "metrics.json")
    p.add_argument("--params", required=True, help="JSON: the config's evaluation section (batch_size)")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=_cmd_evaluate)
