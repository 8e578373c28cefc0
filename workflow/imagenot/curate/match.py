"""Step 1: find the WordNet noun synsets each caption names.

Text is tokenised the same way for lemmas and captions (``tokenize``): lower case, accents
stripped, split on every non-alphanumeric character. Matching works on whole tokens, so it
is insensitive to punctuation ("golden-retriever", "Golden Retriever!") and never matches
inside a word ("paid" does not name "ai", "category" does not name "cat").

At every token position the longest surface starting there is taken, unless an earlier
match of the caption covers it entirely: "hot dog stand" names "hot dog" and "stand", not
"dog"; "sea lion" does not also name "lion". (Two partly overlapping surfaces are both
named.) Every synset of a matched surface is named (a polysemous lemma names all its
senses; steps 6-7 sort them out).

``ColumnMatcher`` (used by the workflow) does this for a whole Arrow column at once:
tokenising with Arrow kernels and numpy on the column's bytes, and walking the token trie
for all positions together, one level per numpy step (see bench/match_speed.py for its
speed against a plain n-gram dictionary matcher). ``NgramMatcher`` is the plain-Python
reference with the same results, one caption at a time.

``match_shard`` streams one LAION metadata parquet part by record batch (bounded memory),
validates its columns, counts every row it skips by reason, and writes the rows that name
at least one synset.
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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..io import InputError, atomic_path, parse_json, write_json

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
PROVENANCE_KEY = b"imagenot.provenance"


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def tokenize(text: str) -> list[str]:
    """Lower-case alphanumeric tokens; everything else separates tokens."""
    if text.isascii():
        return _ASCII_TOKEN_RE.findall(text.lower())
    return _TOKEN_RE.findall(_strip_accents(text).lower())


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
        max_end = 0  # largest end (exclusive) of a match kept so far
        for i in range(n):
            entry = trie.get(tokens[i])
            if entry is None:
                continue
            best_end, best = (i + 1, entry[0]) if entry[0] is not None else (-1, None)
            if self.overlapping and best is not None:
                found.update(best)
            j = i + 1
            node = entry[1]
            while node is not None and j < n:
                entry = node.get(tokens[j])
                if entry is None:
                    break
                if entry[0] is not None:
                    if self.overlapping:
                        found.update(entry[0])
                    best_end, best = j + 1, entry[0]
                node = entry[1]
                j += 1
            if best is not None and not self.overlapping and best_end > max_end:
                # the longest match at i, unless an earlier match covers it entirely
                found.update(best)
                max_end = best_end
        return found

    def match(self, text: str) -> set[str]:
        return self.match_tokens(tokenize(text))

    def match_batch(self, texts: Iterable[str]) -> list[set[str]]:
        mt = self.match_tokens
        return [mt(tokenize(t)) for t in texts]

    def match_column(self, texts: pa.Array) -> pa.ListArray:
        """list<string> of sorted wnids per caption (null captions name nothing)."""
        mt = self.match_tokens
        return pa.array([sorted(mt(tokenize(t))) if t is not None else [] for t in texts.to_pylist()],
                        pa.list_(pa.string()))


_SEP_RE = r"[^\p{L}\p{N}]+"  # what separates tokens: the complement of tokenize's token pattern


def normalize_column(texts: pa.Array) -> pa.Array:
    """Arrow string column -> the same column with tokens in lower case, accents stripped and,
    in non-ASCII rows, every non-letter/digit character replaced by a space (Arrow's C++
    kernels; RE2 regexes). ASCII rows only need lower-casing: their separators are found
    byte-wise by ``tokens_of_column``."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if not pa.types.is_string(texts.type):
        texts = texts.cast(pa.string())
    ascii_ = pc.string_is_ascii(texts)
    lower = pc.ascii_lower(texts)
    if pc.all(ascii_).as_py() is False:
        not_ascii = pc.invert(ascii_)
        other = pc.replace_substring_regex(pc.utf8_normalize(texts.filter(not_ascii), "NFKD"), r"\p{Mn}+", "")
        other = pc.replace_substring_regex(pc.utf8_lower(other), _SEP_RE, " ")
        lower = pc.replace_with_mask(lower, not_ascii, other)
    return lower


