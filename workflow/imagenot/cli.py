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

# stage modules, in pipeline order, with the subcommands each registers via add_commands().
# A call imports only the module of its subcommand: torch alone takes seconds to import, and
# the workflow calls `imagenot` once per job.
STAGES = {
    "imagenot.config": ["validate-config"],
    "imagenot.wordnet": ["wordnet"],
    "imagenot.corpus.demo": ["demo-corpus"],
    "imagenot.corpus.server": ["serve-demo"],
    "imagenot.fetch": ["fetch"],
    "imagenot.curate.cli": ["curate"],
    "imagenot.curate.subtree": ["table3"],
    "imagenot.curate.figures": ["curation-figures"],
    "imagenot.download": ["download"],
    "imagenot.dataset": ["split"],
    "imagenot.benchmarks": ["benchmark-dataset"],
    "imagenot.models": ["models", "reference"],
    "imagenot.train": ["train"],
    "imagenot.tune": ["tune"],
    "imagenot.evaluate": ["evaluate"],
    "imagenot.robustness": ["robustness"],
    "imagenot.transfer": ["transfer-data", "transfer"],
    "imagenot.aggregate": ["aggregate"],
    "imagenot.analyze": ["analyze"],
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or (given ``command``) one that imports only that command's module."""
    parser = argparse.ArgumentParser(prog="imagenot", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module, commands in STAGES.items():
        if command is None or command in commands:
            importlib.import_module(module).add_commands(sub)
    return parser


def _command(argv: list[str]) -> str | None:
    known = {c for commands in STAGES.values() for c in commands}
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in known else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command(argv))
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
