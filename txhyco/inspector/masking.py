"""Secrets kept out of the inspector: header values and query parameters masked at capture.

What a listener relays may carry credentials: the relay's own
(``ServiceBusAuthorization``, ``sb-hc-token``) and the application's
(``Authorization``, ``Cookie``). The inspector keeps only the masked form,
so neither its page, its JSON API nor an export can show them.
"""
from __future__ import annotations

from urllib.parse import unquote

#: What a masked value reads as.
MASK = "[masked]"

#: Header names (lowercase) whose values are never kept.
SECRET_HEADERS = frozenset({
    "servicebusauthorization", "authorization", "proxy-authorization", "cookie", "set-cookie",
})

#: Query parameter names (lowercase, percent-decoded) whose values are never kept.
SECRET_PARAMETERS = frozenset({"sb-hc-token", "servicebusauthorization", "authorization"})


def mask_headers(pairs) -> list[tuple[str, str]]:
    """``[(name, value), ...]`` with secret values replaced by :data:`MASK` (str or bytes in, str out)."""
    out = []
    append = out.append
    for name, value in pairs:
        if name.__class__ is not str:
            name = name.decode("latin-1")
        if name.lower() in SECRET_HEADERS:
            value = MASK
        elif value.__class__ is not str:
            value = value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)
        append((name, value))
    return out


def mask_target(target: str) -> str:
    """A request target with the values of secret query parameters masked (the rest untouched)."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    lowered = query.lower()
    if not any(name in lowered or "%" in lowered for name in SECRET_PARAMETERS):
        return target
    parts = query.split("&")
    for i, part in enumerate(parts):
        name, eq, _value = part.partition("=")
        if unquote(name).strip().lower() in SECRET_PARAMETERS:
            parts[i] = name + "=" + MASK
    return path + "?" + "&".join(parts)


def is_masked(value: str) -> bool:
    return value == MASK
