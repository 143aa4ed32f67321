"""The traffic inspector's page in a real browser: Debian's Chromium, driven by Selenium.

``txhyco listen web --http URL --inspect ...`` runs as a child process in
front of a small twisted.web application; requests go through the local
relay to it, and the page must list them live (no reload), show a body in
the detail view, narrow the list with the filter and replay a request to a
new response. A screenshot of the page is taken and checked to be a real
picture. (Browser set-up as in tests/test_browser_chat.py.)
"""
from __future__ import annotations

import os
import shutil
import struct
import tempfile
import zlib

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, threads
from twisted.web.resource import Resource

from tests.support.httpclient import http_request
from tests.support.procs import spawn
from tests.support.rawlistener import make_token
from tests.support.wsclient import ws_connect
from tests.test_inspector_api import PNG, make_site
from txhyco.protocol.addresses import Namespace, connect_url
from tests.test_browser_chat import CHROMEDRIVER, CHROMIUM, CHROMIUM_FLAGS, _missing, _no_selenium_manager

STEP_TIMEOUT = 15.0

if not _missing:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.common.selenium_manager import SeleniumManager
    from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.skipif(
    bool(_missing) and not os.environ.get("CI"),
    reason="browser test needs " + ", ".join(_missing),
)


class Orders(Resource):
    """The application behind the listener: JSON orders, each answer numbered."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.answers = 0

    def render(self, request):
        if request.path == b"/logo.png":
            request.setHeader(b"content-type", b"image/png")
            return PNG
        if request.path == b"/blob":
            request.setHeader(b"content-type", b"application/octet-stream")
            return bytes(range(40))
        self.answers += 1
        body = request.content.read().decode("utf-8", "replace")
        request.setHeader(b"content-type", b"application/json")
        return ('{"answer": %d, "method": "%s", "path": "%s", "got": %d}'
                % (self.answers, request.method.decode(), request.path.decode(), len(body))).encode()


class InspectorPage:
    """One headless Chromium on the inspector's page; every method blocks (call it in a thread)."""

    def __init__(self, workdir: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="chromium-inspector-", dir=workdir)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument("--window-size=1280,720")
        options.add_argument(f"--user-data-dir={self.profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(CHROMEDRIVER, log_output=os.path.join(workdir, "chromedriver-inspector.log"))
        self.driver = webdriver.Chrome(service=service, options=options)
        self.driver.set_page_load_timeout(STEP_TIMEOUT)

    def wait(self, condition, what: str):
        try:
            return WebDriverWait(self.driver, STEP_TIMEOUT, poll_frequency=0.05).until(lambda d: condition())
        except Exception as e:
            console = [entry["message"] for entry in self.driver.get_log("browser")]
            raise AssertionError(f"{what}; console: {console}") from e

    def open(self, url: str) -> None:
        self.driver.get(url)
        self.wait(lambda: self.driver.find_element(By.ID, "live").get_attribute("data-state") == "live", "the live stream never opened")

    # The list and the detail are rebuilt as events arrive: elements are found and
    # used inside one script, never held across steps (they would go stale).

    def paths(self) -> list[str]:
        return self.driver.execute_script(
            "return [...document.querySelectorAll('#requests tbody tr td.path')].map((td) => td.textContent);")

    def wait_for_paths(self, paths: list[str]) -> list[str]:
        self.wait(lambda: self.paths() == paths, f"the list never showed {paths} (it shows {self.paths()})")
        return self.paths()

    def click_row(self, path: str) -> None:
        self.wait(lambda: self.driver.execute_script(
            "for (const tr of document.querySelectorAll('#requests tbody tr')) {"
            "  if (tr.querySelector('td.path').textContent === arguments[0]) { tr.click(); return true; } }"
            "return false;", path), f"no row for {path}")
        self.wait(lambda: self.driver.execute_script(
            "const h = document.querySelector('#detail h2'); return h !== null && h.textContent.endsWith(' ' + arguments[0]);",
            path), f"the detail of {path} never showed")

    def response_body(self) -> dict:
        """What the detail shows of the response body: its text, or its image's natural width."""
        return self.driver.execute_script(
            "const pre = document.querySelector('#response-body pre'), img = document.querySelector('#response-body img');"
            "return {text: pre ? pre.textContent : null, width: img && img.complete ? img.naturalWidth : null};")

    def open_detail(self, path: str) -> str:
        self.click_row(path)
        self.wait(lambda: self.response_body()["text"], "no response body shown")
        return self.response_body()["text"]

    def shown_body(self, path: str) -> tuple[str, int]:
        """(the text or hex dump shown for ``path``'s response, the natural width of its image or 0)."""
        self.click_row(path)
        self.wait(lambda: self.response_body()["text"] or self.response_body()["width"], f"no body shown for {path}")
        shown = self.response_body()
        return shown["text"] or "", shown["width"] or 0

    def messages(self, path: str) -> list[str]:
        """The WebSocket messages the detail of ``path`` lists, as their rows' text."""
        self.click_row(path)
        script = "return [...document.querySelectorAll('#messages tr')].map((tr) => tr.textContent);"
        self.wait(lambda: self.driver.execute_script(script), "no messages shown")
        return self.driver.execute_script(script)

    def filter(self, text: str) -> None:
        box = self.driver.find_element(By.ID, "filter")
        # (clear() fires no input event: select and type over, as a user does)
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(text or Keys.BACKSPACE)

    def replay(self) -> tuple[str, str]:
        """Replay the request shown; (original response body, replayed response body)."""
        self.driver.execute_script("document.getElementById('replay-button').click();")
        script = ("const a = document.querySelector('.side > div:first-child pre'), b = document.querySelector('#replay-result pre');"
                  "return a && b ? [a.textContent, b.textContent] : null;")
        self.wait(lambda: self.driver.execute_script(script), "no replay result shown")
        return tuple(self.driver.execute_script(script))

    def screenshot(self) -> bytes:
        return self.driver.get_screenshot_as_png()

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


def png_pixels(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, raw scanlines) of a PNG, read with the standard library (raises if it is not one)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", chunk[:8])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    return width, height, zlib.decompress(idat)


@pytest.mark.timeout(90)
@pytest_twisted.inlineCallbacks
def test_inspector_page_lists_shows_filters_and_replays(relay, tmp_path, monkeypatch):
    if _missing:
        pytest.fail("browser test needs " + ", ".join(_missing) + " (make setup installs them)")
    monkeypatch.setattr(SeleniumManager, "binary_paths", _no_selenium_manager)
    monkeypatch.setenv("SE_OFFLINE", "true")

    orders = Orders()
    site, _ = make_site(orders)  # with a WebSocket echo at /ws
    app = reactor.listenTCP(0, site, interface="127.0.0.1")
    env = {"HYCO_CONNECTION_STRING": relay.connection_string.format()}
    listener = spawn(["-m", "txhyco", "listen", "web", "--http", f"http://127.0.0.1:{app.getHost().port}",
                      "--inspect", "tcp:0:interface=127.0.0.1", "--log"], env)
    page = None
    try:
        line = yield listener.wait_for("inspector at", timeout=STEP_TIMEOUT)
        url = line.split("inspector at", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:")
        token = {"ServiceBusAuthorization": make_token(relay, "web")}
        status, *_ = yield http_request(relay.port, "GET", "/web/orders/1", None, token)
        assert status == 200
        page = yield threads.deferToThread(InspectorPage, str(tmp_path))
        yield threads.deferToThread(page.open, url)
        yield threads.deferToThread(page.wait_for_paths, ["/orders/1"])

        # Requests made while the page is open appear without a reload, newest first.
        status, *_ = yield http_request(relay.port, "POST", "/web/orders", b'{"item": "tea"}',
                                        dict(token, **{"Content-Type": "application/json"}))
        assert status == 200
        status, *_ = yield http_request(relay.port, "GET", "/web/health", None, token)
        paths = yield threads.deferToThread(page.wait_for_paths, ["/health", "/orders", "/orders/1"])
        assert paths == ["/health", "/orders", "/orders/1"]

        # The detail view shows the response body (JSON, pretty-printed).
        shown = yield threads.deferToThread(page.open_detail, "/orders")
        assert '"answer": 2' in shown and '"method": "POST"' in shown and "\n" in shown

        # The filter narrows the list (by method, then by path), and clearing it brings all back.
        yield threads.deferToThread(page.filter, "POST")
        yield threads.deferToThread(page.wait_for_paths, ["/orders"])
        yield threads.deferToThread(page.filter, "health")
        yield threads.deferToThread(page.wait_for_paths, ["/health"])
        yield threads.deferToThread(page.filter, "")
        yield threads.deferToThread(page.wait_for_paths, ["/health", "/orders", "/orders/1"])

        # Images are shown, other binary bodies as hex.
        yield http_request(relay.port, "GET", "/web/logo.png", None, token)
        yield http_request(relay.port, "GET", "/web/blob", None, token)
        yield threads.deferToThread(page.wait_for_paths, ["/blob", "/logo.png", "/health", "/orders", "/orders/1"])
        _, width = yield threads.deferToThread(page.shown_body, "/logo.png")
        assert width == 1
        dump, _ = yield threads.deferToThread(page.shown_body, "/blob")
        assert dump.startswith("00000000  00 01 02 03")

        # A relayed WebSocket is listed too, with its messages.
        leg = yield ws_connect(connect_url(Namespace.parse(relay.host, secure=False), "web", suffix="/ws"), headers=token)
        leg.sendMessage(b"hello socket", isBinary=False)
        assert (yield leg.messages.get()) == (b"HELLO SOCKET", False)
        leg.sendClose(1000)
        yield leg.closed
        yield threads.deferToThread(page.wait_for_paths, ["/ws", "/blob", "/logo.png", "/health", "/orders", "/orders/1"])
        rows = yield threads.deferToThread(page.messages, "/ws")
        assert any("hello socket" in r and "→ app" in r for r in rows) and any("HELLO SOCKET" in r for r in rows)

        # Replay: the application answers again; the new answer is shown beside the old.
        yield threads.deferToThread(page.open_detail, "/orders")
        original, replayed = yield threads.deferToThread(page.replay)
        assert '"answer": 2' in original and '"answer": 4' in replayed and '"got": 15' in replayed
        assert orders.answers == 4

        png = yield threads.deferToThread(page.screenshot)
        width, height, pixels = png_pixels(png)
        assert width > 0 and height > 0 and len(set(pixels)) > 16, "the screenshot is blank"
        if os.environ.get("INSPECTOR_SCREENSHOT"):  # how examples/inspector/inspector.png is made
            with open(os.environ["INSPECTOR_SCREENSHOT"], "wb") as f:
                f.write(png)
        assert make_token(relay, "web").split("sig=")[1][:20] not in page.driver.page_source
    finally:
        if page is not None:
            yield threads.deferToThread(page.quit)
        yield listener.stop()
        yield defer.maybeDeferred(app.stopListening)
