"""The sans-IO core of txhyco: the Hybrid Connections protocol as pure logic.

Nothing in this package imports Twisted or Autobahn, opens sockets or reads
the clock; times are passed in. Bad input raises :class:`ProtocolError`, as
:class:`LocalProtocolError` (the caller's) or :class:`RemoteProtocolError` (a
peer's), whose ``status`` says how a relay should answer.
"""
from .addresses import (
    DEFAULT_DOMAIN,
    Namespace,
    RelayTarget,
    connect_url,
    encode_entity_path,
    entity_path_candidates,
    http_url,
    listen_url,
    parse_relay_target,
    query_value,
    reject_parameters,
    reject_url,
    rendezvous_url,
    strip_reserved_query,
)
from .channel import BodyData, BodyEnded, BodyStarted, ChannelReader, CommandReceived
from .connection_string import ConnectionString
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .http import CONTROL_CHANNEL_BODY_LIMIT, ResponseBuffer
from .messages import (
    MAX_COMMAND_SIZE,
    Accept,
    Command,
    Headers,
    RemoteEndpoint,
    RenewToken,
    Request,
    Response,
    parse_command,
    serialize_command,
)
from .sas import (
    Rights,
    SasRule,
    SasToken,
    create_relay_token,
    dotnet_audience,
    is_expired,
    node_audience,
    sign_token,
    token_expiry,
    verify_token,
)
from .tokens import CallableTokenProvider, SasKeyTokenProvider, StaticTokenProvider, TokenProvider, renewal_time

__all__ = [
    "Accept", "BodyData", "BodyEnded", "BodyStarted", "CONTROL_CHANNEL_BODY_LIMIT", "CallableTokenProvider",
    "ChannelReader", "Command", "CommandReceived", "ConnectionString", "DEFAULT_DOMAIN", "Headers",
    "LocalProtocolError", "MAX_COMMAND_SIZE", "Namespace", "ProtocolError", "RemoteProtocolError", "RelayTarget", "RemoteEndpoint", "RenewToken", "Request",
    "Response", "ResponseBuffer", "Rights", "SasKeyTokenProvider", "SasRule", "SasToken", "StaticTokenProvider",
    "TokenProvider", "connect_url", "create_relay_token", "dotnet_audience",
    "encode_entity_path", "entity_path_candidates", "http_url", "is_expired", "listen_url", "node_audience",
    "parse_command", "parse_relay_target", "query_value", "reject_parameters", "reject_url", "renewal_time",
    "rendezvous_url", "serialize_command", "sign_token", "strip_reserved_query", "token_expiry", "verify_token",
]
