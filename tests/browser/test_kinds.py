"""Every kind of feedback in a real browser: ranking (keyboard, drag, phone buttons), Likert ratings,
thumbs, multi-criteria pairwise, rewrites, flags and skips, each stored and checked in the database."""

import pytest

from annotation.models import Assignment, Campaign, Judgment, Role
from annotation.services.campaigns import campaign_create, campaign_set_status, membership_add
from annotation.services.imports import items_import
from tests.browser.conftest import PHONE, response_ids_on_page
from tests.browser.conftest import screenshot as _screenshot
from tests.conftest import jsonl

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIKERT = [
    {
        "name": "helpfulness",
        "label": "Helpfulness",
        "description": "Does it answer the question?",
        "scale": {"min": 1, "max": 5, "labels": {"1": "Useless", "3": "OK", "5": "Excellent"}},
    },
    {"name": "honesty", "label": "Honesty", "scale": {"min": 1, "max": 7, "labels": {"1": "Misleading", "7": "Honest"}}},
    {"name": "concision", "label": "Concision", "scale": {"min": 1, "max": 10, "labels": {"1": "Rambling", "10": "Tight"}}},
]
THUMBS = [{"name": "overall", "label": "Overall", "scale": {"min": 0, "max": 1, "labels": {"0": "Bad", "1": "Good"}}}]
ASPECTS = [
    {"name": "helpfulness", "label": "Helpfulness", "description": "Which one helps more?"},
    {"name": "harmlessness", "label": "Harmlessness", "description": "Which one is safer?"},
]

LONG = "\n\n".join(
    f"Paragraph {i}: a longer answer that explains the steps in detail, so the card needs collapsing." for i in range(8)
)


def rows(n_items: int, n_responses: int, *, prefix: str = "k", long_last: bool = False) -> list[dict]:
    out = []
    for i in range(n_items):
        responses = [{"content": f"Reply {chr(65 + r)} to question {i}", "model": f"m{r}"} for r in range(n_responses)]
        if long_last:
            responses[-1]["content"] += "\n\n" + LONG + "\n\n```python\nprint('ranked')\n```"
        out.append({"id": f"{prefix}{i}", "messages": [{"role": "user", "content": f"Question {i}?"}], "responses": responses})
    return out


@pytest.fixture
def kind_campaign(manager, annotator):
    def make(kind: str, *, items: int = 2, responses: int = 2, criteria=None, long_last=False, **options) -> Campaign:
        campaign = campaign_create(
            created_by=manager, name=options.pop("name", f"{kind} campaign"), kind=kind, criteria=criteria, overlap=1, **options
        )
        items_import(campaign=campaign, lines=jsonl(rows(items, responses, long_last=long_last)))
        campaign_set_status(campaign=campaign, status=Campaign.Status.ACTIVE)
        membership_add(campaign=campaign, user=annotator, role=Role.ANNOTATOR)
        return campaign

    return make


def screenshot(page, name: str) -> None:
    """A full-page screenshot from the top (the sticky top bar would otherwise land mid-page)."""
    focused = page.evaluate("document.activeElement && document.activeElement.getAttribute('data-testid')")
    page.evaluate("window.scrollTo(0, 0)")
    _screenshot(page, name)
    assert focused_testid(page) == focused


def wait_ready(page, *, not_assignment: str | None = None) -> str:
    """Wait until an item (another than `not_assignment`) is shown with at least one response; return its assignment id."""
    page.wait_for_function(
        """(previous) => {
            const item = document.querySelector('[data-testid=item]');
            if (!item || item.getAttribute('aria-busy') !== 'false') return false;
            const id = item.getAttribute('data-assignment-id');
            return id !== null && id !== previous && document.querySelector('[data-testid=response-a]') !== null;
        }""",
        arg=not_assignment,
    )
    return page.locator("[data-testid=item]").get_attribute("data-assignment-id")


def ids(page, letters: str) -> dict[str, int]:
    return response_ids_on_page(page, letters)


