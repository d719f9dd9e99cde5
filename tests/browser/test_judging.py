"""The annotator's judging page, in a real browser: keyboard-only judging, blind model names, safe rendering."""

import json
import re

import pytest

from annotation.models import Campaign, Judgment
from annotation.services.campaigns import campaign_set_status
from annotation.services.imports import items_import
from tests.browser.conftest import PHONE, response_ids_on_page, screenshot, wait_for_item
from tests.conftest import jsonl, pair_rows

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def shown(page) -> dict:
    """What the page shows now: the assignment, item and the response ids left (A) and right (B)."""
    item = page.locator("[data-testid=item]")
    return {
        "assignment": int(item.get_attribute("data-assignment-id")),
        "item": int(item.get_attribute("data-item-id")),
        **response_ids_on_page(page, "ab"),
    }


def test_annotator_judges_three_items_with_the_keyboard_only(
    page, login, campaign, annotator, page_problems
):
    login(annotator)
    # From the home page to the judging page, as an annotator would get there.
    page.get_by_role("link", name="Judge").click()
    page.wait_for_url(f"**/campaigns/{campaign.pk}/judge/")
    first = wait_for_item(page)

    progress = page.get_by_test_id("progress")
    assert progress.inner_text() == "0 of 10 judged"  # 5 items x overlap 2
    # Survives only if judging never reloads the page.
    page.evaluate("window.__noReload = 'still here'")

    # (keys, expected outcome, which side is preferred, strength)
    plan = [
        (["a", "2"], "preferred", "a", 2),
        (["b", "3"], "preferred", "b", 3),
        (["t"], "tie", None, None),
    ]
    seen = []
    assignment = first
    for step, (keys, outcome, side, strength) in enumerate(plan):
        now = shown(page)
        for key in keys:
            page.keyboard.press(key)
        # The keys are reflected on screen before submitting.
        pressed = {"a": "choose-a", "b": "choose-b", "t": "choose-tie"}[keys[0]]
        assert page.get_by_test_id(pressed).get_attribute("aria-pressed") == "true"
        if strength is not None:
            assert (
                page.get_by_test_id(f"strength-{strength}").get_attribute("aria-pressed") == "true"
            )
            assert page.locator("[data-testid^=strength-][aria-pressed=true]").count() == 1
        else:
            assert page.locator(".strength-group").is_hidden()
        page.keyboard.press("Enter")
        assignment = wait_for_item(page, not_assignment=assignment)
        assert progress.inner_text() == f"{step + 1} of 10 judged"
        seen.append((now, outcome, side, strength))

    assert page.evaluate("window.__noReload") == "still here"
    assert page.get_by_test_id("status").inner_text() == "Saved."
    assert page.get_by_test_id("error").is_hidden()

    judgments = list(Judgment.objects.filter(annotator=annotator).order_by("created_at", "pk"))
    assert len(judgments) == 3
    assert Judgment.objects.count() == 3
    for judgment, (now, outcome, side, strength) in zip(judgments, seen, strict=True):
        assert judgment.campaign_id == campaign.pk
        assert judgment.assignment_id == now["assignment"]
        assert judgment.item_id == now["item"]
        assert judgment.outcome == outcome
        assert judgment.preferred_response_id == (now[side] if side else None)
        assert judgment.strength == strength
        assert judgment.display_order == [now["a"], now["b"]]
        assert judgment.time_taken_ms is not None and judgment.time_taken_ms > 0
        assert judgment.rationale == ""
        assert judgment.assignment.status == "submitted"
    # Three different items, and the page now shows a fourth.
    assert len({j.item_id for j in judgments}) == 3
    assert shown(page)["item"] not in {j.item_id for j in judgments}
    page_problems.assert_none()


