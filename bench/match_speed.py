"""Caption matching speed over the full WordNet noun vocabulary (lemmas + plurals).

Compares, in one process on the same synthetic LAION-like captions (bench/synth_captions.py):

- project: ``imagenot.curate.match.ColumnMatcher.match_column`` on Arrow batches of 65,536
  captions (what ``curate match`` runs on each record batch of a metadata part);
- baseline: a plain n-gram dictionary matcher: for each caption, tokenize, build every
  n-gram up to the longest surface (in tokens), look each up in a dict of surface -> wnids;
- for information: the project's previous per-caption trie matcher (``NgramMatcher``),
  and the end-to-end ``match_shard`` on a parquet part of the same captions (read, skip
  checks, match, write).

Rates are captions per CPU-second of this process with Arrow limited to one thread
(= captions/s/core), so other load on the machine inflates them less than wall time
would; wall-clock rates are printed too. The two matchers' results are checked equal on
the baseline's sample (the baseline names all overlapping n-grams, so it is compared with
``NgramMatcher(overlapping=True)``; the project's column matcher with ``NgramMatcher``).

    PYTHONPATH=workflow:bench python bench/match_speed.py [--vocab results/curate/vocab.parquet]
        [--n 200000] [--baseline-n 20000] [--out bench/match_speed.txt]

Without --vocab the vocabulary is built from WordNet (provisioned offline into a temp dir).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from synth_captions import captions  # noqa: E402

from imagenot.curate.match import ColumnMatcher, NgramMatcher, match_shard, parse_columns, read_vocab, tokenize  # noqa: E402


def build_vocab(tmp: Path) -> Path:
    from imagenot import wordnet
    from imagenot.curate import vocab
    from imagenot.io import write_parquet

    root = tmp / "nltk_data"
    wordnet.provision(root, download=False)
    r = wordnet.load(root)
    syn = vocab.build_synsets(r)
    voc = vocab.build_vocab(syn, vocab.read_noun_exceptions(vocab.noun_exc_path(r)))
    write_parquet(voc, tmp / "vocab.parquet")
    return tmp / "vocab.parquet"


class NgramDictBaseline:
    """The plain approach: every n-gram of every caption looked up in a dict."""

    def __init__(self, mapping: dict[str, list[str]]):
        self.table = {s: tuple(ws) for s, ws in mapping.items()}
        self.max_n = max(s.count(" ") + 1 for s in mapping)

    def match(self, text: str) -> set[str]:
        toks = tokenize(text)
        found: set[str] = set()
        get = self.table.get
        n = len(toks)
        for i in range(n):
            for k in range(i + 1, min(n, i + self.max_n) + 1):
                ws = get(" ".join(toks[i:k]))
                if ws:
                    found.update(ws)
        return found


def timed(fn):
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - w0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", help="vocab.parquet (default: build from WordNet)")
    ap.add_argument("--n", type=int, default=200_000, help="captions for the project matcher")
    ap.add_argument("--baseline-n", type=int, default=20_000, help="captions for the slower matchers")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=65_536)
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".txt")))
    args = ap.parse_args()
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    tmpdir = tempfile.TemporaryDirectory()
    tmp = Path(tmpdir.name)
    vocab_path = Path(args.vocab) if args.vocab else build_vocab(tmp)
    table = read_vocab(vocab_path)
    mapping: dict[str, list[str]] = {}
    for s, w in zip(table["surface"].to_pylist(), table["wnid"].to_pylist()):
        mapping.setdefault(s, []).append(w)
    n_wnids = len(set(table["wnid"].to_pylist()))

    t0 = time.perf_counter()
    col = ColumnMatcher(mapping)
    build_col = time.perf_counter() - t0
    caps = captions(list(mapping), args.n, args.seed)
    arr = pa.array(caps, pa.string())
    sample = caps[:args.baseline_n]

    # project matcher, batch by batch (warm-up on one batch first)
    col.match_column(arr.slice(0, min(args.batch, len(arr))))

    def run_col():
        total = 0
        for s in range(0, len(arr), args.batch):
            total += len(col.match_column(arr.slice(s, args.batch)))
        return total

    _, col_cpu, col_wall = timed(run_col)
    base = NgramDictBaseline(mapping)
    base_res, base_cpu, base_wall = timed(lambda: [base.match(c) for c in sample])
    trie = NgramMatcher(mapping)
    trie_res, trie_cpu, trie_wall = timed(lambda: trie.match_batch(sample))
    # agreement checks
    col_res = col.match_batch(sample)
    assert col_res == trie_res, "ColumnMatcher and NgramMatcher disagree"
    over = NgramMatcher(mapping, overlapping=True).match_batch(sample)
    assert over == base_res, "overlapping NgramMatcher and the n-gram baseline disagree"
    n_names = sum(len(r) for r in col_res) / len(col_res)

    # end to end: one metadata part of the same captions
    part = tmp / "part-00000.parquet"
    pq.write_table(pa.table({"URL": [f"http://example.com/{i}.jpg" for i in range(len(caps))], "TEXT": arr,
                             "WIDTH": pa.array([512] * len(caps)), "HEIGHT": pa.array([512] * len(caps)),
                             "similarity": pa.array([0.3] * len(caps)), "punsafe": pa.array([0.01] * len(caps))}),
                   part, row_group_size=100_000)
    rep, shard_cpu, shard_wall = timed(lambda: match_shard(part, col, parse_columns(None), 0.5,
                                                          tmp / "out.parquet", "bench/00000"))

    rate = {k: v for k, v in {
        "project": args.n / col_cpu, "baseline": len(sample) / base_cpu, "trie": len(sample) / trie_cpu,
        "shard": rep["rows_read"] / shard_cpu,
        "project_wall": args.n / col_wall, "baseline_wall": len(sample) / base_wall,
        "shard_wall": rep["rows_read"] / shard_wall}.items()}
    lines = [
        "Caption matching over the full WordNet noun vocabulary (bench/match_speed.py)",
        f"vocabulary: {len(mapping):,} surfaces (lemmas + plurals) naming {n_wnids:,} synsets; "
        f"longest surface {base.max_n} tokens; column matcher built in {build_col:.1f} s",
        f"captions: synthetic LAION-like (bench/synth_captions.py, seed {args.seed}), mean "
        f"{sum(map(len, caps)) / len(caps):.0f} chars, {n_names:.1f} synsets named per caption",
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; "
        "rates are captions per CPU-second of this process (Arrow on 1 thread) = per core",
        "",
        f"project ColumnMatcher ({args.n:,} captions, batches of {args.batch:,}): "
        f"{rate['project']:,.0f} captions/s/core (wall {rate['project_wall']:,.0f}/s)",
        f"baseline n-gram dictionary ({len(sample):,} captions): "
        f"{rate['baseline']:,.0f} captions/s/core (wall {rate['baseline_wall']:,.0f}/s)",
        f"ratio project / baseline: {rate['project'] / rate['baseline']:.1f}x",
        f"(previous per-caption trie NgramMatcher: {rate['trie']:,.0f} captions/s/core, "
        f"{rate['project'] / rate['trie']:.1f}x slower than the column matcher)",
        f"end to end match_shard on a {args.n:,}-row part (read, skip checks, match, write {rep['rows_matched']:,} "
        f"matched rows): {rate['shard']:,.0f} rows/s/core (wall {rate['shard_wall']:,.0f}/s)",
        "results: column matcher == NgramMatcher, and overlapping NgramMatcher == n-gram baseline, "
        f"on all {len(sample):,} sample captions",
        "",
        "projected step-1 core-hours (captions / rate / 3600; matcher only | end to end match_shard):",
    ]
    for name, n in (("laion2B-en", 2.32e9), ("LAION-5B", 5.85e9)):
        lines.append(f"  {name} ({n / 1e9:.2f}B captions): {n / rate['project'] / 3600:,.0f} | "
                     f"{n / rate['shard'] / 3600:,.0f} core-hours")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    Path(args.out).write_text(text)
    tmpdir.cleanup()


if __name__ == "__main__":
    main()
