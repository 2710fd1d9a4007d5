"""The ``medadv`` command line.

Every subcommand lives in its own module with a ``register(subparsers)`` function that adds
its parser and sets ``func`` to a handler ``(args) -> int``.  With ``--json`` a command prints
one JSON object as the last line of stdout (the contract CI scripts and later issues use).
Errors print one clear line on stderr and exit with status 2 (no traceback).
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys

from .. import __version__

# module name under medadv_lib.cli, in the order shown in --help
COMMANDS = ("data", "train", "attack", "uap")


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def emit(result: dict, as_json: bool, lines: list[str] | None = None) -> None:
    """Print a human summary, or with ``as_json`` one JSON object on the last line."""
    if as_json:
        print(json.dumps(result, default=str))
    else:
        for line in lines if lines is not None else [f"{k}: {v}" for k, v in result.items()]:
            print(line)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medadv", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"medadv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:        # a command whose module is not installed yet
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (CLIError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"medadv {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
