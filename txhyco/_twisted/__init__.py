"""Private Twisted and Autobahn glue shared by the listener side, the sender side and the relay.

Opening connections to a relay (:mod:`.connector`, :mod:`.clienttls`),
client handshakes (:mod:`.handshake`), the stream leg both sides use
(:mod:`.streamleg`), the command sink feeding the core's channel reader
(:mod:`.commandsink`), the ``hyco:`` string grammar (:mod:`.endpointstring`)
and the speed-ups confined to txhyco's own connections (:mod:`.eagerwrite`,
:mod:`.autobahn_speedups`). Nothing here is public API.
"""
