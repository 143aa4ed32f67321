"""``txhyco listen PATH``: a listener on a hybrid connection, until SIGINT/SIGTERM.

Three kinds, exactly one per run:

``--echo``
    WebSocket messages come back as they were sent (Autobahn through
    :class:`txhyco.websocket.RelayedServerFactory`); relayed HTTP requests are
    answered with what they carried (a small twisted.web resource).
``--forward [HOST:]PORT`` (or a Twisted client endpoint string)
    stream mode: each relayed connection becomes a TCP connection to
    HOST:PORT (127.0.0.1 unless HOST is given), or a connection to the
    endpoint (``unix:path=/run/app.sock``, ``tls:...``), bytes piped both
    ways with backpressure (azbridge's ``-R``). ``udp:HOST:PORT`` forwards
    UDP instead (:mod:`txhyco.cli.udp`).
``--http URL``
    http mode: each relayed HTTP request and each relayed WebSocket upgrade
    arrives as real HTTP/1.1 and is piped, as bytes, to a fresh connection to
    the web server at URL (``ngrok http``). The Host header is kept as the
    sender sent it (the relay's host name) unless ``--host-header`` says
    otherwise; ``X-Forwarded-Host/-Proto/-Prefix/-For`` tell the server where
    the request really came from.
"""
from __future__ import annotations

import argparse
import sys
from urllib.parse import urlsplit

from .common import (
    CONNECTION_STRING_ENV,
    CliError,
    add_relay_options,
    add_subcommand,
    check_ca_file_option,
    hybrid_connection,
    paragraph,
    run_reactor,
)