def open_judge(page, login, annotator, campaign) -> str:
    login(annotator)
    page.goto(f"/campaigns/{campaign.pk}/judge/")
    return wait_ready(page)


def phone_check(page, name: str) -> None:
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(150)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{name}: the phone layout is {width}px wide"
    screenshot(page, f"kinds-{name}-phone-390x844.png")


def focused_testid(page) -> str | None:
    return page.evaluate("document.activeElement && document.activeElement.getAttribute('data-testid')")


# ------------------------------------------------------------------------------------------ ranking


def test_ranking_by_keyboard_with_a_tie(page, login, kind_campaign, annotator, page_problems):
    campaign = kind_campaign("ranking", responses=4, instructions="Rank the replies, best first.")
    first = open_judge(page, login, annotator, campaign)
    r = ids(page, "abcd")
    assert page.locator(".rank-card").count() == 4
    assert page.get_by_test_id("rank-of-a").inner_text() == "Rank 1"

    page.keyboard.press("g")  # focus the first card (A)
    assert focused_testid(page) == "response-a"
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert focused_testid(page) == "response-c"
    page.keyboard.press("k")  # C above B
    page.keyboard.press("Alt+ArrowUp")  # C above A: C A B D
    assert focused_testid(page) == "response-c"  # the focus follows the moved card
    assert page.get_by_test_id("rank-of-c").inner_text() == "Rank 1"
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert focused_testid(page) == "response-d"
    page.keyboard.press("j")  # already last: says so, nothing moves
    assert "cannot move down" in page.get_by_test_id("ranking-live").inner_text()
    page.keyboard.press("k")  # C A D B
    page.keyboard.press("=")  # D tied with A: C, A = D, B
    assert page.get_by_test_id("rank-of-a").inner_text() == "Rank 2 (tied)"
    assert page.get_by_test_id("rank-of-d").inner_text() == "Rank 2 (tied)"
    assert page.get_by_test_id("rank-of-b").inner_text() == "Rank 4"
    assert page.locator(".rank-group.is-tied .rank-card").count() == 2
    assert page.get_by_test_id("ranking-summary").inner_text() == "Order: C > A = D > B"
    # Untie and tie again, by keyboard.
    page.keyboard.press("-")
    assert page.get_by_test_id("rank-of-d").inner_text() == "Rank 3"
    page.keyboard.press("=")
    assert page.get_by_test_id("rank-of-d").inner_text() == "Rank 2 (tied)"
    # Collapse a long card and the whole list.
    page.keyboard.press("c")
    assert page.get_by_test_id("response-d").get_attribute("class").count("is-collapsed") == 1
    page.keyboard.press("c")

    page.keyboard.press("r")
    page.keyboard.type("C is the most complete.")
    page.keyboard.press("Escape")
    screenshot(page, "kinds-ranking-desktop-1280x800.png")
    page.keyboard.press("Enter")
    wait_ready(page, not_assignment=first)

    j = Judgment.objects.get(annotator=annotator, assignment_id=int(first))
    assert j.outcome == "ranked"
    assert j.answer["ranking"] == [[r["c"]], [r["a"], r["d"]], [r["b"]]]
    assert j.display_order == [r["a"], r["b"], r["c"], r["d"]]
    assert j.rationale == "C is the most complete."
    assert j.preferred_response_id is None and j.strength is None and j.edited_response == ""
    assert j.time_taken_ms and j.time_taken_ms > 0
    assert page.get_by_test_id("status").inner_text() == "Saved."
    page_problems.assert_none()


