"""The cluster's state in Redis, and one node's link to it.

Keys (one Redis database per cluster; the ``txhyco:`` prefix keeps them apart
from anything else in it):

- ``txhyco:live:{instance}``: the node instance is alive (its value: its
  advertised address); written with a TTL and refreshed well before it ends.
- ``txhyco:hc:{hybrid connection}``: a hash, one field per listener,
  ``{instance}|{slot}``, its value the listener's tracking id. A field whose
  instance is no longer alive counts for nothing and is removed by whichever
  script meets it first.

Channels (Redis pub/sub is not scoped by database, so their names carry the
database number): ``txhyco:{db}:to:{instance}`` carries commands and answers
to one node instance; ``txhyco:{db}:listeners`` tells every node of listeners
coming and going (a node's periodic snapshot catches what a lost message
missed).

An *instance* is a node id plus a random part chosen at start: a node
restarted under the same id does not inherit its predecessor's listeners.
"""
from __future__ import annotations

from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger

log = Logger()

PREFIX = "txhyco:"
LIVE_PREFIX = PREFIX + "live:"
HC_PREFIX = PREFIX + "hc:"


def node_channel(db: int, instance: str) -> str:
    return f"{PREFIX}{db}:to:{instance}"


def events_channel(db: int) -> str:
    return f"{PREFIX}{db}:listeners"


#: Adds a listener's field unless the hybrid connection already has ``max`` live
#: ones. Fields of dead instances are dropped on the way. Returns 1 if added, else 0.
REGISTER = """
local live = 0
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  local inst = string.match(f, '^(.-)|')
  if f == ARGV[2] then
  elseif inst and redis.call('EXISTS', ARGV[1] .. inst) == 1 then live = live + 1
  else redis.call('HDEL', KEYS[1], f) end
end
if live >= tonumber(ARGV[4]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
"""

#: Every live listener of every hybrid connection as a flat list
#: (key, field, tracking id, ...); fields of dead instances are dropped.
SNAPSHOT = """
local out = {}
local cursor = '0'
repeat
  local r = redis.call('SCAN', cursor, 'MATCH', ARGV[1] .. '*', 'COUNT', 1000)
  cursor = r[1]
  for _, k in ipairs(r[2]) do
    local h = redis.call('HGETALL', k)
    for i = 1, #h, 2 do
      local inst = string.match(h[i], '^(.-)|')
      if inst and redis.call('EXISTS', ARGV[2] .. inst) == 1 then
        out[#out + 1] = k
        out[#out + 1] = h[i]
        out[#out + 1] = h[i + 1]
      else
        redis.call('HDEL', k, h[i])
      end
    end
  end
until cursor == '0'
return out
"""


def require_client() -> None:
    """Refuse to run a cluster node without the Redis client, in one sentence."""
    try:
        import txredisapi  # noqa: F401
    except ImportError:
        from txhyco.protocol.errors import LocalProtocolError

        raise LocalProtocolError(
            "A relay cluster node needs the txredisapi package: pip install 'txhyco[cluster]'."
        ) from None


def instance_of(field: str) -> str:
    return field.split("|", 1)[0]


class _LinkFactory(Factory):
    """What txredisapi's protocols expect of their factory, for a link that reconnects itself."""

    isLazy = False
    noisy = False

    def __init__(self, protocol_class, settings) -> None:
        self.protocol_class = protocol_class
        self.settings = settings
        self.error: str | None = None

    def buildProtocol(self, addr):
        s = self.settings
        proto = self.protocol_class(password=s.redis_password, dbid=s.redis_db, replyTimeout=5)
        proto.factory = self
        return proto

    def stopTrying(self) -> None:
        pass  # RedisLink decides about reconnecting

    def connectionError(self, why: str) -> None:
        # txredisapi's words for a refused AUTH or SELECT; without the password.
        self.error = why


