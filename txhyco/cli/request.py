"""``txhyco request PATH [SUFFIX]``: one HTTP request through the relay, printed like ``curl -i``.

The request goes to the relay's HTTP address of the hybrid connection
(``https://NAMESPACE/PATH/SUFFIX``; Hybrid Connections protocol,
"HTTP request protocol") with the token in the ``ServiceBusAuthorization`` header, sent
with Twisted's ``Agent``.

Exit status 0 for any response from the listener, whatever its HTTP status
(as curl without ``-f``). Non-zero, with one sentence on stderr, when no
response came from a listener: the relay unreachable, or the relay itself
refusing the request (bad token 401, missing right 403, unknown hybrid
connection 404, no listener online 502, listener too slow 504). The relay's
own answers are told apart by their reason phrase (``... TrackingId:...``,
as the service writes it) and the absence of the ``Via`` header the relay
adds to every listener response.
"""
from __future__ import annotations

import argparse
import sys

from .common import CONNECTION_STRING_ENV, CliError, add_relay_options, add_subcommand, hybrid_connection, paragraph, run_reactor

EPILOG = f"""\
examples:
  export {CONNECTION_STRING_ENV}='Endpoint=sb://127.0.0.1:9090/;SharedAccessKeyName=...;SharedAccessKey=...;UseDevelopmentEmulator=true'
  txhyco request web
      GET the root of the listener on 'web'; status line, headers and body.
  txhyco request web /api/items?limit=5 --no-headers
      the body only.
  txhyco request web /api/items -X POST -H 'Content-Type: application/json' --data '{{"name": "x"}}'
  tar c . | txhyco request web /upload --data-file - -H 'Content-Type: application/x-tar'

""" + paragraph(
    "Exit status 0 for any HTTP status the listener answers; 1 (with one sentence on stderr) when no "
    "listener answered: the relay unreachable, a refused token (401/403), an unknown hybrid connection "
    "(404), no listener online (502) or no answer in time (504). The token never appears in the output."
)

#: Seconds to wait for the whole response (the relay gives a listener 60 s to answer).
DEFAULT_MAX_TIME = 90.0


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_subcommand(
        subparsers,
        "request",
        help="send one HTTP request through the relay and print the response",
        description="Send one HTTP request to a hybrid connection's listener and print the response like curl -i.",
        epilog=EPILOG,
        run=run,
    )
    add_relay_options(parser)
    parser.add_argument("suffix", metavar="SUFFIX", nargs="?", default="", help="path (and ?query) after the hybrid connection's, e.g. /index.html")
    parser.add_argument("-X", "--method", metavar="METHOD", help="HTTP method (default: GET, or POST with a body)")
    parser.add_argument("-H", "--header", metavar="'NAME: VALUE'", action="append", default=[], help="a request header (repeatable)")
    body = parser.add_mutually_exclusive_group()
    body.add_argument("--data", metavar="TEXT", help="request body (UTF-8 text)")
    body.add_argument("--data-file", metavar="FILE", help="request body from FILE ('-' for stdin)")
    parser.add_argument("--no-headers", action="store_true", help="print the body only")
    parser.add_argument("--max-time", metavar="SECONDS", type=float, default=DEFAULT_MAX_TIME,
                        help=f"give up after this many seconds (default: {DEFAULT_MAX_TIME:g})")
    from .events import add_json_option

    add_json_option(parser, "print one JSON object (status, headers, body size, body) instead of the response")
    return parser


def parse_headers(values: list[str]) -> list[tuple[bytes, bytes]]:
    """``-H 'Name: value'`` options as byte pairs; a usage error for a malformed one."""
    out = []
    for value in values:
        name, sep, text = value.partition(":")
        name = name.strip()
        if not sep or not name or any(c in name for c in " \t\r\n()<>@,;\\\"/[]?={}") or "\n" in text or "\r" in text:
            raise CliError(f"-H {value!r} is not a header: write it like -H 'Content-Type: application/json'.", 2)
        if name.lower() == "servicebusauthorization":
            raise CliError("-H ServiceBusAuthorization is set by txhyco request from the connection string.", 2)
        out.append((name.encode("latin-1"), text.strip().encode("utf-8")))
    return out


def read_body(args) -> bytes | None:
    if args.data is not None:
        return args.data.encode("utf-8")
    if args.data_file is None:
        return None
    try:
        if args.data_file == "-":
            return sys.stdin.buffer.read()
        with open(args.data_file, "rb") as f:
            return f.read()
    except OSError as e:
        raise CliError(f"cannot read --data-file {args.data_file}: {e.strerror}.") from None


def split_suffix(suffix: str) -> tuple[str, str]:
    path, _, query = suffix.partition("?")
    if any(c.isspace() for c in suffix) or "#" in suffix:
        raise CliError(f"SUFFIX {suffix!r} must be a URL path (and ?query) without spaces or '#'.", 2)
    return path, query


