"""A real img2dataset download of a tiny selection from the demo server: the completeness
report counts each kind of failure, a rerun resumes without redoing finished shards, and bad
selections are rejected naming the file and the column."""

from __future__ import annotations

import json
import shutil
import tarfile

import pandas as pd
import pyarrow.parquet as pq
import pytest

from imagenot.io import InputError

PARAMS = {"image_size": 32, "resize_mode": "center_crop", "processes": 1, "threads": 8, "rows_per_shard": 10,
          "timeout": 5, "retries": 0, "min_success_rate": 0.5}
ERRORS = {"missing": "HTTP Error 404: File not found", "corrupt": "Image decoding error",
          "noai": "Use of image disallowed by X-Robots-Tag directive"}


def make_selection(corpus, path, n_ok=27) -> pd.DataFrame:
    """A selection of demo class rows: n_ok served images, then one 404, one corrupt and one
    noai image placed in different shards."""
    manifest = json.loads((corpus / "manifest.json").read_text())
    label = {c["wnid"]: k for k, c in enumerate(manifest["classes"])}
    truth = pq.read_table(corpus / "truth.parquet").to_pandas()
    truth = truth[(truth["group"] == "class") & ~truth["punsafe_high"]]
    rows = truth[truth["served"] == "ok"].head(n_ok)
    for at, kind in zip((3, 14, 25), ("missing", "corrupt", "noai")):
        bad = truth[truth["served"] == kind].head(1)
        rows = pd.concat([rows.iloc[:at], bad, rows.iloc[at:]])
    sel = pd.DataFrame({
        "key": [f"demo/{p:05d}/{i}" for p, i in zip(rows["part"], rows["SAMPLE_ID"])],
        "url": rows["url"].tolist(),
        "text": rows["text"].tolist(),
        "wnid": rows["owner_wnid"].tolist(),
        "label": [label[w] for w in rows["owner_wnid"]],
        "text_sim": [0.5 - 0.001 * i for i in range(len(rows))],
        "clip_sim": 0.33,
        "rank_in_class": list(range(len(rows))),
    })
    sel["served"] = rows["served"].tolist()
    sel.drop(columns="served").to_parquet(path, index=False)
    return sel


@pytest.fixture(scope="module")
def downloaded(demo_corpus, tmp_path_factory):
    from imagenot.download import download

    d = tmp_path_factory.mktemp("download")
    sel = make_selection(demo_corpus, d / "selection.parquet")
    port = json.loads((demo_corpus / "manifest.json").read_text())["params"]["port"]
    report = download(d / "selection.parquet", d / "out", PARAMS, serve_root=demo_corpus, port=port)
    return {"dir": d / "out", "selection": sel, "selection_path": d / "selection.parquet", "report": report,
            "corpus": demo_corpus, "port": port}


def test_report_counts_each_failure_kind(downloaded):
    report, out, sel = downloaded["report"], downloaded["dir"], downloaded["selection"]
    assert report["complete"] and report["problems"] == []
    assert (report["expected"], report["succeeded"], report["failed"]) == (30, 27, 3)
    assert report["success_rate"] == pytest.approx(0.9)
    assert report["errors"] == {ERRORS[k]: 1 for k in ("missing", "corrupt", "noai")}
    assert report["shards"] == {"expected": 3, "finished": 3, "missing": [], "damaged": []}
    per_class = {c["wnid"]: c for c in report["per_class"]}
    ok = sel[sel["served"] == "ok"]
    assert {w: c["succeeded"] for w, c in per_class.items()} == ok["wnid"].value_counts().to_dict()
    assert sum(c["expected"] for c in per_class.values()) == 30
    assert json.loads((out / "report.json").read_text()) == report
    assert not (out / "report.incomplete.json").exists()
    # each failure is recorded against the right row in the shard parquets
    rows = pd.concat([pd.read_parquet(out / f"{i:05d}.parquet") for i in range(3)])
    by_key = dict(zip(rows["sel_key"], rows["error_message"]))
    for kind in ("missing", "corrupt", "noai"):
        assert by_key[sel.loc[sel["served"] == kind, "key"].item()] == ERRORS[kind]


def test_shards_carry_the_selection_columns(downloaded):
    out, sel = downloaded["dir"], downloaded["selection"].set_index("key")
    n = 0
    for i in range(3):
        with tarfile.open(out / f"{i:05d}.tar") as tf:
            for m in tf.getmembers():
                if m.name.endswith(".json"):
                    meta = json.loads(tf.extractfile(m).read())
                    row = sel.loc[meta["sel_key"]]
                    assert (meta["wnid"], meta["label"], meta["rank_in_class"]) == (
                        row["wnid"], row["label"], row["rank_in_class"])
                    assert meta["status"] == "success" and meta["width"] == 32
                    n += 1
    assert n == 27


