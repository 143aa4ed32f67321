"""A WAMP client that reaches the Crossbar node of this example through the relay.

    export HYCO_CONNECTION_STRING=...      # the same as the node's
    python examples/crossbar/client.py [PATH]

It joins realm1 as a sender, registers a procedure and calls it, subscribes
to a topic and publishes to it, and prints what came back.
"""
import os
import sys

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.types import ComponentConfig, PublishOptions
from twisted.internet import defer, task

from txhyco.wamp import connect_wamp


@defer.inlineCallbacks
def main(reactor, path="crossbar"):
    session = yield connect_wamp(ApplicationSession(ComponentConfig("realm1")), path=path)  # reads HYCO_CONNECTION_STRING
    print(f"joined realm1 as session {session.session_id}", flush=True)

    yield session.register(lambda a, b: a + b, "com.example.add2")
    print(f"call: 2 + 3 = {(yield session.call('com.example.add2', 2, 3))}", flush=True)

    received = defer.Deferred()
    yield session.subscribe(received.callback, "com.example.hello")
    # The router does not echo an event to its own publisher unless asked.
    yield session.publish("com.example.hello", "Hello through the relay!", options=PublishOptions(acknowledge=True, exclude_me=False))
    print(f"event: {(yield received.addTimeout(10, reactor))}", flush=True)

    session.leave()
    yield task.deferLater(reactor, 0.1, lambda: None)


if __name__ == "__main__":
    if not os.environ.get("HYCO_CONNECTION_STRING"):
        sys.exit("Set HYCO_CONNECTION_STRING to the connection string printed by `txhyco relay` (or your Azure namespace's).")
    task.react(main, sys.argv[1:])
