"""Shared Access Signature tokens: sign, parse, verify (Microsoft's "Service Bus access
control with Shared Access Signatures").

The signature covers the *encoded* resource exactly as it appears after
``sr=``, so verification recomputes the HMAC over the raw ``sr`` value as
received (Microsoft's "Service Bus access control with Shared Access Signatures"); the
audience check is deliberately tolerant of the forms the official clients produce
(README, "Tokens"). No clock is read: ``now`` is a parameter.
"""
from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from .addresses import encode_component, percent_decode
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError

__all__ = [
    "Rights",
    "SasRule",
    "SasToken",
    "encode_component",
    "sign_token",
    "dotnet_audience",
    "node_audience",
    "create_relay_token",
    "verify_token",
    "token_expiry",
    "is_expired",
    "is_sas_token",
    "looks_like_jwt",
    "audience_parts",
]

SAS_PREFIX = "SharedAccessSignature"
_PREFIX_LEN = len(SAS_PREFIX)
_MAX_EXPIRY = 2**63 - 1
_DIGITS_RE = re.compile(r"[0-9]{1,19}")
_B64URL_RE = re.compile(r"[A-Za-z0-9_\-]+={0,2}")
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):(.*)", re.DOTALL)
# Characters legacy Node url.parse escapes in a path (the rest pass through).
_NODE_AUTO_ESCAPE = {ch: quote for ch, quote in (
    ("{", "%7B"), ("}", "%7D"), ("|", "%7C"), ("\\", "%5C"), ("^", "%5E"), ("`", "%60"),
    ("<", "%3C"), (">", "%3E"), ('"', "%22"), (" ", "%20"), ("\r", "%0D"), ("\n", "%0A"),
    ("\t", "%09"), ("'", "%27"),
)}


class Rights(enum.Flag):
    """SAS rule rights (Microsoft's "Azure Relay authentication and authorization").
    Manage implies Listen and Send when checking."""

    LISTEN = enum.auto()
    SEND = enum.auto()
    MANAGE = enum.auto()

    @classmethod
    def parse(cls, value: str | Iterable[str]) -> Rights:
        """``"Listen, Send"`` or ``["listen", "send"]`` (case-insensitive) → Rights."""
        if isinstance(value, str):
            names = re.split(r"[\s,|]+", value)
        else:
            try:
                names = list(value)
            except TypeError:
                raise LocalProtocolError(f"Rights must be a string or a list of names, not {type(value).__name__}.") from None
        result = cls(0)
        for name in names:
            if not isinstance(name, str):
                raise LocalProtocolError(f"A right must be named by a string, not {type(name).__name__}.")
            name = name.strip()
            if not name:
                continue
            member = cls.__members__.get(name.upper())
            if member is None:
                raise LocalProtocolError(f"Unknown right {name[:40]!r}; expected Listen, Send or Manage.")
            result |= member
        return result

    def effective(self) -> Rights:
        """The rights this grants once Manage is expanded to Listen|Send|Manage."""
        if Rights.MANAGE in self:
            return self | Rights.LISTEN | Rights.SEND
        return self

    def grants(self, required: Rights) -> bool:
        return required in self.effective()

    def describe(self) -> str:
        names = [m.name.capitalize() for m in Rights if m in self]
        return ", ".join(names) if names else "no rights"


# --------------------------------------------------------------------------- signing


