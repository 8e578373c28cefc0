"""Steps 7-8 and the choice of images per class.

7. ``text_similarity``: a synset is kept when the mean of its top ``top_n`` caption x gloss
   similarities (``text_sim``) is ``>= threshold`` (a synset with fewer than ``top_n``
   captions averages the ones it has).
8. ``clip_rank``: the surviving synsets that can fill a class (at least
   ``images_per_class`` distinct image URLs) are ranked by the mean of their top
   ``top_m`` class x image CLIP similarities; the best ``n_classes`` become the classes,
   labels ``0..n_classes-1`` in rank order (ties broken by wnid).

   ``clip.source: laion_similarity`` uses LAION's own ``similarity`` column (CLIP ViT-B/32
   or ViT-L/14 cosine between the image and its caption) as the class x image score: an
   offline stand-in for the paper's class-prompt x image CLIP similarity, honest about
   being caption-based. Rows without a similarity are left out of the score.
   ``clip.source: open_clip`` needs CLIP image embeddings, which this stage does not
   compute: it raises an InputError.

Images: per class, up to ``ceil(images_per_class * oversample)`` captions with the highest
``text_sim`` (the paper picks images by caption x class similarity), one row per URL
(a URL named by several selected classes goes to the class where its text_sim is highest).

Also writes the filter table (``curation_filters.csv``): one row per step 1..8 with
synsets and captions in and out; steps 1-5 come from the candidates table's metadata.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import InputError, write_csv, write_parquet
from .embed import TEXT_SIM_SCHEMA
from .filters import STEPS, read_candidates
from .match import open_parquet

log = logging.getLogger(__name__)

CLASS_COLUMNS = ["label", "wnid", "name", "gloss", "mean_top_text_sim", "clip_score", "rank",
                 "n_images", "n_selected"]
SELECTION_COLUMNS = ["key", "url", "text", "wnid", "label", "text_sim", "clip_sim", "rank_in_class"]
TABLE_COLUMNS = ["step", "name", "synsets_in", "synsets_removed", "synsets_out", "captions_in", "captions_out"]


def per_class_quota(images_per_class: int, oversample: float) -> int:
    return int(math.ceil(round(images_per_class * oversample, 6)))


def _top_mean(values: pd.Series, groups: pd.Series, n: int) -> pd.Series:
    """Per group: mean of the n largest non-null values."""
    df = pd.DataFrame({"g": groups.to_numpy(), "v": values.to_numpy()}).dropna(subset=["v"])
    df = df.sort_values(["g", "v"], ascending=[True, False], kind="stable")
    return df.groupby("g", sort=True).head(n).groupby("g", sort=True)["v"].mean()


def read_text_similarity(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    pf = open_parquet(path)
    need = [f.name for f in TEXT_SIM_SCHEMA]
    missing = [c for c in need if c not in pf.schema_arrow.names]
    if missing:
        raise InputError(f"{path}: lacks column(s) {missing} (written by `imagenot curate text-similarity`)")
    return pf.read(columns=need).to_pandas()



def assign_images(per_url: pd.DataFrame, label: dict, quota: int) -> pd.DataFrame:
    """The images of the classes in ``label`` (wnid -> label), best text_sim first, at most
    ``quota`` per class; a URL named by several of the classes goes to its best row.
    ``per_url``: one row per (wnid, url). Returns SELECTION_COLUMNS with ``rank_in_class``."""
    pool = per_url[per_url["wnid"].isin(label)].copy()
    pool["label"] = pool["wnid"].map(label).astype("int64")
    pool = pool.sort_values(["url", "text_sim", "label", "key"], ascending=[True, False, True, True], kind="stable")
    pool = pool.drop_duplicates("url", keep="first")
    pool = pool.sort_values(["label", "text_sim", "key"], ascending=[True, False, True], kind="stable")
    sel = pool.groupby("label", sort=True).head(quota).copy()
    sel["rank_in_class"] = sel.groupby("label").cumcount().astype("int64")
    return sel.rename(columns={"similarity": "clip_sim"})[SELECTION_COLUMNS].reset_index(drop=True)

def select(text_sim_path: str | Path, candidates_path: str | Path, params: dict,
           out_classes: str | Path, out_selection: str | Path, out_table: str | Path,
           provenance: dict | None = None, clip_scores: pd.DataFrame | None = None) -> dict:
    t0 = time.time()
    ts = dict(params.get("text_similarity") or {})
    clip = dict(params.get("clip") or {})
    top_n = int(ts.get("top_n", 10))
    threshold = float(ts.get("threshold", 0.3))
    source = clip.get("source", "laion_similarity")
    top_m = int(clip.get("top_m", 1100))
    for key in ("n_classes", "images_per_class"):
        if key not in params:
            raise InputError(f"--params: curation.{key} is required")
    n_classes = int(params["n_classes"])
    images_per_class = int(params["images_per_class"])
    quota = per_class_quota(images_per_class, float(params.get("oversample", 1.25)))
    if source == "open_clip" and clip_scores is None:
        raise InputError(
            "curation.clip.source=open_clip: ranking classes by CLIP class x image similarity needs "
            "CLIP image embeddings: set curation.clip.image_embeddings to LAION's released embeddings "
            "(aligned with the metadata parts), which `imagenot curate clip-scores` turns into class x image "
            "scores, or use curation.clip.source=laion_similarity to rank by LAION's own similarity column.")
    if source not in ("laion_similarity", "open_clip"):
        raise InputError(f"curation.clip.source: unknown source {source!r} (laion_similarity or open_clip)")

    cand, steps = read_candidates(candidates_path)
    df = read_text_similarity(text_sim_path)
    if source == "open_clip":
        # the class x image CLIP similarity replaces LAION's caption x image one
        scores = clip_scores.set_index("key")["clip_sim"]
        df["similarity"] = df["key"].map(scores).astype("float64")
    alive5 = set(cand.loc[cand["removed_at"].isna(), "wnid"])
    stray = sorted(set(df["wnid"]) - alive5)
    if stray:
        raise InputError(f"{text_sim_path}: wnid(s) {stray[:5]} are not surviving candidates in {candidates_path} "
                         "(inputs from different runs?)")
    if len(df) and df["similarity"].isna().all():
        raise InputError(f"{text_sim_path}: column 'similarity' is null for every caption; "
                         "curation.clip.source=laion_similarity needs LAION's similarity column "
                         "(corpus.columns.similarity)")
    info = cand.set_index("wnid")

    # one row per (class, URL): the caption with the highest text_sim
    df = df.sort_values(["wnid", "url", "text_sim", "key"], ascending=[True, True, False, True], kind="stable")
    per_url = df.drop_duplicates(["wnid", "url"], keep="first")

    # step 7
    mean_top = _top_mean(per_url["text_sim"], per_url["wnid"], top_n)
    alive6 = sorted(mean_top.index)
    alive7 = [w for w in alive6 if mean_top[w] >= threshold]
    # step 8
    n_images = per_url.groupby("wnid")["url"].size()
    clip_score = _top_mean(per_url["similarity"], per_url["wnid"], top_m)
    eligible = [w for w in alive7 if n_images[w] >= images_per_class and w in clip_score.index]
    ranked = sorted(eligible, key=lambda w: (-clip_score[w], w))
    if len(ranked) < n_classes:
        raise InputError(_not_enough_message(n_classes, alive6, alive7, eligible, mean_top, n_images,
                                             images_per_class, threshold, top_n, clip_score))
    chosen = ranked[:n_classes]
    label = {w: i for i, w in enumerate(chosen)}

    sel = assign_images(per_url, label, quota)
    n_sel = sel.groupby("label").size()
    short = [(label[w], w, int(n_sel.get(label[w], 0))) for w in chosen if n_sel.get(label[w], 0) < images_per_class]
    if short:
        log.warning("classes with fewer than images_per_class=%d selected images after cross-class URL "
                    "de-duplication: %s", images_per_class, short)

    rank_all = {w: i + 1 for i, w in enumerate(ranked)}
    classes = pd.DataFrame({
        "label": np.arange(len(chosen), dtype=np.int64),
        "wnid": chosen,
        "name": [info.at[w, "name"] for w in chosen],
        "gloss": [info.at[w, "gloss"] for w in chosen],
        "mean_top_text_sim": [float(mean_top[w]) for w in chosen],
        "clip_score": [float(clip_score[w]) for w in chosen],
        "rank": [rank_all[w] for w in chosen],
        "n_images": [int(n_images[w]) for w in chosen],
        "n_selected": [int(n_sel.get(label[w], 0)) for w in chosen],
    })[CLASS_COLUMNS]

    table = filter_table(steps, cand, df, alive5, alive6, alive7, chosen)
    write_table(classes, out_classes, provenance)
    write_table(sel, out_selection, provenance)
    write_csv(table, out_table)
    log.info("selected %d classes, %d images (quota %d per class) in %.1f s",
             len(chosen), len(sel), quota, time.time() - t0)
    return {"classes": len(chosen), "images": len(sel), "quota": quota, "table": table}


def write_table(df: pd.DataFrame, path: str | Path, provenance: dict | None) -> None:
    """A DataFrame as parquet, atomically, with the provenance in the schema metadata."""
    if provenance is None:
        write_parquet(df, path)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..io import atomic_path
    from .provenance import metadata

    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata(provenance)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def filter_table(steps: list[dict], cand: pd.DataFrame, df: pd.DataFrame, alive5: set, alive6: list,
                 alive7: list, chosen: list) -> pd.DataFrame:
    rows = [dict(r) for r in steps if r["step"] <= 5]
    if [r["step"] for r in rows] != [1, 2, 3, 4, 5]:
        log.warning("candidates table carries no per-step metadata for steps 1-5; writing what it has")
    caps5 = rows[-1]["captions_out"] if rows else None
    counts = df.groupby("wnid").size()

    def caps(ws) -> int:
        return int(counts.reindex(list(ws)).fillna(0).sum())

    rows.append({"step": 6, "name": STEPS[6], "synsets_in": len(alive5),
                 "synsets_removed": len(alive5) - len(alive6), "synsets_out": len(alive6),
                 "captions_in": caps5, "captions_out": int(len(df))})
    rows.append({"step": 7, "name": STEPS[7], "synsets_in": len(alive6),
                 "synsets_removed": len(alive6) - len(alive7), "synsets_out": len(alive7),
                 "captions_in": int(len(df)), "captions_out": caps(alive7)})
    rows.append({"step": 8, "name": STEPS[8], "synsets_in": len(alive7),
                 "synsets_removed": len(alive7) - len(chosen), "synsets_out": len(chosen),
                 "captions_in": caps(alive7), "captions_out": caps(chosen)})
    table = pd.DataFrame(rows)
    for c in TABLE_COLUMNS:
        if c not in table:
            table[c] = None
    table = table[TABLE_COLUMNS]
    for c in TABLE_COLUMNS[2:]:
        table[c] = table[c].astype("Int64")
    return table


def _not_enough_message(n_classes, alive6, alive7, eligible, mean_top, n_images, images_per_class,
                        threshold, top_n, clip_score) -> str:
    big = [w for w in alive6 if n_images[w] >= images_per_class and w in clip_score.index]
    lines = [
        f"only {len(eligible)} classes survive steps 7-8, but curation.n_classes={n_classes}:",
        f"  step 6 left {len(alive6)} synsets with captions;",
        f"  step 7 (mean of top text_similarity.top_n={top_n} text_sim >= text_similarity.threshold="
        f"{threshold}) keeps {len(alive7)};",
        f"  step 8 needs >= images_per_class={images_per_class} distinct image URLs per class "
        f"(and a LAION similarity): {len(eligible)} of those {len(alive7)} have them.",
    ]
    if len(big) >= n_classes:
        need = sorted((mean_top[w] for w in big), reverse=True)[n_classes - 1]
        lines.append(f"Relax curation.text_similarity.threshold to <= {math.floor(need * 1000) / 1000:.3f} "
                     f"to keep {n_classes} classes.")
    else:
        lines.append(f"Only {len(big)} synsets have >= {images_per_class} images even before step 7: "
                     "lower curation.images_per_class or curation.min_captions_per_synset, "
                     "use a larger corpus, or lower curation.n_classes.")
    return "\n".join(lines)
