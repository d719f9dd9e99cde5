"""The dataset form and page in a real browser: the thresholds at their defaults with the reason for
the default method, and a built dataset's held-back pairs and flagged items (linked to the items page)."""

import pytest

from tests.annotation.support import build, judge_all, prefer
from tests.browser.conftest import DESKTOP, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_dataset_form_and_page_show_thresholds_and_flagged_items(page, login, make_campaign, manager, annotator,
                                                                 annotator2):
    campaign = make_campaign(items=6, overlap=2, annotators=[annotator, annotator2])
    ids = sorted(campaign.items.values_list("pk", flat=True))

    def first(item_id, by_model):
        answer = prefer("model-x")(item_id, by_model)
        if item_id == ids[-1]:
            answer["flags"] = ["unsafe", "private_data"]
        return answer

    judge_all(campaign, annotator, first)
    judge_all(campaign, annotator2, lambda i, m: prefer("model-y" if i in ids[:2] else "model-x")(i, m))
    dataset = build(campaign, manager, method="reliability_weighted")
    page.set_viewport_size(DESKTOP)
    login(manager)

    page.goto(f"/campaigns/{campaign.pk}/datasets/")
    form = page.get_by_test_id("dataset-create")
    assert form.locator("select[name=method]").input_value() == "reliability_weighted"
    assert form.locator("input[name=min_judgments]").input_value() == "2"
    assert form.locator("input[name=min_confidence]").input_value() == "0.6"
    assert form.locator("input[name=flag_min_annotators]").input_value() == "1"
    assert "+9.7 points" in page.get_by_test_id("method-why").inner_text()
    screenshot(page, "dataset-form.png")

    page.goto(f"/datasets/{dataset.pk}/")
    held = page.get_by_test_id("held-back")
    held.scroll_into_view_if_needed()
    counts = [int(held.locator(f"[data-reason={r}] td").nth(1).inner_text())
              for r in ("tie", "too_few_judgments", "below_confidence")]
    assert sum(counts) == 2  # the two 1–1 splits
    row = page.get_by_test_id("flagged-items").locator(f"[data-item='{ids[-1]}']")
    assert "Unsafe content (1), Private data (1)" in row.inner_text()
    screenshot(page, "dataset-held-back.png")
    row.get_by_role("link").click()
    page.wait_for_url(lambda url: "/items/" in url)
    assert page.locator(f"#item-{ids[-1]}").is_visible()
    verdict = page.locator("[data-testid=consensus] strong").first  # the first item: a 1–1 split
    assert verdict.get_attribute("data-outcome") in ("tie", "undecided")
    assert verdict.inner_text().startswith(("Tie", "Undecided"))
    screenshot(page, "items-undecided.png")
