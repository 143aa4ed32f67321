"""``txhyco token``: mint a SAS token for a hybrid connection (Microsoft's "Service Bus
access control with Shared Access Signatures").

Pure computation: no Twisted, no network. The token goes to stdout alone so
shell substitution works; it is never logged.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from .common import SECRET_NOTE, CliError, add_subcommand, choose_key, paragraph

CONNECTION_STRING_ENV = "HYCO_CONNECTION_STRING"

EPILOG = """\
examples:
  export HYCO_CONNECTION_STRING='Endpoint=sb://127.0.0.1:9090/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=...;UseDevelopmentEmulator=true'
  txhyco token --path myhc
      a token valid for one hour, for the ServiceBusAuthorization header.
  curl "http://127.0.0.1:9090/myhc/?sb-hc-token=$(txhyco token --path myhc --query)"
      URL-encoded for the sb-hc-token query parameter.
  txhyco token --namespace myns --key-name send --key-file send.key --path myhc --style node
      without a connection string; the audience Node's createRelayToken signs.

""" + paragraph(
    "Credentials: --connection-string, else --namespace with --key-name and a key "
    f"(--key, --key-file or $HYCO_RELAY_KEY), else ${CONNECTION_STRING_ENV}. {SECRET_NOTE} "
    "Without --path or EntityPath the token covers the whole namespace."
)


def _lifetime(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("the lifetime must be positive")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = add_subcommand(
        subparsers,
        "token",
        help="mint a SAS token",
        description="Print a Shared Access Signature token for a hybrid connection (or a whole namespace).",
        epilog=EPILOG,
        run=run,
    )
    parser.add_argument(
        "--connection-string",
        metavar="TEXT",
        help=f"connection string with SharedAccessKeyName and SharedAccessKey (default: ${CONNECTION_STRING_ENV})",
    )
    parser.add_argument("--namespace", metavar="NS", help="namespace (myns, host:port or sb://host/) instead of a connection string")
    parser.add_argument("--key-name", metavar="NAME", help="rule name with --namespace (default: RootManageSharedAccessKey)")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--key", metavar="KEY", help="the rule's key (visible in process listings: prefer --key-file)")
    keys.add_argument("--key-file", metavar="FILE", help="read the key from FILE, which holds it alone on one line ('-': the first line of stdin)")
    parser.add_argument("--path", metavar="PATH", help="hybrid connection the token is for (default: EntityPath, else the namespace)")
    parser.add_argument("--lifetime", metavar="SECONDS", type=_lifetime, default=3600, help="seconds until expiry (default: 3600)")
    parser.add_argument(
        "--style",
        choices=("dotnet", "node"),
        default="dotnet",
        help="audience form: .NET's http://host/path/ (default) or Node's createRelayToken",
    )
    parser.add_argument("--query", action="store_true", help="print the token URL-encoded, for sb-hc-token=")
    from .events import add_json_option

    add_json_option(parser, "print one JSON object: the token, its audience, key name and expiry")
    return parser


def _credentials(args: argparse.Namespace):
    """(Namespace, key name, key, entity path) from the options and environment."""
    from txhyco.protocol.addresses import Namespace
    from txhyco.protocol.connection_string import ConnectionString
    from txhyco.relay.config import DEFAULT_KEY_NAME

    if args.connection_string is not None:
        if args.namespace is not None or args.key is not None or args.key_file is not None or args.key_name is not None:
            raise CliError("give either --connection-string or --namespace/--key-name/--key, not both.", 2)
        text, source = args.connection_string, "--connection-string"
    elif args.namespace is not None:
        key = choose_key(args.key, args.key_file)
        if key is None:
            raise CliError("--namespace needs a key: give --key-file FILE (or --key KEY, or set HYCO_RELAY_KEY).", 2)
        return Namespace.parse(args.namespace), args.key_name or DEFAULT_KEY_NAME, key, None
    elif os.environ.get(CONNECTION_STRING_ENV, "").strip():
        if args.key is not None or args.key_file is not None or args.key_name is not None:
            raise CliError("--key-name, --key and --key-file need --namespace.", 2)
        text, source = os.environ[CONNECTION_STRING_ENV], f"${CONNECTION_STRING_ENV}"
    else:
        raise CliError(
            f"no credentials: give --connection-string (or set {CONNECTION_STRING_ENV}), "
            "or --namespace with --key-name and --key-file.",
            2,
        )
    cs = ConnectionString.parse(text)
    if cs.shared_access_key is None or cs.shared_access_key_name is None:
        entra = " (it authenticates with Entra ID: listeners and senders get their tokens from the credential)" if cs.authentication else ""
        raise CliError(f"the connection string in {source} has no SharedAccessKeyName/SharedAccessKey to sign with{entra}.")
    return cs.namespace, cs.shared_access_key_name, cs.shared_access_key, cs.entity_path


def mint(args: argparse.Namespace, now: float | None = None) -> str:
    """The token the options ask for (``now`` for tests; default the clock)."""
    return mint_details(args, now)["token"]


def mint_details(args: argparse.Namespace, now: float | None = None) -> dict:
    """The token and what it says: ``token``, ``audience``, ``key_name``, ``expires_at`` (Unix time), ``expires``."""
    from txhyco.protocol.addresses import encode_component, http_url
    from txhyco.protocol.sas import create_relay_token, dotnet_audience, sign_token

    namespace, key_name, key, entity_path = _credentials(args)
    path = (args.path if args.path is not None else entity_path or "").strip("/")
    uri = http_url(namespace, path) if path else f"{namespace.http_base}/"
    expiry = int(time.time() if now is None else now) + args.lifetime
    if args.style == "node":
        audience = uri
        token = create_relay_token(uri, key_name, key, expiry)
    else:
        audience = dotnet_audience(uri)
        token = sign_token(audience, key_name, key, expiry)
    from .events import timestamp

    return {
        "event": "token",
        "token": encode_component(token) if args.query else token,
        "audience": audience,
        "key_name": key_name,
        "expires_at": expiry,
        "expires": timestamp(expiry).replace(".000Z", "Z"),
    }


def run(args: argparse.Namespace) -> int:
    if getattr(args, "json", False):
        from .events import write_json

        write_json(mint_details(args))
        return 0
    token = mint(args)
    sys.stdout.write(token + "\n")
    sys.stdout.flush()
    return 0
