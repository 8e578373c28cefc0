"""WordNet noun synsets and the surface forms that name them in captions.

``build_synsets`` reads every noun synset once through NLTK (~17 s for all 82,115) and
returns the table the later steps use (``synsets.parquet``):
``wnid, name, lemmas (list), gloss, hypernyms (list of wnids: hypernyms and instance
hypernyms), depth (min distance to the root)``.

``build_vocab`` returns ``vocab.parquet``: one row per (surface, wnid), where a surface is
a noun lemma normalised exactly like caption text (``match.normalize``: lower case,
punctuation/underscores/hyphens -> one space) plus its plural forms:

- irregular plurals from WordNet's own exception list ``noun.exc`` (``mice mouse``),
  reversed to plural -> base;
- regular English rules on the last word (``golden retriever`` -> ``golden retrievers``):
  s/x/z/ch/sh -> +es, consonant+y -> ies, consonant+o -> +s and +es, otherwise +s.

Single-token surfaces that are English function words, numbers or single characters are
left out (``FUNCTION_WORDS``): WordNet has noun senses for ``a`` (vitamin A, angstrom...),
``in`` (inch, indium), ``it``, ``can``, ``one``..., and a plural rule turns lemmas such as
``wa`` (Washington) or ``ha`` into ``was``/``has``. Matching them would make nearly every
caption name several synsets, so that step 6 (exactly one synset per caption) would
discard almost everything. Multi-word lemmas containing them (``vitamin a``) are kept.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..wordnet import wnid as wnid_of
from .match import normalize

log = logging.getLogger(__name__)

FUNCTION_WORDS = frozenset("""
a an the
i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his
himself she her hers herself it its itself they them their theirs themselves one ones
this that these those who whom whose which what whatever whoever
am is are was were be been being have has had having do does did doing done
will would shall should can could may might must ought
of in on at by for with about against between among into through during before after
above below to from up down out off over under again further then once here there when
where why how all any both each few more most other some such no nor not only own same so
than too very just also and but if or because as until while per via vs versus
etc ie eg inc ltd co go
s t d ll m re ve don
two three four five six seven eight nine ten
""".split())


def pluralize(word: str) -> list[str]:
    """Regular English plurals of one lower-case word (possibly more than one spelling)."""
    if len(word) < 2 or not word.isalpha():
        return []
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return [word + "es"]
    if word.endswith("y") and word[-2] not in "aeiou":
        return [word[:-1] + "ies"]
    if word.endswith("o") and word[-2] not in "aeiou":
        return [word + "s", word + "es"]
    return [word + "s"]


def plural_surfaces(surface: str) -> list[str]:
    """Plural forms of a normalised surface: pluralise the last word."""
    head, _, last = surface.rpartition(" ")
    return [f"{head} {p}" if head else p for p in pluralize(last)]


def is_excluded(surface: str) -> bool:
    """Single-token function words, numbers and single characters are not matched."""
    return " " not in surface and (surface in FUNCTION_WORDS or len(surface) < 2 or surface.isdigit())


def _closure(synsets: Iterable) -> list:
    """The given synsets and all their (instance) hypernym ancestors."""
    seen, stack = {}, list(synsets)
    while stack:
        s = stack.pop()
        if s.name() in seen:
            continue
        seen[s.name()] = s
        stack.extend(s.hypernyms() + s.instance_hypernyms())
    return list(seen.values())


def build_synsets(reader, synsets: Iterable | None = None) -> pd.DataFrame:
    """The synset table for all noun synsets, or for ``synsets`` and all their ancestors
    (for small test vocabularies; depth is then still the true WordNet depth)."""
    t0 = time.time()
    nouns = list(reader.all_synsets("n")) if synsets is None else _closure(synsets)
    log.info("read %d noun synsets in %.1f s", len(nouns), time.time() - t0)
    rows = []
    parents: dict[str, list[str]] = {}
    for s in nouns:
        w = wnid_of(s)
        hyper = sorted({wnid_of(h) for h in s.hypernyms() + s.instance_hypernyms()})
        parents[w] = hyper
        rows.append((w, s.name(), [lem.name() for lem in s.lemmas()], s.definition(), hyper))
    depth: dict[str, int] = {}

    def min_depth(w: str) -> int:
        # iterative: the deepest WordNet chains are ~20 links, but keep the stack flat anyway
        stack = [w]
        while stack:
            cur = stack[-1]
            if cur in depth:
                stack.pop()
                continue
            todo = [p for p in parents.get(cur, []) if p not in depth]
            if todo:
                stack.extend(todo)
                continue
            ps = parents.get(cur, [])
            depth[cur] = 0 if not ps else 1 + min(depth[p] for p in ps)
            stack.pop()
        return depth[w]

    df = pd.DataFrame(rows, columns=["wnid", "name", "lemmas", "gloss", "hypernyms"])
    df["depth"] = [min_depth(w) for w in df["wnid"]]
    df["depth"] = df["depth"].astype("int64")
    return df.sort_values("wnid", kind="stable").reset_index(drop=True)


def read_noun_exceptions(path: str | Path) -> dict[str, list[str]]:
    """``noun.exc``: irregular plural -> base forms, normalised (``mice`` -> [``mouse``])."""
    out: dict[str, list[str]] = {}
    with open(path, encoding="latin-1") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 2:
                out.setdefault(normalize(parts[0]), []).extend(normalize(p) for p in parts[1:])
    return out


def build_vocab(synsets: pd.DataFrame, noun_exc: dict[str, list[str]]) -> pd.DataFrame:
    """(surface, wnid) rows: normalised lemmas, their regular and irregular plurals."""
    base: dict[str, set[str]] = defaultdict(set)
    for w, lemmas in zip(synsets["wnid"], synsets["lemmas"]):
        for lemma in lemmas:
            surface = normalize(lemma)
            if surface:
                base[surface].add(w)
    surfaces: dict[str, set[str]] = defaultdict(set)
    for surface, ws in base.items():
        surfaces[surface] |= ws
        for p in plural_surfaces(surface):
            surfaces[p] |= ws
    for plural, bases in noun_exc.items():
        for b in bases:
            if b in base and plural:
                surfaces[plural] |= base[b]
    rows = sorted((s, w) for s, ws in surfaces.items() if not is_excluded(s) for w in ws)
    return pd.DataFrame(rows, columns=["surface", "wnid"])


def noun_exc_path(reader) -> Path:
    return Path(str(reader.root.path if hasattr(reader.root, "path") else reader.root)) / "noun.exc"


def write_with_provenance(df: pd.DataFrame, path: str | Path, prov: dict) -> None:
    """Write a table atomically with its provenance in the parquet metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..io import atomic_path
    from .provenance import metadata

    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata(prov)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