def test_ranking_by_drag_and_rewrite_of_the_top(page, login, kind_campaign, annotator, page_problems):
    campaign = kind_campaign("ranking", responses=3, allow_editing=True, long_last=True)
    first = open_judge(page, login, annotator, campaign)
    r = ids(page, "abc")
    c_text = page.get_by_test_id("response-c").locator(".md").inner_text()

    # Collapse every card so that all three fit on the screen, then drag C by its grip onto A's upper edge.
    page.keyboard.press("z")
    assert page.get_by_test_id("toggle-collapse-all").get_attribute("aria-pressed") == "true"
    assert page.locator(".rank-card.is-collapsed").count() == 3
    page.get_by_test_id("grip-c").drag_to(page.get_by_test_id("response-a"), target_position={"x": 60, "y": 6})
    assert page.get_by_test_id("rank-of-c").inner_text() == "Rank 1"
    assert page.get_by_test_id("ranking-summary").inner_text() == "Order: C > A > B"
    # Drag B into the middle of A: a tie.
    a_box = page.get_by_test_id("response-a").bounding_box()
    page.get_by_test_id("grip-b").drag_to(
        page.get_by_test_id("response-a"), target_position={"x": 60, "y": a_box["height"] / 2}
    )
    assert page.get_by_test_id("ranking-summary").inner_text() == "Order: C > A = B"

    # The rewrite is prefilled with the top-ranked reply (C).
    page.keyboard.press("e")
    editor = page.get_by_test_id("edited-response")
    assert focused_testid(page) == "edited-response"
    # (The shown order is shuffled per annotator: C is whichever reply is third on screen.)
    assert editor.input_value().split("\n")[0] == c_text.split("\n")[0]
    editor.fill("A shorter, better reply C.")
    page.keyboard.press("Escape")
    screenshot(page, "kinds-ranking-drag-desktop-1280x800.png")
    page.get_by_test_id("submit").click()
    wait_ready(page, not_assignment=first)

    j = Judgment.objects.get(assignment_id=int(first))
    assert j.answer["ranking"] == [[r["c"]], [r["a"], r["b"]]]
    assert j.edited_response == "A shorter, better reply C."
    assert j.answer["edited_response_id"] == r["c"]
    page_problems.assert_none()


def test_ranking_on_a_phone_with_buttons(page, login, kind_campaign, annotator, page_problems):
    campaign = kind_campaign("ranking", responses=3, long_last=True)
    page.set_viewport_size(PHONE)
    first = open_judge(page, login, annotator, campaign)
    r = ids(page, "abc")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    # Submitting the order as shown asks for a confirmation first.
    page.get_by_test_id("submit").click()
    assert "not changed the order" in page.get_by_test_id("error").inner_text()
    page.get_by_test_id("up-c").click()
    page.get_by_test_id("up-c").click()
    page.get_by_test_id("down-a").click()  # A below B: C B A
    page.get_by_test_id("tie-a").click()  # A ties with B
    page.get_by_test_id("collapse-c").click()
    assert page.get_by_test_id("collapse-c").get_attribute("aria-expanded") == "false"
    assert page.get_by_test_id("ranking-summary").inner_text() == "Order: C > B = A"
    assert page.get_by_test_id("up-c").is_disabled()
    screenshot(page, "kinds-ranking-phone-390x844.png")
    page.get_by_test_id("submit").click()
    wait_ready(page, not_assignment=first)
    j = Judgment.objects.get(assignment_id=int(first))
    assert j.answer["ranking"] == [[r["c"]], [r["b"], r["a"]]]
    page_problems.assert_none()


# ------------------------------------------------------------------------------------------ rating


