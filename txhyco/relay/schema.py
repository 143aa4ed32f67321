"""Declared tables for the relay's TOML: every key known, every value typed and in range.

A table of the configuration is a :class:`Table`: its title as the file
writes it (``[limits]``, ``[[rules]]``) and one :class:`Setting` per key.
:meth:`Table.read` refuses a key the table does not declare, naming the
table, the key, the closest known key and all of them, and runs every
value's check, so a table added later is as strict as the others by being
declared. Errors are :class:`~txhyco.protocol.errors.ProtocolError`, one
sentence each; a secret (a rule's key) is never repeated in one.
"""
from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from txhyco._suggest import shown, unknown_name
from txhyco.protocol.errors import LocalProtocolError


#: How errors name the document's own (unnamed) table.
TOP_LEVEL = "the top level"


class Invalid(Exception):
    """A value's problem, worded to follow its key: ``'maxListeners' must be ...``."""


#: A value check: the value (and where it is, for nested tables) in, the value to use out; raises Invalid.
Check = Callable[[Any, str], Any]


def kind(value: Any) -> str:
    """What a value is, in TOML's words."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, (datetime.date, datetime.time)):
        return "a date or time"
    return type(value).__name__


@dataclass(frozen=True)
class Setting:
    """One key of a table: how its value is checked, and where the result goes."""

    check: Check
    #: the keyword the table's ``build`` gets it as
    field: str
    required: bool = False


class Table:
    """A TOML table whose keys are all declared; :meth:`read` checks one and builds its value."""

    def __init__(self, title: str, settings: Mapping[str, Setting], build: Callable[..., Any] = dict) -> None:
        self.title = title
        self.settings = dict(settings)
        self.build = build

    def read(self, raw: Any, where: str | None = None) -> Any:
        """``build(**checked values)`` for the table ``raw``, found at ``where`` (default: its title)."""
        where = where or self.title
        if not isinstance(raw, Mapping):
            raise LocalProtocolError(f"{where} must be a table, not {kind(raw)}.")
        for key in raw:
            if key not in self.settings:
                raise LocalProtocolError(f"{where}: {unknown_name('setting', key, self.settings)}.")
        fields: dict[str, Any] = {}
        given_as: dict[str, str] = {}
        for key, setting in self.settings.items():
            if key not in raw:
                continue
            if setting.field in fields:  # two spellings of one setting
                raise LocalProtocolError(f"{where}: give {given_as[setting.field]!r} or {key!r}, not both.")
            try:
                fields[setting.field] = setting.check(raw[key], where)
            except Invalid as e:
                raise LocalProtocolError(f"{where}: {key!r} {e}.") from None
            given_as[setting.field] = key
        for key, setting in self.settings.items():
            if setting.required and setting.field not in fields:
                raise LocalProtocolError(f"{where} needs {key!r}.")
        return self.build(**fields)


# -- value checks ------------------------------------------------------------------


def _number(value: int | float) -> str:
    # Python refuses to print an integer of thousands of digits.
    return f"{value:g}" if isinstance(value, float) or abs(value) < 10**15 else "a number that large"


def boolean() -> Check:
    def check(value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise Invalid(f"must be true or false, not {kind(value)}")
        return value

    return check


def whole(low: int, high: int, *, zero: str | None = None) -> Check:
    """An integer in ``low..high``; with ``zero``, 0 is allowed too and means that."""

    def check(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not (low <= value <= high or (zero and value == 0)):
            got = f"not {_number(value)}" if isinstance(value, int) and not isinstance(value, bool) else f"not {kind(value)}"
            also = f" (or 0 for {zero})" if zero else ""
            raise Invalid(f"must be a whole number from {low} to {high}{also}, {got}")
        return value

    return check


def seconds(low: float, high: float, *, low_included: bool = False) -> Check:
    """A number of seconds (integer or float) above ``low`` (or from it) up to ``high``."""

    def check(value: Any, where: str) -> float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or not (value >= low if low_included else value > low) or value > high:
            lower = f"from {low:g}" if low_included else f"greater than {low:g}"
            got = f"not {_number(value)}" if number else f"not {kind(value)}"
            raise Invalid(f"must be a number of seconds {lower} and at most {high:g}, {got}")
        return float(value)

    return check


def text(
    *, max_length: int, empty: bool = False, secret: bool = False, valid: Callable[[str], str | None] | None = None
) -> Check:
    """A string of at most ``max_length`` characters (non-empty unless ``empty``).

    ``valid`` returns what is wrong with it or None; with ``secret`` the
    message does not quote the value.
    """

    def check(value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise Invalid(f"must be a string, not {kind(value)}")
        if not value and not empty:
            raise Invalid("must not be empty")
        if len(value) > max_length:
            raise Invalid(f"must be at most {max_length} characters, not {len(value)}")
        problem = valid(value) if valid else None
        if problem:
            raise Invalid(problem if secret else f"{problem} ({shown(value)})")
        return value

    return check


def array(item: Check, *, max_items: int = 1000) -> Check:
    """A TOML array of values that each pass ``item``."""

    def check(value: Any, where: str) -> list:
        if not isinstance(value, (list, tuple)):
            raise Invalid(f"must be an array, not {kind(value)}")
        if len(value) > max_items:
            raise Invalid(f"may hold at most {max_items} entries, not {len(value)}")
        result = []
        for position, entry in enumerate(value, 1):
            try:
                result.append(item(entry, where))
            except Invalid as e:
                raise Invalid(f"entry {position} {e}") from None
        return result

    return check


def tables(table: Table, *, named_by: str = "name", max_items: int = 10000) -> Check:
    """An array of ``table`` (``[[title]]`` in TOML), its entries told apart by their ``named_by`` key.

    Each entry is labelled by that key where it has a usable one (else by its
    position), and two entries with the same one (as built) are refused.
    """

    def check(value: Any, where: str) -> list:
        if not isinstance(value, (list, tuple)):
            raise Invalid(f"must be an array of tables ({table.title} in TOML), not {kind(value)}")
        if len(value) > max_items:
            raise Invalid(f"may hold at most {max_items} tables, not {len(value)}")
        inside = "" if where == TOP_LEVEL else f" of {where}"
        result, seen = [], set()
        for position, raw in enumerate(value, 1):
            name = raw.get(named_by) if isinstance(raw, Mapping) else None
            label = f"{table.title} {shown(name)}" if isinstance(name, str) and name else f"{table.title} #{position}"
            built = table.read(raw, label + inside)
            identity = getattr(built, named_by, name)  # as built: '/orders/' is 'orders'
            if identity in seen:
                raise LocalProtocolError(f"{table.title}{inside}: two entries are named {shown(identity)}; names must differ.")
            seen.add(identity)
            result.append(built)
        return result

    return check


def table(inner: Table) -> Check:
    """A sub-table (``[title]`` in TOML)."""

    def check(value: Any, where: str) -> Any:
        return inner.read(value)

    return check
