"""Download the selected images with img2dataset into WebDataset shards.

``imagenot download --selection S --out-dir D --params JSON(download)
[--serve-root DIR --port P [--manifest M]]``

1. reads the selection (``key, url, text, wnid, label, text_sim, clip_sim, rank_in_class``)
   and writes img2dataset's input, ``D/_input/selection.parquet`` (``url, caption, sel_key,
   wnid, label, text_sim, clip_sim, rank_in_class``: img2dataset reserves ``key``,
   ``caption``, ``url``, ``status``, ``width``... for itself, so the selection's key travels
   as ``sel_key``);
2. with ``--serve-root``, starts the demo image server (``imagenot serve-demo``) and stops it
   by its process group id when the download ends, whatever happens;
3. runs ``img2dataset.download`` in a child process of its own process group (so that an
   interrupted job leaves no orphan logger process) with ``output_format="webdataset"`` and
   the default ``incremental_mode="incremental"`` (``"overwrite"`` is broken in 1.47);
4. checks completeness, since img2dataset exits 0 on interrupted runs and on shards that
   failed every retry: every expected shard has its ``_stats.json``, ``.parquet`` and
   ``.tar``, the parquets account for every input row, and each tar holds as many images as
   its parquet counts successes;
5. writes ``D/report.json`` last: ``expected, succeeded, failed, success_rate, errors`` (by
   img2dataset's error message), ``per_class`` and the shard check. It is the completion
   marker: it exists only after a complete download whose success rate reaches
   ``min_success_rate``. Otherwise ``D/report.incomplete.json`` holds the same numbers and
   the command fails.

Output (``D`` is written in place, not atomically, so that a rerun resumes): img2dataset's
``{shard:05d}.tar`` (``KEY.jpg``, ``KEY.txt``, ``KEY.json`` with the selection columns),
``{shard:05d}.parquet`` (every input row with ``status`` / ``error_message``) and
``{shard:05d}_stats.json``, then ``report.json``.

Resuming: a rerun with the same selection and parameters skips the shards that have a
``_stats.json`` (img2dataset's incremental mode) and downloads the rest; when every shard is
finished it does not start img2dataset (or the server) at all and only rewrites the report
(so a changed ``min_success_rate`` takes effect). A shard whose tar does not match its
parquet (a run that hung near the end) is deleted and downloaded again. Rows that failed
inside a finished shard are not retried. A rerun with a different selection or different
shard-shaping parameters (``image_size``, ``resize_mode``, ``rows_per_shard``) starts over
in an emptied ``D``: their fingerprint is kept in ``D/_input/fingerprint.txt``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

from .io import InputError, atomic_path, check_keys, parse_json, write_json

log = logging.getLogger(__name__)

SELECTION_COLUMNS = ("key", "url", "text", "wnid", "label", "text_sim", "clip_sim", "rank_in_class")
#: selection columns carried through img2dataset into each sample's json (renamed: key -> sel_key)
EXTRA_COLUMNS = ("sel_key", "wnid", "label", "text_sim", "clip_sim", "rank_in_class")
DEFAULTS = {
    "image_size": 256,
    "resize_mode": "keep_ratio",
    "processes": 1,
    "threads": 16,
    "rows_per_shard": 1000,
    "timeout": 10,
    "retries": 1,
    "min_success_rate": 0.5,
}
RESIZE_MODES = ("no", "border", "keep_ratio", "keep_ratio_largest", "center_crop")
#: the parameters that shape the shards; changing one invalidates finished shards
SHARD_PARAMS = ("image_size", "resize_mode", "rows_per_shard")
INPUT_DIR = "_input"
REPORT = "report.json"
REPORT_INCOMPLETE = "report.incomplete.json"
SHARD_DIGITS = 5  # img2dataset's oom_shard_count default


class DownloadIncompleteError(InputError):
    """Shards are missing or too few images came back."""


# ---------------------------------------------------------------------------------------
# parameters and input


def parse_params(params) -> dict:
    params = parse_json(params, "--params (config download)", obj=True)
    check_keys(params, DEFAULTS, "--params (config download)")
    p = {**DEFAULTS, **params}
    for key in ("image_size", "processes", "threads", "rows_per_shard", "retries"):
        v = p[key]
        if not isinstance(v, int) or isinstance(v, bool) or v < (0 if key == "retries" else 1):
            raise InputError(f"--params (config download.{key}): expected a positive integer, got {v!r}")
    if p["resize_mode"] not in RESIZE_MODES:
        raise InputError(f"--params (config download.resize_mode): {p['resize_mode']!r} is not one of "
                         f"{', '.join(RESIZE_MODES)}")
    t = p["timeout"]
    if isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0:
        raise InputError(f"--params (config download.timeout): expected a positive number, got {t!r}")
    r = p["min_success_rate"]
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 <= r <= 1:
        raise InputError(f"--params (config download.min_success_rate): expected a fraction in [0, 1], got {r!r}")
    return p


def read_selection(path) -> "pyarrow.Table":  # noqa: F821
    """The selection as img2dataset's input table; InputError names the file and column."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: selection file not found")
    try:
        schema = pq.read_schema(path)
    except Exception as e:  # pyarrow raises several types for a file that is not parquet
        raise InputError(f"{path}: not a readable parquet file ({e})") from None
    for col in SELECTION_COLUMNS:
        if col not in schema.names:
            raise InputError(f"{path}: missing column {col!r} (a selection needs {', '.join(SELECTION_COLUMNS)})")
    table = pq.read_table(path, columns=list(SELECTION_COLUMNS))
    if table.num_rows == 0:
        raise InputError(f"{path}: the selection is empty")
    for col in ("key", "url", "wnid", "label"):
        nulls = table[col].null_count
        if nulls:
            raise InputError(f"{path}: column {col!r} has {nulls} null values")
    if not pa.types.is_integer(table.schema.field("label").type):
        raise InputError(f"{path}: column 'label' must be integer, found {table.schema.field('label').type}")
    for col in ("text_sim", "clip_sim", "rank_in_class"):
        t = table.schema.field(col).type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
            raise InputError(f"{path}: column {col!r} must be numeric, found {t}")
    keys = table["key"].cast(pa.string())
    if pc.count_distinct(keys).as_py() != table.num_rows:
        dup = next(k for k, c in Counter(keys.to_pylist()).items() if c > 1)
        raise InputError(f"{path}: column 'key' has duplicate values, e.g. {dup!r}")
    return pa.table({
        "url": table["url"].cast(pa.string()),
        "caption": table["text"].cast(pa.string()),
        "sel_key": keys,
        "wnid": table["wnid"].cast(pa.string()),
        "label": table["label"].cast(pa.int64()),
        "text_sim": table["text_sim"].cast(pa.float64()),
        "clip_sim": table["clip_sim"].cast(pa.float64()),
        "rank_in_class": table["rank_in_class"].cast(pa.int64()),
    })