def is_relay_refusal(code: int, phrase: str, headers) -> bool:
    """Whether the relay answered instead of a listener (see the module doc)."""
    return code >= 400 and "TrackingId:" in phrase and not headers.hasHeader(b"via")


def format_head(version: tuple, code: int, phrase: str, headers) -> bytes:
    """``HTTP/1.1 200 OK`` and the header lines, CRLF-terminated, then the blank line (as curl -i)."""
    lines = [f"{version[0].decode('ascii')}/{version[1]}.{version[2]} {code} {phrase}".encode("latin-1")]
    for name, values in headers.getAllRawHeaders():
        for value in values:
            lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def run(args: argparse.Namespace) -> int:
    hc = hybrid_connection(args)
    headers = parse_headers(args.header)
    path, query = split_suffix(args.suffix)
    method = args.method or ("POST" if (args.data is not None or args.data_file is not None) else "GET")
    if not method.isalpha():
        raise CliError(f"-X {method!r} is not an HTTP method.", 2)
    if args.max_time <= 0:
        raise CliError("--max-time must be positive.", 2)
    body = read_body(args)
    return run_reactor(lambda reactor: send(reactor, hc, method.upper(), path, query, headers, body, args))


def send(reactor, hc, method: str, path: str, query: str, headers, body: bytes | None, args):
    from io import BytesIO

    from twisted.internet import defer
    from twisted.web.client import Agent, FileBodyProducer
    from twisted.web.http_headers import Headers

    from txhyco.errors import RelayError
    from txhyco.protocol.addresses import http_url
    from txhyco.protocol.errors import ProtocolError

    try:
        url = http_url(hc.namespace, hc.path, suffix=path, query=query)
    except ProtocolError as e:
        raise CliError(f"SUFFIX {args.suffix!r}: {e.message}", 2) from None

    endpoints = RelayEndpoints(reactor, hc)

    @defer.inlineCallbacks
    def go():
        try:
            token = yield hc.get_token(reactor)
        except RelayError as e:  # an Entra ID credential that got no token
            raise CliError(str(e)) from None
        request_headers = Headers({b"User-Agent": [b"txhyco-request"]})
        for name, value in headers:
            request_headers.addRawHeader(name, value)
        if token:
            request_headers.setRawHeaders(b"ServiceBusAuthorization", [token.encode("ascii")])
        producer = FileBodyProducer(BytesIO(body)) if body is not None else None
        agent = Agent.usingEndpointFactory(reactor, endpoints)
        d = agent.request(method.encode("ascii"), url.encode("ascii"), request_headers, producer)
        started = reactor.seconds()
        d.addTimeout(args.max_time, reactor)
        try:
            response = yield d
        except Exception as e:
            if not _timed_out(e):
                raise CliError(f"no response from {url}: {_why(e)}") from None
            raise CliError(f"no response from {url} within {args.max_time:g} seconds (see --max-time).") from None
        # Judged by its head alone: a refusal's body (however long) is not read.
        phrase = response.phrase.decode("utf-8", "replace")
        if is_relay_refusal(response.code, phrase, response.headers):
            sentence = phrase.split(" TrackingId:", 1)[0].strip().rstrip(".")
            raise CliError(f"the relay refused the request to {url}: {response.code} {sentence}; {_advice(response.code)}.")
        if getattr(args, "json", False):
            result = yield response_as_json(reactor, response, method, url, started, args.max_time)
            from .events import write_json

            write_json(result)
            return 0
        out = sys.stdout.buffer
        if not args.no_headers:
            out.write(format_head(response.version, response.code, phrase, response.headers))
        try:
            # --max-time covers the whole request, as curl's does: the body gets what is left.
            left = max(0.0, args.max_time - (reactor.seconds() - started))
            yield print_body(response, out).addTimeout(left, reactor)
        except defer.TimeoutError:
            raise CliError(f"the response from {url} did not end within {args.max_time:g} seconds (see --max-time).") from None
        except BrokenPipeError:
            raise
        except Exception as e:
            raise CliError(f"the response from {url} was cut short: {_why(e)}") from None
        return 0

    return go()


class RelayEndpoints:
    """The Agent's way to the relay: :func:`txhyco._twisted.connector.relay_endpoint`, as every leg goes
    (verified TLS, the hybrid connection's CA file and proxy)."""

    def __init__(self, reactor, hc) -> None:
        self.reactor = reactor
        self.hc = hc

    def endpointForURI(self, uri):
        from txhyco._twisted.connector import relay_endpoint

        return relay_endpoint(self.reactor, uri.host.decode("ascii"), uri.port, secure=uri.scheme == b"https",
                              ca_file=self.hc.ca_file, timeout=30, proxy=self.hc.proxy)