# byte -> part of a token: ASCII letters and digits (after lower-casing) and every byte of a
# multi-byte UTF-8 character (non-ASCII rows hold only letters and digits there)
_TOKEN_BYTE = np.zeros(256, bool)
_TOKEN_BYTE[[ord(c) for c in "abcdefghijklmnopqrstuvwxyz0123456789"]] = True
_TOKEN_BYTE[128:] = True


def tokens_of_column(texts: pa.Array) -> tuple[pa.StringArray, np.ndarray]:
    """(tokens, offsets): all tokens of all texts as one Arrow string array, text i's being
    ``tokens[offsets[i]:offsets[i+1]]``; ``tokenize`` of each text, found with numpy on the
    column's bytes (runs of token bytes that do not cross a text boundary)."""
    norm = normalize_column(texts)
    n = len(norm)
    if norm.null_count:
        norm = pc.fill_null(norm, "")
    bufs = norm.buffers()
    offs = np.frombuffer(bufs[1], np.int32, n + 1, norm.offset * 4).astype(np.int64)
    data = np.frombuffer(bufs[2], np.uint8, int(offs[-1] - offs[0]), int(offs[0])) if bufs[2] is not None \
        else np.zeros(0, np.uint8)
    offs -= offs[0]
    m = _TOKEN_BYTE[data]
    if len(m) == 0:
        return pa.array([], pa.string()), np.zeros(n + 1, np.int64)
    prev = np.empty_like(m)
    prev[0] = False
    prev[1:] = m[:-1]
    nxt = np.empty_like(m)
    nxt[-1] = False
    nxt[:-1] = m[1:]
    bounds = offs[1:-1]
    bounds = bounds[(bounds > 0) & (bounds < len(m))]
    prev[bounds] = False  # a text boundary breaks a token
    nxt[bounds - 1] = False
    starts = np.flatnonzero(m & ~prev)
    ends = np.flatnonzero(m & ~nxt) + 1
    lengths = ends - starts
    tok_off = np.zeros(len(starts) + 1, np.int64)
    np.cumsum(lengths, out=tok_off[1:])
    if tok_off[-1] >= 2**31:
        raise ValueError("batch too large for one Arrow string array; use smaller batches")
    chars = data[m]
    tokens = pa.StringArray.from_buffers(len(starts), pa.py_buffer(tok_off.astype(np.int32)),
                                         pa.py_buffer(chars))
    per_text = np.searchsorted(starts, offs, side="left")
    return tokens, per_text.astype(np.int64)


