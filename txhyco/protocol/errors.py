"""The sans-IO core's error types: who broke the rules decides the type.

As in h11, :class:`LocalProtocolError` means the caller gave the core
something it cannot accept (a bad connection string, argument or message to
send); :class:`RemoteProtocolError` means a peer sent something that breaks
the protocol (a malformed command, a forged token, a bad request target).
Both are :class:`ProtocolError`, so ``except ProtocolError`` catches either.
"""


class ProtocolError(ValueError):
    """Input that the Hybrid Connections protocol core cannot accept.

    Every parser and verifier in :mod:`txhyco.protocol` raises this, as one
    of its two subtypes, for bad input, with a message that says what was
    wrong and, where a user can act on it, how to fix it.

    :ivar status: the HTTP status a relay should answer with when this error
        comes from a peer's input: 400 for malformed input, 401 for a missing,
        malformed, forged or expired token, 403 for a token without the needed
        right, 404 for an unknown entity.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class LocalProtocolError(ProtocolError):
    """The caller gave the core something invalid: fix the call, not the peer."""


class RemoteProtocolError(ProtocolError):
    """A peer (relay, listener or sender) sent something that breaks the protocol."""
