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
