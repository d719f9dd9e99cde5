"""Live progress in a real browser: the manager's campaign page updates without a reload.

The browser fixtures serve the app with uvicorn (ASGI, websockets included) in this process, so
the server shares the test database and the in-memory channel layer of the default set-up.
"""

import json
import time
import urllib.request

import pytest
from rest_framework.authtoken.models import Token

from tests.browser.conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def api_post(base: str, path: str, token: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status in (200, 201)
        return json.loads(resp.read())


def stat(page, name: str) -> str:
    return page.get_by_test_id(name).inner_text().strip()


def test_manager_sees_a_submit_without_reloading(page, login, live_url, campaign, manager, annotator, page_problems):
    login(manager)
    page.goto(f"/campaigns/{campaign.pk}/")
    indicator = page.get_by_test_id("live-status")
    indicator.filter(has_text="Live").wait_for()
    assert indicator.get_attribute("data-state") == "live"
    assert stat(page, "stat-done") == "0 / 10"  # 5 items x overlap 2
    assert stat(page, "stat-remaining") == "10"
    assert stat(page, "stat-leased") == "0"
    page.evaluate("window.__noReload = 'still here'")

    # The annotator works through the API with their token, on the same server.
    token = Token.objects.create(user=annotator).key
    lease = api_post(live_url, f"/api/v1/campaigns/{campaign.pk}/next/", token, {})["assignment"]
    page.wait_for_function("document.querySelector('[data-testid=stat-leased]').textContent.trim() === '1'", timeout=2000)

    chosen = lease["item"]["responses"][0]["id"]
    api_post(
        live_url,
        f"/api/v1/assignments/{lease['id']}/submit/",
        token,
        {"outcome": "preferred", "preferred_response_id": chosen, "strength": 2},
    )
    submitted = time.monotonic()
    page.wait_for_function(
        "document.querySelector('[data-testid=stat-done]').textContent.trim() === '1 / 10'", timeout=2000
    )
    assert time.monotonic() - submitted < 2
    assert stat(page, "stat-leased") == "0"
    assert stat(page, "stat-remaining") == "9"
    assert stat(page, "stat-per-minute") == "1"
    assert stat(page, "stat-complete") == "0"  # one of two judgments on that item
    assert page.evaluate("window.__noReload") == "still here"

    path = screenshot(page, "live-progress-manager.png")
    assert path.exists()
    page_problems.assert_none()


def test_page_reconnects_after_the_socket_drops(
    page, login, asgi_server, campaign, manager, annotator, page_problems
):
    login(manager)
    page.goto(f"/campaigns/{campaign.pk}/")
    indicator = page.get_by_test_id("live-status")
    indicator.filter(has_text="Live").wait_for()
    # Record every state the indicator goes through.
    page.evaluate(
        """() => {
            const el = document.querySelector('[data-testid=live-status]');
            window.__states = [];
            new MutationObserver(() => window.__states.push(el.dataset.state + ':' + el.textContent.trim()))
                .observe(el, {attributes: true, childList: true, subtree: true, characterData: true});
        }"""
    )
    asgi_server.drop_connections()
    page.wait_for_function("window.__states.includes('reconnecting:Reconnecting…')", timeout=5000)
    indicator.filter(has_text="Live").wait_for(timeout=10_000)
    screenshot(page, "live-progress-reconnected.png")

    # Updates flow again on the new socket.
    token = Token.objects.create(user=annotator).key
    api_post(asgi_server.url, f"/api/v1/campaigns/{campaign.pk}/next/", token, {})
    page.wait_for_function(
        "document.querySelector('[data-testid=stat-leased]').textContent.trim() === '1'", timeout=2000
    )
    page_problems.assert_none()
