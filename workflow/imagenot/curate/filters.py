"""Steps 2-6: from the synsets found in captions to candidate classes and their captions.

``candidates`` (steps 2-5) counts captions per synset over all match parts, then removes,
in the paper's order:

2. ``imagenet``: ImageNet-1k synsets (timm's ``imagenet_synsets.txt``) and every synset
   that shares a lemma (normalised like captions) with one of them;
3. ``min_captions``: synsets named by fewer than ``min_captions_per_synset`` captions;
4. ``subtree_leaves``: in the minimal WordNet subtree spanning the remaining candidates
   (their hypernym and instance-hypernym paths to the root), only leaves are kept. Every
   non-candidate node of that subtree lies on a path up from some candidate, so its leaves
   are exactly the candidates with no other candidate below them: a candidate that is an
   ancestor of another candidate is removed;
5. ``nsfw``: alt-profanity-check's ``predict_prob`` on each lemma (spaces for
   underscores) and on the gloss; the synset goes when the largest probability is
   ``>= nsfw_threshold``. (The paper used Song et al.'s reddit abusiveness classifier,
   which is not available; LAION's image-level ``punsafe`` is applied in step 1.)

``captions`` (step 6) keeps the captions whose named synsets include exactly one
surviving candidate.

Per-step counts are written to the reports and into the parquet key-value metadata
(``imagenot.steps``) so that ``select`` can write the full filter table from its own inputs.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..io import InputError, atomic_path, write_json
from .match import normalize, open_parquet, read_match_metadata

log = logging.getLogger(__name__)

STEPS = {
    1: "found_in_captions",
    2: "imagenet",
    3: "min_captions",
    4: "subtree_leaves",
    5: "nsfw",
    6: "one_synset_captions",
    7: "text_similarity",
    8: "clip_rank",
}
STEP_OF = {name: k for k, name in STEPS.items()}
STEPS_METADATA_KEY = b"imagenot.steps"
_SURVIVES = 99  # step index of a synset no step removed

CANDIDATES_SCHEMA = pa.schema([
    ("wnid", pa.string()),
    ("name", pa.string()),
    ("gloss", pa.string()),
    ("n_captions", pa.int64()),
    ("removed_at", pa.string()),
    ("reason", pa.string()),
])
CAPTIONS_SCHEMA = pa.schema([
    ("key", pa.string()),
    ("url", pa.string()),
    ("text", pa.string()),
    ("similarity", pa.float64()),
    ("wnid", pa.string()),
])


# ---------------------------------------------------------------------------------------
# inputs


def _provenance_metadata(provenance: dict | None) -> dict:
    from .provenance import metadata

    return metadata(provenance) if provenance is not None else {}


def imagenet_wnids() -> list[str]:
    """The 1000 ILSVRC-2012 wnids, from the list timm ships (no download)."""
    # located without importing timm (which imports torch: ~15 s on a busy machine)
    spec = importlib.util.find_spec("timm")
    roots = list(spec.submodule_search_locations or []) if spec else []
    f = Path(roots[0]) / "data" / "_info" / "imagenet_synsets.txt" if roots else None
    if f is None or not f.is_file():
        raise InputError("timm/data/_info/imagenet_synsets.txt not found: install timm "
                         "(it ships the ImageNet-1k class list)")
    wnids = [line.strip() for line in f.read_text().splitlines() if line.strip()]
    if len(wnids) != 1000:
        raise InputError(f"timm imagenet_synsets.txt: expected 1000 wnids, found {len(wnids)}")
    return wnids


def read_synsets(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    pf = open_parquet(path)
    need = ["wnid", "name", "lemmas", "gloss", "hypernyms", "depth"]
    missing = [c for c in need if c not in pf.schema_arrow.names]
    if missing:
        raise InputError(f"{path}: synsets table lacks column(s) {missing} (build it with `imagenot curate vocab`)")
    return pf.read(columns=need).to_pandas()


def _check_match_file(path: Path, columns: Sequence[str]) -> pq.ParquetFile:
    pf = open_parquet(path)
    missing = [c for c in columns if c not in pf.schema_arrow.names]
    if missing:
        raise InputError(f"{path}: match file lacks column(s) {missing} (written by `imagenot curate match`)")
    return pf


def _iter_wnid_lists(paths: Sequence[Path], extra: Sequence[str] = ()):
    """(path, batch) over all match files, reading only the needed columns."""
    for path in paths:
        pf = _check_match_file(path, ["wnids", *extra])
        for batch in pf.iter_batches(batch_size=262144, columns=["wnids", *extra]):
            yield path, batch


def _flat(list_array: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(row index of each flat value, flat values) of a list<string> array."""
    if isinstance(list_array, pa.ChunkedArray):
        list_array = list_array.combine_chunks()
    parents = pc.list_parent_indices(list_array).to_numpy(zero_copy_only=False)
    return parents, pc.list_flatten(list_array)


