"""Curation steps 1-8 end to end on a synthetic LAION-style metadata shard set (default:
4 parts x 250,000 rows = 1,000,000 captions), through the real ``imagenot curate`` CLI.

Every step is one ``imagenot curate ...`` process with the arguments rules/curate.smk gives
it (vocab -> match per part -> candidates -> captions -> text-similarity -> select), the
curation parameters being config/config.yaml's (validated, defaults filled, passed as the
rules' ``as_json``) with the sizes below; ``clip.source: laion_similarity`` as in the demo
config, so no CLIP weights are needed. Each process's wall time and peak RSS
(``ru_maxrss`` of that process alone, read by a small launcher process: a child forked
straight from this large process would inherit its high-water mark) is measured.

The metadata (``generate``, deterministic by seed) has LAION's columns (SAMPLE_ID, URL,
TEXT, WIDTH, HEIGHT, LICENSE, NSFW, similarity, punsafe, pwatermark) and captions built
from the vocabulary the vocab step wrote:

- ``none`` (33% of rows): filler words that name no WordNet noun (checked with the
  workflow's own matcher); step 1 finds nothing in them;
- ``several`` (22%): half bench/synth_captions.py captions (noun-heavy filler + random
  surfaces: ~20 synsets each), half two or three of the target synsets below with filler;
- ``one`` (45%): exactly one of ``--synsets`` target synsets (3000) named by one of its
  monosemous lemmas (checked with the matcher), drawn with Zipf(1) frequencies over a
  random rank order, so the minimum-size filter (step 3) removes the tail; 10% of the
  targets are ImageNet-1k synsets (step 2). 60% of the targets are "on topic": half their
  captions carry words of the synset's gloss (non-noun words, so no other synset is
  named); the others' captions surround the name with unrelated words from other glosses,
  so step 7's caption x gloss similarity threshold has something to remove;
- LAION-like caption repetition: each target's captions come from a pool of
  ``~k * count**0.8`` distinct strings (``k`` set so the distinct captions are about
  ``--distinct-share`` of the one-synset rows; Zipf(0.9) use within a pool); the other
  categories repeat too. So step 7 embeds far fewer distinct captions than it scores;
- 1.5% of rows above ``curation.max_punsafe``, 0.1% empty and 0.05% null captions (skipped
  and counted by step 1), 0.5% of URLs repeated within a part, 0.1% null similarities.

With ``--resume-check`` (default on) step 7 is run again with 8 hash buckets and its own
``--work-dir``, killed (SIGKILL) once 6 buckets are written, and rerun: the rerun must
report 6 resumed buckets and the same text_sim values as the main run.

    PYTHONPATH=workflow:bench python bench/curate_scale.py [--n 1000000] [--parts 4] [--seed 0]
        [--n-classes 100] [--images-per-class 200] [--work DIR] [--out bench/curate_scale.txt]

Smaller runs (``--n 20000``) scale the class count and size down unless they are given.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "workflow"))

import rusage  # noqa: E402
import synth_captions  # noqa: E402

SHARES = {"none": 0.33, "several": 0.22, "one": 0.45}
SKIP_SHARES = {"punsafe": 0.015, "empty": 0.001, "null": 0.0005}
ROW_GROUP = 100_000

# candidate filler: commerce/caption words; any that name a WordNet noun (or start a multiword
# surface) are dropped against the vocabulary before use
FILLER_WORDS = """
the of and with for to by from on at this that these your my our how new cheap online hd 4k
1080p png jpg isolated cute beautiful handmade personalized diy easy rated genuine xxl 2pcs
10pcs wooden amazing awesome colorful elegant gorgeous lovely adorable stunning fancy trendy
cozy rustic shiny durable waterproof portable adjustable foldable reusable washable unisex
exclusive limited authentic retro minimalist bright 2018 2019 2020 2021 2022 2023 1920x1080
800x600 3pcs 5pcs 12pcs 24pcs very really super ultra available shipped unique inspired
stylish perfect fresh soft warm cool happy pretty nice great real natural organic healthy
delicious vibrant lightweight sturdy comfortable tiny huge beautifully fully newly freshly
""".split()
SAFE_PUNCT = ["", "", "", "", ",", ".", "!", " -", " |", ":", "...", " &"]
STOP = set("""the and that with for who from which any are one its has not was but when where whose
his than has have been being into some other more most all each such only out also their they
can may used usually especially often sometimes very""".split())


# ---------------------------------------------------------------------------------------
# generator


def _zipf_weights(n: int, s: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
    return w / w.sum()


class _Styler:
    """Random LAION-ish casing and punctuation of a word list, from one rng."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def __call__(self, words: list[str]) -> str:
        rng = self.rng
        out = []
        c = rng.random(len(words))
        p = rng.integers(0, len(SAFE_PUNCT), len(words))
        for w, ci, pi in zip(words, c, p):
            if ci < 0.3:
                w = w.title()
            elif ci < 0.34:
                w = w.upper()
            out.append(w + SAFE_PUNCT[pi])
        return " ".join(out)


