"""``txhyco connect PATH``: a sender, interactively (like wscat) or as a local port (``--forward``).

Interactive: each line on stdin goes out as a text message (``--binary``: a
binary one); each message received is written to stdout followed by a
newline. At end of input, while fewer messages have come back than were
sent, it waits for them (at most ``--wait`` seconds, or until the other side
closes), then closes the WebSocket with 1000 and exits 0; a close from the
other side exits 0 with its code and reason on stderr.

``--forward [HOST:]PORT`` listens on a local TCP port (127.0.0.1 unless HOST
is given; port 0 picks a free one), or on any Twisted server endpoint string
(``unix:/tmp/db.sock``), and tunnels each connection through the relay to a
``txhyco listen PATH --forward`` on the other side (azbridge's ``-L``).
``udp:[HOST:]PORT`` forwards UDP instead (:mod:`txhyco.cli.udp`). The bound
address is the first line on stdout.
"""
from __future__ import annotations

import argparse
import sys
import threading

from .common import CONNECTION_STRING_ENV, CliError, add_relay_options, add_subcommand, hybrid_connection, paragraph, run_reactor

EPILOG = f"""\
examples:
  export {CONNECTION_STRING_ENV}='Endpoint=sb://127.0.0.1:9090/;SharedAccessKeyName=...;SharedAccessKey=...;UseDevelopmentEmulator=true'
  txhyco connect echo
      type lines; each is sent as a message, replies are printed. Ctrl-D closes.
  printf 'one\\ntwo\\n' | txhyco connect echo
      send two messages, print the replies, close.
  txhyco connect db --forward 15432
      tunnel 127.0.0.1:15432 to 'txhyco listen db --forward HOST:PORT' on the
      other side; then e.g. psql -h 127.0.0.1 -p 15432.
  txhyco connect db --forward 0.0.0.0:0
      any interface, a free port: the first line on stdout is the address.

""" + paragraph(
    "With --forward, a live panel shows connections and traffic on a terminal; otherwise (or with --log) "
    "one log line per event goes to stderr. A tunnel the relay refuses (no listener: 404) closes that one "
    "local connection and is logged. Tokens and keys are never shown."
)


#: seconds ``connect`` waits at end of input for replies still due
DEFAULT_WAIT = 2.0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86400 or value != value:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 86400")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_subcommand(
        subparsers,
        "connect",
        help="connect to a hybrid connection: an interactive WebSocket, or a local port tunnelled through the relay",
        description="Connect to a hybrid connection as a sender: a WebSocket session on stdin/stdout, or a local TCP port (--forward).",
        epilog=EPILOG,
        run=run,
    )
    add_relay_options(parser, path_optional=True)
    parser.add_argument("--forward", metavar="[HOST:]PORT",
                        help="listen on this local TCP port (or Twisted server endpoint, e.g. unix:/tmp/db.sock; "
                             "udp:[HOST:]PORT for UDP) and tunnel each connection through the relay")
    parser.add_argument("--suffix", metavar="PATH", default="", help="interactive: a path after the hybrid connection's, seen by the listener (e.g. /room)")
    parser.add_argument("--binary", action="store_true", help="interactive: send lines as binary messages")
    parser.add_argument(
        "--wait",
        metavar="SECONDS",
        type=_seconds,
        default=DEFAULT_WAIT,
        help=f"interactive: at end of input, wait this long at most for replies still due before closing (default: {DEFAULT_WAIT:g})",
    )
    parser.add_argument("--log", action="store_true", help="--forward: log lines on stderr even on a terminal (no live panel)")
    from .events import add_json_option
    from .udp import add_idle_option

    add_idle_option(parser)
    add_json_option(parser, "--forward: one JSON object per event on stdout (log lines stay on stderr)")
    return parser