# ---------------------------------------------------------------------------------------
# steps 2-5


def count_captions(paths: Sequence[Path]) -> tuple[Counter, int]:
    counts: Counter = Counter()
    n_rows = 0
    for _, batch in _iter_wnid_lists(paths):
        n_rows += batch.num_rows
        _, flat = _flat(batch.column("wnids"))
        vc = pc.value_counts(flat)
        counts.update(dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())))
    return counts, n_rows


def ancestor_blockers(candidates: Sequence[str], parents: dict[str, list[str]]) -> dict[str, str]:
    """{ancestor: a candidate below it} for every strict (instance-)hypernym ancestor of a
    candidate. Linear: an ancestor seen once had all its own ancestors marked then."""
    blocker: dict[str, str] = {}
    for c in sorted(candidates):
        stack = list(parents.get(c, ()))
        while stack:
            a = stack.pop()
            if a in blocker:
                continue
            blocker[a] = c
            stack.extend(parents.get(a, ()))
    return blocker


def nsfw_scores(texts_by_wnid: dict[str, list[str]]) -> dict[str, tuple[float, str]]:
    """{wnid: (max probability, the text that gave it)} with alt-profanity-check."""
    from profanity_check import predict_prob

    flat = [(w, t) for w, ts in texts_by_wnid.items() for t in ts]
    if not flat:
        return {}
    probs = predict_prob([t for _, t in flat])
    best: dict[str, tuple[float, str]] = {}
    for (w, t), p in zip(flat, probs):
        if w not in best or p > best[w][0]:
            best[w] = (float(p), t)
    return best


def _step_stats(status: dict[str, int], paths: Sequence[Path]) -> dict[int, int]:
    """captions_out per step: captions that still name >= 1 synset surviving that step."""
    lookup_keys = pa.array(list(status), pa.string())
    lookup_vals = np.array([status[w] for w in status], dtype=np.int64)
    survive_to = []  # per caption: the largest removal step over its synsets
    for _, batch in _iter_wnid_lists(paths):
        parents, flat = _flat(batch.column("wnids"))
        idx = pc.index_in(flat, value_set=lookup_keys).to_numpy(zero_copy_only=False)
        vals = lookup_vals[idx.astype(np.int64)]
        per_row = np.zeros(batch.num_rows, dtype=np.int64)
        np.maximum.at(per_row, parents, vals)
        survive_to.append(per_row)
    allrows = np.concatenate(survive_to) if survive_to else np.zeros(0, np.int64)
    return {k: int((allrows > k).sum()) for k in (2, 3, 4, 5)}


