"""Step 8 with CLIP: class x image similarity from open_clip, for ranking classes.

The paper ranks classes by the mean of their top 1100 class x image CLIP similarities.
``curation.clip.source: open_clip`` does that here:

- the class side: open_clip's text tower (``curation.clip.model`` / ``pretrained``) on the
  prompt ``"a photo of a {lemma}."`` (the synset's first lemma), L2-normalised;
- the image side: either LAION's released CLIP image embeddings, read row-aligned with the
  metadata parts (``curation.clip.image_embeddings``: a path template with ``{part}`` and
  optionally ``{subset}``, e.g. ``/data/laion2B-en/img_emb/img_emb_{part}.npy``; row ``i``
  of the npy file is row ``i`` of metadata part ``part``, and a caption's key
  ``SUBSET/PART/ROW`` says which), so nobody needs to download billions of images; or
  ``encode_images`` on downloaded images (PIL), batched, L2-normalised.

The embeddings must come from the same CLIP model as the text tower (LAION-5B's released
ones are ViT-L/14: ``model: ViT-L-14, pretrained: openai``); a dimension mismatch is an
error. Offline there are no CLIP weights: the demo uses ``source: laion_similarity``, and the
tests run this code path with a randomly initialised small open_clip model, which checks
shapes, batching and normalisation only, not similarity quality.

``clip_scores`` writes ``clip_scores.parquet`` (key, wnid, clip_sim) for the captions of
step 7; ``select`` uses ``clip_sim`` in place of LAION's ``similarity``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..io import InputError, atomic_path
from .filters import read_synsets
from .match import open_parquet

log = logging.getLogger(__name__)

CLIP_SCORES_SCHEMA = pa.schema([("key", pa.string()), ("wnid", pa.string()), ("clip_sim", pa.float32())])


def load_open_clip(model_name: str, pretrained: str | None, device: str = "cpu"):
    """(model, preprocess, tokenizer); ``pretrained`` None/""/"none": random weights (tests)."""
    import open_clip

    pre = None if pretrained in (None, "", "none", "None") else pretrained
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pre, device=device)
    except Exception as e:  # unknown names, missing weights offline...
        raise InputError(f"curation.clip: cannot load open_clip model {model_name!r} pretrained={pretrained!r}: "
                         f"{e.__class__.__name__}: {e}") from e
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(model_name)


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def class_prompts(lemmas_per_class: Sequence[Sequence[str]]) -> list[str]:
    return [f"a photo of a {str(lemmas[0]).replace('_', ' ')}." for lemmas in lemmas_per_class]


def encode_texts(model, tokenizer, texts: Sequence[str], batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    """L2-normalised float32 text embeddings, ``batch_size`` texts per forward pass."""
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(texts), batch_size):
            tok = tokenizer(list(texts[s:s + batch_size])).to(device)
            out.append(model.encode_text(tok).float().cpu().numpy())
    dim = int(model.text_projection.shape[-1]) if hasattr(model, "text_projection") and model.text_projection is not None else 0
    return _normalise(np.concatenate(out)) if out else np.zeros((0, dim), np.float32)


def encode_images(model, preprocess, images: Sequence, batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    """L2-normalised float32 image embeddings of PIL images."""
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            x = torch.stack([preprocess(im) for im in images[s:s + batch_size]]).to(device)
            out.append(model.encode_image(x).float().cpu().numpy())
    return _normalise(np.concatenate(out)) if out else np.zeros((0, 0), np.float32)


def parse_key(key: str) -> tuple[str, str, int]:
    """``SUBSET/PART/ROW`` (the keys of ``curate match``) -> (subset, part, row)."""
    parts = key.rsplit("/", 2)
    if len(parts) != 3 or not parts[2].isdigit():
        raise InputError(f"caption key {key!r} is not SUBSET/PART/ROW: cannot align it with image embeddings")
    return parts[0], parts[1], int(parts[2])


def read_aligned_embeddings(keys: Sequence[str], template: str) -> np.ndarray:
    """Image embeddings of the given caption keys from row-aligned npy files, L2-normalised.

    ``template`` holds ``{part}`` (and optionally ``{subset}``); files are memory-mapped, so
    only the needed rows are read."""
    if "{part}" not in template:
        raise InputError(f"curation.clip.image_embeddings={template!r}: needs a {{part}} placeholder")
    parsed = [parse_key(k) for k in keys]
    out: np.ndarray | None = None
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (subset, part, _) in enumerate(parsed):
        groups.setdefault((subset, part), []).append(i)
    for (subset, part), idx in sorted(groups.items()):
        path = Path(template.format(part=part, subset=subset))
        if not path.is_file():
            raise InputError(f"{path}: image embeddings for metadata part {subset}/{part} not found "
                             f"(curation.clip.image_embeddings={template!r})")
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise InputError(f"{path}: not a readable npy file ({e})") from e
        if arr.ndim != 2:
            raise InputError(f"{path}: expected a 2-d array (rows x dim), got shape {arr.shape}")
        rows = np.array([parsed[i][2] for i in idx], np.int64)
        if rows.max() >= arr.shape[0]:
            raise InputError(f"{path}: has {arr.shape[0]} rows, but metadata part {subset}/{part} row "
                             f"{int(rows.max())} is needed: the embeddings are not aligned with the metadata")
        if out is None:
            out = np.zeros((len(keys), arr.shape[1]), np.float32)
        elif arr.shape[1] != out.shape[1]:
            raise InputError(f"{path}: embedding dimension {arr.shape[1]} differs from {out.shape[1]} of other parts")
        order = np.argsort(rows)
        out[np.array(idx)[order]] = np.asarray(arr[rows[order]], np.float32)
    if out is None:
        return np.zeros((0, 0), np.float32)
    return _normalise(out)


def clip_scores(text_sim_path: str | Path, synsets_path: str | Path, params: dict, out_path: str | Path,
                device: str = "cpu", model=None, provenance: dict | None = None) -> dict:
    """Per caption of step 7: cosine of its image's CLIP embedding with its class prompt's."""
    t0 = time.time()
    text_sim_path = Path(text_sim_path)
    template = params.get("image_embeddings")
    if not template:
        raise InputError("curation.clip.source=open_clip needs curation.clip.image_embeddings "
                         "(LAION's CLIP image embeddings aligned with the metadata parts)")
    pf = open_parquet(text_sim_path)
    for c in ("key", "wnid"):
        if c not in pf.schema_arrow.names:
            raise InputError(f"{text_sim_path}: lacks column '{c}' (written by `imagenot curate text-similarity`)")
    df = pf.read(columns=["key", "wnid"]).to_pandas()
    syn = read_synsets(synsets_path).set_index("wnid")
    wnids = sorted(set(df["wnid"]))
    unknown = [w for w in wnids if w not in syn.index]
    if unknown:
        raise InputError(f"{text_sim_path}: wnid(s) {unknown[:5]} not in {synsets_path}")
    if model is None:
        model = load_open_clip(params.get("model", "ViT-L-14"), params.get("pretrained", "openai"), device)
    clip_model, _, tokenizer = model
    batch_size = int(params.get("batch_size", 256))
    text_emb = encode_texts(clip_model, tokenizer, class_prompts([syn.at[w, "lemmas"] for w in wnids]),
                            batch_size, device)
    img_emb = read_aligned_embeddings(df["key"].tolist(), template)
    if len(df) and img_emb.shape[1] != text_emb.shape[1]:
        raise InputError(f"image embeddings ({template}) have dimension {img_emb.shape[1]}, but open_clip model "
                         f"{params.get('model')!r} embeds text in {text_emb.shape[1]}: use the CLIP model that made them")
    row = {w: i for i, w in enumerate(wnids)}
    g = np.fromiter((row[w] for w in df["wnid"]), np.int64, len(df))
    sims = np.einsum("ij,ij->i", img_emb, text_emb[g]).astype(np.float32) if len(df) else np.zeros(0, np.float32)
    table = pa.table({"key": df["key"], "wnid": df["wnid"], "clip_sim": sims}, schema=CLIP_SCORES_SCHEMA)
    if provenance is not None:
        from .provenance import metadata

        table = table.replace_schema_metadata(metadata(provenance))
    with atomic_path(out_path) as tmp:
        pq.write_table(table, tmp)
    report = {"captions": len(df), "classes": len(wnids), "dim": int(text_emb.shape[1]),
              "seconds": round(time.time() - t0, 3)}
    log.info("clip scores: %d captions of %d synsets in %.1f s", len(df), len(wnids), report["seconds"])
    return report


def read_clip_scores(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    pf = open_parquet(path)
    missing = [c for c in ("key", "clip_sim") if c not in pf.schema_arrow.names]
    if missing:
        raise InputError(f"{path}: lacks column(s) {missing} (written by `imagenot curate clip-scores`)")
    return pf.read(columns=["key", "clip_sim"]).to_pandas()
