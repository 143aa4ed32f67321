"""txhyco: Azure Relay Hybrid Connections for Twisted and Autobahn.

The public API is the handful of names below; modules behind them are
implementation. The sans-IO protocol core is :mod:`txhyco.protocol`, the local
relay :mod:`txhyco.relay`, and an in-process relay for tests
:mod:`txhyco.testing`.
"""
from .helpers import (
    append_relay_token,
    create_relay_base_uri,
    create_relay_http_uri,
    create_relay_listen_uri,
    create_relay_send_uri,
    create_relay_token,
)
from .protocol import (
    CallableTokenProvider,
    ConnectionString,
    Namespace,
    ProtocolError,
    Rights,
    SasKeyTokenProvider,
    SasRule,
    StaticTokenProvider,
    TokenProvider,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "CallableTokenProvider",
    "ConnectionString",
    "Namespace",
    "ProtocolError",
    "Rights",
    "SasKeyTokenProvider",
    "SasRule",
    "StaticTokenProvider",
    "TokenProvider",
    "append_relay_token",
    "create_relay_base_uri",
    "create_relay_http_uri",
    "create_relay_listen_uri",
    "create_relay_send_uri",
    "create_relay_token",
]
