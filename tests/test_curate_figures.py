"""Table 3 (WordNet subtree statistics) and the curation figures 4, 5, 6, 10, 11, 12."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imagenot.curate import figures, subtree
from imagenot.io import InputError
from imagenot.wordnet import wnid

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "config" / "imagenot_classes.txt"

#: Table 3 of the paper (Appendix B.1): ImageNot and ImageNet (ILSVRC-2012) columns
PAPER = {
    "ImageNot": {"nodes": 1877, "edges": 1899, "min_depth": 2, "median_depth": 8, "max_depth": 18,
                 "density": "5.39e-04", "modularity": 0.94, "synset_overlap": 0.0, "parent_overlap": 0.23},
    "ImageNet": {"nodes": 1860, "edges": 1937, "min_depth": 4, "median_depth": 10, "max_depth": 17,
                 "density": "5.60e-04", "modularity": 0.93, "synset_overlap": 0.0, "parent_overlap": 0.23},
}


def write_list(path: Path, reader, names) -> Path:
    path.write_text("".join(wnid(reader.synset(n)) + f"  # {n}\n" for n in names))
    return path


def tree(reader, names):
    return subtree.build_subtree([reader.synset(n) for n in names])


# ---------------------------------------------------------------------------------------
# Table 3


@pytest.fixture(scope="module")
def paper_table(curate_reader):
    lists = [subtree.read_class_list(PUBLISHED), subtree.read_class_list(subtree.BUILTIN_IMAGENET)]
    trees = [subtree.build_subtree(subtree.resolve(curate_reader, w)) for w in lists]
    return subtree.table3(trees, ["ImageNot", "ImageNet"]).set_index("key")


def test_table3_imagenet_column_reproduces_the_paper(paper_table):
    col, paper = paper_table["ImageNet"], PAPER["ImageNet"]
    # unambiguous definitions: exact
    for key in ("nodes", "edges", "min_depth", "median_depth", "max_depth"):
        assert col[key] == paper[key], key
    assert f"{col['density']:.2e}" == paper["density"]
    assert round(col["modularity"], 2) == paper["modularity"]
    assert col["synset_overlap"] == paper["synset_overlap"]
    # parent overlap depends on the ImageNot list (the published list, whose subtree is not
    # exactly the paper's) and on the overlap formula: Dice share, within a point of 23%
    assert abs(col["parent_overlap"] - paper["parent_overlap"]) < 0.01
    assert col["parent_overlap"] == paper_table.loc["parent_overlap", "ImageNot"]  # symmetric


def test_table3_published_imagenot_column_is_close_to_the_paper(paper_table):
    col, paper = paper_table["ImageNot"], PAPER["ImageNot"]
    for key in ("min_depth", "median_depth", "max_depth"):
        assert col[key] == paper[key], key
    assert round(col["modularity"], 2) == paper["modularity"]
    assert col["synset_overlap"] == 0.0
    # the published list spans 80 more nodes and edges than the paper's Table 3 reports
    for key in ("nodes", "edges"):
        assert abs(col[key] / paper[key] - 1) < 0.05, key
    ratio = paper_table["ImageNot/ImageNet"]
    assert ratio["min_depth"] == 0.5 and ratio["median_depth"] == 0.8
    assert pd.isna(ratio["parent_overlap"])


def test_subtree_of_hand_made_lists(curate_reader):
    r = curate_reader
    # entity -> physical_entity -> object and entity -> abstraction: 4 nodes, 3 edges
    t = tree(r, ["object.n.01", "abstraction.n.06"])
    s = subtree.subtree_stats(t)
    assert (s["nodes"], s["edges"], s["min_depth"], s["median_depth"], s["max_depth"]) == (4, 3, 1, 1.5, 2)
    assert s["density"] == pytest.approx(3 / (4 * 3))
    assert s["leaf_classes"] == 2 and s["parents"] == 2
    # siblings in the subtree: abstraction shares entity with physical_entity; object is alone
    assert t.siblings() == {wnid(r.synset("object.n.01")): 0, wnid(r.synset("abstraction.n.06")): 1}

    # dog has two parents (canine, domestic_animal): paths of 9 and 14 synsets sharing
    # entity..animal and dog (8) -> 15 nodes; 8 + 13 - 6 shared edges = 15 edges; depth 8
    s = subtree.subtree_stats(tree(r, ["dog.n.01"]))
    assert (s["nodes"], s["edges"], s["min_depth"], s["max_depth"], s["parents"]) == (15, 15, 8, 8, 2)
    # a class that is an ancestor of another adds no node and is not a leaf
    s = subtree.subtree_stats(tree(r, ["dog.n.01", "animal.n.01"]))
    assert (s["nodes"], s["edges"], s["min_depth"], s["classes"], s["leaf_classes"]) == (15, 15, 6, 2, 1)


def test_overlaps_are_dice_shares_against_the_last_list(curate_reader):
    a = tree(curate_reader, ["dog.n.01", "cat.n.01"])  # parents canine, domestic_animal, feline
    b = tree(curate_reader, ["dog.n.01", "wolf.n.01"])  # parents canine, domestic_animal
    df = subtree.table3([a, b], ["A", "B"]).set_index("key")
    assert df.loc["synset_overlap", "A"] == df.loc["synset_overlap", "B"] == pytest.approx(2 * 1 / 4)
    assert df.loc["parent_overlap", "A"] == pytest.approx(2 * 2 / 5)
    assert df.loc["shared_parents", "A"] == 2
    assert df.loc["nodes", "A/B"] == pytest.approx(17 / 16)
    # three lists: overlaps of the first two against the reference; none for the reference
    c = tree(curate_reader, ["cat.n.01"])
    df3 = subtree.table3([a, b, c], ["A", "B", "C"]).set_index("key")
    assert "A/B" not in df3.columns
    assert df3.loc["synset_overlap", "A"] == pytest.approx(2 / 3)
    assert df3.loc["synset_overlap", "B"] == 0.0
    assert pd.isna(df3.loc["synset_overlap", "C"])


def test_modularity_does_not_depend_on_list_order(curate_reader):
    names = ["dog.n.01", "cat.n.01", "wolf.n.01", "kayak.n.01", "igloo.n.01", "potato.n.01", "city.n.01"]
    values = {subtree.modularity(tree(curate_reader, p).graph) for p in itertools.islice(
        itertools.permutations(names), 0, 5000, 997)}
    assert len(values) == 1


def test_unknown_wnid_is_an_error_naming_it(curate_reader, tmp_path):
    f = tmp_path / "classes.txt"
    f.write_text("n02084071\nn00000042\n")
    with pytest.raises(InputError, match=r"classes\.txt.*n00000042"):
        subtree.resolve(curate_reader, subtree.read_class_list(f), source=str(f))
    with pytest.raises(InputError, match="v01166351"):
        subtree.resolve(curate_reader, ["n02084071", "v01166351"])
    f.write_text("n02084071\ndog\n")
    with pytest.raises(InputError, match=r"line 2: 'dog' is not a wnid"):
        subtree.read_class_list(f)
    f.write_text("n02084071\nn02084071\n")
    with pytest.raises(InputError, match="more than once: n02084071"):
        subtree.read_class_list(f)
    pq.write_table(pa.table({"label": [0]}), tmp_path / "c.parquet")
    with pytest.raises(InputError, match="no 'wnid' column"):
        subtree.read_class_list(tmp_path / "c.parquet")


def test_table3_cli_writes_csv_markdown_latex(imagenot_cli, wordnet_root, curate_reader, tmp_path, capsys):
    a = write_list(tmp_path / "a.txt", curate_reader, ["dog.n.01", "cat.n.01"])
    pq.write_table(pa.table({"wnid": [wnid(curate_reader.synset(n)) for n in ("dog.n.01", "wolf.n.01")]}),
                   tmp_path / "b.parquet")
    outs = [tmp_path / f"t3.{ext}" for ext in ("csv", "md", "tex")]
    rc = imagenot_cli(["table3", "--wordnet-root", str(wordnet_root), "--classes", str(a),
                       "--classes", str(tmp_path / "b.parquet"), "--names", "Mine", "Other",
                       *[x for o in outs for x in ("--out", str(o))]])
    assert rc == 0
    csv = pd.read_csv(outs[0]).set_index("key")
    assert list(csv.columns) == ["stat", "Mine", "Other", "Mine/Other"]
    assert csv.loc["nodes", "Mine"] == 17 and csv.loc["parent_overlap", "Other"] == pytest.approx(0.8)
    md = outs[1].read_text()
    assert "| Nodes | 17 | 16 | 1.06 |" in md and "| Parent Overlap | 80.0% | 80.0% | – |" in md
    tex = outs[2].read_text()
    assert r"Parent Overlap & 80.0\% & 80.0\% & -- \\" in tex and r"\begin{tabular}{lrrr}" in tex
    # an unknown wnid: exit code 2, the wnid named
    bad = tmp_path / "bad.txt"
    bad.write_text("n02084071\nn00000042\n")
    rc = imagenot_cli(["table3", "--wordnet-root", str(wordnet_root), "--classes", str(bad),
                       "--out", str(tmp_path / "x.csv")])
    assert rc == 2 and "n00000042" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


# ---------------------------------------------------------------------------------------
# figures


def assert_images(png: Path, pdf: Path):
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000


@pytest.fixture
def text_sim(tmp_path) -> Path:
    """A step-7 table: 5 classes, 12 URLs each, one URL repeated with a worse caption."""
    from imagenot.curate.embed import TEXT_SIM_SCHEMA

    rng = np.random.default_rng(0)
    rows = []
    for c in range(5):
        for i in range(12):
            rows.append({"key": f"k{c}_{i}", "url": f"http://x/{c}/{i}.jpg", "text": f"caption {i}",
                         "similarity": 0.3, "wnid": f"n0000000{c}", "text_sim": float(0.2 + 0.1 * c + 0.01 * i)})
        rows.append({"key": f"k{c}_dup", "url": f"http://x/{c}/0.jpg", "text": "worse", "similarity": 0.3,
                     "wnid": f"n0000000{c}", "text_sim": float(rng.uniform(-0.5, -0.1))})
    path = tmp_path / "text_similarity.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=TEXT_SIM_SCHEMA), path)
    return path


def test_fig4_and_fig5_from_text_similarity(imagenot_cli, text_sim, tmp_path):
    df = figures.read_text_similarity(text_sim)
    assert len(df) == 5 * 12 and df["text_sim"].min() >= 0.2  # the worse duplicate caption is dropped
    stats = figures.text_similarity_stats(df, top_n=3).set_index("wnid")
    # class 4: 0.6 + 0.01 i, i = 0..11: top 3 mean 0.6 + 0.10, min 0.6, median 0.655
    assert stats.loc["n00000004", "mean_top_n"] == pytest.approx(0.70)
    assert stats.loc["n00000004", "min"] == pytest.approx(0.60)
    assert stats.loc["n00000004", "median"] == pytest.approx(0.655)
    assert list(stats.index) == [f"n0000000{c}" for c in (4, 3, 2, 1, 0)]

    sel = tmp_path / "classes.parquet"
    pq.write_table(pa.table({"label": [0, 1], "wnid": ["n00000004", "n00000002"]}), sel)
    params = '{"top_n": 3, "threshold": 0.45, "model": "test-model"}'
    p4 = [tmp_path / "fig4.png", tmp_path / "fig4.pdf"]
    assert imagenot_cli(["curation-figures", "fig4", "--text-similarity", str(text_sim), "--classes", str(sel),
                         "--params", params, "--out-png", str(p4[0]), "--out-pdf", str(p4[1]),
                         "--out-csv", str(tmp_path / "fig4.csv")]) == 0
    assert_images(*p4)
    assert len(pd.read_csv(tmp_path / "fig4.csv")) == 5
    p5 = [tmp_path / "fig5.png", tmp_path / "fig5.pdf"]
    assert imagenot_cli(["curation-figures", "fig5", "--text-similarity", str(text_sim), "--classes", str(sel),
                         "--params", params, "--out-png", str(p5[0]), "--out-pdf", str(p5[1])]) == 0
    assert_images(*p5)
    with pytest.raises(InputError, match="n00000009"):
        figures.plot_fig5(df, ["n00000009"])


def test_fig11_and_fig12_from_class_lists(imagenot_cli, wordnet_root, curate_reader, tmp_path):
    a = write_list(tmp_path / "a.txt", curate_reader, ["dog.n.01", "cat.n.01", "kayak.n.01", "igloo.n.01"])
    b = write_list(tmp_path / "b.txt", curate_reader, ["wolf.n.01", "object.n.01", "abstraction.n.06"])
    for fig in ("fig11", "fig12"):
        out = [tmp_path / f"{fig}.png", tmp_path / f"{fig}.pdf"]
        assert imagenot_cli(["curation-figures", fig, "--wordnet-root", str(wordnet_root), "--classes", str(a),
                             "--classes", str(b), "--names", "A", "B", "--out-png", str(out[0]),
                             "--out-pdf", str(out[1]), "--out-csv", str(tmp_path / f"{fig}.csv")]) == 0
        assert_images(*out)
    table = pd.read_csv(tmp_path / "fig11.csv").set_index(["list", "name"])
    assert table.loc[("A", "dog.n.01"), "depth"] == 8
    assert table.loc[("B", "object.n.01"), "depth"] == 2
    assert table.loc[("B", "abstraction.n.06"), "siblings"] == 1


def test_image_similarity_matches_pairwise_means_and_plots(imagenot_cli, tmp_path):
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(4, 8))
    labels = np.repeat(np.arange(4), [5, 7, 3, 6])
    emb = centers[labels] + 0.7 * rng.normal(size=(len(labels), 8))
    np.savez(tmp_path / "a.npz", embeddings=emb.astype(np.float32), labels=labels)
    names = np.array([f"n{c:08d}" for c in labels])
    pq.write_table(pa.table({"wnid": names, "embedding": [list(map(float, e)) for e in emb * 3.0]}),
                   tmp_path / "b.parquet")  # unnormalised: the code normalises

    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sims = x @ x.T
    intra = [np.mean([sims[i, j] for i in np.flatnonzero(labels == c) for j in np.flatnonzero(labels == c)
                      if i != j]) for c in range(4)]
    inter = [np.mean([sims[np.ix_(labels == c, labels == d)].mean() for d in range(4) if d != c]) for c in range(4)]

    table = figures.image_similarity_table({"A": tmp_path / "a.npz", "B": tmp_path / "b.parquet"})
    for name in ("A", "B"):
        t = table[table["dataset"] == name]
        np.testing.assert_allclose(t["intra"], intra, rtol=1e-5)
        np.testing.assert_allclose(t["inter"], inter, rtol=1e-5)
        assert t["n_images"].tolist() == [5, 7, 3, 6]

    for fig in ("fig6", "fig10"):
        out = [tmp_path / f"{fig}.png", tmp_path / f"{fig}.pdf"]
        assert imagenot_cli(["curation-figures", fig, "--embeddings", f"A={tmp_path / 'a.npz'}",
                             "--embeddings", f"B={tmp_path / 'b.parquet'}",
                             "--out-png", str(out[0]), "--out-pdf", str(out[1])]) == 0
        assert_images(*out)
    with pytest.raises(InputError, match="figures.image_embeddings"):
        figures._embedding_specs([])
    np.savez(tmp_path / "bad.npz", embeddings=np.zeros((2, 3)), labels=np.array([0, 1]))
    with pytest.raises(InputError, match="bad.npz: 2 zero"):
        figures.class_sums(tmp_path / "bad.npz")


def test_fig6_fig10_are_opt_in_targets(tmp_path):
    import subprocess
    import sys

    import yaml

    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    np.savez(tmp_path / "e.npz", embeddings=np.ones((2, 3)), labels=np.array([0, 1]))
    cfg["figures"] = {"image_embeddings": {"imagenot": str(tmp_path / "e.npz")}}
    (tmp_path / "emb.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "-n", "--directory",
           str(tmp_path)]
    plain = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    emb = subprocess.run(cmd + ["--configfile", str(tmp_path / "emb.yaml")], capture_output=True, text=True,
                         timeout=300)
    assert plain.returncode == 0 and emb.returncode == 0, (plain.stderr + emb.stderr)[-3000:]
    plain, emb = plain.stdout + plain.stderr, emb.stdout + emb.stderr
    for rule in ("table3", "table3_published", "fig4", "fig5", "fig11", "fig12"):
        assert f"rule {rule}:" in plain
    assert "rule fig6:" not in plain and "rule fig10:" not in plain
    assert "rule fig6:" in emb and "rule fig10:" in emb
