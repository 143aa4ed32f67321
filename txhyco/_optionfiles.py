"""Files that options name (a key file, a CA certificate), read strictly.

Shared by the command line (``--key-file``, ``--ca-file``) and the ``hyco:``
endpoint string (``keyFile=``, ``caFile=``), so a file that is not what the
option expects fails at once with one reason, the same in both, instead of a
wrong key (401 later) or a TLS failure at the first connection. Errors are
:class:`OptionFileError`; they name the file, never its content.
"""
from __future__ import annotations

#: Larger than any key or CA bundle a person points an option at.
_MAX_READ = 1024 * 1024
_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"


class OptionFileError(ValueError):
    """The file an option names cannot be used; the message says why (no content quoted)."""


def read_key_file(path: str) -> str:
    """The key ``path`` holds: its one non-blank line, stripped.

    More than one line is refused: a PEM file, a connection string file or
    a list of keys would otherwise lend its first line as the key.
    """
    try:
        with open(path, encoding="utf-8") as f:
            content = f.read(_MAX_READ + 1)
    except OSError as e:
        raise OptionFileError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise OptionFileError(f"{path} is not UTF-8 text") from None
    except ValueError:  # a NUL in the name
        raise OptionFileError(f"{path!r} is not a file name") from None
    if len(content) > _MAX_READ:
        raise OptionFileError(f"{path} is larger than {_MAX_READ} bytes; it must hold the key alone, on one line")
    lines = [line.strip() for line in content.splitlines() if line.strip()]
    if not lines:
        raise OptionFileError(f"{path} is empty; it must hold the key on one line")
    if len(lines) > 1:
        raise OptionFileError(f"{path} holds {len(lines)} lines; it must hold the key alone, on one line")
    return lines[0]


def check_ca_file(path: str) -> None:
    """Raise :class:`OptionFileError` unless ``path`` is a readable file with a PEM certificate in it."""
    try:
        with open(path, "rb") as f:
            content = f.read(_MAX_READ)
    except OSError as e:
        raise OptionFileError(f"cannot read {path}: {e.strerror}") from None
    except ValueError:  # a NUL in the name
        raise OptionFileError(f"{path!r} is not a file name") from None
    if _PEM_CERTIFICATE not in content:
        raise OptionFileError(f"{path} does not hold a PEM certificate (a '{_PEM_CERTIFICATE.decode()}' block)")
