"""Azure-style connection strings (README, "Pointing it at Azure").

``Endpoint=sb://myns.servicebus.windows.net/;SharedAccessKeyName=…;SharedAccessKey=…;EntityPath=…``
or with ``SharedAccessSignature=…``; ``UseDevelopmentEmulator=true`` (the Azure
emulators' convention) means plain ``ws://``/``http://`` to a local relay.

``Authentication=Managed Identity`` asks for Entra ID tokens from the machine's
managed identity, as Microsoft.Azure.Relay's ``RelayConnectionStringBuilder``
reads it (spaces ignored, any case); ``ClientId=GUID`` picks a user-assigned
identity, and ``Authentication=Default`` uses azure-identity's
``DefaultAzureCredential`` (both txhyco's additions). Any other value is an
error (Microsoft's builder silently falls back to SAS).

Endpoint schemes: ``sb://`` is canonical. ``wss://``/``https://`` and
``ws://``/``http://`` are accepted too and kept as written; for those the
scheme decides TLS, for ``sb://`` ``UseDevelopmentEmulator`` does.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from .addresses import Namespace
from .errors import LocalProtocolError
from .tokens import SasKeyTokenProvider, StaticTokenProvider, TokenProvider

__all__ = ["ConnectionString"]

_KNOWN = {
    "endpoint": "Endpoint",
    "sharedaccesskeyname": "SharedAccessKeyName",
    "sharedaccesskey": "SharedAccessKey",
    "sharedaccesssignature": "SharedAccessSignature",
    "entitypath": "EntityPath",
    "usedevelopmentemulator": "UseDevelopmentEmulator",
    "authentication": "Authentication",
    "clientid": "ClientId",
}
_REDACTED = "<redacted>"
#: ``Authentication=`` values (spaces removed, case folded) and what each means.
AUTHENTICATIONS = {"managedidentity": "ManagedIdentity", "default": "Default"}
#: How each is written back.
_AUTHENTICATION_TEXT = {"ManagedIdentity": "Managed Identity", "Default": "Default"}
_GUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _check_value(value: str | None, name: str) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise LocalProtocolError(f"The connection string's {name} must be a string, not {type(value).__name__}.")
    if not value:
        raise LocalProtocolError(f"The connection string's {name} is empty.")
    if ";" in value or value != value.strip():
        raise LocalProtocolError(f"The connection string's {name} cannot contain ';' or leading/trailing whitespace.")
    try:
        value.encode("utf-8")
    except UnicodeError:
        raise LocalProtocolError(f"The connection string's {name} contains characters that are not valid Unicode.") from None


@dataclass(frozen=True, repr=False)
class ConnectionString:
    """A parsed connection string. ``repr``/``str`` never show the key or signature."""

    endpoint: str
    shared_access_key_name: str | None = None
    shared_access_key: str | None = None
    shared_access_signature: str | None = None
    entity_path: str | None = None
    use_development_emulator: bool = False
    other: tuple[tuple[str, str], ...] = ()
    #: ``ManagedIdentity`` or ``Default`` (Entra ID), None for SAS
    authentication: str | None = None
    #: a user-assigned managed identity's client ID (with ``ManagedIdentity``)
    client_id: str | None = None

    def __post_init__(self) -> None:
        _check_value(self.endpoint, "Endpoint")
        if self.endpoint is None:
            raise LocalProtocolError("The connection string has no Endpoint (e.g. Endpoint=sb://myns.servicebus.windows.net/).")
        _check_value(self.shared_access_key_name, "SharedAccessKeyName")
        _check_value(self.shared_access_key, "SharedAccessKey")
        _check_value(self.shared_access_signature, "SharedAccessSignature")
        _check_value(self.entity_path, "EntityPath")
        if not isinstance(self.use_development_emulator, bool):
            raise LocalProtocolError("UseDevelopmentEmulator must be a bool.")
        if "://" not in self.endpoint:
            raise LocalProtocolError(
                f"The Endpoint {self.endpoint!r} is not a URL; write it as sb://myns.servicebus.windows.net/."
            )
        Namespace.parse(self.endpoint)  # validates scheme, host, port; no path
        if (self.shared_access_key_name is None) != (self.shared_access_key is None):
            which = "SharedAccessKeyName without SharedAccessKey" if self.shared_access_key is None else "SharedAccessKey without SharedAccessKeyName"
            raise LocalProtocolError(f"The connection string has {which}; give both or use SharedAccessSignature.")
        if self.shared_access_key is not None and self.shared_access_signature is not None:
            raise LocalProtocolError(
                "The connection string has both SharedAccessKey and SharedAccessSignature; give only one."
            )
        if self.authentication is not None:
            if self.authentication not in _AUTHENTICATION_TEXT:
                raise LocalProtocolError(
                    f"Authentication must be 'Managed Identity' or 'Default', not {self.authentication[:40]!r}."
                )
            if self.shared_access_key_name is not None or self.shared_access_signature is not None:
                raise LocalProtocolError(
                    "The connection string has both Authentication and a SAS key or signature; "
                    "give one way to authenticate."
                )
        if self.client_id is not None:
            if self.authentication != "ManagedIdentity":
                raise LocalProtocolError("ClientId names a user-assigned managed identity: it needs Authentication=Managed Identity.")
            if not isinstance(self.client_id, str) or not _GUID_RE.fullmatch(self.client_id):
                raise LocalProtocolError("ClientId must be the managed identity's client ID, a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx).")
        seen = set()
        for item in self.other:
            if not (isinstance(item, tuple) and len(item) == 2 and all(isinstance(x, str) for x in item)):
                raise LocalProtocolError("ConnectionString.other must hold (key, value) string pairs.")
            key, value = item
            if not key or key != key.strip() or any(ch in key for ch in "=;") or key.lower() in _KNOWN:
                raise LocalProtocolError(f"{key!r} cannot be an extra connection string key.")
            if key.lower() in seen:
                raise LocalProtocolError(f"The connection string has the key {key!r} twice.")
            seen.add(key.lower())
            if ";" in value or value != value.strip():
                raise LocalProtocolError(f"The value of {key!r} cannot contain ';' or leading/trailing whitespace.")

    # ------------------------------------------------------------------ parsing

    @classmethod
    def parse(cls, text: str) -> ConnectionString:
        """Parse ``Key=Value;…`` (keys case-insensitive, values split on the first ``=``)."""
        if not isinstance(text, str):
            raise LocalProtocolError(f"A connection string must be a string, got {type(text).__name__}.")
        if cls is ConnectionString:
            # Pure and immutable: a sender connecting in a loop passes the same string each time.
            return _parse_cached(text)
        return cls._parse(text)

    @classmethod
    def _parse(cls, text: str) -> ConnectionString:
        values: dict[str, str] = {}
        other: list[tuple[str, str]] = []
        other_index: dict[str, int] = {}
        for number, part in enumerate(text.split(";"), start=1):
            part = part.strip()
            if not part:
                continue
            key, sep, value = part.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key:
                raise LocalProtocolError(
                    f"Part {number} of the connection string is not Key=Value "
                    "(parts are separated by ';')."
                )
            lower = key.lower()
            if lower in _KNOWN:
                canonical = _KNOWN[lower]
                if canonical in values and values[canonical] != value:
                    raise LocalProtocolError(f"The connection string gives {canonical} twice with different values.")
                values[canonical] = value
            elif lower in other_index:
                if other[other_index[lower]][1] != value:
                    raise LocalProtocolError(f"The connection string gives {key} twice with different values.")
            else:
                other_index[lower] = len(other)
                other.append((key, value))
        if not values.get("Endpoint"):
            raise LocalProtocolError(
                "The connection string has no Endpoint (e.g. Endpoint=sb://myns.servicebus.windows.net/)."
            )
        emulator_text = values.get("UseDevelopmentEmulator", "")
        if emulator_text.lower() not in ("", "true", "false"):
            raise LocalProtocolError(f"UseDevelopmentEmulator must be true or false, not {emulator_text[:20]!r}.")
        authentication = None
        if "Authentication" in values:
            authentication = AUTHENTICATIONS.get(values["Authentication"].replace(" ", "").lower())
            if authentication is None:
                raise LocalProtocolError(
                    f"Authentication must be 'Managed Identity' or 'Default', not {values['Authentication'][:40]!r}."
                )
        return cls(
            endpoint=values["Endpoint"],
            shared_access_key_name=values.get("SharedAccessKeyName") or None,
            shared_access_key=values.get("SharedAccessKey") or None,
            shared_access_signature=values.get("SharedAccessSignature") or None,
            entity_path=values.get("EntityPath") or None,
            use_development_emulator=emulator_text.lower() == "true",
            other=tuple(other),
            authentication=authentication,
            client_id=values.get("ClientId") or None,
        )

    @classmethod
    def build(
        cls,
        namespace: Namespace,
        *,
        key_name: str | None = None,
        key: str | None = None,
        signature: str | None = None,
        entity_path: str | None = None,
    ) -> ConnectionString:
        """The connection string for a namespace, e.g. the one ``txhyco relay`` prints."""
        return cls(
            endpoint=namespace.sb_url,
            shared_access_key_name=key_name,
            shared_access_key=key,
            shared_access_signature=signature,
            entity_path=entity_path,
            use_development_emulator=not namespace.secure,
        )

    # ------------------------------------------------------------------ output

    def format(self, *, redact: bool = False) -> str:
        """The canonical text; ``parse(format())`` gives an equal value. Contains secrets unless ``redact``."""
        parts = [f"Endpoint={self.endpoint}"]
        if self.shared_access_key_name is not None:
            parts.append(f"SharedAccessKeyName={self.shared_access_key_name}")
        if self.shared_access_key is not None:
            parts.append(f"SharedAccessKey={_REDACTED if redact else self.shared_access_key}")
        if self.shared_access_signature is not None:
            parts.append(f"SharedAccessSignature={_REDACTED if redact else self.shared_access_signature}")
        if self.entity_path is not None:
            parts.append(f"EntityPath={self.entity_path}")
        if self.use_development_emulator:
            parts.append("UseDevelopmentEmulator=true")
        if self.authentication is not None:
            parts.append(f"Authentication={_AUTHENTICATION_TEXT[self.authentication]}")
        if self.client_id is not None:
            parts.append(f"ClientId={self.client_id}")
        parts.extend(f"{k}={v}" for k, v in self.other)
        return ";".join(parts)

    def __str__(self) -> str:
        return self.format(redact=True)

    def __repr__(self) -> str:
        key = None if self.shared_access_key is None else _REDACTED
        sig = None if self.shared_access_signature is None else _REDACTED
        return (
            f"ConnectionString(endpoint={self.endpoint!r}, shared_access_key_name={self.shared_access_key_name!r}, "
            f"shared_access_key={key}, shared_access_signature={sig}, entity_path={self.entity_path!r}, "
            f"use_development_emulator={self.use_development_emulator!r}, other={self.other!r}, "
            f"authentication={self.authentication!r}, client_id={self.client_id!r})"
        )

    # ------------------------------------------------------------------ derived

    @property
    def namespace(self) -> Namespace:
        """The relay to talk to; TLS unless ``UseDevelopmentEmulator=true`` (or a ws/http endpoint)."""
        return Namespace.parse(self.endpoint, secure=not self.use_development_emulator)

    def token_provider(self, lifetime: float = 3600) -> TokenProvider:
        """A provider for this string's credentials: key → SAS minting, signature → static."""
        if self.shared_access_key is not None and self.shared_access_key_name is not None:
            # One provider per key: it keeps its recent tokens (SasKeyTokenProvider.get_token).
            return _sas_provider(self.shared_access_key_name, self.shared_access_key, lifetime, type(lifetime))
        if self.shared_access_signature is not None:
            return StaticTokenProvider(self.shared_access_signature)
        if self.authentication is not None:
            raise LocalProtocolError(
                "This connection string authenticates with Entra ID (Authentication=...): "
                "its tokens come from an azure-identity credential (HybridConnection.from_args makes it)."
            )
        raise LocalProtocolError(
            "The connection string has neither SharedAccessKeyName/SharedAccessKey nor SharedAccessSignature; "
            "add one, or pass a token provider (e.g. for Entra ID) explicitly."
        )


@functools.lru_cache(maxsize=32)
def _parse_cached(text: str) -> ConnectionString:
    return ConnectionString._parse(text)


@functools.lru_cache(maxsize=32)
def _sas_provider(key_name: str, key: str, lifetime: float, kind: type) -> SasKeyTokenProvider:
    # (``kind`` keeps lifetime=True, which the provider refuses, from matching a cached lifetime=1.)
    return SasKeyTokenProvider(key_name, key, lifetime)