def response_as_json(reactor, response, method: str, url: str, started: float, max_time: float):
    """The ``request --json`` object: the response's head, and its body (text, else base64) read whole."""
    from io import BytesIO

    from twisted.internet import defer

    buffer = BytesIO()
    left = max(0.0, max_time - (reactor.seconds() - started))

    def failed(failure):
        if failure.check(defer.TimeoutError):
            raise CliError(f"the response from {url} did not end within {max_time:g} seconds (see --max-time).")
        raise CliError(f"the response from {url} was cut short: {_why(failure.value)}")

    d = print_body(response, buffer).addTimeout(left, reactor)
    d.addCallbacks(lambda _: _response_object(reactor, response, method, url, started, buffer.getvalue()), failed)
    return d


def _response_object(reactor, response, method: str, url: str, started: float, body: bytes) -> dict:
    import base64

    version = response.version
    result = {
        "event": "response",
        "method": method,
        "url": url,
        "status": response.code,
        "reason": response.phrase.decode("utf-8", "replace"),
        "http_version": f"{version[1]}.{version[2]}",
        "headers": [[name.decode("latin-1"), value.decode("latin-1")]
                    for name, values in response.headers.getAllRawHeaders() for value in values],
        "body_size": len(body),
        "seconds": round(reactor.seconds() - started, 3),
    }
    try:
        result["body"] = body.decode("utf-8")
    except UnicodeDecodeError:
        result["body_base64"] = base64.b64encode(body).decode("ascii")
    return result


def print_body(response, out):
    """Write ``response``'s body to ``out`` as it arrives (never all in memory); fires at its end.

    Like curl, and unlike ``readBody``: a huge or endless body from a broken
    relay or listener streams through instead of growing this process.
    """
    from twisted.internet import defer
    from twisted.internet.protocol import Protocol
    from twisted.web.client import ResponseDone
    from twisted.web.http import PotentialDataLoss

    done: defer.Deferred = defer.Deferred(lambda _: printer.transport.stopProducing())

    class Printer(Protocol):
        def dataReceived(self, data: bytes) -> None:
            try:
                out.write(data)
            except BrokenPipeError as e:  # our reader went away (`| head`): stop reading, exit quietly
                if not done.called:
                    done.errback(e)
                self.transport.stopProducing()

        def connectionLost(self, reason) -> None:
            if done.called:
                return
            try:
                out.flush()
            except BrokenPipeError as e:
                done.errback(e)
                return
            if reason.check(ResponseDone, PotentialDataLoss):  # ended, or ended by a close (HTTP/1.0 style)
                done.callback(None)
            else:
                done.errback(reason)

    printer = Printer()
    response.deliverBody(printer)
    return done


_ADVICE = {
    401: "check the connection string's key (or token) and the clock",
    403: "the key's rule lacks the Send right",
    404: "check the hybrid connection's name and the namespace",
    502: "no listener is online: start one (e.g. txhyco listen PATH --http URL)",
    503: "the relay is busy or shutting down; try again",
    504: "the listener did not answer in time",
}


def _advice(code: int) -> str:
    return _ADVICE.get(code, "the listener never saw the request")


def _timed_out(error: BaseException) -> bool:
    """Whether ``error`` is --max-time running out.

    The timeout cancels the Agent's request, which reports that not as a
    ``CancelledError`` (which ``addTimeout`` would turn into ``TimeoutError``)
    but as whatever it was doing: connecting, or waiting for the response.
    """
    from twisted.internet import defer, error as twisted_error

    reasons = getattr(error, "reasons", None) or []
    return (isinstance(error, (defer.TimeoutError, twisted_error.ConnectingCancelledError))
            or any(r.check(defer.CancelledError) for r in reasons))


def _why(error: BaseException) -> str:
    """One phrase for an Agent failure (ResponseNeverReceived and kin wrap the cause)."""
    from twisted.internet import error as twisted_error

    from txhyco._twisted.clienttls import tls_failure

    from txhyco.errors import RelayError

    reasons = getattr(error, "reasons", None)
    if reasons:
        error = reasons[0].value
    if isinstance(error, RelayError):  # a proxy's failure (ProxyError), a setting: already a sentence
        return str(error)
    tls = tls_failure(error)
    if tls:
        return tls + "."
    if isinstance(error, (twisted_error.ConnectError, twisted_error.DNSLookupError)):
        return f"cannot reach the relay ({error.__class__.__name__}: {' '.join(str(error).split()).rstrip('.')})."
    text = " ".join(str(error).split()).rstrip(".") or error.__class__.__name__  # Twisted's end with a full stop
    return f"{error.__class__.__name__}: {text}."
