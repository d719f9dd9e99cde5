"""The manager's whole flow in a real browser, from an empty install to a dataset.

The manager creates a pairwise campaign in the wizard, imports a file (a bad line is reported,
the fixed file is imported on confirmation), activates it, adds one annotator by name and makes
an invite link. In a second browser context an annotator who already has an account opens the
link, joins and judges with the keyboard, while the manager's dashboard (a second tab of the
manager's context) follows without a reload; a second annotator works through the REST API.
The manager excludes the first annotator's judgments and closes the campaign into a dataset in
one action; the build runs as the worker would run it, and the dataset page shows it ready,
built from the included annotator's judgments only. The database is checked at every step, and
the audit page lists the actions.
"""

import json
import os
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from annotation.models import (
    AuditEntry,
    Campaign,
    Dataset,
    DatasetComparison,
    Invite,
    Item,
    Judgment,
    Membership,
    Prompt,
    Response,
    Role,
)
from annotation.pseudonyms import annotator_pseudonym
from annotation.tasks import build_dataset
from tests.browser.conftest import DESKTOP, TIMEOUT_MS, screenshot, wait_for_item
from tests.browser.test_accessibility import assert_accessible
from tests.browser.test_dashboard import api_post
from tests.browser.test_import import upload
from tests.conftest import PASSWORD, pair_rows
from tests.training.support import private_broker

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(os.environ.get("ARBITER_SHOTS", "/tmp/shots"))
# Generous: the server pushes within a second, but the machine may be busy.
LIVE_MS = 20_000
NAME = "Helpfulness duel"
INSTRUCTIONS_HEAD = "# Pick the more helpful reply\n\n"
INSTRUCTIONS_BODY = "Prefer **accurate** answers.\n\n- Check the facts\n- Ignore the length"


def shot(page, name: str, *, full_page: bool = True) -> None:
    """Save a screenshot where the test report keeps them, and a copy under /tmp/shots to look at."""
    path = screenshot(page, name, full_page=full_page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / name).write_bytes(path.read_bytes())


def watch(page, problems) -> None:
    """Record the page's uncaught exceptions, console errors and failed requests in `problems`."""
    page.on("pageerror", lambda exc: problems.errors.append(f"pageerror ({page.url}): {exc}"))
    page.on("console", problems.on_console)
    page.on("response", problems.on_response)


def sign_in(page, user) -> None:
    page.goto("/login/")
    page.locator("#id_username").press_sequentially(user.get_username())
    page.locator("#id_password").press_sequentially(PASSWORD)
    page.locator("#id_password").press("Enter")
    page.wait_for_url(lambda url: "/login/" not in url)
    assert page.locator(".topbar-user").inner_text() == user.get_username()


def wait_text(page, selector: str, expected: str) -> None:
    """Wait until the element's text is `expected` (pushed by the server; never a reload)."""
    page.wait_for_function(
        "([s, e]) => { const el = document.querySelector(s); return !!el && el.textContent.trim() === e; }",
        arg=[selector, expected], timeout=LIVE_MS,
    )


def submit_form(page, button) -> None:
    """Click a button of a plain form and wait for the page that answers it."""
    with page.expect_navigation():
        button.click()


def success_message(page) -> str:
    return page.locator(".message-success").inner_text()


def judge_through_api(base: str, campaign_id: int, user) -> int:
    """Lease the next item through the REST API and prefer model-x ("Answer one"), overall and on helpfulness."""
    token = Token.objects.get_or_create(user=user)[0].key
    assignment = api_post(base, f"/api/v1/campaigns/{campaign_id}/next/", token, {})["assignment"]
    assert assignment is not None
    chosen = next(r["id"] for r in assignment["item"]["responses"] if r["content"].startswith("Answer one"))
    api_post(base, f"/api/v1/assignments/{assignment['id']}/submit/", token,
             {"outcome": "preferred", "preferred_response_id": chosen, "strength": 2,
              "criteria": {"helpfulness": chosen}, "time_taken_ms": 3000})
    return assignment["item"]["id"]


def actions(campaign) -> list[tuple[str, str]]:
    entries = AuditEntry.objects.filter(campaign=campaign).select_related("actor").order_by("created_at", "pk")
    return [(e.action, e.actor.get_username() if e.actor else "system") for e in entries]


def test_manager_runs_a_campaign_from_wizard_to_dataset(
    browser, page, live_url, tmp_path, manager, annotator, annotator2, page_problems
):
    with private_broker(tmp_path / "broker"):  # the dataset build is queued here; the test runs it
        _flow(browser, page, live_url, manager, annotator, annotator2, page_problems)


