"""The sans-IO core's one error type."""


class ProtocolError(ValueError):
    """Input that the Hybrid Connections protocol core cannot accept.

    Every parser and verifier in :mod:`txhyco.protocol` raises this (and only
    this) for bad input, with a message that says what was wrong and, where a
    user can act on it, how to fix it.

    :ivar status: the HTTP status a relay should answer with when this error
        comes from a peer's input: 400 for malformed input, 401 for a missing,
        malformed, forged or expired token, 403 for a token without the needed
        right, 404 for an unknown entity.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
