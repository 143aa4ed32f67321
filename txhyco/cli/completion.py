"""``txhyco completion bash|zsh``: a shell completion script, generated from the argument parser.

The script is made by ``shtab`` from the very parser ``txhyco`` uses, so new
subcommands and options complete without anyone editing a script by hand.
"""
from __future__ import annotations

import argparse
import sys

from .common import add_subcommand

SHELLS = ("bash", "zsh")

EPILOG = """\
examples:
  source <(txhyco completion bash)
      completion in this bash session (add the line to ~/.bashrc to keep it).
  txhyco completion zsh > "${fpath[1]}/_txhyco"
      install it for zsh (any directory on $fpath; then restart zsh or run compinit).
"""

#: metavars that name a file or a directory, so the shell offers paths there
FILE_METAVARS = frozenset({"FILE", "PEM"})
DIRECTORY_METAVARS = frozenset({"DIR"})


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_subcommand(
        subparsers,
        "completion",
        help="print a shell completion script (bash or zsh)",
        description="Print a completion script for txhyco's commands and options to stdout.",
        epilog=EPILOG,
        run=run,
    )
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    return parser


def run(args: argparse.Namespace) -> int:
    import shtab

    from . import build_parser

    parser = build_parser()
    _mark_paths(parser, shtab)
    sys.stdout.write(shtab.complete(parser, shell=args.shell))
    return 0


def _mark_paths(parser: argparse.ArgumentParser, shtab) -> None:
    """Options whose value is a file or directory complete with paths (shtab's ``complete`` hint)."""
    for action in parser._actions:  # argparse has no public walk over a parser's actions
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _mark_paths(sub, shtab)
        elif action.metavar in FILE_METAVARS:
            action.complete = shtab.FILE
        elif action.metavar in DIRECTORY_METAVARS:
            action.complete = shtab.DIRECTORY
