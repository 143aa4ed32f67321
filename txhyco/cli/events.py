"""``--json``: machine-readable output, one JSON object per line on stdout.

Long-running commands (``listen``, ``connect --forward``, ``up``) write one
object per event as it happens; ``request`` and ``token`` write one object
for their result. Every object has ``event`` (what happened) and ``time``
(UTC, ISO 8601 with milliseconds); the README's "Machine-readable output"
table lists the other fields. Human-readable log lines still go to stderr.
No object ever holds a key; only ``token --json`` holds a token (it is what
was asked for).
"""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import Any, Callable


def add_json_option(parser, what: str = "one JSON object per event on stdout (log lines stay on stderr)") -> None:
    parser.add_argument("--json", action="store_true", help=what)


def timestamp(wall: float | None = None) -> str:
    moment = datetime.now(timezone.utc) if wall is None else datetime.fromtimestamp(wall, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_json(obj: dict[str, Any], stream=None) -> None:
    """``obj`` as one line of JSON, flushed at once (a reader may be waiting for it)."""
    stream = sys.stdout if stream is None else stream
    stream.write(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n")
    stream.flush()


def event_writer(stream=None, **common: Any) -> Callable[..., None]:
    """A function ``emit(event, **fields)`` writing ``{"event", "time", **common, **fields}``."""

    def emit(event: str, **fields: Any) -> None:
        write_json({"event": event, "time": timestamp(), **common, **fields}, stream)

    return emit


def follow_monitor(monitor, emit: Callable[..., None]) -> None:
    """Send ``monitor``'s events (:class:`txhyco.cli.status.Monitor`) to ``emit`` as JSON events."""
    monitor.sink = emit


def monitor_events(args, monitor, **common: Any) -> Callable[..., None] | None:
    """With ``--json`` in ``args``: an ``emit`` that ``monitor``'s events also go to; else None."""
    if not getattr(args, "json", False):
        return None
    emit = event_writer(**common)
    follow_monitor(monitor, emit)
    return emit
