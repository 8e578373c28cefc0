"""Fetch one corpus metadata file (e.g. a LAION parquet part) over HTTP(S), atomically.

Used by the ``fetch_<subset>`` rules when a subset has a ``url`` template. A Hugging Face
token in ``HF_TOKEN`` is sent for gated datasets such as Re-LAION-5B. Partial downloads are
kept as ``<out>.part`` and resumed with an HTTP Range request.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from .io import InputError

CHUNK = 1 << 20
HF_API = "https://huggingface.co/api/datasets/{repo}/tree/main/{folder}"
HF_FILE = "https://huggingface.co/datasets/{repo}/resolve/main/{path}"


def parse_hf_url(url: str) -> tuple[str, str, str]:
    """``hf://datasets/OWNER/NAME/[FOLDER/]PATTERN`` -> (repo, folder, glob pattern).

    LAION's part files carry a UUID in their names (``part-00000-<uuid>-c000.snappy.parquet``),
    so the config names them by a glob that must match exactly one file of the listing.
    """
    prefix = "hf://datasets/"
    if not url.startswith(prefix):
        raise InputError(f"{url}: not an hf://datasets/OWNER/NAME/PATTERN address")
    parts = url[len(prefix):].split("/")
    if len(parts) < 3:
        raise InputError(f"{url}: expected hf://datasets/OWNER/NAME/PATTERN")
    repo = "/".join(parts[:2])
    folder = "/".join(parts[2:-1])
    return repo, folder, parts[-1]


def match_listing(url: str, names: list[str]) -> str:
    """The single file of a repository listing that the hf:// glob names."""
    _, folder, pattern = parse_hf_url(url)
    hits = sorted(n for n in names if fnmatch.fnmatch(n.rsplit("/", 1)[-1], pattern))
    if len(hits) != 1:
        raise InputError(f"{url}: pattern matches {len(hits)} files of the listing, expected 1: {hits[:5]}")
    return hits[0] if "/" in hits[0] or not folder else f"{folder}/{hits[0]}"


def resolve_url(url: str, headers: dict, timeout: float) -> str:
    if not url.startswith("hf://"):
        return url
    repo, folder, _ = parse_hf_url(url)
    api = HF_API.format(repo=repo, folder=folder).rstrip("/")
    try:
        with urllib.request.urlopen(urllib.request.Request(api, headers=headers), timeout=timeout) as r:
            listing = json.load(r)
    except urllib.error.HTTPError as e:
        hint = " (set HF_TOKEN for gated Hugging Face datasets)" if e.code in (401, 403) else ""
        raise InputError(f"{api}: HTTP {e.code} {e.reason}{hint}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise InputError(f"{api}: listing failed ({e})") from None
    path = match_listing(url, [item["path"] for item in listing if item.get("type") == "file"])
    return HF_FILE.format(repo=repo, path=path)


def fetch(url: str, out: str | os.PathLike, timeout: float = 60.0) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    headers = {"User-Agent": "imagenot-fetch/0.1"}
    token = os.environ.get("HF_TOKEN")
    if token and ("huggingface.co" in url or url.startswith("hf://")):
        headers["Authorization"] = f"Bearer {token}"
    url = resolve_url(url, headers, timeout)
    offset = part.stat().st_size if part.exists() else 0
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            append = offset and response.status == 206
            with open(part, "ab" if append else "wb") as f:
                shutil.copyfileobj(response, f, CHUNK)
    except urllib.error.HTTPError as e:
        hint = " (set HF_TOKEN for gated Hugging Face datasets)" if e.code in (401, 403) else ""
        raise InputError(f"{url}: HTTP {e.code} {e.reason}{hint}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise InputError(f"{url}: download failed ({e}); rerun to resume from {part}") from None
    os.replace(part, out)
    return out


def _cmd_fetch(args) -> int:
    path = fetch(args.url, args.out, timeout=args.timeout)
    print(f"fetched {args.url} -> {path} ({path.stat().st_size} bytes)")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("fetch", help="download one corpus metadata file (resumable, atomic)")
    p.add_argument("--url", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--timeout", type=float, default=60.0)
    p.set_defaults(func=_cmd_fetch)
