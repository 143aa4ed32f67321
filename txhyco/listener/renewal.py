"""Renewing a control channel's token before it expires (Hybrid Connections protocol,
"Listener token renewal"; README, "Compared with Microsoft's clients" and
"Staying up")."""
from __future__ import annotations

from typing import Callable

from twisted.internet import defer
from twisted.logger import Logger

from txhyco.protocol.tokens import renewal_time

log = Logger()

#: Seconds before another try when the token provider failed.
RETRY_AFTER = 30.0
#: Seconds before asking again when the provider gave the token the channel
#: already has (azure-identity credentials hand out a cached token until
#: shortly before it expires).
SAME_TOKEN_RETRY = 10.0


class TokenRenewal:
    """Fetches a fresh token (from any token provider, async ones included) and sends it as ``renewToken``.

    ``send(token)`` puts the ``renewToken`` on the channel, or returns False
    if the channel is down: the next connection presents a token of its own.
    """

    def __init__(self, reactor, hc, send: Callable[[str], bool]) -> None:
        self.reactor = reactor
        self.hc = hc
        self._send = send
        self._token: str | None = None
        self._token_time = 0.0
        self._call = None

    def connected(self, token: str | None) -> None:
        """The channel presents ``token`` from now on."""
        self._token, self._token_time = token, self.reactor.seconds()

    def schedule(self) -> None:
        """Renew the current token in time (nothing to do for a token without an expiry)."""
        self.cancel()
        self._schedule_at(renewal_time(self._token, self._token_time, self._expiry(self._token)) if self._token else None)

    def _schedule_at(self, when: float | None, earliest: float = 1.0) -> None:
        if when is None:
            return
        self._call = self.reactor.callLater(max(earliest, when - self.reactor.seconds()), self._renew)

    def _expiry(self, token: str) -> float | None:
        token_expiry = getattr(self.hc, "token_expiry", None)
        return token_expiry(token) if token_expiry is not None else None

    def cancel(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    @defer.inlineCallbacks
    def _renew(self):
        self._call = None
        try:
            token = yield self.hc.get_token(self.reactor)
        except Exception as e:
            log.warn("token renewal failed: {error}; retrying in {s:g} s", error=str(e), s=RETRY_AFTER)
            self._call = self.reactor.callLater(RETRY_AFTER, self._renew)
            return
        if token and token == self._token:
            # Nothing new to send: ask again later, still before it expires.
            self._token_time = self.reactor.seconds()
            self._schedule_at(renewal_time(token, self._token_time, self._expiry(token)), SAME_TOKEN_RETRY)
            return
        if not token or not self._send(token):
            return
        self.connected(token)
        self.schedule()