def _flow(browser, page, live_url, manager, annotator, annotator2, page_problems) -> None:
    sign_in(page, manager)

    # 1. The wizard: pairwise, one criterion, no "both bad", overlap 2, instructions typed.
    page.get_by_role("link", name="New campaign").click()
    page.wait_for_url("**/campaigns/new/")
    page.get_by_label("Campaign name").fill(NAME)
    assert page.get_by_label("Pairwise").is_checked()
    assert page.locator(".kind-hint[data-kind=pairwise]").is_visible()
    page.get_by_test_id("add-criterion").click()
    page.locator("input[name='criteria-0-name']").fill("helpfulness")
    page.locator("input[name='criteria-0-label']").fill("Helpfulness")
    assert page.locator("input[name='criteria-0-scale_min']").is_hidden()  # pairwise criteria have no scale
    page.get_by_label("Allow “both bad”").uncheck()
    page.get_by_label("Overlap").fill("2")
    preview = page.get_by_test_id("instructions-preview")
    page.get_by_label("Instructions for annotators").click()
    page.keyboard.type(INSTRUCTIONS_HEAD)
    preview.locator("h1", has_text="Pick the more helpful reply").wait_for()  # rendered while typing
    page.keyboard.type(INSTRUCTIONS_BODY)
    preview.locator("strong", has_text="accurate").wait_for()
    assert preview.locator("li").all_inner_texts() == ["Check the facts", "Ignore the length"]
    preview.scroll_into_view_if_needed()
    assert preview.is_visible()
    shot(page, "flow-1-wizard-instructions.png", full_page=False)
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "flow-1-wizard.png")
    assert not Campaign.objects.exists()  # nothing stored while the wizard is filled in
    submit_form(page, page.get_by_test_id("save"))
    page.wait_for_url("**/import/")
    campaign = Campaign.objects.get(name=NAME)
    assert (campaign.kind, campaign.status, campaign.overlap) == ("pairwise", "draft", 2)
    assert [c["name"] for c in campaign.criteria] == ["helpfulness"]
    assert campaign.allow_ties and not campaign.allow_both_bad and campaign.use_strength
    assert campaign.instructions == INSTRUCTIONS_HEAD + INSTRUCTIONS_BODY
    assert f"Campaign “{NAME}” created as a draft." in success_message(page)

    # 2. Import: line 3 is bad, so nothing is stored; the fixed file is stored on confirmation.
    rows = [json.dumps(r) for r in pair_rows(5, prefix="flow")]
    broken = json.dumps({"id": "flow2", "messages": [{"role": "user", "content": "Question 2?"}],
                         "responses": [{"content": "Only one answer", "model": "model-x"}]})
    upload(page, "batch.jsonl", [*rows[:2], broken, *rows[3:]])
    report = page.get_by_test_id("import-report")
    assert report.get_by_role("heading", name="Nothing was imported").is_visible()
    assert "1 bad line(s) of 5; nothing was imported." in report.inner_text()
    assert report.locator("tbody tr td").all_inner_texts() == [
        "3", "responses: this campaign needs 2 responses per item, the line has 1",
    ]
    assert not Prompt.objects.filter(campaign=campaign).exists() and not Response.objects.exists()
    shot(page, "flow-2-import-report.png")

    upload(page, "batch.jsonl", rows)
    assert page.get_by_role("heading", name="Ready to import").is_visible()
    confirm = page.get_by_test_id("confirm-import")
    assert confirm.inner_text() == "Import 5 items"
    assert not Item.objects.filter(campaign=campaign).exists()  # checked, not yet stored
    assert_accessible(page, "the import confirmation")
    shot(page, "flow-3-import-ready.png")
    submit_form(page, confirm)
    assert page.url.endswith(f"/campaigns/{campaign.pk}/")
    assert "Imported 5 items (5 arbiter)." in success_message(page)
    assert page.get_by_test_id("stat-items").inner_text() == "5"
    assert sorted(Prompt.objects.filter(campaign=campaign).values_list("external_id", flat=True)) == [
        f"flow{i}" for i in range(5)
    ]
    assert Item.objects.filter(campaign=campaign).count() == 5

    submit_form(page, page.get_by_role("button", name="Activate", exact=True))
    assert "Campaign is now active." in success_message(page)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.ACTIVE
    shot(page, "flow-4-campaign-active.png")

    # 3. People: one annotator added by name, an invite link for the other.
    page.get_by_role("link", name="People").click()
    page.wait_for_url(f"**/campaigns/{campaign.pk}/people/")
    add = page.get_by_test_id("add-member")
    add.get_by_label("Username").fill(annotator2.get_username())
    submit_form(page, add.get_by_role("button", name="Add member"))
    assert "ann2 is now an annotator in this campaign." in success_message(page)
    submit_form(page, page.get_by_test_id("create-invite").get_by_role("button", name="Create link"))
    assert "Invite link created" in success_message(page)
    invite_url = page.get_by_test_id("invite-url").input_value()
    invite = Invite.objects.get(campaign=campaign)
    assert invite_url == f"{live_url}/invite/{invite.token}/"
    assert page.get_by_test_id("invite-state").inner_text() == "active"
    assert (invite.role, invite.uses) == (Role.ANNOTATOR, 0)
    assert not Membership.objects.filter(campaign=campaign, user=annotator).exists()
    shot(page, "flow-5-people.png")

    # The dashboard, in a second tab of the manager's context, stays open from here on.
    dash = page.context.new_page()
    watch(dash, page_problems)
    dash.goto(f"/campaigns/{campaign.pk}/dashboard/")
    dash.get_by_test_id("live-status").filter(has_text="Live").wait_for()
    assert dash.get_by_test_id("stat-judgments").inner_text() == "0 / 10"  # 5 items x overlap 2
    assert dash.locator("[data-testid=annotator-row]").evaluate_all("rs => rs.map(r => r.dataset.username)") == [
        "ann2"
    ]
    dash.evaluate("window.__noReload = 'still here'")

    # The annotator, signed in in a browser context of their own, joins by the link and judges.
    annotator_context = browser.new_context(base_url=live_url, viewport=DESKTOP)
    annotator_context.set_default_timeout(TIMEOUT_MS)
    try:
        judge = annotator_context.new_page()
        watch(judge, page_problems)
        sign_in(judge, annotator)
        judge.goto(invite_url)
        judge.wait_for_url(f"**/campaigns/{campaign.pk}/judge/")
        assert f"You joined “{NAME}” as annotator." in success_message(judge)
        membership = Membership.objects.get(campaign=campaign, user=annotator)
        assert (membership.role, membership.excluded) == (Role.ANNOTATOR, False)
        invite.refresh_from_db()
        assert invite.uses == 1
        # Joining is pushed to the open dashboard.
        wait_text(dash, "[data-username=ann] [data-field=judged]", "0")

        # Keyboard only: C goes to the criterion, A/B/T answer it, then A/B/T overall, 1-3, Enter.
        # ann prefers model-y ("Answer two ...") twice, then calls a tie.
        assignment = None
        chosen = []
        for k, strength in enumerate(["2", "3", None]):
            assignment = wait_for_item(judge, not_assignment=assignment)
            a_text = judge.get_by_test_id("response-a").inner_text()
            side = "t" if strength is None else ("a" if "Answer two" in a_text else "b")
            judge.keyboard.press("c")
            judge.keyboard.press(side)
            judge.keyboard.press(side)
            if strength:
                judge.keyboard.press(strength)
            pressed = {"a": "choose-a", "b": "choose-b", "t": "choose-tie"}[side]
            assert judge.get_by_test_id(pressed).get_attribute("aria-pressed") == "true"
            checked = judge.locator("[data-testid^=criterion-helpfulness-]:checked")
            assert checked.get_attribute("value") == {"t": "tie"}.get(side, side)
            if k == 0:  # once the pressed buttons have finished their colour transition
                judge.wait_for_function(
                    "t => getComputedStyle(document.querySelector(`[data-testid=${t}]`)).color === 'rgb(255, 255, 255)'",
                    arg=pressed,
                )
                shot(judge, "flow-6-judge.png")
            judge.keyboard.press("Enter")
            chosen.append((int(assignment), side))
            # The dashboard follows each judgment: the count and ann's row in the table and chart.
            wait_text(dash, "[data-testid=stat-judgments]", f"{k + 1} / 10")
            wait_text(dash, "[data-username=ann] [data-field=judged]", str(k + 1))
        wait_for_item(judge, not_assignment=assignment)
        assert judge.get_by_test_id("progress").inner_text() == "3 of 10 judged"
        assert judge.get_by_test_id("error").is_hidden()

        judgments = list(Judgment.objects.filter(annotator=annotator).select_related("preferred_response"))
        assert sorted(j.assignment_id for j in judgments) == sorted(a for a, _ in chosen)
        by_assignment = {j.assignment_id: j for j in judgments}
        for assignment_id, side in chosen:
            j = by_assignment[assignment_id]
            assert j.campaign_id == campaign.pk
            if side == "t":
                assert (j.outcome, j.answer["criteria"]) == ("tie", {"helpfulness": "tie"})
            else:
                assert j.outcome == "preferred" and j.preferred_response.model_name == "model-y"
                assert j.answer["criteria"] == {"helpfulness": j.preferred_response_id}

        # ann2 works through the API and prefers model-x on the same items.
        ann_items = {j.item_id for j in judgments}
        ann2_items = {judge_through_api(live_url, campaign.pk, annotator2) for _ in range(3)}
        assert ann2_items == ann_items  # served the items closest to completion first
        wait_text(dash, "[data-testid=stat-judgments]", "6 / 10")
        wait_text(dash, "[data-username=ann2] [data-field=judged]", "3")
        assert Judgment.objects.filter(campaign=campaign).count() == 6
        assert "2 annotators" in dash.locator("[data-summary=annotators]").inner_text()
        assert dash.evaluate("window.__noReload") == "still here"
        shot(dash, "flow-7-dashboard-live.png")
    finally:
        annotator_context.close()

    # 4. The manager excludes ann's judgments; the open dashboard marks ann excluded.
    page.reload()
    page.once("dialog", lambda dialog: dialog.accept())
    submit_form(page, page.get_by_test_id("member-ann").get_by_role("button", name="Exclude judgments of ann"))
    assert "ann's judgments are left out of aggregation." in success_message(page)
    assert page.get_by_test_id("member-ann").locator(".badge-danger").inner_text() == "excluded"
    assert Membership.objects.get(campaign=campaign, user=annotator).excluded
    assert not Membership.objects.get(campaign=campaign, user=annotator2).excluded
    shot(page, "flow-8-people-excluded.png")
    dash.wait_for_function(
        "document.querySelector('[data-username=ann]').dataset.excluded === 'true'", timeout=LIVE_MS
    )
    assert "excluded" in dash.locator("[data-username=ann] [data-field=status]").inner_text()
    assert "Excluded: ann." in dash.locator("[data-summary=annotators]").inner_text()
    assert dash.get_by_test_id("stat-judgments").inner_text() == "6 / 10"  # still stored, still counted
    assert dash.evaluate("window.__noReload") == "still here"
    shot(dash, "flow-9-dashboard-excluded.png")
    dash.close()

    # 5. Close into a dataset in one action; the worker builds it; the page shows it ready.
    page.get_by_role("link", name=f"← {NAME}").click()
    page.wait_for_url(f"**/campaigns/{campaign.pk}/")
    finish = page.get_by_test_id("close-into-dataset")
    finish.get_by_label("Aggregation method").select_option("majority")
    page.once("dialog", lambda dialog: dialog.accept())
    submit_form(page, finish.get_by_role("button", name="Close into dataset"))
    dataset = Dataset.objects.get(campaign=campaign)
    assert page.url.endswith(f"/datasets/{dataset.pk}/")
    assert "The campaign is closed; dataset v1 is being built." in success_message(page)
    assert page.get_by_test_id("dataset-building").is_visible()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CLOSED
    assert (dataset.status, dataset.method) == ("building", "majority")
    assert dataset.params["excluded_annotators"] == [annotator_pseudonym(annotator.pk)]

    assert build_dataset(dataset.pk) == "ready"  # as the worker runs it
    page.locator("h1 .badge", has_text="Ready").wait_for(timeout=LIVE_MS)  # the page refreshes itself
    assert page.get_by_test_id("dataset-building").count() == 0
    assert "Judgments of 1 excluded annotator were left out." in page.locator("body").inner_text()
    assert page.get_by_test_id("ds-comparisons").inner_text() == "3"
    dataset.refresh_from_db()
    assert (dataset.judgment_count, dataset.annotator_count, dataset.item_count) == (3, 1, 3)
    comparisons = list(DatasetComparison.objects.filter(dataset=dataset))
    assert len(comparisons) == 3
    # Only ann2's judgments count: one judgment per item at overlap 2 is too few to decide (the
    # default min_judgments is 2), so every pair is held back from training as undecided.
    assert {(c.outcome, c.n_judgments) for c in comparisons} == {("undecided", 1)}
    assert page.get_by_role("heading", name="Held back from training").is_visible()
    assert {c.item_id for c in comparisons} == set(
        Judgment.objects.filter(annotator=annotator2).values_list("item_id", flat=True)
    )
    assert Judgment.objects.filter(annotator=annotator).count() == 3  # excluded, never deleted
    assert_accessible(page, "the dataset page")
    shot(page, "flow-10-dataset.png")

    # The audit page lists every manager action, and the annotator's joining.
    page.goto(f"/campaigns/{campaign.pk}/audit/")
    log = page.get_by_test_id("audit-log")
    assert actions(campaign) == [
        ("campaign.create", "manager"),
        ("import.commit", "manager"),
        ("campaign.status", "manager"),
        ("membership.add", "manager"),
        ("invite.create", "manager"),
        ("invite.accept", "ann"),
        ("membership.exclude", "manager"),
        ("campaign.status", "manager"),
        ("dataset.create", "manager"),
        ("campaign.close_into_dataset", "manager"),
    ]
    shown = log.locator("tbody tr").evaluate_all(
        "rows => rows.map(r => [r.cells[2].textContent.trim(), r.cells[1].textContent.trim()])"
    )
    assert shown == [list(a) for a in reversed(actions(campaign))]  # newest first
    shot(page, "flow-11-audit.png")
    page_problems.assert_none()
