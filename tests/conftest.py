import atexit
import os
import shutil
import tempfile

import pytest
import pytest_twisted

from txhyco.testing import start_relay

# `txhyco relay` stores its key in the user's config directory: the suite (its
# child processes and README blocks too) gets a scratch one, never the real home.
_CONFIG_HOME = tempfile.mkdtemp(prefix="txhyco-tests-config-")
os.environ["XDG_CONFIG_HOME"] = _CONFIG_HOME
atexit.register(shutil.rmtree, _CONFIG_HOME, True)


@pytest.fixture
def relay():
    running = pytest_twisted.blockon(start_relay())
    yield running
    pytest_twisted.blockon(running.stop())


@pytest.fixture(params=["site-direct", "site-bytes"])
def both_site_paths(request, monkeypatch):
    """Run a relayed-HTTP test with twisted.web's fast path on and off
    (txhyco.listener.siterequest): both must behave the same."""
    from txhyco.listener import siterequest

    monkeypatch.setattr(siterequest, "ENABLED", request.param == "site-direct")
    return request.param
