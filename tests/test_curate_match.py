"""Step 1: vocabulary, tokenizer, n-gram matcher and the shard job."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imagenot.curate import match as m
from imagenot.curate import vocab as v
from imagenot.io import InputError


def names(matcher, names_of, text):
    return sorted(names_of[w] for w in matcher.match(text))


# ---------------------------------------------------------------------------------------
# vocabulary


def test_synset_table(curate_tables, curate_reader, curate_names):
    synsets, _ = curate_tables
    row = synsets.set_index("wnid").loc["n02084071"]  # dog.n.01, an ancestor of ImageNet breeds
    assert row["name"] == "dog.n.01"
    assert list(row["lemmas"]) == ["dog", "domestic_dog", "Canis_familiaris"]
    assert row["gloss"].startswith("a member of the genus Canis")
    assert sorted(row["hypernyms"]) == ["n01317541", "n02083346"]  # domestic animal, canine
    # depth is WordNet's min_depth, instance hypernyms included
    for name in ("dog.n.01", "kayak.n.01", "entity.n.01", "governor_general.n.01"):
        w = curate_names[name]
        assert synsets.set_index("wnid").at[w, "depth"] == curate_reader.synset(name).min_depth()
    assert synsets["wnid"].is_unique and synsets["wnid"].str.fullmatch(r"n\d{8}").all()


def test_vocab_surfaces(curate_tables, curate_names):
    _, voc = curate_tables
    by = voc.groupby("surface")["wnid"].apply(set)
    gr = curate_names["golden_retriever.n.01"]
    assert gr in by["golden retriever"] and gr in by["golden retrievers"]  # multiword plural
    assert curate_names["mouse.n.01"] in by["mice"]  # irregular, from noun.exc
    assert curate_names["goose.n.01"] in by["geese"]
    assert curate_names["governor_general.n.01"] in by["governors general"]  # noun.exc multiword
    assert curate_names["city.n.01"] in by["cities"]  # y -> ies
    assert curate_names["box.n.01"] in by["boxes"]  # x -> es
    assert curate_names["potato.n.01"] in by["potatoes"]  # o -> oes
    assert "n03590841" in by["jack o lanterns"]  # ImageNet's jack-o'-lantern: punctuation normalised
    assert "vitamin a" in by and "a" not in by  # function word alone is not a surface
    assert not any(s != s.lower() or "  " in s or "_" in s or "-" in s for s in by.index)


@pytest.mark.parametrize("word,plurals", [
    ("dog", ["dogs"]), ("glass", ["glasses"]), ("church", ["churches"]), ("city", ["cities"]),
    ("day", ["days"]), ("potato", ["potatos", "potatoes"]), ("radio", ["radios"]), ("x", []), ("4x4", []),
])
def test_pluralize(word, plurals):
    assert v.pluralize(word) == plurals


# ---------------------------------------------------------------------------------------
# matcher


def test_tokenize_and_normalize():
    assert m.tokenize("Golden-Retriever, PUPPY!!") == ["golden", "retriever", "puppy"]
    assert m.tokenize("Café crème") == ["cafe", "creme"]
    assert m.tokenize("snake_case & 4x4") == ["snake", "case", "4x4"]
    assert m.normalize("  Jack-o'-lantern ") == "jack o lantern"
    assert m.tokenize("") == []


@pytest.mark.parametrize("text,expected", [
    ("Golden-Retriever", ["golden_retriever.n.01"]),
    ("GOLDEN RETRIEVERS on the beach", ["golden_retriever.n.01"]),  # case, plural of a multiword
    ("golden...retriever!", ["golden_retriever.n.01"]),  # punctuation-insensitive
    ("two MICE", ["mouse.n.01", "mouse.n.04"]),  # irregular plural, all senses
    ("a flock of geese", ["goose.n.01"]),
    ("the governors general met", ["governor_general.n.01"]),
    ("paid", []),  # 'ai' (artificial intelligence, three-toed sloth) only as a whole word
    ("AI art", ["artificial_intelligence.n.01", "three-toed_sloth.n.01"]),
    ("category", ["class.n.01"]),  # 'cat' never inside 'category'
    ("Café de Paris", ["cafe.n.01"]),  # accents stripped like the lemma
    ("kayaks", ["kayak.n.01"]),
    ("a Jack-O'-Lantern", ["friar's_lantern.n.01", "jack-o'-lantern.n.02"]),
    ("sea lion", ["sea_lion.n.01"]),  # leftmost-longest: not also 'lion'
    ("vitamin A tablets", ["vitamin_a.n.01"]),
    ("a cat", ["big_cat.n.01", "cat.n.01"]),  # 'a' alone names nothing
    ("", []),
])
@pytest.mark.parametrize("which", ["curate_matcher", "curate_column_matcher"])
def test_matcher(request, curate_names, text, expected, which):
    assert names(request.getfixturevalue(which), curate_names, text) == expected


def test_matcher_batch_and_overlapping_mode(curate_matcher, curate_tables):
    texts = ["sea lion", "paid", "kayak"]
    assert curate_matcher.match_batch(texts) == [curate_matcher.match(t) for t in texts]
    _, voc = curate_tables
    mapping = {}
    for s, w in zip(voc["surface"], voc["wnid"]):
        mapping.setdefault(s, []).append(w)
    overlapping = m.NgramMatcher(mapping, overlapping=True)
    assert overlapping.match("sea lion") > curate_matcher.match("sea lion")  # also 'lion'
    assert m.NgramMatcher({"bora bora": ["n1"]}).match("Bora-Bora island") == {"n1"}


# ---------------------------------------------------------------------------------------
# shard job


def _part(path, rows, schema=None):
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path, row_group_size=3)
    return path


ROWS = [
    {"URL": "http://e/0.jpg", "TEXT": "A kayak at sunrise", "WIDTH": 640, "HEIGHT": 480, "similarity": 0.31, "punsafe": 0.01},
    {"URL": "http://e/1.jpg", "TEXT": None, "WIDTH": 1, "HEIGHT": 1, "similarity": 0.3, "punsafe": 0.0},
    {"URL": "http://e/2.jpg", "TEXT": "   ", "WIDTH": 1, "HEIGHT": 1, "similarity": 0.3, "punsafe": 0.0},
    {"URL": "http://e/3.jpg", "TEXT": "nothing to see here", "WIDTH": 1, "HEIGHT": 1, "similarity": 0.3, "punsafe": 0.0},
    {"URL": "http://e/4.jpg", "TEXT": "snowman", "WIDTH": 1, "HEIGHT": 1, "similarity": 0.3, "punsafe": 0.9},
    {"URL": None, "TEXT": "igloo", "WIDTH": 1, "HEIGHT": 1, "similarity": 0.3, "punsafe": 0.0},
    {"URL": "http://e/6.jpg", "TEXT": "Igloo & snowman", "WIDTH": None, "HEIGHT": 2.0, "similarity": None, "punsafe": None},
]


def test_match_shard(tmp_path, curate_files, curate_names, imagenot_cli):
    part = _part(tmp_path / "part-00007.parquet", ROWS)
    out, rep = tmp_path / "m" / "00007.parquet", tmp_path / "m" / "00007.json"
    rc = imagenot_cli(["curate", "match", "--input", str(part), "--vocab", str(curate_files["vocab"]),
                       "--columns", json.dumps({"text": "TEXT"}), "--max-punsafe", "0.5",
                       "--key-prefix", "demo/00007", "--out", str(out), "--report", str(rep)])
    assert rc == 0
    df = pd.read_parquet(out)
    assert list(df.columns) == ["key", "url", "text", "width", "height", "similarity", "punsafe", "wnids"]
    assert df["key"].tolist() == ["demo/00007/0", "demo/00007/6"]  # row index in the part
    assert [sorted(curate_names[w] for w in ws) for ws in df["wnids"]] == [
        ["kayak.n.01"], ["igloo.n.01", "snowman.n.01"]]
    assert pd.isna(df.loc[1, "width"]) and df.loc[1, "height"] == 2 and pd.isna(df.loc[1, "similarity"])
    r = json.loads(rep.read_text())
    assert r["rows_read"] == 7
    assert r["rows_skipped"] == {"text_null": 1, "text_empty": 1, "text_not_string": 0, "text_too_long": 0,
                                 "url_null": 1, "punsafe_above_max": 1}
    assert (r["rows_valid"], r["rows_matched"], r["rows_unmatched"]) == (3, 2, 1)
    assert m.read_match_metadata(out)["rows_valid"] == 3
    # the rerun gives the same bytes
    first = out.read_bytes()
    assert imagenot_cli(["curate", "match", "--input", str(part), "--vocab", str(curate_files["vocab"]),
                         "--key-prefix", "demo/00007", "--out", str(out), "--report", str(rep)]) == 0
    assert out.read_bytes() == first


def test_match_custom_columns_and_absent_optionals(tmp_path, curate_matcher):
    rows = [{"link": "http://e/0.jpg", "caption": "a kayak"}, {"link": "http://e/1.jpg", "caption": "an igloo"}]
    part = _part(tmp_path / "p.parquet", rows)
    cols = m.parse_columns({"url": "link", "text": "caption"})
    r = m.match_shard(part, curate_matcher, cols, 0.5, tmp_path / "o.parquet", "s/0")
    df = pd.read_parquet(tmp_path / "o.parquet")
    assert len(df) == 2 and df[["width", "height", "similarity", "punsafe"]].isna().all().all()
    assert r["columns_absent"] == ["WIDTH", "HEIGHT", "similarity", "punsafe"]


def test_match_missing_column_names_file_and_column(tmp_path, curate_files, imagenot_cli, capsys):
    part = _part(tmp_path / "part-00001.parquet", [{"URL": "u", "caption": "kayak"}])
    rc = imagenot_cli(["curate", "match", "--input", str(part), "--vocab", str(curate_files["vocab"]),
                       "--out", str(tmp_path / "o.parquet"), "--report", str(tmp_path / "o.json")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "part-00001.parquet" in err and "'TEXT'" in err and "columns.text" in err
    assert not (tmp_path / "o.parquet").exists()
    with pytest.raises(InputError, match="unknown field"):
        m.parse_columns('{"txt": "TEXT"}')
    with pytest.raises(InputError, match="not valid JSON"):
        m.parse_columns("{text: TEXT}")
    with pytest.raises(InputError, match="not a readable parquet"):
        (tmp_path / "bad.parquet").write_text("no parquet")
        m.match_shard(tmp_path / "bad.parquet", None, m.parse_columns(None), 0.5, tmp_path / "x.parquet", "k")


def test_match_non_string_and_non_utf8_text(tmp_path, curate_matcher):
    # a numeric caption column: every row is counted as not a string
    part = _part(tmp_path / "num.parquet", [{"URL": "u0", "TEXT": 5}, {"URL": "u1", "TEXT": None}])
    r = m.match_shard(part, curate_matcher, m.parse_columns(None), 0.5, tmp_path / "o1.parquet", "k")
    assert r["rows_skipped"]["text_not_string"] == 1 and r["rows_skipped"]["text_null"] == 1
    # bytes that are not UTF-8 (binary column): decoded with replacement, still matched
    schema = pa.schema([("URL", pa.string()), ("TEXT", pa.binary())])
    part = _part(tmp_path / "bin.parquet", [{"URL": "u0", "TEXT": b"kayak \xff\xfe on ice"},
                                            {"URL": "u1", "TEXT": "igloo".encode()}], schema)
    r = m.match_shard(part, curate_matcher, m.parse_columns(None), 0.5, tmp_path / "o2.parquet", "k")
    assert r["text_invalid_utf8_replaced"] == 1 and r["rows_matched"] == 2
    df = pd.read_parquet(tmp_path / "o2.parquet")
    assert df.loc[0, "text"] == "kayak \ufffd\ufffd on ice"
    # invalid UTF-8 inside a *string* column (written by a careless producer)
    bad = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(b"\x00\x00\x00\x00\x07\x00\x00\x00"),
                                                  pa.py_buffer(b"kayak\xff!")])
    pq.write_table(pa.table({"URL": ["u"], "TEXT": bad}), tmp_path / "badstr.parquet")
    r = m.match_shard(tmp_path / "badstr.parquet", curate_matcher, m.parse_columns(None), 0.5,
                      tmp_path / "o3.parquet", "k")
    assert r["rows_matched"] == 1 and r["text_invalid_utf8_replaced"] == 1
