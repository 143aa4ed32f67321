"""One captured HTTP exchange exported: a ``curl`` command line, and a HAR 1.2 log.

Both are made from the capture alone, so secrets are already masked in
them (:mod:`txhyco.inspector.masking`): a ``curl`` command that needs one
says ``[masked]`` where it goes.
"""
from __future__ import annotations

import base64
import datetime
import shlex
from urllib.parse import parse_qsl, urlsplit

from txhyco.inspector.capture import HttpCapture
from txhyco.inspector.views import content_type

# Headers curl writes itself from the URL and body.
_CURL_OWN = frozenset({"host", "content-length", "transfer-encoding", "connection"})


def exchange_url(capture: HttpCapture) -> str:
    """The URL the sender asked for: the relay's, the hybrid connection's path, the target."""
    hc = capture.inspector.hc
    if hc is None:
        return "http://localhost" + capture.target
    from txhyco.protocol.addresses import encode_entity_path

    ns = hc.namespace
    return f"{'https' if ns.secure else 'http'}://{ns.authority}/{encode_entity_path(hc.path)}{capture.target}"


def _shell_bytes(data: bytes) -> str:
    """``data`` as one shell word: single-quoted text, or bash's ``$'...'`` for anything else."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\n\t" for c in text):
        return shlex.quote(text)
    return "$'" + "".join(f"\\x{b:02x}" for b in data) + "'"


def curl_command(capture: HttpCapture) -> str:
    """A ``curl`` command that sends the captured request again (through the relay)."""
    lines = []
    body = capture.request_body
    if body.truncated:
        lines.append(f"# the request body was {body.size} bytes; only the first {len(body.kept)} were kept")
    words = ["curl", "-X", shlex.quote(capture.method or "GET"), shlex.quote(exchange_url(capture))]
    for name, value in capture.request_headers:
        if name.lower() in _CURL_OWN:
            continue
        words += ["-H", _shell_bytes(f"{name}: {value}".encode("utf-8"))]
    if body.size:
        words += ["--data-binary", _shell_bytes(body.kept)]
    lines.append(" \\\n  ".join(_pairs(words)))
    return "\n".join(lines) + "\n"


def _pairs(words: list[str]) -> list[str]:
    """The words of a command, an option and its value on one line."""
    out, i = [" ".join(words[:4])], 4
    while i < len(words):
        out.append(f"{words[i]} {words[i + 1]}")
        i += 2
    return out


def _har_headers(pairs) -> list[dict]:
    return [{"name": name, "value": value} for name, value in pairs]


def _har_time(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def har_entry(capture: HttpCapture) -> dict:
    url = exchange_url(capture)
    request_type = content_type(capture.request_headers)
    request = {
        "method": capture.method,
        "url": url,
        "httpVersion": "HTTP/1.1",
        "cookies": [],
        "headers": _har_headers(capture.request_headers),
        "queryString": [{"name": n, "value": v} for n, v in parse_qsl(urlsplit(url).query, keep_blank_values=True)],
        "headersSize": -1,
        "bodySize": capture.request_body.size,
    }
    if capture.request_body.size:
        kept = capture.request_body.kept
        try:
            text = kept.decode("utf-8")
            request["postData"] = {"mimeType": request_type, "text": text}
        except UnicodeDecodeError:
            request["postData"] = {"mimeType": request_type, "text": base64.b64encode(kept).decode("ascii"),
                                   "comment": "base64"}
    kept = capture.response_body.kept
    response_type = content_type(capture.response_headers)
    content = {"size": capture.response_body.size, "mimeType": response_type}
    try:
        content["text"] = kept.decode("utf-8")
    except UnicodeDecodeError:
        content.update(text=base64.b64encode(kept).decode("ascii"), encoding="base64")
    if capture.response_body.truncated:
        content["comment"] = f"only the first {len(kept)} bytes were kept"
    location = next((v for n, v in capture.response_headers if n.lower() == "location"), "")
    duration = round((capture.duration or 0.0) * 1000, 3)
    return {
        "startedDateTime": _har_time(capture.started),
        "time": duration,
        "request": request,
        "response": {
            "status": capture.status or 0,
            "statusText": capture.reason or "",
            "httpVersion": "HTTP/1.1",
            "cookies": [],
            "headers": _har_headers(capture.response_headers),
            "content": content,
            "redirectURL": location,
            "headersSize": -1,
            "bodySize": capture.response_body.size,
        },
        "cache": {},
        "timings": {"send": 0, "wait": duration, "receive": 0},
        **({"comment": capture.error} if capture.error else {}),
    }


def har_log(captures) -> dict:
    """A HAR 1.2 document of ``captures`` (HTTP ones; others are left out)."""
    from txhyco import __version__

    return {"log": {
        "version": "1.2",
        "creator": {"name": "txhyco inspector", "version": __version__},
        "entries": [har_entry(c) for c in captures if isinstance(c, HttpCapture)],
    }}