def fingerprint(table, params: dict) -> str:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    h = hashlib.sha256(sink.getvalue().to_pybytes())
    h.update(json.dumps({k: params[k] for k in SHARD_PARAMS}, sort_keys=True).encode())
    return h.hexdigest()


def shard_name(i: int) -> str:
    return f"{i:0{SHARD_DIGITS}d}"


# ---------------------------------------------------------------------------------------
# the download


def img2dataset_kwargs(input_path: Path, out_dir: Path, params: dict) -> dict:
    return dict(
        url_list=str(input_path),
        input_format="parquet",
        url_col="url",
        caption_col="caption",
        save_additional_columns=list(EXTRA_COLUMNS),
        output_format="webdataset",
        output_folder=str(out_dir),
        image_size=params["image_size"],
        resize_mode=params["resize_mode"],
        processes_count=params["processes"],
        thread_count=params["threads"],
        number_sample_per_shard=params["rows_per_shard"],
        timeout=params["timeout"],
        retries=params["retries"],
        incremental_mode="incremental",
        enable_wandb=False,
        distributor="multiprocessing",
        oom_shard_count=SHARD_DIGITS,
    )


def _check_served_urls(selection, table, port) -> None:
    """With the demo server, the selection's URLs must point at it."""
    from urllib.parse import urlsplit

    if port is None:
        raise InputError("--serve-root needs --port (config corpus.demo.port)")
    here = {f"127.0.0.1:{port}", f"localhost:{port}"}
    urls = table["url"].to_pylist()
    if not any(urlsplit(u).netloc in here for u in urls):
        raise InputError(f"{selection}: column 'url' points elsewhere (e.g. {urls[0]}) than the demo server "
                         f"on port {port} (config corpus.demo.port): regenerate the demo corpus with that port")


