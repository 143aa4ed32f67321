"""The ``hyco:`` endpoint string grammar, parsed without loading the reactor, Autobahn or twisted.web.

::

    hyco:NAMESPACE:PATH[:keyName=NAME][:key=KEY | :keyFile=FILE | :keyEnv=VAR]
        [:tls=yes|no][:caFile=FILE][:mode=auto|http|websocket|stream][:keepAlive=SECONDS][:proxy=URL|none]
        [:inspect=yes|PORT|ENDPOINT][:inspectKeep=N][:inspectBodyCap=BYTES]
    hyco:connectionStringEnv=VAR[:path=PATH][:caFile=FILE][:mode=...][:keepAlive=SECONDS][:proxy=URL|none]

``proxy`` is an HTTP proxy (``http\\://proxy\\:3128``) every connection to the
relay goes through, or ``none`` for direct ones; without it, the
environment's ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``/``NO_PROXY`` decide.
``NAMESPACE`` is ``myns``, a full host name, or ``host\\:port`` (Twisted
escapes ``:`` with a backslash). ``tls`` defaults to yes. Prefer ``keyFile``
or ``keyEnv`` to ``key``: endpoint strings end up in process listings and
config files.

Option names are matched ignoring case (``keepalive=30`` is ``keepAlive=30``).
Otherwise strict on purpose: an unknown or misspelt option (``keepAlve=30``:
"did you mean keepAlive?"), the same option twice, an option without a value, a number out of range, a key file that is not one
line, a CA file without a certificate or ``inspect=`` on a client endpoint is an :class:`EndpointStringError`
(a ``ValueError``), never ignored.
"""
from __future__ import annotations

import math
import os

from txhyco._optionfiles import OptionFileError, check_ca_file, read_key_file
from txhyco._suggest import unknown_name
from txhyco.protocol.addresses import Namespace
from txhyco.protocol.connection_string import ConnectionString
from txhyco.protocol.errors import ProtocolError

USAGE = (
    "usage: hyco:NAMESPACE:PATH[:keyName=NAME][:keyFile=FILE|:keyEnv=VAR|:key=KEY]"
    "[:tls=yes|no][:caFile=FILE][:mode=auto|http|websocket|stream][:keepAlive=SECONDS][:proxy=URL|none]"
    "[:inspect=yes|PORT|ENDPOINT]"
    "  or  hyco:connectionStringEnv=VAR[:path=PATH][:caFile=FILE][:mode=...][:keepAlive=SECONDS][:proxy=URL|none]"
    "  (write host:port as host\\:port)"
)
MODES = ("auto", "http", "websocket", "stream")
DEFAULT_KEY_NAME = "RootManageSharedAccessKey"
_OPTIONS = {"keyName", "key", "keyFile", "keyEnv", "tls", "caFile", "mode", "keepAlive", "connectionStringEnv", "path",
            "proxy", "inspect", "inspectKeep", "inspectBodyCap"}
_BY_FOLDED_NAME = {name.lower(): name for name in _OPTIONS}
#: keepAlive's bounds in seconds: a ping interval beyond a day would never notice a dead relay.
MAX_KEEPALIVE = 86400.0


