"""The demo image server: 200 / 404 / X-Robots-Tag: noai, its own process group, busy ports."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import free_port


def _get(port: int, path: str):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=10) as r:
            return r.status, r.headers.get("X-Robots-Tag"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("X-Robots-Tag"), e.read()


@pytest.fixture(scope="module")
def served(demo_corpus):
    from imagenot.corpus.server import start_server, stop_server

    port = free_port()
    proc = start_server(demo_corpus, port, demo_corpus / "manifest.json")
    yield port, proc
    stop_server(proc)


def test_serves_files_404_and_noai_header(demo_corpus, served):
    port, _ = served
    manifest = json.loads((demo_corpus / "manifest.json").read_text())
    noai = manifest["noai"][0]
    plain = next(f"images/{p.name}" for p in sorted((demo_corpus / "images").iterdir())
                 if f"images/{p.name}" not in manifest["noai"])

    status, robots, body = _get(port, plain)
    assert (status, robots) == (200, None) and body == (demo_corpus / plain).read_bytes()
    status, robots, body = _get(port, noai)
    assert (status, robots) == (200, "noai") and body == (demo_corpus / noai).read_bytes()
    status, robots, _ = _get(port, manifest["missing"][0])
    assert (status, robots) == (404, None)
    status, _, body = _get(port, manifest["corrupt"][0])
    assert status == 200 and body == (demo_corpus / manifest["corrupt"][0]).read_bytes()


def test_many_parallel_connections(demo_corpus, served):
    from imagenot.corpus.server import DemoServer

    assert DemoServer.request_queue_size >= 128
    port, _ = served
    names = [f"images/{p.name}" for p in sorted((demo_corpus / "images").iterdir())][:64]
    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(lambda n: _get(port, n)[0], names))
    assert statuses == [200] * len(names)


def test_busy_port_is_named_with_its_config_key(demo_corpus, served):
    from imagenot.corpus.server import PortInUseError, start_server
    from imagenot.io import InputError

    port, _ = served
    with pytest.raises(PortInUseError, match=rf"port {port}.*corpus\.demo\.port"):
        start_server(demo_corpus, port)
    assert issubclass(PortInUseError, InputError)


def test_runs_in_own_process_group_and_stops_by_pid(demo_corpus):
    from imagenot.corpus.server import port_accepts, start_server, stop_server

    port = free_port()
    proc = start_server(demo_corpus, port)  # manifest defaults to ROOT/manifest.json
    try:
        assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)
        manifest = json.loads((demo_corpus / "manifest.json").read_text())
        assert _get(port, manifest["noai"][0])[1] == "noai"
    finally:
        stop_server(proc)
    assert proc.returncode is not None
    assert not port_accepts(port)


def test_bad_root_and_manifest(tmp_path):
    from imagenot.corpus.server import read_noai, start_server
    from imagenot.io import InputError

    with pytest.raises(InputError, match="not found"):
        start_server(tmp_path / "nope", free_port())
    bad = tmp_path / "manifest.json"
    bad.write_text(json.dumps({"noai": "images/a.jpg"}))
    with pytest.raises(InputError, match=r"manifest\.json: field 'noai'"):
        read_noai(bad)