def _insert(rng, words: list[str], item: str) -> list[str]:
    words = list(words)
    words.insert(int(rng.integers(0, len(words) + 1)), item)
    return words


def generate(synsets_path: str | Path, vocab_path: str | Path, out_dir: str | Path, n: int, parts: int,
             seed: int = 0, n_synsets: int = 3000, imagenet_share: float = 0.1, zipf: float = 1.0,
             distinct_share: float = 0.06, on_topic_share: float = 0.6) -> dict:
    """Write ``parts`` LAION-style metadata parts of ``n`` rows in all to ``out_dir`` and
    return what was generated (shares, targets, pool sizes). Deterministic by ``seed``."""
    import pandas as pd

    from imagenot.curate.filters import imagenet_wnids
    from imagenot.curate.match import ColumnMatcher, normalize, tokenize

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    syn = pd.read_parquet(synsets_path, columns=["wnid", "lemmas", "gloss"])
    voc = pq.read_table(vocab_path, columns=["surface", "wnid"]).to_pandas()
    mapping: dict[str, set] = {}
    for s, w in zip(voc["surface"], voc["wnid"]):
        mapping.setdefault(s, set()).add(w)
    matcher = ColumnMatcher(mapping)
    surfaces = sorted(mapping)
    first_tokens = {s.split(" ")[0] for s in surfaces}

    def names(texts: list[str]) -> list[set[str]]:
        return matcher.match_batch(texts)

    def safe_word(w: str) -> bool:
        toks = tokenize(w)
        return bool(toks) and not any(t in mapping or t in first_tokens for t in toks)

    filler = [w for w in dict.fromkeys(FILLER_WORDS) if safe_word(w)]
    non_ascii = [w for w in synth_captions.NON_ASCII if safe_word(w)]
    gloss_words: dict[str, list[str]] = {}
    common: Counter = Counter()
    for w, g in zip(syn["wnid"], syn["gloss"]):
        ws = [t for t in dict.fromkeys(tokenize(g)) if len(t) > 2 and not t.isdigit() and t not in STOP
              and t not in mapping and t not in first_tokens]
        gloss_words[w] = ws
        common.update(ws)
    off_words = [w for w, _ in common.most_common(3000)]

    # targets: synsets with a monosemous lemma surface (naming it names that synset only)
    mono: dict[str, list[str]] = {}
    for w, lemmas in zip(syn["wnid"], syn["lemmas"]):
        forms = [normalize(lem) for lem in lemmas]
        forms = [f for f in dict.fromkeys(forms) if f and mapping.get(f) == {w}]
        if forms:
            mono[w] = forms
    try:
        inet = [w for w in imagenet_wnids() if w in mono]
    except Exception:  # noqa: BLE001 - a vocabulary without ImageNet: no ImageNet targets
        inet = []
    inet_set = set(inet)
    others = sorted(w for w in mono if w not in inet_set)
    n_inet = min(len(inet), int(round(imagenet_share * n_synsets)))
    n_other = min(len(others), n_synsets - n_inet)
    targets = list(rng.choice(inet, n_inet, replace=False)) if n_inet else []
    targets += list(rng.choice(others, n_other, replace=False))
    targets = [str(t) for t in rng.permutation(targets)]  # rank order: ImageNet spread over ranks
    S = len(targets)
    t_weights = _zipf_weights(S, zipf)
    on_topic = rng.random(S) < on_topic_share
    base_sim = rng.uniform(0.29, 0.37, S)

    # rows: category, skip overlays
    cat = rng.choice(3, n, p=[SHARES["none"], SHARES["several"], SHARES["one"]])
    n_cat = np.bincount(cat, minlength=3)
    style = _Styler(rng)

    def fill(k: int) -> list[str]:
        return [filler[i] for i in rng.integers(0, len(filler), k)]

    # --- no-synset pool
    n_none_pool = max(1, int(round(0.3 * n_cat[0])))
    none_pool: list[str] = []
    while len(none_pool) < n_none_pool:
        cand = []
        for _ in range(n_none_pool - len(none_pool)):
            words = fill(int(rng.integers(3, 11)))
            if non_ascii and rng.random() < 0.03:
                words = _insert(rng, words, non_ascii[int(rng.integers(len(non_ascii)))])
            cand.append(style(words))
        none_pool += [c for c, ns in zip(cand, names(cand)) if not ns]
    # --- one-synset pools
    one_target = rng.choice(S, n_cat[2], p=t_weights)
    count = np.bincount(one_target, minlength=S)
    raw = np.where(count > 0, np.power(np.maximum(count, 1), 0.8), 0.0)
    k = distinct_share * n_cat[2] / max(raw.sum(), 1e-9)
    pool_size = np.where(count > 0, np.clip(np.round(k * raw), 1, count), 0).astype(np.int64)

    def one_caption(i: int) -> str:
        w = targets[i]
        surface = mono[w][int(rng.integers(len(mono[w])))]
        if " " in surface and rng.random() < 0.2:
            surface = surface.replace(" ", "-")
        if on_topic[i]:
            gw = gloss_words[w]
            if gw and rng.random() < 0.5:
                g = list(rng.choice(gw, min(len(gw), int(rng.integers(1, 5))), replace=False))
                words = fill(int(rng.integers(1, 4))) + g
            else:
                words = fill(int(rng.integers(2, 8)))
        else:
            words = [off_words[j] for j in rng.integers(0, len(off_words), int(rng.integers(5, 11)))]
            words += fill(int(rng.integers(1, 4)))
        return style(_insert(rng, words, surface))

    one_pools: list[list[str]] = []
    n_fallback = 0
    for i in range(S):
        want = int(pool_size[i])
        pool: list[str] = []
        for _ in range(3):
            if len(pool) >= want:
                break
            cand = [one_caption(i) for _ in range(want - len(pool))]
            pool += [c for c, ns in zip(cand, names(cand)) if ns == {targets[i]}]
        if len(pool) < want:  # the bare lemma names only the target (monosemous)
            n_fallback += want - len(pool)
            pool += [mono[targets[i]][0]] * (want - len(pool))
        one_pools.append(pool[:want])
    # --- several-synset pool: synth_captions (noun filler) + two or three targets
    n_sev_pool = max(2, int(round(0.5 * n_cat[1])))
    sev_pool = synth_captions.captions(surfaces, n_sev_pool // 2, seed + 1)
    for _ in range(n_sev_pool - len(sev_pool)):
        idx = rng.choice(S, int(rng.integers(2, 4)), p=t_weights)
        words = fill(int(rng.integers(1, 6)))
        for j in idx:
            words = _insert(rng, words, mono[targets[j]][0])
        sev_pool.append(style(words))

    # one flat pool of distinct strings; each row picks an index into it
    pool_all = none_pool + sev_pool
    offsets = [len(pool_all)]
    for p in one_pools:
        pool_all += p
        offsets.append(len(pool_all))
    text_idx = np.empty(n, np.int64)
    rows_none = np.flatnonzero(cat == 0)
    text_idx[rows_none] = rng.choice(len(none_pool), len(rows_none), p=_zipf_weights(len(none_pool), 0.5))
    rows_sev = np.flatnonzero(cat == 1)
    text_idx[rows_sev] = len(none_pool) + rng.choice(len(sev_pool), len(rows_sev),
                                                     p=_zipf_weights(len(sev_pool), 0.5))
    rows_one = np.flatnonzero(cat == 2)
    # within a target's pool: Zipf(0.9) over its distinct captions
    within = np.empty(len(rows_one), np.int64)
    order = np.argsort(one_target, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(count)))
    for i in range(S):
        if count[i]:
            sel = order[bounds[i]:bounds[i + 1]]
            within[sel] = offsets[i] + rng.choice(pool_size[i], count[i], p=_zipf_weights(pool_size[i], 0.9))
    text_idx[rows_one] = within
    pool_arr = pa.array(pool_all + [""], pa.string())
    empty_idx = len(pool_all)

    # LAION-like numeric columns
    u = rng.random(n)
    punsafe = rng.beta(0.6, 12.0, n)
    punsafe_high = u < SKIP_SHARES["punsafe"]
    punsafe[punsafe_high] = rng.uniform(0.5001, 1.0, int(punsafe_high.sum()))
    text_empty = (u >= SKIP_SHARES["punsafe"]) & (u < SKIP_SHARES["punsafe"] + SKIP_SHARES["empty"])
    text_null = (u >= 1 - SKIP_SHARES["null"])
    text_idx[text_empty] = empty_idx
    sim = 0.28 + np.abs(rng.normal(0.0, 0.04, n))
    sim[rows_one] = base_sim[one_target] + rng.normal(0.0, 0.03, len(rows_one))
    sim = np.clip(sim, 0.28, 0.48)
    sim_null = rng.random(n) < 0.001
    width = rng.choice([256, 300, 400, 500, 512, 600, 640, 800, 1024, 1200, 1600, 1920], n)
    height = (width * rng.choice([0.5625, 0.667, 0.75, 1.0, 1.333, 1.5], n)).astype(np.int64)
    pwatermark = rng.beta(0.5, 3.0, n)
    nsfw = np.where(punsafe > 0.5, "NSFW", np.where(punsafe > 0.2, "UNSURE", "UNLIKELY"))
    lic = np.where(rng.random(n) < 0.03, "https://creativecommons.org/licenses/by/4.0/", "?")
    hosts = ["i.pinimg.com", "cdn.shopify.com", "images.example.com", "img.alicdn.com", "static.flickr.com"]

    per_part = -(-n // parts)
    paths = []
    schema = pa.schema([("SAMPLE_ID", pa.int64()), ("URL", pa.string()), ("TEXT", pa.string()),
                        ("WIDTH", pa.int64()), ("HEIGHT", pa.int64()), ("LICENSE", pa.string()),
                        ("NSFW", pa.string()), ("similarity", pa.float64()), ("punsafe", pa.float64()),
                        ("pwatermark", pa.float64())])
    for p in range(parts):
        lo, hi = p * per_part, min(n, (p + 1) * per_part)
        path = out_dir / f"part-{p:05d}.parquet"
        with pq.ParquetWriter(path, schema) as w:
            for s in range(lo, hi, ROW_GROUP):
                e = min(hi, s + ROW_GROUP)
                m = e - s
                ids = np.arange(s, e)
                url_id = ids.copy()
                dup = rng.random(m) < 0.005  # a URL seen earlier in the part
                url_id[dup] = rng.integers(lo, np.maximum(ids[dup], lo + 1))
                urls = [f"https://{hosts[i % len(hosts)]}/{p}/{i:08d}.jpg" for i in url_id]
                text = pc.if_else(pa.array(text_null[s:e]), pa.scalar(None, pa.string()),
                                  pool_arr.take(pa.array(text_idx[s:e])))
                w.write_table(pa.table({
                    "SAMPLE_ID": pa.array(ids, pa.int64()), "URL": pa.array(urls, pa.string()), "TEXT": text,
                    "WIDTH": pa.array(width[s:e], pa.int64()), "HEIGHT": pa.array(height[s:e], pa.int64()),
                    "LICENSE": pa.array(lic[s:e]), "NSFW": pa.array(nsfw[s:e]),
                    "similarity": pa.array(sim[s:e], pa.float64(), mask=sim_null[s:e]),
                    "punsafe": pa.array(punsafe[s:e], pa.float64()),
                    "pwatermark": pa.array(pwatermark[s:e], pa.float64())}, schema=schema),
                    row_group_size=ROW_GROUP)
        paths.append(path)
    return {
        "paths": paths, "rows": n, "parts": parts, "seed": seed,
        "rows_by_kind": {"none": int(n_cat[0]), "several": int(n_cat[1]), "one": int(n_cat[2])},
        "skips": {"punsafe_above_0.5": int(punsafe_high.sum()), "text_empty": int(text_empty.sum()),
                  "text_null": int(text_null.sum())},
        "distinct_strings": {"none": len(none_pool), "several": len(sev_pool),
                             "one": int(pool_size.sum())},
        "targets": S, "imagenet_targets": n_inet, "on_topic_targets": int(on_topic.sum()),
        "targets_with_rows": int((count > 0).sum()), "target_max_rows": int(count.max()) if S else 0,
        "targets_ge_20_rows": int((count >= 20).sum()), "fallback_captions": n_fallback,
        "filler_words": len(filler), "seconds": time.perf_counter() - t0,
        "mib": sum(p.stat().st_size for p in paths) / 2**20,
    }


# ---------------------------------------------------------------------------------------
# the chain


def imagenot_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("imagenot")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "imagenot.cli"]


