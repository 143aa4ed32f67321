"""Captures as the JSON API shows them: a summary for the list, a detail for one exchange.

Bodies go out as ``{"size", "kept", "truncated", "contentType", "encoding",
"data"}``: ``encoding`` is ``utf-8`` (``data`` is the text) when the kept
bytes are UTF-8 text (no control characters, not of a binary content type),
else ``base64``. The page decides how to show them (JSON
pretty-printed, text, an image, hex).
"""
from __future__ import annotations

import base64
import re

from txhyco.inspector.capture import Capture, HttpCapture, WebSocketCapture


# Control characters no text has (tab, line breaks and form feed aside).
_BINARY_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
# Content types whose bodies are shown as bytes even when they decode.
_BINARY_TYPES = ("application/octet-stream", "image/", "audio/", "video/", "application/zip", "application/gzip")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def content_type(headers) -> str:
    for name, value in headers:
        if name.lower() == "content-type":
            return value
    return ""


def body_json(kept: bytes, size: int, ctype: str = "") -> dict:
    out = {"size": size, "kept": len(kept), "truncated": size > len(kept), "contentType": ctype}
    try:
        text = kept.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    lowered = ctype.lower()
    binary_type = lowered.startswith(_BINARY_TYPES) and "svg" not in lowered
    if text is not None and not binary_type and not _BINARY_CONTROLS.search(text):
        out.update(encoding="utf-8", data=text)
    else:
        out.update(encoding="base64", data=base64.b64encode(kept).decode("ascii"))
    return out


def summary(capture: Capture) -> dict:
    out = {
        "id": capture.id,
        "kind": capture.kind,
        "time": capture.started,
        "method": capture.method,
        "path": capture.target,
        "status": capture.status,
        "reason": capture.reason,
        "durationMs": _ms(capture.duration),
        "requestSize": capture.request_size,
        "responseSize": capture.response_size,
        "sender": capture.sender,
        "state": capture.state,
        "error": capture.error,
    }
    if isinstance(capture, WebSocketCapture):
        out["messages"] = capture.message_count
    else:
        out["replays"] = len(capture.replays)
    return out


def detail(capture: Capture) -> dict:
    out = summary(capture)
    out["request"] = {"headers": [list(p) for p in capture.request_headers]}
    out["response"] = {"headers": [list(p) for p in capture.response_headers]}
    if isinstance(capture, HttpCapture):
        out["request"]["body"] = body_json(capture.request_body.kept, capture.request_body.size,
                                           content_type(capture.request_headers))
        out["response"]["body"] = body_json(capture.response_body.kept, capture.response_body.size,
                                            content_type(capture.response_headers))
        out["replays"] = list(capture.replays)
    else:
        out["messages"] = [
            {"time": m["time"], "direction": m["direction"], "kind": m["kind"],
             **body_json(m["kept"], m["size"], "application/octet-stream" if m["kind"] == "binary" else "")}
            for m in capture.messages
        ]
        out["messageCount"] = capture.message_count
        out["unreadable"] = capture.unreadable
    return out
