"""Robustness to the paper's 17 test-time augmentations (Appendix A.3), on a model trained
for real on the tiny colour-pattern dataset."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from torchvision import tv_tensors

from imagenot import cli
from imagenot import evaluate as E
from imagenot import robustness as R
from imagenot.io import InputError

from conftest import SMALL_TRAINED_RECIPE as RECIPE_SMALL

EVAL = {"batch_size": 34, "device": "cpu", "threads": 1, "amp": False}

PAPER_A3 = ["Identity", "Gaussian Blur", "Adjust Sharpness", "Affine", "ColorJitter", "Contrast", "Equalize",
            "Grayscale", "Horizontal Flip", "Invert", "Perspective", "Posterize", "Resized Crop", "Rotation",
            "Sharpness", "Solarize", "Vertical Flip"]


def test_the_17_augmentations_are_the_papers():
    assert list(R.AUGMENTATIONS) == PAPER_A3
    assert list(R.build_augmentations(32)) == PAPER_A3


@pytest.mark.parametrize("size", [32, 64])
def test_each_augmentation_changes_images_and_keeps_shape(size):
    g = torch.Generator().manual_seed(0)
    # low-contrast noise (40..199): autocontrast and equalize have something to do
    images = [tv_tensors.Image(torch.randint(40, 200, (3, size, size), dtype=torch.uint8, generator=g)) for _ in range(4)]
    augs = R.build_augmentations(size, p=1.0)
    for i, img in enumerate(images):
        out = R.augment_all(img, f"key{i}", augs, seed=0)
        assert out.shape == (17, 3, size, size) and out.dtype == torch.uint8
        assert torch.equal(out[0], img.as_subclass(torch.Tensor))  # Identity
        for j, name in enumerate(PAPER_A3[1:], start=1):
            assert not torch.equal(out[j], img.as_subclass(torch.Tensor)), f"{name} left image {i} unchanged"
    # with the default p = 0.5 the apply-or-not ones leave some images as they are, and the
    # per-example seeds make that choice reproducible
    augs = R.build_augmentations(size, p=0.5)
    invert = PAPER_A3.index("Invert")
    changed = [not torch.equal(R.augment_all(images[0], f"k{i}", augs, 0)[invert], images[0].as_subclass(torch.Tensor))
               for i in range(16)]
    assert 0 < sum(changed) < 16
    again = [not torch.equal(R.augment_all(images[0], f"k{i}", augs, 0)[invert], images[0].as_subclass(torch.Tensor))
             for i in range(16)]
    assert changed == again


def test_augmentations_depend_on_seed_and_key_only():
    img = tv_tensors.Image(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)))
    augs = R.build_augmentations(32, p=1.0)
    torch.manual_seed(123)
    a = R.augment_all(img, "x", augs, seed=7)
    after = torch.rand(1)
    torch.manual_seed(999)  # a different global RNG state does not matter
    b = R.augment_all(img, "x", augs, seed=7)
    assert torch.equal(a, b)
    torch.manual_seed(123)
    R.augment_all(img, "x", augs, seed=7)
    assert torch.equal(torch.rand(1), after)  # and the caller's RNG is left as it was
    c = R.augment_all(img, "x", augs, seed=8)
    d = R.augment_all(img, "y", augs, seed=7)
    rotation = PAPER_A3.index("Rotation")
    assert not torch.equal(a[rotation], c[rotation]) and not torch.equal(a[rotation], d[rotation])


def test_robustness_contract_and_determinism(small_trained, tmp_path):
    ds, ckpt = small_trained
    first = R.robustness("mobilenet_v3_small", RECIPE_SMALL, ckpt, ds, EVAL, tmp_path / "a", dataset="toy", seed=0)
    # a different loader batch size: same examples, same random parameters, same predictions
    second = R.robustness("mobilenet_v3_small", RECIPE_SMALL, ckpt, ds, dict(EVAL, batch_size=17), tmp_path / "b",
                          dataset="toy", seed=0)
    on_disk = json.loads((tmp_path / "a" / "robustness.json").read_text())
    assert on_disk == first
    for key in ("model", "dataset", "seed", "n_test", "clean_top1", "augmentations", "mean_top1"):
        assert key in on_disk
    assert (first["model"], first["dataset"], first["seed"], first["n_test"]) == ("mobilenet_v3_small", "toy", 0, 20)
    assert list(first["augmentations"]) == PAPER_A3
    assert all(0.0 <= v <= 1.0 for v in first["augmentations"].values())
    assert first["clean_top1"] == first["augmentations"]["Identity"]
    assert first["mean_top1"] == pytest.approx(sum(first["augmentations"].values()) / 17)
    assert first["corrupt_samples_skipped"] == 1
    pa = pd.read_parquet(tmp_path / "a" / "robustness_predictions.parquet")
    pb = pd.read_parquet(tmp_path / "b" / "robustness_predictions.parquet")
    pd.testing.assert_frame_equal(pa, pb)
    assert first == second
    assert list(pa.columns[:4]) == ["augmentation", "index", "label", "pred"]
    assert len(pa) == 17 * 20
    for name, group in pa.groupby("augmentation"):
        assert sorted(group["index"]) == list(range(20))
        assert (group["pred"] == group["label"]).mean() == pytest.approx(first["augmentations"][name])
    # the same test examples for every augmentation
    assert pa.groupby("augmentation")["key"].apply(lambda k: tuple(sorted(k))).nunique() == 1

    # Identity is exactly the test accuracy of imagenot evaluate on the same examples
    metrics = E.evaluate("mobilenet_v3_small", RECIPE_SMALL, ckpt, ds, dict(EVAL, robustness={"p": 0.3}), tmp_path / "eval")
    assert first["clean_top1"] == pytest.approx(metrics["top1"])
    evp = pd.read_parquet(tmp_path / "eval" / "predictions.parquet")
    ident = pa[pa["augmentation"] == "Identity"].sort_values("index")
    assert ident["key"].tolist() == evp["key"].tolist() and ident["pred"].tolist() == evp["pred"].tolist()


def test_max_examples_and_cli(small_trained, tmp_path):
    ds, ckpt = small_trained
    params = dict(EVAL, robustness={"seed": 3, "p": 0.5, "max_examples": 7})
    rc = cli.main(["robustness", "--model", "mobilenet_v3_small", "--recipe", json.dumps(RECIPE_SMALL),
                   "--checkpoint", str(ckpt), "--data-dir", str(ds), "--params", json.dumps(params),
                   "--out-dir", str(tmp_path), "--dataset", "imagenot", "--seed", "0"])
    assert rc == 0
    out = json.loads((tmp_path / "robustness.json").read_text())
    # 7 keys spread over the test shard; a corrupt one among them is skipped and counted
    assert out["n_test"] + out["corrupt_samples_skipped"] == 7 and out["n_test"] >= 6
    assert out["augmentation_seed"] == 3 and out["dataset"] == "imagenot"
    assert len(pd.read_parquet(tmp_path / "robustness_predictions.parquet")) == out["n_test"] * 17


def test_max_examples_spread_over_label_ordered_test_shards(small_trained, tmp_path):
    # split writes test shards sorted by label: max_examples must not mean "the first class"
    import shutil

    import webdataset as wds

    ds, ckpt = small_trained
    copy = tmp_path / "ds"
    shutil.copytree(ds, copy)
    samples = sorted(wds.WebDataset(str(ds / "test" / "00000.tar"), shardshuffle=False, empty_check=False),
                     key=lambda s: s["__key__"])
    with wds.TarWriter(str(copy / "test" / "00000.tar")) as sink:
        for s in samples:
            sink.write({k: v for k, v in s.items() if not k.startswith("__") or k == "__key__"})
    params = dict(EVAL, robustness={"seed": 0, "p": 0.5, "max_examples": 8})
    R.robustness("mobilenet_v3_small", RECIPE_SMALL, ckpt, copy, params, tmp_path / "out")
    rows = pd.read_parquet(tmp_path / "out" / "robustness_predictions.parquet")
    ident = rows[rows["augmentation"] == "Identity"]
    assert len(ident) == 8
    assert sorted(ident["label"].unique()) == [0, 1, 2, 3]


def test_bad_input_names_file_or_field(small_trained, tmp_path, capsys):
    ds, ckpt = small_trained
    with pytest.raises(InputError, match="nope.pt: checkpoint not found"):
        R.robustness("mobilenet_v3_small", RECIPE_SMALL, tmp_path / "nope.pt", ds, EVAL, tmp_path)
    with pytest.raises(InputError, match=r"'robustness\.p'"):
        R.robustness("mobilenet_v3_small", RECIPE_SMALL, ckpt, ds, dict(EVAL, robustness={"p": 2}), tmp_path)
    with pytest.raises(InputError, match=r"robustness\.sead"):
        R.robustness("mobilenet_v3_small", RECIPE_SMALL, ckpt, ds, dict(EVAL, robustness={"sead": 1}), tmp_path)
    rc = cli.main(["robustness", "--model", "mobilenet_v3_small", "--recipe", json.dumps(RECIPE_SMALL),
                   "--checkpoint", str(tmp_path / "missing.pt"), "--data-dir", str(ds), "--params", "{}",
                   "--out-dir", str(tmp_path)])
    assert rc == 2 and "missing.pt" in capsys.readouterr().err
