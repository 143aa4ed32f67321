"""The sender side: what a client that reaches a listener through the relay runs.

- :mod:`.leg` opens a WebSocket leg toward the relay: token, URL, connection,
  and the wait for the opening handshake, once for every kind of leg;
- :mod:`.stream` connects a byte-stream protocol as a sender (the ``hyco:``
  client endpoint).

Users reach this through :mod:`txhyco.websocket` (``RelayedClientFactory``,
``connect_relay``), :mod:`txhyco.wamp` and :mod:`txhyco.endpoint`.
"""
