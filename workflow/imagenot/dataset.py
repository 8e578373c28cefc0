"""Per-class train/val/test split of the downloaded images into WebDataset shards.

``imagenot split --download-dir D --classes C --params JSON --out-dir O`` with params
``{train, val, test, shard_size, seed, images_per_class}`` (config ``split`` plus
``curation.images_per_class``):

1. reads the samples img2dataset wrote to ``D/{shard}.tar`` (only successes are there;
   ``D/report.json``, the download's completion marker, must exist) and checks that each
   image decodes with PIL; undecodable ones are skipped and counted;
2. per class (``C``: ``label, wnid, name``), keeps the best ``images_per_class`` samples by
   selection rank (``rank_in_class``, carried through img2dataset's json; ties by key);
3. splits each class by the fractions with a generator seeded by ``seed`` and the class's
   wnid; every class with at least 3 images gets at least one validation and one test
   image (when those fractions are > 0);
4. writes ``O/train/``, ``O/val/``, ``O/test/`` shards ``{split}-{i:06d}.tar`` of up to
   ``shard_size`` samples: ``KEY.jpg`` (the downloaded bytes, not re-encoded), ``KEY.cls``
   (the label as ASCII digits) and ``KEY.json`` (``key, label, wnid, caption, url,
   text_sim, clip_sim, rank_in_class``). Training shards are shuffled across classes;
   validation and test shards are ordered by label and key;
5. writes ``O/classes.csv`` (``label, wnid, name``), ``O/counts.csv`` (``label, wnid, split,
   n``) and ``O/report.json`` (samples read, undecodable, kept, classes short of
   ``images_per_class``).

KEY is the selection key with every character outside ``[A-Za-z0-9_-]`` replaced by ``_``
(WebDataset splits keys at the first dot). ``O`` is written atomically; the same inputs
give the same bytes (tar headers carry no time stamps or owners).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import re
import tarfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import InputError, atomic_dir, check_keys, parse_json

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
DEFAULTS = {"train": 0.8, "val": 0.1, "test": 0.1, "shard_size": 1000, "seed": 0}
CLASSES_COLUMNS = ("label", "wnid", "name")
_SHARD_RE = re.compile(r"^\d+\.tar$")
_KEY_RE = re.compile(r"[^A-Za-z0-9_-]")


def parse_params(params) -> dict:
    params = parse_json(params, "--params (config split)", obj=True)
    check_keys(params, sorted(set(DEFAULTS) | {"images_per_class"}), "--params (config split)")
    if "images_per_class" not in params:
        raise InputError("--params: missing key 'images_per_class' (config curation.images_per_class)")
    p = {**DEFAULTS, **params}
    for key in SPLITS:
        v = p[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise InputError(f"--params (config split.{key}): expected a fraction in [0, 1], got {v!r}")
        p[key] = float(v)
    total = p["train"] + p["val"] + p["test"]
    if abs(total - 1) > 1e-6:
        raise InputError(f"--params (config split): train + val + test must be 1, got {total:g}")
    if p["val"] <= 0 or p["test"] <= 0:
        raise InputError("--params (config split.val / split.test): must be > 0 (a dataset always has val/ and test/)")
    for key, lo in (("shard_size", 1), ("images_per_class", 1), ("seed", None)):
        v = p[key]
        if isinstance(v, bool) or not isinstance(v, int) or (lo is not None and v < lo):
            raise InputError(f"--params ({'config curation' if key == 'images_per_class' else 'config split'}.{key}): "
                             f"expected an integer{f' >= {lo}' if lo else ''}, got {v!r}")
    return p


def read_classes(path) -> list[dict]:
    """Rows ``label, wnid, name`` of the classes parquet (labels 0..K-1)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: classes file not found")
    try:
        schema = pq.read_schema(path)
    except Exception as e:  # several pyarrow error types for a non-parquet file
        raise InputError(f"{path}: not a readable parquet file ({e})") from None
    for col in CLASSES_COLUMNS:
        if col not in schema.names:
            raise InputError(f"{path}: missing column {col!r} (classes need {', '.join(CLASSES_COLUMNS)})")
    table = pq.read_table(path, columns=list(CLASSES_COLUMNS)).to_pylist()
    if not table:
        raise InputError(f"{path}: no classes")
    labels = [r["label"] for r in table]
    if any(not isinstance(x, int) for x in labels) or sorted(labels) != list(range(len(labels))):
        raise InputError(f"{path}: column 'label' must hold the integers 0..{len(labels) - 1} once each")
    wnids = [r["wnid"] for r in table]
    if any(not isinstance(w, str) for w in wnids) or len(set(wnids)) != len(wnids):
        raise InputError(f"{path}: column 'wnid' must be unique strings")
    return sorted(table, key=lambda r: r["label"])


@dataclass
class _Sample:
    key: str  # selection key
    label: int
    wnid: str
    rank: float
    meta: dict
    tar: Path
    offset: int
    size: int


def _decodes(data: bytes) -> bool:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
        return True
    except Exception:  # PIL raises many types (OSError, SyntaxError, ValueError...) for bad bytes
        return False


