"""``txhyco up FILE``: every listener and connector of a TOML file, in one process.

What azbridge's configuration file and ``ngrok start --all`` do: ``[[listen]]``
entries (echo, ``forward``, ``http``) and ``[[connect]]`` entries (``forward``)
run side by side, each with its path and, if needed, its own relay
(:mod:`txhyco.cli.upfile` describes the file). One live panel shows them all
on a terminal; otherwise one log line per event on stderr, and with ``--json``
one JSON object per event on stdout, each naming its ``entry``.

SIGHUP reads the file again and applies the difference: entries that are new
start, entries that are gone stop, entries whose settings changed restart,
and the others are left alone (their connections are not touched). A file
that no longer reads is reported and changes nothing. An entry that cannot
start shows offline with the reason; the next SIGHUP tries it again.
SIGINT/SIGTERM stop everything and exit 0.
"""
from __future__ import annotations

import argparse
import sys

from .common import add_subcommand, paragraph, run_reactor

EPILOG = """\
examples:
  txhyco up tunnels.toml
      start every [[listen]] and [[connect]] entry of tunnels.toml.
  kill -HUP PID
      apply an edited tunnels.toml: only added, removed or changed entries move.

tunnels.toml:
  [[listen]]
  path = "web"
  http = "http://127.0.0.1:8080"
  [[listen]]
  path = "db"
  forward = "5432"
  [[connect]]
  path = "db"
  forward = "15432"

""" + paragraph(
    "Connection strings come from $HYCO_CONNECTION_STRING, or from the variable a file's or entry's "
    "connectionStringEnv names; keys never need to be in the file. An unknown key is an error naming "
    "the closest known one."
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_subcommand(
        subparsers,
        "up",
        help="run every listener and connector of a TOML file; SIGHUP reloads it",
        description="Run the listeners and connectors a TOML file describes, in one process.",
        epilog=EPILOG,
        run=run,
    )
    parser.add_argument("file", metavar="FILE", help="the TOML file of [[listen]] and [[connect]] entries")
    parser.add_argument("--log", action="store_true", help="log lines on stderr even on a terminal (no live panel)")
    from .common import add_proxy_options
    from .events import add_json_option

    add_proxy_options(parser)

    add_json_option(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from .upfile import load

    from .common import proxy_setting

    args.proxy_setting = proxy_setting(args)  # a usage error before anything starts
    entries = load(args.file)
    return run_reactor(lambda reactor: Up(reactor, args).main(entries))


class Running:
    """An entry started: its monitor, and how to stop it."""

    def __init__(self, entry, monitor) -> None:
        self.entry = entry
        self.monitor = monitor
        self.port = None
        self.failed = False

    def stop(self):
        from twisted.internet import defer

        port, self.port = self.port, None
        return defer.maybeDeferred(port.stopListening) if port is not None else defer.succeed(None)


class Up:
    def __init__(self, reactor, args) -> None:
        from twisted.internet import defer
        from twisted.logger import Logger

        from .status import MonitorGroup

        self.reactor = reactor
        self.args = args
        self.proxy = getattr(args, "proxy_setting", None)  # --proxy / --no-proxy; None: the environment
        self.json = bool(args.json)
        self.group = MonitorGroup()
        self.running: dict = {}
        self.lock = defer.DeferredLock()
        self.log = Logger(namespace="txhyco.up")

    def emit(self, event: str, **fields) -> None:
        if self.json:
            from .events import write_json, timestamp

            write_json({"event": event, "time": timestamp(), "command": "up", **fields})

    def say(self, line: str) -> None:
        if not self.json:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    # -- the whole run ------------------------------------------------------------------

    def main(self, entries):
        import signal

        from twisted.internet import defer

        from .status import start_display

        @defer.inlineCallbacks
        def go():
            start_display(self.reactor, self.group, plain=self.args.log or self.json)
            yield self.lock.run(self.apply, entries)
            signal.signal(signal.SIGHUP, lambda *_: self.reactor.callFromThread(self.reload))
            self.reactor.addSystemEventTrigger("before", "shutdown", self.stop_all)
            yield defer.Deferred()  # until SIGINT/SIGTERM

        return go()

    def reload(self) -> None:
        from .common import CliError
        from .upfile import load

        try:
            entries = load(self.args.file)
        except CliError as e:
            self.log.error("reload failed, nothing changed: {message}", message=e.message)
            self.emit("reload_failed", message=e.message)
            return
        self.lock.run(self.apply, entries)

    def stop_all(self):
        from twisted.internet import defer

        d = defer.gatherResults([self.stop_entry(key) for key in list(self.running)], consumeErrors=True)
        d.addBoth(lambda _: self.emit("stopped"))
        return d

    # -- applying a file ----------------------------------------------------------------

    def apply(self, entries):
        """Stop what is gone or changed, start what is new or changed; leave the rest."""
        from twisted.internet import defer

        gone = [k for k in self.running if k not in entries]
        changed = [k for k in self.running if k in entries and (entries[k] != self.running[k].entry or self.running[k].failed)]
        new = [k for k in entries if k not in self.running]
        kept = [k for k in self.running if k not in gone and k not in changed]

        @defer.inlineCallbacks
        def go():
            for key in gone + changed:
                yield self.stop_entry(key)
            # Side by side: one slow relay does not hold the other entries back.
            yield defer.gatherResults([self.start_entry(entries[key]) for key in changed + new])
            # An entry that could not start (offline, with its reason) is not running.
            failed = [k for k in changed + new if self.running[k].failed]
            started = [k for k in new if k not in failed]
            restarted = [k for k in changed if k not in failed]
            running = sum(not entry.failed for entry in self.running.values())
            names = lambda keys: [f"{k[0]} {k[1]}" for k in keys]  # noqa: E731
            self.log.info("applied {file}: {n} running ({summary})", file=self.args.file, n=running,
                          summary="; ".join(f"{what} {', '.join(names(keys))}" for what, keys in
                                            (("started", started), ("restarted", restarted), ("failed", failed),
                                             ("stopped", gone), ("kept", kept)) if keys))
            self.emit("applied", started=names(started), restarted=names(restarted), failed=names(failed),
                      stopped=names(gone), kept=names(kept))

        return go()

    def stop_entry(self, key):
        running = self.running.pop(key)
        self.group.monitors.pop(key, None)
        d = running.stop()
        d.addBoth(lambda _: running.monitor.notify("stopped"))
        return d

    def start_entry(self, entry):
        from twisted.internet import defer

        from .common import CliError, describe_relay_error
        from .events import event_writer
        from .status import OFFLINE, Monitor

        monitor = Monitor(f"{entry.kind} {entry.name}", namespace=f"txhyco.up.{entry.kind}.{entry.name}")
        if self.json:
            monitor.sink = event_writer(command="up", entry=entry.name, kind=entry.kind, path=entry.path)
        running = self.running[entry.key] = Running(entry, monitor)
        self.group.monitors[entry.key] = monitor

        @defer.inlineCallbacks
        def go():
            try:
                if entry.kind == "listen":
                    yield self._listen(entry, running)
                else:
                    yield self._connect(entry, running)
            except CliError as e:
                running.failed = True
                monitor.set_state(OFFLINE, e.message)
            except Exception as e:
                running.failed = True
                why = str(e) if getattr(e, "inspector_page", False) else describe_relay_error(e, f"the relay refused {entry.kind} {entry.path}")
                monitor.set_state(OFFLINE, why)

        return go()

    def _listen(self, entry, running):
        from functools import partial

        from twisted.internet import defer

        from txhyco.endpoint import HybridConnectionServerEndpoint
        from txhyco.listener.control import CONNECTING, ONLINE

        from .common import describe_relay_error
        from .listen import echo_factories, forward_factory, http_factory, http_target
        from .targets import parse_target
        from .upfile import hybrid_connection_of

        reactor, monitor = self.reactor, running.monitor
        hc = hybrid_connection_of(entry, self.proxy)
        if entry.echo:
            from txhyco.listener.http import serve_request
            from txhyco.listener.port import listen

            ws, site = echo_factories(reactor, monitor, hc)
            d = listen(reactor, ws.hybrid_connection, ws, keepalive=ws.keepalive,
                       on_request=partial(serve_request, reactor, hc, site))
            what = "echo"
        elif entry.forward is not None:
            target = parse_target(entry.forward, listening=False)
            if target.kind == "udp":
                from txhyco.listener.port import listen

                from .udp import DEFAULT_IDLE, udp_listener_factory

                ws = udp_listener_factory(reactor, monitor, hc, target, entry.udp_idle or DEFAULT_IDLE)
                d = listen(reactor, ws.hybrid_connection, ws, keepalive=ws.keepalive)
            else:
                factory = forward_factory(reactor, monitor, target)
                d = HybridConnectionServerEndpoint(reactor, hc, mode="stream").listen(factory)
            what = f"forwarding to {target.describe()}"
        else:
            from .upfile import inspect_options_of

            factory = http_factory(reactor, monitor, http_target(entry.http), entry.host_header, entry.upstream_ca_file)
            d = HybridConnectionServerEndpoint(reactor, hc, mode="http", inspect=inspect_options_of(entry)).listen(factory)
            what = f"forwarding to {entry.http}"
        monitor.detail = f"{hc.address} ({what})"

        @defer.inlineCallbacks
        def go():
            port = yield d
            if self.running.get(entry.key) is not running:  # removed by a reload meanwhile
                yield port.stopListening()
                return
            running.port = port
            inspector = getattr(port, "inspector", None)
            if inspector is not None:
                what_inspected = f"{what}; inspector at {inspector.url}"
            else:
                what_inspected = what
            def on_status(status, error) -> None:
                monitor.set_state(status, describe_relay_error(error) if error is not None and status != ONLINE else None)

            monitor.retry_source = lambda: port.next_retry_at
            port.add_status_observer(on_status)
            monitor.notify("started", address=str(hc.address), target=what,
                           **({"inspector": inspector.url} if inspector is not None else {}))
            monitor.set_state(ONLINE if port.status == ONLINE else CONNECTING)
            self.say(f"listen {entry.name}: listening on {hc.address} ({what_inspected})")

        return go()

    def _connect(self, entry, running):
        from twisted.internet import defer
        from twisted.internet.error import CannotListenError

        from .common import CliError
        from .connect import tunnel_factory
        from .status import LISTENING
        from .targets import describe_address, parse_target, server_endpoint
        from .upfile import hybrid_connection_of

        reactor, monitor = self.reactor, running.monitor
        hc = hybrid_connection_of(entry, self.proxy)
        target = parse_target(entry.forward, listening=True)
        factory = tunnel_factory(reactor, hc, monitor)

        @defer.inlineCallbacks
        def go():
            if target.kind == "udp":
                from .udp import DEFAULT_IDLE, bind_udp

                running.port = bind_udp(reactor, monitor, hc, target, entry.udp_idle or DEFAULT_IDLE)
                address = running.port.address
            else:
                try:
                    running.port = yield server_endpoint(reactor, target).listen(factory)
                except CannotListenError as e:
                    reason = getattr(e.socketError, "strerror", None) or str(e.socketError)
                    raise CliError(f"cannot listen on {target.describe()} ({reason})") from None
                address = describe_address(running.port.getHost())
            monitor.detail = f"{address} -> {hc.address}"
            monitor.notify("started", address=address, target=str(hc.address))
            monitor.set_state(LISTENING)
            self.say(f"connect {entry.name}: {address} -> {hc.address}")

        return go()
