"""A local HTTP server for the demo corpus images.

``imagenot serve-demo --root DIR --port P [--manifest manifest.json]`` serves the files under
DIR on 127.0.0.1:P until it is stopped. Missing files answer 404 ("File not found"); files
the manifest lists under ``noai`` are served with ``X-Robots-Tag: noai``, which img2dataset
honours by rejecting the image. The demo URLs are ``http://127.0.0.1:P/images/NAME.jpg``, so
DIR is the corpus directory (the one holding ``images/`` and ``manifest.json``); without
``--manifest``, ``DIR/manifest.json`` is used when it exists.

It is a ``ThreadingHTTPServer`` with a listen backlog of 128: with Python's default of 5,
img2dataset's burst of parallel connections stalls every shard by about a second.

``start_server(root, port, manifest)`` runs the server in its own process (own session and
process group, so that stopping it never touches the caller) and returns once the port
accepts connections; ``stop_server(proc)`` ends that process group by its id.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..io import InputError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
REQUEST_QUEUE_SIZE = 128
PORT_CONFIG_KEY = "corpus.demo.port"
#: exit status of the server process when its port is taken
EXIT_PORT_IN_USE = 3


class PortInUseError(InputError):
    """The port is taken by another process."""


def _port_busy_message(port: int) -> str:
    return (f"port {port} on {HOST} is already in use (config key {PORT_CONFIG_KEY}): stop the "
            f"process that holds it or choose another port")


def read_noai(manifest: str | os.PathLike | None) -> frozenset[str]:
    """Relative paths (``images/NAME.jpg``) the manifest lists under ``noai``."""
    if manifest is None:
        return frozenset()
    path = Path(manifest)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: manifest not found") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON: {e}") from None
    names = data.get("noai", []) if isinstance(data, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError(f"{path}: field 'noai' must be a list of file paths relative to the served root")
    return frozenset(n.lstrip("/") for n in names)


class DemoRequestHandler(SimpleHTTPRequestHandler):
    """Static files under ``directory``; ``X-Robots-Tag: noai`` for the listed paths."""

    noai: frozenset[str] = frozenset()

    def __init__(self, *args, noai: frozenset[str] = frozenset(), **kwargs):
        self.noai = noai
        super().__init__(*args, **kwargs)

    def end_headers(self):
        rel = unquote(urlsplit(self.path).path).lstrip("/")
        if rel in self.noai:
            self.send_header("X-Robots-Tag", "noai")
        super().end_headers()

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        log.debug("%s - %s", self.address_string(), format % args)


class DemoServer(ThreadingHTTPServer):
    request_queue_size = REQUEST_QUEUE_SIZE
    daemon_threads = True
    noai: frozenset[str] = frozenset()

    def handle_error(self, request, client_address):
        # clients that time out and hang up (img2dataset's timeout) are not server errors
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


def make_server(root: str | os.PathLike, port: int, manifest: str | os.PathLike | None = None) -> DemoServer:
    """A bound (not yet serving) server for ``root``; raises PortInUseError."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: directory to serve not found")
    if manifest is None and (root / "manifest.json").is_file():
        manifest = root / "manifest.json"
    noai = read_noai(manifest)
    handler = partial(DemoRequestHandler, directory=str(root.resolve()), noai=noai)
    try:
        server = DemoServer((HOST, port), handler)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise PortInUseError(_port_busy_message(port)) from None
        raise
    server.noai = noai
    return server


def serve(root, port: int, manifest=None) -> None:
    server = make_server(root, port, manifest)

    def _stop(signum, frame):  # SIGTERM: leave serve_forever's loop and close the socket
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    print(f"serving {root} on http://{HOST}:{port}/ ({len(server.noai)} noai files)",
          flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def port_accepts(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def start_server(root, port: int, manifest=None, timeout: float = 60.0) -> subprocess.Popen:
    """Start ``serve-demo`` in its own process group; return once the port accepts connections.

    Raises PortInUseError when the port is taken (before or during start-up) and
    RuntimeError when the server exits or does not come up within ``timeout`` seconds.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: directory to serve not found")
    if manifest is not None and not Path(manifest).is_file():
        raise InputError(f"{manifest}: manifest not found")
    if port_accepts(port):
        raise PortInUseError(_port_busy_message(port))
    package_parent = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = package_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "imagenot.corpus.server", "--root", str(root), "--port", str(port)]
    if manifest is not None:
        cmd += ["--manifest", str(manifest)]
    # stderr to a file, not a pipe: nobody reads it while the server runs
    errfile = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=errfile)
    proc._imagenot_errfile = errfile
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            errfile.seek(0)
            err = errfile.read().decode(errors="replace").strip()
            errfile.close()
            if proc.returncode == EXIT_PORT_IN_USE:
                raise PortInUseError(_port_busy_message(port))
            raise RuntimeError(f"demo server for {root} on port {port} exited with status "
                               f"{proc.returncode}: {err[-2000:]}")
        if port_accepts(port):
            log.info("demo server pid %d serves %s on http://%s:%d/", proc.pid, root, HOST, port)
            return proc
        if time.monotonic() > deadline:
            stop_server(proc)
            raise RuntimeError(f"demo server for {root} did not accept connections on port {port} "
                               f"within {timeout:.0f} s")
        time.sleep(0.05)


def stop_server(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """End the server's process group (SIGTERM, then SIGKILL) and reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    errfile = getattr(proc, "_imagenot_errfile", None)
    if errfile is not None:
        errfile.close()
    log.info("demo server pid %d stopped", proc.pid)


def add_commands(sub) -> None:
    p = sub.add_parser("serve-demo", help="serve the demo corpus images over HTTP on 127.0.0.1",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="directory to serve (the demo corpus directory)")
    p.add_argument("--port", required=True, type=int, help="TCP port (config corpus.demo.port)")
    p.add_argument("--manifest", default=None,
                   help="demo manifest.json whose 'noai' files get X-Robots-Tag: noai (default ROOT/manifest.json)")
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args) -> int:
    serve(args.root, args.port, args.manifest)
    return 0


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m imagenot.corpus.server")
    sub = parser.add_subparsers(dest="command")
    add_commands(sub)
    args = parser.parse_args(["serve-demo", *(argv if argv is not None else sys.argv[1:])])
    try:
        return args.func(args)
    except PortInUseError as e:
        print(f"imagenot serve-demo: error: {e}", file=sys.stderr)
        return EXIT_PORT_IN_USE
    except InputError as e:
        print(f"imagenot serve-demo: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
