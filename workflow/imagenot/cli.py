"""The ``imagenot`` command line: one subcommand per workflow step.

Each stage module exposes ``add_commands(subparsers)`` that registers its own subcommands
with ``set_defaults(func=...)``; the Snakemake rules call these subcommands, and users can
call them by hand.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .io import InputError

# stage modules, in pipeline order; each defines add_commands(subparsers)
STAGES = [
    "imagenot.config",
    "imagenot.wordnet",
    "imagenot.corpus.demo",
    "imagenot.corpus.server",
    "imagenot.fetch",
    "imagenot.curate.cli",
    "imagenot.download",
    "imagenot.dataset",
    "imagenot.models",
    "imagenot.train",
    "imagenot.evaluate",
    "imagenot.aggregate",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagenot", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in STAGES:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result = args.func(args)
    except InputError as e:
        print(f"imagenot {args.command}: error: {e}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