def read_download(download_dir) -> tuple[list[_Sample], dict]:
    """Every decodable sample of the download's tars, and counts of what was skipped."""
    download_dir = Path(download_dir)
    if not download_dir.is_dir():
        raise InputError(f"{download_dir}: download directory not found")
    if not (download_dir / "report.json").is_file():
        raise InputError(f"{download_dir}/report.json: not found: the download is incomplete "
                         f"(run `imagenot download` until it writes report.json)")
    tars = sorted(p for p in download_dir.iterdir() if _SHARD_RE.match(p.name))
    if not tars:
        raise InputError(f"{download_dir}: no shard tars ({{shard}}.tar) found")
    samples: list[_Sample] = []
    stats = {"tars": len(tars), "read": 0, "undecodable": 0, "undecodable_keys": [], "incomplete": 0,
             "duplicates": 0}
    seen: set[str] = set()
    for tar_path in tars:
        groups: dict[str, dict] = defaultdict(dict)
        try:
            with tarfile.open(tar_path, "r:") as tf:
                for m in tf:
                    if not m.isfile():
                        continue
                    base = m.name.rsplit("/", 1)[-1]
                    stem, _, ext = base.partition(".")
                    prefix = m.name[: len(m.name) - len(base)]
                    g = groups[prefix + stem]
                    if ext == "jpg":
                        data = tf.extractfile(m).read()
                        g["jpg"] = (m.offset_data, m.size, _decodes(data))
                    elif ext == "json":
                        g["json"] = tf.extractfile(m).read()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise InputError(f"{tar_path}: damaged tar ({e}); delete it with its .parquet and _stats.json "
                             f"and rerun the download") from None
        for ikey in sorted(groups):
            g = groups[ikey]
            if "jpg" not in g or "json" not in g:
                stats["incomplete"] += 1
                continue
            stats["read"] += 1
            offset, size, ok = g["jpg"]
            try:
                meta = json.loads(g["json"])
            except json.JSONDecodeError as e:
                raise InputError(f"{tar_path}: {ikey}.json is not valid JSON ({e})") from None
            for field in ("sel_key", "label", "wnid", "rank_in_class"):
                if meta.get(field) is None:
                    raise InputError(f"{tar_path}: {ikey}.json lacks field {field!r} "
                                     f"(download with `imagenot download`, which carries the selection columns)")
            if not ok:
                stats["undecodable"] += 1
                if len(stats["undecodable_keys"]) < 20:
                    stats["undecodable_keys"].append(str(meta["sel_key"]))
                continue
            key = str(meta["sel_key"])
            if key in seen:
                stats["duplicates"] += 1
                continue
            seen.add(key)
            samples.append(_Sample(key=key, label=int(meta["label"]), wnid=str(meta["wnid"]),
                                   rank=float(meta["rank_in_class"]), meta=meta, tar=tar_path,
                                   offset=offset, size=size))
    return samples, stats


def split_counts(n: int, fractions: dict) -> dict:
    """Images per split for a class of ``n``: rounded fractions, >= 1 val and test when n >= 3."""
    n_val = int(round(n * fractions["val"]))
    n_test = int(round(n * fractions["test"]))
    if n >= 3:
        n_val, n_test = max(n_val, 1), max(n_test, 1)
        while n - n_val - n_test < 1:  # keep at least one training image
            if n_val >= n_test:
                n_val -= 1
            else:
                n_test -= 1
    else:
        n_val = n_test = 0
    return {"train": n - n_val - n_test, "val": n_val, "test": n_test}


def _class_rng(seed: int, wnid: str) -> np.random.Generator:
    digits = int(re.sub(r"\D", "", wnid) or 0)
    return np.random.default_rng([seed, digits, len(wnid)])


def shard_key(key: str) -> str:
    return _KEY_RE.sub("_", key)


def _tar_add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tf.addfile(info, io.BytesIO(data))


def _read_bytes(s: _Sample, handles: dict) -> bytes:
    fh = handles.get(s.tar)
    if fh is None:
        fh = handles[s.tar] = open(s.tar, "rb")
    fh.seek(s.offset)
    return fh.read(s.size)