def test_model_names_never_reach_the_browser(page, login, make_campaign, annotator, page_problems):
    secrets = ("secret-model-alpha", "secret-model-beta")
    campaign = make_campaign(items=0, active=False, annotators=[annotator])
    items_import(campaign=campaign, lines=jsonl(pair_rows(2, models=secrets)))
    campaign_set_status(campaign=campaign, status=Campaign.Status.ACTIVE)

    login(annotator)
    # Bodies stay readable until the page navigates away: collect from the judging page's load on.
    responses = []
    page.on("response", lambda r: responses.append(r))
    page.goto(f"/campaigns/{campaign.pk}/judge/")
    assignment = wait_for_item(page)
    # Judge every item, so every kind of API answer the page gets (lease, submit, "all done") is seen.
    contents = set(page.locator("[data-testid^=response-] .md").all_inner_texts())
    for key in ("a", "1", "Enter"):
        page.keyboard.press(key)
    wait_for_item(page, not_assignment=assignment)
    contents.update(page.locator("[data-testid^=response-] .md").all_inner_texts())
    for key in ("b", "3", "Enter"):
        page.keyboard.press(key)
    page.get_by_test_id("done").wait_for(state="visible")
    # The responses themselves did reach the page (so the check below looks at real payloads).
    assert contents == {f"Answer {n} to {i}" for n in ("one", "two") for i in range(2)}

    bodies = []  # (what, body) for every response the judging page got
    for r in responses:
        if 300 <= r.status < 400:
            continue  # redirects have no body
        bodies.append((f"{r.request.method} {r.url}", r.body().decode("utf-8", "replace")))
    fetched = [what for what, _ in bodies]
    assert len([w for w in fetched if w.endswith("/next/")]) == 3, fetched
    assert len([w for w in fetched if w.endswith("/submit/")]) == 2, fetched
    assert any(w.endswith("/static/arbiter/judge.js") for w in fetched), fetched
    assert any(w.endswith(f"/campaigns/{campaign.pk}/judge/") for w in fetched), fetched
    # The lease payload carries ids and contents only.
    next_body = json.loads(next(body for what, body in bodies if what.endswith("/next/")))
    assert set(next_body["assignment"]["item"]["responses"][0]) == {"id", "content"}

    html = page.content()
    for secret in (*secrets, "model_name"):
        for where, body in bodies:
            assert secret not in body, f"{secret!r} leaked in {where}"
        assert secret not in html
    assert Judgment.objects.filter(annotator=annotator).count() == 2
    page_problems.assert_none()


XSS_CONTENT = (
    "<script>window.__xss=1</script>\n\n"
    'Look: <img src=x onerror="window.__xss=2"> here.\n\n'
    "```python\nprint('hello')\n```\n"
)


def test_html_in_prompts_and_responses_is_shown_as_text(
    page, login, make_campaign, annotator, page_problems
):
    campaign = make_campaign(items=0, active=False, annotators=[annotator], name="XSS check")
    row = {
        "id": "xss",
        "messages": [{"role": "user", "content": "Is this <b>bold?</b> Answer **in markdown**."}],
        "responses": [
            {"content": XSS_CONTENT, "model": "m1"},
            {"content": "A plain answer with a list:\n\n- one\n- two", "model": "m2"},
        ],
    }
    items_import(campaign=campaign, lines=jsonl([row]))
    campaign_set_status(campaign=campaign, status=Campaign.Status.ACTIVE)
    requests = []
    page.on("request", lambda r: requests.append(r.url))

    login(annotator)
    page.goto(f"/campaigns/{campaign.pk}/judge/")
    wait_for_item(page)
    page.wait_for_load_state("networkidle")  # give a broken image every chance to fire onerror

    responses = page.locator(".responses")
    card = page.locator("[data-testid^=response-]").filter(has_text="window.__xss=1")
    assert card.count() == 1
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator(".responses script, .conversation script").count() == 0
    assert responses.locator("img").count() == 0
    assert page.locator("img[src=x], [onerror]").count() == 0
    assert not [u for u in requests if re.search(r"/x$", u)], requests
    # The markup is shown literally, as text the annotator can read.
    assert card.get_by_text("<script>window.__xss=1</script>").is_visible()
    assert card.get_by_text('<img src=x onerror="window.__xss=2">', exact=False).is_visible()
    # Markdown still works: a highlighted code block, a list, emphasis in the prompt.
    code = card.locator("pre.code-block code.language-python")
    assert code.inner_text().strip() == "print('hello')"
    assert code.locator("span").count() > 0  # highlighted
    assert page.locator("[data-testid^=response-] li").all_inner_texts() == ["one", "two"]
    prompt = page.get_by_test_id("message")
    assert prompt.locator("b").count() == 0
    assert prompt.locator("strong").inner_text() == "in markdown"
    assert "<b>bold?</b>" in prompt.inner_text()

    screenshot(page, "judge-xss-desktop-1280x800.png")
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(100)  # let layout settle after the resize
    assert page.get_by_test_id("response-a").is_visible()
    assert page.get_by_test_id("submit").is_visible()
    # Nothing on the phone layout is wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "judge-xss-phone-390x844.png")
    assert page.evaluate("typeof window.__xss") == "undefined"
    page_problems.assert_none()