def candidates(match_paths: Sequence[str | Path], synsets_path: str | Path, params: dict,
               out_path: str | Path, report_path: str | Path, provenance: dict | None = None) -> dict:
    t0 = time.time()
    paths = [Path(p) for p in match_paths]
    if not paths:
        raise InputError("--matches: no match files given")
    min_captions = int(params.get("min_captions_per_synset", 20))
    exclude_imagenet = bool(params.get("exclude_imagenet", True))
    nsfw_threshold = float(params.get("nsfw_threshold", 0.5))
    syn = read_synsets(synsets_path)
    by_wnid = syn.set_index("wnid")
    counts, n_captions = count_captions(paths)
    unknown = sorted(set(counts) - set(by_wnid.index))
    if unknown:
        raise InputError(f"match files name {len(unknown)} wnid(s) absent from {synsets_path} "
                         f"(e.g. {unknown[:5]}): the vocabulary and the synsets table come from different builds")
    # valid captions that step 1 searched (written by `curate match` into each part's metadata)
    mds = [read_match_metadata(p) for p in paths]
    captions_in = sum(int(md["rows_valid"]) for md in mds) if all(mds) else None

    seen = sorted(counts)
    removed: dict[str, tuple[str, str]] = {}
    step_rows = [{"step": 1, "name": STEPS[1], "synsets_in": int(len(syn)),
                  "synsets_removed": int(len(syn) - len(seen)), "synsets_out": len(seen),
                  "captions_in": captions_in, "captions_out": int(n_captions)}]

    def record(step: int, alive_before: list[str]) -> list[str]:
        alive = [w for w in alive_before if w not in removed]
        step_rows.append({"step": step, "name": STEPS[step], "synsets_in": len(alive_before),
                          "synsets_removed": len(alive_before) - len(alive), "synsets_out": len(alive)})
        log.info("step %d %s: %d -> %d synsets", step, STEPS[step], len(alive_before), len(alive))
        return alive

    # step 2: ImageNet-1k synsets and synsets sharing a lemma with one
    alive = seen
    if exclude_imagenet:
        inet = imagenet_wnids()
        missing = [w for w in inet if w not in by_wnid.index]
        if missing:
            raise InputError(f"{synsets_path}: lacks {len(missing)} ImageNet-1k synsets (e.g. {missing[:3]}); "
                             "build it from all of WordNet 3.0 with `imagenot curate vocab`")
        inet_set = set(inet)
        lemma_owner: dict[str, str] = {}
        for w in inet:
            for lemma in by_wnid.at[w, "lemmas"]:
                lemma_owner.setdefault(normalize(lemma), w)
        for w in alive:
            if w in inet_set:
                removed[w] = (STEPS[2], "ImageNet-1k synset")
                continue
            for lemma in by_wnid.at[w, "lemmas"]:
                owner = lemma_owner.get(normalize(lemma))
                if owner is not None:
                    removed[w] = (STEPS[2], f"shares lemma '{normalize(lemma)}' with ImageNet-1k "
                                            f"{owner} ({by_wnid.at[owner, 'name']})")
                    break
    alive = record(2, alive)

    # step 3: too few captions
    for w in alive:
        if counts[w] < min_captions:
            removed[w] = (STEPS[3], f"{counts[w]} captions < min_captions_per_synset={min_captions}")
    alive = record(3, alive)

    # step 4: leaves of the minimal subtree spanning the candidates
    parents = dict(zip(syn["wnid"], syn["hypernyms"]))
    blocker = ancestor_blockers(alive, parents)
    for w in alive:
        if w in blocker:
            b = blocker[w]
            removed[w] = (STEPS[4], f"ancestor of candidate {b} ({by_wnid.at[b, 'name']})")
    alive = record(4, alive)

    # step 5: NSFW text classifier on lemmas and gloss
    texts = {w: [normalize(lem) for lem in by_wnid.at[w, "lemmas"]] + [by_wnid.at[w, "gloss"]] for w in alive}
    scores = nsfw_scores(texts)
    for w in alive:
        p, text = scores[w]
        if p >= nsfw_threshold:
            removed[w] = (STEPS[5], f"NSFW probability {p:.3f} >= nsfw_threshold={nsfw_threshold} on {text!r}")
    alive = record(5, alive)

    status = {w: (STEP_OF[removed[w][0]] if w in removed else _SURVIVES) for w in seen}
    caps_out = _step_stats(status, paths)
    prev = int(n_captions)
    for row in step_rows[1:]:
        row["captions_in"] = prev
        row["captions_out"] = prev = caps_out[row["step"]]

    table = pa.table({
        "wnid": seen,
        "name": [by_wnid.at[w, "name"] for w in seen],
        "gloss": [by_wnid.at[w, "gloss"] for w in seen],
        "n_captions": [int(counts[w]) for w in seen],
        "removed_at": [removed[w][0] if w in removed else None for w in seen],
        "reason": [removed[w][1] if w in removed else None for w in seen],
    }, schema=CANDIDATES_SCHEMA)
    table = table.replace_schema_metadata({STEPS_METADATA_KEY: json.dumps(step_rows).encode(),
                                           **_provenance_metadata(provenance)})
    with atomic_path(out_path) as tmp:
        pq.write_table(table, tmp)
    report = {
        "matches": [str(p) for p in paths],
        "synsets": str(synsets_path),
        "params": {"min_captions_per_synset": min_captions, "exclude_imagenet": exclude_imagenet,
                   "nsfw_threshold": nsfw_threshold},
        "steps": step_rows,
        "candidates_out": len(alive),
        "seconds": round(time.time() - t0, 3),
    }
    if provenance is not None:
        report["provenance"] = provenance
    write_json(report, report_path)
    return report


