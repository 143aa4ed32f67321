"""Token providers: where a listener or sender gets the token for an audience.

No clock reads: ``now`` is passed in, so the Twisted glue (which owns the
reactor's clock) decides when to mint and when to renew (README,
"Compared with Microsoft's clients" and "Staying up"). A provider may return a string or
an awaitable of one (Entra ID sources are asynchronous); the glue awaits it.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from .errors import LocalProtocolError
from .sas import dotnet_audience, sign_token, token_expiry

__all__ = [
    "TokenProvider",
    "StaticTokenProvider",
    "SasKeyTokenProvider",
    "CallableTokenProvider",
    "renewal_time",
    "MAX_KEY_LENGTH",
    "RENEW_FRACTION",
    "RENEW_EARLIEST_FRACTION",
    "RENEW_MARGIN",
]

#: .NET and Java refuse SAS key names and keys longer than this.
MAX_KEY_LENGTH = 256
#: Renew after this fraction of a token's lifetime (README, "Staying up").
RENEW_FRACTION = 0.85
#: ... and never later than this many seconds before ``se`` (README, "Staying up") ...
RENEW_MARGIN = 60.0
#: ... but, for a token too short-lived for that margin, not before this
#: fraction of its lifetime: one renewal per lifetime, whatever the lifetime
#: (a 20 s token renewed "60 s before expiry" was renewed every second).
RENEW_EARLIEST_FRACTION = 0.5


@runtime_checkable
class TokenProvider(Protocol):
    """Anything that can produce a token for an audience URI at time ``now``."""

    def get_token(self, audience: str, now: float) -> str | Awaitable[str]:
        ...


class StaticTokenProvider:
    """Always the same token (e.g. a connection string's ``SharedAccessSignature``); never renewed."""

    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        if not isinstance(token, str) or not token.strip():
            raise LocalProtocolError("A static token must be a non-empty string.")
        self._token = token.strip()

    def get_token(self, audience: str, now: float) -> str:
        return self._token

    def __repr__(self) -> str:
        return "StaticTokenProvider(token=<redacted>)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StaticTokenProvider) and other._token == self._token

    def __hash__(self) -> int:
        return hash((StaticTokenProvider, self._token))


def _check_key_part(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise LocalProtocolError(f"The SAS {what} must be a non-empty string.")
    if len(value) > MAX_KEY_LENGTH:
        raise LocalProtocolError(f"The SAS {what} is longer than {MAX_KEY_LENGTH} characters.")
    return value


#: A SAS token is reused for this fraction of its lifetime (see SasKeyTokenProvider.get_token).
_REUSE_FRACTION = 0.1
#: At most this many audiences' recent tokens are kept per provider.
_REUSE_AUDIENCES = 64


class SasKeyTokenProvider:
    """Mints SAS tokens from a rule name and key, like .NET's SharedAccessSignatureTokenProvider.

    The audience is normalised the .NET way (``http://host/path/``; README, "Tokens"),
    which the real service and our relay both accept.
    """

    __slots__ = ("key_name", "_key", "lifetime", "_recent")

    def __init__(self, key_name: str, key: str, lifetime: float = 3600) -> None:
        self.key_name = _check_key_part(key_name, "key name")
        self._key = _check_key_part(key, "key")
        if isinstance(lifetime, bool) or not isinstance(lifetime, (int, float)) or not math.isfinite(lifetime) or lifetime <= 0:
            raise LocalProtocolError(f"A token lifetime must be a positive number of seconds, not {lifetime!r}.")
        self.lifetime = float(lifetime)
        #: audience -> (when signed, token): signing (HMAC, quoting) is most of
        #: what a sender's connection costs before its first byte, and a loop
        #: of connections asks for the same audience again and again.
        self._recent: dict[str, tuple[float, str]] = {}

    def get_token(self, audience: str, now: float) -> str:
        """A token for ``audience`` valid for ``lifetime`` seconds from ``now``.

        A token signed in the last tenth of ``lifetime`` is handed out again,
        so every token given has about nine tenths of its lifetime left or
        more (its expiry is a whole second, as SAS tokens write it).
        """
        recent = self._recent.get(audience)
        if recent is not None and recent[0] <= now < recent[0] + self.lifetime * _REUSE_FRACTION:
            return recent[1]
        token = sign_token(dotnet_audience(audience), self.key_name, self._key, int(now + self.lifetime))
        if len(self._recent) >= _REUSE_AUDIENCES:
            self._recent.clear()
        self._recent[audience] = (now, token)
        return token

    def __repr__(self) -> str:
        return f"SasKeyTokenProvider(key_name={self.key_name!r}, key=<redacted>, lifetime={self.lifetime!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SasKeyTokenProvider)
            and (other.key_name, other._key, other.lifetime) == (self.key_name, self._key, self.lifetime)
        )

    def __hash__(self) -> int:
        return hash((SasKeyTokenProvider, self.key_name, self._key, self.lifetime))


class CallableTokenProvider:
    """Wraps ``func(audience) -> str | Awaitable[str]`` (e.g. an Entra ID credential)."""

    __slots__ = ("_func",)

    def __init__(self, func: Callable[[str], str | Awaitable[str]]) -> None:
        if not callable(func):
            raise LocalProtocolError("CallableTokenProvider needs a callable taking the audience URI.")
        self._func = func

    def get_token(self, audience: str, now: float) -> str | Awaitable[str]:
        result = self._func(audience)
        if isinstance(result, str) or inspect.isawaitable(result):
            return result
        raise LocalProtocolError(
            f"The token function returned {type(result).__name__}; it must return a string or an awaitable."
        )

    def __repr__(self) -> str:
        name = getattr(self._func, "__qualname__", None) or type(self._func).__name__
        return f"CallableTokenProvider({name})"


def renewal_time(token: str, issued_at: float, expiry: float | None = None) -> float | None:
    """When to renew ``token`` issued at ``issued_at``; None if its expiry is unknown.

    ``expiry`` is the token's expiry when its source says it (an Entra ID
    credential's ``expires_on``); otherwise it is read from the token (SAS ``se``,
    a JWT's ``exp``).

    At 85 % of the lifetime, never later than ``se - 60 s`` (README,
    "Compared with Microsoft's clients": better than the official clients, which renew
    exactly at expiry), but never before half the lifetime (so a token living under two
    minutes is renewed once, halfway), and never before ``issued_at`` (a token already
    expired is renewed now).
    """
    if expiry is None:
        expiry = token_expiry(token)
    if expiry is None:
        return None
    lifetime = expiry - issued_at
    when = min(issued_at + RENEW_FRACTION * lifetime, expiry - RENEW_MARGIN)
    when = max(when, issued_at + RENEW_EARLIEST_FRACTION * lifetime)
    return float(max(when, issued_at))
