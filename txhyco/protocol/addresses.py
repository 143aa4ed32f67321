"""Hybrid Connections addressing: namespaces, entity paths, URLs, ``sb-hc-*`` parameters.

Everything here is pure string work (Hybrid Connections protocol, "Protocol reference").
The builders produce the URLs that listeners and senders open;
:func:`parse_relay_target` is what a relay applies to an incoming request target; the
Node-named helpers reproduce the shared helper API of Microsoft's npm packages
(``createRelayListenUri`` …).
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, quote_plus, unquote_to_bytes

from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError

__all__ = [
    "DEFAULT_DOMAIN",
    "Namespace",
    "RelayTarget",
    "ACTIONS",
    "percent_decode",
    "encode_component",
    "encode_entity_path",
    "strip_reserved_query",
    "relative_target",
    "query_value",
    "listen_url",
    "connect_url",
    "http_url",
    "rendezvous_url",
    "reject_url",
    "parse_relay_target",
    "reject_parameters",
    "entity_path_candidates",
    "MAX_ENTITY_PATH",
    "create_relay_base_uri",
    "create_relay_listen_uri",
    "create_relay_send_uri",
    "create_relay_http_uri",
    "append_relay_token",
]

DEFAULT_DOMAIN = "servicebus.windows.net"

#: The values of ``sb-hc-action`` (Hybrid Connections protocol, "Protocol reference");
#: absence means ``connect`` on a ``$hc`` upgrade.
ACTIONS = frozenset({"listen", "connect", "accept", "request"})

_RESERVED_PREFIX = "sb-hc-"

# JavaScript encodeURIComponent keeps exactly these (besides ASCII letters/digits).
_COMPONENT_SAFE = "-_.!~*'()"
# Text encodeURIComponent leaves as it is (every id the relay makes itself).
_COMPONENT_AS_IS = re.compile(r"[A-Za-z0-9\-_.!~*'()]*")
# RFC 3986 pchar minus the unreserved letters/digits: what may stay literal in a segment.
_SEGMENT_SAFE = "-._~!$&'()*+,;=:@"
# Characters that may stay literal in a raw query / raw path suffix given to a builder.
_RAW_QUERY_SAFE = "-._~!$&'()*+,;=:@/?%"
_RAW_SUFFIX_SAFE = "-._~!$&'()*+,;=:@/%"

_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://(.*)", re.DOTALL)
_LABEL_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]*[A-Za-z0-9_])?")
_PORT_RE = re.compile(r"[0-9]{1,5}")
_STATUS_RE = re.compile(r"[0-9]{3}")
_BAD_ESCAPE = re.compile("%(?![0-9a-fA-F]{2})")
_LONE_PERCENT_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_NAMESPACE_SCHEMES = {"sb": None, "wss": True, "https": True, "ws": False, "http": False}


# --------------------------------------------------------------------------- percent coding


def percent_decode(text: str, *, plus: bool = False, status: int = 400, what: str = "value") -> str:
    """Decode ``%XX`` escapes strictly (UTF-8); ``plus=True`` also maps ``+`` to space.

    Unlike :func:`urllib.parse.unquote` this refuses malformed escapes and invalid
    UTF-8, because silently substituting U+FFFD would let two different wire
    forms name the same entity.
    """
    if plus:
        text = text.replace("+", " ")
    if "%" not in text:
        _check_encodable(text, status, what)
        return text
    if _BAD_ESCAPE.search(text):
        raise RemoteProtocolError(f"The {what} contains an invalid percent-escape (expected %XX with two hex digits).", status)
    try:
        raw = unquote_to_bytes(text.encode("utf-8"))
        return raw.decode("utf-8")
    except UnicodeError:
        raise RemoteProtocolError(f"The {what} is not valid UTF-8 once percent-decoded.", status) from None


def _check_encodable(text: str, status: int, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeError:
        raise RemoteProtocolError(f"The {what} contains characters that cannot be encoded as UTF-8.", status) from None


def _lenient_form_decode(text: str) -> str:
    """Form-decode a human-readable reason phrase, never failing, dropping control characters."""
    text = text.replace("+", " ")
    try:
        raw = unquote_to_bytes(text.encode("utf-8", "surrogatepass"))
    except UnicodeError:  # pragma: no cover - surrogatepass always encodes
        raw = b""
    decoded = raw.decode("utf-8", "replace")
    return "".join(ch for ch in decoded if ch >= " " and ch != "\x7f" and not "\x80" <= ch <= "\x9f").strip()


def encode_component(text: str) -> str:
    """JavaScript ``encodeURIComponent``: UTF-8, upper-case hex, keeps ``A-Za-z0-9-_.!~*'()``."""
    if text.__class__ is str and _COMPONENT_AS_IS.fullmatch(text):
        return text
    if not isinstance(text, str):
        raise LocalProtocolError(f"Expected a string to encode, got {type(text).__name__}.")
    try:
        return quote(text, safe=_COMPONENT_SAFE, encoding="utf-8", errors="strict")
    except UnicodeError:
        raise LocalProtocolError("The text contains a lone surrogate and cannot be URL-encoded.") from None


