"""The key ``txhyco relay`` keeps between runs, so connection strings survive a restart.

Stored alone on one line in ``$XDG_CONFIG_HOME/txhyco/relay.key`` (else
``~/.config/txhyco/relay.key``), readable by its owner only (mode 0600, the
directory 0700), as the XDG Base Directory Specification places user settings.
"""
from __future__ import annotations

import os

from .common import CliError

KEY_FILE_NAME = "relay.key"


def config_dir() -> str:
    """``$XDG_CONFIG_HOME/txhyco``, else ``~/.config/txhyco`` (a relative XDG value is ignored, as the spec says)."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "txhyco")


def stored_key_path() -> str:
    return os.path.join(config_dir(), KEY_FILE_NAME)


def remembered_key(*, new: bool = False) -> tuple[str, str, bool]:
    """``(key, path, created)``: the stored key, or (none stored, or ``new``) a fresh one, stored.

    Raises :class:`CliError` when the file cannot be read or written; the
    message names the path and never the key.
    """
    from txhyco.relay.config import generate_key

    path = stored_key_path()
    if not new:
        key = _read(path)
        if key is not None:
            return key, path, False
    key = generate_key()
    _write(path, key)
    return key, path, True


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            key = f.readline().strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        detail = getattr(e, "strerror", None) or "not ASCII text"
        raise CliError(f"cannot read the stored relay key {path}: {detail}; remove it or pass --new-key.") from None
    if not key or ";" in key:
        raise CliError(f"the stored relay key {path} is not a key; remove it or pass --new-key.")
    return key


def _write(path: str, key: str) -> None:
    directory = os.path.dirname(path)
    partial = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(key + "\n")
        os.replace(partial, path)  # atomic: a concurrent reader sees the old key or the new one
    except OSError as e:
        try:
            os.unlink(partial)
        except OSError:
            pass
        raise CliError(
            f"cannot store the relay key in {path}: {e.strerror}; set XDG_CONFIG_HOME to a writable "
            "directory or pass --key-file."
        ) from None