def _hmac_b64(key: str, message: str) -> str:
    try:
        key_bytes = key.encode("utf-8")
        msg_bytes = message.encode("utf-8")
    except UnicodeError:
        raise LocalProtocolError("The SAS key or resource contains characters that cannot be encoded as UTF-8.", 401) from None
    digest = hmac.new(key_bytes, msg_bytes, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _check_expiry(expiry: object) -> int:
    if isinstance(expiry, bool) or not isinstance(expiry, int) or not 0 <= expiry <= _MAX_EXPIRY:
        raise LocalProtocolError(f"A token expiry must be a non-negative integer of seconds since 1970, not {expiry!r}.")
    return expiry


def _sign(resource: str, key_name: str, key: str, expiry: int, *, encode_key_name: bool) -> str:
    if not isinstance(resource, str) or not resource:
        raise LocalProtocolError("The token resource (audience) must be a non-empty string.")
    if not isinstance(key_name, str) or not key_name:
        raise LocalProtocolError("The SAS key name must be a non-empty string.")
    if not isinstance(key, str) or not key:
        raise LocalProtocolError("The SAS key must be a non-empty string.")
    expiry = _check_expiry(expiry)
    sr = encode_component(resource)
    sig = _hmac_b64(key, f"{sr}\n{expiry}")
    skn = encode_component(key_name) if encode_key_name else key_name
    return f"{SAS_PREFIX} sr={sr}&sig={encode_component(sig)}&se={expiry}&skn={skn}"


def sign_token(resource: str, key_name: str, key: str, expiry: int) -> str:
    """Mint ``SharedAccessSignature sr=…&sig=…&se=…&skn=…`` (Microsoft's "Service Bus
    access control with Shared Access Signatures").

    ``resource`` is encoded with encodeURIComponent; the HMAC-SHA256 key is the
    UTF-8 bytes of ``key`` (not base64-decoded). ``skn`` is encodeURIComponent-ed
    too (as .NET/Java do); for valid Azure rule names (letters, digits, ``.-_``)
    that is the identity, i.e. the same bytes Node emits.
    """
    return _sign(resource, key_name, key, expiry, encode_key_name=True)


def _split_uri(uri: str) -> tuple[str, str, str, str]:
    """``scheme://[userinfo@]authority/path?query#frag`` → (scheme, userinfo, authority, path)."""
    if not isinstance(uri, str):
        raise LocalProtocolError(f"A URI must be a string, got {type(uri).__name__}.")
    match = _SCHEME_RE.fullmatch(uri.strip())
    if not match or not match.group(2).startswith("//"):
        raise LocalProtocolError(f"{uri[:80]!r} is not an absolute URI (scheme://host/path).")
    rest = match.group(2)[2:]
    cut = len(rest)
    for sep in "/?#":
        pos = rest.find(sep)
        if pos >= 0:
            cut = min(cut, pos)
    authority, rest = rest[:cut], rest[cut:]
    for sep in "?#":
        rest = rest.split(sep, 1)[0]
    userinfo, at, hostport = authority.rpartition("@")
    if not hostport:
        raise LocalProtocolError(f"The URI {uri[:80]!r} has no host.")
    return match.group(1).lower(), (userinfo + at), hostport, rest


def _strip_port(hostport: str) -> str:
    if hostport.startswith("["):
        end = hostport.find("]")
        return hostport[: end + 1] if end >= 0 else hostport
    return hostport.split(":", 1)[0]


def dotnet_audience(uri: str) -> str:
    """The audience .NET's token provider signs (README, "Tokens"):
    ``http://host/path/``.

    Scheme forced to ``http``; userinfo, port, query and fragment dropped; a
    leading ``$hc/`` segment dropped; host lower-cased; trailing ``/`` ensured.
    """
    _, _, hostport, path = _split_uri(uri)
    host = _strip_port(hostport).lower()
    if path == "/$hc" or path.startswith("/$hc/"):
        path = path[4:]
    if not path.endswith("/"):
        path += "/"
    return f"http://{host}{path}"


def node_audience(uri: str) -> str:
    """The audience Node's ``createRelayToken`` signs (README, "Tokens"), byte for byte.

    Legacy ``url.parse``/``url.format``: protocol ``http``, query and fragment
    removed, userinfo and port kept as given, host lower-cased, the first
    ``$hc/`` in the path removed, no trailing slash added (an empty path is ``/``),
    and the characters legacy ``url.parse`` auto-escapes (space, quotes, braces…)
    percent-encoded.
    """
    _, userinfo, hostport, path = _split_uri(uri)
    host = hostport.lower()
    path = path or "/"
    path = "".join(_NODE_AUTO_ESCAPE.get(ch, ch) for ch in path)
    path = path.replace("$hc/", "", 1)
    return f"http://{userinfo}{host}{path}"


def create_relay_token(uri: str, key_name: str, key: str, expiry: int) -> str:
    """Node's ``createRelayToken(uri, keyName, key)`` with the absolute expiry given.

    Byte-identical to Node's output: audience per :func:`node_audience`, ``skn``
    not encoded.
    """
    return _sign(node_audience(uri), key_name, key, expiry, encode_key_name=False)


# --------------------------------------------------------------------------- parsing


def is_sas_token(text: object) -> bool:
    """True if ``text`` starts with ``SharedAccessSignature`` + space (any case)."""
    if not isinstance(text, str):
        return False
    text = text.strip()
    return text[:_PREFIX_LEN].lower() == SAS_PREFIX.lower() and text[_PREFIX_LEN:_PREFIX_LEN + 1] in (" ", "+")


def looks_like_jwt(text: object) -> bool:
    """True for three dot-separated base64url parts (an Entra ID access token)."""
    if not isinstance(text, str):
        return False
    text = text.strip()
    if text[:7].lower() == "bearer ":
        text = text[7:].lstrip()
    parts = text.split(".")
    if len(parts) != 3:
        return False
    return bool(_B64URL_RE.fullmatch(parts[0]) and _B64URL_RE.fullmatch(parts[1])) and (
        parts[2] == "" or bool(_B64URL_RE.fullmatch(parts[2]))
    )


def _fail(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, 401)


@dataclass(frozen=True)
class SasToken:
    """A parsed SAS token; raw fields as received, decoded fields for lookup and display."""

    raw: str
    raw_resource: str
    resource: str
    signature: str
    raw_expiry: str
    expiry: int
    key_name: str

    def __repr__(self) -> str:
        return (
            f"SasToken(resource={self.resource!r}, expiry={self.expiry!r}, "
            f"key_name={self.key_name!r}, signature=<redacted>)"
        )

    @classmethod
    def parse(cls, text: str) -> SasToken:
        """Parse per Microsoft's "Service Bus access control with Shared Access Signatures":
        case-insensitive prefix, pairs in any order, sr/sig/se/skn required.

        The separator after the prefix may be a space or ``+`` (what a form
        encoder leaves of the space in an ``sb-hc-token``). Malformed tokens raise
        :class:`ProtocolError` with status 401.
        """
        if not isinstance(text, str):
            raise _fail(f"A token must be a string, got {type(text).__name__}.")
        raw = text.strip()
        if not is_sas_token(raw):
            if looks_like_jwt(raw):
                raise _fail("Entra ID tokens cannot be verified by this relay; present a SAS token instead.")
            raise _fail("The token is not a Shared Access Signature (it must start with 'SharedAccessSignature ').")
        fields: dict[str, str] = {}
        for pair in raw[_PREFIX_LEN + 1:].lstrip(" ").split("&"):
            if not pair:
                continue
            key, sep, value = pair.partition("=")
            if not sep:
                raise _fail(f"The token contains a field without '=': {key[:20]!r}.")
            key = key.strip().lower()
            if key in ("sr", "sig", "se", "skn"):
                if key in fields:
                    raise _fail(f"The token contains the field {key!r} twice.")
                fields[key] = value
        missing = [k for k in ("sr", "sig", "se", "skn") if k not in fields]
        if missing:
            raise _fail(f"The token lacks the field(s) {', '.join(missing)}; a SAS token needs sr, sig, se and skn.")
        raw_expiry = fields["se"]
        if not _DIGITS_RE.fullmatch(raw_expiry) or int(raw_expiry) > _MAX_EXPIRY:
            raise _fail(f"The token expiry se={raw_expiry[:24]!r} is not a decimal number of seconds since 1970.")
        resource = percent_decode(fields["sr"], status=401, what="token resource (sr)")
        signature = percent_decode(fields["sig"], status=401, what="token signature (sig)")
        key_name = percent_decode(fields["skn"], status=401, what="token key name (skn)")
        if not resource:
            raise _fail("The token resource (sr) is empty.")
        if not signature:
            raise _fail("The token signature (sig) is empty.")
        if not key_name:
            raise _fail("The token key name (skn) is empty.")
        return cls(
            raw=raw,
            raw_resource=fields["sr"],
            resource=resource,
            signature=signature,
            raw_expiry=raw_expiry,
            expiry=int(raw_expiry),
            key_name=key_name,
        )


@dataclass(frozen=True)
class SasRule:
    """An authorization rule: a name, one or two keys, and the rights it grants."""

    name: str
    primary_key: str
    secondary_key: str | None = None
    rights: Rights = Rights.LISTEN | Rights.SEND | Rights.MANAGE

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise LocalProtocolError("A SAS rule needs a non-empty name.")
        if not isinstance(self.primary_key, str) or not self.primary_key:
            raise LocalProtocolError(f"The SAS rule {self.name!r} needs a non-empty primary key.")
        if self.secondary_key is not None and (not isinstance(self.secondary_key, str) or not self.secondary_key):
            raise LocalProtocolError(f"The secondary key of SAS rule {self.name!r} must be a non-empty string or None.")
        if not isinstance(self.rights, Rights):
            raise LocalProtocolError(f"The rights of SAS rule {self.name!r} must be a Rights value.")

    def __repr__(self) -> str:
        secondary = None if self.secondary_key is None else "<redacted>"
        return (
            f"SasRule(name={self.name!r}, primary_key=<redacted>, secondary_key={secondary}, "
            f"rights={self.rights.describe()!r})"
        )

    def keys(self) -> tuple[str, ...]:
        return (self.primary_key,) if self.secondary_key is None else (self.primary_key, self.secondary_key)


# --------------------------------------------------------------------------- verification


def audience_parts(resource: str) -> tuple[str, tuple[str, ...]]:
    """Decoded ``sr`` → (lower-case host, path segments), tolerant per Microsoft's
    "Service Bus access control with Shared Access Signatures".

    Scheme, userinfo, port, query and fragment are dropped, empty segments
    (repeated or trailing ``/``) collapse, a leading ``$hc`` segment goes, and each
    segment is percent-decoded once (so ``my%20hc`` matches ``my hc``).
    """
    text = resource.strip()
    match = re.match(r"[A-Za-z][A-Za-z0-9+.\-]*:", text)
    if match:
        text = text[match.end():]
    text = text.lstrip("/")
    for sep in "?#":
        text = text.split(sep, 1)[0]
    hostport, _, path = text.partition("/")
    hostport = hostport.rpartition("@")[2]
    host = _strip_port(hostport).lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    segments = [s for s in path.split("/") if s]
    if segments and segments[0].lower() in ("$hc", "%24hc"):
        segments = segments[1:]
    decoded = tuple(percent_decode(s, status=401, what="token audience") for s in segments)
    return host, decoded


def _format_time(seconds: int) -> str:
    try:
        return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{seconds} seconds since 1970"


def is_expired(token: SasToken, now: float, grace: float = 300.0) -> bool:
    """True once ``now`` is more than ``grace`` seconds past the token's ``se`` (the relay's
    ``tokenGrace``; README, "Configuration file")."""
    return token.expiry < now - grace


def _signature_matches(token: SasToken, rule: SasRule) -> bool:
    presented = token.signature.replace(" ", "+").encode("utf-8", "surrogatepass")
    message = f"{token.raw_resource}\n{token.raw_expiry}"
    ok = False
    for key in rule.keys():
        try:
            expected = _hmac_b64(key, message).encode("ascii")
        except LocalProtocolError as e:  # the presented resource, not our key
            raise _fail(e.message) from None
        # Constant time, and no short-circuit across keys.
        ok = hmac.compare_digest(expected, presented) | ok
    return ok


def verify_token(
    token: str,
    *,
    rules: Mapping[str, SasRule],
    hosts: Collection[str] | None,
    entity_path: str,
    required: Rights,
    now: float,
    grace: float = 300.0,
    path_case_sensitive: bool = False,
) -> SasToken:
    """Verify a presented token per Microsoft's "Service Bus access control with Shared
    Access Signatures" and return it parsed.

    ``rules`` maps rule names to rules (entity rules first, then namespace rules,
    merged by the caller). ``hosts`` are the host names the relay answers to
    (``None`` skips the host check). ``entity_path`` is the decoded entity path;
    it must equal or extend, segment by segment, the audience path
    (case-insensitively by default, as Azure entity names are). Failures raise
    :class:`ProtocolError`: 401 for a malformed, unknown, forged, expired or
    misdirected token; 403 when the rule lacks ``required``.
    """
    if isinstance(token, str) and not is_sas_token(token) and looks_like_jwt(token):
        raise _fail(
            "Entra ID tokens cannot be verified by this relay; use a SAS token "
            "(SharedAccessSignature sr=…&sig=…&se=…&skn=…)."
        )
    parsed = SasToken.parse(token)
    rule = rules.get(parsed.key_name)
    if rule is None:
        raise _fail(f"The token's key name {parsed.key_name[:60]!r} is not an authorization rule of this entity or namespace.")
    if not _signature_matches(parsed, rule):
        raise _fail("The token has an invalid signature.")
    if is_expired(parsed, now, grace):
        raise _fail(f"The token is expired. Expiration time: '{_format_time(parsed.expiry)}'.")
    host, audience = audience_parts(parsed.resource)
    if isinstance(hosts, str):
        hosts = (hosts,)
    if hosts is not None:
        allowed = {h.lower().strip("[]") for h in hosts}
        if host not in allowed:
            raise _fail(
                f"The token audience {parsed.resource[:200]!r} names host {host!r}, "
                f"which is not this relay ({', '.join(sorted(allowed)) or 'no hosts'})."
            )
    wanted = tuple(s for s in entity_path.split("/") if s)
    fold = (lambda s: s) if path_case_sensitive else str.casefold
    if len(audience) > len(wanted) or any(fold(a) != fold(w) for a, w in zip(audience, wanted)):
        raise _fail(
            f"The token audience {parsed.resource[:200]!r} does not cover the entity path {entity_path[:200]!r}."
        )
    if not rule.rights.grants(required):
        missing = Rights(required & ~rule.rights.effective())
        raise RemoteProtocolError(
            f"Unauthorized access. '{missing.describe()}' claim(s) are required to perform this operation "
            f"(rule {rule.name!r} grants {rule.rights.describe()}).",
            403,
        )
    return parsed


def _jwt_exp(text: str) -> int | None:
    if text[:7].lower() == "bearer ":
        text = text[7:].lstrip()
    payload = text.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    if exp != exp or exp in (float("inf"), float("-inf")):
        return None
    return int(exp)


def token_expiry(token: object) -> int | None:
    """The expiry (seconds since 1970) of a SAS token or a JWT's ``exp``; None if unknown.

    Never raises: used for scheduling renewals, where an unreadable token just
    means "renew on the default schedule".
    """
    if not isinstance(token, str):
        return None
    try:
        if is_sas_token(token):
            return SasToken.parse(token).expiry
        if looks_like_jwt(token):
            return _jwt_exp(token.strip())
    except (ProtocolError, ValueError, binascii.Error, UnicodeError, RecursionError, OverflowError):
        return None
    return None