EPILOG = f"""\
examples:
  export {CONNECTION_STRING_ENV}='Endpoint=sb://127.0.0.1:9090/;SharedAccessKeyName=...;SharedAccessKey=...;UseDevelopmentEmulator=true'
  txhyco listen db --forward 127.0.0.1:5432
      expose a local TCP service (a database, SSH...); the other side runs
      'txhyco connect db --forward 15432'.
  txhyco listen web --http http://127.0.0.1:8080
      expose a local web server, WebSockets included:
      'txhyco request web /index.html' or a browser reaches it through the relay.
  txhyco listen web --http http://127.0.0.1:8080 --inspect
      the same, with a traffic inspector at http://127.0.0.1:4040/ (see, filter
      and replay the requests; WebSocket messages too).
  txhyco listen echo --echo
      a WebSocket echo service to try 'txhyco connect echo' against.

""" + paragraph(
    "With --http the web server sees the Host header the sender used (the relay's host name), like ngrok; "
    "--host-header rewrite sends URL's host instead, --host-header NAME sends NAME. A path in URL is put "
    "in front of every request's path. "
    "On a terminal a live panel shows the state, retries, connections and traffic; otherwise (or with --log) "
    "one log line per event goes to stderr. Tokens and keys are never shown. SIGINT/SIGTERM stop listening and exit 0."
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_subcommand(
        subparsers,
        "listen",
        help="listen on a hybrid connection: echo, forward to a TCP port, or expose a web server",
        description="Listen on a hybrid connection and serve what arrives: an echo, a local TCP service, or a local web server.",
        epilog=EPILOG,
        run=run,
    )
    add_relay_options(parser, path_optional=True)
    kind = parser.add_mutually_exclusive_group(required=True)
    kind.add_argument("--echo", action="store_true", help="echo WebSocket messages (and answer HTTP requests with what they carried)")
    kind.add_argument("--forward", metavar="[HOST:]PORT",
                      help="connect each relayed connection to this TCP service, or to a Twisted client endpoint "
                           "(unix:path=/run/app.sock, tls:HOST:PORT...); udp:HOST:PORT forwards UDP datagrams")
    kind.add_argument("--http", metavar="URL", help="forward relayed HTTP requests and WebSocket upgrades to this web server (http:// or https://)")
    parser.add_argument(
        "--host-header",
        metavar="rewrite|NAME",
        help="with --http: the Host header the web server sees (default: as sent, the relay's host name)",
    )
    parser.add_argument("--upstream-ca-file", metavar="PEM", help="with an https:// --http URL: trust this certificate for the web server")
    from txhyco.inspector.options import add_inspect_options

    add_inspect_options(parser)
    parser.add_argument("--log", action="store_true", help="log lines on stderr even on a terminal (no live panel)")
    from .events import add_json_option
    from .udp import add_idle_option

    add_idle_option(parser)
    add_json_option(parser)
    return parser


def http_target(url: str) -> tuple[bool, str, int, str, str]:
    """(tls, host, port, netloc, path prefix) of an ``--http`` URL; a usage error if it is not one."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1 or parts.query or parts.fragment:
        raise CliError(f"--http {url!r} is not a web server URL: write it like http://127.0.0.1:8080 (https:// for TLS).", 2)
    tls = parts.scheme == "https"
    return tls, parts.hostname, port or (443 if tls else 80), parts.netloc, parts.path.rstrip("/")


def run(args: argparse.Namespace) -> int:
    hc = hybrid_connection(args)
    if args.forward is None or not args.forward.strip().lower().startswith("udp:"):
        from .udp import refuse_idle_without_udp

        refuse_idle_without_udp(args)
    if args.host_header is not None and args.http is None:
        raise CliError("--host-header goes with --http.", 2)
    if args.upstream_ca_file is not None and args.http is None:
        raise CliError("--upstream-ca-file goes with --http.", 2)
    if args.upstream_ca_file is not None:
        check_ca_file_option(args.upstream_ca_file, "--upstream-ca-file")
    from txhyco.inspector.options import inspect_options_of

    args.inspect_options = inspect_options_of(args, CliError)
    if args.forward is not None:
        from .targets import parse_target

        target = parse_target(args.forward, listening=False)
        if target.kind == "udp":
            from .udp import idle_seconds

            idle_seconds(args)
            return run_reactor(lambda reactor: serve(reactor, args, hc, "udp", target))
        return run_reactor(lambda reactor: serve(reactor, args, hc, "forward", target))
    if args.http is not None:
        target = http_target(args.http)
        if args.host_header is not None and not args.host_header.strip():
            raise CliError("--host-header is empty: give 'rewrite' or a host name.", 2)
        return run_reactor(lambda reactor: serve(reactor, args, hc, "http", target))
    return run_reactor(lambda reactor: serve(reactor, args, hc, "echo", None))


# -- the three kinds -----------------------------------------------------------------


def forward_factory(reactor, monitor, target):
    """Stream mode: each relayed connection piped to a connection to ``target`` (a :class:`~.targets.Target`)."""
    from .pipe import Splice, SpliceFactory
    from .targets import client_endpoint

    endpoint = client_endpoint(reactor, target)
    where = target.describe()

    def describe(transport) -> str:
        return f"from {_peer(transport)} to {where}"

    def far_failed(splice, failure) -> None:
        splice.why = f"cannot connect to {where}: {_reason(failure)}"
        monitor.error(f"connection #{splice.number}: {splice.why}")
        close_with_reason(splice.near.transport, splice.why)

    return SpliceFactory(lambda: Splice(monitor, endpoint.connect, describe=describe, far_failed=far_failed))


def http_factory(reactor, monitor, target, host_header: str | None, ca_file: str | None):
    """Http mode: each relayed request or upgrade piped to a fresh connection to the web server."""
    from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

    from txhyco.listener.httplinks import UpstreamLinks

    from .pipe import Splice, SpliceFactory

    tls, host, port, netloc, prefix = target
    endpoint = HostnameEndpoint(reactor, host, port, timeout=10)
    if tls:
        from txhyco._twisted.clienttls import client_tls_options
        from txhyco.errors import RelayError

        try:
            endpoint = wrapClientTLS(client_tls_options(host, ca_file), endpoint)
        except RelayError as e:
            raise CliError(str(e).replace("CA file", "--upstream-ca-file"), 2) from None
    new_host = None
    if host_header == "rewrite":
        new_host = netloc
    elif host_header is not None:
        new_host = host_header.strip()
    where = f"{'https' if tls else 'http'}://{netloc}"

    class WebSplice(Splice):
        def __init__(self) -> None:
            super().__init__(monitor, endpoint.connect, describe=self._describe, far_failed=self._unreachable)
            self.head = b""
            self.head_done = False
            self.request_line = ""
            self.upgrade = False
            self.status_seen = False
            self.sent_host = ""  # the Host header the web server was sent
            self.response_head = b""  # the answer's head, while links in it may need rewriting

        def _describe(self, transport) -> str:
            return f"from {_peer(transport)} to {where}"

        def to_far(self, data: bytes) -> bytes:
            if self.head_done:
                return data
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return b""
            head, rest = self.head[:end], self.head[end:]
            self.head, self.head_done = b"", True
            return rewrite_head(head, prefix=prefix, host=new_host, splice=self) + rest

        def to_near(self, data: bytes) -> bytes:
            if self.response_head is not None and (prefix or new_host is not None):
                # A path in URL, or another Host: the server's own links point there (see UpstreamLinks).
                self.response_head += data
                end = self.response_head.find(b"\r\n\r\n")
                if end < 0:
                    return b""
                head, rest = self.response_head[:end], self.response_head[end:]
                self.response_head = None
                data = UpstreamLinks(prefix, self.sent_host).response_head(head) + rest
            if not self.status_seen:
                self.status_seen = True
                line = data.split(b"\r\n", 1)[0].decode("latin-1", "replace")
                status = line.split(" ", 1)[1] if " " in line else line
                kind = " (WebSocket)" if self.upgrade else ""
                monitor.request(f"#{self.number} {self.request_line}{kind} -> {status}")
            return data

        def _unreachable(self, splice, failure) -> None:
            self.why = f"cannot connect to {where}: {_reason(failure)}"
            monitor.error(f"connection #{self.number}: {self.why}")
            body = f"txhyco listen: the web server at {where} cannot be reached ({_reason(failure)}).\n".encode()
            self.near.transport.write(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
            )
            self.near.transport.loseConnection()

    return SpliceFactory(WebSplice)


def rewrite_head(head: bytes, *, prefix: str, host: str | None, splice=None) -> bytes:
    """The request head (no final blank line) with ``prefix`` before the target and Host replaced."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) == 3:
        method, target, version = parts
        if prefix and target.startswith(b"/"):
            target = prefix.encode("latin-1") + target
        lines[0] = b" ".join((method, target, version))
        if splice is not None:
            splice.request_line = f"{method.decode('latin-1')} {target.decode('latin-1')}"
    out = [lines[0]]
    for line in lines[1:]:
        name = line.split(b":", 1)[0].strip().lower()
        if name == b"host" and host is not None:
            line = b"Host: " + host.encode("latin-1")
        if name == b"host" and splice is not None:
            splice.sent_host = line.split(b":", 1)[1].strip().decode("latin-1")
        elif name == b"upgrade" and splice is not None:
            splice.upgrade = True
        out.append(line)
    return b"\r\n".join(out)


def echo_factories(reactor, monitor, hc):
    """(WebSocket factory, HTTP site) for ``--echo``."""
    from autobahn.twisted.websocket import WebSocketServerProtocol
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    from txhyco.websocket import RelayedServerFactory

    class Echo(WebSocketServerProtocol):
        def onConnect(self, request):
            peer = request.peer.split(":", 1)[1] if request.peer.startswith("tcp") else request.peer
            self.number = monitor.opened(f"WebSocket from {peer} to {request.path or '/'}")
            self.started = reactor.seconds()
            self.counts = [0, 0]

        def onMessage(self, payload, isBinary):
            self.counts[0] += len(payload)
            if self.state != self.STATE_OPEN:
                # Closing (the listener is stopping): no more echoes.
                monitor.count(len(payload), 0)
                return
            self.counts[1] += len(payload)
            monitor.count(len(payload), len(payload))
            self.sendMessage(payload, isBinary)

        def onClose(self, wasClean, code, reason):
            if getattr(self, "number", None):
                monitor.closed(self.number, bytes_in=self.counts[0], bytes_out=self.counts[1],
                               seconds=reactor.seconds() - self.started, why=f"close {code}" if code else "")
                self.number = None

    class EchoRequest(Resource):
        isLeaf = True

        def render(self, request):
            body = request.content.read()
            target = request.uri.decode("latin-1")
            monitor.request(f"{request.method.decode('latin-1')} {target} -> 200 OK")
            monitor.count(len(body), len(body))
            request.setHeader(b"X-Echo-Method", request.method)
            request.setHeader(b"X-Echo-Path", request.uri)
            if body:
                request.setHeader(b"Content-Type", request.getHeader(b"content-type") or b"application/octet-stream")
                return body
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return (
                f"txhyco listen --echo on {hc.path}: {request.method.decode('latin-1')} {target}\n"
                "Send a body and it comes back; open a WebSocket and every message comes back.\n"
            ).encode("utf-8")

    ws = RelayedServerFactory(namespace=hc.namespace, path=hc.path, token_provider=hc.token_provider, ca_file=hc.ca_file,
                              proxy=hc.proxy)
    ws.protocol = Echo
    ws.setProtocolOptions(maxMessagePayloadSize=0, maxFramePayloadSize=0)
    site = Site(EchoRequest())
    site.noisy = False
    return ws, site


# -- running ----------------------------------------------------------------------


def serve(reactor, args, hc, kind: str, target):
    from twisted.internet import defer

    from txhyco.listener.control import CONNECTING, OFFLINE, ONLINE

    from .common import describe_relay_error
    from .status import Monitor, start_display

    what = {
        "echo": "echo",
        "forward": f"forwarding to {target.describe()}" if kind == "forward" else "",
        "http": f"forwarding to {args.http}",
        "udp": f"forwarding to {target.describe()}" if kind == "udp" else "",
    }[kind]
    monitor = Monitor(f"txhyco listen {hc.path}", namespace="txhyco.listen")
    monitor.detail = f"{hc.address} ({what})"
    from .events import monitor_events

    emit = monitor_events(args, monitor, command="listen", path=hc.path)

    @defer.inlineCallbacks
    def go():
        if kind == "echo":
            from functools import partial

            from txhyco.listener.http import serve_request
            from txhyco.listener.port import listen

            ws, site = echo_factories(reactor, monitor, hc)
            d = listen(reactor, ws.hybrid_connection, ws, keepalive=ws.keepalive,
                       on_request=partial(serve_request, reactor, hc, site))
        elif kind == "udp":
            from txhyco.listener.port import listen

            from .udp import idle_seconds, udp_listener_factory

            ws = udp_listener_factory(reactor, monitor, hc, target, idle_seconds(args))
            d = listen(reactor, ws.hybrid_connection, ws, keepalive=ws.keepalive)
        else:
            from txhyco.endpoint import HybridConnectionServerEndpoint

            if kind == "forward":
                factory, mode = forward_factory(reactor, monitor, target), "stream"
            else:
                factory, mode = http_factory(reactor, monitor, target, args.host_header, args.upstream_ca_file), "http"
            d = HybridConnectionServerEndpoint(reactor, hc, mode=mode, inspect=args.inspect_options).listen(factory)
        try:
            port = yield d
        except Exception as e:
            if getattr(e, "inspector_page", False):
                raise CliError(str(e)) from None
            raise CliError(describe_relay_error(e, f"the relay refused to let {hc.path} listen")) from None
        inspector = getattr(port, "inspector", None)

        finished: defer.Deferred = defer.Deferred()
        stopping = []

        def on_status(status, error) -> None:
            text = describe_relay_error(error) if error is not None and status != ONLINE else None
            monitor.set_state(status, text)
            if status == OFFLINE and not stopping and not finished.called:
                # The listener gave up (the relay says the hybrid connection is gone).
                finished.errback(CliError(f"stopped listening: {text or 'the control channel closed'}"))

        monitor.retry_source = lambda: port.next_retry_at
        port.add_status_observer(on_status)

        def stop():
            stopping.append(True)
            d = defer.maybeDeferred(port.stopListening)
            if emit is not None:
                d.addBoth(lambda result: (emit("stopped"), result)[1])
            return d

        reactor.addSystemEventTrigger("before", "shutdown", stop)
        start_display(reactor, monitor, plain=args.log or emit is not None)
        if emit is not None:
            emit("started", address=str(hc.address), mode=kind, target=what,
                 **({"inspector": inspector.url} if inspector is not None else {}))
        monitor.set_state(ONLINE if port.status == ONLINE else CONNECTING)
        if emit is None:
            sys.stdout.write(f"listening on {hc.address} ({what})\n")
            if inspector is not None:
                sys.stdout.write(f"inspector at {inspector.url}\n")
            sys.stdout.flush()
        yield finished

    return go()


def close_with_reason(transport, why: str) -> None:
    """Close a relayed connection, telling the sender why (in the WebSocket Close) where it can be told."""
    tell = getattr(transport, "loseConnectionWithReason", None)
    if tell is not None:
        tell(why)
    else:
        transport.loseConnection()


def _peer(transport) -> str:
    peer = transport.getPeer()
    host, port = getattr(peer, "host", None), getattr(peer, "port", None)
    if host is not None:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(peer).split(":", 1)[-1] if str(peer).startswith("tcp") else str(peer)


def _reason(failure) -> str:
    value = failure.value
    message = " ".join(str(value).split()) or value.__class__.__name__
    return message.rstrip(".")
