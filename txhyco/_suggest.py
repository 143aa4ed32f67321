"""One wording for a name nobody knows: the relay's TOML keys, ``hyco:`` options.

A misspelt setting must stop the program with a sentence that shows the fix,
never be ignored (an ignored ``rigths`` once widened a rule to every right).
"""
from __future__ import annotations

import difflib
from typing import Iterable


def shown(name: object, limit: int = 40) -> str:
    """``name`` quoted for a message, cut to ``limit`` characters (input can be anything)."""
    text = repr(name) if isinstance(name, str) else repr(str(name))
    return text if len(text) <= limit + 2 else text[: limit + 1] + "...'"


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name ``name`` most likely meant: same letters in another case, else a close spelling."""
    known = list(known)
    for candidate in known:
        if candidate.lower() == name.lower():
            return candidate
    lowered = {candidate.lower(): candidate for candidate in known}
    matches = difflib.get_close_matches(name.lower(), list(lowered), n=1)
    return lowered[matches[0]] if matches else None


def unknown_name(what: str, name: str, known: Iterable[str]) -> str:
    """``unknown setting 'rigths' (did you mean 'rights'?); known settings: key, name, rights``."""
    known = sorted(known)
    guess = closest(name, known) if isinstance(name, str) else None
    hint = f" (did you mean {guess!r}?)" if guess else ""
    return f"unknown {what} {shown(name)}{hint}; known {what}s: {', '.join(known)}"
