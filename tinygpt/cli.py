"""The `tinygpt` command (also `python -m tinygpt`).

Each subcommand lives beside the code it drives and adds itself with ``register(subparsers)``;
this file only collects them, so the list below is the whole command line at a glance.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

import tinygpt

# The modules that each add one subcommand with register(subparsers).
COMMANDS = [
    "tinygpt.tokenizer.cli",
    "tinygpt.commands.train",
    "tinygpt.commands.viz",
    "tinygpt.commands.exercises",
    "tinygpt.commands.lessons",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinygpt",
        description="tinygpt: a readable GPT framework in NumPy — tokenize, train, sample, "
                    "look inside attention, and learn how it all works.",
    )
    parser.add_argument("--version", action="version", version=f"tinygpt {tinygpt.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    _no_abbreviations(parser)
    return parser


def _no_abbreviations(parser: argparse.ArgumentParser) -> None:
    """A typo such as --max-step must be an error, not quietly read as --max-steps."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _no_abbreviations(child)


def _chosen(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """The innermost subcommand's parser that ``args`` came through (e.g. `tokenize train`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            child = action.choices.get(getattr(args, action.dest, None) or "")
            if child is not None:
                return _chosen(child, args)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named by the subcommand, with its usage (`tinygpt train --bogus 3`)
        _chosen(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tinygpt ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