def test_rating_multi_criteria_likert_by_keyboard(page, login, kind_campaign, annotator, page_problems):
    campaign = kind_campaign("rating", responses=2, criteria=LIKERT)
    first = open_judge(page, login, annotator, campaign)
    r = ids(page, "ab")
    assert page.get_by_test_id("rating-summary").inner_text() == "0 of 6 ratings given"
    # Labelled radio groups: a fieldset with a legend per response x criterion.
    group = page.get_by_role("group", name="Helpfulness — Response A")
    assert group.get_by_role("radio").count() == 5
    assert page.get_by_role("radio", name="5 Excellent").count() == 2

    # Submitting early names what is missing.
    page.keyboard.press("Enter")
    assert "Helpfulness" in page.get_by_test_id("error").inner_text()

    # Digits rate the current criterion and move on: A: 4, 6, 10 (key 0); B: 2, 7, 3.
    for key in ("4", "6", "0", "2", "7"):
        page.keyboard.press(key)
    assert page.get_by_test_id("rating-summary").inner_text() == "5 of 6 ratings given"
    assert focused_testid(page) == "rate-b-concision-1"
    page.keyboard.press("8")
    assert page.get_by_test_id("rate-b-concision-8").is_checked()
    # Change B's concision with the mouse.
    page.get_by_test_id("rate-b-concision-3").click()
    assert page.get_by_test_id("rating-summary").inner_text() == "6 of 6 ratings given"
    assert page.get_by_test_id("rate-a-concision-10").is_checked()
    screenshot(page, "kinds-rating-desktop-1280x800.png")
    page.get_by_test_id("submit").click()
    wait_ready(page, not_assignment=first)

    j = Judgment.objects.get(assignment_id=int(first))
    assert j.outcome == "rated"
    assert j.answer["ratings"] == {
        str(r["a"]): {"helpfulness": 4, "honesty": 6, "concision": 10},
        str(r["b"]): {"helpfulness": 2, "honesty": 7, "concision": 3},
    }
    assert j.display_order == [r["a"], r["b"]]
    phone_check(page, "rating")
    page_problems.assert_none()


def test_thumbs_up_and_down_with_a_reason(page, login, kind_campaign, annotator, page_problems):
    campaign = kind_campaign("rating", items=2, responses=1, criteria=THUMBS, allow_editing=True)
    first = open_judge(page, login, annotator, campaign)
    one = ids(page, "a")["a"]
    assert page.get_by_test_id("response-b").count() == 0
    assert page.locator("label[for=judge-rationale]").inner_text().startswith("Reason")

    page.keyboard.press("d")
    assert page.get_by_test_id("rate-a-overall-0").is_checked()
    page.keyboard.press("r")
    page.keyboard.type("Made up a citation.")
    page.keyboard.press("Escape")
    # Single response: the editor rewrites it.
    page.keyboard.press("e")
    editor = page.get_by_test_id("edited-response")
    assert editor.input_value() == "Reply A to question 0" or editor.input_value().startswith("Reply A")
    editor.fill("Reply A, without the made-up citation.")
    screenshot(page, "kinds-thumbs-desktop-1280x800.png")
    page.keyboard.press("Control+Enter")
    second = wait_ready(page, not_assignment=first)
    two = ids(page, "a")["a"]

    page.keyboard.press("u")
    assert page.get_by_test_id("rate-a-overall-1").is_checked()
    phone_check(page, "thumbs")
    page.keyboard.press("Enter")
    page.get_by_test_id("done").wait_for(state="visible")

    down = Judgment.objects.get(assignment_id=int(first))
    assert down.outcome == "rated" and down.answer["ratings"] == {str(one): {"overall": 0}}
    assert down.rationale == "Made up a citation."
    assert down.edited_response == "Reply A, without the made-up citation."
    up = Judgment.objects.get(assignment_id=int(second))
    assert up.answer["ratings"] == {str(two): {"overall": 1}}
    assert up.rationale == "" and up.edited_response == ""
    page_problems.assert_none()


# ------------------------------------------------------------------------------------------ pairwise


