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
    add_debug_option(parser)
    return parser


def read_secret_file(path: str, what: str = "key") -> str:
    """The one line of ``path`` (``-`` reads the first line of stdin), stripped; never echoed in errors.

    A file of more than one line is refused (see :func:`txhyco._optionfiles.read_key_file`).
    """
    from txhyco._optionfiles import OptionFileError, read_key_file

    if path != "-":
        try:
            return read_key_file(path)
        except OptionFileError as e:
            raise CliError(f"the {what} file: {e}.") from None
    try:
        text = sys.stdin.readline()
    except OSError as e:
        raise CliError(f"cannot read the {what} from stdin: {e.strerror}.") from None
    except UnicodeDecodeError:
        raise CliError(f"the {what} on stdin is not UTF-8 text.") from None
    secret = text.strip()
    if not secret:
        raise CliError(f"no {what} on stdin: its first line must hold the {what}.")
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


#: Set by ``--debug`` (or by hand): library log lines and tracebacks of unexpected errors are shown.
DEBUG_ENV = "TXHYCO_DEBUG"


def add_debug_option(parser) -> None:
    """``--debug``, accepted before or after the subcommand (SUPPRESS: one does not reset the other)."""
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help=f"show Autobahn's own log lines and tracebacks of unexpected errors (also: {DEBUG_ENV}=1)",
    )


def library_lines_hidden(event):
    """A log predicate: Autobahn's own lines repeat what txhyco says in its words; shown with --debug."""
    from twisted.logger import PredicateResult

    if not os.environ.get(DEBUG_ENV) and str(event.get("log_namespace", "")).startswith("autobahn."):
        return PredicateResult.no
    return PredicateResult.maybe


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
    observer = FilteringLogObserver(textFileLogObserver(stream or sys.stderr), [predicate, library_lines_hidden])
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


# -- shared by the commands that talk to a relay (listen, connect, request) ------------

CONNECTION_STRING_ENV = "HYCO_CONNECTION_STRING"


def add_relay_options(parser, *, path_optional: bool = False) -> None:
    """``PATH``, ``--connection-string`` and ``--ca-file``: how a command reaches its hybrid connection.

    With ``path_optional``, PATH may be left out when the connection string names an ``EntityPath``.
    """
    if path_optional:
        parser.add_argument(
            "path",
            metavar="PATH",
            nargs="?",
            help="the hybrid connection's name (its entity path), e.g. db (default: the connection string's EntityPath)",
        )
    else:
        parser.add_argument("path", metavar="PATH", help="the hybrid connection's name (its entity path), e.g. db")
    parser.add_argument(
        "--connection-string",
        metavar="TEXT",
        help=f"the relay's connection string, as 'txhyco relay' prints it (default: ${CONNECTION_STRING_ENV})",
    )
    parser.add_argument(
        "--ca-file",
        metavar="PEM",
        help="trust this certificate for a wss:// relay with a self-signed one (txhyco relay --self-signed DIR writes DIR/relay-cert.pem)",
    )
    add_proxy_options(parser)