def _encode_raw(text: str, safe: str, what: str) -> str:
    """Percent-encode what cannot appear literally in a URL, keeping existing escapes."""
    if not isinstance(text, str):
        raise LocalProtocolError(f"The {what} must be a string, got {type(text).__name__}.")
    if "%" in safe:
        text = _LONE_PERCENT_RE.sub("%25", text)
    try:
        return quote(text, safe=safe, encoding="utf-8", errors="strict")
    except UnicodeError:
        raise LocalProtocolError(f"The {what} contains a lone surrogate and cannot be URL-encoded.") from None


# --------------------------------------------------------------------------- namespaces


def _parse_host(host: str, text: str) -> str:
    """Validate a host name or IP literal (without brackets); return it lower-cased."""
    if not host:
        raise LocalProtocolError(f"The namespace {text!r} has an empty host name.")
    if not host.isascii():
        raise LocalProtocolError(
            f"The namespace host {host!r} is not ASCII; write internationalised names in their xn-- form."
        )
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise LocalProtocolError(f"The namespace host {host!r} is not a valid IPv6 address.") from None
        return host.lower()
    if len(host) > 253:
        raise LocalProtocolError(f"The namespace host name in {text!r} is longer than 253 characters.")
    for label in host.split("."):
        if len(label) > 63 or not _LABEL_RE.fullmatch(label):
            raise LocalProtocolError(
                f"The namespace {text!r} is not a valid host name "
                "(letters, digits and '-' in dot-separated labels)."
            )
    return host.lower()


def _parse_port(port: str, text: str) -> int:
    if not _PORT_RE.fullmatch(port):
        raise LocalProtocolError(f"The port in {text!r} is not a decimal number.")
    value = int(port)
    if not 1 <= value <= 65535:
        raise LocalProtocolError(f"The port in {text!r} is out of range (1-65535).")
    return value


