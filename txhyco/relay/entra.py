"""Entra ID (Azure AD) access tokens, verified offline: signing keys, claims, role assignments.

Azure Relay accepts an Entra ID access token (a JWT) wherever it accepts a SAS
token, and authorizes its principal by Azure role assignments (Microsoft's
"Azure Relay authentication and authorization" and "Authenticate a managed
identity with Microsoft Entra ID to access Azure Relay resources"). The local
relay does the same without a network: the ``[entraId]`` table of its TOML
names the issuer, the audience and a file of signing keys (a JWKS, or PEM
public keys or certificates), and ``[[roleAssignments]]`` give principals
(the token's ``oid``) the built-in roles Owner, Listener or Sender on one
hybrid connection or on all (``*``).

Verification uses PyJWT (with cryptography): only RS256 and ES256 are
allowed, each only with a key of its own kind (RFC 8725, "JSON Web Token
Best Current Practices", section 3.1: the algorithm is never taken from the
token alone); ``exp`` and ``nbf`` get ``leeway`` seconds; ``iss`` and ``aud``
must match. Every failure is a 401, a missing role a 403; messages never
repeat the token.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from txhyco._suggest import shown, unknown_name
from txhyco.protocol.errors import LocalProtocolError, RemoteProtocolError
from txhyco.protocol.sas import Rights

from .schema import Invalid, Setting, Table, seconds, text

#: What Azure Relay's access tokens are issued for (the scope is this + "/.default").
RELAY_AUDIENCE = "https://relay.azure.net"
#: Algorithms a token may be signed with; anything else (``none``, HS256...) is refused.
ALGORITHMS = ("RS256", "ES256")
#: Seconds of clock skew allowed on ``exp`` and ``nbf`` unless ``leeway`` says otherwise.
DEFAULT_LEEWAY = 60.0
#: A key file larger than this is not a key file.
MAX_KEY_FILE = 1024 * 1024
INSTALL_HINT = "pip install 'txhyco[azure]'"
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]{1,40})-----\r?\n[A-Za-z0-9+/=\r\n ]*?-----END \1-----")

#: Azure Relay's built-in roles ("Azure Relay Owner" and so on) and what each may do.
ROLE_RIGHTS = {
    "Owner": Rights.LISTEN | Rights.SEND | Rights.MANAGE,
    "Listener": Rights.LISTEN,
    "Sender": Rights.SEND,
}


def _jwt():
    try:
        import jwt
    except ImportError:
        raise LocalProtocolError(
            f"[entraId] needs PyJWT (with cryptography) to verify Entra ID tokens: {INSTALL_HINT}."
        ) from None
    return jwt


def _fail(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, 401)


@dataclass(frozen=True)
class SigningKey:
    """One public key tokens may be signed with: ``kid`` (None for a PEM key), the key, its algorithm."""

    kid: str | None
    key: Any
    algorithm: str

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, algorithm={self.algorithm!r})"


@dataclass(frozen=True)
class RoleAssignment:
    """``role`` for ``principal`` (a token's ``oid``) on hybrid connection ``scope`` (or ``*``: all)."""

    principal: str
    role: str
    scope: str

    @property
    def identity(self) -> tuple[str, str, str]:
        """What makes two entries the same assignment (the config refuses duplicates)."""
        return (self.principal.lower(), self.role, self.scope.casefold())

    def covers(self, entity_name: str) -> bool:
        return self.scope == "*" or self.scope.casefold() == entity_name.strip("/").casefold()


@dataclass(frozen=True)
class EntraToken:
    """A verified Entra ID token: whose it is and until when (``grace`` is the leeway on ``expiry``)."""

    principal: str
    expiry: int
    grace: float

    def __repr__(self) -> str:
        return f"EntraToken(principal={self.principal!r}, expiry={self.expiry!r})"


def _algorithm_for(key: Any) -> str | None:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    return None


def _jwks_keys(doc: Any, where: str) -> list[SigningKey]:
    jwt = _jwt()
    if not isinstance(doc, Mapping) or not isinstance(doc.get("keys"), list):
        raise LocalProtocolError(f"{where} is JSON but not a JWKS ({{\"keys\": [...]}}).")
    if not doc["keys"]:
        raise LocalProtocolError(f"{where} holds no keys.")
    keys, seen = [], set()
    for position, jwk in enumerate(doc["keys"], 1):
        label = f"{where}: key {position}"
        if not isinstance(jwk, Mapping):
            raise LocalProtocolError(f"{label} is not a JSON object.")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid:
            raise LocalProtocolError(f"{label} has no 'kid': tokens name their signing key by it.")
        if kid in seen:
            raise LocalProtocolError(f"{label}: two keys have the kid {shown(kid)}.")
        seen.add(kid)
        if "d" in jwk or "p" in jwk:
            raise LocalProtocolError(f"{label} ({shown(kid)}) is a private key; the relay needs the public keys only.")
        if jwk.get("use", "sig") != "sig":
            raise LocalProtocolError(f"{label} ({shown(kid)}) is not a signing key (use={shown(jwk.get('use'))}).")
        if jwk.get("alg") is not None and jwk.get("alg") not in ALGORITHMS:
            raise LocalProtocolError(f"{label} ({shown(kid)}) says alg {shown(jwk.get('alg'))}; only RS256 and ES256 are accepted.")
        try:
            parsed = jwt.PyJWK(dict(jwk))
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as e:
            raise LocalProtocolError(f"{label} ({shown(kid)}) is not a usable key: {str(e).rstrip('.') or type(e).__name__}.") from None
        algorithm = _algorithm_for(parsed.key)
        if algorithm is None:
            raise LocalProtocolError(f"{label} ({shown(kid)}) is neither an RSA key nor an EC P-256 key (RS256 and ES256 only).")
        if jwk.get("alg") is not None and jwk.get("alg") != algorithm:
            raise LocalProtocolError(f"{label} ({shown(kid)}) says alg {shown(jwk.get('alg'))}; only {algorithm} fits this key.")
        keys.append(SigningKey(kid, parsed.key, algorithm))
    return keys


def _pem_keys(data: bytes, where: str) -> list[SigningKey]:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    keys = []
    for match in _PEM_BLOCK.finditer(data):
        label, pem = match.group(1).decode("ascii"), match.group(0)
        if "PRIVATE" in label:
            raise LocalProtocolError(f"{where} holds a private key; the relay needs the public keys (or certificates) only.")
        if label not in ("CERTIFICATE", "PUBLIC KEY"):
            raise LocalProtocolError(f"{where} holds a PEM {label!r} block; give PUBLIC KEY or CERTIFICATE blocks.")
        try:
            key = x509.load_pem_x509_certificate(pem).public_key() if label == "CERTIFICATE" else load_pem_public_key(pem)
        except ValueError:
            raise LocalProtocolError(f"{where} holds a PEM {label} block that does not parse.") from None
        algorithm = _algorithm_for(key)
        if algorithm is None:
            raise LocalProtocolError(f"{where} holds a key that is neither RSA nor EC P-256 (RS256 and ES256 only).")
        keys.append(SigningKey(None, key, algorithm))
    if not keys:
        raise LocalProtocolError(f"{where} holds neither a JWKS nor PEM public keys or certificates.")
    return keys


def load_signing_keys(path: str) -> tuple[SigningKey, ...]:
    """The keys in ``path``: a JWKS (JSON, every key with a ``kid``) or PEM public keys/certificates."""
    where = f"[entraId] jwksFile {path}"
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_FILE + 1)
    except OSError as e:
        raise LocalProtocolError(f"cannot read {where}: {e.strerror}.") from None
    except ValueError:
        raise LocalProtocolError(f"{shown(path)} is not a file name.") from None
    if len(data) > MAX_KEY_FILE:
        raise LocalProtocolError(f"{where} is larger than {MAX_KEY_FILE} bytes; it is not a key file.")
    if data.lstrip()[:1] == b"{":
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise LocalProtocolError(f"{where} starts like JSON but is not valid JSON.") from None
        return tuple(_jwks_keys(doc, where))
    return tuple(_pem_keys(data, where))