class RedisLink:
    """Two connections to Redis, commands and subscriptions, kept up with backoff.

    ``on_up`` runs each time both are ready (subscribed to ``channels``),
    ``on_down`` once each time the link is lost, ``on_message(channel,
    message)`` for every pub/sub message.
    """

    #: seconds before the first retry, the factor per failed try, the cap
    initial_delay = 0.1
    factor = 2.0
    max_delay = 2.0

    def __init__(self, settings, reactor, *, channels, on_up, on_down, on_message) -> None:
        self.settings = settings
        self.reactor = reactor
        self.channels = list(channels)
        self.on_up = on_up
        self.on_down = on_down
        self.on_message = on_message
        self.commands = None
        self.subscriber = None
        self.up = False
        self._stopped = False
        self._delay = self.initial_delay
        self._retry = None
        self._attempt = None
        self.failures = 0

    def start(self) -> None:
        self._stopped = False
        self._try()

    def stop(self) -> defer.Deferred:
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self._attempt is not None:
            self._attempt.cancel()
        ds = []
        for proto in (self.commands, self.subscriber):
            if proto is not None and proto.transport is not None:
                ds.append(proto.whenDisconnected())
                proto.transport.loseConnection()
        self.commands = self.subscriber = None
        self.up = False
        return defer.DeferredList(ds)

    def execute(self, *args) -> defer.Deferred:
        """A command's reply; fails with txredisapi.ConnectionError while the link is down."""
        import txredisapi

        proto = self.commands
        if proto is None or not self.up:
            return defer.fail(txredisapi.ConnectionError("Not connected"))
        return defer.maybeDeferred(proto.execute_command, *args)

    def eval(self, script: str, keys, args) -> defer.Deferred:
        import txredisapi

        proto = self.commands
        if proto is None or not self.up:
            return defer.fail(txredisapi.ConnectionError("Not connected"))
        return defer.maybeDeferred(proto.eval, script, keys, args)

    # -- connecting ---------------------------------------------------------

    def _try(self) -> None:
        self._retry = None
        self._attempt = self._connect()
        self._attempt.addCallbacks(self._connected, self._failed)

    @defer.inlineCallbacks
    def _connect(self):
        import txredisapi

        s = self.settings

        def open_one(protocol_class):
            endpoint = HostnameEndpoint(self.reactor, s.redis_host.strip("[]"), s.redis_port, timeout=3)
            return endpoint.connect(_LinkFactory(protocol_class, s))

        link = self

        class Subscriber(txredisapi.SubscriberProtocol):
            def messageReceived(self, pattern, channel, message):
                link.on_message(channel, message)

        commands = yield open_one(txredisapi.RedisProtocol)
        try:
            yield _ready(commands)
            subscriber = yield open_one(Subscriber)
            try:
                yield _ready(subscriber)
                yield subscriber.subscribe(self.channels)
            except BaseException:
                subscriber.transport.loseConnection()
                raise
        except BaseException:
            commands.transport.loseConnection()
            raise
        return commands, subscriber

    def _connected(self, pair) -> None:
        self._attempt = None
        self.commands, self.subscriber = pair
        for proto in pair:
            proto.whenDisconnected().addCallback(self._lost)
        self.up = True
        self._delay = self.initial_delay
        if self.failures:
            log.info("cluster: Redis at {url} is reachable again", url=self.settings.redis_url)
        self.failures = 0
        self.on_up()

    def _failed(self, failure) -> None:
        self._attempt = None
        if failure.check(defer.CancelledError) or self._stopped:
            return None
        self.failures += 1
        if self.failures in (1, 10) or self.failures % 100 == 0:
            log.warn(
                "cluster: cannot reach Redis at {url} ({why}); retrying",
                url=self.settings.redis_url,
                why=failure.getErrorMessage(),
            )
        self._schedule()
        return None

    def _lost(self, proto) -> None:
        if proto not in (self.commands, self.subscriber):
            return
        for other in (self.commands, self.subscriber):
            if other is not None and other is not proto and other.transport is not None:
                other.transport.loseConnection()
        self.commands = self.subscriber = None
        was_up, self.up = self.up, False
        if self._stopped:
            return
        if was_up:
            log.warn("cluster: lost the connection to Redis at {url}; serving local listeners only until it is back", url=self.settings.redis_url)
            self.failures = 1
            self.on_down()
        self._schedule()

    def _schedule(self) -> None:
        if self._stopped or self._retry is not None:
            return
        delay, self._delay = self._delay, min(self.max_delay, self._delay * self.factor)
        self._retry = self.reactor.callLater(delay, self._try)


def _ready(proto) -> defer.Deferred:
    """Fires once AUTH and SELECT are done; fails if either was refused."""
    import txredisapi

    if proto._ready:
        return defer.succeed(proto)
    done = proto.whenConnected()
    lost = proto.whenDisconnected()

    def refused(_):
        why = proto.factory.error or "the connection closed before it was ready"
        raise txredisapi.ConnectionError(why)

    lost.addCallback(refused)
    first = defer.DeferredList([done, lost], fireOnOneCallback=True, fireOnOneErrback=True, consumeErrors=True)

    def pick(result):
        if isinstance(result, tuple):
            return result[0]
        return result

    def unwrap(failure):
        return failure.value.subFailure

    return first.addCallbacks(pick, unwrap)
