"""The manager's import form, in a real browser: a file is checked before anything is stored; a bad
line is reported by number and nothing is stored; a good file is committed only on confirmation."""

import json

import pytest

from annotation.models import Item, Prompt, Response
from tests.browser.conftest import screenshot
from tests.conftest import pair_rows

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def upload(page, name: str, rows: list[str]) -> None:
    page.get_by_label("JSONL file").set_input_files(
        files=[
            {
                "name": name,
                "mimeType": "application/jsonl",
                "buffer": ("\n".join(rows) + "\n").encode(),
            }
        ]
    )
    with page.expect_navigation():  # a plain form POST: the answer is a new page
        page.get_by_role("button", name="Check file").click()


def test_manager_import_reports_the_bad_line_then_imports_a_good_file(
    page, login, make_campaign, manager, page_problems
):
    campaign = make_campaign(items=0, active=False, name="Import check")
    good = [json.dumps(r) for r in pair_rows(3, prefix="imp")]
    bad_line = json.dumps(
        {
            "id": "broken",
            "messages": [{"role": "user", "content": "Hi?"}],
            "responses": [{"content": "only one"}],
        }
    )

    login(manager)
    page.goto(f"/campaigns/{campaign.pk}/import/")
    assert page.get_by_role("heading", name="Import items").is_visible()

    upload(page, "bad.jsonl", [good[0], bad_line, good[1]])
    report = page.get_by_test_id("import-report")
    report.wait_for(state="visible")
    assert page.url.endswith(f"/campaigns/{campaign.pk}/import/")
    assert report.get_by_role("heading", name="Nothing was imported").is_visible()
    assert "1 bad line(s) of 3; nothing was imported." in report.inner_text()
    rows = report.locator("tbody tr")
    assert rows.count() == 1
    assert rows.locator("td").all_inner_texts() == [
        "2",
        "responses: this campaign needs 2 responses per item, the line has 1",
    ]
    assert Item.objects.filter(campaign=campaign).count() == 0
    assert Prompt.objects.filter(campaign=campaign).count() == 0
    assert Response.objects.count() == 0
    screenshot(page, "import-report-1280x800.png")

    upload(page, "good.jsonl", good)
    assert page.get_by_role("heading", name="Ready to import").is_visible()
    assert Item.objects.filter(campaign=campaign).count() == 0  # checked, not yet committed
    with page.expect_navigation():
        page.get_by_test_id("confirm-import").click()
    page.wait_for_url(f"**/campaigns/{campaign.pk}/")
    message = page.locator(".message-success")
    assert message.is_visible()
    assert "Imported 3 items (3 arbiter)." in message.inner_text()
    assert page.get_by_test_id("stat-items").inner_text() == "3"
    assert sorted(
        Prompt.objects.filter(campaign=campaign).values_list("external_id", flat=True)
    ) == ["imp0", "imp1", "imp2"]
    assert Item.objects.filter(campaign=campaign).count() == 3
    screenshot(page, "import-success-1280x800.png")
    page_problems.assert_none()


def test_duplicates_are_refused_then_skipped_and_near_duplicates_flagged(
    page, login, make_campaign, manager, page_problems
):
    """A repeated line is a bad line; ticking "Skip duplicates" lists it as skipped, flags the
    near-duplicate prompt, and imports the rest on confirmation."""
    campaign = make_campaign(items=1, active=False, name="Import hygiene")
    long_prompt = " ".join(f"word{i}" for i in range(120))
    rows = [
        json.dumps({"id": "a", "prompt": long_prompt + " first", "chosen": "Yes", "rejected": "No"}),
        json.dumps({"id": "b", "prompt": long_prompt + " second", "chosen": "Sure", "rejected": "Never"}),
        json.dumps({"id": "c", "prompt": "Question 0?", "chosen": "Other", "rejected": "Replies"}),
        json.dumps({"id": "d", "prompt": long_prompt + " first", "chosen": " No", "rejected": "Yes "}),
    ]
    login(manager)
    page.goto(f"/campaigns/{campaign.pk}/import/")
    upload(page, "dups.jsonl", rows)
    report = page.get_by_test_id("import-report")
    report.wait_for(state="visible")
    assert report.locator("tbody tr").locator("td").all_inner_texts()[:1] == ["4"]
    assert "duplicate of line 1: the same conversation and replies" in report.inner_text()

    page.get_by_label("Skip duplicates").check()
    upload(page, "dups.jsonl", rows)
    assert page.get_by_role("heading", name="Ready to import").is_visible()
    skipped = page.get_by_test_id("import-skipped")
    assert skipped.locator("td").all_inner_texts() == ["4", "duplicate of line 1 (same conversation and replies)"]
    warnings = page.get_by_test_id("import-warnings").inner_text()
    assert "prompt is a near-duplicate of the prompt of line 1" in warnings
    assert "prompt is a near-duplicate of prompt 'p0' already in this campaign" in warnings
    screenshot(page, "import-hygiene-1280x800.png")
    with page.expect_navigation():
        page.get_by_test_id("confirm-import").click()
    assert "Imported 3 items (3 trl). 1 duplicate line(s) skipped." in page.locator(".message-success").inner_text()
    assert Item.objects.filter(campaign=campaign).count() == 4
    page_problems.assert_none()