def _split_authority(authority: str, text: str) -> tuple[str, int | None, bool]:
    """Split ``host[:port]`` / ``[v6][:port]`` into (host, port, bracketed)."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise LocalProtocolError(f"The namespace {text!r} has an unclosed '[' around an IPv6 address.")
        host, rest = authority[1:end], authority[end + 1:]
        if "%" in host:
            raise LocalProtocolError(f"The namespace {text!r} uses an IPv6 zone id, which is not supported.")
        if not host or ":" not in host:
            raise LocalProtocolError(f"The namespace {text!r} has brackets without an IPv6 address inside.")
        if not rest:
            return host, None, True
        if not rest.startswith(":"):
            raise LocalProtocolError(f"The namespace {text!r} has unexpected text after the IPv6 address.")
        return host, _parse_port(rest[1:], text), True
    if authority.count(":") > 1:
        raise LocalProtocolError(f"The namespace {text!r} looks like an IPv6 address; write it in brackets, e.g. [::1]:9090.")
    if ":" in authority:
        host, port = authority.split(":", 1)
        return host, _parse_port(port, text), False
    return authority, None, False


@dataclass(frozen=True)
class Namespace:
    """Where a relay lives: host, optional port, and whether to use TLS
    (Hybrid Connections protocol, "Protocol reference").

    ``port`` is ``None`` when the default (443 / 80) applies and no port should
    appear in URLs; the official .NET/Java clients emit none.
    """

    host: str
    port: int | None = None
    secure: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise LocalProtocolError("A namespace needs a non-empty host name.")
        if self.port is not None and (
            isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535
        ):
            raise LocalProtocolError(f"The namespace port {self.port!r} is out of range (1-65535).")

    @classmethod
    def parse(cls, text: str, *, secure: bool = True) -> Namespace:
        """Parse ``myns``, ``myns.servicebus.windows.net``, ``host:port``, ``[::1]:port`` or a URL.

        A bare name without dot or port means ``{name}.servicebus.windows.net``
        (only for bare text; ``sb://localhost/`` stays ``localhost``). URL schemes
        ``ws``/``http`` force ``secure=False``, ``wss``/``https`` force ``True``,
        ``sb`` keeps the ``secure`` argument. The URL may end in ``/`` but carry no
        other path, query or fragment: entity paths are given separately.
        """
        if not isinstance(text, str):
            raise LocalProtocolError(f"A namespace must be a string, got {type(text).__name__}.")
        original = text
        text = text.strip()
        if not text:
            raise LocalProtocolError("The namespace is empty; give a name like 'myns' or 'host:port'.")
        match = _SCHEME_RE.fullmatch(text)
        bare = match is None
        if match:
            scheme = match.group(1).lower()
            if scheme not in _NAMESPACE_SCHEMES:
                raise LocalProtocolError(
                    f"The namespace URL {original!r} has scheme {scheme!r}; use sb://, wss://, ws://, https:// or http://."
                )
            forced = _NAMESPACE_SCHEMES[scheme]
            if forced is not None:
                secure = forced
            rest = match.group(2)
            cut = len(rest)
            for sep in "/?#":
                pos = rest.find(sep)
                if pos >= 0:
                    cut = min(cut, pos)
            authority, tail = rest[:cut], rest[cut:]
            if tail not in ("", "/"):
                raise LocalProtocolError(
                    f"The namespace URL {original!r} has a path, query or fragment; "
                    "give the entity path separately (connection strings use EntityPath=)."
                )
            if "@" in authority:
                raise LocalProtocolError(f"The namespace URL {original!r} contains user information, which is not allowed.")
        else:
            authority = text
            if any(ch in authority for ch in "/?#@"):
                raise LocalProtocolError(
                    f"The namespace {original!r} is not a host name; use 'myns', 'host:port' or a URL like sb://host/."
                )
        host, port, bracketed = _split_authority(authority, original)
        host = _parse_host(host, original)
        if ":" in host and not bracketed:  # pragma: no cover - guarded by _split_authority
            raise LocalProtocolError(f"Write the IPv6 address in {original!r} in brackets.")
        if bare and port is None and "." not in host and ":" not in host:
            host = f"{host}.{DEFAULT_DOMAIN}"
        return cls(host=host, port=port, secure=bool(secure))

    @property
    def _host_text(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def authority(self) -> str:
        """``host`` or ``host:port`` (IPv6 in brackets), as it appears in a URL."""
        return self._host_text if self.port is None else f"{self._host_text}:{self.port}"

    @property
    def effective_port(self) -> int:
        """The TCP port to connect to: the explicit one, else 443 (secure) or 80."""
        if self.port is not None:
            return self.port
        return 443 if self.secure else 80

    @property
    def ws_base(self) -> str:
        return f"{'wss' if self.secure else 'ws'}://{self.authority}"

    @property
    def http_base(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.authority}"

    @property
    def sb_url(self) -> str:
        """``sb://authority/``: the form connection strings use for ``Endpoint``."""
        return f"sb://{self.authority}/"


def _as_namespace(namespace: Namespace | str) -> Namespace:
    if isinstance(namespace, Namespace):
        return namespace
    return Namespace.parse(namespace)


# --------------------------------------------------------------------------- entity paths


def encode_entity_path(path: str) -> str:
    """Percent-encode an entity path segment by segment (UTF-8), for use after ``/$hc/``.

    Characters allowed in an RFC 3986 path segment stay literal (``$`` included,
    like every official client); ``/`` separates segments. Leading/trailing
    ``/`` are dropped; empty, ``.`` and ``..`` segments are refused because HTTP
    stacks would collapse them, and a first segment ``$hc`` is refused because
    the HTTP form ``/{path}`` would then look like a WebSocket path.
    """
    if not isinstance(path, str):
        raise LocalProtocolError(f"The entity path must be a string, got {type(path).__name__}.")
    return _encoded_entity_path(path)


@lru_cache(maxsize=256)  # a process names few hybrid connections, each several times per connection
def _encoded_entity_path(path: str) -> str:
    stripped = path.strip("/")
    if not stripped:
        raise LocalProtocolError("The entity path is empty; name the hybrid connection (e.g. 'myhc').")
    segments = stripped.split("/")
    if segments[0].lower() == "$hc":
        raise LocalProtocolError(f"The entity path {path!r} starts with '$hc', which is reserved for WebSocket paths.")
    out = []
    for segment in segments:
        if segment == "":
            raise LocalProtocolError(f"The entity path {path!r} contains an empty segment ('//').")
        if segment in (".", ".."):
            raise LocalProtocolError(f"The entity path {path!r} contains a '.' or '..' segment.")
        out.append(_encode_raw(segment, _SEGMENT_SAFE, "entity path"))
    return "/".join(out)


#: Azure's limit on the length of a hybrid connection's name (its entity path).
MAX_ENTITY_PATH = 260


#: What Azure allows in a hybrid connection's name (nested names use '/').
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/")


def check_entity_name(name: str) -> str:
    """``name`` without surrounding slashes if Azure would accept it as a hybrid connection name.

    Stricter than :func:`encode_entity_path` (which takes any path, as the
    official clients do): for names a person types, in the CLI and the
    relay's configuration. Raises :class:`ProtocolError` saying why.
    """
    stripped = name.strip("/") if isinstance(name, str) else ""
    if not stripped or any(c not in _NAME_CHARS for c in stripped):
        raise LocalProtocolError(f"{name!r} is not a hybrid connection name: use letters, digits, '.', '-', '_' and '/' (e.g. 'db').")
    if len(stripped) > MAX_ENTITY_PATH:
        raise LocalProtocolError(f"{name[:40]!r}... is not a hybrid connection name: it has {len(stripped)} characters, "
                            f"at most {MAX_ENTITY_PATH} are allowed.")
    try:
        encode_entity_path(stripped)
    except ProtocolError as e:
        raise LocalProtocolError(f"{name!r} is not a hybrid connection name: {e.message}") from None
    return stripped


def entity_path_candidates(path: str) -> list[str]:
    """``a/b/c`` → ``['a/b/c', 'a/b', 'a']``: longest prefix first, for entity lookup.

    The relay resolves the entity as the longest registered prefix; the rest of
    the path is the suffix passed through to the listener (Hybrid Connections protocol,
    "Web Socket connect protocol"). Only prefixes of at most :data:`MAX_ENTITY_PATH`
    characters are candidates: no entity is longer, and a sender's deep path must not
    cost a string per segment (a 32 KB path of one-letter segments would be 250 MB of
    prefixes).
    """
    stripped = path.strip("/")
    head = stripped[: MAX_ENTITY_PATH + 1]
    ends = []
    end = head.find("/")
    while end != -1:
        ends.append(end)
        end = head.find("/", end + 1)
    if len(stripped) <= MAX_ENTITY_PATH:
        ends.append(len(stripped))
    return [stripped[:end] for end in reversed(ends) if end and stripped[end - 1] != "/"]


# --------------------------------------------------------------------------- queries


def _is_reserved_pair(pair: str) -> bool:
    key, sep, _ = pair.partition("=")
    return bool(sep) and key[: len(_RESERVED_PREFIX)].lower() == _RESERVED_PREFIX


def strip_reserved_query(query: str) -> str:
    """Drop every ``sb-hc-*=…`` pair, keeping everything else byte-for-byte
    (Hybrid Connections protocol, "Request message").

    A pair is dropped only if its key starts with ``sb-hc-`` (any case) and it
    contains ``=``; a bare ``sb-hc-undefined`` survives, as do empty pairs,
    duplicates and order. ``query`` is given without the leading ``?``.
    """
    return "&".join(pair for pair in query.split("&") if not _is_reserved_pair(pair))


def relative_target(target: str, entity_path: str) -> tuple[str, str]:
    """(request target a listener's application sees, its ``X-Forwarded-Prefix``).

    A listener serves its hybrid connection like a site at its root: the
    sender's target is shown relative to the hybrid connection's path
    (``/myhc/index.html`` → ``/index.html``, ``/$hc/myhc/room?x=1`` →
    ``/room?x=1``, ``/myhc`` → ``/``), and the path taken off (``/myhc``) is
    the prefix an application puts back in front of links it makes. Entity
    paths compare case-insensitively, as Azure's do, and only whole segments;
    any other target (``*``, an absolute URL) keeps its path. The query is kept
    as given (an accept's ``sb-hc-*`` pairs are the caller's to strip first).
    """
    prefix = "/" + encode_entity_path(entity_path)
    path, sep, query = target.partition("?")
    if path.startswith("/$hc/"):  # a WebSocket address: the relay's /$hc/ root first
        path = path[4:]
    folded, folded_prefix = path.lower(), prefix.lower()
    if folded == folded_prefix:
        path = "/"
    elif folded.startswith(folded_prefix + "/"):
        path = path[len(prefix):]
    elif not path:
        path = "/"
    return path + (sep + query if sep else ""), prefix


def _key_matches(key: str, name: str) -> bool:
    if name[: len(_RESERVED_PREFIX)].lower() == _RESERVED_PREFIX:
        return key.lower() == name.lower()
    return key == name


def query_value(query: str, name: str, *, form: bool = False) -> str | None:
    """Return the first value of ``name`` in a raw query, percent-decoded once, or None.

    Keys compare exactly, except ``sb-hc-*`` keys which compare case-insensitively.
    A bare key (no ``=``) yields ``""``, except for ``sb-hc-*`` names: a bare
    ``sb-hc-action`` is application query (:func:`strip_reserved_query` keeps
    it), not a reserved parameter. ``form=False`` (the default, used for
    ``sb-hc-token`` and ``sb-hc-id``) keeps ``+`` literal: a correctly encoded
    token never contains a raw ``+``, and one from a client that forgot to encode
    its ``sig`` is only right if ``+`` stays ``+``. ``form=True`` maps ``+`` to
    space, for ``sb-hc-statusDescription`` which .NET and Java form-encode.
    Malformed escapes raise :class:`ProtocolError` (400).
    """
    reserved = name[: len(_RESERVED_PREFIX)].lower() == _RESERVED_PREFIX
    for pair in query.split("&"):
        key, equals, value = pair.partition("=")
        if _key_matches(key, name) and (equals or not reserved):
            return percent_decode(value, plus=form, what=f"query parameter {name!r}")
    return None


def _app_query(query: str) -> str:
    if query.startswith("?"):
        query = query[1:]
    return strip_reserved_query(_encode_raw(query, _RAW_QUERY_SAFE, "query"))


def _suffix(suffix: str) -> str:
    suffix = _encode_raw(suffix, _RAW_SUFFIX_SAFE, "path suffix")
    if suffix and not suffix.startswith("/"):
        suffix = "/" + suffix
    return suffix


def _join_query(app_query: str, *pairs: str) -> str:
    parts = [app_query] if app_query else []
    parts.extend(pairs)
    return "&".join(parts)


# --------------------------------------------------------------------------- URL builders


def _hc_url(ns: Namespace, path: str, suffix: str, query: str) -> str:
    return f"{ns.ws_base}/$hc/{encode_entity_path(path)}{_suffix(suffix)}?{query}"


def _optional_pairs(tracking_id: str | None, token: str | None) -> list[str]:
    pairs = []
    if tracking_id is not None:
        pairs.append("sb-hc-id=" + encode_component(tracking_id))
    if token is not None:
        pairs.append("sb-hc-token=" + encode_component(token))
    return pairs


def listen_url(
    ns: Namespace, path: str, *, tracking_id: str | None = None, token: str | None = None, query: str = ""
) -> str:
    """The listener control-channel URL (Hybrid Connections protocol,
    "Listener control channel connection"): ``wss://ns/$hc/path?[query&]sb-hc-action=listen…``.

    ``query`` is raw (``sb-hc-*`` pairs in it are dropped); ``tracking_id`` and
    ``token`` are URL-encoded into ``sb-hc-id`` / ``sb-hc-token``.
    """
    q = _join_query(_app_query(query), "sb-hc-action=listen", *_optional_pairs(tracking_id, token))
    return _hc_url(ns, path, "", q)


def connect_url(
    ns: Namespace,
    path: str,
    *,
    suffix: str = "",
    query: str = "",
    tracking_id: str | None = None,
    token: str | None = None,
) -> str:
    """The sender WebSocket URL (Hybrid Connections protocol, "Web Socket connect protocol") with
    ``sb-hc-action=connect``; ``suffix`` is a raw extra path."""
    q = _join_query(_app_query(query), "sb-hc-action=connect", *_optional_pairs(tracking_id, token))
    return _hc_url(ns, path, suffix, q)


def http_url(ns: Namespace, path: str, *, suffix: str = "", query: str = "", token: str | None = None) -> str:
    """The HTTP sender URL (Hybrid Connections protocol, "HTTP request protocol"):
    ``https://ns/path{suffix}[?query][&sb-hc-token=…]`` — no ``$hc``."""
    q = _join_query(_app_query(query), *_optional_pairs(None, token))
    base = f"{ns.http_base}/{encode_entity_path(path)}{_suffix(suffix)}"
    return f"{base}?{q}" if q else base


def rendezvous_url(
    ns: Namespace, path: str, *, action: str, rendezvous_id: str, suffix: str = "", query: str = ""
) -> str:
    """A rendezvous address a relay hands out in ``accept``/``request``
    (Hybrid Connections protocol, "Accept handshake" and "Responding via rendezvous").

    For ``accept`` pass the sender's suffix and query: the .NET listener shows
    them to its application, minus ``sb-hc-*`` pairs.
    """
    if action not in ("accept", "request"):
        raise LocalProtocolError(f"A rendezvous action must be 'accept' or 'request', not {action!r}.")
    q = _join_query(_app_query(query), f"sb-hc-action={action}", "sb-hc-id=" + encode_component(rendezvous_id))
    return _hc_url(ns, path, suffix, q)


def _check_status(status_code: object) -> int:
    if isinstance(status_code, bool) or not isinstance(status_code, int) or not 100 <= status_code <= 999:
        raise LocalProtocolError(f"A reject status code must be an integer 100-999, not {status_code!r}.")
    return status_code


def reject_url(accept_address: str, status_code: int, description: str) -> str:
    """The URL a listener opens to reject (Hybrid Connections protocol, "Rejecting the socket"):
    the accept address plus status parameters.

    The description is form-encoded (space → ``+``) like .NET's
    ``WebUtility.UrlEncode``; CR and LF are removed first.
    """
    status_code = _check_status(status_code)
    if not isinstance(description, str):
        raise LocalProtocolError(f"A reject description must be a string, not {type(description).__name__}.")
    description = description.replace("\r", "").replace("\n", "")
    try:
        encoded = quote_plus(description, safe="!*()", encoding="utf-8", errors="strict")
    except UnicodeError:
        raise LocalProtocolError("The reject description contains a lone surrogate.") from None
    sep = "&" if "?" in accept_address else "?"
    if accept_address.endswith(("?", "&")):
        sep = ""
    return f"{accept_address}{sep}sb-hc-statusCode={status_code}&sb-hc-statusDescription={encoded}"


# --------------------------------------------------------------------------- relay side


@dataclass(frozen=True)
class RelayTarget:
    """An incoming request target as a relay sees it (Hybrid Connections protocol,
    "Web Socket connect protocol", "HTTP request protocol" and "Request message").

    ``path`` is percent-decoded, after ``/$hc/`` (``hybrid``) or after ``/``;
    ``app_query`` is what may be forwarded to a listener.
    """

    hybrid: bool
    path: str
    raw_path: str
    query: str
    app_query: str
    action: str | None
    tracking_id: str | None
    token: str | None
    status_code: int | None
    status_description: str | None

    def __repr__(self) -> str:
        # The token is a credential: keep it out of logs.
        token = None if self.token is None else "<redacted>"
        return (
            f"RelayTarget(hybrid={self.hybrid!r}, path={self.path!r}, raw_path={self.raw_path!r}, "
            f"app_query={self.app_query!r}, action={self.action!r}, tracking_id={self.tracking_id!r}, "
            f"token={token}, status_code={self.status_code!r}, status_description={self.status_description!r})"
        )


def _parse_status(raw: str | None) -> int | None:
    if raw is None:
        return None
    raw = raw.strip()
    if not _STATUS_RE.fullmatch(raw) or not 100 <= int(raw) <= 999:
        raise RemoteProtocolError(f"The reject status code {raw[:20]!r} is not a three-digit HTTP status.")
    return int(raw)


def _raw_value(query: str, name: str) -> str | None:
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if _key_matches(key, name):
            return value
    return None


_ABSOLUTE_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/?]*")
_SPACE_OR_CONTROL = re.compile("[\x00-\x20\x7f-\x9f]")