def _prepare_out_dir(out_dir: Path, fp: str) -> None:
    """Make ``out_dir`` ready to (re)run: emptied if it holds another download, reports removed."""
    fp_file = out_dir / INPUT_DIR / "fingerprint.txt"
    if out_dir.exists():
        old_fp = fp_file.read_text().strip() if fp_file.is_file() else None
        if old_fp != fp and any(out_dir.iterdir()):
            why = "a different selection or shard parameters" if old_fp else "no fingerprint"
            log.warning("%s holds a download of %s; starting over", out_dir, why)
            shutil.rmtree(out_dir)
    # img2dataset reads every *.json in its output folder as a shard's stats: no reports there
    for name in (REPORT, REPORT_INCOMPLETE):
        (out_dir / name).unlink(missing_ok=True)


def _shard_files(out_dir: Path, name: str) -> list[Path]:
    return [out_dir / f"{name}_stats.json", out_dir / f"{name}.parquet", out_dir / f"{name}.tar"]


def run_img2dataset(kwargs: dict) -> None:
    """img2dataset.download(**kwargs) in a child process in its own process group.

    The child is ended with its whole group (pool workers, logger process) when this
    process is interrupted.
    """
    package_parent = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["NO_ALBUMENTATIONS_UPDATE"] = "1"
    env["WANDB_MODE"] = "disabled"
    env["PYTHONPATH"] = package_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "imagenot.download", "--img2dataset-child", json.dumps(kwargs)]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        rc = proc.wait()
    except BaseException:
        _end_group(proc)
        raise
    if rc != 0:
        raise RuntimeError(f"img2dataset exited with status {rc} (output folder {kwargs['output_folder']})")


def _end_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGINT, 10), (signal.SIGTERM, 10), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            if sig != signal.SIGINT:
                break
            # SIGINT ends the main process; its workers and logger may linger: go on
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group
    except ProcessLookupError:
        pass
    proc.wait()


class _TermAsInterrupt:
    """Turn SIGTERM (Snakemake cancelling a job) into an exception so finally blocks run."""

    def __enter__(self):
        self.old = None
        try:
            self.old = signal.signal(signal.SIGTERM, self._raise)
        except ValueError:  # not the main thread
            pass
        return self

    @staticmethod
    def _raise(signum, frame):
        raise SystemExit(128 + signum)

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)
        return False


def download(selection, out_dir, params, serve_root=None, port=None, manifest=None) -> dict:
    """Download ``selection`` into ``out_dir``; return the report (see module docstring)."""
    params = parse_params(params)
    out_dir = Path(out_dir)
    table = read_selection(selection)
    fp = fingerprint(table, params)
    _prepare_out_dir(out_dir, fp)
    if serve_root is not None:
        _check_served_urls(selection, table, port)
    out_dir.mkdir(parents=True, exist_ok=True)
    input_path = out_dir / INPUT_DIR / "selection.parquet"
    import pyarrow.parquet as pq

    with atomic_path(input_path) as tmp:
        pq.write_table(table, tmp)
    (out_dir / INPUT_DIR / "fingerprint.txt").write_text(fp + "\n")

    before = check(out_dir, table, params)
    for name in before["shards"]["damaged"]:  # img2dataset would skip them (their stats exist)
        log.warning("%s: shard %s is damaged; downloading it again", out_dir, name)
        for f in _shard_files(out_dir, name):
            f.unlink(missing_ok=True)
    if before["shards"]["missing"] or before["shards"]["damaged"]:
        with _TermAsInterrupt():
            server = None
            try:
                if serve_root is not None:
                    from .corpus.server import start_server

                    server = start_server(serve_root, port, manifest)
                run_img2dataset(img2dataset_kwargs(input_path, out_dir, params))
            finally:
                if server is not None:
                    from .corpus.server import stop_server

                    stop_server(server)
    else:
        log.info("%s: every shard of this selection is finished; not running img2dataset", out_dir)

    report = check(out_dir, table, params)
    report["fingerprint"] = fp
    if report["complete"]:
        write_json(report, out_dir / REPORT)
        log.info("%s: %d of %d images (%.1f%%)", out_dir, report["succeeded"], report["expected"],
                 100 * report["success_rate"])
        return report
    write_json(report, out_dir / REPORT_INCOMPLETE)
    hint = ("rerun to resume the unfinished shards" if report["shards"]["missing"] or report["shards"]["damaged"]
            else f"finished shards are not downloaded again: delete {out_dir} to start over")
    raise DownloadIncompleteError(f"{out_dir}: download incomplete: {'; '.join(report['problems'])} "
                                  f"(details in {out_dir / REPORT_INCOMPLETE}; {hint})")


# ---------------------------------------------------------------------------------------
# completeness


def _tar_images(path: Path) -> int:
    """Number of image members in a tar (reads headers only); -1 if the tar is damaged."""
    try:
        with tarfile.open(path, "r:") as tf:
            return sum(1 for m in tf.getmembers() if m.isfile() and m.name.endswith(".jpg"))
    except (tarfile.TarError, OSError, EOFError):
        return -1


