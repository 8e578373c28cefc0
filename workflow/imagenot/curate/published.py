"""Published-class mode: images for a given class list, without class selection.

The paper's authors published only ImageNot's 1000 class ids (``config/imagenot_classes.txt``).
With ``curation.classes: {mode: published, file: ...}`` the workflow takes the classes from
the file and skips class selection: steps 2-5 (ImageNet removal, minimum size, subtree
leaves, NSFW), step 7's synset threshold and step 8's CLIP class ranking. What remains:

1. step 1 as always (synsets named in captions);
2. ``published_candidates``: the listed synsets are the candidates (a wnid that is not a
   WordNet noun synset, or a malformed line, is an error naming it);
3. step 6 as always: captions naming exactly one listed class;
4. step 7's caption x gloss similarity as always, used only to order a class's images;
5. ``published_select``: labels in the file's order, up to ``ceil(images_per_class *
   oversample)`` images per class with the highest caption x gloss similarity, one row per
   URL (as in ``select``). A class with no caption at all is an error naming its wnids; a
   class with fewer images than ``images_per_class`` is a warning.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..io import InputError, atomic_path, write_csv, write_json
from .filters import (CANDIDATES_SCHEMA, STEPS, STEPS_METADATA_KEY, _provenance_metadata, count_captions,
                      read_candidates, read_synsets)
from .match import read_match_metadata
from .select import (CLASS_COLUMNS, assign_images, filter_table, per_class_quota, read_text_similarity,
                     write_table)

log = logging.getLogger(__name__)

_WNID = re.compile(r"n\d{8}")


def read_class_list(path: str | Path) -> list[str]:
    """wnids, one per line (blank lines and ``#`` comments ignored); duplicates are an error."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: class list not found (curation.classes.file)")
    wnids, seen = [], {}
    for k, line in enumerate(path.read_text().splitlines(), 1):
        w = line.split("#", 1)[0].strip()
        if not w:
            continue
        if not _WNID.fullmatch(w):
            raise InputError(f"{path}:{k}: {w!r} is not a WordNet noun id (n + 8 digits)")
        if w in seen:
            raise InputError(f"{path}:{k}: wnid {w} listed twice (first on line {seen[w]})")
        seen[w] = k
        wnids.append(w)
    if not wnids:
        raise InputError(f"{path}: class list is empty")
    return wnids


def check_known(wnids: Sequence[str], known, path: str | Path, synsets_path: str | Path) -> None:
    unknown = [w for w in wnids if w not in known]
    if unknown:
        raise InputError(f"{path}: unknown wnid(s) {', '.join(unknown[:20])}"
                         f"{' ...' if len(unknown) > 20 else ''}: not noun synsets of WordNet in {synsets_path}")


def published_candidates(match_paths: Sequence[str | Path], synsets_path: str | Path, classes_file: str | Path,
                         out_path: str | Path, report_path: str | Path, provenance: dict | None = None) -> dict:
    t0 = time.time()
    paths = [Path(p) for p in match_paths]
    if not paths:
        raise InputError("--matches: no match files given")
    classes = read_class_list(classes_file)
    syn = read_synsets(synsets_path).set_index("wnid")
    check_known(classes, syn.index, classes_file, synsets_path)
    counts, n_captions = count_captions(paths)
    mds = [read_match_metadata(p) for p in paths]
    captions_in = sum(int(md["rows_valid"]) for md in mds) if all(mds) else None
    listed = set(classes)
    caps_listed = _captions_naming(paths, listed)
    steps = [{"step": 1, "name": STEPS[1], "synsets_in": int(len(syn)),
              "synsets_removed": int(len(syn) - len(listed)), "synsets_out": len(listed),
              "captions_in": captions_in, "captions_out": int(caps_listed), "note": "published class list"}]
    for k in (2, 3, 4, 5):
        steps.append({"step": k, "name": STEPS[k], "synsets_in": len(listed), "synsets_removed": 0,
                      "synsets_out": len(listed), "captions_in": int(caps_listed),
                      "captions_out": int(caps_listed), "note": "skipped: published class list"})
    table = pa.table({
        "wnid": classes,
        "name": [syn.at[w, "name"] for w in classes],
        "gloss": [syn.at[w, "gloss"] for w in classes],
        "n_captions": [int(counts.get(w, 0)) for w in classes],
        "removed_at": pa.nulls(len(classes), pa.string()),
        "reason": pa.nulls(len(classes), pa.string()),
    }, schema=CANDIDATES_SCHEMA)
    table = table.replace_schema_metadata({STEPS_METADATA_KEY: json.dumps(steps).encode(),
                                           b"imagenot.classes": json.dumps(classes).encode(),
                                           **_provenance_metadata(provenance)})
    with atomic_path(out_path) as tmp:
        pq.write_table(table, tmp)
    missing = [w for w in classes if counts.get(w, 0) == 0]
    report = {"mode": "published", "classes_file": str(classes_file), "classes": len(classes),
              "classes_without_captions": missing, "matches": [str(p) for p in paths],
              "captions_naming_a_class": int(caps_listed), "steps": steps,
              "seconds": round(time.time() - t0, 3)}
    if provenance is not None:
        report["provenance"] = provenance
    write_json(report, report_path)
    log.info("published classes: %d listed, %d named in no caption", len(classes), len(missing))
    return report


def _captions_naming(paths: Sequence[Path], listed: set[str]) -> int:
    from .filters import _flat, _iter_wnid_lists
    import pyarrow.compute as pc

    value_set = pa.array(sorted(listed), pa.string())
    n = 0
    for _, batch in _iter_wnid_lists(paths):
        parents, flat = _flat(batch.column("wnids"))
        hit = pc.is_in(flat, value_set=value_set).to_numpy(zero_copy_only=False)
        n += len(np.unique(parents[hit]))
    return n


def published_select(text_sim_path: str | Path, candidates_path: str | Path, classes_file: str | Path,
                     params: dict, out_classes: str | Path, out_selection: str | Path, out_table: str | Path,
                     provenance: dict | None = None) -> dict:
    t0 = time.time()
    classes = read_class_list(classes_file)
    cand, steps = read_candidates(candidates_path)
    if list(cand["wnid"]) != classes:
        raise InputError(f"{candidates_path}: its classes differ from {classes_file} "
                         "(written by `curate candidates --classes-file` from another list?)")
    if "images_per_class" not in params:
        raise InputError("--params: curation.images_per_class is required")
    images_per_class = int(params["images_per_class"])
    quota = per_class_quota(images_per_class, float(params.get("oversample", 1.25)))
    df = read_text_similarity(text_sim_path)
    stray = sorted(set(df["wnid"]) - set(classes))
    if stray:
        raise InputError(f"{text_sim_path}: wnid(s) {stray[:5]} are not in {classes_file} (inputs from different runs?)")
    label = {w: i for i, w in enumerate(classes)}
    df = df.sort_values(["wnid", "url", "text_sim", "key"], ascending=[True, True, False, True], kind="stable")
    per_url = df.drop_duplicates(["wnid", "url"], keep="first")
    n_images = per_url.groupby("wnid")["url"].size()
    empty = [w for w in classes if n_images.get(w, 0) == 0]
    if empty:
        raise InputError(f"{len(empty)} class(es) of {classes_file} have no caption naming them alone in this corpus: "
                         f"{', '.join(empty[:20])}{' ...' if len(empty) > 20 else ''}")
    sel = assign_images(per_url, label, quota)
    n_sel = sel.groupby("label").size()
    short = [(label[w], w, int(n_sel.get(label[w], 0))) for w in classes if n_sel.get(label[w], 0) < images_per_class]
    if short:
        log.warning("published classes with fewer than images_per_class=%d images: %s", images_per_class, short[:20])
    mean_sim = per_url.groupby("wnid")["text_sim"].mean()
    info = cand.set_index("wnid")
    out = pd.DataFrame({
        "label": np.arange(len(classes), dtype=np.int64),
        "wnid": classes,
        "name": [info.at[w, "name"] for w in classes],
        "gloss": [info.at[w, "gloss"] for w in classes],
        "mean_top_text_sim": [float(mean_sim.get(w, np.nan)) for w in classes],
        "clip_score": np.full(len(classes), np.nan),
        "rank": np.arange(1, len(classes) + 1, dtype=np.int64),
        "n_images": [int(n_images.get(w, 0)) for w in classes],
        "n_selected": [int(n_sel.get(label[w], 0)) for w in classes],
    })[CLASS_COLUMNS]
    alive = set(classes)
    table = filter_table(steps, cand, df, alive, sorted(set(df["wnid"])), sorted(set(df["wnid"])), classes)
    write_table(out, out_classes, provenance)
    write_table(sel, out_selection, provenance)
    write_csv(table, out_table)
    log.info("published classes: %d classes, %d images (quota %d) in %.1f s", len(classes), len(sel), quota,
             time.time() - t0)
    return {"classes": len(classes), "images": len(sel), "quota": quota, "short": short, "table": table}
