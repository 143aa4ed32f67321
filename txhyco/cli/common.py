"""What every ``txhyco`` subcommand shares: errors, the parser, secrets, logging, the reactor."""
from __future__ import annotations

import argparse
import os
import sys
import textwrap
from typing import Any, Callable

SECRET_NOTE = (
    "Command-line arguments are visible to other users of this machine in process listings (ps); "
    "prefer a key file or an environment variable for secrets."
)


def paragraph(text: str, width: int = 78) -> str:
    """``text`` wrapped for a help epilog (RawDescriptionHelpFormatter keeps it as is)."""
    return textwrap.fill(text, width) + "\n"


class CliError(Exception):
    """A failure the user can fix: one sentence for stderr and an exit status (2 = usage)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit status 2)."""

    def error(self, message: str):  # type: ignore[override]
        text = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {text} (see '{self.prog} --help').\n")


def add_subcommand(subparsers, name: str, *, help: str, description: str, epilog: str, run: Callable[[Any], int]):
    """Register a subcommand with an example-bearing epilog; returns its parser."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(run=run, _parser=parser)
    return parser


def read_secret_file(path: str, what: str = "key") -> str:
    """The first line of ``path`` (``-`` reads stdin), stripped; never echoed in errors."""
    try:
        if path == "-":
            text = sys.stdin.readline()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.readline()
    except OSError as e:
        raise CliError(f"cannot read the {what} file {path}: {e.strerror}.") from None
    except UnicodeDecodeError:
        raise CliError(f"the {what} file {path} is not UTF-8 text.") from None
    secret = text.strip()
    if not secret:
        raise CliError(f"the {what} file {path} is empty; it must hold the {what} on its first line.")
    return secret


def choose_key(key: str | None, key_file: str | None, env_var: str = "HYCO_RELAY_KEY") -> str | None:
    """``--key``, else ``--key-file``, else the environment variable, else None."""
    if key is not None and key_file is not None:
        raise CliError("give either --key or --key-file, not both.", 2)
    if key is not None:
        if not key.strip():
            raise CliError("--key is empty.", 2)
        return key.strip()
    if key_file is not None:
        return read_secret_file(key_file)
    value = os.environ.get(env_var, "").strip()
    return value or None


def start_logging(stream=None, level: str = "info") -> None:
    """Send twisted.logger events at ``level`` and above to ``stream`` (stderr)."""
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    observer = FilteringLogObserver(textFileLogObserver(stream or sys.stderr), [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def run_reactor(main: Callable[[Any], Any]) -> int:
    """Run the reactor until ``main(reactor)``'s Deferred fires or a signal stops it.

    Like :func:`twisted.internet.task.react`, but returns the exit status
    instead of exiting, and re-raises ``main``'s exception (a :class:`CliError`
    becomes one line on stderr) rather than logging a traceback. A result of
    ``None`` or a stop by SIGINT/SIGTERM means status 0.
    """
    from twisted.internet import defer, reactor
    from twisted.internet.error import ReactorNotRunning
    from twisted.python.failure import Failure

    outcome: list[Any] = []
    stopping = False

    def on_shutdown() -> None:
        nonlocal stopping
        stopping = True

    def finish(result: Any) -> None:
        outcome.append(result)
        if not stopping:
            try:
                reactor.stop()
            except ReactorNotRunning:
                pass

    def begin() -> None:
        d = defer.maybeDeferred(main, reactor)
        d.addBoth(finish)

    reactor.addSystemEventTrigger("before", "shutdown", on_shutdown)
    reactor.callWhenRunning(begin)
    reactor.run()
    if not outcome:
        return 0
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    return int(result or 0)
