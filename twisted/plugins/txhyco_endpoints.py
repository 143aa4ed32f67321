"""The ``hyco:`` endpoint plugin: ``serverFromString(reactor, "hyco:NAMESPACE:PATH:...")``.

A drop-in: it imports neither the reactor nor Autobahn nor twisted.web; the
work happens in :mod:`txhyco.endpoint` when a string is parsed.
"""
from twisted.internet.interfaces import IStreamClientEndpointStringParserWithReactor, IStreamServerEndpointStringParser
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IPlugin, IStreamServerEndpointStringParser)
class HycoServerParser:
    prefix = "hyco"

    def parseStreamServer(self, reactor, *args, **kwargs):
        from txhyco.endpoint import server_from_args

        return server_from_args(reactor, args, kwargs)


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class HycoClientParser:
    prefix = "hyco"

    def parseStreamClient(self, reactor, *args, **kwargs):
        from txhyco.endpoint import client_from_args

        return client_from_args(reactor, args, kwargs)


hycoServerParser = HycoServerParser()
hycoClientParser = HycoClientParser()
