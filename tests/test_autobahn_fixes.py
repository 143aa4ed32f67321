"""txhyco.autobahn_fixes keeps Autobahn's debug text and drops its cost."""
def test_autobahn_debug_formatting_is_lazy_but_identical():
    import pprint

    import autobahn.websocket.protocol as autobahn_protocol

    import txhyco.autobahn_fixes  # noqa: F401

    config = {"openHandshakeTimeout": 5, "utf8validateIncoming": True}
    lazy = autobahn_protocol.pformat(config)
    assert f"{lazy}" == pprint.pformat(config) == str(lazy)
