"""The listener side: what a server behind the relay runs.

- :mod:`.control` keeps the control channel to the relay (register,
  keep alive), with its helpers by role: :mod:`.reconnect` (backoff),
  :mod:`.renewal` (the token), :mod:`.commands` (hands out ``accept`` and
  ``request`` commands) and :mod:`.status` (the status and its observers);
- :mod:`.port` is the listening port those commands reach, and the
  ``accept`` handling that picks a protocol from the user's factory;
- :mod:`.accept` serves an accepted WebSocket with an ordinary server
  protocol (the accept bridge);
- :mod:`.http` serves relayed HTTP requests with an ordinary HTTP/1.1
  factory (the HTTP bridge);
- :mod:`.stream` serves accepted connections as byte streams (stream mode).

Users reach all of this through :mod:`txhyco.websocket` and
:mod:`txhyco.endpoint`; nothing here is public API.
"""