def check(out_dir, table, params: dict) -> dict:
    """The completeness report of a download of ``table`` into ``out_dir``."""
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    n = table.num_rows
    n_shards = math.ceil(n / params["rows_per_shard"])
    missing, damaged = [], []
    statuses: Counter = Counter()
    errors: Counter = Counter()
    per_class: dict[tuple[int, str], list[int]] = {}
    for label, wnid in zip(table["label"].to_pylist(), table["wnid"].to_pylist()):
        per_class.setdefault((label, wnid), [0, 0])[0] += 1
    rows_seen = 0
    for i in range(n_shards):
        name = shard_name(i)
        files = _shard_files(out_dir, name)
        absent = [f.name for f in files if not f.is_file()]
        if absent:
            missing.append(name)
            continue
        shard = pq.read_table(files[1], columns=["status", "error_message", "label", "wnid"])
        rows_seen += shard.num_rows
        st = shard["status"].to_pylist()
        ok = 0
        for s, e, label, wnid in zip(st, shard["error_message"].to_pylist(), shard["label"].to_pylist(),
                                     shard["wnid"].to_pylist()):
            statuses[s] += 1
            if s == "success":
                ok += 1
                per_class.setdefault((label, wnid), [0, 0])[1] += 1
            else:
                errors[e or s or "unknown"] += 1
        if _tar_images(files[2]) != ok:
            damaged.append(name)
    succeeded = statuses.get("success", 0)
    problems = []
    if missing:
        problems.append(f"{len(missing)} of {n_shards} shards unfinished ({', '.join(missing[:10])}"
                        f"{' ...' if len(missing) > 10 else ''})")
    if damaged:
        problems.append(f"{len(damaged)} shards whose tar does not match its parquet ({', '.join(damaged[:10])}); "
                        "delete their files to download them again")
    if not missing and rows_seen != n:
        problems.append(f"shard parquets hold {rows_seen} rows, the input has {n}")
    rate = succeeded / n if n else 0.0
    if not missing and rate < params["min_success_rate"]:
        problems.append(f"success rate {rate:.3f} is below min_success_rate {params['min_success_rate']} "
                        f"(config download.min_success_rate); most common errors: "
                        f"{dict(errors.most_common(3))}")
    return {
        "complete": not problems,
        "problems": problems,
        "expected": n,
        "succeeded": succeeded,
        "failed": n - succeeded,
        "success_rate": rate,
        "errors": dict(sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))),
        "statuses": dict(sorted(statuses.items())),
        "per_class": [{"label": label, "wnid": wnid, "expected": c[0], "succeeded": c[1]}
                      for (label, wnid), c in sorted(per_class.items())],
        "shards": {"expected": n_shards, "finished": n_shards - len(missing), "missing": missing,
                   "damaged": damaged},
        "params": params,
        "min_success_rate": params["min_success_rate"],
    }


# ---------------------------------------------------------------------------------------
# CLI


def add_commands(sub) -> None:
    p = sub.add_parser("download", help="download the selected images with img2dataset (WebDataset shards)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--selection", required=True, help="selection parquet from `imagenot curate select`")
    p.add_argument("--out-dir", required=True, help="img2dataset output folder; report.json is written last")
    p.add_argument("--params", default="{}", help="JSON of the config section download")
    p.add_argument("--serve-root", default=None, help="serve this demo corpus directory during the download")
    p.add_argument("--port", type=int, default=None, help="port of the demo server (config corpus.demo.port)")
    p.add_argument("--manifest", default=None, help="demo manifest.json (noai list); default SERVE_ROOT/manifest.json")
    p.set_defaults(func=_cmd_download)


def _cmd_download(args) -> int:
    report = download(args.selection, args.out_dir, args.params, serve_root=args.serve_root,
                      port=args.port, manifest=args.manifest)
    print(f"{args.out_dir}: {report['succeeded']} of {report['expected']} images "
          f"({100 * report['success_rate']:.1f}%), errors: {report['errors']}")
    return 0


def _child_main(argv: list[str]) -> int:
    """``python -m imagenot.download --img2dataset-child KWARGS_JSON``: run img2dataset."""
    if len(argv) != 2 or argv[0] != "--img2dataset-child":
        print("usage: python -m imagenot.download --img2dataset-child KWARGS_JSON", file=sys.stderr)
        return 2
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import img2dataset

    img2dataset.download(**json.loads(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