class EndpointStringError(ProtocolError):
    """A malformed ``hyco:`` string; the message says what is wrong, then the usage."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"{problem} -- {USAGE}")


def _yes_no(value: str, name: str) -> bool:
    lowered = value.lower()
    if lowered in ("yes", "true", "1", "on"):
        return True
    if lowered in ("no", "false", "0", "off"):
        return False
    raise EndpointStringError(f"{name}={value!r} must be yes or no")


def _canonical_names(kwargs: dict) -> dict:
    """``kwargs`` with option names spelt as documented, whatever their case."""
    named: dict = {}
    for option, value in kwargs.items():
        name = _BY_FOLDED_NAME.get(option.lower(), option)
        if name in named:
            raise EndpointStringError(f"{name}= is given twice")
        named[name] = value
    return named


def parse_hyco(args: tuple, kwargs: dict, environ=None) -> dict:
    """Turn the parts Twisted split a ``hyco:`` string into keyword arguments for
    :meth:`txhyco.address.HybridConnection.from_args` plus ``mode``, ``keepalive`` and
    ``inspect`` (a :class:`txhyco.inspector.options.InspectOptions`, or None).
    """
    environ = os.environ if environ is None else environ
    kwargs = _canonical_names(kwargs)
    for option in sorted(kwargs):
        if option not in _OPTIONS:
            raise EndpointStringError(unknown_name("option", option, _OPTIONS))
    for option, value in sorted(kwargs.items()):
        if not value:
            raise EndpointStringError(f"{option}= has no value")
    mode = kwargs.get("mode", "auto")
    if mode not in MODES:
        raise EndpointStringError(f"mode={mode!r} is not one of {', '.join(MODES)}")
    keepalive = None
    if "keepAlive" in kwargs:
        try:
            keepalive = float(kwargs["keepAlive"])
        except ValueError:
            raise EndpointStringError(f"keepAlive={kwargs['keepAlive']!r} is not a number of seconds") from None
        if not (math.isfinite(keepalive) and 0 < keepalive <= MAX_KEEPALIVE):
            raise EndpointStringError(f"keepAlive={kwargs['keepAlive']!r} must be more than 0 and at most {MAX_KEEPALIVE:g} seconds")
    ca_file = kwargs.get("caFile")
    if ca_file is not None:
        try:
            check_ca_file(ca_file)
        except OptionFileError as e:
            raise EndpointStringError(f"caFile: {e}") from None
    result: dict = {"mode": mode, "keepalive": keepalive, "ca_file": ca_file, "inspect": _inspect_options(kwargs, mode)}
    if "proxy" in kwargs:
        from txhyco.protocol.proxy import ProxyPolicy

        try:
            result["proxy"] = ProxyPolicy.from_setting(kwargs["proxy"], environ)
        except ProtocolError as e:
            raise EndpointStringError(e.message) from None

    if "connectionStringEnv" in kwargs:
        if args:
            raise EndpointStringError("connectionStringEnv= replaces NAMESPACE:PATH; give one or the other")
        clashing = {"keyName", "key", "keyFile", "keyEnv", "tls"} & set(kwargs)
        if clashing:
            raise EndpointStringError(f"{', '.join(sorted(clashing))} cannot be combined with connectionStringEnv=")
        var = kwargs["connectionStringEnv"]
        text = environ.get(var)
        if not text:
            raise EndpointStringError(f"the environment variable {var} (connectionStringEnv) is not set")
        try:
            connection_string = ConnectionString.parse(text)
        except ProtocolError as e:
            raise EndpointStringError(f"the connection string in {var} is invalid: {e.message}") from None
        path = kwargs.get("path") or connection_string.entity_path
        if not path:
            raise EndpointStringError(f"no path: add :path=NAME or EntityPath=NAME to the connection string in {var}")
        result.update(connection_string=connection_string, path=path)
        return result

    if len(args) != 2:
        raise EndpointStringError(f"expected NAMESPACE:PATH, got {len(args)} positional part(s)")
    namespace_text, path = args
    if "path" in kwargs:
        raise EndpointStringError("path= is only for the connectionStringEnv= form")
    if not path.strip("/"):
        raise EndpointStringError("PATH (the hybrid connection name) is empty")
    secure = _yes_no(kwargs.get("tls", "yes"), "tls")
    try:
        namespace = Namespace.parse(namespace_text, secure=secure)
    except ProtocolError as e:
        raise EndpointStringError(f"NAMESPACE {namespace_text!r} is invalid: {e.message}") from None
    given = [k for k in ("key", "keyFile", "keyEnv") if k in kwargs]
    if len(given) > 1:
        raise EndpointStringError(f"give only one of key=, keyFile=, keyEnv= (got {', '.join(given)})")
    key = None
    if given == ["key"]:
        key = kwargs["key"]
    elif given == ["keyFile"]:
        try:
            key = read_key_file(kwargs["keyFile"])
        except OptionFileError as e:
            raise EndpointStringError(f"keyFile: {e}") from None
    elif given == ["keyEnv"]:
        key = environ.get(kwargs["keyEnv"])
        if not key:
            raise EndpointStringError(f"the environment variable {kwargs['keyEnv']} (keyEnv) is not set")
    if not key:
        raise EndpointStringError("no key: add :keyFile=FILE or :keyEnv=VAR (or :key=KEY)")
    result.update(namespace=namespace, path=path, key_name=kwargs.get("keyName", DEFAULT_KEY_NAME), key=key)
    return result


def _inspect_options(kwargs: dict, mode: str):
    """The inspector's settings (``inspect=``, ``inspectKeep=``, ``inspectBodyCap=``), or None."""
    from txhyco.inspector.options import MAX_BODY_CAP, MAX_LIMIT, InspectOptionError, InspectOptions, inspect_endpoint, whole_number

    try:
        endpoint = inspect_endpoint(kwargs["inspect"]) if "inspect" in kwargs else None
        if endpoint is None:
            if "inspectKeep" in kwargs or "inspectBodyCap" in kwargs:
                raise InspectOptionError("inspectKeep= and inspectBodyCap= go with inspect=")
            return None
        if mode not in ("auto", "http"):
            raise InspectOptionError(f"inspect= needs http mode, not mode={mode}")
        options = InspectOptions(endpoint=endpoint)
        if "inspectKeep" in kwargs:
            options = InspectOptions(endpoint, whole_number(kwargs["inspectKeep"], "inspectKeep", 1, MAX_LIMIT), options.body_cap)
        if "inspectBodyCap" in kwargs:
            options = InspectOptions(endpoint, options.limit, whole_number(kwargs["inspectBodyCap"], "inspectBodyCap", 0, MAX_BODY_CAP))
    except InspectOptionError as e:
        raise EndpointStringError(str(e)) from None
    return options
