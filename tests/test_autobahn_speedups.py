"""txhyco._twisted.autobahn_speedups keeps Autobahn's debug text and drops its cost."""
def test_autobahn_debug_formatting_is_lazy_but_identical():
    import pprint

    import autobahn.websocket.protocol as autobahn_protocol

    import txhyco._twisted.autobahn_speedups  # noqa: F401

    config = {"openHandshakeTimeout": 5, "utf8validateIncoming": True}
    lazy = autobahn_protocol.pformat(config)
    assert f"{lazy}" == pprint.pformat(config) == str(lazy)


def test_autobahn_debug_colouring_is_lazy_but_identical():
    import autobahn.websocket.protocol as autobahn_protocol
    from autobahn import util

    import txhyco._twisted.autobahn_speedups  # noqa: F401

    for name in ("hltype", "hlval"):
        lazy = getattr(autobahn_protocol, name)(len)
        assert f"{lazy}" == str(getattr(util, name)(len))


def test_small_frame_unmasking_gives_the_same_bytes():
    import os

    import autobahn.websocket.protocol as autobahn_protocol
    from autobahn.nvx._xormasker import create_xor_masker as nvx_masker

    import txhyco._twisted.autobahn_speedups  # noqa: F401

    for size in (0, 1, 125, 1000, 4096, 5000):
        mask, data = os.urandom(4), os.urandom(size)
        ours, reference = autobahn_protocol.create_xor_masker(mask, size), nvx_masker(mask, size)
        assert ours.process(data[:7]) + ours.process(data[7:]) == reference.process(data)
