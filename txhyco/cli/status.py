"""Live status of a long-running command (``listen``, ``connect --forward``).

A :class:`Monitor` counts what happens (state, connections, bytes, requests)
and emits one twisted.logger event per happening. Where it shows:

* on a terminal, a ``rich`` panel redrawn twice a second (state, last error,
  retry countdown, active connections, bytes/s, requests/s), with the events
  printed above it;
* otherwise plain log lines on stderr, one per event, for files and journald.

Nothing here sees a token or key: events carry addresses, counts and error
sentences only.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable

from twisted.logger import Logger

#: States shown: a listener's control channel, or a ``connect --forward`` port.
CONNECTING, ONLINE, OFFLINE, LISTENING = "connecting", "online", "offline", "listening"


@dataclass(frozen=True)
class StatusSnapshot:
    """What the panel shows at one moment (rates are per second over the last sample)."""

    title: str
    state: str
    detail: str = ""
    last_error: str | None = None
    retry_in: float | None = None
    active: int = 0
    total: int = 0
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    bytes_in_rate: float = 0.0
    bytes_out_rate: float = 0.0
    requests_rate: float = 0.0
    uptime: float = 0.0


class Monitor:
    """Counters and events of one command; ``snapshot()`` for the panel."""

    def __init__(self, title: str, *, namespace: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.title = title
        self.log = Logger(namespace=namespace)
        self.clock = clock
        self.state = CONNECTING
        self.detail = ""
        self.last_error: str | None = None
        #: returns the absolute clock time of the next retry, or None
        self.retry_source: Callable[[], float | None] = lambda: None
        self.active = 0
        self.total = 0
        self.requests = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self._started = clock()
        self._sample = (self._started, 0, 0, 0)
        self._rates = (0.0, 0.0, 0.0)
        #: called as ``sink(event, **fields)`` for each event (``--json``: txhyco.cli.events)
        self.sink: Callable[..., None] | None = None

    def notify(self, event: str, **fields) -> None:
        """Tell the sink (``--json``) about ``event``; fields that are None are left out."""
        if self.sink is not None:
            self.sink(event, **{k: v for k, v in fields.items() if v is not None})

    # -- events --------------------------------------------------------------

    def set_state(self, state: str, error: str | None = None, detail: str | None = None) -> None:
        changed = state != self.state or (error is not None and error != self.last_error)
        self.state = state
        if detail is not None:
            self.detail = detail
        if error is not None:
            self.last_error = error
        if changed:
            self.notify(state, error=error, detail=self.detail or None)
            if error:
                self.log.info("status {state}: {error}", state=state, error=error)
            else:
                self.log.info("status {state}{where}", state=state, where=f" ({self.detail})" if self.detail else "")

    def error(self, message: str) -> None:
        """A failure that is not a state change (one connection's tunnel refused, say)."""
        self.last_error = message
        self.notify("error", message=message)
        self.log.warn("{message}", message=message)

    def opened(self, description: str) -> int:
        """A connection began; returns its number for :meth:`closed`."""
        self.active += 1
        self.total += 1
        number = self.total
        self.notify("opened", connection=number, description=description)
        self.log.info("connection #{number} opened: {description}", number=number, description=description)
        return number

    def closed(self, number: int, *, bytes_in: int, bytes_out: int, seconds: float, why: str = "") -> None:
        self.active = max(0, self.active - 1)
        self.notify("closed", connection=number, seconds=round(seconds, 3), bytes_in=bytes_in, bytes_out=bytes_out,
                   reason=why or None)
        self.log.info(
            "connection #{number} closed after {seconds:.1f} s: {bytes_in} bytes in, {bytes_out} bytes out{why}",
            number=number, seconds=seconds, bytes_in=bytes_in, bytes_out=bytes_out, why=f" ({why})" if why else "",
        )

    def request(self, summary: str) -> None:
        self.requests += 1
        self.notify("request", summary=summary)
        self.log.info("request {summary}", summary=summary)

    def count(self, inbound: int = 0, outbound: int = 0) -> None:
        self.bytes_in += inbound
        self.bytes_out += outbound

    # -- the panel -------------------------------------------------------------

    def sample(self) -> None:
        """Update the rates from the counters since the previous sample."""
        now = self.clock()
        then, b_in, b_out, reqs = self._sample
        elapsed = now - then
        if elapsed <= 0:
            return
        self._rates = ((self.bytes_in - b_in) / elapsed, (self.bytes_out - b_out) / elapsed, (self.requests - reqs) / elapsed)
        self._sample = (now, self.bytes_in, self.bytes_out, self.requests)

    def snapshot(self, wall: float | None = None) -> StatusSnapshot:
        retry_at = self.retry_source() if self.state == CONNECTING else None
        now = time.time() if wall is None else wall
        return StatusSnapshot(
            title=self.title,
            state=self.state,
            detail=self.detail,
            last_error=self.last_error,
            retry_in=None if retry_at is None else max(0.0, retry_at - now),
            active=self.active,
            total=self.total,
            requests=self.requests,
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            bytes_in_rate=self._rates[0],
            bytes_out_rate=self._rates[1],
            requests_rate=self._rates[2],
            uptime=self.clock() - self._started,
        )


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


_STYLE = {ONLINE: "bold green", LISTENING: "bold green", CONNECTING: "bold yellow", OFFLINE: "bold red"}


def render_status(snap: StatusSnapshot):
    """The rich panel for ``snap`` (a pure function of it, so tests can render it to text)."""
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim", justify="right")
    table.add_column()
    state = Text(snap.state, style=_STYLE.get(snap.state, "bold"))
    if snap.detail:
        state.append(f"  {snap.detail}", style="")
    table.add_row("state", state)
    if snap.retry_in is not None:
        table.add_row("retry", Text(f"in {snap.retry_in:.0f} s", style="yellow"))
    if snap.last_error:
        table.add_row("last error", Text(snap.last_error, style="red"))
    table.add_row("connections", f"{snap.active} active, {snap.total} total")
    table.add_row(
        "traffic",
        f"in {human_bytes(snap.bytes_in_rate)}/s, out {human_bytes(snap.bytes_out_rate)}/s "
        f"(total {human_bytes(snap.bytes_in)} in, {human_bytes(snap.bytes_out)} out)",
    )
    table.add_row("requests", f"{snap.requests_rate:.1f}/s ({snap.requests} total)")
    table.add_row("uptime", f"{snap.uptime:.0f} s")
    return Panel(table, title=snap.title, title_align="left", subtitle="Ctrl-C stops", subtitle_align="right")


def use_live_display(stream=None, *, plain: bool = False) -> bool:
    """Whether to draw the rich panel: only on a terminal, and not when ``--log`` asks for lines."""
    if plain:
        return False
    return _is_terminal(sys.stderr if stream is None else stream)


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class LiveDisplay:
    """The rich panel on stderr, redrawn from the reactor; log events printed above it."""

    def __init__(self, reactor, monitor: Monitor, *, interval: float = 0.5) -> None:
        from rich.console import Console
        from rich.live import Live

        self.reactor = reactor
        self.monitor = monitor
        self.console = Console(stderr=True)
        # A line the command prints on stdout (``listening on ...``) while the
        # panel is up must go above it through rich, or the panel's redraw
        # misses a line and leaves a stale frame behind; only when stdout is
        # this terminal too, so a piped stdout stays plain.
        self.live = Live(
            _render(monitor), console=self.console, auto_refresh=False,
            redirect_stdout=_is_terminal(sys.stdout), redirect_stderr=False, transient=False,
        )
        self.interval = interval
        self._loop = None
        self._ticks = 0

    def start(self) -> None:
        from twisted.internet.task import LoopingCall
        from twisted.logger import eventAsText, globalLogBeginner

        def observer(event) -> None:
            text = eventAsText(event, includeTimestamp=True, includeSystem=False)
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

        globalLogBeginner.beginLoggingTo([_at_least_info(observer)], redirectStandardIO=False)
        self.live.start()
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self.reactor
        self._loop.start(self.interval)
        self.reactor.addSystemEventTrigger("after", "shutdown", self.stop)

    def _tick(self) -> None:
        self._ticks += 1
        if self._ticks % max(1, round(1 / self.interval)) == 0:
            self.monitor.sample()
        self.live.update(_render(self.monitor), refresh=True)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self.live.update(_render(self.monitor), refresh=True)
        self.live.stop()


def _render(monitor):
    render = getattr(monitor, "render", None)
    return render() if render is not None else render_status(monitor.snapshot())


class MonitorGroup:
    """Several monitors shown as one panel each, stacked (``txhyco up``); entries come and go."""

    def __init__(self) -> None:
        self.monitors: dict[object, Monitor] = {}

    def sample(self) -> None:
        for monitor in list(self.monitors.values()):
            monitor.sample()

    def render(self):
        from rich.console import Group
        from rich.text import Text

        panels = [render_status(m.snapshot()) for m in list(self.monitors.values())]
        return Group(*panels) if panels else Text("no entries running", style="dim")


_NOISE = frozenset({"Starting factory {factory!r}", "Stopping factory {factory!r}"})


def _not_noise(event):
    """Twisted's per-connection factory start/stop lines (and its shutdown line) say nothing to a user here."""
    from twisted.logger import PredicateResult

    if event.get("log_format") in _NOISE:
        return PredicateResult.no
    text = event.get("log_text") or ""
    if " starting on " in text or (text.startswith("(") and " Closed)" in text) or text == "Main loop terminated.":
        return PredicateResult.no
    return PredicateResult.maybe


def _at_least_info(observer):
    from twisted.logger import FilteringLogObserver, LogLevel, LogLevelFilterPredicate

    from .common import library_lines_hidden

    return FilteringLogObserver(
        observer, [LogLevelFilterPredicate(defaultLogLevel=LogLevel.info), _not_noise, library_lines_hidden]
    )


def start_display(reactor, monitor: Monitor, *, plain: bool = False) -> None:
    """The panel on a terminal, else log lines on stderr (see the module doc)."""
    if use_live_display(plain=plain):
        LiveDisplay(reactor, monitor).start()
    else:
        from twisted.logger import globalLogBeginner, textFileLogObserver

        globalLogBeginner.beginLoggingTo([_at_least_info(textFileLogObserver(sys.stderr))], redirectStandardIO=False)
