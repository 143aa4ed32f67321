"""The ``hyco:`` endpoint plugin: ``serverFromString(reactor, "hyco:NAMESPACE:PATH:...")``.

A drop-in: it imports neither the reactor nor Autobahn nor twisted.web; the
work happens in :mod:`txhyco.endpoint` when a string is parsed.

Under twistd (``twistd web --listen hyco:...``) a mistake is one line, not a
traceback: a bad string stops twistd with the reason (exit status 1), and a
listen the relay refuses is one error line in the log.
"""
import sys

from twisted.internet.interfaces import IStreamClientEndpointStringParserWithReactor, IStreamServerEndpointStringParser
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IPlugin, IStreamServerEndpointStringParser)
class HycoServerParser:
    prefix = "hyco"

    def parseStreamServer(self, reactor, *args, **kwargs):
        from txhyco._twisted.endpointstring import EndpointStringError
        from txhyco.endpoint import server_from_args

        starting = _twistd_starting(reactor)
        try:
            endpoint = server_from_args(reactor, args, kwargs)
        except EndpointStringError as e:
            if starting:
                raise SystemExit(f"twistd: bad hyco: endpoint string: {e.message}") from None
            raise
        endpoint.log_refusal = starting
        return endpoint


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class HycoClientParser:
    prefix = "hyco"

    def parseStreamClient(self, reactor, *args, **kwargs):
        from txhyco.endpoint import client_from_args

        return client_from_args(reactor, args, kwargs)


def _twistd_starting(reactor) -> bool:
    """Whether twistd (or twist) is building its application: loaded, the reactor not yet running."""
    loaded = "twisted.scripts.twistd" in sys.modules or "twisted.application.twist._twist" in sys.modules
    return loaded and not getattr(reactor, "running", True)


hycoServerParser = HycoServerParser()
hycoClientParser = HycoClientParser()
