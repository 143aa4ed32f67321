"""The declared roles (txhyco.interfaces) are what their implementers offer."""
import pytest
from zope.interface.verify import verifyClass

from txhyco._twisted.commandsink import CommandSink
from txhyco.interfaces import IBridge, IChannelHandler, IChannelSink, IFrameSink, IRendezvousHandler, IResponder
from txhyco.listener.accept import AcceptBridge
from txhyco.listener.control import HybridConnectionListener
from txhyco.listener.http import HttpExchange


@pytest.mark.parametrize("interface, cls", [
    (IResponder, HybridConnectionListener),
    (IBridge, AcceptBridge),
    (IRendezvousHandler, AcceptBridge),
    (IBridge, HttpExchange),
    (IChannelHandler, HttpExchange),
    (IChannelSink, CommandSink),
    (IFrameSink, CommandSink),
])
def test_implementers_provide_their_roles(interface, cls):
    assert interface.implementedBy(cls)
    assert verifyClass(interface, cls)


def test_listener_status_is_an_enum_that_reads_as_its_string():
    from txhyco.listener.control import CONNECTING, OFFLINE, ONLINE, ListenerStatus

    assert list(ListenerStatus) == [CONNECTING, ONLINE, OFFLINE]
    for status in ListenerStatus:
        assert status == status.value and hash(status) == hash(status.value)
        assert str(status) == f"{status}" == "%s" % status == status.value
    assert {"online": "green"}[ONLINE] == "green"  # the CLI's panel looks statuses up by their string
    assert ListenerStatus("offline") is OFFLINE