def parse_relay_target(target: str) -> RelayTarget:
    """Parse an origin-form (``/path?query``) or absolute-form request target.

    Control characters, whitespace, ``#``, malformed percent-escapes in the path
    or in ``sb-hc-id``/``sb-hc-token``, a non-numeric ``sb-hc-statusCode`` and an
    unknown ``sb-hc-action`` raise :class:`ProtocolError` with status 400.
    ``sb-hc-statusDescription`` is decoded leniently (it is only a reason phrase).
    """
    if not isinstance(target, str):
        raise LocalProtocolError(f"A request target must be a string, got {type(target).__name__}.")
    if _SPACE_OR_CONTROL.search(target):
        raise RemoteProtocolError("The request target contains whitespace or control characters.")
    _check_encodable(target, 400, "request target")
    if "#" in target:
        raise RemoteProtocolError("The request target contains a fragment ('#'), which HTTP does not allow.")
    match = _ABSOLUTE_RE.match(target)
    if match:
        target = target[match.end():]
        if not target.startswith("/"):
            target = "/" + target
    if not target.startswith("/"):
        raise RemoteProtocolError("The request target must start with '/'.")
    raw_path, _, query = target.partition("?")
    if raw_path.startswith("/$hc/") or raw_path == "/$hc":
        hybrid, rest = True, raw_path[5:]
    elif raw_path[:7].lower() == "/%24hc/" or raw_path.lower() == "/%24hc":
        hybrid, rest = True, raw_path[7:]
    else:
        hybrid, rest = False, raw_path[1:]
    path = percent_decode(rest, what="request path")
    # One pass over the query for every sb-hc-* parameter, as query_value
    # (first with "=", decoded) and _raw_value (first at all, raw) find them.
    app_pairs, reserved, bare = [], {}, {}
    if query:
        for pair in query.split("&"):
            key, equals, value = pair.partition("=")
            if key[:6].lower() != _RESERVED_PREFIX:
                app_pairs.append(pair)
                continue
            key = key.lower()
            if equals:
                reserved.setdefault(key, value)
            else:
                app_pairs.append(pair)  # a bare sb-hc-* key is the application's
                bare.setdefault(key, value)
    action = reserved.get("sb-hc-action")
    if action is not None:
        action = percent_decode(action, what="query parameter 'sb-hc-action'").lower()
        if action not in ACTIONS:
            raise RemoteProtocolError(
                f"Unknown sb-hc-action {action[:40]!r}; expected listen, connect, accept or request."
            )
    tracking_id, token = reserved.get("sb-hc-id"), reserved.get("sb-hc-token")
    description = _first_raw(query, reserved, bare, "sb-hc-statusdescription")
    return RelayTarget(
        hybrid=hybrid,
        path=path,
        raw_path=raw_path,
        query=query,
        app_query="&".join(app_pairs),
        action=action,
        tracking_id=None if tracking_id is None else percent_decode(tracking_id, what="query parameter 'sb-hc-id'"),
        token=None if token is None else percent_decode(token, what="query parameter 'sb-hc-token'"),
        status_code=_parse_status(_first_raw(query, reserved, bare, "sb-hc-statuscode")),
        status_description=None if description is None else _lenient_form_decode(description),
    )