def test_multi_criteria_pairwise_by_keyboard(page, login, kind_campaign, annotator, page_problems):
    campaign = kind_campaign("pairwise", criteria=ASPECTS)
    first = open_judge(page, login, annotator, campaign)
    r = ids(page, "ab")
    assert page.get_by_role("group", name="Helpfulness").get_by_role("radio").count() == 3

    page.keyboard.press("c")  # to the first unanswered criterion
    assert focused_testid(page) == "criterion-helpfulness-a"
    page.keyboard.press("a")  # A wins helpfulness, on to harmlessness
    page.keyboard.press("t")  # a tie on harmlessness, then back to the overall answer
    assert page.get_by_test_id("criterion-helpfulness-a").is_checked()
    assert page.get_by_test_id("criterion-harmlessness-tie").is_checked()
    page.keyboard.press("b")  # overall: B
    page.keyboard.press("2")
    assert page.get_by_test_id("choose-b").get_attribute("aria-pressed") == "true"
    assert page.get_by_test_id("criterion-helpfulness-a").is_checked()  # the overall key did not touch the rows
    screenshot(page, "kinds-pairwise-criteria-desktop-1280x800.png")
    page.keyboard.press("Enter")
    wait_ready(page, not_assignment=first)

    j = Judgment.objects.get(assignment_id=int(first))
    assert j.outcome == "preferred" and j.preferred_response_id == r["b"] and j.strength == 2
    assert j.answer["criteria"] == {"helpfulness": r["a"], "harmlessness": "tie"}
    phone_check(page, "pairwise-criteria")
    page_problems.assert_none()


def test_pairwise_rewrite_flags_diff_and_skip_reason(page, login, kind_campaign, annotator, page_problems):
    campaign = kind_campaign("pairwise", items=3, allow_editing=True)
    first = open_judge(page, login, annotator, campaign)
    r = ids(page, "ab")

    # Diff view: the words that differ are marked on each side.
    page.keyboard.press("v")
    assert page.get_by_test_id("toggle-diff").get_attribute("aria-pressed") == "true"
    left, right = (page.get_by_test_id(f"response-{c}").locator(".md").inner_text().split()[1] for c in "ab")
    assert {left, right} == {"A", "B"}  # "Reply A to question n" / "Reply B to ...", in the shown order
    assert page.locator("[data-testid=diff-left] del").all_inner_texts() == [left]
    assert page.locator("[data-testid=diff-right] ins").all_inner_texts() == [right]
    screenshot(page, "kinds-pairwise-diff-desktop-1280x800.png")
    page.keyboard.press("v")
    assert page.locator("[data-testid=diff-left]").is_hidden()

    # No winner yet: the editor says so.
    page.keyboard.press("e")
    assert page.get_by_test_id("edited-response").is_disabled()
    page.keyboard.press("b")
    page.keyboard.press("3")
    page.keyboard.press("e")
    editor = page.get_by_test_id("edited-response")
    assert focused_testid(page) == "edited-response"
    assert editor.input_value() == page.get_by_test_id("response-b").locator(".md").inner_text()
    editor.fill("Reply B, rewritten by the annotator.")
    page.keyboard.press("Escape")
    page.keyboard.press("f")
    assert focused_testid(page) == "flag-unsafe"
    page.keyboard.press("Space")
    page.get_by_label("Broken item").check()
    screenshot(page, "kinds-pairwise-rewrite-desktop-1280x800.png")
    page.keyboard.press("Control+Enter")
    second = wait_ready(page, not_assignment=first)

    j = Judgment.objects.get(assignment_id=int(first))
    assert j.outcome == "preferred" and j.preferred_response_id == r["b"] and j.strength == 3
    assert j.edited_response == "Reply B, rewritten by the annotator."
    assert sorted(j.answer["flags"]) == ["broken", "unsafe"]

    # Next item: the editor and flags start empty; an unchanged rewrite is not sent.
    assert page.get_by_test_id("flag-unsafe").is_checked() is False
    page.keyboard.press("a")
    page.keyboard.press("1")
    page.keyboard.press("e")
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    third = wait_ready(page, not_assignment=second)
    j2 = Judgment.objects.get(assignment_id=int(second))
    assert j2.edited_response == "" and "flags" not in j2.answer

    # Skip with a reason from the flag list.
    page.get_by_test_id("skip-reason").select_option("private_data")
    page.keyboard.press("Escape")
    page.keyboard.press("s")
    page.get_by_test_id("done").wait_for(state="visible")
    skipped = Assignment.objects.get(pk=int(third))
    assert skipped.status == "skipped" and skipped.skip_reason == "private_data"
    page_problems.assert_none()