def test_rerun_of_complete_download_keeps_shards_and_starts_nothing(downloaded, tmp_path):
    import socket

    from imagenot.download import DownloadIncompleteError, download

    out = downloaded["dir"]
    shards = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name[:5].isdigit()}
    # the demo server's port is taken: starting the server (or img2dataset) would fail
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the port may be in TIME_WAIT
        busy.bind(("127.0.0.1", downloaded["port"]))
        busy.listen()
        report = download(downloaded["selection_path"], out, PARAMS, serve_root=downloaded["corpus"],
                          port=downloaded["port"])
    assert report == downloaded["report"]
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name[:5].isdigit()} == shards

    # a stricter min_success_rate on the same shards: incomplete, report.json gone
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    with pytest.raises(DownloadIncompleteError, match=r"success rate 0\.900 is below min_success_rate 0\.95"):
        download(downloaded["selection_path"], copy, {**PARAMS, "min_success_rate": 0.95})
    assert not (copy / "report.json").exists()
    assert json.loads((copy / "report.incomplete.json").read_text())["succeeded"] == 27


def test_interrupted_download_resumes_only_unfinished_shards(downloaded, tmp_path):
    """An interrupted run leaves shards without _stats.json, or a tar cut short by a hang:
    the rerun fetches only those shards."""
    from imagenot.download import check, download, read_selection

    out = tmp_path / "out"
    shutil.copytree(downloaded["dir"], out)
    for f in ("00001.tar", "00001.parquet", "00001_stats.json", "report.json"):
        (out / f).unlink()
    data = (out / "00002.tar").read_bytes()
    (out / "00002.tar").write_bytes(data[: len(data) // 3])
    table = read_selection(downloaded["selection_path"])
    partial = check(out, table, PARAMS)
    assert not partial["complete"]
    assert partial["shards"]["missing"] == ["00001"] and partial["shards"]["damaged"] == ["00002"]

    kept = {f: (out / f).stat().st_mtime_ns for f in ("00000.tar", "00000.parquet", "00000_stats.json")}
    report = download(downloaded["selection_path"], out, PARAMS, serve_root=downloaded["corpus"],
                      port=downloaded["port"])
    assert {f: (out / f).stat().st_mtime_ns for f in kept} == kept
    assert (out / "00001_stats.json").is_file() and (out / "00002.tar").stat().st_size == len(data)
    assert report["shards"] == downloaded["report"]["shards"]
    assert (report["succeeded"], report["errors"]) == (27, downloaded["report"]["errors"])


def test_selection_errors_name_file_and_column(downloaded, tmp_path):
    from imagenot.download import download

    sel = downloaded["selection"].drop(columns="served")
    bad = tmp_path / "no_rank.parquet"
    sel.drop(columns="rank_in_class").to_parquet(bad, index=False)
    with pytest.raises(InputError, match=r"no_rank\.parquet: missing column 'rank_in_class'"):
        download(bad, tmp_path / "out", PARAMS)
    dup = tmp_path / "dup.parquet"
    pd.concat([sel, sel.head(1)]).to_parquet(dup, index=False)
    with pytest.raises(InputError, match=r"dup\.parquet: column 'key' has duplicate values"):
        download(dup, tmp_path / "out", PARAMS)
    with pytest.raises(InputError, match=r"selection\.parquet: column 'url' points elsewhere.*corpus\.demo\.port"):
        download(downloaded["selection_path"], tmp_path / "out", PARAMS, serve_root=downloaded["corpus"],
                 port=downloaded["port"] + 1)
    with pytest.raises(InputError, match=r"download\.resize_mode"):
        download(downloaded["selection_path"], tmp_path / "out", {**PARAMS, "resize_mode": "stretch"})
    assert not (tmp_path / "out").exists()


def test_split_of_the_real_download(downloaded, tmp_path):
    """The split stage reads img2dataset's real output."""
    from imagenot.dataset import split

    manifest = json.loads((downloaded["corpus"] / "manifest.json").read_text())
    sel = downloaded["selection"]
    label = {c["wnid"]: k for k, c in enumerate(manifest["classes"])}
    wnids = sorted(set(sel.loc[sel["served"] == "ok", "wnid"]), key=label.get)
    assert [label[w] for w in wnids] == list(range(len(wnids))), "the test selection covers classes 0..k-1"
    pd.DataFrame({"label": [label[w] for w in wnids], "wnid": wnids,
                  "name": [manifest["classes"][label[w]]["name"] for w in wnids]}).to_parquet(tmp_path / "c.parquet")
    report = split(downloaded["dir"], tmp_path / "c.parquet",
                   {"train": 0.6, "val": 0.2, "test": 0.2, "shard_size": 8, "seed": 0, "images_per_class": 50},
                   tmp_path / "ds")
    assert sum(report["kept"].values()) == 27 and report["samples"]["undecodable"] == 0
    counts = pd.read_csv(tmp_path / "ds" / "counts.csv")
    assert counts["n"].sum() == 27
