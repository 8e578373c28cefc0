"""Provenance of curation outputs: which config values, WordNet and models produced them.

Every curation step records a ``provenance`` object in its JSON report and, for parquet
outputs, in the file's key-value metadata under ``imagenot.provenance``:

``{"step", "imagenot_version", "config" (the config values the rule passed), "wordnet"
({"version", "source", "nltk_version", "n_noun_synsets"} from the vocabulary build),
"models" ({"text": ..., "clip": ...} ids from the config), "inputs" (file names)}``.

The WordNet part is written once by ``curate vocab`` into ``synsets.parquet`` and
``vocab.parquet`` and read back from there by every later step, so a step's provenance
names the WordNet its inputs were really built from. Nothing time-dependent is recorded
(a rerun on the same inputs writes the same bytes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import pyarrow.parquet as pq

from .. import __version__

PROVENANCE_KEY = b"imagenot.provenance"


def wordnet_info(reader, root: str | Path, n_noun_synsets: int) -> dict:
    import nltk

    return {"version": str(reader.get_version()), "source": str(root), "nltk_version": nltk.__version__,
            "n_noun_synsets": int(n_noun_synsets)}


def models_from_config(config: Mapping | None) -> dict:
    """Model ids named by a curation config section (text embedding and CLIP)."""
    cfg = dict(config or {})
    cur = dict(cfg.get("curation") or cfg)
    ts = dict(cfg.get("curation.text_similarity") or cur.get("text_similarity") or {})
    clip = dict(cfg.get("curation.clip") or cur.get("clip") or {})
    out = {}
    if ts.get("model"):
        out["text"] = ts["model"]
    if clip:
        out["clip"] = {k: clip[k] for k in ("source", "model", "pretrained", "image_embeddings") if k in clip}
    return out


def read(path: str | Path) -> dict | None:
    """The provenance recorded in a parquet file's metadata, or None."""
    try:
        md = pq.ParquetFile(path).metadata.metadata or {}
    except (OSError, Exception):  # noqa: BLE001 - unreadable files have no provenance
        return None
    raw = md.get(PROVENANCE_KEY)
    return json.loads(raw) if raw else None


def wordnet_of(paths: Sequence[str | Path]) -> dict | None:
    """WordNet info of the first input that records one (vocab/synsets or a later output)."""
    for p in paths:
        prov = read(p) if Path(p).is_file() else None
        if prov and prov.get("wordnet"):
            return prov["wordnet"]
    return None


def build(step: str, config: Mapping | None, inputs: Sequence[str | Path] = (),
          wordnet: Mapping | None = None, models: Mapping | None = None) -> dict:
    if wordnet is None:
        wordnet = wordnet_of(inputs)
    return {
        "step": step,
        "imagenot_version": __version__,
        "config": dict(config or {}),
        "wordnet": dict(wordnet) if wordnet else None,
        "models": dict(models) if models is not None else models_from_config(config),
        "inputs": [str(p) for p in inputs],
    }


def metadata(prov: Mapping[str, Any]) -> dict[bytes, bytes]:
    return {PROVENANCE_KEY: json.dumps(prov, sort_keys=True, default=str).encode()}
