"""Model registry and reference accuracies from torchvision's weight metadata."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from imagenot import models
from imagenot.io import InputError


def test_unknown_arch_lists_known_ones():
    with pytest.raises(InputError) as e:
        models.build_model("resnet9000", 10, 64)
    msg = str(e.value)
    assert "resnet9000" in msg and "resnet152" in msg and "vit_b_16" in msg and "convnext_tiny" in msg


def test_known_archs_are_classification_builders():
    archs = models.known_archs()
    assert {"alexnet", "inception_v3", "efficientnet_v2_l", "vit_b_16"} <= set(archs)
    assert not any(a.startswith(("fasterrcnn", "deeplab", "r3d")) for a in archs)


@pytest.mark.parametrize("arch,size", [("resnet18", 32), ("mobilenet_v3_small", 32), ("vit_b_16", 32)])
def test_build_forward_shapes(arch, size):
    torch.manual_seed(0)
    m = models.build_model(arch, 7, size).eval()
    with torch.no_grad():
        assert m(torch.randn(2, 3, size, size)).shape == (2, 7)


def test_vit_gets_image_size_and_checks_patch():
    m = models.build_model("vit_b_16", 3, 48)
    assert m.image_size == 48
    with pytest.raises(InputError, match="patch size 16"):
        models.build_model("vit_b_16", 3, 40)


def test_inception_aux_at_small_size():
    torch.manual_seed(0)
    m = models.build_model("inception_v3", 5, 80, aux_logits=True)
    m.train()
    out = m(torch.randn(2, 3, 80, 80))
    assert out.logits.shape == (2, 5) and out.aux_logits.shape == (2, 5)
    m.eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 80, 80)).shape == (1, 5)
    # without the auxiliary head the state dict is torchvision's plain one
    plain = models.build_model("inception_v3", 5, 80, aux_logits=False)
    assert not any(k.startswith("AuxLogits") for k in plain.state_dict())
    # parameter names match torchvision's, so checkpoints stay interchangeable
    import torchvision

    ref = torchvision.models.inception_v3(weights=None, num_classes=5, aux_logits=True, init_weights=False)
    assert set(ref.state_dict()) == set(m.state_dict())


def test_aux_on_model_without_aux_head_is_an_error():
    with pytest.raises(InputError, match="aux_loss_weight"):
        models.build_model("resnet18", 3, 32, aux_logits=True)


def test_reference_accuracy_from_metadata():
    assert models.reference_accuracy("ResNet152_Weights.IMAGENET1K_V1") == pytest.approx(0.78312)
    assert models.reference_accuracy("AlexNet_Weights.IMAGENET1K_V1") == pytest.approx(0.56522)
    with pytest.raises(InputError, match="NoSuch_Weights"):
        models.reference_accuracy("NoSuch_Weights.IMAGENET1K_V1")


def test_reference_command_writes_table(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    models.add_commands(sub)
    spec = {
        "resnet152": {"display_name": "ResNet-152", "arch": "resnet152",
                      "reference_weights": "ResNet152_Weights.IMAGENET1K_V1"},
        "vit_b_16": {"arch": "vit_b_16", "reference_weights": "ViT_B_16_Weights.IMAGENET1K_V1"},
    }
    out = tmp_path / "ref.csv"
    args = parser.parse_args(["reference", "--models", json.dumps(spec), "--out", str(out)])
    assert args.func(args) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == ["model", "display_name", "reference", "top1"]
    assert df.set_index("model").loc["resnet152", "top1"] == pytest.approx(0.78312)
    assert df.set_index("model").loc["vit_b_16", "display_name"] == "vit_b_16"
    assert 0.8 < df.set_index("model").loc["vit_b_16", "top1"] < 0.82

    bad = {"x": {"arch": "resnet18"}}
    args = parser.parse_args(["reference", "--models", json.dumps(bad), "--out", str(out)])
    with pytest.raises(InputError, match=r"models\.x\.reference_weights"):
        args.func(args)

    args = parser.parse_args(["models"])
    assert args.func(args) == 0
    assert "resnet152" in capsys.readouterr().out.split()


def test_bn_momentum_overrides_every_batchnorm_and_default_keeps_the_architectures():
    def momenta(m):
        return {x.momentum for x in m.modules() if isinstance(x, torch.nn.modules.batchnorm._BatchNorm)}

    assert momenta(models.build_model("mobilenet_v3_small", 4, 32)) == {0.01}
    assert momenta(models.build_model("mobilenet_v3_small", 4, 32, bn_momentum=0.1)) == {0.1}
    assert momenta(models.build_model("resnet18", 4, 32, bn_momentum=0.2)) == {0.2}
