"""The inspector's page: one HTML file, its script and its style sheet, shipped with the package.

No build step, nothing from a CDN: the files under ``static/`` are served
as they are (read once). The script builds the page from the JSON API
(:mod:`txhyco.inspector.api`) and never puts captured text into HTML
(``textContent`` only), and the page's Content-Security-Policy allows only
these files' scripts and styles.
"""
from __future__ import annotations

import os

_STATIC = os.path.join(os.path.dirname(__file__), "static")
#: path on the page's site -> (file under static/, content type)
ASSETS = {
    b"/": ("index.html", b"text/html; charset=utf-8"),
    b"/index.html": ("index.html", b"text/html; charset=utf-8"),
    b"/inspector.js": ("inspector.js", b"text/javascript; charset=utf-8"),
    b"/inspector.css": ("inspector.css", b"text/css; charset=utf-8"),
}
_cache: dict[str, bytes] = {}


def asset(path: bytes) -> tuple[bytes, bytes] | None:
    """(body, content type) of the page's file at ``path``, or None."""
    entry = ASSETS.get(path)
    if entry is None:
        return None
    name, ctype = entry
    body = _cache.get(name)
    if body is None:
        with open(os.path.join(_STATIC, name), "rb") as f:
            body = _cache[name] = f.read()
    return body, ctype
