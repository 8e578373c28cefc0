"""Step 1: find the WordNet noun synsets each caption names.

Text is tokenised the same way for lemmas and captions (``tokenize``): lower case, accents
stripped, split on every non-alphanumeric character. Matching works on whole tokens, so it
is insensitive to punctuation ("golden-retriever", "Golden Retriever!") and never matches
inside a word ("paid" does not name "ai", "category" does not name "cat").

``NgramMatcher`` walks a token trie of all surfaces (up to the longest surface, in tokens)
and takes leftmost-longest, non-overlapping matches: "hot dog stand" names "hot dog" and
"stand", not "dog". Every synset of a matched surface is named (a polysemous lemma names
all its senses; steps 6-7 sort them out). Any class with the same
``match_batch(texts) -> list[set[str]]`` method (e.g. an Aho-Corasick automaton with
word-boundary checks) can replace it.

``match_shard`` streams one LAION metadata parquet part by row group (bounded memory),
validates its columns and writes the rows that name at least one synset.
"""

from __future__ import annotations

import json
import logging
import re
import time
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..io import InputError, atomic_path, write_json

log = logging.getLogger(__name__)

_TOKEN_RE = re.compile(r"[^\W_]+")  # unicode letters and digits
_ASCII_TOKEN_RE = re.compile(r"[a-z0-9]+")  # same tokens for ASCII text, ~2x faster

DEFAULT_COLUMNS = {"url": "URL", "text": "TEXT", "width": "WIDTH", "height": "HEIGHT",
                   "similarity": "similarity", "punsafe": "punsafe"}
REQUIRED_COLUMNS = ("url", "text")

MATCH_SCHEMA = pa.schema([
    ("key", pa.string()),
    ("url", pa.string()),
    ("text", pa.string()),
    ("width", pa.int64()),
    ("height", pa.int64()),
    ("similarity", pa.float64()),
    ("punsafe", pa.float64()),
    ("wnids", pa.list_(pa.string())),
])
METADATA_KEY = b"imagenot.match"


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def tokenize(text: str) -> list[str]:
    """Lower-case alphanumeric tokens; everything else separates tokens."""
    text = text.lower()
    if text.isascii():
        return _ASCII_TOKEN_RE.findall(text)
    return _TOKEN_RE.findall(_strip_accents(text))


def normalize(text: str) -> str:
    """Tokens joined by one space: the form surfaces are stored and looked up in."""
    return " ".join(tokenize(text))


class NgramMatcher:
    """Dictionary matcher over token n-grams (leftmost-longest by default).

    ``surfaces`` maps a normalised surface ("golden retriever") to the wnids it names.
    """

    def __init__(self, surfaces: Mapping[str, Iterable[str]], overlapping: bool = False):
        self.overlapping = overlapping
        self.max_n = 0
        self.n_surfaces = 0
        # trie node: dict token -> [wnids tuple or None, child dict or None]
        self._trie: dict = {}
        for surface, wnids in surfaces.items():
            toks = surface.split(" ")
            if not surface or not all(toks):
                continue
            node = self._trie
            entry = None
            last = len(toks) - 1
            for k, tok in enumerate(toks):
                entry = node.get(tok)
                if entry is None:
                    entry = node[tok] = [None, None]
                if k < last:
                    if entry[1] is None:
                        entry[1] = {}
                    node = entry[1]
            ws = tuple(sorted(set(wnids) | set(entry[0] or ())))
            entry[0] = ws
            self.max_n = max(self.max_n, len(toks))
            self.n_surfaces += 1

    @classmethod
    def from_vocab(cls, path: str | Path, **kw) -> "NgramMatcher":
        table = read_vocab(path)
        mapping: dict[str, list[str]] = {}
        for s, w in zip(table["surface"].to_pylist(), table["wnid"].to_pylist()):
            mapping.setdefault(s, []).append(w)
        return cls(mapping, **kw)

    def match_tokens(self, tokens: Sequence[str]) -> set[str]:
        found: set[str] = set()
        trie = self._trie
        n = len(tokens)
        i = 0
        while i < n:
            entry = trie.get(tokens[i])
            if entry is None:
                i += 1
                continue
            best_end, best = (i, entry[0]) if entry[0] is not None else (-1, None)
            j = i + 1
            node = entry[1]
            while node is not None and j < n:
                entry = node.get(tokens[j])
                if entry is None:
                    break
                if entry[0] is not None:
                    if self.overlapping:
                        found.update(entry[0])
                    best_end, best = j, entry[0]
                node = entry[1]
                j += 1
            if best is None:
                i += 1
            elif self.overlapping:
                found.update(best)
                i += 1
            else:
                found.update(best)
                i = best_end + 1
        return found

    def match(self, text: str) -> set[str]:
        return self.match_tokens(tokenize(text))

    def match_batch(self, texts: Iterable[str]) -> list[set[str]]:
        mt = self.match_tokens
        return [mt(tokenize(t)) for t in texts]


