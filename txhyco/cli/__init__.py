"""The ``txhyco`` command: one console script, one module per subcommand.

Each subcommand module exposes ``add_parser(subparsers)`` (which registers the
subcommand and sets ``run`` as its default) and ``run(args) -> int``. To add a
subcommand (``listen``, ``connect``, ``request`` …), write such a module and
name it in :data:`COMMANDS`; nothing else changes.

Errors a user can cause end in one sentence on stderr and a non-zero exit
status: 2 for usage errors (argparse's convention), 1 for everything else.
Modules here import Twisted only inside ``run`` so ``--help`` stays quick.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from .common import DEBUG_ENV, CliError, Parser, add_debug_option

#: Subcommand modules under ``txhyco.cli``, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = ("relay", "tokens", "listen", "connect", "request", "up", "completion")

EPILOG = """\
examples:
  txhyco relay                              # a local relay on 127.0.0.1:9090
  txhyco token --path myhc                  # a SAS token (credentials from HYCO_CONNECTION_STRING)
  txhyco listen db --forward 127.0.0.1:5432 # expose a local TCP service through the relay
  txhyco connect db --forward 15432         # ... and reach it at 127.0.0.1:15432 elsewhere
  txhyco listen web --http http://127.0.0.1:8080   # expose a local web server (WebSockets too)
  txhyco request web /index.html            # one HTTP request through the relay, like curl -i
  txhyco listen echo --echo                 # a WebSocket echo; try: txhyco connect echo
  txhyco up tunnels.toml                    # every listener and connector of a file; SIGHUP reloads it

Run 'txhyco COMMAND --help' for a command's options and an example.
"""


def build_parser() -> Parser:
    """The top-level parser with every subcommand of :data:`COMMANDS` registered."""
    from txhyco import __version__

    parser = Parser(
        prog="txhyco",
        description="Azure Relay Hybrid Connections for Twisted, with a local relay.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"txhyco {__version__}")
    add_debug_option(parser)
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return the exit status."""
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
        if extras:  # blame the subcommand, whose --help lists its options
            getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(extras)}")
    except SystemExit as e:  # --help, --version and usage errors
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    if getattr(args, "debug", False):
        os.environ[DEBUG_ENV] = "1"
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return 2
    prog = f"txhyco {args.command}"
    try:
        return int(run(args) or 0)
    except CliError as e:
        return _fail(prog, e.message, e.exit_code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`| head`): stop quietly, as
        # Unix tools do, and keep Python from failing again on flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception as e:  # a bug rather than a user error: still one line, unless asked
        from txhyco.protocol.errors import ProtocolError

        if isinstance(e, ProtocolError):
            return _fail(prog, e.message, 1)
        if os.environ.get(DEBUG_ENV):
            raise
        return _fail(prog, f"unexpected {e.__class__.__name__}: {e} (--debug shows a traceback)", 1)


def _fail(prog: str, message: str, code: int) -> int:
    sys.stderr.write(f"{prog}: error: {' '.join(str(message).split())}\n")
    sys.stderr.flush()
    return code


__all__ = ["COMMANDS", "CliError", "build_parser", "main"]
