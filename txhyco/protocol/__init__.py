"""The sans-IO core of txhyco: the Hybrid Connections protocol as pure logic.

Nothing in this package imports Twisted or Autobahn, opens sockets or reads
the clock; times are passed in. Bad input raises :class:`ProtocolError`.
"""
from .errors import ProtocolError

__all__ = ["ProtocolError"]
