"""Reading a dataset directory: ``classes.csv`` + ``train/ val/ test/`` WebDataset shards.

Each sample of a shard is ``KEY.jpg`` (the image), ``KEY.cls`` (the integer label as text)
and ``KEY.json`` (metadata, not needed for training). Samples are streamed with
webdataset: shard order and a sample shuffle buffer are seeded from (seed, epoch), shards
are split across distributed ranks and DataLoader workers, and samples whose image or label
cannot be decoded are skipped and counted (``SkipCounter``) instead of failing a long run.
Every sample comes out as ``(image_tensor, label, key)`` so evaluation can write
per-example predictions.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import random
import tarfile
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
import webdataset as wds
from PIL import Image
from torchvision.transforms import v2 as T

from .io import InputError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# eval: resize the short side to image_size * 1.14 (224 -> 256 as in torchvision) then crop
EVAL_RESIZE_RATIO = 1.14
TRAIN_SCALE = (0.35, 1.0)
ENDLESS_CYCLES = 1000


class CorruptSample(Exception):
    """A sample whose image or label cannot be decoded."""


def read_classes(data_dir: str | Path) -> pd.DataFrame:
    """``classes.csv`` (label, wnid, name) with labels 0..n-1, validated."""
    path = Path(data_dir) / "classes.csv"
    if not path.is_file():
        raise InputError(f"{path}: missing (a dataset directory needs classes.csv)")
    try:
        df = pd.read_csv(path, dtype={"wnid": str, "name": str})
    except Exception as e:  # pandas raises several kinds for unreadable CSVs
        raise InputError(f"{path}: cannot read CSV: {e}") from e
    for col in ("label", "wnid", "name"):
        if col not in df.columns:
            raise InputError(f"{path}: missing column '{col}' (have {list(df.columns)})")
    if df.empty:
        raise InputError(f"{path}: no classes")
    if not pd.api.types.is_integer_dtype(df["label"]):
        raise InputError(f"{path}: column 'label' must hold integers")
    if sorted(df["label"].tolist()) != list(range(len(df))):
        raise InputError(f"{path}: column 'label' must be exactly 0..{len(df) - 1}, each once")
    return df.sort_values("label").reset_index(drop=True)


def shard_paths(data_dir: str | Path, split: str) -> list[str]:
    """Sorted ``*.tar`` shards of ``split``; InputError if there are none."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    folder = Path(data_dir) / split
    shards = sorted(str(p) for p in folder.glob("*.tar"))
    if not shards:
        raise InputError(f"{folder}: no *.tar shards for split '{split}'")
    return shards


def count_samples(shards: list[str]) -> int:
    """Number of samples with a ``.cls`` member, from the tar headers only (no decoding)."""
    n = 0
    for shard in shards:
        try:
            with tarfile.open(shard) as tar:
                n += sum(1 for m in tar if m.isfile() and m.name.endswith(".cls"))
        except (tarfile.TarError, OSError) as e:
            log.warning("%s: unreadable tar while counting samples (%s); counted what was read", shard, e)
    return n