def run(args: argparse.Namespace) -> int:
    hc = hybrid_connection(args)
    if args.forward is None or not args.forward.strip().lower().startswith("udp:"):
        from .udp import refuse_idle_without_udp

        refuse_idle_without_udp(args)
    if args.forward is None and args.json:
        raise CliError("--json goes with --forward (the interactive session prints messages as they are).", 2)
    if args.forward is not None:
        from .targets import parse_target

        if args.suffix or args.binary or args.wait != DEFAULT_WAIT:
            raise CliError("--suffix, --binary and --wait are for the interactive session, not --forward.", 2)

        target = parse_target(args.forward, listening=True)
        if target.kind == "udp":
            from .udp import connect_udp

            return run_reactor(lambda reactor: connect_udp(reactor, args, hc, target))
        return run_reactor(lambda reactor: forward(reactor, args, hc, target))
    return run_reactor(lambda reactor: interactive(reactor, args, hc))


# -- interactive ----------------------------------------------------------------------


def _read_stdin(reactor, deliver) -> None:
    """Read stdin in a daemon thread (portable, blocking, never stalls the reactor)."""

    def pump() -> None:
        # A reader of our own, not sys.stdin: at exit the interpreter closes
        # sys.stdin, and if this thread is blocked in its readline (holding
        # its lock) that is a fatal error, not a clean exit.
        stream = open(sys.stdin.fileno(), "rb", closefd=False)
        while True:
            try:
                line = stream.readline()
            except (OSError, ValueError):
                line = b""
            reactor.callFromThread(deliver, line)
            if not line:
                return

    threading.Thread(target=pump, name="stdin", daemon=True).start()


def interactive(reactor, args, hc):
    from autobahn.twisted.websocket import WebSocketClientProtocol
    from twisted.internet import defer

    from txhyco._twisted.handshake import KEEPALIVE
    from txhyco.websocket import RelayedClientFactory

    from .common import describe_relay_error

    done: defer.Deferred = defer.Deferred()
    out = sys.stdout.buffer

    class Session(WebSocketClientProtocol):
        closing = False
        sent = 0
        received = 0
        #: fires (with None) once as many messages came back as were sent
        caught_up: defer.Deferred | None = None

        # Each message is printed as it arrives, then its newline: a peer's
        # huge (or endless) message is never held whole in memory.

        def onMessageFrameData(self, payload):
            if not self.failedByMe:
                out.write(payload)

        def onMessageFrameEnd(self):
            out.flush()

        def onMessageEnd(self):
            out.write(b"\n")
            out.flush()
            self.received += 1
            if self.caught_up is not None and self.received >= self.sent and not self.caught_up.called:
                self.caught_up.callback(None)

        def onClose(self, wasClean, code, reason):
            if self.caught_up is not None and not self.caught_up.called:
                self.caught_up.callback(None)
            if done.called or not self.is_open.called:
                return
            if self.closing:
                done.callback(0)
            elif code is not None and code != 1006:
                sys.stderr.write(f"txhyco connect: closed by the other side: {code}{' ' + reason if reason else ''}\n")
                sys.stderr.flush()
                done.callback(0)
            else:
                done.errback(CliError(f"the connection was lost ({reason or 'no close frame'})."))

    factory = RelayedClientFactory(namespace=hc.namespace, path=hc.path, token_provider=hc.token_provider,
                                   ca_file=hc.ca_file, proxy=hc.proxy, suffix=args.suffix, reactor=reactor)
    factory.protocol = Session
    factory.setProtocolOptions(maxMessagePayloadSize=0, maxFramePayloadSize=0,
                               autoPingInterval=KEEPALIVE, autoPingTimeout=0)  # as stream legs (txhyco._twisted.streamleg)

    @defer.inlineCallbacks
    def go():
        try:
            proto = yield factory.connect()
        except Exception as e:
            raise CliError(describe_relay_error(e, f"the relay refused the connection to {hc.path}")) from None
        if sys.stdin.isatty():
            sys.stderr.write(f"connected to {hc.address}; type lines to send them, Ctrl-D closes.\n")
            sys.stderr.flush()

        def close_when_answered() -> None:
            """End of input: give replies still due up to --wait seconds (or the peer's close), then close."""
            due = proto.sent - proto.received
            if due <= 0:
                close()
                return
            proto.caught_up = defer.Deferred()
            proto.caught_up.addTimeout(args.wait, reactor)

            def waited(result) -> None:
                missing = proto.sent - proto.received
                if missing > 0 and proto.state == proto.STATE_OPEN:
                    sys.stderr.write(
                        f"txhyco connect: end of input: {missing} of {proto.sent} messages got no reply within "
                        f"{args.wait:g} s; closing (--wait SECONDS waits longer).\n"
                    )
                    sys.stderr.flush()
                close()

            proto.caught_up.addBoth(waited)

        def close() -> None:
            if not done.called and proto.state == proto.STATE_OPEN:
                proto.closing = True
                proto.sendClose(1000)

        def deliver(line: bytes) -> None:
            if done.called or proto.state != proto.STATE_OPEN:
                return
            if not line:
                close_when_answered()
                return
            proto.sent += 1
            if line.endswith(b"\n"):
                line = line[:-1]
                if line.endswith(b"\r"):
                    line = line[:-1]
            if args.binary:
                proto.sendMessage(line, isBinary=True)
            else:
                proto.sendMessage(line.decode("utf-8", "replace").encode("utf-8"), isBinary=False)

        _read_stdin(reactor, deliver)

        def interrupted():
            if not done.called and proto.state == proto.STATE_OPEN:
                proto.closing = True
                proto.sendClose(1000)

        reactor.addSystemEventTrigger("before", "shutdown", interrupted)
        result = yield done
        return result

    return go()