def read_vocab(path: str | Path) -> pa.Table:
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"{path}: cannot read vocabulary parquet ({e})") from e
    for col in ("surface", "wnid"):
        if col not in table.column_names:
            raise InputError(f"{path}: vocabulary lacks column '{col}' (has {table.column_names})")
    return table


def parse_columns(spec: str | Mapping | None) -> dict[str, str]:
    """--columns JSON -> {role: column name}; unknown roles are an error."""
    if spec is None or spec == "":
        given = {}
    elif isinstance(spec, Mapping):
        given = dict(spec)
    else:
        try:
            given = json.loads(spec)
        except json.JSONDecodeError as e:
            raise InputError(f"--columns: not JSON ({e}): {spec!r}") from e
    if not isinstance(given, dict):
        raise InputError(f"--columns: expected a JSON object, got {spec!r}")
    unknown = sorted(set(given) - set(DEFAULT_COLUMNS))
    if unknown:
        raise InputError(f"--columns: unknown field(s) {unknown}; known: {sorted(DEFAULT_COLUMNS)}")
    cols = dict(DEFAULT_COLUMNS)
    cols.update({k: str(v) for k, v in given.items()})
    return cols


def _text_values(col: pa.ChunkedArray | pa.Array, counts: Counter) -> list:
    """Python values of the caption column: str, or None for null / non-string."""
    t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:
            return col.to_pylist()
        except UnicodeDecodeError:
            # invalid UTF-8 stored in a string column: decode row by row below
            col = col.cast(pa.large_binary() if pa.types.is_large_string(t) else pa.binary())
            t = col.type
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        out = []
        for b in col.to_pylist():
            if b is None:
                out.append(None)
                continue
            try:
                out.append(b.decode("utf-8"))
            except UnicodeDecodeError:
                counts["text_invalid_utf8_replaced"] += 1
                out.append(b.decode("utf-8", errors="replace"))
        return out
    if pa.types.is_dictionary(t):
        return _text_values(col.cast(t.value_type), counts)
    # numbers, structs...: not a caption. Nulls stay nulls, the rest are "not a string".
    return [None if v is None else _NotString for v in col.to_pylist()]


class _NotString:
    pass