def spread_keys(shards: list[str], n: int) -> set[str]:
    """Keys of ``n`` samples spread evenly over the shards in stream order (tar headers only).

    Test shards are ordered by label, so the first ``n`` samples would all be of one class;
    every ``len/n``-th sample covers the classes in proportion instead. All keys if there
    are no more than ``n``.
    """
    keys = []
    for shard in shards:
        try:
            with tarfile.open(shard) as tar:
                keys.extend(m.name[:-len(".cls")] for m in tar if m.isfile() and m.name.endswith(".cls"))
        except (tarfile.TarError, OSError) as e:
            log.warning("%s: unreadable tar while listing samples (%s); listed what was read", shard, e)
    if len(keys) <= n:
        return set(keys)
    return {keys[i * len(keys) // n] for i in range(n)}


class SkipCounter:
    """A webdataset exception handler that skips the bad sample, logs it and counts it.

    The count lives in shared memory so that DataLoader worker processes add to the same
    total the main process reads.
    """

    def __init__(self, max_logged: int = 20):
        self._value = multiprocessing.Value("q", 0)
        self.max_logged = max_logged

    def __call__(self, exn: BaseException) -> bool:
        if isinstance(exn, InputError):
            raise exn  # a broken dataset (bad label range), not one bad sample
        with self._value.get_lock():
            self._value.value += 1
            n = self._value.value
        if n <= self.max_logged:
            log.warning("skipped corrupt sample (%d so far): %s", n, exn)
        return True  # keep going

    @property
    def count(self) -> int:
        return int(self._value.value)

    def add(self, n: int) -> None:
        with self._value.get_lock():
            self._value.value += int(n)


def train_transform(image_size: int) -> Callable:
    return T.Compose(
        [
            T.ToImage(),
            T.RandomResizedCrop(image_size, scale=TRAIN_SCALE, antialias=True),
            T.RandomHorizontalFlip(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def eval_transform(image_size: int) -> Callable:
    return T.Compose(
        [
            T.ToImage(),
            T.Resize(int(image_size * EVAL_RESIZE_RATIO), antialias=True),
            T.CenterCrop(image_size),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def _decoder(transform: Callable, num_classes: int | None) -> Callable:
    def decode(sample: dict) -> tuple:
        key = sample.get("__key__")
        where = f"{sample.get('__url__', '?')}:{key}"
        if "jpg" not in sample or "cls" not in sample:
            raise CorruptSample(f"{where}: missing .jpg or .cls (has {sorted(k for k in sample if not k.startswith('__'))})")
        try:
            with Image.open(io.BytesIO(sample["jpg"])) as img:
                image = img.convert("RGB")  # forces a full decode
        except Exception as e:
            raise CorruptSample(f"{where}.jpg: cannot decode image: {e}") from e
        try:
            label = int(sample["cls"].decode("utf-8").strip())
        except (UnicodeDecodeError, ValueError) as e:
            raise CorruptSample(f"{where}.cls: not an integer label: {sample['cls'][:20]!r}") from e
        if num_classes is not None and not 0 <= label < num_classes:
            raise InputError(f"{where}.cls: label {label} outside 0..{num_classes - 1} of classes.csv")
        return transform(image), label, key

    return decode


def _repeat(src, reps: int):
    # repeated augmentation (torchvision's RASampler / timm's RepeatAugSampler): each sample
    # reps times in a row, each copy transformed independently downstream. Those samplers
    # index a map-style dataset and deal the copies out to consecutive ranks; a WebDataset
    # is a stream read shard by shard on each rank, so the copies stay on the rank that read
    # the sample (identical to RASampler on one process). The epoch length is capped to one
    # pass of the data, as the samplers do, by make_dataset's ``limit``.
    for sample in src:
        for _ in range(reps):
            yield sample


def dist_info() -> tuple[int, int]:
    """(rank, world size) of torch.distributed, or (0, 1) outside a process group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _split_samples(src):
    # every rank reads all shards but keeps every world-th sample (before decoding): exact,
    # balanced and disjoint whatever the number of shards (validation, tiny datasets)
    rank, world = dist_info()
    for i, sample in enumerate(src):
        if i % world == rank:
            yield sample


def make_dataset(
    shards: list[str],
    transform: Callable,
    *,
    counter: SkipCounter,
    num_classes: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
    shuffle_buffer: int = 2000,
    repeats: int = 1,
    limit: int | None = None,
    split: str = "shards",
    endless: bool = False,
    keys: set[str] | None = None,
) -> wds.WebDataset:
    """A webdataset stream of ``(image_tensor, label, key)``.

    With ``shuffle``, shard order and a ``shuffle_buffer``-sample buffer are seeded from
    ``seed`` (pass a value derived from (run seed, epoch) for a new order each epoch).
    ``repeats`` > 1 gives repeated augmentation; ``limit`` caps the samples per pass (per
    worker), which keeps an epoch with repeats the length of one pass over the data.

    Under torch.distributed, ``split="shards"`` gives each rank a disjoint set of shards
    (``wds.split_by_node`` after a shard shuffle seeded identically on every rank, so the
    sets change from epoch to epoch); ``split="samples"`` keeps every world-th sample
    instead. ``endless`` cycles the shard list, so that with ``limit`` every rank yields the
    same number of samples (DDP needs equal step counts) even when shards are uneven.
    ``keys`` keeps only the samples with those keys (before decoding).
    """
    if split not in ("shards", "samples"):
        raise ValueError(f"split must be 'shards' or 'samples', got {split!r}")
    shards = list(shards)
    if shuffle:
        random.Random(seed).shuffle(shards)  # same order on every rank: node split stays disjoint
    ds = wds.WebDataset(
        shards,
        handler=counter,
        shardshuffle=False,
        nodesplitter=wds.split_by_node if split == "shards" else None,
        workersplitter=wds.split_by_worker,
        empty_check=False,
        seed=seed,
    )
    if keys is not None:
        ds = ds.select(lambda sample: sample["__key__"] in keys)
    if split == "samples":
        ds = ds.compose(_split_samples)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, initial=shuffle_buffer, seed=seed + 1)
    if repeats > 1:
        ds = ds.compose(lambda src: _repeat(src, repeats))
    ds = ds.map(_decoder(transform, num_classes), handler=counter)
    if endless:
        if limit is None:
            raise ValueError("endless=True needs a limit")
        return Cycled(ds, limit)
    if limit is not None:
        ds = ds.slice(limit)
    return ds


class Cycled(torch.utils.data.IterableDataset):
    """Passes over ``dataset`` (each a whole pass: its own shuffle buffer) until ``limit``
    samples; an empty pass ends it. Under DDP this gives every rank the same epoch length
    when the shards are uneven (webdataset 0.2's WebDataset ignores its repeat=)."""

    def __init__(self, dataset, limit: int):
        self.dataset, self.limit = dataset, int(limit)

    def __iter__(self):
        n = 0
        for _ in range(ENDLESS_CYCLES):
            got = False
            for sample in self.dataset:
                got = True
                yield sample
                n += 1
                if n >= self.limit:
                    return
            if not got:
                return


def make_loader(
    dataset,
    batch_size: int,
    num_workers: int = 0,
    seed: int = 0,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    """Batches of (images, labels, keys); worker RNGs are seeded from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        generator=generator,
        pin_memory=pin_memory,
        persistent_workers=False,
    )


def load_split(
    data_dir: str | Path,
    split: str,
    image_size: int,
    counter: SkipCounter | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """A whole (small) split in memory with eval transforms: images, labels, keys."""
    counter = counter or SkipCounter()
    num_classes = len(read_classes(data_dir))
    ds = make_dataset(shard_paths(data_dir, split), eval_transform(image_size), counter=counter, num_classes=num_classes)
    images, labels, keys = [], [], []
    for x, y, k in ds:
        images.append(x)
        labels.append(y)
        keys.append(k)
    if not images:
        raise InputError(f"{Path(data_dir) / split}: no readable samples")
    return torch.stack(images), torch.tensor(labels), keys
