"""A traffic inspector for a listener in http mode: a local page of the requests and WebSocket
connections it relayed, with their headers and bodies, a filter, replay and exports.

Modules: :mod:`~txhyco.inspector.capture` (the ring and the listener's observers),
:mod:`~txhyco.inspector.masking` (secrets), :mod:`~txhyco.inspector.frames`
(WebSocket messages from raw frames), :mod:`~txhyco.inspector.views` (JSON),
:mod:`~txhyco.inspector.export` (curl, HAR), :mod:`~txhyco.inspector.replay`,
:mod:`~txhyco.inspector.guard` (who may use the page),
:mod:`~txhyco.inspector.api` (the web server), :mod:`~txhyco.inspector.page`
(its static files), :mod:`~txhyco.inspector.server` (starting it with a
listener), :mod:`~txhyco.inspector.options` (settings, parsed without a reactor).
"""