def child_env() -> dict:
    pp = os.environ.get("PYTHONPATH", "")
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "workflow")] + ([pp] if pp else [])))


def _spawn(cmd: list[str], log_path: Path) -> tuple[int, float, float]:
    """Run cmd, output to log_path; (exit status, peak RSS MiB, CPU s) of that process alone."""
    with open(log_path, "w") as log:
        return rusage.spawn(cmd, env=child_env(), stdout=log)


def run_step(args: list[str], log_path: Path) -> dict:
    """Run ``imagenot ARGS`` (output to log_path, as the rules' ``> {log} 2>&1``); wall s, CPU s
    and the peak RSS (MiB) of that process."""
    cmd = imagenot_cmd() + args
    t0 = time.perf_counter()
    rc, rss, cpu = _spawn(cmd, log_path)
    wall = time.perf_counter() - t0
    if rc != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-25:])
        raise RuntimeError(f"`{shlex.join(cmd)}` failed with exit status {rc}; log {log_path}:\n{tail}")
    return {"wall": wall, "rss": rss, "cpu": cpu}


def curation_config(n_classes: int, images_per_class: int, min_captions: int | None) -> dict:
    """config/config.yaml, validated (defaults filled, as Snakemake does), with the sizes set."""
    import yaml

    from imagenot import config as icfg

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["curation"]["n_classes"] = n_classes
    cfg["curation"]["images_per_class"] = images_per_class
    if min_captions is not None:
        cfg["curation"]["min_captions_per_synset"] = min_captions
    return icfg.validate(cfg, "config/config.yaml (bench sizes)")


