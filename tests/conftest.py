import pytest
import pytest_twisted

from txhyco.testing import start_relay


@pytest.fixture
def relay():
    running = pytest_twisted.blockon(start_relay())
    yield running
    pytest_twisted.blockon(running.stop())