def add_proxy_options(parser) -> None:
    """``--proxy URL`` and ``--no-proxy``: how connections reach the relay (default: the environment, as curl reads it)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--proxy",
        metavar="URL",
        help="send every connection to the relay through this HTTP proxy, http://HOST:PORT (default: $https_proxy "
             "for wss://, $http_proxy for ws://, else $all_proxy, less $no_proxy, as curl reads them); a proxy "
             "password goes in those variables, never here: the command line shows in process listings",
    )
    group.add_argument("--no-proxy", action="store_true", help="connect to the relay directly, whatever the environment says")


def proxy_setting(args):
    """The ``proxy=`` value for :meth:`HybridConnection.from_args` that ``--proxy``/``--no-proxy`` ask for.

    A password in ``--proxy`` is refused: process listings would show it to every user of the machine.
    """
    from txhyco.protocol.errors import ProtocolError
    from txhyco.protocol.proxy import ProxyURL

    if getattr(args, "no_proxy", False):
        return "none"
    text = getattr(args, "proxy", None)
    if text is None:
        return None
    if text.strip().lower() == "none":  # as proxy="none" in Python and hyco: strings
        return "none"
    try:
        proxy = ProxyURL.parse(text, source="--proxy")
    except ProtocolError as e:
        raise CliError(e.message, 2) from None
    if proxy.password is not None:
        raise CliError(
            f"--proxy {proxy}: a password on the command line shows in process listings; put the whole URL in "
            "https_proxy (or http_proxy for a ws:// relay) instead, e.g. export https_proxy='http://USER:PASSWORD@host:port'.",
            2,
        )
    return proxy


def check_path(path: str) -> str:
    """``path`` without surrounding slashes if it can name a hybrid connection; a usage error if not."""
    from txhyco.protocol.addresses import check_entity_name
    from txhyco.protocol.errors import ProtocolError

    try:
        return check_entity_name(path)
    except ProtocolError as e:
        raise CliError(f"PATH {e.message}", 2) from None


def check_ca_file_option(path: str, option: str) -> None:
    """A usage error unless ``path`` holds a PEM certificate (caught before any connection)."""
    from txhyco._optionfiles import OptionFileError, check_ca_file

    try:
        check_ca_file(path)
    except OptionFileError as e:
        raise CliError(f"{option}: {e}.", 2) from None


def hybrid_connection(args):
    """The :class:`txhyco.address.HybridConnection` that ``args`` (see :func:`add_relay_options`) name."""
    from txhyco.address import HybridConnection
    from txhyco.protocol.connection_string import ConnectionString
    from txhyco.protocol.errors import ProtocolError

    path = check_path(args.path) if args.path is not None else None
    text = args.connection_string
    if text is None:
        text = os.environ.get(CONNECTION_STRING_ENV, "").strip()
        if not text:
            raise CliError(
                f"no relay given: pass --connection-string or set {CONNECTION_STRING_ENV} "
                "(txhyco relay prints one for a local relay).",
                2,
            )
        source = f"${CONNECTION_STRING_ENV}"
    else:
        source = "--connection-string"
    if args.ca_file is not None:
        check_ca_file_option(args.ca_file, "--ca-file")
    if path is None:
        try:
            entity_path = ConnectionString.parse(text).entity_path
        except ProtocolError as e:
            raise CliError(f"the connection string in {source} is not usable: {e.message}", 2) from None
        if not entity_path:
            raise CliError(f"no PATH given and the connection string in {source} has no EntityPath: name the hybrid connection, e.g. db.", 2)
        path = check_path(entity_path)
    try:
        return HybridConnection.from_args(connection_string=text, path=path, ca_file=args.ca_file, proxy=proxy_setting(args))
    except ProtocolError as e:
        raise CliError(f"the connection string in {source} is not usable: {e.message}", 2) from None


def describe_relay_error(error: BaseException, what: str = "the relay refused") -> str:
    """One sentence for a failure to reach or use the relay (no tokens: none are in these messages)."""
    from twisted.internet import error as twisted_error

    from txhyco.errors import ProxyError, RelayError, RelayRefused, RelayUnreachable
    from txhyco.protocol.errors import ProtocolError

    if isinstance(error, twisted_error.CannotListenError) and isinstance(error.socketError, BaseException):
        error = error.socketError
    if isinstance(error, ProxyError):  # names the proxy and what it did (never its credentials)
        text = str(error)
        return text[0].lower() + text[1:]
    if isinstance(error, RelayRefused):
        # The relay's reason verbatim, less the service's TrackingId/SystemTracker/Timestamp tail.
        reason = error.reason.split(" TrackingId:", 1)[0].strip().rstrip(".")
        advice = str(error).rsplit("; ", 1)[1].rstrip(".") if "; " in str(error) else ""
        where = f" ({error.url})" if error.url else ""
        return f"{what}: {error.status} {reason}{where}" + (f"; {advice}." if advice else ".")
    if isinstance(error, RelayUnreachable):
        text = str(error)
        if text.startswith("Cannot reach the relay"):
            return text[0].lower() + text[1:]
        return f"cannot reach the relay: {text}"
    if isinstance(error, (RelayError, ProtocolError)):
        return str(error)
    if isinstance(error, (twisted_error.ConnectError, twisted_error.DNSLookupError, twisted_error.TimeoutError)):
        return f"cannot reach the relay: {error.__class__.__name__}: {error}"
    return f"{error.__class__.__name__}: {error}"


def host_port(text: str, *, default_host: str | None = None, option: str = "--forward") -> tuple[str, int]:
    """``HOST:PORT`` (or ``[v6]:PORT``; ``PORT`` alone with ``default_host``) as a pair; usage error if not."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        if default_host is None:
            raise CliError(f"{option} {text!r} needs a host: write HOST:PORT, e.g. 127.0.0.1:5432.", 2)
        host = default_host
    # (isdigit alone takes '²' and other digits int() refuses)
    if not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise CliError(f"{option} {text!r} has no valid port: write [HOST:]PORT with PORT in 0-65535.", 2)
    if default_host is None and int(port) == 0:
        raise CliError(f"{option} {text!r}: port 0 cannot be connected to.", 2)
    return host, int(port)
