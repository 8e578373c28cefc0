"""Metadata fetch: hf:// glob resolution, atomic resumable download over real HTTP."""

import functools
import http.server
import threading

import pytest

from imagenot import fetch
from imagenot.io import InputError

UUID_NAMES = [
    "part-00000-339dc23d-0869-4dc0-9390-b4036fcc80c2-c000.snappy.parquet",
    "part-00001-339dc23d-0869-4dc0-9390-b4036fcc80c2-c000.snappy.parquet",
    "README.md",
]


def test_hf_glob_names_exactly_one_part():
    url = "hf://datasets/laion/relaion2B-en-research-safe/part-00001-*.parquet"
    assert fetch.parse_hf_url(url) == ("laion/relaion2B-en-research-safe", "", "part-00001-*.parquet")
    assert fetch.match_listing(url, UUID_NAMES) == UUID_NAMES[1]
    with pytest.raises(InputError, match="matches 2 files"):
        fetch.match_listing("hf://datasets/a/b/part-*.parquet", UUID_NAMES)
    with pytest.raises(InputError, match="matches 0 files"):
        fetch.match_listing("hf://datasets/a/b/part-00009-*.parquet", UUID_NAMES)


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_writes_atomically_and_reports_http_errors(http_root, tmp_path):
    root, base = http_root
    payload = bytes(range(256)) * 1000
    (root / "part-00000.parquet").write_bytes(payload)
    out = tmp_path / "data" / "part-00000.parquet"
    fetch.fetch(f"{base}/part-00000.parquet", out)
    assert out.read_bytes() == payload
    assert not out.with_name(out.name + ".part").exists()
    with pytest.raises(InputError, match="HTTP 404"):
        fetch.fetch(f"{base}/missing.parquet", tmp_path / "missing.parquet")
    assert not (tmp_path / "missing.parquet").exists()
