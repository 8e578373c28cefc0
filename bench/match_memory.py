"""Peak memory of step 1 (``imagenot curate match``) on one metadata part, by part length.

Writes synthetic LAION metadata parts (URL, TEXT, WIDTH, HEIGHT, similarity, punsafe;
captions from bench/synth_captions.py; row groups of 100,000 rows like LAION's parts) of
1,000, 250,000, 1,000,000 and 4,000,000 rows, runs ``imagenot curate match`` on each in its own
process and reads that process's own peak RSS (bench/rusage.py: through a launcher, since a
child of this large process would inherit its high-water mark). The matcher
streams record batches (``ParquetFile.iter_batches``), so the peak should be the fixed
cost (Python, Arrow, the full-WordNet matcher) plus one batch, the same for every length.

    PYTHONPATH=workflow:bench python bench/match_memory.py [--vocab results/curate/vocab.parquet]
        [--rows 1000 250000 1000000 4000000] [--out bench/match_memory.txt]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "workflow"))

import rusage  # noqa: E402
from synth_captions import captions  # noqa: E402


def write_part(path: Path, rows: int, surfaces: list[str], seed: int, chunk: int = 100_000) -> None:
    schema = pa.schema([("URL", pa.string()), ("TEXT", pa.string()), ("WIDTH", pa.int64()),
                        ("HEIGHT", pa.int64()), ("similarity", pa.float64()), ("punsafe", pa.float64())])
    with pq.ParquetWriter(path, schema) as w:
        for s in range(0, rows, chunk):
            n = min(chunk, rows - s)
            caps = captions(surfaces, n, seed + s)
            w.write_table(pa.table({
                "URL": [f"http://example.com/{s + i}.jpg" for i in range(n)], "TEXT": caps,
                "WIDTH": [640] * n, "HEIGHT": [480] * n, "similarity": [0.3] * n, "punsafe": [0.01] * n},
                schema=schema), row_group_size=chunk)


def run_match(part: Path, vocab: Path, out: Path) -> tuple[float, float, dict]:
    """(peak RSS MiB, wall s, report) of one `imagenot curate match` process."""
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "workflow"))
    cmd = [sys.executable, "-m", "imagenot.cli", "curate", "match", "--input", str(part), "--vocab", str(vocab),
           "--out", str(out), "--report", str(out.with_suffix(".json"))]
    t0 = time.perf_counter()
    rc, rss, _ = rusage.spawn(cmd, env=env)  # this process is large: measure the child alone
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"{cmd} failed with {rc}")
    return rss, wall, json.loads(out.with_suffix(".json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", help="vocab.parquet (default: build from WordNet)")
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000, 250_000, 1_000_000, 4_000_000])
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".txt")))
    args = ap.parse_args()
    tmpdir = tempfile.TemporaryDirectory()
    tmp = Path(tmpdir.name)
    if args.vocab:
        vocab = Path(args.vocab)
    else:
        from match_speed import build_vocab
        vocab = build_vocab(tmp)
    surfaces = pq.read_table(vocab, columns=["surface"]).column(0).unique().to_pylist()
    lines = ["Peak RSS of `imagenot curate match` on one metadata part (bench/match_memory.py)",
             "(full-WordNet vocabulary; synthetic LAION-like captions; row groups of 100,000; batches of 65,536)", ""]
    for rows in args.rows:
        part = tmp / f"part-{rows}.parquet"
        write_part(part, rows, surfaces, seed=rows)
        mb = part.stat().st_size / 2**20
        rss, wall, rep = run_match(part, vocab, tmp / f"out-{rows}.parquet")
        cpu = rep["seconds"]
        lines.append(f"{rows:>9,} captions ({mb:,.0f} MiB parquet): peak RSS {rss:,.0f} MiB; "
                     f"{rep['rows_matched']:,} matched; match_shard {cpu:.1f} s wall "
                     f"({rows / cpu:,.0f} rows/s), process {wall:.1f} s wall incl. matcher build")
        part.unlink()
    lines.append(f"machine load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    Path(args.out).write_text(text)
    tmpdir.cleanup()


if __name__ == "__main__":
    main()
