"""Dataset directory reading: shards, decoding, corrupt samples, transforms.

``make_dataset_dir`` (used by the train / evaluate tests too) writes a tiny real dataset:
JPEG images of procedurally drawn patterns, one dominant colour per class, in WebDataset
shards laid out as the split stage writes them.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import webdataset as wds
from PIL import Image, ImageDraw

from imagenot import data
from imagenot.io import InputError

COLOURS = [(220, 40, 40), (40, 200, 60), (40, 70, 220), (230, 210, 40), (200, 60, 200), (40, 200, 210),
           (250, 140, 20), (120, 70, 30), (245, 245, 245), (15, 15, 15)]


def pattern_image(label: int, rng: np.random.Generator, size: int = 40) -> Image.Image:
    """A noisy background in a random grey plus a large blob in the class colour."""
    grey = int(rng.integers(60, 180))
    arr = np.clip(rng.normal(grey, 25, (size, size, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img)
    colour = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in COLOURS[label])
    r = int(rng.integers(size // 4, size // 2))
    cx, cy = (int(v) for v in rng.integers(r // 2, size - r // 2, 2))
    shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
    shape([cx - r, cy - r, cx + r, cy + r], fill=colour)
    return img


def jpeg_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_dataset_dir(
    root: Path,
    n_classes: int = 4,
    per_class: dict | None = None,
    size: int = 40,
    seed: int = 0,
    corrupt: dict | None = None,
    shards_per_split: int = 1,
) -> Path:
    """Write classes.csv and train/ val/ test/ shards; ``corrupt`` = {split: n bad samples}."""
    per_class = per_class or {"train": 16, "val": 6, "test": 6}
    corrupt = corrupt or {}
    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({
        "label": range(n_classes),
        "wnid": [f"n{i:08d}" for i in range(n_classes)],
        "name": [f"class{i}" for i in range(n_classes)],
    }).to_csv(root / "classes.csv", index=False)
    for split, n in per_class.items():
        (root / split).mkdir(exist_ok=True)
        samples = []
        for label in range(n_classes):
            for i in range(n):
                key = f"{split}{label:02d}{i:04d}"
                samples.append({"__key__": key, "jpg": jpeg_bytes(pattern_image(label, rng, size)),
                                "cls": str(label), "json": json.dumps({"key": key, "label": label})})
        for i in range(corrupt.get(split, 0)):
            samples.append({"__key__": f"{split}bad{i:04d}", "jpg": b"\xff\xd8\xff not a jpeg",
                            "cls": "0", "json": "{}"})
        order = rng.permutation(len(samples))
        chunks = np.array_split(order, shards_per_split)
        for s, chunk in enumerate(chunks):
            with wds.TarWriter(str(root / split / f"{s:05d}.tar")) as sink:
                for j in chunk:
                    sink.write(samples[j])
    return root


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return make_dataset_dir(tmp_path_factory.mktemp("ds"), corrupt={"train": 2}, shards_per_split=2)


def test_read_classes_and_shards(dataset_dir):
    classes = data.read_classes(dataset_dir)
    assert classes["label"].tolist() == [0, 1, 2, 3]
    assert len(data.shard_paths(dataset_dir, "train")) == 2
    assert data.count_samples(data.shard_paths(dataset_dir, "train")) == 4 * 16 + 2


def test_bad_classes_csv_names_file_and_column(tmp_path):
    (tmp_path / "classes.csv").write_text("label,name\n0,a\n")
    with pytest.raises(InputError, match=r"classes.csv.*'wnid'"):
        data.read_classes(tmp_path)
    (tmp_path / "classes.csv").write_text("label,wnid,name\n0,n00000001,a\n2,n00000002,b\n")
    with pytest.raises(InputError, match=r"classes.csv.*'label'"):
        data.read_classes(tmp_path)


def test_missing_split_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="val"):
        data.shard_paths(tmp_path, "val")


def test_corrupt_samples_are_skipped_and_counted(dataset_dir):
    counter = data.SkipCounter()
    ds = data.make_dataset(data.shard_paths(dataset_dir, "train"), data.eval_transform(32),
                           counter=counter, num_classes=4)
    samples = list(ds)
    assert len(samples) == 64
    assert counter.count == 2
    x, y, key = samples[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert isinstance(y, int) and 0 <= y < 4
    assert isinstance(key, str) and key.startswith("train") and "bad" not in key


def test_label_outside_classes_is_an_input_error(tmp_path):
    root = make_dataset_dir(tmp_path, n_classes=2, per_class={"train": 2})
    with wds.TarWriter(str(root / "train" / "00001.tar")) as sink:
        sink.write({"__key__": "oops", "jpg": jpeg_bytes(pattern_image(0, np.random.default_rng(0))), "cls": "7"})
    ds = data.make_dataset(data.shard_paths(root, "train"), data.eval_transform(32),
                           counter=data.SkipCounter(), num_classes=2)
    with pytest.raises(InputError, match=r"oops\.cls: label 7"):
        list(ds)


def test_shuffle_is_seeded(dataset_dir):
    def keys(seed):
        ds = data.make_dataset(data.shard_paths(dataset_dir, "train"), data.eval_transform(16),
                               counter=data.SkipCounter(), shuffle=True, seed=seed)
        return [k for _, _, k in ds]

    a, b, c = keys(1), keys(1), keys(2)
    assert a == b
    assert a != c and sorted(a) == sorted(c)


def test_repeated_augmentation_keeps_epoch_length(dataset_dir):
    torch.manual_seed(0)
    ds = data.make_dataset(data.shard_paths(dataset_dir, "train"), data.train_transform(24),
                           counter=data.SkipCounter(), shuffle=True, seed=0, repeats=3, limit=64)
    samples = list(ds)
    assert len(samples) == 64
    keys = [k for _, _, k in samples]
    assert keys[0] == keys[1] == keys[2]
    # the copies are augmented independently
    assert not torch.equal(samples[0][0], samples[1][0]) or not torch.equal(samples[1][0], samples[2][0])


def test_transforms_shapes():
    img = pattern_image(1, np.random.default_rng(0), size=50)
    torch.manual_seed(0)
    assert data.train_transform(32)(img).shape == (3, 32, 32)
    x = data.eval_transform(32)(img)
    assert x.shape == (3, 32, 32)
    assert abs(float(x.mean())) < 3  # normalised


def test_load_split_and_loader(dataset_dir):
    x, y, keys = data.load_split(dataset_dir, "val", 24)
    assert x.shape == (24, 3, 24, 24) and len(keys) == 24 and set(y.tolist()) == {0, 1, 2, 3}
    ds = data.make_dataset(data.shard_paths(dataset_dir, "val"), data.eval_transform(24), counter=data.SkipCounter())
    batches = list(data.make_loader(ds, batch_size=10))
    assert [len(b[1]) for b in batches] == [10, 10, 4]
    assert sorted(k for b in batches for k in b[2]) == sorted(keys)


def test_loader_workers_split_shards_and_share_the_skip_count(dataset_dir):
    counter = data.SkipCounter()
    ds = data.make_dataset(data.shard_paths(dataset_dir, "train"), data.eval_transform(16),
                           counter=counter, num_classes=4, shuffle=True, seed=3)
    keys = [k for _, _, batch_keys in data.make_loader(ds, batch_size=8, num_workers=2, seed=3) for k in batch_keys]
    assert len(keys) == 64 and len(set(keys)) == 64  # every sample exactly once across the 2 workers
    assert counter.count == 2  # counted inside the worker processes


def test_endless_stream_gives_every_reader_the_same_length(tmp_path):
    # uneven shards (DDP ranks may get fewer samples): passes repeat, each a full shuffled pass
    ds_dir = make_dataset_dir(tmp_path / "ds", n_classes=2, per_class={"train": 5}, size=24)
    shards = data.shard_paths(ds_dir, "train")
    ds = data.make_dataset(shards, data.eval_transform(16), counter=data.SkipCounter(), shuffle=True, seed=3,
                           endless=True, limit=23)
    keys = [k for _, _, k in ds]
    assert len(keys) == 23
    assert sorted(keys[:10]) == sorted(set(keys))  # the first pass holds every sample once
    assert set(keys[10:20]) == set(keys[:10])
    with pytest.raises(ValueError, match="limit"):
        data.make_dataset(shards, data.eval_transform(16), counter=data.SkipCounter(), endless=True)


def _label_ordered_shards(root: Path, n_classes: int = 4, per_class: int = 5, n_shards: int = 2) -> list[str]:
    # like split's test shards: samples sorted by label, then key
    rng = np.random.default_rng(0)
    samples = [{"__key__": f"k{label}_{i}", "jpg": jpeg_bytes(pattern_image(label, rng, 16)), "cls": str(label)}
               for label in range(n_classes) for i in range(per_class)]
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for s, chunk in enumerate(np.array_split(np.arange(len(samples)), n_shards)):
        paths.append(str(root / f"test-{s:06d}.tar"))
        with wds.TarWriter(paths[-1]) as sink:
            for j in chunk:
                sink.write(samples[j])
    return paths


def test_spread_keys_cover_every_class_of_label_ordered_shards(tmp_path):
    shards = _label_ordered_shards(tmp_path)
    keys = data.spread_keys(shards, 8)
    assert keys == {"k0_0", "k0_2", "k1_0", "k1_2", "k2_0", "k2_2", "k3_0", "k3_2"}
    assert data.spread_keys(shards, 20) == data.spread_keys(shards, 100) and len(data.spread_keys(shards, 100)) == 20
    ds = data.make_dataset(shards, data.eval_transform(16), counter=data.SkipCounter(), keys=keys)
    got = [(key, label) for _, label, key in ds]
    assert sorted(k for k, _ in got) == sorted(keys)
    assert sorted({label for _, label in got}) == [0, 1, 2, 3]
