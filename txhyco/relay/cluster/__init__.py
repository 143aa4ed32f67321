"""The relay as a cluster: several relay processes sharing routing state in Redis.

Without a cluster setting none of this is imported and the relay is the single
process it always was. With one (``txhyco relay --cluster redis://... --advertise
HOST:PORT``, or a ``[cluster]`` table), each relay process is a *node*:

- :mod:`.settings`: the ``[cluster]`` settings and the parsing of their values;
- :mod:`.store`: Redis key names, the Lua scripts that change them atomically,
  and the link to Redis (reconnecting with backoff);
- :mod:`.wire`: the JSON messages nodes send each other through Redis pub/sub;
- :mod:`.remote`: a listener held by another node, as routing sees it;
- :mod:`.node`: one node's part: listener admission and publication, the
  mirror of the other nodes' listeners, commands forwarded both ways;
- :mod:`.metrics`: the node id on every metric, cluster-wide listener counts.

Only control messages cross between nodes: a sender's node hands out a
rendezvous address naming itself, so the listener's rendezvous and all data
stay on the sender's node.
"""
