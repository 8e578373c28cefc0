"""Steps 2-6 on hand-written captions with the real WordNet (test subset) and real filters."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imagenot.curate import filters
from imagenot.curate import match as m
from imagenot.io import InputError

# (caption, copies, part)
CAPTIONS = [
    ("a red kayak at sunrise", 25, 0),  # survives
    ("wooden boat", 25, 0),  # boat is an ancestor of kayak: step 4
    ("bagpipe music", 5, 0),  # too few captions: step 3
    ("wombat in the zoo", 25, 0),  # ImageNet-1k synset: step 2
    ("hedgehog close-up", 25, 1),  # shares the lemma 'hedgehog' with ImageNet's porcupine: step 2
    ("ukulele lessons", 25, 1),  # survives
    ("igloo and snowman", 25, 1),  # names two candidates: dropped at step 6
    ("snowman", 10, 1),  # exactly one: kept at step 6
    ("cute ass", 25, 1),  # every sense of 'ass' goes at step 2 or 5 (NSFW)
    ("windmill", 25, 1),  # two senses, both candidates: dropped at step 6
]
PARAMS = {"min_captions_per_synset": 20, "exclude_imagenet": True, "nsfw_threshold": 0.5,
          "n_classes": 2, "images_per_class": 3}


@pytest.fixture(scope="module")
def match_parts(tmp_path_factory, curate_matcher):
    d = tmp_path_factory.mktemp("filters")
    parts = []
    for p in (0, 1):
        rows = []
        for text, copies, part in CAPTIONS:
            if part == p:
                rows += [{"URL": f"http://e/{p}/{len(rows) + i}.jpg", "TEXT": text, "similarity": 0.3}
                         for i in range(copies)]
        pq.write_table(pa.Table.from_pylist(rows), d / f"part-{p}.parquet")
        out = d / f"m{p}.parquet"
        m.match_shard(d / f"part-{p}.parquet", curate_matcher, m.parse_columns(None), 0.5, out, f"demo/{p}")
        parts.append(out)
    return parts


@pytest.fixture(scope="module")
def candidates_run(match_parts, curate_files, tmp_path_factory):
    d = tmp_path_factory.mktemp("cand")
    report = filters.candidates(match_parts, curate_files["synsets"], PARAMS, d / "candidates.parquet",
                                d / "candidates.json")
    return pd.read_parquet(d / "candidates.parquet"), report, d / "candidates.parquet"


def status(cand, names):
    return {names[w]: r for w, r in zip(cand["wnid"], cand["removed_at"])}


def test_candidates_steps(candidates_run, curate_names):
    cand, report, _ = candidates_run
    st = status(cand, curate_names)
    assert list(cand.columns) == ["wnid", "name", "gloss", "n_captions", "removed_at", "reason"]
    assert st["wombat.n.01"] == "imagenet"
    assert st["porcupine.n.01"] == "imagenet"
    assert st["hedgehog.n.02"] == "imagenet"
    reason = cand.set_index("name").at["hedgehog.n.02", "reason"]
    assert "hedgehog" in reason and "n02346627" in reason  # names the ImageNet synset it shares with
    assert st["bagpipe.n.01"] == "min_captions"
    assert st["boat.n.01"] == "subtree_leaves"
    assert "kayak" in cand.set_index("name").at["boat.n.01", "reason"]
    for s in ("ass.n.02", "ass.n.03", "buttocks.n.01"):
        assert st[s] == "nsfw", s
    assert "'ass'" in cand.set_index("name").at["ass.n.02", "reason"]
    assert st["fuck.n.01"] == "imagenet"  # lemma 'screw' is ImageNet's screw (n04153751)
    for s in ("kayak.n.01", "uke.n.01", "igloo.n.01", "snowman.n.01", "windmill.n.01", "windmill.n.02"):
        assert st[s] is None, s
    n = cand.set_index("name")["n_captions"]
    assert n["snowman.n.01"] == 35 and n["igloo.n.01"] == 25 and n["bagpipe.n.01"] == 5
    assert set(cand["removed_at"].dropna()) <= {"imagenet", "min_captions", "subtree_leaves", "nsfw"}

    steps = {r["step"]: r for r in report["steps"]}
    assert steps[1]["captions_in"] == 215 and steps[1]["captions_out"] == 215
    assert steps[1]["synsets_out"] == len(cand)
    assert steps[2]["captions_out"] == 215 - 25 - 25  # wombat, hedgehog captions name nothing else
    assert steps[3]["captions_out"] == 165 - 5
    assert steps[4]["captions_out"] == 160 - 25
    assert steps[5]["captions_out"] == 135 - 25
    for k in (2, 3, 4, 5):
        assert steps[k]["synsets_in"] == steps[k - 1]["synsets_out"]
        assert steps[k]["synsets_in"] - steps[k]["synsets_removed"] == steps[k]["synsets_out"]
        assert steps[k]["captions_in"] == steps[k - 1]["captions_out"]


def test_candidates_parameters(match_parts, curate_files, curate_names, tmp_path):
    params = dict(PARAMS, exclude_imagenet=False, nsfw_threshold=1.0, min_captions_per_synset=1)
    filters.candidates(match_parts, curate_files["synsets"], params, tmp_path / "c.parquet", tmp_path / "c.json")
    st = status(pd.read_parquet(tmp_path / "c.parquet"), curate_names)
    assert st["wombat.n.01"] is None and st["bagpipe.n.01"] is None and st["ass.n.02"] is None


def test_captions_exactly_one_candidate(candidates_run, match_parts, curate_names, tmp_path):
    _, _, cand_path = candidates_run
    rep = filters.captions(match_parts, cand_path, tmp_path / "captions.parquet", tmp_path / "captions.json")
    df = pd.read_parquet(tmp_path / "captions.parquet")
    assert list(df.columns) == ["key", "url", "text", "similarity", "wnid"]
    got = df.assign(name=df["wnid"].map(curate_names)).groupby("name").size().to_dict()
    assert got == {"kayak.n.01": 25, "uke.n.01": 25, "snowman.n.01": 10}
    assert set(df.loc[df["wnid"] == curate_names["snowman.n.01"], "text"]) == {"snowman"}
    assert df["key"].is_unique and df["key"].str.match(r"demo/[01]/\d+$").all()
    assert rep["captions_in"] == 215
    assert rep["captions_one_candidate"] == 60
    assert rep["captions_several_candidates"] == 50  # igloo+snowman, windmill x2 senses
    assert rep["captions_no_candidate"] == 215 - 60 - 50
    assert rep["step"]["synsets_out"] == 3
    assert json.loads((tmp_path / "captions.json").read_text())["step"]["captions_out"] == 60


def test_ancestor_blockers_on_a_dag():
    parents = {"leaf": ["mid"], "mid": ["root"], "other": ["root"], "root": [], "deep": ["leaf"]}
    blockers = filters.ancestor_blockers(["leaf", "mid", "other"], parents)
    assert set(blockers) == {"mid", "root"}
    assert filters.ancestor_blockers(["leaf", "deep"], parents)["leaf"] == "deep"


def test_candidates_bad_inputs(match_parts, curate_files, tmp_path):
    with pytest.raises(InputError, match="lacks column"):
        pq.write_table(pa.table({"key": ["k"]}), tmp_path / "nowids.parquet")
        filters.candidates([tmp_path / "nowids.parquet"], curate_files["synsets"], PARAMS,
                           tmp_path / "c.parquet", tmp_path / "c.json")
    with pytest.raises(InputError, match="absent from"):
        bogus = pa.table({"key": ["k"], "url": ["u"], "text": ["t"], "wnids": [["n99999999"]]})
        pq.write_table(bogus, tmp_path / "bogus.parquet")
        filters.candidates([tmp_path / "bogus.parquet"], curate_files["synsets"], PARAMS,
                           tmp_path / "c.parquet", tmp_path / "c.json")
    with pytest.raises(InputError, match="no such file"):
        filters.candidates([tmp_path / "missing.parquet"], curate_files["synsets"], PARAMS,
                           tmp_path / "c.parquet", tmp_path / "c.json")
    assert not (tmp_path / "c.parquet").exists()


def test_empty_parts_flow_through(tmp_path, curate_files, curate_matcher):
    pq.write_table(pa.table({"URL": pa.array([], pa.string()), "TEXT": pa.array([], pa.string())}),
                   tmp_path / "p.parquet")
    r = m.match_shard(tmp_path / "p.parquet", curate_matcher, m.parse_columns(None), 0.5, tmp_path / "m.parquet", "k")
    assert r["rows_read"] == 0 and pq.read_table(tmp_path / "m.parquet").schema.equals(m.MATCH_SCHEMA)
    rep = filters.candidates([tmp_path / "m.parquet"], curate_files["synsets"], PARAMS, tmp_path / "c.parquet",
                             tmp_path / "c.json")
    assert rep["candidates_out"] == 0 and len(pd.read_parquet(tmp_path / "c.parquet")) == 0
    rep = filters.captions([tmp_path / "m.parquet"], tmp_path / "c.parquet", tmp_path / "cap.parquet",
                           tmp_path / "cap.json")
    assert rep["captions_one_candidate"] == 0
    assert pq.read_table(tmp_path / "cap.parquet").schema.equals(filters.CAPTIONS_SCHEMA)
