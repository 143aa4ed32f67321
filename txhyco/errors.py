"""The exceptions txhyco's Twisted side raises, each with a sentence for the user."""
from __future__ import annotations

from txhyco.protocol.errors import ProtocolError

__all__ = ["ProtocolError", "RelayError", "RelayHandshakeError", "RelayUnreachable"]

_ADVICE = {
    401: "check the SAS key name and key (or the token) and the clock",
    403: "the key's rule lacks the right needed here (Listen to listen, Send to send), or a limit was reached",
    404: "check the namespace and hybrid connection name",
    410: "the rendezvous address was already used or expired",
}


class RelayError(Exception):
    """Something went wrong talking to a relay."""


class RelayHandshakeError(RelayError):
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


class RelayUnreachable(RelayError):
    """No connection to the relay could be made (DNS, refused, TLS, timeout)."""
