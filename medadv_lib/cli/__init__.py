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
import os
import sys

from .. import __version__
from ._guard import DEBUG_ENV, CLIError, describe_error, jsonable, validate_args

# module name under medadv_lib.cli, in the order shown in --help
COMMANDS = ("data", "train", "attack", "uap", "defend", "evaluate", "report")


def emit(result: dict, as_json: bool, lines: list[str] | None = None) -> None:
    """Print a human summary, or with ``as_json`` one JSON object on the last line."""
    if as_json:
        print(json.dumps(jsonable(result), allow_nan=False))      # strict JSON: NaN -> null
    else:
        for line in lines if lines is not None else [f"{k}: {v}" for k, v in result.items()]:
            print(line)


class _Parser(argparse.ArgumentParser):
    """argparse, whose usage errors also keep the ``--json`` contract (a JSON object on stdout)."""

    def error(self, message):
        if "--json" in (_ARGV or []):
            print(json.dumps({"ok": False, "command": self.prog.split(" ", 1)[-1], "error": message,
                              "error_type": "UsageError"}))
        super().error(message)


_ARGV: list[str] | None = None


def _fail(command: str, message: str, error_type: str, as_json: bool) -> int:
    """The one way a command fails: one line on stderr, a JSON object on stdout with ``--json``; exit 2."""
    print(f"medadv {command}: error: {message}", file=sys.stderr)
    if as_json:
        print(json.dumps({"ok": False, "command": command, "error": message, "error_type": error_type}))
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="medadv", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"medadv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    global _ARGV
    _ARGV = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(_ARGV)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    command = " ".join(filter(None, (args.command, getattr(args, "data_command", None))))
    as_json = bool(getattr(args, "json", False))
    try:
        validate_args(args)                  # options are checked before any work starts
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        _fail(command, "interrupted", "KeyboardInterrupt", as_json)
        return 130
    except Exception as exc:                 # every failure: one line with the fix, exit 2 (no traceback)
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        return _fail(command, describe_error(exc), type(exc).__name__, as_json)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
