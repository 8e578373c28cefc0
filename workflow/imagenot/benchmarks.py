"""Standard benchmarks as training datasets: CIFAR-10 (torchvision) or scikit-learn's digits.

The paper also trains the zoo from scratch on CIFAR-10 (Figure 9's CIFAR-10 panel). Config
``datasets: {cifar10: {source: cifar10, root: resources/cifar10, download: true}}`` makes
``imagenot benchmark-dataset`` write it in the layout ``imagenot split`` writes for the
curated dataset, so training, evaluation and the figures treat both alike:

- ``O/train/``, ``O/val/``, ``O/test/``: shards ``{split}-{i:06d}.tar`` of up to
  ``shard_size`` samples ``KEY.jpg`` (the image as lossless PNG bytes: the loader decodes
  by content, and a 32 px CIFAR image should not go through JPEG), ``KEY.cls`` (label) and
  ``KEY.json`` (``key, label, wnid, source, index``). Validation is a seeded
  ``val_fraction`` of the official training set; test is the official test set. Training
  shards are shuffled, validation and test ordered by label and key.
- ``O/classes.csv`` (``label, wnid, name``; ``wnid`` is ``SOURCE:NAME``, these classes have
  no WordNet id), ``O/counts.csv`` (``label, wnid, split, n``) and ``O/report.json``.

``max_train`` / ``max_val`` / ``max_test`` cap each split with a seeded subset (tests and
the offline demo; null in the paper's config). ``digits`` (1,797 real 8x8 images, shipped
with scikit-learn) needs no network. ``O`` is written atomically.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from .dataset import SPLITS, _tar_add, _write_csv
from .io import InputError, atomic_dir, check_keys, parse_json, write_json

log = logging.getLogger(__name__)

SOURCES = ("cifar10", "digits")
DEFAULTS = {"source": None, "root": "resources/cifar10", "download": True, "verify_checksums": True,
            "val_fraction": 0.1, "test_fraction": 0.25, "seed": 0, "shard_size": 5000,
            "max_train": None, "max_val": None, "max_test": None}


def resolve(params, what: str = "--params") -> dict:
    """The dataset's config entry (``datasets.NAME``) with defaults filled in and checked."""
    params = parse_json(params, what, obj=True)
    check_keys(params, DEFAULTS, what)
    p = {**DEFAULTS, **params}
    if p["source"] not in SOURCES:
        raise InputError(f"{what}: field 'source' must be one of {', '.join(SOURCES)} (got {p['source']!r})")
    for key in ("val_fraction", "test_fraction"):
        if not isinstance(p[key], (int, float)) or isinstance(p[key], bool) or not 0 < p[key] < 1:
            raise InputError(f"{what}: field '{key}' must be in (0, 1) (got {p[key]!r})")
    for key in ("shard_size", "max_train", "max_val", "max_test"):
        v = p[key]
        if (v is not None or key == "shard_size") and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise InputError(f"{what}: field '{key}' must be a positive integer{'' if key == 'shard_size' else ' or null'}")
    return p


def load_arrays(p: dict) -> dict:
    """uint8 NHWC images and labels per split, and the class names."""
    from .transfer import load_cifar10, load_digits_target

    if p["source"] == "cifar10":
        xtr, ytr, xte, yte, classes = load_cifar10(p["root"], p["download"], p["verify_checksums"])
    else:
        xtr, ytr, xte, yte, classes = load_digits_target(p["test_fraction"], p["seed"])
    rng = np.random.default_rng([p["seed"], 7])
    order = rng.permutation(len(ytr))
    n_val = max(1, int(round(p["val_fraction"] * len(ytr))))
    idx = {"val": np.sort(order[:n_val]), "train": np.sort(order[n_val:])}
    out = {"classes": classes}
    for split, (x, y, base) in {"train": (xtr, ytr, idx["train"]), "val": (xtr, ytr, idx["val"]),
                                "test": (xte, yte, np.arange(len(yte)))}.items():
        cap = p[f"max_{split}"]
        keep = np.sort(rng.permutation(base)[:cap]) if cap is not None else base
        if len(keep) == 0:
            raise InputError(f"{p['source']}: no {split} examples")
        # index: position in the official train or test set, for provenance
        out[split] = (x[keep], y[keep], keep)
    return out


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def build(params, out_dir: str | Path) -> dict:
    """Write the benchmark dataset directory ``out_dir``; returns its report."""
    p = resolve(params)
    arrays = load_arrays(p)
    classes = [str(c) for c in arrays["classes"]]
    wnids = [f"{p['source']}:{c}" for c in classes]
    report = {"source": p["source"], "params": p, "classes": len(classes), "splits": {}}
    counts_rows = []
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        for split in SPLITS:
            x, y, index = arrays[split]
            official = "test" if split == "test" else "train"
            keys = [f"{p['source']}_{official}_{i:06d}" for i in index]
            order = (np.random.default_rng([p["seed"], 8]).permutation(len(y)) if split == "train"
                     else np.lexsort((np.array(keys), y)))
            d = tmp / split
            d.mkdir()
            size = p["shard_size"]
            for s in range(0, len(order), size):
                with tarfile.open(d / f"{split}-{s // size:06d}.tar", "w", format=tarfile.GNU_FORMAT) as tf:
                    for j in order[s:s + size]:
                        label = int(y[j])
                        meta = json.dumps({"index": int(index[j]), "key": keys[j], "label": label,
                                           "source": p["source"], "wnid": wnids[label]}, sort_keys=True)
                        _tar_add(tf, f"{keys[j]}.jpg", _png(x[j]))
                        _tar_add(tf, f"{keys[j]}.cls", str(label).encode("ascii"))
                        _tar_add(tf, f"{keys[j]}.json", meta.encode())
            per_class = np.bincount(y, minlength=len(classes))
            counts_rows += [[c, wnids[c], split, int(per_class[c])] for c in range(len(classes))]
            report["splits"][split] = int(len(y))
        _write_csv(tmp / "classes.csv", ["label", "wnid", "name"], [[i, wnids[i], c] for i, c in enumerate(classes)])
        _write_csv(tmp / "counts.csv", ["label", "wnid", "split", "n"], counts_rows)
        write_json(report, tmp / "report.json")
    log.info("%s: %s, %d classes, %s", out_dir, p["source"], len(classes), report["splits"])
    return report


def _cmd(args: argparse.Namespace) -> int:
    build(args.params, args.out_dir)
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("benchmark-dataset", help="CIFAR-10 or digits as a training dataset (WebDataset shards)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", required=True,
                   help="JSON: the dataset's config entry (source, root, download, verify_checksums, val_fraction, "
                        "seed, shard_size, max_train, max_val, max_test)")
    p.add_argument("--out-dir", required=True, help="dataset directory to write (train/ val/ test/, classes.csv)")
    p.set_defaults(func=_cmd)