def split(download_dir, classes, params, out_dir) -> dict:
    """Build the dataset directory ``out_dir``; return its report."""
    params = parse_params(params)
    classes_path = Path(classes)
    class_rows = read_classes(classes_path)
    by_wnid = {r["wnid"]: r for r in class_rows}
    samples, stats = read_download(download_dir)

    per_class: dict[int, list[_Sample]] = defaultdict(list)
    for s in samples:
        row = by_wnid.get(s.wnid)
        if row is None:
            raise InputError(f"{s.tar}: sample {s.key!r} has wnid {s.wnid} which {classes_path} does not list "
                             f"(the download and the classes come from different curation runs)")
        if row["label"] != s.label:
            raise InputError(f"{s.tar}: sample {s.key!r} has label {s.label} but {classes_path} gives "
                             f"{s.wnid} label {row['label']}")
        per_class[s.label].append(s)

    empty = [r for r in class_rows if not per_class.get(r["label"])]
    if empty:
        names = ", ".join(f"{r['label']} {r['wnid']} ({r['name']})" for r in empty[:10])
        raise InputError(f"{download_dir}: no usable images for {len(empty)} classes of {classes_path}: {names}")

    want = params["images_per_class"]
    assigned: dict[str, list[_Sample]] = {k: [] for k in SPLITS}
    counts_rows, short = [], []
    for r in class_rows:
        label = r["label"]
        ranked = sorted(per_class[label], key=lambda s: (s.rank, s.key))
        kept = ranked[:want]
        if len(kept) < want:
            short.append({"label": label, "wnid": r["wnid"], "name": r["name"], "n": len(kept), "wanted": want})
            log.warning("class %d %s (%s): %d images, fewer than images_per_class = %d",
                        label, r["wnid"], r["name"], len(kept), want)
        order = _class_rng(params["seed"], r["wnid"]).permutation(len(kept))
        shuffled = [kept[i] for i in order]
        n = split_counts(len(kept), params)
        bounds = {"train": (0, n["train"]), "val": (n["train"], n["train"] + n["val"]),
                  "test": (n["train"] + n["val"], len(kept))}
        for name in SPLITS:
            lo, hi = bounds[name]
            assigned[name].extend(shuffled[lo:hi])
            counts_rows.append({"label": label, "wnid": r["wnid"], "split": name, "n": hi - lo})

    train_order = np.random.default_rng([params["seed"], 1]).permutation(len(assigned["train"]))
    assigned["train"] = [assigned["train"][i] for i in train_order]
    for name in ("val", "test"):
        assigned[name].sort(key=lambda s: (s.label, s.key))

    keys = _unique_keys(samples)
    out_dir = Path(out_dir)
    shards = {}
    handles: dict = {}
    try:
        with atomic_dir(out_dir) as tmp:
            for name in SPLITS:
                d = tmp / name
                d.mkdir()
                items = assigned[name]
                size = params["shard_size"]
                shards[name] = 0
                for i in range(0, len(items), size):
                    with tarfile.open(d / f"{name}-{i // size:06d}.tar", "w", format=tarfile.GNU_FORMAT) as tf:
                        for s in items[i:i + size]:
                            k = keys[s.key]
                            meta = {"key": s.key, "label": s.label, "wnid": s.wnid,
                                    "caption": s.meta.get("caption"), "url": s.meta.get("url"),
                                    "text_sim": s.meta.get("text_sim"), "clip_sim": s.meta.get("clip_sim"),
                                    "rank_in_class": s.meta.get("rank_in_class")}
                            _tar_add(tf, f"{k}.jpg", _read_bytes(s, handles))
                            _tar_add(tf, f"{k}.cls", str(s.label).encode("ascii"))
                            _tar_add(tf, f"{k}.json", json.dumps(meta, sort_keys=True).encode())
                    shards[name] += 1
            _write_csv(tmp / "classes.csv", ["label", "wnid", "name"],
                       [[r["label"], r["wnid"], r["name"]] for r in class_rows])
            _write_csv(tmp / "counts.csv", ["label", "wnid", "split", "n"],
                       [[c["label"], c["wnid"], c["split"], c["n"]] for c in counts_rows])
            report = {
                "download_dir": str(download_dir),
                "classes": str(classes_path),
                "params": params,
                "samples": {k: v for k, v in stats.items()},
                "kept": {name: len(assigned[name]) for name in SPLITS},
                "shards": shards,
                "n_classes": len(class_rows),
                "classes_short": short,
            }
            (tmp / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    finally:
        for fh in handles.values():
            fh.close()
    log.info("%s: %s images (train/val/test), %d undecodable skipped, %d classes short of %d",
             out_dir, "/".join(str(len(assigned[n])) for n in SPLITS), stats["undecodable"], len(short), want)
    return report


def _unique_keys(samples: list[_Sample]) -> dict[str, str]:
    """Shard key per selection key: sanitised, made unique if sanitising collides."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for s in sorted(samples, key=lambda s: s.key):
        k = shard_key(s.key)
        if k in used:
            k = f"{k}_{s.meta.get('key', len(used))}"
        used.add(k)
        out[s.key] = k
    return out


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    import csv

    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def add_commands(sub) -> None:
    p = sub.add_parser("split", help="per-class train/val/test split of the download into WebDataset shards",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--download-dir", required=True, help="img2dataset output of `imagenot download`")
    p.add_argument("--classes", required=True, help="classes parquet (label, wnid, name) from `imagenot curate select`")
    p.add_argument("--params", required=True,
                   help="JSON: config split + images_per_class (train, val, test, shard_size, seed, images_per_class)")
    p.add_argument("--out-dir", required=True, help="dataset directory (train/, val/, test/, classes.csv, counts.csv)")
    p.set_defaults(func=_cmd_split)


def _cmd_split(args) -> int:
    report = split(args.download_dir, args.classes, args.params, args.out_dir)
    print(f"{args.out_dir}: train {report['kept']['train']}, val {report['kept']['val']}, "
          f"test {report['kept']['test']} images; {report['samples']['undecodable']} undecodable skipped; "
          f"{len(report['classes_short'])} classes short")
    return 0
