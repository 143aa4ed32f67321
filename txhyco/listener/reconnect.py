"""When a listener's control channel tries again: backoff with jitter, reset by a stable spell online."""
from __future__ import annotations

import random
from typing import Callable

#: Reconnect delays in seconds (README, "Compared with Microsoft's clients"), the last
#: one repeating.
BACKOFF = (0, 1, 2, 5, 10, 30)
#: A control channel online this long counts as stable: the next loss starts
#: the backoff over. One that a relay drops sooner keeps backing off (a relay
#: that accepts and closes at once must not get a reconnect storm).
STABLE_AFTER = 30.0


class ReconnectSchedule:
    """Schedules the next connection attempt after a loss or a failed attempt.

    Delays follow ``backoff``, each varied by up to ``jitter`` (a fraction)
    either way so that listeners dropped together do not return together.
    """

    def __init__(self, reactor, backoff=BACKOFF, jitter: float = 0.25, stable_after: float = STABLE_AFTER) -> None:
        self.reactor = reactor
        self.backoff = tuple(backoff)
        self.jitter = jitter
        self.stable_after = stable_after
        self._attempt = 0
        self._online_since: float | None = None
        self._call = None

    def online(self) -> None:
        """The channel came online: a loss after ``stable_after`` seconds starts the backoff over."""
        self._online_since = self.reactor.seconds()

    def schedule(self, attempt: Callable[[], None]) -> float:
        """Call ``attempt`` after the next delay of the backoff; returns that delay in seconds."""
        since, self._online_since = self._online_since, None
        if since is not None and self.reactor.seconds() - since >= self.stable_after:
            self._attempt = 0  # it was up long enough: start the backoff over
        delay = self.backoff[min(self._attempt, len(self.backoff) - 1)]
        self._attempt += 1
        delay = max(0.0, delay * (1 + random.uniform(-self.jitter, self.jitter)))
        self._call = self.reactor.callLater(delay, self._fire, attempt)
        return delay

    def _fire(self, attempt: Callable[[], None]) -> None:
        self._call = None
        attempt()

    @property
    def next_at(self) -> float | None:
        """When (reactor time) the scheduled attempt starts, while one is scheduled."""
        call = self._call
        return call.getTime() if call is not None and call.active() else None

    def cancel(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()
