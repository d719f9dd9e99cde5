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
