"""Real-browser fixtures: Playwright (sync API) driving Debian's chromium against a live ASGI server.

Nothing is downloaded: the browser is /usr/bin/chromium (override with ARBITER_CHROMIUM).
The server is uvicorn serving config.asgi.application, as in production, in a thread of the test
process (so it shares the test database and the in-memory channel layer). pytest-django's
`live_server` is not used: it is a WSGI server and does not speak websockets, which the campaign
page opens. Static files (frontend/dist, found through STATICFILES_DIRS) are served by Django's
ASGIStaticFilesHandler; `live_url` checks that the built judging bundle is really reachable.
"""

import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; Django's async-safety check would
# otherwise refuse every ORM call the test makes while the browser is open.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

from tests.conftest import PASSWORD  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR = REPO_ROOT / "test-results" / "screenshots"
CHROMIUM = os.environ.get("ARBITER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 10_000


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.skip(f"no chromium at {CHROMIUM} (browser tests never download one)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class AsgiServer:
    """A running uvicorn server (see `asgi_server`)."""

    server: object
    url: str

    def drop_connections(self) -> None:
        """Cut every open connection (websockets included) from the server's side."""
        loop = self.server.servers[0].get_loop()
        for connection in list(self.server.server_state.connections):
            loop.call_soon_threadsafe(connection.transport.close)


@pytest.fixture
def asgi_server(transactional_db, settings) -> Iterator[AsgiServer]:
    """uvicorn serving the project's ASGI application on a free port, in a thread of this process."""
    import uvicorn
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    from config.asgi import application

    # The default set-up: the in-memory layer works because the server runs in this process.
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(ASGIStaticFilesHandler(application), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield AsgiServer(server, f"http://127.0.0.1:{sock.getsockname()[1]}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def live_url(asgi_server) -> str:
    """The live server's base URL, after checking that the judging bundle is served."""
    url = asgi_server.url
    try:
        with urllib.request.urlopen(f"{url}/static/arbiter/judge.js", timeout=10) as resp:
            ok = resp.status == 200 and b"judge" in resp.read()
    except urllib.error.HTTPError:
        ok = False
    assert ok, (
        "the live server does not serve /static/arbiter/judge.js; build it: cd frontend && npm run build"
    )
    return url


@dataclass
class PageProblems:
    """Uncaught exceptions and console errors seen by a page; a test asserts there are none."""

    errors: list[str] = field(default_factory=list)

    def on_console(self, msg) -> None:
        # A failed load is reported (with its URL) by on_response.
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            self.errors.append(f"console.error: {msg.text}")

    def on_response(self, response) -> None:
        # The app has no favicon; chromium asks for /favicon.ico anyway.
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            self.errors.append(f"HTTP {response.status}: {response.request.method} {response.url}")

    def assert_none(self) -> None:
        assert self.errors == [], f"the page reported errors: {self.errors}"


@pytest.fixture
def page_problems() -> PageProblems:
    return PageProblems()


@pytest.fixture
def page(browser, live_url, page_problems) -> Iterator[object]:
    """A fresh browser context (no cookies) and page at 1280x800, rooted at the live server."""
    context = browser.new_context(base_url=live_url, viewport=DESKTOP)
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    pg.on("pageerror", lambda exc: page_problems.errors.append(f"pageerror: {exc}"))
    pg.on("console", page_problems.on_console)
    pg.on("response", page_problems.on_response)
    yield pg
    context.close()


@pytest.fixture
def login(page) -> Callable[[object], None]:
    """Log in through the real login form: type the username and password, press Enter."""

    def do_login(user) -> None:
        page.goto("/login/")
        page.locator("#id_username").press_sequentially(user.get_username())
        page.locator("#id_password").press_sequentially(PASSWORD)
        page.locator("#id_password").press("Enter")
        page.wait_for_url(lambda url: "/login/" not in url)
        assert page.locator(".topbar-user").inner_text() == user.get_username()

    return do_login


def wait_for_item(page, *, not_assignment: str | None = None) -> str:
    """Wait until the judging app shows an item (another one than `not_assignment`); return its assignment id."""
    page.wait_for_function(
        """(previous) => {
            const item = document.querySelector('[data-testid=item]');
            if (!item || item.getAttribute('aria-busy') !== 'false') return false;
            const id = item.getAttribute('data-assignment-id');
            return id !== null && id !== previous && document.querySelector('[data-testid=response-b]') !== null;
        }""",
        arg=not_assignment,
    )
    return page.locator("[data-testid=item]").get_attribute("data-assignment-id")


def response_ids_on_page(page, letters: str) -> dict[str, int]:
    """{letter: response id} of the responses shown: the page names each by this assignment's
    handle (`data-response-id`), mapped back to its id as submit does."""
    from annotation.models import Assignment
    from annotation.services.serving import assignment_handles

    assignment_id = int(page.get_by_test_id("item").get_attribute("data-assignment-id"))
    order = Assignment.objects.get(pk=assignment_id).display_order
    by_handle = {handle: rid for rid, handle in assignment_handles(assignment_id, order).items()}
    return {c: by_handle[page.get_by_test_id(f"response-{c}").get_attribute("data-response-id")] for c in letters}


def screenshot(page, name: str, *, full_page: bool = True) -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / name
    page.screenshot(path=str(path), full_page=full_page)
    return path
