"""The helpers users of Microsoft's Node modules know, in snake_case.

``create_relay_token`` here reads the clock for a default expiry (one hour,
like Node's); the sans-IO core version takes an absolute expiry.
"""
from __future__ import annotations

import time

from txhyco.protocol import sas
from txhyco.protocol.addresses import (
    append_relay_token,
    create_relay_base_uri,
    create_relay_http_uri,
    create_relay_listen_uri,
    create_relay_send_uri,
)

__all__ = [
    "append_relay_token",
    "create_relay_base_uri",
    "create_relay_http_uri",
    "create_relay_listen_uri",
    "create_relay_send_uri",
    "create_relay_token",
]


def create_relay_token(uri: str, key_name: str, key: str, expiry: int | None = None, *, lifetime: int = 3600) -> str:
    """A SAS token for ``uri`` as Node's ``createRelayToken`` makes it.

    :param expiry: absolute expiry (seconds since the epoch); by default
        ``lifetime`` seconds from now.
    """
    if expiry is None:
        expiry = int(time.time()) + lifetime
    return sas.create_relay_token(uri, key_name, key, expiry)
