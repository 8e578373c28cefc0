"""bench/curate_scale.py at a tiny size: its generator and the whole curation chain (steps
1-8) through the real ``imagenot curate`` CLI, as rules/curate.smk runs it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import curate_scale  # noqa: E402


def test_curate_scale_chain_tiny(curate_files, tmp_path):
    n, parts = 3000, 2
    res = curate_scale.run_chain(tmp_path, n, parts, seed=1, n_classes=2, images_per_class=5, min_captions=5,
                                 synsets=curate_files["synsets"], vocab=curate_files["vocab"], n_synsets=40,
                                 distinct_share=0.1, resume_check=False)
    gen, steps, p = res["gen"], res["steps"], res["paths"]
    # the generated shard set: LAION's columns, every row accounted for by step 1
    assert len(gen["paths"]) == parts
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in gen["paths"]) == n
    assert {"URL", "TEXT", "WIDTH", "HEIGHT", "similarity", "punsafe", "pwatermark", "NSFW", "LICENSE"} <= \
        set(pq.read_schema(gen["paths"][0]).names)
    reports = [json.loads(m.with_suffix(".json").read_text()) for m in p["matches"]]
    assert sum(r["rows_read"] for r in reports) == n
    assert sum(r["rows_skipped"]["punsafe_above_max"] for r in reports) == gen["skips"]["punsafe_above_0.5"]
    assert 0 < sum(r["rows_matched"] for r in reports) < sum(r["rows_valid"] for r in reports)
    # every step ran as its own process and wrote its outputs
    assert [s["name"] for s in steps] == ["match 00000", "match 00001", "candidates", "captions",
                                          "text-similarity", "select"]
    assert all(s["wall"] > 0 and s["rss"] > 0 for s in steps)
    for key in ("matches", "candidates", "captions", "text_similarity", "classes", "selection", "table"):
        for f in (p[key] if key == "matches" else [p[key]]):
            assert Path(f).is_file(), f
    for f in (p["candidates"], p["captions"], *p["matches"]):
        assert Path(f).with_suffix(".json").is_file()
    classes = pd.read_parquet(p["classes"])
    assert len(classes) == 2 and (classes["n_selected"] >= 1).all()
    assert len(pd.read_parquet(p["selection"])) >= 2
    # the filter table: steps 1-8, counts never grow, each step starts where the last ended
    t = pd.read_csv(p["table"])
    assert t["step"].tolist() == list(range(1, 9))
    assert (t["synsets_out"] <= t["synsets_in"]).all() and (t["captions_out"] <= t["captions_in"]).all()
    assert t["synsets_out"].is_monotonic_decreasing and t["captions_out"].is_monotonic_decreasing
    assert (t["synsets_in"].iloc[1:].to_numpy() == t["synsets_out"].iloc[:-1].to_numpy()).all()
    assert t["synsets_out"].iloc[-1] == 2
    # step 7 embeds each distinct caption once: far fewer than the captions it scores
    ts = res["text_sim"]
    assert ts["captions"] == t.loc[t["step"] == 6, "captions_out"].item()
    assert 0 < ts["distinct_captions_embedded"] < ts["captions"]
    text = curate_scale.report(res, ["bench/curate_scale.py", "--n", str(n)], 1.0)
    assert "curation_filters.csv" in text and "baseline ratio" in text