# -- --forward ----------------------------------------------------------------------------


def forward(reactor, args, hc, target):
    from twisted.internet import defer
    from twisted.internet.error import CannotListenError

    from .status import LISTENING, Monitor, start_display
    from .targets import describe_address, server_endpoint

    monitor = Monitor(f"txhyco connect {hc.path} --forward", namespace="txhyco.connect")
    from .events import monitor_events

    emit = monitor_events(args, monitor, command="connect", path=hc.path)
    factory = tunnel_factory(reactor, hc, monitor)

    @defer.inlineCallbacks
    def go():
        try:
            listening = yield server_endpoint(reactor, target).listen(factory)
        except CannotListenError as e:
            reason = getattr(e.socketError, "strerror", None) or str(e.socketError)
            raise CliError(f"cannot listen on {target.describe()} ({reason}); choose another port (0 picks a free one).") from None
        address = describe_address(listening.getHost())
        monitor.detail = f"{address} -> {hc.address}"

        reactor.addSystemEventTrigger("before", "shutdown", listening.stopListening)
        if emit is None:
            sys.stdout.write(address + "\n")
            sys.stdout.flush()
        else:
            emit("started", address=address, target=str(hc.address))
            reactor.addSystemEventTrigger("before", "shutdown", emit, "stopped")
        start_display(reactor, monitor, plain=args.log or emit is not None)
        monitor.set_state(LISTENING)
        yield defer.Deferred()  # until SIGINT/SIGTERM

    return go()


def tunnel_factory(reactor, hc, monitor):
    """A factory for local connections, each spliced to a new stream through the relay to ``hc``."""
    from txhyco.endpoint import HybridConnectionClientEndpoint

    from .common import describe_relay_error
    from .pipe import Splice, SpliceFactory
    from .targets import describe_address

    tunnel = HybridConnectionClientEndpoint(reactor, hc)

    def describe(transport) -> str:
        return f"from {describe_address(transport.getPeer())} through {hc.address}"

    def far_failed(splice, failure) -> None:
        splice.why = describe_relay_error(failure.value, "the relay refused the tunnel")
        monitor.error(f"connection #{splice.number}: {splice.why}")
        splice.near.transport.loseConnection()

    return SpliceFactory(lambda: Splice(monitor, tunnel.connect, describe=describe, far_failed=far_failed))
