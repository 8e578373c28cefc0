"""Config validation: the schema and the semantic checks name the offending key."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from imagenot import config as icfg
from imagenot.io import InputError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo():
    return yaml.safe_load((ROOT / "config/config.yaml").read_text())


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_configs_are_valid(name):
    cfg = icfg.load(ROOT / "config" / name)
    assert cfg["analysis"]["baseline_model"] in cfg["models"]


def test_defaults_are_filled(demo):
    cfg = copy.deepcopy(demo)
    del cfg["download"]["retries"]
    del cfg["evaluation"]
    icfg.validate(cfg)
    assert cfg["download"]["retries"] == 1
    assert cfg["evaluation"]["batch_size"] == 128


def test_unknown_key_is_named(demo):
    cfg = copy.deepcopy(demo)
    cfg["curation"]["text_similarity"]["treshold"] = 0.5
    with pytest.raises(InputError, match=r"curation\.text_similarity\.treshold"):
        icfg.validate(cfg)


def test_unknown_recipe_key_is_named(demo):
    cfg = copy.deepcopy(demo)
    cfg["models"]["resnet18"]["learning_rate"] = 0.1
    with pytest.raises(InputError, match=r"models\.resnet18\.learning_rate"):
        icfg.validate(cfg)


def test_wrong_type_is_named(demo):
    cfg = copy.deepcopy(demo)
    cfg["training"]["recipe_defaults"]["epochs"] = "six"
    with pytest.raises(InputError, match=r"training\.recipe_defaults\.epochs: 'six' is not of type 'integer'"):
        icfg.validate(cfg)


def test_missing_required_key_is_named(demo):
    cfg = copy.deepcopy(demo)
    del cfg["curation"]["n_classes"]
    with pytest.raises(InputError, match=r"curation\.n_classes"):
        icfg.validate(cfg)


def test_split_fractions_must_sum_to_one(demo):
    cfg = copy.deepcopy(demo)
    cfg["split"]["test"] = 0.5
    with pytest.raises(InputError, match=r"split\.train \+ split\.val \+ split\.test"):
        icfg.validate(cfg)


def test_baseline_model_must_be_configured(demo):
    cfg = copy.deepcopy(demo)
    cfg["analysis"]["baseline_model"] = "lenet"
    with pytest.raises(InputError, match="analysis.baseline_model 'lenet'"):
        icfg.validate(cfg)


def test_merged_recipe_overrides_defaults(demo):
    cfg = icfg.validate(copy.deepcopy(demo))
    r = icfg.merged_recipe(cfg, "convnext_tiny")
    assert r["optimizer"] == "adamw"  # the model's own value
    assert r["batch_size"] == cfg["training"]["recipe_defaults"]["batch_size"]  # the default
    with pytest.raises(InputError, match="unknown model 'lenet'"):
        icfg.merged_recipe(cfg, "lenet")


def test_paper_recipes_follow_appendix_a1():
    cfg = icfg.load(ROOT / "config/paper.yaml")
    vit = icfg.merged_recipe(cfg, "vit_b_16")
    assert (vit["optimizer"], vit["lr"], vit["weight_decay"], vit["batch_size"]) == ("adamw", 0.001, 0.3, 512)
    assert (vit["label_smoothing"], vit["clip_grad_norm"], vit["ra_reps"], vit["ema_decay"]) == (0.11, 1.0, 3, 0.99998)
    mob = icfg.merged_recipe(cfg, "mobilenet_v3_large")
    assert (mob["optimizer"], mob["lr"], mob["lr_step_size"], mob["lr_gamma"], mob["epochs"]) == ("rmsprop", 0.064, 2, 0.973, 600)
    assert icfg.merged_recipe(cfg, "inception_v3")["aux_loss_weight"] == 0.4
    assert len(cfg["models"]) == 9 and cfg["training"]["seeds"] == [0, 1, 2]


def test_cli_reports_bad_config(tmp_path, demo, capsys):
    from imagenot.cli import main

    cfg = copy.deepcopy(demo)
    cfg["download"]["threads"] = -3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    assert main(["validate-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "download.threads" in err


def test_cli_imports_only_the_called_stage():
    """`imagenot validate-config` must not pay for importing torch (every job calls imagenot)."""
    code = (
        "import sys; from imagenot import cli; "
        f"rc = cli.main(['validate-config', {str(ROOT / 'config/config.yaml')!r}]); "
        "assert rc == 0; assert 'torch' not in sys.modules, 'torch imported'"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("name", ["config/config.yaml", "config/paper.yaml", "tests/configs/tiny.yaml"])
def test_every_configured_recipe_is_complete_for_training(name):
    """A config may leave recipe fields out; what reaches `imagenot train` is complete."""
    from imagenot.train import validate_recipe

    cfg = icfg.load(ROOT / name)
    for model in cfg["models"]:
        validate_recipe(icfg.merged_recipe(cfg, model), model)