def as_json(obj) -> str:  # rules/common.smk's
    return json.dumps(obj, sort_keys=True)


def run_chain(work: Path, n: int, parts: int, seed: int, n_classes: int, images_per_class: int,
              min_captions: int | None = None, synsets: Path | None = None, vocab: Path | None = None,
              n_synsets: int = 3000, distinct_share: float = 0.06, resume_check: bool = True,
              echo=None) -> dict:
    """Vocab (unless ``synsets``/``vocab`` are given), generate, then steps 1-8 as the rules
    run them. Returns the step measurements and the parsed outputs."""
    work = Path(work)
    for d in ("logs", "meta", "matches/synth", "tables"):
        (work / d).mkdir(parents=True, exist_ok=True)
    cfg = curation_config(n_classes, images_per_class, min_captions)
    cur = cfg["curation"]
    steps: list[dict] = []

    def step(name, args, log, **info):
        if echo:
            echo(f"[curate_scale] {name} ...")
        r = run_step(args, work / "logs" / log)
        r.update(name=name, **info)
        steps.append(r)
        return r

    if synsets is None or vocab is None:
        from imagenot import wordnet

        root = work / "nltk_data"
        wordnet.provision(root, download=False)
        synsets, vocab = work / "synsets.parquet", work / "vocab.parquet"
        step("vocab", ["curate", "vocab", "--wordnet-root", str(root), "--out-synsets", str(synsets),
                       "--out-vocab", str(vocab)], "vocab.log")
        steps[-1]["out"] = (f"{pq.ParquetFile(synsets).metadata.num_rows:,} synsets, "
                            f"{pq.ParquetFile(vocab).metadata.num_rows:,} surface rows")
    gen = generate(synsets, vocab, work / "meta", n, parts, seed, n_synsets=n_synsets,
                   distinct_share=distinct_share)

    columns = as_json(cfg["corpus"]["columns"])
    matches = []
    for i, part in enumerate(gen["paths"]):
        pid = f"{i:05d}"
        out = work / "matches" / "synth" / f"{pid}.parquet"
        rep = out.with_suffix(".json")
        step(f"match {pid}", ["curate", "match", "--input", str(part), "--vocab", str(vocab),
                              "--columns", columns, "--max-punsafe", str(cur["max_punsafe"]),
                              "--key-prefix", f"synth/{pid}", "--max-caption-bytes",
                              str(cur.get("max_caption_bytes", 10000)), "--out", str(out), "--report", str(rep)],
             f"match-{pid}.log", step=1)
        r = json.loads(rep.read_text())
        steps[-1].update(n_in=r["rows_read"], n_out=r["rows_matched"], report=r,
                         out=f"{r['rows_valid']:,} valid, {r['rows_skipped_total']:,} skipped, "
                             f"{r['rows_matched']:,} name >= 1 synset")
        matches.append(out)
    n_matched = sum(s["n_out"] for s in steps if s.get("step") == 1)

    params = as_json(cur)
    cands, cands_rep = work / "candidates.parquet", work / "candidates.json"
    step("candidates", ["curate", "candidates", "--matches", *map(str, matches), "--synsets", str(synsets),
                        "--params", params, "--out", str(cands), "--report", str(cands_rep)],
         "candidates.log", step="2-5")
    r = json.loads(cands_rep.read_text())
    s5 = r["steps"][-1]
    steps[-1].update(n_in=n_matched, n_out=s5["captions_out"], report=r,
                     out=f"{r['steps'][0]['synsets_out']:,} synsets found -> {r['candidates_out']:,} candidates; "
                         f"{s5['captions_out']:,} captions name one")

    caps, caps_rep = work / "captions.parquet", work / "captions.json"
    step("captions", ["curate", "captions", "--matches", *map(str, matches), "--candidates", str(cands),
                      "--out", str(caps), "--report", str(caps_rep)], "captions.log", step=6)
    r = json.loads(caps_rep.read_text())
    steps[-1].update(n_in=r["captions_in"], n_out=r["captions_one_candidate"], report=r,
                     out=f"{r['captions_one_candidate']:,} name exactly one candidate "
                         f"({r['synsets_with_captions']:,} synsets)")

    from imagenot.curate.embed import read_report

    ts_params = cur["text_similarity"]
    ts = work / "text_similarity.parquet"
    ts_args = ["curate", "text-similarity", "--captions", str(caps), "--synsets", str(synsets)]
    step("text-similarity", ts_args + ["--params", as_json(ts_params), "--out", str(ts)],
         "text_similarity.log", step=7)
    tr = read_report(ts)
    steps[-1].update(n_in=tr["captions"], n_out=tr["captions"], report=tr,
                     out=f"{tr['distinct_captions_embedded']:,} distinct captions embedded "
                         f"({tr['buckets']} bucket(s), {tr['device']})")

    classes, selection, table = work / "classes.parquet", work / "selection.parquet", \
        work / "tables" / "curation_filters.csv"
    step("select", ["curate", "select", "--text-similarity", str(ts), "--candidates", str(cands),
                    "--params", params, "--out-classes", str(classes), "--out-selection", str(selection),
                    "--out-table", str(table)], "select.log", step="7-8")
    n_cls = pq.ParquetFile(classes).metadata.num_rows
    n_sel = pq.ParquetFile(selection).metadata.num_rows
    steps[-1].update(n_in=tr["captions"], n_out=n_sel, out=f"{n_cls} classes, {n_sel:,} images selected")

    resume = None
    if resume_check:
        resume = check_resume(work, ts_args, ts_params, ts, tr)
    return {"cfg": cfg, "gen": gen, "steps": steps, "text_sim": tr, "resume": resume,
            "paths": {"synsets": synsets, "vocab": vocab, "matches": matches, "candidates": cands,
                      "captions": caps, "text_similarity": ts, "classes": classes, "selection": selection,
                      "table": table}}