def _numeric(col, path: Path, name: str, kind: str) -> pa.Array:
    """Cast a width/height (int) or similarity/punsafe (float) column; NaN -> null."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    try:
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            col = col.cast(pa.float64())
        if pa.types.is_floating(col.type):
            col = pc.if_else(pc.is_nan(col), pa.scalar(None, col.type), col)
        if kind == "int":
            if pa.types.is_floating(col.type):
                col = pc.round(col)
            return col.cast(pa.int64(), safe=False)
        return col.cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise InputError(f"{path}: column '{name}' is not numeric ({col.type}: {e})") from e


def open_parquet(path: Path) -> pq.ParquetFile:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"{path}: not a readable parquet file ({e})") from e


def match_shard(input_path: str | Path, matcher, columns: Mapping[str, str], max_punsafe: float,
                out_path: str | Path, key_prefix: str, batch_rows: int = 65536) -> dict:
    """Match one metadata part; write matched rows to ``out_path``; return the report."""
    input_path, out_path = Path(input_path), Path(out_path)
    pf = open_parquet(input_path)
    names = pf.schema_arrow.names
    for role in REQUIRED_COLUMNS:
        if columns[role] not in names:
            raise InputError(f"{input_path}: column '{columns[role]}' (columns.{role}) not found; "
                             f"the file has {names}")
    present = {role: columns[role] for role in DEFAULT_COLUMNS if columns[role] in names}
    absent = [role for role in DEFAULT_COLUMNS if role not in present]
    if absent:
        log.info("%s: optional column(s) %s absent; written as null",
                 input_path, [columns[r] for r in absent])
    read_cols = list(dict.fromkeys(present.values()))
    counts: Counter = Counter()
    t0 = time.time()
    match_seconds = 0.0
    row0 = 0
    with atomic_path(out_path) as tmp:
        writer = pq.ParquetWriter(tmp, MATCH_SCHEMA)
        try:
            for batch in pf.iter_batches(batch_size=batch_rows, columns=read_cols):
                n = batch.num_rows
                counts["rows_read"] += n
                texts = _text_values(batch.column(present["text"]), counts)
                urls_col = batch.column(present["url"])
                if not (pa.types.is_string(urls_col.type) or pa.types.is_large_string(urls_col.type)):
                    try:
                        urls_col = urls_col.cast(pa.string())
                    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                        raise InputError(f"{input_path}: column '{present['url']}' (columns.url) "
                                         f"is not text ({urls_col.type})") from e
                urls = urls_col.to_pylist()
                num = {}
                for role, kind in (("width", "int"), ("height", "int"), ("similarity", "float"),
                                   ("punsafe", "float")):
                    if role in present:
                        num[role] = _numeric(batch.column(present[role]), input_path, present[role], kind)
                    else:
                        num[role] = pa.nulls(n, pa.int64() if kind == "int" else pa.float64())
                punsafe = num["punsafe"].to_pylist()
                keep_idx, keep_text = [], []
                for i in range(n):
                    t = texts[i]
                    if t is None:
                        counts["text_null"] += 1
                    elif t is _NotString:
                        counts["text_not_string"] += 1
                    elif not t.strip():
                        counts["text_empty"] += 1
                    elif urls[i] is None or not urls[i].strip():
                        counts["url_null"] += 1
                    elif punsafe[i] is not None and punsafe[i] > max_punsafe:
                        counts["punsafe_above_max"] += 1
                    else:
                        keep_idx.append(i)
                        keep_text.append(t)
                tm = time.time()
                found = matcher.match_batch(keep_text)
                match_seconds += time.time() - tm
                counts["rows_valid"] += len(keep_idx)
                sel, wn = [], []
                for i, ws in zip(keep_idx, found):
                    if ws:
                        sel.append(i)
                        wn.append(sorted(ws))
                counts["rows_matched"] += len(sel)
                counts["rows_unmatched"] += len(keep_idx) - len(sel)
                if sel:
                    idx = pa.array(sel, pa.int64())
                    out = pa.table({
                        "key": [f"{key_prefix}/{row0 + i}" for i in sel],
                        "url": [urls[i] for i in sel],
                        "text": [texts[i] for i in sel],
                        "width": num["width"].take(idx).cast(pa.int64()),
                        "height": num["height"].take(idx).cast(pa.int64()),
                        "similarity": num["similarity"].take(idx).cast(pa.float64()),
                        "punsafe": num["punsafe"].take(idx).cast(pa.float64()),
                        "wnids": pa.array(wn, pa.list_(pa.string())),
                    }, schema=MATCH_SCHEMA)
                    writer.write_table(out)
                row0 += n
            skipped = {k: counts[k] for k in ("text_null", "text_not_string", "text_empty", "url_null",
                                              "punsafe_above_max")}
            report = {
                "input": str(input_path),
                "output": str(out_path),
                "key_prefix": key_prefix,
                "columns": {role: columns[role] for role in DEFAULT_COLUMNS},
                "columns_absent": [columns[r] for r in absent],
                "max_punsafe": max_punsafe,
                "rows_read": counts["rows_read"],
                "rows_skipped": skipped,
                "rows_skipped_total": sum(skipped.values()),
                "text_invalid_utf8_replaced": counts["text_invalid_utf8_replaced"],
                "rows_valid": counts["rows_valid"],
                "rows_matched": counts["rows_matched"],
                "rows_unmatched": counts["rows_unmatched"],
                "seconds": round(time.time() - t0, 3),
                "match_seconds": round(match_seconds, 3),
                "captions_per_second": round(counts["rows_valid"] / match_seconds, 1) if match_seconds > 0 else None,
            }
            writer.add_key_value_metadata({METADATA_KEY: json.dumps(
                {k: report[k] for k in ("rows_read", "rows_skipped", "rows_valid", "rows_matched")}).encode()})
        finally:
            writer.close()
    return report


def file_metadata(path: str | Path) -> dict:
    """Key-value metadata of a parquet file (the footer's, where ParquetWriter puts it)."""
    return dict(open_parquet(Path(path)).metadata.metadata or {})


def read_match_metadata(path: str | Path) -> dict | None:
    raw = file_metadata(path).get(METADATA_KEY)
    return json.loads(raw) if raw else None


def run_match(input_path, vocab_path, columns_json, max_punsafe, out_path, report_path, key_prefix=None):
    columns = parse_columns(columns_json)
    if not 0 <= max_punsafe <= 1:
        raise InputError(f"--max-punsafe: must be in [0, 1], got {max_punsafe}")
    if key_prefix is None:
        key_prefix = Path(input_path).name.split(".")[0]
    t0 = time.time()
    matcher = NgramMatcher.from_vocab(vocab_path)
    log.info("matcher: %d surfaces, up to %d tokens, built in %.1f s",
             matcher.n_surfaces, matcher.max_n, time.time() - t0)
    report = match_shard(input_path, matcher, columns, max_punsafe, out_path, key_prefix)
    report["vocab"] = str(vocab_path)
    report["matcher_build_seconds"] = round(time.time() - t0 - report["seconds"], 3)
    write_json(report, report_path)
    log.info("%s: %d rows read, %d valid, %d matched (%.0f captions/s)", input_path,
             report["rows_read"], report["rows_valid"], report["rows_matched"],
             report["captions_per_second"] or 0)
    return report
