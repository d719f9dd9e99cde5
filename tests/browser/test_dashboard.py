"""The manager dashboard in a real browser: Chart.js charts and tables that follow judgments without a reload.

Annotators work through the API with their tokens on the same live server (uvicorn, in-memory
channel layer: the default set-up); the test polls the page's DOM with a generous wait.
"""

import json
import urllib.request
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from annotation.models import Membership
from tests.browser.conftest import PHONE
from tests.browser.test_accessibility import assert_accessible

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots")
WAIT_MS = 5000  # generous: the server pushes within a second


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


def judge_one(base: str, campaign_id: int, user, *, pick: str, seconds: float) -> dict:
    """Lease the next item and prefer the response of model `pick` ("model-x" or "model-y")."""
    token = Token.objects.get_or_create(user=user)[0].key
    assignment = api_post(base, f"/api/v1/campaigns/{campaign_id}/next/", token, {})["assignment"]
    assert assignment is not None
    # Annotators never see model names: find the response by its text ("Answer one" is model-x).
    text = "Answer one" if pick == "model-x" else "Answer two"
    chosen = next(r["id"] for r in assignment["item"]["responses"] if r["content"].startswith(text))
    api_post(base, f"/api/v1/assignments/{assignment['id']}/submit/", token,
             {"outcome": "preferred", "preferred_response_id": chosen, "strength": 2,
              "time_taken_ms": int(seconds * 1000)})
    return assignment


def text_of(page, test_id: str) -> str:
    return page.get_by_test_id(test_id).inner_text().strip()


def wait_text(page, selector: str, expected: str) -> None:
    page.wait_for_function(
        "([s, e]) => { const el = document.querySelector(s); return !!el && el.textContent.trim() === e; }",
        arg=[selector, expected], timeout=WAIT_MS,
    )


def shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_dashboard_follows_judgments_without_reloading(
    page, login, live_url, campaign, manager, annotator, annotator2, page_problems
):
    login(manager)
    page.goto(f"/campaigns/{campaign.pk}/")
    page.get_by_role("link", name="Dashboard").click()
    page.wait_for_url(f"**/campaigns/{campaign.pk}/dashboard/")
    page.get_by_test_id("live-status").filter(has_text="Live").wait_for()
    assert text_of(page, "stat-judgments") == "0 / 10"  # 5 items x overlap 2
    assert text_of(page, "agreement-figure") == "—"
    rows = page.get_by_test_id("annotator-row")
    assert [rows.nth(k).get_attribute("data-username") for k in range(rows.count())] == ["ann", "ann2"]
    assert page.get_by_test_id("leaderboard-row").count() == 0
    # Eight charts, each an image with a text alternative.
    canvases = page.locator("canvas[data-chart]")
    assert canvases.count() == 8
    for k in range(8):
        assert canvases.nth(k).get_attribute("role") == "img"
        assert canvases.nth(k).get_attribute("aria-label")
    assert "0 judgments in the last 30 minutes" in page.locator("[data-summary=throughput]").inner_text()
    page.evaluate("window.__noReload = 'still here'")

    # ann prefers model-x, taking 4 s.
    judge_one(live_url, campaign.pk, annotator, pick="model-x", seconds=4)
    wait_text(page, "[data-testid=stat-judgments]", "1 / 10")
    wait_text(page, "[data-username=ann] [data-field=judged]", "1")
    wait_text(page, "[data-username=ann] [data-field=median]", "4.0")
    page.wait_for_function("document.querySelectorAll('[data-testid=leaderboard-row]').length === 2", timeout=WAIT_MS)
    assert "1 judgment in the last" in page.locator("canvas[data-chart=throughput]").get_attribute("aria-label")
    assert page.get_by_test_id("leaderboard-row").first.locator("td").nth(1).inner_text() == "model-x"
    assert "1. model-x" in page.locator("[data-summary=leaderboard]").inner_text()

    # ann2 gets the same item (closest to completion first) and agrees: alpha is defined, 1.
    judge_one(live_url, campaign.pk, annotator2, pick="model-x", seconds=6)
    wait_text(page, "[data-testid=agreement-figure]", "1.000")
    wait_text(page, "[data-testid=stat-judgments]", "2 / 10")
    wait_text(page, "[data-testid=stat-items]", "1 / 5")
    wait_text(page, "[data-testid=stat-median]", "5.0 s")  # (4 + 6) / 2
    assert "over 1 item judged by two or more of 2 annotators" in page.locator("[data-summary=agreement]").inner_text()

    # Two more items, the annotators disagreeing on one of them.
    judge_one(live_url, campaign.pk, annotator, pick="model-y", seconds=2)
    judge_one(live_url, campaign.pk, annotator2, pick="model-x", seconds=3)
    judge_one(live_url, campaign.pk, annotator, pick="model-x", seconds=5)
    judge_one(live_url, campaign.pk, annotator2, pick="model-x", seconds=5)
    wait_text(page, "[data-testid=stat-judgments]", "6 / 10")
    wait_text(page, "[data-username=ann2] [data-field=judged]", "3")
    assert text_of(page, "agreement-figure") not in ("—", "1.000")
    assert page.evaluate("window.__noReload") == "still here"
    assert shot(page, "dashboard-live.png").exists()

    # A manager excludes ann2: at the next change ann2 is marked, and agreement needs two included members.
    Membership.objects.filter(campaign=campaign, user=annotator2).update(excluded=True)
    judge_one(live_url, campaign.pk, annotator, pick="model-x", seconds=3)
    page.wait_for_function(
        "document.querySelector('[data-username=ann2]').dataset.excluded === 'true'", timeout=WAIT_MS
    )
    wait_text(page, "[data-testid=agreement-figure]", "—")
    assert "excluded" in page.locator("[data-username=ann2] [data-field=status]").inner_text()
    assert "Excluded: ann2." in page.locator("[data-summary=annotators]").inner_text()
    assert page.evaluate("window.__noReload") == "still here"
    shot(page, "dashboard-excluded.png")

    assert_accessible(page, "the dashboard")
    page.set_viewport_size(PHONE)
    assert_accessible(page, "the dashboard (phone)")
    shot(page, "dashboard-phone.png")
    page_problems.assert_none()