def _first_raw(query: str, reserved: dict, bare: dict, key: str) -> str | None:
    """What :func:`_raw_value` finds for ``key``: the first pair with it, "=" or not."""
    if key in reserved and key in bare:
        return _raw_value(query, key)  # both forms present: whichever comes first (rare)
    return reserved.get(key, bare.get(key))


def reject_parameters(issued_query: str, received_query: str) -> tuple[int, str] | None:
    """Detect a reject on an accept address: ``(status, description)`` or None for an accept.

    ``sb-hc-statusCode``/``sb-hc-statusDescription`` (.NET, Java) count anywhere;
    Node's un-prefixed ``statusCode``/``statusDescription`` (Azure/azure-relay-node)
    count only among pairs appended after ``issued_query``, so a sender's own
    ``statusCode`` query parameter cannot turn an accept into a reject. A missing
    description gives ``""`` (the caller fills in a standard phrase). A bad status
    raises 400.
    """
    status = _raw_value(received_query, "sb-hc-statusCode")
    if status is not None:
        description = _raw_value(received_query, "sb-hc-statusDescription")
    else:
        if issued_query and received_query.startswith(issued_query):
            appended = received_query[len(issued_query):]
        elif not issued_query:
            appended = received_query
        else:
            return None
        status = _raw_value(appended, "statusCode")
        if status is None:
            return None
        description = _raw_value(appended, "statusDescription")
    code = _parse_status(status)
    assert code is not None
    return code, "" if description is None else _lenient_form_decode(description)