class EntraVerifier:
    """Verifies tokens against the configured issuer, audience and keys; then the role assignments."""

    def __init__(self, issuer: str, audience: str, keys: Iterable[SigningKey], leeway: float,
                 assignments: Iterable[RoleAssignment] = ()) -> None:
        self.issuer = issuer
        base = audience.rstrip("/") or audience
        # Tokens name the audience with or without the trailing slash.
        self.audiences = [base, base + "/"]
        self.keys = tuple(keys)
        self.by_kid = {k.kid: k for k in self.keys if k.kid is not None}
        self.leeway = leeway
        self.assignments = tuple(assignments)

    def __repr__(self) -> str:
        return f"EntraVerifier(issuer={self.issuer!r}, audience={self.audiences[0]!r}, keys={len(self.keys)})"

    def _candidates(self, header: Mapping[str, Any]) -> list[SigningKey]:
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise _fail(f"The token's algorithm {shown(alg)} is not accepted; Entra ID tokens are signed with RS256 or ES256.")
        if self.by_kid:
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise _fail("The token names no signing key (no 'kid' in its header).")
            key = self.by_kid.get(kid)
            if key is None:
                raise _fail(f"The token's signing key {shown(kid)} is not one of the relay's [entraId] keys.")
            keys = [key]
        else:
            keys = list(self.keys)
        keys = [k for k in keys if k.algorithm == alg]
        if not keys:
            raise _fail(f"The token is signed with {alg}, but its signing key is not a {alg} key.")
        return keys

    def verify(self, token: str, *, now: float) -> EntraToken:
        """The token's principal and expiry once signature and claims check out; else 401."""
        jwt = _jwt()
        raw = token.strip()
        if raw[:7].lower() == "bearer ":
            raw = raw[7:].strip()
        try:
            header = jwt.get_unverified_header(raw)
        except jwt.PyJWTError:
            raise _fail("The token is not a well-formed JWT.") from None
        claims = None
        for key in self._candidates(header):
            try:
                claims = jwt.decode(
                    raw, key.key, algorithms=[key.algorithm], audience=self.audiences, issuer=self.issuer,
                    # The relay's own clock decides expiry (below), not PyJWT's.
                    options={"require": ["exp", "iss", "aud"], "verify_exp": False, "verify_nbf": False, "verify_iat": False},
                )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidAudienceError:
                raise _fail(f"The token is not for this relay: its audience (aud) must be {self.audiences[0]!r}.") from None
            except jwt.InvalidIssuerError:
                raise _fail(f"The token's issuer (iss) is not {self.issuer!r}, the one the relay trusts.") from None
            except jwt.MissingRequiredClaimError as e:
                raise _fail(f"The token has no {e.claim!r} claim.") from None
            except jwt.PyJWTError as e:
                raise _fail(f"The token is not acceptable: {str(e).rstrip('.')}.") from None
        if claims is None:
            raise _fail("The token's signature does not verify with the relay's [entraId] keys.")
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if isinstance(exp, bool) or not isinstance(exp, (int, float)) or exp != exp:
            raise _fail("The token's exp claim is not a number of seconds since 1970.")
        if now > exp + self.leeway:
            raise _fail("The token is expired (exp is past); get a fresh one from the credential.")
        if nbf is not None:
            if isinstance(nbf, bool) or not isinstance(nbf, (int, float)) or nbf != nbf:
                raise _fail("The token's nbf claim is not a number of seconds since 1970.")
            if now + self.leeway < nbf:
                raise _fail("The token is not valid yet (nbf is in the future); check the clocks.")
        principal = claims.get("oid")
        if not isinstance(principal, str) or not principal:
            raise _fail("The token has no 'oid' claim (the object ID of its principal).")
        return EntraToken(principal, int(min(exp, 2**62)), self.leeway)

    def authorize(self, token: EntraToken, entity_name: str, required: Rights) -> None:
        """Raise 403 unless role assignments give ``token``'s principal ``required`` on ``entity_name``."""
        granted = Rights(0)
        for assignment in self.assignments:
            if assignment.principal.lower() == token.principal.lower() and assignment.covers(entity_name):
                granted |= ROLE_RIGHTS[assignment.role]
        if required & ~granted:
            missing = Rights(required & ~granted)
            roles = " or ".join(f"Azure Relay {role}" for role, rights in ROLE_RIGHTS.items() if missing in rights)
            raise RemoteProtocolError(
                f"Unauthorized access. '{missing.describe()}' claim(s) are required to perform this operation "
                f"(principal {token.principal!r} has no role assignment granting it on "
                f"{entity_name or 'the namespace'!r}: assign {roles}).",
                403,
            )