def split_column(texts: pa.Array) -> list[list[str]]:
    """``tokenize`` of every text of an Arrow string column (for tests and debugging)."""
    tokens, offsets = tokens_of_column(texts)
    toks = tokens.to_pylist()
    return [toks[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


class ColumnMatcher:
    """The same matches as ``NgramMatcher``, computed for a whole column of captions at once.

    Captions are tokenised by Arrow kernels (``split_column``), tokens become integer ids by
    one hash lookup (``pc.index_in``), and the token trie of all surfaces is walked for every
    token position in parallel, one trie level per numpy step (a level's transitions are a
    sorted int64 array ``parent * n_tokens + token`` searched with ``np.searchsorted``).
    The longest surface starting at each position is kept unless an earlier match in the
    caption covers it entirely (a running maximum of match ends), and the matched surfaces
    expand to (caption, wnid) pairs, de-duplicated per caption. Python does a constant amount
    of work per batch, not per caption.
    """

    def __init__(self, surfaces: Mapping[str, Iterable[str]]):
        vocab_tokens: dict[str, int] = {}
        wnid_set: set[str] = set()
        entries = []
        for surface, wnids in surfaces.items():
            toks = surface.split(" ")
            if not surface or not all(toks):
                continue
            ids = [vocab_tokens.setdefault(t, len(vocab_tokens)) for t in toks]
            ws = set(wnids)
            wnid_set |= ws
            entries.append((ids, ws))
        self.wnids = sorted(wnid_set)
        wid = {w: i for i, w in enumerate(self.wnids)}
        self.n_tokens = V = max(len(vocab_tokens), 1)
        self._tokens = pa.array(list(vocab_tokens), pa.string())
        children: dict[int, int] = {}  # parent * V + token -> node
        node_wnids: dict[int, set[int]] = {}
        self.max_n = 0
        for ids, ws in entries:
            node = 0
            for t in ids:
                key = node * V + t
                nxt = children.get(key)
                if nxt is None:
                    nxt = children[key] = len(children) + 1
                node = nxt
            node_wnids.setdefault(node, set()).update(wid[w] for w in ws)
            self.max_n = max(self.max_n, len(ids))
        self.n_surfaces = len(node_wnids)
        keys = np.fromiter(children.keys(), np.int64, len(children))
        vals = np.fromiter(children.values(), np.int64, len(children))
        order = np.argsort(keys)
        self._keys, self._child = keys[order], vals[order]
        self._root_child = np.zeros(V, np.int64)
        first = self._keys < V  # children of the root (node 0): key = token
        self._root_child[self._keys[first]] = self._child[first]
        self._has_child = np.zeros(len(children) + 1, bool)
        self._has_child[self._keys // V] = True
        n_nodes = len(children) + 1
        self._surface_of = np.full(n_nodes, -1, np.int64)  # node -> surface index (-1: none)
        off = [0]
        flat: list[int] = []
        for k, (node, ws) in enumerate(sorted(node_wnids.items())):
            self._surface_of[node] = k
            flat.extend(sorted(ws))
            off.append(len(flat))
        self._surf_off = np.array(off, np.int64)
        self._surf_wnids = np.array(flat, np.int64)
        # per token id + 1 (0: not a vocabulary token): its root child, that node's surface, children
        self._tok_node = np.concatenate(([0], self._root_child))
        self._tok_surface = np.where(self._tok_node > 0, self._surface_of[self._tok_node], -1)
        self._tok_has_child = (self._tok_node > 0) & self._has_child[self._tok_node]
        self._wnid_array = pa.array(self.wnids, pa.string())

    @classmethod
    def from_vocab(cls, path: str | Path) -> "ColumnMatcher":
        table = read_vocab(path)
        mapping: dict[str, list[str]] = {}
        for s, w in zip(table["surface"].to_pylist(), table["wnid"].to_pylist()):
            mapping.setdefault(s, []).append(w)
        return cls(mapping)

    def match_ids(self, texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(offsets, wnid ids): caption i names ``wnids[ids[offsets[i]:offsets[i+1]]]`` (sorted)."""
        n = len(texts)
        if n == 0:
            return np.zeros(1, np.int64), np.zeros(0, np.int64)
        flat, tok_off = tokens_of_column(texts)
        tid = pc.fill_null(pc.index_in(flat, value_set=self._tokens), -1).to_numpy().astype(np.int64)
        cap = np.repeat(np.arange(n, dtype=np.int64), np.diff(tok_off))
        cap_end = tok_off[1:][cap]  # end (exclusive) of each token's caption
        # level 1 straight from per-token tables (index 0: a token in no surface)
        tid1 = tid + 1
        S = self._tok_surface[tid1]  # surface of the longest match at each position so far
        L = (S >= 0).astype(np.int64)  # its length in tokens
        pos = np.flatnonzero(self._tok_has_child[tid1])
        node = self._tok_node[tid1[pos]]
        keys, child, surface_of, V = self._keys, self._child, self._surface_of, self.n_tokens
        for k in range(1, self.max_n):
            idx = pos + k
            ok = idx < cap_end[pos]
            pos, node, idx = pos[ok], node[ok], idx[ok]
            t = tid[idx]
            ok = t >= 0
            pos, node, t = pos[ok], node[ok], t[ok]
            if len(pos) == 0:
                break
            key = node * V + t
            j = np.searchsorted(keys, key)
            j[j >= len(keys)] = 0
            ok = keys[j] == key
            pos, node = pos[ok], child[j[ok]]
            s = surface_of[node]
            hit = s >= 0
            L[pos[hit]] = k + 1
            S[pos[hit]] = s[hit]
            ok = self._has_child[node]
            pos, node = pos[ok], node[ok]
        mpos = np.nonzero(L)[0]
        if len(mpos) == 0:
            return np.zeros(n + 1, np.int64), np.zeros(0, np.int64)
        ends = mpos + L[mpos]
        prev = np.empty_like(ends)
        prev[0] = -1
        np.maximum.accumulate(ends[:-1], out=prev[1:])
        keep = prev < ends  # not inside an earlier, longer match of the same caption
        mpos = mpos[keep]
        surf = S[mpos]
        mcap = cap[mpos]
        start = self._surf_off[surf]
        cnt = self._surf_off[surf + 1] - start
        first = np.cumsum(cnt) - cnt  # where each match's wnids begin in the expanded arrays
        shift = max(1, int(len(self.wnids) - 1).bit_length())  # (caption, wnid) -> caption << shift | wnid
        w = self._surf_wnids[np.arange(int(cnt.sum())) + np.repeat(start - first, cnt)]
        pair = np.sort(np.repeat(mcap << shift, cnt) | w, kind="stable")  # runs per caption: timsort merges them
        if len(pair) > 1:
            pair = pair[np.concatenate(([True], pair[1:] != pair[:-1]))]
        pcap, pw = pair >> shift, pair & ((1 << shift) - 1)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(pcap, minlength=n), out=offsets[1:])
        return offsets, pw

    def match_column(self, texts: pa.Array) -> pa.ListArray:
        """list<string> of the wnids each caption names (sorted; empty list: none)."""
        offsets, ids = self.match_ids(texts)
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32) if offsets[-1] < 2**31 else offsets),
                                        self._wnid_array.take(pa.array(ids)))

    def match_batch(self, texts: Iterable[str]) -> list[set[str]]:
        offsets, ids = self.match_ids(pa.array(list(texts), pa.string()))
        names = self.wnids
        return [{names[i] for i in ids[a:b]} for a, b in zip(offsets[:-1], offsets[1:])]

    def match(self, text: str) -> set[str]:
        return self.match_batch([text])[0]


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
    given = parse_json(dict(spec) if isinstance(spec, Mapping) else spec, "--columns", obj=True, empty={})
    unknown = sorted(set(given) - set(DEFAULT_COLUMNS))
    if unknown:
        raise InputError(f"--columns: unknown field(s) {unknown}; known: {sorted(DEFAULT_COLUMNS)}")
    cols = dict(DEFAULT_COLUMNS)
    cols.update({k: str(v) for k, v in given.items()})
    return cols


def text_array(col: pa.Array, counts: Counter) -> pa.Array:
    """The caption column as a valid UTF-8 string array; null where a row has no caption.

    Binary columns are decoded; invalid UTF-8 (in a binary column, or in a string column
    written by a careless producer) is decoded row by row with U+FFFD replacement and counted
    (``text_invalid_utf8_replaced``). A column of another type (numbers, structs...) has no
    captions: its non-null rows are counted as ``text_not_string`` and become null here,
    like the column's nulls (``text_null``)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    t = col.type
    if pa.types.is_dictionary(t):
        return text_array(col.cast(t.value_type), counts)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:
            col.validate(full=True)
            return col.cast(pa.string()) if pa.types.is_large_string(t) else col
        except pa.ArrowInvalid:
            col = col.view(pa.large_binary() if pa.types.is_large_string(t) else pa.binary())
            t = col.type
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        try:
            return col.cast(pa.string())
        except pa.ArrowInvalid:
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
            return pa.array(out, pa.string())
    if pa.types.is_null(t):
        return pa.nulls(len(col), pa.string())
    counts["text_not_string"] += len(col) - col.null_count
    return pa.nulls(len(col), pa.string())


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
        # pre_buffer=False: with Arrow's default pre-buffering, iter_batches keeps the buffers of
        # every row group read so far (~3 MiB per 65k captions here), and memory grows with the part
        return pq.ParquetFile(path, pre_buffer=False)
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"{path}: not a readable parquet file ({e})") from e


SKIP_REASONS = ("text_null", "text_not_string", "text_empty", "text_too_long", "url_null", "punsafe_above_max")


def _mask(arr) -> np.ndarray:
    """Boolean Arrow array -> numpy bool (null -> False)."""
    return pc.fill_null(arr, False).to_numpy(zero_copy_only=False)


def match_shard(input_path: str | Path, matcher, columns: Mapping[str, str], max_punsafe: float,
                out_path: str | Path, key_prefix: str, batch_rows: int = 65536,
                max_caption_bytes: int = 10_000, provenance: Mapping | None = None) -> dict:
    """Match one metadata part; write matched rows to ``out_path``; return the report.

    Streams the part by record batches (``ParquetFile.iter_batches``: at most one row group
    and one batch in memory), so memory does not grow with the part's length. Every row
    read is either matched, unmatched, or skipped for a counted reason (``rows_skipped``):
    ``rows_read == rows_valid + rows_skipped_total``, ``rows_valid == rows_matched +
    rows_unmatched``."""
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
    prefix = pa.scalar(key_prefix, pa.string())
    with atomic_path(out_path) as tmp:
        writer = pq.ParquetWriter(tmp, MATCH_SCHEMA)
        try:
            for batch in pf.iter_batches(batch_size=batch_rows, columns=read_cols):
                n = batch.num_rows
                counts["rows_read"] += n
                raw = batch.column(present["text"])
                texts = text_array(raw, counts)
                urls = batch.column(present["url"])
                if not (pa.types.is_string(urls.type) or pa.types.is_large_string(urls.type)):
                    try:
                        urls = urls.cast(pa.string())
                    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                        raise InputError(f"{input_path}: column '{present['url']}' (columns.url) "
                                         f"is not text ({urls.type})") from e
                num = {}
                for role, kind in (("width", "int"), ("height", "int"), ("similarity", "float"),
                                   ("punsafe", "float")):
                    if role in present:
                        num[role] = _numeric(batch.column(present[role]), input_path, present[role], kind)
                    else:
                        num[role] = pa.nulls(n, pa.int64() if kind == "int" else pa.float64())
                # skip reasons, first that applies (each row is counted once)
                is_str = pa.types.is_string(raw.type) or pa.types.is_large_string(raw.type) or \
                    pa.types.is_binary(raw.type) or pa.types.is_large_binary(raw.type) or \
                    pa.types.is_dictionary(raw.type) or pa.types.is_fixed_size_binary(raw.type)
                raw_null = raw.is_null().to_numpy(zero_copy_only=False)
                reasons = {
                    "text_null": raw_null,
                    "text_not_string": ~raw_null if not is_str else np.zeros(n, bool),
                    "text_empty": _mask(pc.equal(pc.utf8_trim_whitespace(texts), "")),
                    "text_too_long": _mask(pc.greater(pc.binary_length(texts), max_caption_bytes)),
                    "url_null": ~_mask(pc.greater(pc.binary_length(pc.utf8_trim_whitespace(urls)), 0)),
                    "punsafe_above_max": _mask(pc.greater(num["punsafe"], max_punsafe)),
                }
                skip = np.zeros(n, bool)
                for reason in SKIP_REASONS:
                    r = reasons[reason] & ~skip
                    if reason != "text_not_string":  # counted by text_array
                        counts[reason] += int(r.sum())
                    skip |= r
                keep_idx = np.flatnonzero(~skip)
                tm = time.time()
                wnid_lists = matcher.match_column(texts.take(pa.array(keep_idx)))
                match_seconds += time.time() - tm
                counts["rows_valid"] += len(keep_idx)
                matched = _mask(pc.greater(pc.list_value_length(wnid_lists), 0))
                sel = keep_idx[matched]
                counts["rows_matched"] += len(sel)
                counts["rows_unmatched"] += len(keep_idx) - len(sel)
                if len(sel):
                    idx = pa.array(sel, pa.int64())
                    keys = pc.binary_join_element_wise(prefix, pa.array(sel + row0).cast(pa.string()), "/")
                    out = pa.table({
                        "key": keys,
                        "url": urls.take(idx).cast(pa.string()),
                        "text": texts.take(idx),
                        "width": num["width"].take(idx).cast(pa.int64()),
                        "height": num["height"].take(idx).cast(pa.int64()),
                        "similarity": num["similarity"].take(idx).cast(pa.float64()),
                        "punsafe": num["punsafe"].take(idx).cast(pa.float64()),
                        "wnids": wnid_lists.filter(pa.array(matched)),
                    }, schema=MATCH_SCHEMA)
                    writer.write_table(out)
                row0 += n
            skipped = {k: counts[k] for k in SKIP_REASONS}
            report = {
                "input": str(input_path),
                "output": str(out_path),
                "key_prefix": key_prefix,
                "columns": {role: columns[role] for role in DEFAULT_COLUMNS},
                "columns_absent": [columns[r] for r in absent],
                "max_punsafe": max_punsafe,
                "max_caption_bytes": max_caption_bytes,
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
            if report["rows_read"] != report["rows_valid"] + report["rows_skipped_total"]:
                raise RuntimeError(f"{input_path}: row accounting does not add up: {report}")
            md = {METADATA_KEY: json.dumps(
                {k: report[k] for k in ("rows_read", "rows_skipped", "rows_valid", "rows_matched")}).encode()}
            if provenance is not None:
                md[PROVENANCE_KEY] = json.dumps(provenance, sort_keys=True, default=str).encode()
            writer.add_key_value_metadata(md)
        finally:
            writer.close()
    if provenance is not None:
        report["provenance"] = dict(provenance)
    return report


def file_metadata(path: str | Path) -> dict:
    """Key-value metadata of a parquet file (the footer's, where ParquetWriter puts it)."""
    return dict(open_parquet(Path(path)).metadata.metadata or {})


def read_match_metadata(path: str | Path) -> dict | None:
    raw = file_metadata(path).get(METADATA_KEY)
    return json.loads(raw) if raw else None


def run_match(input_path, vocab_path, columns_json, max_punsafe, out_path, report_path, key_prefix=None,
              max_caption_bytes: int = 10_000, config: Mapping | None = None):
    from . import provenance

    columns = parse_columns(columns_json)
    if not 0 <= max_punsafe <= 1:
        raise InputError(f"--max-punsafe: must be in [0, 1], got {max_punsafe}")
    if max_caption_bytes < 1:
        raise InputError(f"--max-caption-bytes: must be >= 1, got {max_caption_bytes}")
    if key_prefix is None:
        key_prefix = Path(input_path).name.split(".")[0]
    t0 = time.time()
    matcher = ColumnMatcher.from_vocab(vocab_path)
    log.info("matcher: %d surfaces, up to %d tokens, built in %.1f s",
             matcher.n_surfaces, matcher.max_n, time.time() - t0)
    prov = provenance.build("match", {"corpus.columns": columns, "curation.max_punsafe": max_punsafe,
                                      "curation.max_caption_bytes": max_caption_bytes, **dict(config or {})},
                            inputs=[input_path, vocab_path], models={})
    report = match_shard(input_path, matcher, columns, max_punsafe, out_path, key_prefix,
                         max_caption_bytes=max_caption_bytes, provenance=prov)
    report["vocab"] = str(vocab_path)
    report["matcher_build_seconds"] = round(time.time() - t0 - report["seconds"], 3)
    write_json(report, report_path)
    log.info("%s: %d rows read, %d valid, %d matched (%.0f captions/s)", input_path,
             report["rows_read"], report["rows_valid"], report["rows_matched"],
             report["captions_per_second"] or 0)
    return report
