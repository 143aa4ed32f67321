"""Who may listen and send: token lookup and verification for the relay
(Hybrid Connections protocol, "Request operation"; Microsoft's "Service Bus access
control with Shared Access Signatures").

Tokens are never logged: errors carry the reason, not the token.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Mapping

from txhyco.protocol.errors import RemoteProtocolError
from txhyco.protocol.sas import Rights, SasToken, is_sas_token, looks_like_jwt, verify_token

from .config import RelayConfig
from .entra import EntraToken
from .registry import Entity


def azure_reason(message: str, *, host: str, path: str, now: float, tracking_id: str | None = None) -> str:
    """A reason phrase shaped like the service's (Hybrid Connections protocol,
    "Listener control channel connection"), which clients surface verbatim."""
    tid = tracking_id or str(uuid.uuid4())
    stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%m/%d/%Y %H:%M:%S")
    return f"{message.rstrip()} TrackingId:{tid}_G0, SystemTracker:sb://{host}/{path}, Timestamp:{stamp}"


def host_only(host_header: str | None) -> str:
    """The host name of a Host header value, without port or IPv6 brackets."""
    if not host_header:
        return ""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def find_token(headers: Mapping[str, str], query_token: str | None, *, http: bool, consume_authorization: bool) -> str | None:
    """The token a request carries, in the order of Hybrid Connections protocol,
    "Request operation".

    ``headers`` must map lower-case names. ``Authorization`` counts only for
    HTTP senders whose hybrid connection requires client authorization.
    """
    token = headers.get("servicebusauthorization")
    if token:
        return token
    if query_token:
        return query_token
    if http and consume_authorization:
        return headers.get("authorization") or None
    return None


def check_token(
    config: RelayConfig,
    entity: Entity,
    token: str | None,
    *,
    host: str,
    required: Rights,
    now: float,
) -> SasToken | EntraToken:
    """Verify ``token`` for ``required`` rights on ``entity``, or raise RemoteProtocolError (401/403).

    A SAS token is checked against the rules; an Entra ID token (a JWT) against
    ``[entraId]`` and the role assignments (:mod:`txhyco.relay.entra`).
    """
    if not token:
        raise RemoteProtocolError(
            "The request is missing a token: send it in the ServiceBusAuthorization header "
            "or the sb-hc-token query parameter.",
            status=401,
        )
    if not is_sas_token(token) and looks_like_jwt(token):
        if config.entra is None:
            raise RemoteProtocolError(
                "This relay does not verify Entra ID tokens (its configuration has no [entraId] table); "
                "present a SAS token.",
                401,
            )
        verified = config.entra.verify(token, now=now)
        config.entra.authorize(verified, entity.name, required)
        return verified
    hosts = {host, *config.hosts} if host else None
    return verify_token(
        token,
        rules=config.rules_for(entity.config),
        hosts=hosts,
        entity_path=entity.name,
        required=required,
        now=now,
        grace=config.limits.token_grace,
    )


def grace_for(verified: SasToken | EntraToken, config: RelayConfig) -> float:
    """Seconds ``verified`` may be used past its expiry: ``[entraId] leeway`` for a JWT, ``tokenGrace`` for SAS."""
    return verified.grace if isinstance(verified, EntraToken) else config.limits.token_grace


class TokenCache:
    """Remembers tokens that passed :func:`check_token`, so a sender that presents
    the same token on every request (HTTP keep-alive, reconnects) is not HMAC'd
    each time. A hit still checks the expiry; only successes are kept, and the
    configuration (rules, keys) cannot change under a running relay.
    """

    def __init__(self, config: RelayConfig, size: int = 4096) -> None:
        self.config = config
        self.size = size
        self._verified: dict[tuple, SasToken] = {}

    def check(self, entity: Entity, token: str | None, *, host: str, required: Rights, now: float) -> SasToken | EntraToken:
        key = (token, entity.name, host, required)
        sas = self._verified.get(key) if token else None
        if sas is not None and sas.expiry >= now - grace_for(sas, self.config):
            return sas
        sas = check_token(self.config, entity, token, host=host, required=required, now=now)
        if len(self._verified) >= self.size:
            self._verified.pop(next(iter(self._verified)))
        self._verified[key] = sas
        return sas

