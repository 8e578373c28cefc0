"""Step 1 at scale: the vectorised ColumnMatcher, bad input in a shard, provenance."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imagenot.curate import match as m
from imagenot.curate import provenance, vocab
from imagenot.io import InputError

# ---------------------------------------------------------------------------------------
# ColumnMatcher == NgramMatcher


def test_column_tokens_equal_tokenize():
    texts = ["Café crème, Golden-Retriever!!", "paid AI", "", "  ...", "x_y", "™ logo", "Straße 東京 №5",
             "tab\tsep\nline", "ÉCOLE", "a" * 300, "end-", "-start"]
    got = m.split_column(pa.array(texts + [None]))
    assert got[:-1] == [m.tokenize(t) for t in texts]
    assert got[-1] == []


def test_column_matcher_agrees_with_reference(curate_matcher, curate_column_matcher, curate_tables):
    _, voc = curate_tables
    surfaces = sorted(set(voc["surface"]))
    rng = np.random.default_rng(1)
    filler = ["the", "best", "PHOTO", "of", "a", "new", "set", "-", "&", "2021", "Hot", "dog", "stand", "!!", "x"]
    texts = []
    for _ in range(3000):
        words = [filler[i] for i in rng.integers(0, len(filler), rng.integers(0, 8))]
        for _ in range(rng.integers(0, 4)):
            s = surfaces[rng.integers(0, len(surfaces))]
            s = s.upper() if rng.random() < 0.2 else s.replace(" ", "-") if rng.random() < 0.2 else s
            words.insert(int(rng.integers(0, len(words) + 1)), s)
        texts.append(" ".join(words))
    assert curate_column_matcher.match_batch(texts) == curate_matcher.match_batch(texts)
    # tokens never join across captions; empty batches work
    assert curate_column_matcher.match_batch(["golden", "retriever"]) == [
        curate_matcher.match("golden"), curate_matcher.match("retriever")]
    assert curate_column_matcher.match_batch([]) == []
    col = curate_column_matcher.match_column(pa.array(["kayak", "", "nothing here"]))
    assert [len(x) for x in col.to_pylist()] == [1, 0, 0]


def test_overlap_rule():
    mt = {"hot dog": ["n1"], "dog": ["n2"], "stand": ["n3"], "dog stand": ["n4"], "a b": ["n5"], "b c": ["n6"]}
    for matcher in (m.NgramMatcher(mt), m.ColumnMatcher(mt)):
        assert matcher.match("hot dog") == {"n1"}  # 'dog' lies inside 'hot dog'
        assert matcher.match("hot dog stand") == {"n1", "n4"}  # partial overlap: both named
        assert matcher.match("a b c") == {"n5", "n6"}
        assert matcher.match("dog, stand") == {"n4"}  # punctuation-insensitive


# ---------------------------------------------------------------------------------------
# bad input: an error naming file and column, or a counted skip; never a silent loss


def _write(path, table):
    pq.write_table(table, path, row_group_size=4)
    return path


@pytest.mark.parametrize("columns,missing", [
    ({"URL": ["u"], "text": ["kayak"]}, "TEXT"),  # renamed (lower case)
    ({"url": ["u"], "TEXT": ["kayak"]}, "URL"),
    ({"TEXT": ["kayak"]}, "URL"),
])
def test_missing_or_renamed_columns(tmp_path, curate_column_matcher, columns, missing):
    part = _write(tmp_path / "part-00042.parquet", pa.table(columns))
    with pytest.raises(InputError) as e:
        m.match_shard(part, curate_column_matcher, m.parse_columns(None), 0.5, tmp_path / "o.parquet", "k")
    assert "part-00042.parquet" in str(e.value) and f"'{missing}'" in str(e.value)
    assert not (tmp_path / "o.parquet").exists()


def test_bad_rows_are_counted(tmp_path, curate_column_matcher, curate_names):
    long_caption = "lorem ipsum " * 8_600 + "kayak"  # ~100 KB
    assert len(long_caption.encode()) > 100_000
    texts = [b"a kayak", None, b"", b"  \t ", long_caption.encode(), b"igloo \xff\xfe broken", b"kayak\xc3",
             b"snowman", b"!!!", "caf\u00e9 sn\u00f6wman".encode()]
    table = pa.table({"URL": [f"http://e/{i}" for i in range(len(texts))],
                      "TEXT": pa.array(texts, pa.binary())})
    part = _write(tmp_path / "part-00001.parquet", table)
    r = m.match_shard(part, curate_column_matcher, m.parse_columns(None), 0.5, tmp_path / "o.parquet", "s/1")
    assert r["rows_read"] == 10
    assert r["rows_skipped"] == {"text_null": 1, "text_not_string": 0, "text_empty": 2, "text_too_long": 1,
                                 "url_null": 0, "punsafe_above_max": 0}
    assert r["text_invalid_utf8_replaced"] == 2
    assert r["rows_read"] == r["rows_valid"] + r["rows_skipped_total"]
    assert (r["rows_valid"], r["rows_matched"]) == (6, 5)  # '!!!' names nothing
    df = pd.read_parquet(tmp_path / "o.parquet")
    assert df["key"].tolist() == ["s/1/0", "s/1/5", "s/1/6", "s/1/7", "s/1/9"]  # 9: 'café' (accent stripped)
    assert df.loc[1, "text"] == "igloo \ufffd\ufffd broken"
    # a larger limit takes the 100 KB caption in (its kayak is found)
    r = m.match_shard(part, curate_column_matcher, m.parse_columns(None), 0.5, tmp_path / "o2.parquet", "s/1",
                      max_caption_bytes=200_000)
    assert r["rows_skipped"]["text_too_long"] == 0 and r["rows_matched"] == 6
    long_row = pd.read_parquet(tmp_path / "o2.parquet").set_index("key").loc["s/1/4"]
    assert [curate_names[w] for w in long_row["wnids"]] == ["kayak.n.01"]


def test_non_string_and_dictionary_text(tmp_path, curate_column_matcher):
    part = _write(tmp_path / "num.parquet", pa.table({"URL": ["a", "b", "c"], "TEXT": pa.array([1, None, 3])}))
    r = m.match_shard(part, curate_column_matcher, m.parse_columns(None), 0.5, tmp_path / "o.parquet", "k")
    assert r["rows_skipped"]["text_not_string"] == 2 and r["rows_skipped"]["text_null"] == 1
    assert r["rows_valid"] == 0 and r["rows_read"] == 3
    dict_text = pa.array(["kayak", "igloo", "kayak", None]).dictionary_encode()
    part = _write(tmp_path / "dict.parquet", pa.table({"URL": ["a", "b", "c", "d"], "TEXT": dict_text}))
    r = m.match_shard(part, curate_column_matcher, m.parse_columns(None), 0.5, tmp_path / "o2.parquet", "k")
    assert (r["rows_matched"], r["rows_skipped"]["text_null"]) == (3, 1)
    big = pa.table({"URL": pa.array(["a", None, " "], pa.large_string()),
                    "TEXT": pa.array(["kayak", "kayak", "kayak"], pa.large_string())})
    part = _write(tmp_path / "large.parquet", big)
    r = m.match_shard(part, curate_column_matcher, m.parse_columns(None), 0.5, tmp_path / "o3.parquet", "k")
    assert r["rows_matched"] == 1 and r["rows_skipped"]["url_null"] == 2


def test_streaming_batches_keep_row_keys(tmp_path, curate_column_matcher):
    n = 1000
    texts = ["kayak" if i % 3 == 0 else "nothing" for i in range(n)]
    part = tmp_path / "p.parquet"
    pq.write_table(pa.table({"URL": [f"u{i}" for i in range(n)], "TEXT": texts}), part, row_group_size=97)
    r = m.match_shard(part, curate_column_matcher, m.parse_columns(None), 0.5, tmp_path / "o.parquet", "x/7",
                      batch_rows=64)
    df = pd.read_parquet(tmp_path / "o.parquet")
    assert r["rows_matched"] == len(df) == 334
    assert df["key"].tolist() == [f"x/7/{i}" for i in range(0, n, 3)]
    assert df["url"].tolist() == [f"u{i}" for i in range(0, n, 3)]


# ---------------------------------------------------------------------------------------
# provenance


def test_match_records_provenance(tmp_path, curate_tables, curate_reader, wordnet_root, imagenot_cli):
    synsets, voc = curate_tables
    prov = provenance.build("vocab", {"wordnet.root": str(wordnet_root)},
                            wordnet=provenance.wordnet_info(curate_reader, wordnet_root, len(synsets)), models={})
    vocab.write_with_provenance(voc, tmp_path / "vocab.parquet", prov)
    assert provenance.read(tmp_path / "vocab.parquet")["wordnet"]["version"] == "3.0"
    part = _write(tmp_path / "part-00003.parquet", pa.table({"URL": ["u"], "TEXT": ["kayak"]}))
    rc = imagenot_cli(["curate", "match", "--input", str(part), "--vocab", str(tmp_path / "vocab.parquet"),
                       "--max-punsafe", "0.4", "--max-caption-bytes", "5000", "--config", json.dumps({"run": "t1"}),
                       "--out", str(tmp_path / "m.parquet"), "--report", str(tmp_path / "m.json")])
    assert rc == 0
    rep = json.loads((tmp_path / "m.json").read_text())["provenance"]
    assert rep == provenance.read(tmp_path / "m.parquet")
    assert rep["step"] == "match" and rep["wordnet"]["version"] == "3.0"
    assert rep["wordnet"]["n_noun_synsets"] == len(synsets)
    assert rep["config"]["curation.max_punsafe"] == 0.4 and rep["config"]["curation.max_caption_bytes"] == 5000
    assert rep["config"]["corpus.columns"]["text"] == "TEXT" and rep["config"]["run"] == "t1"
    assert str(part) in rep["inputs"]
    assert provenance.models_from_config({"text_similarity": {"model": "m1"},
                                          "clip": {"source": "open_clip", "model": "ViT-L-14", "pretrained": "openai"}}) \
        == {"text": "m1", "clip": {"source": "open_clip", "model": "ViT-L-14", "pretrained": "openai"}}
