"""Rendezvous keys and request ids (txhyco.relay.registry): unguessable keys, unique ids, fresh ones after a fork."""
from __future__ import annotations

import os
import re
import uuid

import pytest

from txhyco.relay import registry
from txhyco.relay.registry import Registry, request_id

KEY = re.compile(r"[A-Za-z0-9_-]{24}")
UUID_SHAPE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_keys_are_24_url_safe_characters_and_never_repeat():
    keys = [registry._keys.take() for _ in range(3 * registry._KEYS_PER_BATCH + 7)]  # across batches
    assert all(KEY.fullmatch(key) for key in keys)
    assert len(set(keys)) == len(keys)


def test_park_hands_out_distinct_keys():
    reg = Registry.__new__(Registry)
    reg.pending = {}
    items = [object() for _ in range(300)]
    keys = [reg.park(item) for item in items]
    assert len(set(keys)) == 300 and [reg.pending[k] for k in keys] == items


def test_request_ids_are_unique_random_version_4_uuids():
    ids = [request_id() for _ in range(3 * registry._IDS_PER_BATCH + 7)]  # across batches
    assert len(set(ids)) == len(ids)
    assert all(UUID_SHAPE.fullmatch(i) for i in ids)
    assert all(uuid.UUID(i).version == 4 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    # Random, not counted: a listener cannot read how many requests the relay
    # serves from the ids it is given (no two share their first 24 characters).
    assert len({i[:24] for i in ids}) == len(ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_draws_its_own_keys_and_ids():
    registry._keys.take()  # a batch in hand, which the child must not reuse
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next key and id, and leave at once
        try:
            os.write(write, f"{registry._keys.take()} {request_id()}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as child:
        child_key, child_id = child.read().split()
    os.waitpid(pid, 0)
    assert child_key != registry._keys.take()
    assert child_id != request_id()
