"""Who may use the inspector's page and API: this machine's browser, on the page's own origin.

The page can replay requests to the application behind the listener, so
another web site open in the same browser must not be able to drive it:

- ``Host`` must be ``localhost`` or an IP address (a DNS name pointed at
  127.0.0.1 -- DNS rebinding -- is refused);
- on the API, an ``Origin`` must be the page's own (``http://`` + Host),
  and ``Sec-Fetch-Site``, when the browser sends it, ``same-origin`` or
  ``none`` (typed in the address bar);
- a ``POST`` must be ``application/json``, which a cross-site form cannot
  send and a cross-site script can only send after a CORS preflight that is
  never answered with permission.
"""
from __future__ import annotations

import ipaddress

ALLOWED_METHODS = (b"GET", b"POST")


def host_allowed(host: str) -> bool:
    """Whether a ``Host`` header names this machine by address or as ``localhost``."""
    host = host.strip()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return False
        name, rest = host[1:end], host[end + 1:]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return False
    else:
        name, sep, port = host.rpartition(":")
        if not sep:
            name = port
        elif not port.isdigit():
            return False
    if name.lower() == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def refusal(method: bytes, path: bytes, headers) -> tuple[int, str] | None:
    """(status, why) if a request must be refused, else None; ``headers.get(name)`` gives str or None."""
    if method not in ALLOWED_METHODS:
        return 405, "method not allowed"
    host = headers.get("host")
    if not host or not host_allowed(host):
        return 403, "the inspector answers only requests for localhost or an IP address"
    if not path.startswith(b"/api/"):
        return None
    origin = headers.get("origin")
    if origin is not None and origin != f"http://{host.strip()}":
        return 403, "cross-origin requests are refused"
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return 403, "cross-site requests are refused"
    if method == b"POST":
        media_type = (headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            return 415, "POST needs Content-Type: application/json"
    return None
