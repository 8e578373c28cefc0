"""The per-class split into WebDataset shards: deterministic, by fractions, best-ranked images
first, undecodable samples skipped, classes.csv / counts.csv."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imagenot.io import InputError

WNIDS = ["n00000011", "n00000022", "n00000033", "n00000044"]
PARAMS = {"train": 0.7, "val": 0.1, "test": 0.2, "shard_size": 7, "seed": 0, "images_per_class": 20}


def _jpeg(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), value % 256, dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def make_download(d: Path, per_class: dict[int, int], corrupt: set[str] = frozenset(), n_tars: int = 2) -> Path:
    """An img2dataset-like webdataset output: {shard}.tar with KEY.jpg/.txt/.json, report.json."""
    d.mkdir(parents=True)
    samples = []
    for label, n in per_class.items():
        for r in range(n):
            samples.append({"sel_key": f"demo/{label}/{r:03d}.x", "label": label, "wnid": WNIDS[label],
                            "rank_in_class": r, "text_sim": 0.9 - r / 100, "clip_sim": 0.3,
                            "caption": f"caption {label} {r}", "url": f"http://127.0.0.1:1/images/{label}-{r}.jpg"})
    np.random.default_rng(1).shuffle(samples)
    for t in range(n_tars):
        with tarfile.open(d / f"{t:05d}.tar", "w") as tf:
            for i, s in enumerate(samples[t::n_tars]):
                key = f"{t:05d}{i:04d}"
                meta = {**s, "key": key, "status": "success", "error_message": None, "width": 8, "height": 8}
                jpg = b"\xff\xd8\xff\xe0not a jpeg" if s["sel_key"] in corrupt else _jpeg(s["rank_in_class"] * 7)
                _add(tf, f"{key}.jpg", jpg)
                _add(tf, f"{key}.txt", s["caption"].encode())
                _add(tf, f"{key}.json", json.dumps(meta).encode())
    (d / "report.json").write_text(json.dumps({"complete": True}))
    return d


def make_classes(path: Path, n: int = 4) -> Path:
    pd.DataFrame({"label": range(n), "wnid": WNIDS[:n], "name": [f"class{i}.n.01" for i in range(n)]}).to_parquet(path)
    return path


def _members(tar: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(tar) as tf:
        return tf.getmembers()


def _samples(out: Path, split: str) -> list[dict]:
    out_samples = []
    for tar in sorted((out / split).glob("*.tar")):
        with tarfile.open(tar) as tf:
            files = {m.name: tf.extractfile(m).read() for m in tf.getmembers()}
        for name in sorted(n for n in files if n.endswith(".json")):
            key = name[:-5]
            meta = json.loads(files[name])
            assert int(files[f"{key}.cls"].decode("ascii")) == meta["label"]
            Image.open(io.BytesIO(files[f"{key}.jpg"])).load()
            out_samples.append({**meta, "__key__": key})
    return out_samples


@pytest.fixture
def inputs(tmp_path):
    dl = make_download(tmp_path / "dl", {0: 25, 1: 12, 2: 3, 3: 30}, corrupt={"demo/3/001.x", "demo/0/022.x"})
    return dl, make_classes(tmp_path / "classes.parquet")


def test_deterministic_bytes(inputs, tmp_path):
    from imagenot.dataset import split

    dl, classes = inputs
    split(dl, classes, PARAMS, tmp_path / "a")
    split(dl, classes, json.dumps(PARAMS), tmp_path / "b")
    files = lambda root: {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    a, b = files(tmp_path / "a"), files(tmp_path / "b")
    assert a == b and "train/train-000000.tar" in a
    split(dl, classes, {**PARAMS, "seed": 1}, tmp_path / "c")
    assert files(tmp_path / "c")["test/test-000000.tar"] != a["test/test-000000.tar"]


def test_fractions_ranking_and_outputs(inputs, tmp_path):
    from imagenot.dataset import split, split_counts

    dl, classes = inputs
    out = tmp_path / "ds"
    report = split(dl, classes, PARAMS, out)

    counts = pd.read_csv(out / "counts.csv")
    assert list(counts.columns) == ["label", "wnid", "split", "n"]
    # class 0: 25 images, the best 20 by rank kept; class 3: 30 minus 1 undecodable, best 20
    available = {0: 20, 1: 12, 2: 3, 3: 20}
    for label, n in available.items():
        got = counts[counts["label"] == label].set_index("split")["n"].to_dict()
        assert got == split_counts(n, PARAMS)
        assert got["val"] >= 1 and got["test"] >= 1
    assert split_counts(20, PARAMS) == {"train": 14, "val": 2, "test": 4}

    samples = {s: _samples(out, s) for s in ("train", "val", "test")}
    assert {s: len(v) for s, v in samples.items()} == report["kept"]
    for s, v in samples.items():
        assert v and len({x["__key__"] for x in v}) == len(v)
        per = pd.Series([x["label"] for x in v]).value_counts().to_dict()
        assert per == {k: n for k, n in counts[counts["split"] == s].set_index("label")["n"].items() if n}
    kept = [x for v in samples.values() for x in v]
    assert max(x["rank_in_class"] for x in kept if x["label"] == 0) == 19  # ranks 20..24 dropped
    assert all(x["__key__"] == x["key"].replace("/", "_").replace(".", "_") for x in kept)
    assert {"key", "wnid", "caption", "url", "text_sim", "clip_sim", "rank_in_class"} <= set(kept[0])
    assert all(x["wnid"] == WNIDS[x["label"]] for x in kept)
    # no image in two splits
    keys = [x["__key__"] for x in kept]
    assert len(keys) == len(set(keys))
    # shards of at most shard_size samples, 3 members each; val/test ordered by label
    for tar in (out / "train").glob("*.tar"):
        assert len(_members(tar)) <= 3 * PARAMS["shard_size"]
    assert [x["label"] for x in samples["test"]] == sorted(x["label"] for x in samples["test"])

    classes_csv = pd.read_csv(out / "classes.csv")
    assert classes_csv.to_dict("list") == {"label": [0, 1, 2, 3], "wnid": WNIDS,
                                           "name": [f"class{i}.n.01" for i in range(4)]}
    short = {c["label"]: c["n"] for c in report["classes_short"]}
    assert short == {1: 12, 2: 3}
    assert report["samples"]["undecodable"] == 2 and report["samples"]["read"] == 70


def test_corrupt_samples_are_skipped_and_counted(inputs, tmp_path):
    from imagenot.dataset import split

    dl, classes = inputs
    report = split(dl, classes, PARAMS, tmp_path / "ds")
    assert sorted(report["samples"]["undecodable_keys"]) == ["demo/0/022.x", "demo/3/001.x"]
    kept = {x["__key__"]: x for s in ("train", "val", "test") for x in _samples(tmp_path / "ds", s)}
    assert "demo_3_001_x" not in kept and "demo_3_000_x" in kept
    # class 3 fills its 20 with ranks 0 and 2..20, skipping the undecodable rank 1
    assert sorted(x["rank_in_class"] for x in kept.values() if x["label"] == 3) == [0] + list(range(2, 21))


def test_split_counts_small_classes():
    from imagenot.dataset import split_counts

    fr = {"train": 0.8, "val": 0.1, "test": 0.1}
    assert split_counts(1, fr) == {"train": 1, "val": 0, "test": 0}
    assert split_counts(3, fr) == {"train": 1, "val": 1, "test": 1}
    assert split_counts(4, {"train": 0.1, "val": 0.45, "test": 0.45}) == {"train": 1, "val": 1, "test": 2}
    assert sum(split_counts(1000, fr).values()) == 1000


def test_errors_name_the_file_and_field(inputs, tmp_path):
    from imagenot.dataset import split

    dl, classes = inputs
    # a class without any image
    five = tmp_path / "five.parquet"
    pd.DataFrame({"label": range(5), "wnid": WNIDS + ["n00000055"], "name": [f"c{i}" for i in range(5)]}).to_parquet(five)
    with pytest.raises(InputError, match=r"no usable images for 1 classes of .*five\.parquet: 4 n00000055 \(c4\)"):
        split(dl, five, PARAMS, tmp_path / "x")
    # classes file without the 'name' column
    noname = tmp_path / "noname.parquet"
    pd.DataFrame({"label": range(4), "wnid": WNIDS}).to_parquet(noname)
    with pytest.raises(InputError, match=r"noname\.parquet: missing column 'name'"):
        split(dl, noname, PARAMS, tmp_path / "x")
    # a download whose classes differ from the classes file
    with pytest.raises(InputError, match=r"has wnid n00000044 which .*three\.parquet does not list"):
        split(dl, make_classes(tmp_path / "three.parquet", 3), PARAMS, tmp_path / "x")
    # parameters
    with pytest.raises(InputError, match=r"train \+ val \+ test must be 1"):
        split(dl, classes, {**PARAMS, "train": 0.5}, tmp_path / "x")
    with pytest.raises(InputError, match=r"missing key 'images_per_class'"):
        split(dl, classes, {k: v for k, v in PARAMS.items() if k != "images_per_class"}, tmp_path / "x")
    # an unfinished download (no report.json)
    (dl / "report.json").unlink()
    with pytest.raises(InputError, match=r"report\.json: not found: the download is incomplete"):
        split(dl, classes, PARAMS, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_cli(inputs, tmp_path, monkeypatch, capsys):
    from imagenot import cli

    dl, classes = inputs
    out = tmp_path / "ds"
    assert cli.main(["split", "--download-dir", str(dl), "--classes", str(classes), "--params",
                     json.dumps(PARAMS), "--out-dir", str(out)]) == 0
    assert (out / "classes.csv").is_file() and list((out / "val").glob("val-*.tar"))
    assert cli.main(["split", "--download-dir", str(dl), "--classes", str(classes), "--params",
                     '{"train": 1}', "--out-dir", str(out)]) == 2
    assert "images_per_class" in capsys.readouterr().err
