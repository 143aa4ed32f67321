"""The exceptions txhyco's Twisted side raises, each with a sentence for the user.

Who caused the failure decides its type, as in the sans-IO core
(:mod:`txhyco.protocol.errors`):

- :class:`RelayRefused`: the relay (or, through it, a listener) answered an
  upgrade with an HTTP status: ``status`` and ``reason`` say which.
  ``RelayHandshakeError`` is its older name.
- :class:`RelayUnreachable`: no connection to the relay could be made;
  :class:`ProxyError` when the HTTP proxy on the way is why.
- :class:`RelayProtocolError`: the relay answered, but broke the protocol
  (a peer's fault: also a :class:`~txhyco.protocol.errors.RemoteProtocolError`).
- :class:`RelaySettingError`: the caller's settings for reaching the relay
  cannot be used (also a :class:`~txhyco.protocol.errors.LocalProtocolError`).
- :class:`RelayCredentialError`: an Entra ID credential could not get a token.

All of them are :class:`RelayError`; core errors are :class:`ProtocolError`.
"""
from __future__ import annotations

from txhyco.protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError

__all__ = [
    "LocalProtocolError", "ProtocolError", "ProxyError", "RelayError", "RelayHandshakeError", "RelayProtocolError",
    "RelayCredentialError", "RelayRefused", "RelaySettingError", "RelayUnreachable", "RemoteProtocolError",
]

_ADVICE = {
    401: "check the SAS key name and key (or the token, or the Entra ID credential) and the clock",
    403: ("the key's rule lacks the right needed here (Listen to listen, Send to send; for Entra ID, the "
          "Azure Relay Listener or Sender role), or a limit was reached"),
    404: "check the namespace and hybrid connection name",
    410: "the rendezvous address was already used or expired",
}


class RelayError(Exception):
    """Something went wrong talking to a relay."""


class RelayRefused(RelayError):
    """The relay refused a WebSocket upgrade with an HTTP status.

    :ivar status: the HTTP status code
    :ivar reason: the relay's reason phrase, verbatim
    """

    def __init__(self, status: int, reason: str, url: str = "") -> None:
        self.status = status
        self.reason = reason
        self.url = url
        advice = _ADVICE.get(status)
        if status == 404 and "listener" in reason.lower():  # a sender's "no listeners connected"
            advice = "start a listener on this path, or check that sender and listener use the same one"
        where = f" ({url})" if url else ""
        message = f"The relay answered {status} {reason}{where}"
        if advice:
            message += f"; {advice}"
        super().__init__(message + ".")


#: The name :class:`RelayRefused` had first; ``except RelayHandshakeError`` still catches refusals.
RelayHandshakeError = RelayRefused


class RelayUnreachable(RelayError):
    """No connection to the relay could be made (DNS, refused, TLS, timeout)."""


class ProxyError(RelayUnreachable):
    """The HTTP proxy on the way to the relay failed: unreachable, refused the tunnel, or closed.

    A kind of :class:`RelayUnreachable`, so a listener backs off and retries.

    :ivar proxy: the proxy, as ``http://host:port`` (never its credentials)
    :ivar status: the proxy's HTTP status for CONNECT (407, 403, 502...), or None
    """

    def __init__(self, message: str, proxy: str, status: int | None = None) -> None:
        super().__init__(message)
        self.proxy = proxy
        self.status = status


class RelayProtocolError(RelayError, RemoteProtocolError):
    """The relay answered in a way the protocol does not allow (a malformed handshake answer, say).

    ``status`` is 502: what a gateway answers for a broken upstream.
    """

    def __init__(self, message: str, status: int = 502) -> None:
        RemoteProtocolError.__init__(self, message, status)


class RelaySettingError(RelayError, LocalProtocolError):
    """A setting the caller gave for reaching the relay cannot be used (an unreadable CA file, say)."""


class RelayCredentialError(RelayError):
    """An Entra ID credential (azure-identity) could not get a token; the message says which and why.

    A listener treats it like an unreachable relay: it tries again with backoff.
    """