# --------------------------------------------------------------------------- Node-named helpers


def create_relay_base_uri(namespace: Namespace | str, path: str) -> str:
    """Node's base URI ``wss://{host}:443/$hc/{path}`` (explicit ``:443`` like hyco-ws).

    With an explicit port or ``secure=False`` that port and scheme are used.
    """
    ns = _as_namespace(namespace)
    scheme = "wss" if ns.secure else "ws"
    return f"{scheme}://{ns._host_text}:{ns.effective_port}/$hc/{encode_entity_path(path)}"


def _node_uri(namespace: Namespace | str, path: str, action: str, token: str | None, id: str | None) -> str:
    uri = create_relay_base_uri(namespace, path) + "?sb-hc-action=" + action
    if token is not None:
        uri += "&sb-hc-token=" + encode_component(token)
    if id is not None:
        uri += "&sb-hc-id=" + encode_component(id)
    return uri


def create_relay_listen_uri(
    namespace: Namespace | str, path: str, token: str | None = None, id: str | None = None
) -> str:
    """Node's ``createRelayListenUri``: ``…?sb-hc-action=listen[&sb-hc-token=…][&sb-hc-id=…]``."""
    return _node_uri(namespace, path, "listen", token, id)


def create_relay_send_uri(
    namespace: Namespace | str, path: str, token: str | None = None, id: str | None = None
) -> str:
    """Node's ``createRelaySendUri``: like the listen URI with ``sb-hc-action=connect``."""
    return _node_uri(namespace, path, "connect", token, id)


def create_relay_http_uri(namespace: Namespace | str, path: str) -> str:
    """Node's ``createRelayHttpsUri``: ``https://{host}/{path}`` (port only when explicit)."""
    ns = _as_namespace(namespace)
    return f"{ns.http_base}/{encode_entity_path(path)}"


def append_relay_token(uri: str, token: str, id: str | None = None) -> str:
    """Append ``sb-hc-token`` (and ``sb-hc-id``) to a URI with ``?`` or ``&`` as needed."""
    if not isinstance(uri, str):
        raise LocalProtocolError(f"The URI must be a string, got {type(uri).__name__}.")
    if uri.endswith(("?", "&")):
        sep = ""
    else:
        sep = "&" if "?" in uri else "?"
    uri = f"{uri}{sep}sb-hc-token={encode_component(token)}"
    if id is not None:
        uri += "&sb-hc-id=" + encode_component(id)
    return uri
