"""The ``reuseport:`` server endpoint plugin: ``reuseport:9090:interface=127.0.0.1``.

A drop-in: the work happens in :mod:`txhyco._twisted.reuseport` when a string
is parsed. Several processes may listen on one such port (SO_REUSEPORT): N relay
cluster nodes on one host share one public port that way.
"""
from twisted.internet.interfaces import IStreamServerEndpointStringParser
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IPlugin, IStreamServerEndpointStringParser)
class ReusePortServerParser:
    prefix = "reuseport"

    def parseStreamServer(self, reactor, *args, **kwargs):
        from txhyco._twisted.reuseport import parse_reuseport

        if len(args) != 1 or set(kwargs) - {"interface", "backlog"}:
            raise ValueError("write reuseport:PORT[:interface=ADDRESS][:backlog=N], e.g. reuseport:9090:interface=127.0.0.1")
        return parse_reuseport(reactor, args[0], **kwargs)


reusePortServerParser = ReusePortServerParser()