def check_resume(work: Path, ts_args: list[str], ts_params: dict, ts_main: Path, main_report: dict,
                 n_buckets: int = 8, kill_after: int = 6) -> dict:
    """Step 7 with ``n_buckets`` buckets and --work-dir: SIGKILLed once ``kill_after`` bucket
    results exist, then rerun; the rerun's report and values against the main run's."""
    from imagenot.curate.embed import read_report

    rows = main_report["captions"]
    params = dict(ts_params, bucket_rows=max(1, -(-rows // n_buckets)))
    wd, out = work / "resume.parts", work / "text_similarity_resume.parquet"
    args = ts_args + ["--params", as_json(params), "--work-dir", str(wd), "--out", str(out)]
    cmd = imagenot_cmd() + args
    t0 = time.perf_counter()
    with open(work / "logs" / "text_similarity_interrupted.log", "w") as log:
        proc = subprocess.Popen(cmd, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
        killed_at = None
        while proc.poll() is None:
            done = len(list(wd.glob("out-*.parquet"))) if wd.is_dir() else 0
            if done >= kill_after:
                proc.send_signal(signal.SIGKILL)
                killed_at = done
                break
            time.sleep(0.05)
        proc.wait()
    first_wall = time.perf_counter() - t0
    if killed_at is None:
        return {"interrupted": False, "first_wall": first_wall,
                "note": "the run finished before it could be interrupted"}
    done_before = len(list(wd.glob("out-*.parquet")))
    r = run_step(args, work / "logs" / "text_similarity_resumed.log")
    rep = read_report(out)
    a = pq.read_table(ts_main, columns=["key", "text_sim"]).to_pandas().set_index("key")["text_sim"]
    b = pq.read_table(out, columns=["key", "text_sim"]).to_pandas().set_index("key")["text_sim"]
    same_keys = len(a) == len(b) and a.index.sort_values().equals(b.index.sort_values())
    max_diff = float((a - b.reindex(a.index)).abs().max()) if same_keys and len(a) else float("nan")
    return {"interrupted": True, "n_buckets": n_buckets, "killed_after": killed_at, "buckets_on_disk": done_before,
            "interrupted_wall": first_wall, "rerun_wall": r["wall"], "rerun_rss": r["rss"], "rerun_cpu": r["cpu"],
            "buckets_resumed": rep["buckets_resumed"], "distinct": rep["distinct_captions_embedded"],
            "same_keys": same_keys, "max_abs_diff": max_diff}


# ---------------------------------------------------------------------------------------
# report


def report(res: dict, argv: list[str], t_total: float) -> str:
    import pandas as pd

    cfg, gen, steps, tr = res["cfg"], res["gen"], res["steps"], res["text_sim"]
    cur = cfg["curation"]
    L = [f"$ {shlex.join(argv)}",
         f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
         "Curation steps 1-8 end to end on a synthetic LAION-style metadata shard set (bench/curate_scale.py):",
         "every step one `imagenot curate ...` process with rules/curate.smk's arguments; peak RSS of each",
         f"process alone (its ru_maxrss, read by a small launcher process); wall seconds on a {os.cpu_count()}-core",
         "machine shared with other jobs.", ""]
    g = gen
    L.append(f"metadata: {g['rows']:,} rows in {g['parts']} parts ({g['mib']:.0f} MiB parquet, row groups of "
             f"{ROW_GROUP:,}; seed {g['seed']}; generated in {g['seconds']:.0f} s)")
    rk = g["rows_by_kind"]
    L.append(f"  designed rows: {rk['none']:,} naming no synset, {rk['several']:,} naming several, "
             f"{rk['one']:,} naming one target")
    L.append(f"  targets: {g['targets']:,} synsets ({g['imagenet_targets']} ImageNet-1k, {g['on_topic_targets']:,} "
             f"on-topic), Zipf(1): top target {g['target_max_rows']:,} rows, {g['targets_ge_20_rows']:,} with >= 20")
    ds = g["distinct_strings"]
    L.append(f"  distinct caption strings: {ds['none']:,} / {ds['several']:,} / {ds['one']:,} (none / several / one);"
             f" skips planted: {g['skips']}")
    ts, cl = cur["text_similarity"], cur["clip"]
    L.append(f"curation (config/config.yaml + bench sizes): min_captions_per_synset={cur['min_captions_per_synset']}, "
             f"exclude_imagenet={cur['exclude_imagenet']}, max_punsafe={cur['max_punsafe']}, "
             f"nsfw_threshold={cur['nsfw_threshold']},")
    L.append(f"  text_similarity: model={ts['model']} top_n={ts['top_n']} threshold={ts['threshold']} "
             f"batch_size={ts['batch_size']} bucket_rows={ts['bucket_rows']:,}; clip: source={cl['source']} "
             f"top_m={cl['top_m']}; n_classes={cur['n_classes']} images_per_class={cur['images_per_class']} "
             f"oversample={cur['oversample']}")
    L.append("")
    L.append(f"{'step':<18}{'in':>12}{'out':>12}{'wall s':>9}{'cpu s':>8}{'peak RSS MiB':>14}  what")
    for s in steps:
        n_in = f"{s['n_in']:,}" if "n_in" in s else ""
        n_out = f"{s['n_out']:,}" if "n_out" in s else ""
        L.append(f"{s['name']:<18}{n_in:>12}{n_out:>12}{s['wall']:>9.1f}{s['cpu']:>8.1f}{s['rss']:>14,.0f}  "
                 f"{s.get('out', '')}")
    match = [s for s in steps if s.get("step") == 1]
    m_wall = sum(s["wall"] for s in match)
    e2e = sum(s["wall"] for s in steps)
    e2e_nov = sum(s["wall"] for s in steps if s["name"] != "vocab")
    m_rss = max(s["rss"] for s in match)
    big = max(steps, key=lambda s: s["rss"])
    L.append(f"{'total':<42}{e2e:>9.1f}{sum(s['cpu'] for s in steps):>8.1f}")
    L.append("")
    L.append("curation_filters.csv (written by `curate select`):")
    table = pd.read_csv(res["paths"]["table"])
    L.extend("  " + line for line in table.to_string(index=False).splitlines())
    L.append("")
    L.append(f"step 7 de-duplication: {tr['distinct_captions_embedded']:,} distinct captions embedded for "
             f"{tr['captions']:,} captions ({tr['captions'] / max(1, tr['distinct_captions_embedded']):.1f}x), "
             f"{tr['synsets']:,} synset glosses")
    s7 = steps[-2]
    L.append(f"step 7 speed: {tr['distinct_captions_embedded'] / s7['wall']:,.0f} distinct captions per wall second "
             f"incl. model load ({s7['wall']:.0f} s wall, {s7['cpu']:.0f} CPU s = {s7['cpu'] / s7['wall']:.2f} cores "
             f"busy on average)")
    L.append(f"baseline ratio (same run): end to end / step-1 match = {e2e:.0f} s / {m_wall:.0f} s = "
             f"{e2e / m_wall:.1f}x ({e2e_nov / m_wall:.1f}x without the vocab step); "
             f"largest peak RSS {big['rss']:,.0f} MiB ({big['name']}) / match {m_rss:,.0f} MiB = {big['rss'] / m_rss:.2f}x")
    rss_parts = ", ".join(f"{s['rss']:,.0f}" for s in match)
    wall_parts = ", ".join(f"{s['wall']:.0f}" for s in match)
    L.append(f"match per part: {rss_parts} MiB peak RSS, {wall_parts} s wall")
    rs = res["resume"]
    if rs is None:
        L.append("step 7 resume check: skipped (--no-resume-check)")
    elif not rs["interrupted"]:
        L.append(f"step 7 resume check: not done ({rs['note']}; {rs['first_wall']:.1f} s)")
    else:
        L.append(f"step 7 resume check: --params bucket_rows for {rs['n_buckets']} buckets, --work-dir; SIGKILL once "
                 f"{rs['killed_after']} bucket results were written ({rs['buckets_on_disk']} on disk) after "
                 f"{rs['interrupted_wall']:.0f} s;")
        L.append(f"  rerun: {rs['buckets_resumed']} of {rs['n_buckets']} buckets resumed, {rs['rerun_wall']:.0f} s "
                 f"({rs['rerun_cpu']:.0f} CPU s) = {rs['rerun_wall'] / steps[-2]['wall']:.2f} of the main step-7 "
                 f"run's wall, {rs['rerun_cpu'] / steps[-2]['cpu']:.2f} of its CPU; peak RSS "
                 f"{rs['rerun_rss']:,.0f} MiB; same keys: {rs['same_keys']}, max |text_sim diff| vs main run "
                 f"{rs['max_abs_diff']:.2e}")
    la = os.getloadavg()
    L.append(f"machine: {os.cpu_count()} cores, load average {la[0]:.1f} / {la[1]:.1f} / {la[2]:.1f} (1/5/15 min) at "
             f"the end; bench wall {t_total:.0f} s in all")
    return "\n".join(L) + "\n"


def default_sizes(n: int) -> tuple[int, int]:
    """(n_classes, images_per_class): 100 x 200 at 1M captions, scaled down for smaller runs."""
    f = min(1.0, n / 1_000_000)
    return max(2, int(round(100 * f ** 0.5))), max(5, int(round(200 * f)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="captions (rows) in all")
    ap.add_argument("--parts", type=int, default=4, help="metadata parts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--synsets", type=int, default=3000, dest="n_synsets", help="target synsets")
    ap.add_argument("--distinct-share", type=float, default=0.06,
                    help="distinct captions / one-synset rows (caption repetition)")
    ap.add_argument("--n-classes", type=int, help="curation.n_classes (default: 100 at 1M, scaled)")
    ap.add_argument("--images-per-class", type=int, help="curation.images_per_class (default: 200 at 1M, scaled)")
    ap.add_argument("--min-captions", type=int, help="curation.min_captions_per_synset (default: config's)")
    ap.add_argument("--vocab-dir", help="reuse synsets.parquet + vocab.parquet of `imagenot curate vocab` "
                    "from this dir (the vocab step is then not run or timed)")
    ap.add_argument("--no-resume-check", action="store_true")
    ap.add_argument("--work", help="work dir, kept (default: a temporary dir, removed)")
    ap.add_argument("--out", default=str(HERE / "curate_scale.txt"))
    args = ap.parse_args(argv)
    nc, ipc = default_sizes(args.n)
    nc = args.n_classes or nc
    ipc = args.images_per_class or ipc
    t0 = time.perf_counter()
    tmp = None
    if args.work:
        work = Path(args.work)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="curate_scale_")
        work = Path(tmp.name)
    vd = Path(args.vocab_dir) if args.vocab_dir else None
    res = run_chain(work, args.n, args.parts, args.seed, nc, ipc, args.min_captions,
                    synsets=vd / "synsets.parquet" if vd else None, vocab=vd / "vocab.parquet" if vd else None,
                    n_synsets=args.n_synsets,
                    distinct_share=args.distinct_share, resume_check=not args.no_resume_check,
                    echo=lambda msg: print(msg, file=sys.stderr, flush=True))
    text = report(res, ["python", "bench/curate_scale.py", *(sys.argv[1:] if argv is None else argv)],
                  time.perf_counter() - t0)
    print(text, end="")
    Path(args.out).write_text(text)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
