"""The manager's console in a real browser: the campaign wizard (live markdown preview, criteria
rows, the judging preview in its frame), then the people and items pages."""

import os
from pathlib import Path

import pytest

from annotation.models import AuditEntry, Campaign, Role
from annotation.services.campaigns import membership_add
from annotation.services.serving import assignment_lease_next, judgment_submit
from tests.browser.conftest import screenshot
from tests.browser.test_accessibility import assert_accessible

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(os.environ.get("ARBITER_SHOTS", "/tmp/shots"))

INSTRUCTIONS = "# Rate each reply\n\n- Is it **correct**?\n- Is it kind?\n\n<script>window.pwned = 1</script>"


def shot(page, name: str, **kwargs) -> None:
    """Save a screenshot where the test report keeps them, and a copy under /tmp/shots to look at."""
    path = screenshot(page, name, **kwargs)
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / name).write_bytes(path.read_bytes())


def test_wizard_creates_a_campaign_with_live_previews(page, login, manager, page_problems):
    login(manager)
    page.goto("/campaigns/new/")
    page.get_by_label("Campaign name").fill("Kindness ratings")
    page.get_by_label("Rating").check()
    assert page.locator(".kind-hint[data-kind=rating]").is_visible()

    # Criteria rows: added with the keyboard, the new row's first field takes the focus.
    page.get_by_test_id("add-criterion").focus()
    page.keyboard.press("Enter")
    name = page.locator("input[name='criteria-0-name']")
    assert name.evaluate("el => el === document.activeElement")
    page.keyboard.type("helpfulness")
    page.locator("input[name='criteria-0-label']").fill("Helpfulness")
    page.locator("input[name='criteria-0-low_label']").fill("Useless")
    page.locator("input[name='criteria-0-high_label']").fill("Perfect")
    page.get_by_test_id("add-criterion").click()
    page.locator("input[name='criteria-1-name']").fill("tone")
    page.get_by_role("button", name="Remove criterion 2").click()
    assert page.get_by_test_id("criterion-row").filter(has=page.locator(":visible")).count() == 1

    page.get_by_label("Require a rationale").check()
    page.get_by_label("Overlap").fill("2")

    # Instructions: rendered as sanitized markdown while typing; raw HTML stays text.
    page.get_by_label("Instructions for annotators").fill(INSTRUCTIONS)
    preview = page.get_by_test_id("instructions-preview")
    preview.locator("h1", has_text="Rate each reply").wait_for()
    assert preview.locator("strong", has_text="correct").count() == 1
    assert preview.locator("li").count() == 2
    assert preview.locator("script").count() == 0 and "<script>" in preview.inner_text()
    assert page.evaluate("window.pwned") is None
    shot(page, "wizard-1280x800.png")

    # The judging page exactly as annotators will see it, from the unsaved settings.
    page.get_by_test_id("show-preview").click()
    frame = page.frame_locator("iframe[name=judge-preview]")
    frame.get_by_test_id("preview-banner").wait_for()
    frame.locator("[data-testid=item][aria-busy=false]").wait_for()
    assert frame.locator(".page-header h1").inner_text() == "Kindness ratings"
    assert frame.locator("[data-testid=item]").get_by_text("reverse a list").count() >= 1
    frame.get_by_test_id("submit").click()  # nothing rated: the real judge says what is missing
    frame.get_by_test_id("error").wait_for()
    assert Campaign.objects.count() == 0
    page.get_by_test_id("judge-preview").scroll_into_view_if_needed()
    shot(page, "wizard-judge-preview-1280x800.png", full_page=False)

    assert_accessible(page, "the campaign wizard")
    page.get_by_test_id("save").click()
    page.wait_for_url("**/import/")
    campaign = Campaign.objects.get(name="Kindness ratings")
    assert campaign.kind == "rating" and campaign.overlap == 2 and campaign.require_rationale
    assert [c["name"] for c in campaign.criteria] == ["helpfulness"]
    assert campaign.criteria[0]["scale"]["labels"] == {"1": "Useless", "5": "Perfect"}
    assert campaign.instructions == INSTRUCTIONS
    assert AuditEntry.objects.filter(campaign=campaign, action="campaign.create").exists()
    page_problems.assert_none()


def test_wizard_shows_field_errors(page, login, manager, page_problems):
    login(manager)
    page.goto("/campaigns/new/")
    page.get_by_label("Rating").check()
    page.get_by_test_id("save").click()
    page.wait_for_load_state()
    assert page.locator("#id_name_error").inner_text() == "This field is required."
    assert not Campaign.objects.exists()
    page_problems.assert_none()


def test_people_and_items_pages(page, login, make_campaign, manager, annotator, annotator2, page_problems):
    campaign = make_campaign(items=4, overlap=2, annotators=[annotator, annotator2], name="Console check")
    for user in (annotator, annotator2):
        for _ in range(2):
            a = assignment_lease_next(campaign_id=campaign.pk, annotator=user)
            judgment_submit(assignment_id=a.pk, annotator=user,
                            answer={"outcome": "preferred", "preferred_response_id": a.display_order[0],
                                    "strength": 2, "rationale": "Clearer and <em>shorter</em>."})
    membership_add(campaign=campaign, user=manager, role=Role.MANAGER)
    login(manager)

    page.goto(f"/campaigns/{campaign.pk}/people/")
    row = page.get_by_test_id("member-ann")
    row.get_by_role("button", name="Pause ann").click()
    page.wait_for_load_state()
    assert "ann is paused" in page.locator(".message-success").inner_text()
    page.once("dialog", lambda d: d.accept())
    page.get_by_test_id("member-ann2").get_by_role("button", name="Exclude judgments of ann2").click()
    page.wait_for_load_state()
    assert page.get_by_test_id("member-ann2").get_by_text("excluded").is_visible()
    page.get_by_test_id("create-invite").get_by_role("button", name="Create link").click()
    page.wait_for_load_state()
    url = page.get_by_test_id("invite-url").input_value()
    assert "/invite/" in url and page.get_by_test_id("invite-state").inner_text() == "active"
    assert_accessible(page, "the people page")
    shot(page, "people-1280x800.png")

    page.goto(f"/campaigns/{campaign.pk}/items/?show=judged")
    items = page.get_by_test_id("item-row")
    assert items.count() >= 2
    text = items.first.inner_text()
    assert "ann" in text and "model-x" in text and "Clearer and <em>shorter</em>." in text
    assert items.first.locator("em").count() == 0
    assert page.get_by_text("excluded").first.is_visible()
    assert_accessible(page, "the items page")
    shot(page, "items-1280x800.png")

    page.goto(f"/campaigns/{campaign.pk}/audit/")
    assert page.get_by_test_id("audit-log").get_by_text("membership.exclude").is_visible()
    assert_accessible(page, "the audit page")
    shot(page, "audit-1280x800.png", full_page=False)
    page_problems.assert_none()