# -- the TOML tables (see txhyco.relay.config and the README) -------------------------


def _role(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise Invalid(f"must be a string (Owner, Listener or Sender), not {type(value).__name__}")
    name = value.strip()
    if name.lower().startswith("azure relay "):
        name = name[len("azure relay "):].strip()
    for role in ROLE_RIGHTS:
        if role.lower() == name.lower():
            return role
    raise Invalid(f"names an {unknown_name('role', value, ROLE_RIGHTS)}")


def _scope_problem(value: str) -> str | None:
    if value == "*":
        return None
    from txhyco.protocol.addresses import check_entity_name
    from txhyco.protocol.errors import ProtocolError

    try:
        check_entity_name(value)
    except ProtocolError as e:
        return f"must be a hybrid connection name or '*' ({e.message.rstrip('.')})"
    return None


def _printable_problem(value: str) -> str | None:
    if value != value.strip() or not value.isprintable():
        return "must not hold control characters or leading/trailing spaces"
    return None


def _url_problem(value: str) -> str | None:
    if "://" not in value or not value.isprintable() or value != value.strip():
        return "must be a URL such as https://login.microsoftonline.com/TENANT/v2.0"
    return None


ENTRA_ID = Table(
    "[entraId]",
    {
        "issuer": Setting(text(max_length=1024, valid=_url_problem), "issuer", required=True),
        "audience": Setting(text(max_length=1024, valid=_url_problem), "audience"),
        "jwksFile": Setting(text(max_length=4096, valid=_printable_problem), "jwks_file", required=True),
        "leeway": Setting(seconds(0, 3600, low_included=True), "leeway"),
    },
)

ROLE_ASSIGNMENT = Table(
    "[[roleAssignments]]",
    {
        "principal": Setting(text(max_length=256, valid=_printable_problem), "principal", required=True),
        "role": Setting(_role, "role", required=True),
        "scope": Setting(text(max_length=260, valid=_scope_problem), "scope", required=True),
    },
    build=lambda **fields: RoleAssignment(**{**fields, "scope": fields["scope"].strip("/")}),
)


def build_verifier(settings: Mapping[str, Any] | None, assignments: list[RoleAssignment], *,
                   base_dir: str | None = None, entity_names: Iterable[str] | None = None) -> EntraVerifier | None:
    """The verifier for a config's ``[entraId]`` table and ``[[roleAssignments]]`` (None without them).

    ``jwksFile`` is relative to ``base_dir`` (the config file's directory);
    ``entity_names``, when the config restricts the relay to its named hybrid
    connections, are the scopes an assignment may name besides ``*``.
    """
    if settings is None:
        if assignments:
            raise LocalProtocolError("[[roleAssignments]] need an [entraId] table (issuer and jwksFile) to verify tokens with.")
        return None
    if entity_names is not None:
        names = {name.casefold() for name in entity_names}
        for assignment in assignments:
            if assignment.scope != "*" and assignment.scope.casefold() not in names:
                raise LocalProtocolError(
                    f"[[roleAssignments]]: the scope {shown(assignment.scope)} is not one of the file's hybrid connections."
                )
    _jwt()  # a missing PyJWT is the operator's one line now, not every sender's 400 later
    path = settings["jwks_file"]
    if base_dir and not os.path.isabs(path):
        path = os.path.join(base_dir, path)
    keys = load_signing_keys(path)
    return EntraVerifier(
        issuer=settings["issuer"],
        audience=settings.get("audience", RELAY_AUDIENCE),
        keys=keys,
        leeway=settings.get("leeway", DEFAULT_LEEWAY),
        assignments=assignments,
    )
