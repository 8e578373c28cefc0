"""Loading and validating the workflow configuration.

The Snakefile validates with ``snakemake.utils.validate`` against the same schema; this
module gives the package (and tests) the same check without Snakemake, with defaults filled
in and errors that name the offending key by its path.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .io import InputError

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _extend_with_defaults(validator_class):
    """A validator that fills in ``default`` values while validating (as snakemake does)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, subschema in properties.items():
                if "default" in subschema and prop not in instance:
                    instance[prop] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _extend_with_defaults(jsonschema.Draft202012Validator)


def key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties":
        # the offending key is named in the message, not in the path
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        parts = parts + extra[:1]
    elif error.validator == "required":
        missing = [m for m in error.validator_value if m not in error.instance]
        parts = parts + missing[:1]
    return ".".join(parts) or "<top level>"


def validate(config: dict, source: str = "config") -> dict:
    """Validate ``config`` in place (defaults filled); raise InputError naming the key."""
    errors = sorted(_Validator(load_schema()).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{source}: invalid configuration:"]
        for e in errors:
            lines.append(f"  {key_path(e)}: {e.message}")
        raise InputError("\n".join(lines))
    _check_semantics(config, source)
    return config


def _check_semantics(config: dict, source: str) -> None:
    split = config["split"]
    total = split["train"] + split["val"] + split["test"]
    if abs(total - 1.0) > 1e-6:
        raise InputError(f"{source}: split.train + split.val + split.test must be 1 (got {total:g})")
    baseline = config["analysis"]["baseline_model"]
    if baseline not in config["models"]:
        raise InputError(
            f"{source}: analysis.baseline_model '{baseline}' is not one of models: {sorted(config['models'])}"
        )
    for name, ds in config["datasets"].items():
        if ds["source"] == "webdataset" and not ds.get("path"):
            raise InputError(f"{source}: datasets.{name}.path is required when source is webdataset")
    curated = [name for name, ds in config["datasets"].items() if ds["source"] == "curated"]
    if len(curated) > 1:
        raise InputError(f"{source}: datasets: at most one dataset can have source curated (got {curated})")
    demo = config["corpus"].get("demo")
    if demo is not None:
        names = {s["name"]: s for s in config["corpus"]["subsets"]}
        if "demo" not in names or names["demo"]["n_parts"] != demo["n_parts"]:
            raise InputError(
                f"{source}: corpus.demo needs a corpus.subsets entry named 'demo' with n_parts {demo['n_parts']}"
            )
    for name in config["models"]:
        recipe = merged_recipe(config, name)
        for key in ("arch", "reference_weights"):
            if key not in recipe:
                raise InputError(f"{source}: models.{name}.{key} is required")


def load(path: str | Path) -> dict:
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: configuration file not found") from None
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: the configuration must be a mapping")
    return validate(config, str(path))


# Recipe fields a config may leave out, at the defaults of torchvision's
# references/classification/train.py (which the paper's recipes are written against): no
# regularisation beyond weight decay, no warmup, no EMA, no clipping. The recipe's core
# (arch, image_size, epochs, batch_size, optimizer, lr, lr_scheduler) has no default.
RECIPE_FALLBACKS = {
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "lr_step_size": 30,
    "lr_gamma": 0.1,
    "lr_warmup_epochs": 0,
    "lr_warmup_decay": 0.01,
    "lr_min": 0.0,
    "label_smoothing": 0.0,
    "mixup_alpha": 0.0,
    "cutmix_alpha": 0.0,
    "ra_reps": 1,
    "ema_decay": None,
    "ema_steps": 32,
    "clip_grad_norm": None,
    "aux_loss_weight": 0.0,
    "bn_momentum": None,
}


def merged_recipe(config: dict, model: str) -> dict:
    """The training recipe of ``model``: RECIPE_FALLBACKS, updated by
    training.recipe_defaults, updated by models[model]."""
    if model not in config["models"]:
        raise InputError(f"unknown model '{model}'; configured models: {sorted(config['models'])}")
    recipe = copy.deepcopy(RECIPE_FALLBACKS)
    recipe.update(copy.deepcopy(config["training"].get("recipe_defaults", {})))
    recipe.update(copy.deepcopy(config["models"][model]))
    recipe.setdefault("display_name", model)
    recipe.setdefault("arch_kwargs", {})
    return recipe


def part_ids(subset: dict) -> list[str]:
    """Zero-padded part numbers of a corpus subset: '00000', '00001', ..."""
    return [f"{i:05d}" for i in range(subset["n_parts"])]


def _cmd_validate(args) -> int:
    config = load(args.config)
    if args.print:
        print(json.dumps(config, indent=2, sort_keys=True))
    else:
        print(f"{args.config}: valid")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("validate-config", help="validate a workflow config file against the schema")
    p.add_argument("config", help="YAML config file")
    p.add_argument("--print", action="store_true", help="print the config with defaults filled in")
    p.set_defaults(func=_cmd_validate)
