"""examples/chat in a real browser: two headless Chromium pages chat through the relay.

Debian's ``chromium`` and ``chromium-driver`` (``make setup`` installs them),
driven by Selenium with both paths given explicitly, so Selenium Manager is
never asked to find or download anything. The relay runs in this process on
the reactor; Selenium blocks, so every browser step runs in a thread
(``deferToThread``) and the reactor keeps relaying meanwhile.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import urllib.parse

import pytest
import pytest_twisted
from twisted.internet import defer, threads

from tests.support.procs import spawn

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
STEP_TIMEOUT = 15.0

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.selenium_manager import SeleniumManager
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - reported by the skip below
    webdriver = None

_missing = [what for what, ok in (
    ("selenium (pip install -e '.[test]')", webdriver is not None),
    (f"{CHROMIUM} (apt-get install chromium)", os.path.exists(CHROMIUM)),
    (f"{CHROMEDRIVER} (apt-get install chromium-driver)", os.path.exists(CHROMEDRIVER)),
) if not ok]

# Outside CI a missing browser skips; in CI (`make test` installs it) it fails.
pytestmark = pytest.mark.skipif(
    bool(_missing) and not os.environ.get("CI"),
    reason="browser test needs " + ", ".join(_missing),
)

# As root in a container, on a machine with no way out: no sandbox, no GPU and
# none of Chromium's own background traffic (which would only be refused).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=800,600",
]


class Page:
    """One Chromium with one chat page; every method blocks (call it in a thread)."""

    def __init__(self, name: str, workdir: str) -> None:
        self.name = name
        self.profile = tempfile.mkdtemp(prefix=f"chromium-{name}-", dir=workdir)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(CHROMEDRIVER, log_output=os.path.join(workdir, f"chromedriver-{name}.log"))
        self.driver = webdriver.Chrome(service=service, options=options)
        self.driver.set_page_load_timeout(STEP_TIMEOUT)

    def _wait(self, condition, what: str):
        try:
            return WebDriverWait(self.driver, STEP_TIMEOUT, poll_frequency=0.05).until(condition)
        except Exception as e:
            raise AssertionError(f"page {self.name}: {what}; console: {self.console()}; status: {self.status()}") from e

    def status(self) -> str:
        try:
            return self.driver.find_element(By.ID, "status").text
        except Exception as e:  # the page may not have loaded at all
            return f"<{type(e).__name__}>"

    def console(self) -> list[str]:
        try:
            return [entry["message"] for entry in self.driver.get_log("browser")]
        except Exception:
            return []

    def open(self, url: str) -> str:
        """Load the page and wait for its WebSocket to open; returns the page title."""
        self.driver.get(url)
        self._wait(lambda d: d.find_element(By.ID, "status").get_attribute("data-state") == "open", "WebSocket did not open")
        return self.driver.title

    def say(self, text: str) -> None:
        self.driver.find_element(By.ID, "message").send_keys(text)
        self.driver.find_element(By.ID, "send").click()

    def messages(self) -> list[str]:
        return [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, "#messages li .text")]

    def wait_for_message(self, text: str) -> list[str]:
        self._wait(lambda d: text in self.messages(), f"{text!r} never arrived (has {self.messages()})")
        return self.messages()

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


def _no_selenium_manager(*args, **kwargs):
    raise AssertionError("Selenium Manager was invoked: it would try to download a browser or driver")


@pytest.mark.timeout(60)
@pytest_twisted.inlineCallbacks
def test_two_browser_pages_chat_through_the_relay(relay, tmp_path, monkeypatch):
    if _missing:
        pytest.fail("browser test needs " + ", ".join(_missing) + " (make setup installs them)")
    monkeypatch.setattr(SeleniumManager, "binary_paths", _no_selenium_manager)
    monkeypatch.setenv("SE_OFFLINE", "true")
    started = time.monotonic()

    env = {"HYCO_CONNECTION_STRING": relay.connection_string.format()}
    server = spawn(["examples/chat/chat_server.py"], env)
    pages: list[Page] = []
    try:
        online = yield server.wait_for("chat online at", timeout=STEP_TIMEOUT)
        assert "/$hc/chat" in online
        line = yield server.wait_for("open in a browser:", timeout=STEP_TIMEOUT)
        url = line.split("open in a browser:", 1)[1].strip()
        parsed = urllib.parse.urlsplit(url)
        assert (parsed.scheme, parsed.netloc, parsed.path) == ("http", relay.host, "/chat/")
        assert "sb-hc-token=SharedAccessSignature" in parsed.query
        key = relay.connection_string.shared_access_key
        assert key not in "\n".join(server.lines) and key not in server.stderr.decode(errors="replace")

        # Two separate browsers, started side by side.
        launches = [threads.deferToThread(Page, name, str(tmp_path)) for name in ("A", "B")]
        results = yield defer.DeferredList(launches, consumeErrors=True)
        for ok, value in results:
            if ok:
                pages.append(value)
        for ok, value in results:
            if not ok:
                value.raiseException()
        a, b = pages

        titles = yield defer.gatherResults([threads.deferToThread(p.open, url) for p in pages], consumeErrors=True)
        assert titles == ["txhyco chat", "txhyco chat"]
        # Both WebSockets reached the listener through the relay.
        yield server.wait_for("(2 in the room)", timeout=STEP_TIMEOUT)

        yield threads.deferToThread(a.say, "hello from A")
        seen_by_b = yield threads.deferToThread(b.wait_for_message, "hello from A")
        seen_by_a = yield threads.deferToThread(a.wait_for_message, "hello from A")
        assert seen_by_b == seen_by_a == ["hello from A"]

        yield threads.deferToThread(b.say, "and hello from B <b>not bold</b>")
        seen_by_a = yield threads.deferToThread(a.wait_for_message, "and hello from B <b>not bold</b>")
        seen_by_b = yield threads.deferToThread(b.wait_for_message, "and hello from B <b>not bold</b>")
        assert seen_by_a == seen_by_b == ["hello from A", "and hello from B <b>not bold</b>"]

        # The page really came over relayed HTTP and the socket over the relay:
        # without the token the relay refuses the page.
        blocked = yield threads.deferToThread(_title_without_token, a, f"http://{relay.host}/chat/")
        assert blocked != "txhyco chat"
        assert time.monotonic() - started < 30
    finally:
        yield defer.DeferredList([threads.deferToThread(p.quit) for p in pages], consumeErrors=True)
        yield server.stop()


def _title_without_token(page: Page, url: str) -> str:
    page.driver.get(url)
    return page.driver.title
