"""The demo corpus: deterministic, LAION-shaped, and full of bait for every curation filter."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import DEMO_TEST_PARAMS

LAION_COLUMNS = {"URL": "string", "TEXT": "string", "WIDTH": "int64", "HEIGHT": "int64", "similarity": "double",
                 "punsafe": "float", "pwatermark": "float", "NSFW": "string", "LICENSE": "string"}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _tokens(text: str) -> str:
    return " " + " ".join(re.findall(r"[a-z0-9]+", text.lower())) + " "


@pytest.fixture(scope="module")
def manifest(demo_corpus) -> dict:
    return json.loads((demo_corpus / "manifest.json").read_text())


@pytest.fixture(scope="module")
def metadata(demo_corpus, manifest):
    import pandas as pd

    return pd.concat([pq.read_table(demo_corpus / p).to_pandas() for p in manifest["parts"]], ignore_index=True)


@pytest.fixture(scope="module")
def truth(demo_corpus):
    return pq.read_table(demo_corpus / "truth.parquet").to_pandas()


@pytest.fixture(scope="module")
def wn(wordnet_root):
    from imagenot import wordnet

    return wordnet.load(wordnet_root)


def test_same_params_same_bytes_other_seed_other_corpus(demo_corpus, manifest, wordnet_root, tmp_path):
    from imagenot.corpus import demo

    params = manifest["params"]
    demo.generate(wordnet_root, tmp_path / "again", params)
    assert _files(tmp_path / "again") == _files(demo_corpus)

    demo.generate(wordnet_root, tmp_path / "other", {**params, "seed": params["seed"] + 1})
    other = json.loads((tmp_path / "other" / "manifest.json").read_text())
    assert {c["wnid"] for c in other["classes"]} != {c["wnid"] for c in manifest["classes"]}


def test_rerun_keeps_complete_corpus(demo_corpus, manifest, wordnet_root):
    from imagenot.corpus import demo

    before = {p: p.stat().st_mtime_ns for p in demo_corpus.rglob("*") if p.is_file()}
    assert demo.generate(wordnet_root, demo_corpus, manifest["params"]) == manifest
    assert {p: p.stat().st_mtime_ns for p in demo_corpus.rglob("*") if p.is_file()} == before


def test_laion_columns_parts_urls_and_images(demo_corpus, manifest, metadata):
    p = manifest["params"]
    assert manifest["parts"] == [f"metadata/part-{i:05d}.parquet" for i in range(p["n_parts"])]
    for part in manifest["parts"]:
        f = pq.ParquetFile(demo_corpus / part)
        types = {field.name: str(field.type) for field in f.schema_arrow}
        for col, typ in LAION_COLUMNS.items():
            assert types.get(col) == typ, (part, col)
        assert f.metadata.num_rows > 0
        assert max(f.metadata.row_group(i).num_rows for i in range(f.metadata.num_row_groups)) <= 256
    assert len(metadata) == manifest["n_rows"]
    assert metadata["URL"].str.fullmatch(rf"http://127\.0\.0\.1:{p['port']}/images/\d{{6}}\.jpg").all()
    assert set(metadata["NSFW"]) <= {"UNLIKELY", "UNSURE", "NSFW"}
    assert metadata["similarity"].between(0.2, 0.5).all()
    assert (metadata["punsafe"] > 0.5).sum() >= 2
    assert metadata["TEXT"].isna().sum() >= 1

    missing, corrupt, noai = set(manifest["missing"]), set(manifest["corrupt"]), set(manifest["noai"])
    assert missing and corrupt and noai and not (missing & corrupt) and not (noai & (missing | corrupt))
    for url in metadata["URL"]:
        name = url.split("/", 3)[3]
        path = demo_corpus / name
        if name in missing:
            assert not path.exists()
            continue
        data = path.read_bytes()
        if name in corrupt:
            with pytest.raises(Exception):
                Image.open(io.BytesIO(data)).load()
        else:
            im = Image.open(io.BytesIO(data))
            assert im.format == "JPEG" and im.size == (p["image_size"], p["image_size"])


def test_visual_classes_are_real_clean_leaf_synsets_outside_imagenet(manifest, wn):
    import profanity_check

    from imagenot.corpus.demo import imagenet_wnids
    from imagenot.wordnet import synset_from_wnid

    imagenet = set(imagenet_wnids())
    classes = manifest["classes"]
    assert len(classes) == DEMO_TEST_PARAMS["n_classes"]
    for c in classes:
        s = synset_from_wnid(wn, c["wnid"])
        assert s.name() == c["name"] and c["lemma"] in s.lemma_names()
        assert wn.synsets(c["lemma"], "n") == [s], "monosemous"
        assert not s.hyponyms() and not s.instance_hyponyms(), "a leaf"
        assert c["wnid"] not in imagenet
        assert profanity_check.predict_prob([f"{c['lemma']} {s.definition()}"])[0] < 0.5
        assert c["n_captions"] >= DEMO_TEST_PARAMS["images_per_class"]
    signatures = [tuple(sorted(c["signature"].items())) for c in classes]
    assert len(set(signatures)) == len(signatures)


def test_bait_for_every_curation_filter(manifest, truth, wn):
    import profanity_check

    from imagenot.corpus.demo import imagenet_wnids
    from imagenot.wordnet import synset_from_wnid

    groups = {}
    for d in manifest["distractors"]:
        groups.setdefault(d["group"], []).append(d)
    assert set(groups) == {"imagenet", "rare", "ancestor", "nsfw", "low_relevance"}
    imagenet = set(imagenet_wnids())
    n_captions = truth.explode("caption_wnids")["caption_wnids"].value_counts()

    # step 2: captions of ImageNet-1k classes
    for d in groups["imagenet"]:
        assert d["wnid"] in imagenet and n_captions[d["wnid"]] >= 20
    # step 3: too rare
    for d in groups["rare"]:
        assert 1 <= n_captions[d["wnid"]] < 20
    # step 4: an ancestor and its descendant, both named often enough
    for d in groups["ancestor"]:
        anc = synset_from_wnid(wn, d["wnid"])
        desc = synset_from_wnid(wn, d["descendant"])
        assert anc in desc.closure(lambda s: s.hypernyms())
        assert n_captions[d["wnid"]] >= 20 and n_captions[d["descendant"]] >= 20
    # step 5: the NSFW text classifier flags these synsets
    for d in groups["nsfw"]:
        assert profanity_check.predict_prob([d["lemma"].replace("_", " ")])[0] >= 0.5
        assert profanity_check.predict_prob([f"{d['lemma']} {d['gloss']}"])[0] >= 0.5
        assert n_captions[d["wnid"]] >= 20
    # step 6: captions naming two visual classes
    lemma = {c["wnid"]: c["lemma"].replace("_", " ") for c in manifest["classes"]}
    two = truth[truth["caption_kind"] == "two_synsets"]
    assert len(two) >= len(manifest["classes"])
    for text, wnids in zip(two["text"], two["caption_wnids"]):
        assert len(wnids) == 2 and all(w in lemma for w in wnids)
    # step 7: synsets named only in unrelated contexts, and low-relevance captions of classes
    for d in groups["low_relevance"]:
        named = truth[truth["group"] == "low_relevance"]["caption_wnids"].map(list)
        assert sum(1 for w in named if w == [d["wnid"]]) >= 20
    low = truth[(truth["group"] == "class") & (truth["caption_kind"] == "low_relevance")]
    assert len(low) >= len(manifest["classes"])
    # gloss paraphrases
    para = truth[truth["caption_kind"] == "paraphrase"]
    gloss = {c["wnid"]: c["gloss"].split(";")[0].strip() for c in manifest["classes"]}
    assert len(para) > 0 and all(gloss[w].lower() in t.lower() for t, w in zip(para["text"], para["owner_wnid"]))


def test_caption_forms(manifest, truth, wn):
    """Plurals (regular and from noun.exc), multi-word lemmas, case and punctuation."""
    from imagenot.corpus.demo import normalize

    cls = truth[truth["group"] == "class"]
    plural = cls[cls["form"] == "plural"]
    assert len(plural) >= len(manifest["classes"])
    irregular = cls[cls["form"] == "irregular"]
    assert len(irregular) > 0
    exc = {}
    with wn.open("noun.exc") as fh:
        for line in fh:
            form, *bases = line.split()
            exc[form] = bases
    by_wnid = {c["wnid"]: c for c in manifest["classes"]}
    for text, w in zip(irregular["text"], irregular["owner_wnid"]):
        c = by_wnid[w]
        assert c["irregular_plurals"] and any(f" {f} " in _tokens(text) for f in c["irregular_plurals"])
        assert all(c["lemma"] in exc[f] for f in c["irregular_plurals"])
    for text, w in zip(plural["text"], plural["owner_wnid"]):
        forms = by_wnid[w]["plurals"]
        assert any(f" {f} " in _tokens(text) for f in forms)
        assert all(wn.morphy(f.replace(" ", "_"), "n") == by_wnid[w]["lemma"] for f in forms)
    assert any("_" in c["lemma"] for c in manifest["classes"]), "a multi-word lemma"
    texts = cls["text"].tolist()
    assert any(t != t.lower() for t in texts) and any(t == t.upper() for t in texts)
    assert any(re.search(r"[!|:,#()\"]", t) for t in texts)
    # every caption names its synset under the caption normalisation the matcher uses
    for text, w in zip(cls["text"], cls["owner_wnid"]):
        c = by_wnid[w]
        forms = [c["lemma"].replace("_", " ")] + c["plurals"] + c["irregular_plurals"] + c["synonyms"]
        assert any(f" {normalize(f)} " in f" {normalize(text)} " for f in forms), text


def test_similarity_is_higher_for_matching_images_and_label_noise(manifest, metadata, truth):
    merged = truth.merge(metadata[["SAMPLE_ID", "similarity"]], on="SAMPLE_ID")
    cls = merged[merged["group"] == "class"]
    match = cls["image_wnid"] == cls["owner_wnid"]
    assert cls.loc[match, "similarity"].mean() > cls.loc[~match, "similarity"].mean() + 0.02
    noise = (~match).mean()
    assert 0.1 < noise < 0.4  # label_noise 0.25 of the test corpus


def test_missing_wordnet_and_bad_params(tmp_path):
    from imagenot.corpus import demo
    from imagenot.io import InputError

    with pytest.raises(InputError, match="WordNet not found.*wordnet.root"):
        demo.generate(tmp_path / "no_nltk_data", tmp_path / "out", {})
    with pytest.raises(InputError, match="unknown key 'n_class'"):
        demo.parse_params('{"n_class": 3}')
    with pytest.raises(InputError, match="corpus.demo.label_noise"):
        demo.parse_params({"label_noise": 2})
    assert not (tmp_path / "out").exists()


def test_cli_reports_bad_params_with_exit_2(monkeypatch, tmp_path, capsys):
    from imagenot import cli

    rc = cli.main(["demo-corpus", "--wordnet-root", str(tmp_path), "--out-dir", str(tmp_path / "d"),
                   "--params", '{"image_size": 4}'])
    assert rc == 2
    assert "corpus.demo.image_size" in capsys.readouterr().err
