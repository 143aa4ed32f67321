"""An Entra ID of the tests' own: signing keys they generate, tokens they mint, credentials with
azure-identity's ``get_token`` interface (sync and async), and relay configs that trust them."""
from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import namedtuple

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from txhyco.relay.config import parse_config

ISSUER = "https://login.microsoftonline.com/00000000-0000-0000-0000-00000000beef/v2.0"
AUDIENCE = "https://relay.azure.net"
SCOPE = "https://relay.azure.net/.default"

#: azure.core.credentials.AccessToken's shape, without needing azure-core.
AccessToken = namedtuple("AccessToken", ["token", "expires_on"])

_KEYS: dict = {}


def signing_key(kind: str = "RS256"):
    """One private key per kind for the whole run (RSA generation is slow)."""
    if kind not in _KEYS:
        _KEYS[kind] = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "RS256" else ec.generate_private_key(ec.SECP256R1())
    return _KEYS[kind]


def public_jwk(kind: str, kid: str) -> dict:
    algorithm = jwt.get_algorithm_by_name(kind)
    jwk = json.loads(algorithm.to_jwk(signing_key(kind).public_key()))
    jwk.update(kid=kid, use="sig", alg=kind)
    return jwk


def write_jwks(path, kinds=("RS256", "ES256")) -> str:
    path.write_text(json.dumps({"keys": [public_jwk(kind, f"test-{kind.lower()}") for kind in kinds]}))
    return str(path)


def mint(principal: str, *, lifetime: float = 3600, kind: str = "RS256", kid: str | None = None, issuer: str = ISSUER,
         audience: str = AUDIENCE, now: float | None = None, nbf: float | None = None, **extra) -> str:
    now = time.time() if now is None else now
    claims = {"iss": issuer, "aud": audience, "oid": principal, "iat": int(now), "exp": int(now + lifetime), **extra}
    if nbf is not None:
        claims["nbf"] = int(nbf)
    kid = f"test-{kind.lower()}" if kid is None else kid
    return jwt.encode(claims, signing_key(kind), algorithm=kind, headers={"kid": kid})


def relay_config(tmp_path, assignments, *, kinds=("RS256", "ES256"), leeway: float | None = None, extra: dict | None = None):
    """A relay config trusting the tests' keys, with ``assignments`` as (principal, role, scope) triples."""
    entra = {"issuer": ISSUER, "jwksFile": write_jwks(tmp_path / "jwks.json", kinds)}
    if leeway is not None:
        entra["leeway"] = leeway
    doc = {
        "entraId": entra,
        "roleAssignments": [{"principal": p, "role": r, "scope": s} for p, r, s in assignments],
        **(extra or {}),
    }
    return parse_config(doc)


class MintingCredential:
    """A TokenCredential: ``get_token(*scopes)`` -> AccessToken, minting a fresh token each call."""

    def __init__(self, principal: str | None = None, *, lifetime: float = 3600, kind: str = "RS256") -> None:
        self.principal = principal or str(uuid.uuid4())
        self.lifetime = lifetime
        self.kind = kind
        self.scopes: list = []
        self.threads: set = set()
        self.issued: list = []

    def get_token(self, *scopes, **kwargs):
        self.scopes.append(scopes)
        self.threads.add(threading.current_thread().name)
        now = time.time()
        token = mint(self.principal, lifetime=self.lifetime, kind=self.kind, now=now)
        self.issued.append(token)
        return AccessToken(token, int(now + self.lifetime))

    def close(self):
        self.closed_in = threading.current_thread().name


class AsyncMintingCredential(MintingCredential):
    """An AsyncTokenCredential: ``await get_token(*scopes)``; it needs a running asyncio loop, as azure.identity.aio's do."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.loops: set = set()

    async def get_token(self, *scopes, **kwargs):
        self.loops.add(id(asyncio.get_running_loop()))
        await asyncio.sleep(0.01)
        return MintingCredential.get_token(self, *scopes, **kwargs)

    async def close(self):
        self.loops.add(id(asyncio.get_running_loop()))
        self.closed_in = threading.current_thread().name
