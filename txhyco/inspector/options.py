"""Where an inspector's page listens and how much it keeps, as the command line, ``txhyco up``
and the ``hyco:`` endpoint give them (no reactor, no twisted.web: parsed at startup)."""
from __future__ import annotations

from dataclasses import dataclass

from txhyco.inspector.capture import DEFAULT_BODY_CAP, DEFAULT_LIMIT

#: The page's default endpoint: loopback only, as ngrok's inspector.
DEFAULT_ENDPOINT = "tcp:4040:interface=127.0.0.1"
#: The most exchanges an inspector may keep, and the largest body cap (a bound on its memory).
MAX_LIMIT = 100_000
MAX_BODY_CAP = 64 * 1024 * 1024


class InspectOptionError(ValueError):
    """An inspect setting that cannot be used; the message says why."""


@dataclass(frozen=True)
class InspectOptions:
    """An inspector's page endpoint and caps."""

    endpoint: str = DEFAULT_ENDPOINT
    limit: int = DEFAULT_LIMIT
    body_cap: int = DEFAULT_BODY_CAP


def inspect_endpoint(value: str, what: str = "inspect") -> str | None:
    """The server endpoint string for an inspect value, or None for "no".

    ``yes`` (or an empty value on the command line) is the default
    endpoint; a port number is that port on 127.0.0.1; anything else is a
    Twisted server endpoint string (``tcp:4041:interface=::1``, ``unix:...``).
    """
    text = value.strip()
    lowered = text.lower()
    if lowered in ("", "yes", "true", "on", "1"):
        return DEFAULT_ENDPOINT
    if lowered in ("no", "false", "off", "0"):
        return None
    if text.isdigit():
        port = int(text)
        if not 0 < port < 65536:
            raise InspectOptionError(f"{what}: port {text} is not between 1 and 65535")
        return f"tcp:{port}:interface=127.0.0.1"
    if ":" not in text:
        raise InspectOptionError(f"{what}={value!r} is not yes, no, a port or a server endpoint string (tcp:4040:interface=127.0.0.1)")
    return text


def whole_number(value: str, what: str, low: int, high: int) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise InspectOptionError(f"{what}={value!r} is not a whole number") from None
    if not low <= number <= high:
        raise InspectOptionError(f"{what}={value!r} must be between {low} and {high}")
    return number


def add_inspect_options(parser) -> None:
    """``--inspect [ENDPOINT]``, ``--inspect-keep N``, ``--inspect-body-cap BYTES`` (with ``--http``)."""
    parser.add_argument(
        "--inspect", nargs="?", const=DEFAULT_ENDPOINT, metavar="ENDPOINT",
        help=f"with --http: serve a traffic inspector page (default {DEFAULT_ENDPOINT}; a port number or a "
             "Twisted server endpoint string)")
    parser.add_argument("--inspect-keep", type=int, metavar="N",
                        help=f"with --inspect: the exchanges kept (default {DEFAULT_LIMIT})")
    parser.add_argument("--inspect-body-cap", type=int, metavar="BYTES",
                        help=f"with --inspect: bytes kept of each body (default {DEFAULT_BODY_CAP}; the rest is counted)")


def inspect_options_of(args, error) -> InspectOptions | None:
    """The :class:`InspectOptions` the parsed ``args`` ask for, or None; ``error(message, 2)`` is raised for a usage error."""
    if args.inspect is None:
        if args.inspect_keep is not None or args.inspect_body_cap is not None:
            raise error("--inspect-keep and --inspect-body-cap go with --inspect.", 2)
        return None
    if getattr(args, "http", None) is None:
        raise error("--inspect goes with --http.", 2)
    try:
        endpoint = inspect_endpoint(args.inspect, "--inspect")
        if endpoint is None:
            return None
        limit = DEFAULT_LIMIT if args.inspect_keep is None else whole_number(str(args.inspect_keep), "--inspect-keep", 1, MAX_LIMIT)
        cap = DEFAULT_BODY_CAP if args.inspect_body_cap is None else whole_number(
            str(args.inspect_body_cap), "--inspect-body-cap", 0, MAX_BODY_CAP)
    except InspectOptionError as e:
        raise error(f"{e}.", 2) from None
    return InspectOptions(endpoint, limit, cap)