def read_candidates(path: str | Path) -> tuple[pd.DataFrame, list[dict]]:
    path = Path(path)
    pf = open_parquet(path)
    need = [f.name for f in CANDIDATES_SCHEMA]
    missing = [c for c in need if c not in pf.schema_arrow.names]
    if missing:
        raise InputError(f"{path}: candidates table lacks column(s) {missing} (written by `imagenot curate candidates`)")
    md = pf.metadata.metadata or {}
    steps = json.loads(md[STEPS_METADATA_KEY]) if STEPS_METADATA_KEY in md else []
    return pf.read(columns=need).to_pandas(), steps


# ---------------------------------------------------------------------------------------
# step 6


def captions(match_paths: Sequence[str | Path], candidates_path: str | Path, out_path: str | Path,
             report_path: str | Path, provenance: dict | None = None) -> dict:
    t0 = time.time()
    paths = [Path(p) for p in match_paths]
    if not paths:
        raise InputError("--matches: no match files given")
    cand, steps = read_candidates(candidates_path)
    alive = cand.loc[cand["removed_at"].isna(), "wnid"].tolist()
    alive_arr = pa.array(alive, pa.string())
    n_in = n_none = n_one = n_multi = 0
    per_synset: Counter = Counter()
    with atomic_path(out_path) as tmp:
        writer = pq.ParquetWriter(tmp, CAPTIONS_SCHEMA)
        try:
            for path, batch in _iter_wnid_lists(paths, extra=["key", "url", "text", "similarity"]):
                n = batch.num_rows
                n_in += n
                parents, flat = _flat(batch.column("wnids"))
                hit = pc.is_in(flat, value_set=alive_arr).to_numpy(zero_copy_only=False)
                per_row = np.bincount(parents[hit], minlength=n)
                one = per_row == 1
                n_none += int((per_row == 0).sum())
                n_one += int(one.sum())
                n_multi += int((per_row > 1).sum())
                if not one.any():
                    continue
                hit_parents = parents[hit]
                flat_hit = flat.filter(pa.array(hit))
                keep_flat = one[hit_parents]
                rows = pa.array(np.nonzero(one)[0])
                wnid = flat_hit.filter(pa.array(keep_flat))  # one value per kept row, row order
                per_synset.update(wnid.to_pylist())
                out = pa.table({
                    "key": batch.column("key").take(rows),
                    "url": batch.column("url").take(rows),
                    "text": batch.column("text").take(rows),
                    "similarity": batch.column("similarity").take(rows).cast(pa.float64()),
                    "wnid": wnid,
                }, schema=CAPTIONS_SCHEMA)
                writer.write_table(out)
            prev = next((r for r in steps if r["step"] == 5), None)
            step6 = {"step": 6, "name": STEPS[6], "synsets_in": len(alive),
                     "synsets_removed": len(alive) - len(per_synset), "synsets_out": len(per_synset),
                     "captions_in": prev["captions_out"] if prev else n_in, "captions_out": n_one}
            writer.add_key_value_metadata({STEPS_METADATA_KEY: json.dumps(steps + [step6]),
                                           **_provenance_metadata(provenance)})
        finally:
            writer.close()
    report = {
        "matches": [str(p) for p in paths],
        "candidates": str(candidates_path),
        "captions_in": n_in,
        "captions_no_candidate": n_none,
        "captions_one_candidate": n_one,
        "captions_several_candidates": n_multi,
        "candidates_in": len(alive),
        "synsets_with_captions": len(per_synset),
        "synsets_without_captions": len(alive) - len(per_synset),
        "step": step6,
        "seconds": round(time.time() - t0, 3),
    }
    if provenance is not None:
        report["provenance"] = provenance
    write_json(report, report_path)
    log.info("step 6: %d captions -> %d naming exactly one candidate (%d synsets)", n_in, n_one, len(per_synset))
    return report
