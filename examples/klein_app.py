"""A Klein app served through the relay, unchanged but for the endpoint string.

    export HYCO_CONNECTION_STRING=...            # from `txhyco relay`
    python examples/klein_app.py [PATH]
    txhyco request PATH /hello/world             # or curl with a token, see the README
"""
import json
import os
import sys

from klein import Klein
from twisted.internet import defer, task
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.web.server import Site

app = Klein()


@app.route("/")
def index(request):
    return b"Klein behind a relay. Try /hello/yourname\n"


@app.route("/hello/<name>")
def hello(request, name):
    request.setHeader("content-type", "application/json")
    # X-Forwarded-Prefix is the hybrid connection's path: build absolute links with it.
    prefix = (request.getHeader("x-forwarded-prefix") or "").rstrip("/")
    return json.dumps({"hello": name, "self": f"{prefix}/hello/{name}"})


@defer.inlineCallbacks
def main(reactor, path="klein"):
    try:
        endpoint = serverFromString(reactor, f"hyco:connectionStringEnv=HYCO_CONNECTION_STRING:path={path}")
        port = yield endpoint.listen(Site(app.resource()))
    except (ValueError, CannotListenError) as e:  # a bad string, wrong key, no relay: one line
        raise SystemExit(f"klein_app: {e}")
    print(f"klein app online at {port.getHost()}", flush=True)
    yield defer.Deferred()


if __name__ == "__main__":
    if not os.environ.get("HYCO_CONNECTION_STRING"):
        sys.exit("Set HYCO_CONNECTION_STRING to the connection string printed by `txhyco relay` (or your Azure namespace's).")
    task.react(main, sys.argv[1:2])
